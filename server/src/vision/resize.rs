//! Resampling of an image region into a float buffer, the way the models'
//! reference pipelines prepare their inputs.

use image::RgbImage;

/// A rectangle of the source image in continuous pixel coordinates (pixel
/// `i` covers `[i, i + 1)`). It may reach outside the image: what lies outside
/// reads as black, as in MTCNN's padded crops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Region {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
}

impl Region {
    /// The whole image.
    pub fn full(image: &RgbImage) -> Self {
        Region { x: 0.0, y: 0.0, width: image.width() as f32, height: image.height() as f32 }
    }
}

/// One output sample along one axis: the first source index and its weights,
/// limited to indices inside the image (outside reads as black, so those
/// taps are simply dropped).
struct Taps {
    start: usize,
    weights: Vec<f32>,
}

/// Per-axis taps for `out` samples of `[origin, origin + length)` over an
/// axis of `size` pixels. Shrinking averages the covered source pixels by
/// their covered length (OpenCV's `INTER_AREA`); enlarging interpolates
/// linearly between pixel centres (which is what `INTER_AREA` does when
/// enlarging), repeating the region's edge pixels.
fn axis_taps(origin: f32, length: f32, out: usize, size: usize) -> Vec<Taps> {
    let scale = length / out as f32;
    let first = origin.floor() as i64;
    let last = ((origin + length).ceil() as i64 - 1).max(first);
    (0..out)
        .map(|i| {
            let raw: Vec<(i64, f32)> = if scale >= 1.0 {
                let lo = origin + i as f32 * scale;
                let hi = lo + scale;
                (lo.floor() as i64..hi.ceil() as i64)
                    .map(|p| (p, (hi.min(p as f32 + 1.0) - lo.max(p as f32)).max(0.0) / scale))
                    .collect()
            } else {
                // Samples near the edges stay inside the region, as when a
                // crop is cut out first and then resized.
                let centre = origin + (i as f32 + 0.5) * scale - 0.5;
                let left = centre.floor();
                let frac = centre - left;
                let a = (left as i64).clamp(first, last);
                let b = (left as i64 + 1).clamp(first, last);
                if a == b { vec![(a, 1.0)] } else { vec![(a, 1.0 - frac), (b, frac)] }
            };
            let inside: Vec<(i64, f32)> =
                raw.into_iter().filter(|&(p, _)| p >= 0 && p < size as i64).collect();
            match inside.first() {
                Some(&(start, _)) => {
                    Taps { start: start as usize, weights: inside.iter().map(|t| t.1).collect() }
                }
                None => Taps { start: 0, weights: Vec::new() },
            }
        })
        .collect()
}

/// Resamples `region` of `image` to `out_width` x `out_height` and returns the
/// pixels as interleaved RGB `f32` in 0..=255, rows top to bottom.
pub fn resample(image: &RgbImage, region: Region, out_width: usize, out_height: usize) -> Vec<f32> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let xs = axis_taps(region.x, region.width, out_width, w);
    let ys = axis_taps(region.y, region.height, out_height, h);
    let raw = image.as_raw();

    // Horizontal pass over the source rows that the vertical taps need.
    let used = |t: &Taps| (!t.weights.is_empty()).then_some((t.start, t.start + t.weights.len()));
    let row_lo = ys.iter().filter_map(used).map(|r| r.0).min().unwrap_or(0);
    let row_hi = ys.iter().filter_map(used).map(|r| r.1).max().unwrap_or(0);
    let stride = out_width * 3;
    let mut horizontal = vec![0.0f32; row_hi.saturating_sub(row_lo) * stride];
    for (r, dst) in horizontal.chunks_exact_mut(stride).enumerate() {
        let src = &raw[(row_lo + r) * w * 3..(row_lo + r + 1) * w * 3];
        for (taps, out) in xs.iter().zip(dst.chunks_exact_mut(3)) {
            let pixels = &src[taps.start * 3..(taps.start + taps.weights.len()) * 3];
            let mut acc = [0.0f32; 3];
            for (px, &wt) in pixels.chunks_exact(3).zip(&taps.weights) {
                acc[0] += wt * f32::from(px[0]);
                acc[1] += wt * f32::from(px[1]);
                acc[2] += wt * f32::from(px[2]);
            }
            out.copy_from_slice(&acc);
        }
    }

    let mut out = vec![0.0f32; out_height * stride];
    for (taps, dst) in ys.iter().zip(out.chunks_exact_mut(stride)) {
        for (k, &wt) in taps.weights.iter().enumerate() {
            let r = taps.start + k - row_lo;
            let src = &horizontal[r * stride..(r + 1) * stride];
            for (d, s) in dst.iter_mut().zip(src) {
                *d += wt * s;
            }
        }
    }
    out
}

/// [`resample`] rounded back to an 8-bit image.
pub fn resample_image(
    image: &RgbImage,
    region: Region,
    out_width: u32,
    out_height: u32,
) -> RgbImage {
    let data = resample(image, region, out_width as usize, out_height as usize);
    let bytes = data.iter().map(|v| v.round().clamp(0.0, 255.0) as u8).collect();
    RgbImage::from_raw(out_width, out_height, bytes).expect("buffer size matches dimensions")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halving_averages_two_by_two_blocks() {
        let img = RgbImage::from_fn(4, 2, |x, _| image::Rgb([(x * 10) as u8, 0, 255]));
        let out = resample(&img, Region::full(&img), 2, 1);
        assert_eq!(out, vec![5.0, 0.0, 255.0, 25.0, 0.0, 255.0]);
    }

    #[test]
    fn outside_the_image_reads_black() {
        let img = RgbImage::from_pixel(2, 2, image::Rgb([100, 100, 100]));
        let region = Region { x: -2.0, y: 0.0, width: 4.0, height: 2.0 };
        let out = resample(&img, region, 2, 1);
        assert_eq!(out, vec![0.0, 0.0, 0.0, 100.0, 100.0, 100.0]);
    }
}
