//! What a running server writes to its log, and what it refuses to flood.

mod support;

use support::{ADMIN_PASSWORD, Multipart, ServerProcess, photos};

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn the_log_of_a_full_run_holds_no_image_embedding_token_or_password() {
    let data = tempfile::tempdir().unwrap();
    let site = tempfile::tempdir().unwrap();
    let log = data.path().join("server.log");
    let server = ServerProcess::start_with(data.path(), site.path(), &[], Some(&log));
    let client = &server.client;

    let train = photos("train", "mindy_kaling");
    let mut form = Multipart::new();
    form.text("name", "Mindy");
    for photo in &train[..4] {
        form.file("photo", photo);
    }
    let content_type = form.content_type();
    let (status, _) =
        client.request("POST", "/api/v1/people", Some(&content_type), &form.into_bytes()).unwrap();
    assert_eq!(status, 201);
    let frame = std::fs::read(&photos("val", "mindy_kaling")[0]).unwrap();
    let (status, result) =
        client.request("POST", "/api/v1/checkins", Some("image/jpeg"), &frame).unwrap();
    assert_eq!((status, result["status"].as_str()), (200, Some("recognised")));
    let body = format!(r#"{{"image": "data:image/jpeg;base64,{}"}}"#, base64(&frame));
    let (status, _) = client
        .request("POST", "/api/v1/checkins", Some("application/json"), body.as_bytes())
        .unwrap();
    assert_eq!(status, 200);
    let wrong = r#"{"password": "not-the-admin-password"}"#;
    client.request("POST", "/api/v1/session", Some("application/json"), wrong.as_bytes()).unwrap();
    let token = client.token.clone();
    server.kill();

    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("gallery loaded"), "the log is empty or not at debug level:\n{log}");
    assert!(!log.contains(ADMIN_PASSWORD), "the admin password is in the log");
    assert!(!log.contains("not-the-admin-password"), "a tried password is in the log");
    assert!(!log.contains(&token), "a session token is in the log");
    assert!(!log.contains(&base64(&frame)[..64]), "image data (base64) is in the log");
    assert!(!log.contains("JFIF"), "raw JPEG bytes are in the log");
    // An embedding would show as a long run of decimal fractions.
    let numbers = log.split(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-')).filter(|w| {
        w.len() > 6 && w.contains('.') && w.parse::<f32>().is_ok_and(|v| v.abs() < 1.0)
    });
    assert!(numbers.count() < 20, "the log holds many small fractions: an embedding?");
}

#[test]
fn a_client_that_checks_in_too_fast_is_told_to_wait() {
    let data = tempfile::tempdir().unwrap();
    let site = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_with(
        data.path(),
        site.path(),
        &["--check-in-rate", "0.5", "--check-in-burst", "2"],
        None,
    );
    let frame = std::fs::read(&photos("val", "madonna")[0]).unwrap();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let (status, body) =
            server.client.request("POST", "/api/v1/checkins", Some("image/jpeg"), &frame).unwrap();
        statuses.push((status, body["error"]["code"].as_str().map(str::to_owned)));
    }
    assert_eq!(
        statuses,
        [(200, None), (200, None), (429, Some("rate_limited".to_owned()))],
        "the third check-in in a row should be refused"
    );
}
