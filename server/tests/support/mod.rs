//! Shared by the integration tests: the five-person photo set, multipart
//! bodies, and a FaceGate API router over a fresh store.

#![allow(dead_code, reason = "each test binary uses a different part of this module")]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use server::api::{self, ApiLimits};
use server::auth::{AdminAuth, hash_password};
use server::limit::RateLimiter;
use server::service::{Service, ServiceConfig};
use server::store::Store;
use server::store::sqlite::SqliteStore;
use server::vision::{self, DetectorKind, Engine};
use server::web::WebBackend;
use std::collections::BTreeMap;
use tower::ServiceExt;

pub const ADMIN_PASSWORD: &str = "integration-test-password";

/// The people of the five-person set.
pub const PEOPLE: [&str; 5] =
    ["ben_afflek", "elton_john", "jerry_seinfeld", "madonna", "mindy_kaling"];

/// The photos of `person` in `split` (`train` or `val`), sorted by name.
pub fn photos(split: &str, person: &str) -> Vec<PathBuf> {
    let dir = vision::cache_dir().join("data/faces5").join(split).join(person);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!("{}: {e}; run `python3 models/prepare.py` to fetch the photos", dir.display())
        })
        .map(|entry| entry.unwrap().path())
        .collect();
    paths.sort();
    paths
}

/// The engine with MTCNN only (what the service uses by default), loaded once per test binary.
pub fn engine() -> Engine {
    static ENGINE: std::sync::OnceLock<Engine> = std::sync::OnceLock::new();
    ENGINE
        .get_or_init(|| {
            Engine::load(&vision::models_dir(), &[DetectorKind::Mtcnn])
                .unwrap_or_else(|e| panic!("{e:#}; run `python3 models/prepare.py` first"))
        })
        .clone()
}

/// A running API over the store in `data_dir`, and a session token.
pub struct TestApi {
    pub router: Router,
    pub token: String,
    pub service: Arc<Service>,
    pub keys: Arc<server::keys::ApiKeys>,
    _keys_dir: tempfile::TempDir,
}

impl TestApi {
    pub async fn open(data_dir: &Path) -> Self {
        Self::with_store(Arc::new(SqliteStore::open(data_dir).unwrap())).await
    }

    pub async fn with_store(store: Arc<dyn Store>) -> Self {
        let service =
            Arc::new(Service::start(engine(), store, ServiceConfig::default()).await.unwrap());
        let auth = AdminAuth::new(&hash_password(ADMIN_PASSWORD).unwrap()).unwrap();
        let token = auth.login(ADMIN_PASSWORD, "test").unwrap();
        let check_in_limit = Arc::new(RateLimiter::new(0.0, 0));
        let keys_dir = tempfile::tempdir().unwrap();
        let keys = Arc::new(server::keys::ApiKeys::open(keys_dir.path()).unwrap());
        let backend = Arc::new(WebBackend {
            service: service.clone(),
            auth: Arc::new(auth),
            check_in_limit: check_in_limit.clone(),
            keys: keys.clone(),
            max_upload_bytes: ApiLimits::default().max_enrol_bytes,
            secure_cookies: false,
        });
        let router = Router::new().nest(
            "/api/v1",
            api::routes(api::Api {
                service: service.clone(),
                backend,
                keys: keys.clone(),
                limits: ApiLimits::default(),
                check_in_limit,
            }),
        );
        Self { router, token, service, keys, _keys_dir: keys_dir }
    }

    /// Sends a request with the session token; returns status and JSON body.
    pub async fn send(
        &self,
        request: axum::http::request::Builder,
        body: Body,
    ) -> (StatusCode, serde_json::Value) {
        let request = request
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .body(body)
            .unwrap();
        send(&self.router, request).await
    }

    pub async fn enrol(&self, name: &str, photos: &[PathBuf]) -> (StatusCode, serde_json::Value) {
        let mut form = Multipart::new();
        form.text("name", name);
        for photo in photos {
            form.file("photo", photo);
        }
        self.send(form.request("/api/v1/people"), form.body()).await
    }

