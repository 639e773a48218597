//! Every kind of awkward input users send, generated from the real photos:
//! each gets the right answer or a 4xx with a stable code, the server keeps
//! answering, and nothing stored changes.

mod support;

use std::io::Cursor;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use image::{DynamicImage, ImageFormat, RgbImage, imageops};
use support::{Multipart, TestApi, photos};

const PERSON: &str = "jerry_seinfeld";

fn val_photo() -> RgbImage {
    let bytes = std::fs::read(&photos("val", PERSON)[0]).unwrap();
    image::load_from_memory(&bytes).unwrap().to_rgb8()
}

fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    image.write_to(&mut Cursor::new(&mut bytes), format).unwrap();
    bytes
}

fn jpeg(image: &RgbImage) -> Vec<u8> {
    encode(&DynamicImage::ImageRgb8(image.clone()), ImageFormat::Jpeg)
}

/// A JPEG whose pixels are stored turned, with the EXIF orientation that
/// tells a viewer how to turn them back (as phone cameras write them).
fn exif_rotated(image: &RgbImage, orientation: u16) -> Vec<u8> {
    let stored = match orientation {
        3 => imageops::rotate180(image),
        6 => imageops::rotate270(image),
        8 => imageops::rotate90(image),
        other => panic!("orientation {other} is not used here"),
    };
    let plain = jpeg(&stored);
    // APP1 "Exif": a big-endian TIFF header and one IFD entry, Orientation (0x0112, SHORT).
    let mut tiff = b"MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01".to_vec();
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = plain[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&u16::try_from(app1.len() + 2).unwrap().to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&plain[2..]);
    out
}

fn cmyk_jpeg(image: &RgbImage) -> Vec<u8> {
    let cmyk: Vec<u8> = image
        .pixels()
        .flat_map(|p| {
            let [r, g, b] = p.0.map(|c| f32::from(c) / 255.0);
            let k = 1.0 - r.max(g).max(b);
            let scale = if k < 1.0 { 1.0 - k } else { 1.0 };
            // Plain CMYK; the encoder writes it inverted with an Adobe marker, as Photoshop does.
            [(1.0 - r - k) / scale, (1.0 - g - k) / scale, (1.0 - b - k) / scale, k]
                .map(|c| (c * 255.0).round() as u8)
        })
        .collect();
    let mut out = Vec::new();
    let encoder = jpeg_encoder::Encoder::new(&mut out, 90);
    let (w, h) = (u16::try_from(image.width()).unwrap(), u16::try_from(image.height()).unwrap());
    encoder.encode(&cmyk, w, h, jpeg_encoder::ColorType::Cmyk).unwrap();
    out
}

