//! Turning uploaded bytes into an upright 8-bit RGB image.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageError, ImageReader, RgbImage};

/// What [`decode_image`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest accepted width x height, checked from the header before the
    /// pixels are decoded (a defence against decompression bombs).
    pub max_pixels: u64,
}

impl DecodeLimits {
    /// Images of at most `megapixels` million pixels.
    pub const fn megapixels(megapixels: u64) -> Self {
        DecodeLimits { max_pixels: megapixels * 1_000_000 }
    }
}

impl Default for DecodeLimits {
    /// 40 megapixels: above any phone camera's still photo.
    fn default() -> Self {
        DecodeLimits::megapixels(40)
    }
}

/// Why bytes could not be turned into an image, in words a person can act on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("the file is empty")]
    Empty,
    #[error("not a supported image ({0}); use JPEG, PNG, WebP, GIF, BMP or TIFF")]
    Unsupported(String),
    #[error("the image is truncated or corrupt ({0})")]
    Corrupt(String),
    #[error(
        "the image is {width}x{height} pixels, larger than the limit of {} megapixels",
        max_pixels / 1_000_000
    )]
    TooLarge { width: u32, height: u32, max_pixels: u64 },
}

/// Decodes an image from its bytes.
///
/// The format is sniffed from the content, never taken from a file name (phone
/// galleries save PNG and WebP under `.jpg`). The pixel count is checked from
/// the header before any pixel is decoded. The EXIF orientation, where there
/// is one, is applied so the result is upright. Whatever the stored colour
/// type (grayscale, 16-bit, CMYK JPEG, palette), the result is 8-bit RGB;
/// transparent pixels are composited on white. Animated formats give their
/// first frame.
pub fn decode_image(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    // The pixel limit is ours, checked below from the header; the decoder's
    // own allocation cap only has to leave room for it (16-bit RGBA is 8
    // bytes a pixel).
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8).saturating_add(64 << 20));
    reader.limits(decoder_limits);
    if reader.format().is_none() {
        return Err(DecodeError::Unsupported(unknown_format_hint(bytes).to_string()));
    }
    // The JPEG decoder fills a cut-off image with grey instead of failing,
    // which would turn an interrupted upload into "no face found".
    if reader.format() == Some(image::ImageFormat::Jpeg) && !jpeg_is_complete(bytes) {
        return Err(DecodeError::Corrupt("the JPEG is cut off before its end".to_string()));
    }

    let mut decoder = reader.into_decoder().map_err(classify)?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(DecodeError::TooLarge { width, height, max_pixels: limits.max_pixels });
    }
    if width == 0 || height == 0 {
        return Err(DecodeError::Corrupt(format!("the header says {width}x{height} pixels")));
    }
    // A broken EXIF block should not cost the user the photo: decode it as stored.
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(classify)?;
    image.apply_orientation(orientation);

    Ok(to_rgb_on_white(image))
}

/// Whether a JPEG's end-of-image marker follows its last start-of-scan marker.
///
/// Marker bytes `FF xx` cannot occur inside entropy-coded data (an `FF` there
/// is followed by `00` or a restart marker), so the last `FF DA` starts the
/// image's last scan, and a complete file has `FF D9` after it. Bytes after
/// the end marker (some cameras append data) are allowed.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let marker = |code: u8| bytes.windows(2).rposition(|pair| pair == [0xFF, code]);
    match (marker(0xDA), marker(0xD9)) {
        (Some(scan), Some(end)) => end > scan,
        _ => false,
    }
}

fn to_rgb_on_white(image: DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.into_rgb8();
    }
    let rgba = image.into_rgba8();
    let (w, h) = rgba.dimensions();
    let mut out = RgbImage::new(w, h);
    for (dst, src) in out.pixels_mut().zip(rgba.pixels()) {
        let a = u32::from(src[3]);
        for c in 0..3 {
            // Rounded (c * a + 255 * (255 - a)) / 255.
            dst[c] = ((u32::from(src[c]) * a + 255 * (255 - a) + 127) / 255) as u8;
        }
    }
    out
}