    pub async fn check_in(&self, photo: &Path) -> serde_json::Value {
        let bytes = std::fs::read(photo).unwrap();
        let request = Request::post("/api/v1/checkins")
            .header(header::CONTENT_TYPE, "application/octet-stream");
        let (status, body) = self.send(request, Body::from(bytes)).await;
        assert_eq!(status, StatusCode::OK, "check-in of {} failed: {body}", photo.display());
        body
    }
}

pub async fn send(router: &Router, request: Request<Body>) -> (StatusCode, serde_json::Value) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, json)
}

/// A folder laid out as `facegate enroll` reads it: one subfolder per
/// person, holding the first `per_person` of their training photos.
pub fn enrol_folder(people: &[&str], per_person: usize) -> tempfile::TempDir {
    let folder = tempfile::tempdir().unwrap();
    for person in people {
        let dir = folder.path().join(person);
        std::fs::create_dir(&dir).unwrap();
        for photo in photos("train", person).iter().take(per_person) {
            std::fs::copy(photo, dir.join(photo.file_name().unwrap())).unwrap();
        }
    }
    folder
}

/// A `multipart/form-data` body.
pub struct Multipart {
    boundary: String,
    body: Vec<u8>,
}

impl Multipart {
    pub fn new() -> Self {
        Self { boundary: "facegate-test-boundary-7d93".to_owned(), body: Vec::new() }
    }

    pub fn text(&mut self, name: &str, value: &str) -> &mut Self {
        let part = format!(
            "--{}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n",
            self.boundary
        );
        self.body.extend_from_slice(part.as_bytes());
        self
    }

    pub fn file(&mut self, name: &str, path: &Path) -> &mut Self {
        let file_name = path.file_name().unwrap().to_string_lossy();
        self.bytes(name, &file_name, &std::fs::read(path).unwrap())
    }

    pub fn bytes(&mut self, name: &str, file_name: &str, bytes: &[u8]) -> &mut Self {
        let head = format!(
            "--{}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file_name}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n",
            self.boundary
        );
        self.body.extend_from_slice(head.as_bytes());
        self.body.extend_from_slice(bytes);
        self.body.extend_from_slice(b"\r\n");
        self
    }

    pub fn content_type(&self) -> String {
        format!("multipart/form-data; boundary={}", self.boundary)
    }

    pub fn request(&self, uri: &str) -> axum::http::request::Builder {
        Request::post(uri).header(header::CONTENT_TYPE, self.content_type())
    }

    pub fn body(&self) -> Body {
        let mut body = self.body.clone();
        body.extend_from_slice(format!("--{}--\r\n", self.boundary).as_bytes());
        Body::from(body)
    }

    pub fn into_bytes(self) -> Vec<u8> {
        let mut body = self.body;
        body.extend_from_slice(format!("--{}--\r\n", self.boundary).as_bytes());
        body
    }
}

/// A `facegate serve` process on a free loopback port, for tests that need
/// a real process (to kill it, say). Its site directory is a stub: these
/// tests use the JSON API only.
pub struct ServerProcess {
    pub child: std::process::Child,
    pub client: Client,
}

/// An HTTP client for a [`ServerProcess`], with its session token.
#[derive(Clone, Debug)]
pub struct Client {
    pub addr: std::net::SocketAddr,
    pub token: String,
}

impl ServerProcess {
    pub fn start(data_dir: &Path, site_dir: &Path) -> Self {
        Self::start_with(data_dir, site_dir, &[], None)
    }