/// A PNG header announcing 20000 x 20000 pixels, followed by almost nothing.
fn decompression_bomb() -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&20_000u32.to_be_bytes());
    ihdr.extend_from_slice(&20_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    png.extend_from_slice(&[0, 0, 0, 0, b'I', b'D', b'A', b'T', 0x35, 0xAF, 0x06, 0x1E]);
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

async fn check_in(api: &TestApi, bytes: Vec<u8>) -> (StatusCode, serde_json::Value) {
    let request =
        Request::post("/api/v1/checkins").header(header::CONTENT_TYPE, "application/octet-stream");
    api.send(request, Body::from(bytes)).await
}

async fn enrol_one(
    api: &TestApi,
    file_name: &str,
    bytes: &[u8],
) -> (StatusCode, serde_json::Value) {
    let mut form = Multipart::new();
    form.text("name", "Probe");
    form.bytes("photo", file_name, bytes);
    api.send(form.request("/api/v1/people"), form.body()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awkward_images_get_the_right_answer_or_a_clear_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let api = TestApi::open(dir.path()).await;
    let (status, report) = api.enrol("Jerry", &photos("train", PERSON)).await;
    assert_eq!(status, StatusCode::CREATED, "{report}");
    let photo = val_photo();
    let stranger = image::load_from_memory(&std::fs::read(&photos("val", "madonna")[0]).unwrap())
        .unwrap()
        .to_rgb8();

    // Formats and colour types that must decode and be recognised.
    let recognised: Vec<(&str, Vec<u8>)> = vec![
        ("EXIF orientation 3", exif_rotated(&photo, 3)),
        ("EXIF orientation 6", exif_rotated(&photo, 6)),
        ("EXIF orientation 8", exif_rotated(&photo, 8)),
        (
            "RGBA PNG",
            encode(
                &DynamicImage::ImageRgba8(DynamicImage::ImageRgb8(photo.clone()).to_rgba8()),
                ImageFormat::Png,
            ),
        ),
        (
            "16-bit PNG",
            encode(
                &DynamicImage::ImageRgb16(DynamicImage::ImageRgb8(photo.clone()).to_rgb16()),
                ImageFormat::Png,
            ),
        ),
        (
            "grayscale JPEG",
            encode(
                &DynamicImage::ImageLuma8(DynamicImage::ImageRgb8(photo.clone()).to_luma8()),
                ImageFormat::Jpeg,
            ),
        ),
        ("CMYK JPEG", cmyk_jpeg(&photo)),
        ("WebP", encode(&DynamicImage::ImageRgb8(photo.clone()), ImageFormat::WebP)),
    ];
    // A large frame is shrunk before it is looked at, and still recognised.
    let large = imageops::resize(
        &photo,
        photo.width() * 2400 / photo.height(),
        2400,
        imageops::FilterType::Triangle,
    );
    let recognised = recognised.into_iter().chain([("2400 px tall JPEG", jpeg(&large))]);
    for (what, bytes) in recognised {
        let (status, result) = check_in(&api, bytes).await;
        assert_eq!(status, StatusCode::OK, "{what}: {result}");
        assert_eq!(
            (result["status"].as_str(), result["person_name"].as_str()),
            (Some("recognised"), Some("Jerry")),
            "{what}: {result}"
        );
    }

    // Bytes that are no image at all, or a broken one.
    let full_jpeg = jpeg(&photo);
    let refused: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        ("zero bytes", Vec::new(), StatusCode::BAD_REQUEST, "empty_image"),
        (
            "text",
            b"name,score\nJerry,1\n".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_image",
        ),
        (
            "PDF",
            b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_image",
        ),
        (
            "truncated JPEG",
            full_jpeg[..full_jpeg.len() / 3].to_vec(),
            StatusCode::BAD_REQUEST,
            "corrupt_image",
        ),
        (
            "20000x20000 bomb",
            decompression_bomb(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "image_too_large",
        ),
        (
            "body over the limit",
            vec![0xFF; 16 << 20],
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
        (
            // Small to send, costly to look at: check-ins have a lower limit.
            "13 MP check-in frame",
            encode(&DynamicImage::ImageRgb8(RgbImage::new(4000, 3250)), ImageFormat::Png),
            StatusCode::PAYLOAD_TOO_LARGE,
            "image_too_large",
        ),
    ];
    for (what, bytes, status, code) in refused {
        let started = std::time::Instant::now();
        let (got, body) = check_in(&api, bytes).await;
        assert_eq!((got, body["error"]["code"].as_str()), (status, Some(code)), "{what}: {body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| m.len() > 10), "{what}: {body}");
        assert!(started.elapsed().as_secs() < 5, "{what} took {:?}", started.elapsed());
    }

    // Faces that are there but unusable: check-in answers with a status and a hint.
    let tiny = imageops::resize(
        &photo,
        photo.width() / 8,
        photo.height() / 8,
        imageops::FilterType::Triangle,
    );
    let mut tiny_frame = RgbImage::from_pixel(640, 480, image::Rgb([90, 90, 90]));
    imageops::overlay(&mut tiny_frame, &tiny, 300, 200);
    let mut small = RgbImage::from_pixel(400, 400, image::Rgb([120, 120, 120]));
    let quarter = imageops::resize(
        &photo,
        photo.width() / 4,
        photo.height() / 4,
        imageops::FilterType::Triangle,
    );
    imageops::overlay(&mut small, &quarter, 150, 150);
    let dark = RgbImage::from_fn(photo.width(), photo.height(), |x, y| {
        image::Rgb(photo.get_pixel(x, y).0.map(|c| c / 6))
    });
    let blurred = imageops::blur(&photo, photo.width() as f32 / 40.0);
    let blank = RgbImage::from_pixel(320, 240, image::Rgb([128, 128, 128]));
    let mut group = RgbImage::from_pixel(
        photo.width() + stranger.width(),
        photo.height().max(stranger.height()),
        image::Rgb([0, 0, 0]),
    );
    imageops::overlay(&mut group, &photo, 0, 0);
    imageops::overlay(&mut group, &stranger, i64::from(photo.width()), 0);

    let (_, result) = check_in(&api, jpeg(&blank)).await;
    assert_eq!(result["status"], "no_face", "{result}");
    let (_, result) = check_in(&api, jpeg(&tiny_frame)).await;
    assert!(
        matches!(result["status"].as_str(), Some("no_face" | "face_too_small")),
        "tiny: {result}"
    );
    assert!(result["hint"].is_string(), "tiny: {result}");
    let (_, result) = check_in(&api, jpeg(&group)).await;
    assert_eq!(result["faces"], 2, "group: {result}");

    // Enrolment is strict: each of these is refused with its own code, and nothing is stored.
    let strict: Vec<(&str, Vec<u8>, &str)> = vec![
        ("no face", jpeg(&blank), "no_face"),
        ("group photo", jpeg(&group), "many_faces"),
        ("very dark", jpeg(&dark), "too_dark"),
        ("very blurred", jpeg(&blurred), "too_blurred"),
        (
            "a small face, in a PNG named .jpg",
            encode(&DynamicImage::ImageRgb8(small.clone()), ImageFormat::Png),
            "face_too_small",
        ),
    ];
    for (what, bytes, code) in strict {
        let (status, body) = enrol_one(&api, "photo.jpg", &bytes).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {body}");
        assert_eq!(body["error"]["details"][0]["code"], code, "{what}: {body}");
    }
    let (_, people) = api.send(Request::get("/api/v1/people"), Body::empty()).await;
    assert_eq!(people["people"].as_array().unwrap().len(), 1, "a refused enrolment stored someone");

    // After all of that the server still answers and still recognises.
    let (status, result) = check_in(&api, jpeg(&photo)).await;
    assert_eq!((status, result["person_name"].as_str()), (StatusCode::OK, Some("Jerry")));
}

/// Calls of the pages' server functions that the pages would never make:
/// each gets a 4xx and the server keeps answering (a multipart call without
/// a boundary used to panic inside Leptos's decoder).
#[test]
fn malformed_server_function_calls_get_a_4xx() {
    use leptos::server_fn::ServerFn;

    let data = tempfile::tempdir().unwrap();
    let site = tempfile::tempdir().unwrap();
    let server = support::ServerProcess::start(data.path(), site.path());
    let enrol = app::server_fns::EnrolPerson::PATH;
    let check_in = app::server_fns::CheckInFrame::PATH;
    let login = app::server_fns::Login::PATH;
    let calls: [(&str, &str, &[u8], u16); 7] = [
        (enrol, "application/x-www-form-urlencoded", b"x=1", 400),
        (enrol, "multipart/form-data", b"--x--", 400),
        (enrol, "multipart/form-data; boundary=", b"--x--", 400),
        (check_in, "application/json", br#"{"frame":"abc"}"#, 400),
        (check_in, "application/json", b"xx", 400),
        (login, "application/x-www-form-urlencoded", b"x=1", 400),
        (check_in, "application/json", &[b'"'; 3 << 20], 413),
    ];
    for (path, content_type, body, expected) in calls {
        let (status, _) = server.client.request("POST", path, Some(content_type), body).unwrap();
        assert_eq!(status, expected, "POST {path} as {content_type}");
    }
    let (status, _) = server.client.request("GET", "/api/v1/health", None, &[]).unwrap();
    assert_eq!(status, 200);
}