fn classify(error: ImageError) -> DecodeError {
    match error {
        ImageError::Unsupported(e) => DecodeError::Unsupported(e.to_string()),
        ImageError::Limits(e) => DecodeError::Corrupt(format!("decoder limit: {e}")),
        ImageError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            DecodeError::Corrupt("the data ends early".to_string())
        }
        other => DecodeError::Corrupt(other.to_string()),
    }
}

/// A short reason for bytes whose format was not recognised, naming the
/// common cases users send by mistake.
fn unknown_format_hint(bytes: &[u8]) -> &'static str {
    let head = &bytes[..bytes.len().min(32)];
    if head.len() >= 12 && &head[4..8] == b"ftyp" {
        match &head[8..12] {
            b"heic" | b"heix" | b"mif1" | b"msf1" | b"hevc" => "HEIC/HEIF photo",
            b"avif" | b"avis" => "AVIF image",
            _ => "video or ISO media file",
        }
    } else if head.starts_with(b"%PDF") {
        "PDF document"
    } else if head.starts_with(b"data:") {
        "a data: URL; send the decoded bytes"
    } else if head.iter().all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace()) {
        "text, not image data"
    } else {
        "unknown format"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_off_jpeg_is_refused_and_trailing_bytes_are_allowed() {
        let image = RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 90]));
        let mut jpeg = Vec::new();
        image.write_to(&mut Cursor::new(&mut jpeg), image::ImageFormat::Jpeg).unwrap();
        let limits = DecodeLimits::default();
        assert!(decode_image(&jpeg, &limits).is_ok());
        let cut = &jpeg[..jpeg.len() - 40];
        assert!(matches!(decode_image(cut, &limits), Err(DecodeError::Corrupt(_))));
        let mut padded = jpeg.clone();
        padded.extend_from_slice(b"trailing camera data");
        assert!(decode_image(&padded, &limits).is_ok());
    }
    use image::{ImageEncoder, Rgb, Rgba, RgbaImage};

    fn png(image: &DynamicImage) -> Vec<u8> {
        let mut out = Vec::new();
        image.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
        out
    }

    fn jpeg(image: &RgbImage) -> Vec<u8> {
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95)
            .write_image(
                image.as_raw(),
                image.width(),
                image.height(),
                image::ExtendedColorType::Rgb8,
            )
            .unwrap();
        out
    }

    /// A JPEG with an APP1 EXIF segment holding only the orientation tag.
    fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
        let mut tiff = Vec::new();
        tiff.extend_from_slice(b"MM\0\x2a\0\0\0\x08"); // big-endian, first IFD at 8
        tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
        tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
        tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
        tiff.extend_from_slice(&1u32.to_be_bytes());
        tiff.extend_from_slice(&orientation.to_be_bytes());
        tiff.extend_from_slice(&[0, 0]);
        tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
        let mut payload = b"Exif\0\0".to_vec();
        payload.extend_from_slice(&tiff);

        let mut out = jpeg[..2].to_vec(); // SOI
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&payload);
        out.extend_from_slice(&jpeg[2..]);
        out
    }

    #[test]
    fn empty_bytes_are_rejected_as_empty() {
        assert_eq!(decode_image(&[], &DecodeLimits::default()), Err(DecodeError::Empty));
    }

    #[test]
    fn text_is_rejected_as_unsupported() {
        let err = decode_image(b"hello, this is not a photo\n", &DecodeLimits::default());
        assert!(
            matches!(err, Err(DecodeError::Unsupported(ref m)) if m.contains("text")),
            "{err:?}"
        );
    }

    #[test]
    fn heic_is_named_in_the_error() {
        let bytes = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic";
        let err = decode_image(bytes, &DecodeLimits::default()).unwrap_err();
        assert!(err.to_string().contains("HEIC"), "{err}");
    }

    #[test]
    fn truncated_png_is_corrupt() {
        let img =
            DynamicImage::ImageRgb8(RgbImage::from_fn(64, 64, |x, y| Rgb([x as u8, y as u8, 7])));
        let bytes = png(&img);
        let err = decode_image(&bytes[..bytes.len() / 2], &DecodeLimits::default());
        assert!(matches!(err, Err(DecodeError::Corrupt(_))), "{err:?}");
    }

    #[test]
    fn oversized_header_is_rejected_before_decoding() {
        // A PNG header claiming 100000 x 100000 pixels followed by no pixel data.
        let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend_from_slice(&100_000u32.to_be_bytes());
        ihdr.extend_from_slice(&100_000u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        bytes.extend_from_slice(&13u32.to_be_bytes());
        bytes.extend_from_slice(&ihdr);
        bytes.extend_from_slice(&crc32(&ihdr).to_be_bytes());
        for chunk in [&b"IDAT"[..], &b"IEND"[..]] {
            bytes.extend_from_slice(&0u32.to_be_bytes());
            bytes.extend_from_slice(chunk);
            bytes.extend_from_slice(&crc32(chunk).to_be_bytes());
        }
        let err = decode_image(&bytes, &DecodeLimits::default());
        assert_eq!(
            err,
            Err(DecodeError::TooLarge { width: 100_000, height: 100_000, max_pixels: 40_000_000 })
        );
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }

    #[test]
    fn png_named_as_anything_decodes_by_content() {
        let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(3, 2, Rgb([10, 20, 30])));
        let out = decode_image(&png(&img), &DecodeLimits::default()).unwrap();
        assert_eq!(out.dimensions(), (3, 2));
        assert_eq!(out.get_pixel(0, 0), &Rgb([10, 20, 30]));
    }

    #[test]
    fn transparent_pixels_become_white_and_opaque_ones_keep_their_colour() {
        let mut rgba = RgbaImage::from_pixel(2, 1, Rgba([0, 0, 0, 0]));
        rgba.put_pixel(1, 0, Rgba([200, 100, 50, 255]));
        let out =
            decode_image(&png(&DynamicImage::ImageRgba8(rgba)), &DecodeLimits::default()).unwrap();
        assert_eq!(out.get_pixel(0, 0), &Rgb([255, 255, 255]));
        assert_eq!(out.get_pixel(1, 0), &Rgb([200, 100, 50]));
    }

    #[test]
    fn grayscale_16_bit_becomes_rgb8() {
        let gray =
            image::ImageBuffer::<image::Luma<u16>, _>::from_pixel(2, 2, image::Luma([65535u16]));
        let out =
            decode_image(&png(&DynamicImage::ImageLuma16(gray)), &DecodeLimits::default()).unwrap();
        assert_eq!(out.get_pixel(1, 1), &Rgb([255, 255, 255]));
    }

    #[test]
    fn exif_orientation_six_rotates_clockwise() {
        // 32 wide, 16 tall; left half red, right half blue. Orientation 6 means
        // "rotate 90 degrees clockwise to display": the result is 16 wide, 32
        // tall, with red on top.
        let img =
            RgbImage::from_fn(
                32,
                16,
                |x, _| {
                    if x < 16 { Rgb([255, 0, 0]) } else { Rgb([0, 0, 255]) }
                },
            );
        let bytes = with_exif_orientation(&jpeg(&img), 6);
        let out = decode_image(&bytes, &DecodeLimits::default()).unwrap();
        assert_eq!(out.dimensions(), (16, 32));
        let top = out.get_pixel(8, 4);
        let bottom = out.get_pixel(8, 28);
        assert!(top[0] > 200 && top[2] < 60, "top {top:?}");
        assert!(bottom[2] > 200 && bottom[0] < 60, "bottom {bottom:?}");
    }
}