    /// Starts with extra `facegate serve` arguments, and its log (stderr,
    /// at debug level) in `log` when given.
    pub fn start_with(
        data_dir: &Path,
        site_dir: &Path,
        extra: &[&str],
        log: Option<&Path>,
    ) -> Self {
        std::fs::create_dir_all(site_dir).unwrap();
        std::fs::write(site_dir.join("hash.txt"), "js: a\nwasm: b\ncss: c\n").unwrap();
        let addr = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap()
        };
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_facegate"))
            .args(["serve", "--addr", &addr.to_string(), "--detector", "mtcnn"])
            .arg("--site-root")
            .arg(site_dir)
            .env("FACEGATE_DATA_DIR", data_dir)
            .env("FACEGATE_ADMIN_PASSWORD_HASH", hash_password(ADMIN_PASSWORD).unwrap())
            .args(extra)
            .env("RUST_LOG", if log.is_some() { "debug" } else { "warn" })
            .stdout(std::process::Stdio::null())
            .stderr(match log {
                Some(path) => std::process::Stdio::from(std::fs::File::create(path).unwrap()),
                None => std::process::Stdio::inherit(),
            })
            .spawn()
            .unwrap();
        let mut server = Self { child, client: Client { addr, token: String::new() } };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if let Ok((200, _)) = server.client.request("GET", "/api/v1/ready", None, &[]) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the server did not become ready");
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("the server exited: {status}");
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let login = format!(r#"{{"password": "{ADMIN_PASSWORD}"}}"#);
        let (status, body) = server
            .client
            .request("POST", "/api/v1/session", Some("application/json"), login.as_bytes())
            .unwrap();
        assert_eq!(status, 200, "login failed: {body}");
        server.client.token = body["token"].as_str().unwrap().to_owned();
        server
    }

    /// Kills the process with SIGKILL: no shutdown code runs.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Client {
    /// One HTTP/1.1 request; the status and the JSON body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> std::io::Result<(u16, serde_json::Value)> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(self.addr)?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(60)))?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if let Some(content_type) = content_type {
            head.push_str(&format!("Content-Type: {content_type}\r\n"));
        }
        if !self.token.is_empty() {
            head.push_str(&format!("Authorization: Bearer {}\r\n", self.token));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let text = String::from_utf8_lossy(&response);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| std::io::Error::other("no HTTP status line"))?;
        let (headers, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let body = if headers.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            dechunk(body)
        } else {
            body.to_owned()
        };
        Ok((status, serde_json::from_str(&body).unwrap_or(serde_json::Value::Null)))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

/// The five-person proof, on whatever store `open` opens (twice, for the
/// restart): enrol four people's train photos, a held-out fifth person is a
/// stranger; enrol them too, and all 25 val photos are recognised with the
/// right name; after a restart the gallery gives the same answers.
pub async fn five_people_round_trip<F, Fut>(open: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = TestApi>,
{
    let api = open().await;

    // Four people first; the fifth is a stranger until enrolled.
    let stranger = "madonna";
    for person in PEOPLE.iter().filter(|p| **p != stranger) {
        let (status, report) = api.enrol(person, &photos("train", person)).await;
        assert_eq!(status, StatusCode::CREATED, "{person}: {report}");
        let accepted =
            report["photos"].as_array().unwrap().iter().filter(|p| p["accepted"] == true).count();
        assert!(accepted >= 5, "{person}: only {accepted} photos accepted: {report}");
    }
    for photo in photos("val", stranger) {
        let result = api.check_in(&photo).await;
        assert_eq!(
            result["status"],
            "unknown",
            "{} was taken for someone: {result}",
            photo.display()
        );
        assert!(result["check_in"].is_null(), "an unknown face is not logged by default");
    }

    let (status, report) = api.enrol(stranger, &photos("train", stranger)).await;
    assert_eq!(status, StatusCode::CREATED, "{report}");
    let mut answers = BTreeMap::new();
    for person in PEOPLE {
        for photo in photos("val", person) {
            let result = api.check_in(&photo).await;
            assert_eq!(result["status"], "recognised", "{}: {result}", photo.display());
            assert_eq!(result["person_name"], person, "{}: {result}", photo.display());
            assert!(result["check_in"]["id"].is_string(), "a recognised check-in is logged");
            answers.insert(photo, result["person_id"].clone());
        }
    }
    assert_eq!(answers.len(), 25);

    let (status, log) = api.send(Request::get("/api/v1/checkins?limit=100"), Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(log["check_ins"].as_array().unwrap().len(), 25);

    // A restart loads the gallery from the store and gives the same answers.
    drop(api);
    let api = open().await;
    assert_eq!(api.service.gallery().people(), 5);
    for (photo, person_id) in &answers {
        assert_eq!(&api.check_in(photo).await["person_id"], person_id, "{}", photo.display());
    }
}
