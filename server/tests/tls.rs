//! HTTPS with a self-signed certificate, as a phone on the LAN would use it.

mod support;

use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_server_answers_over_https_with_secure_cookies() {
    let data = tempfile::tempdir().unwrap();
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("hash.txt"), "js: a\nwasm: b\ncss: c\n").unwrap();
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let hash = server::auth::hash_password(support::ADMIN_PASSWORD).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args([
            "serve",
            "--addr",
            &addr.to_string(),
            "--tls-self-signed",
            "--tls-name",
            "gate.test",
        ])
        .arg("--site-root")
        .arg(site.path())
        .env("FACEGATE_DATA_DIR", data.path())
        .env("FACEGATE_ADMIN_PASSWORD_HASH", hash)
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();

    let cert_path = data.path().join("tls/self-signed.crt");
    let deadline = Instant::now() + Duration::from_secs(60);
    let client = loop {
        if let Ok(pem) = std::fs::read(&cert_path) {
            let cert = reqwest::Certificate::from_pem(&pem).unwrap();
            break reqwest::Client::builder().add_root_certificate(cert).build().unwrap();
        }
        assert!(Instant::now() < deadline, "no certificate was made");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let base = format!("https://127.0.0.1:{}/api/v1", addr.port());
    let health = loop {
        match client.get(format!("{base}/ready")).send().await {
            Ok(response) => break response,
            Err(error) => {
                assert!(Instant::now() < deadline, "the HTTPS server never answered: {error}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!(health.status(), 200);

    let login = client
        .post(format!("{base}/session"))
        .json(&serde_json::json!({ "password": support::ADMIN_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("; Secure") && cookie.contains("HttpOnly"), "{cookie}");

    // Plain HTTP on the HTTPS port gets nowhere.
    let plain = reqwest::get(format!("http://127.0.0.1:{}/api/v1/health", addr.port())).await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    child.kill().unwrap();
    child.wait().unwrap();
}

/// `--ngrok` with a tunnel that cannot be opened: FaceGate says why and keeps
/// serving locally. The ngrok ingress is a closed loopback port, so nothing
/// leaves the machine.
#[test]
fn a_tunnel_that_cannot_open_is_reported_and_serving_goes_on() {
    let data = tempfile::tempdir().unwrap();
    let site = tempfile::tempdir().unwrap();
    let log = data.path().join("server.log");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let server = support::ServerProcess::start_with(
        data.path(),
        site.path(),
        &["--ngrok", "--ngrok-server", &closed.to_string()],
        Some(&log),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        if text.contains("tunnel could not be opened") || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(text.contains("the ngrok tunnel could not be opened"), "{text}");
    assert!(text.contains("keeps serving"), "{text}");
    let (status, _) = server.client.request("GET", "/api/v1/health", None, &[]).unwrap();
    assert_eq!(status, 200);
}
