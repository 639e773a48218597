//! The Firebase store against the Firestore and Cloud Storage emulators:
//! paging, commits split past Firestore's 500-write limit, failures part-way
//! through an enrolment, and `findNearest`. The emulators are taken from
//! `FIRESTORE_EMULATOR_HOST` / `STORAGE_EMULATOR_HOST` or started for this
//! run (see `src/store/firebase/emulators.rs`).
//!
//! The `#[ignore]`d `measures_gallery_load_and_enrolment_throughput` prints
//! figures: `cargo test --release -p server --test firebase -- --ignored --nocapture`.

#[path = "../src/store/firebase/emulators.rs"]
mod emulators;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use server::store::firebase::{FirebaseConfig, FirebaseStore};
use server::store::{CheckInQuery, LogRetention, NewCheckIn, NewFace, Store, StoreError};

fn face(seed: u32) -> NewFace {
    let mut embedding = vec![0.0_f32; 128];
    embedding[seed as usize % 128] = 0.8;
    embedding[(seed as usize / 128 + 1) % 128] += 0.6;
    NewFace {
        photo_jpeg: seed.to_le_bytes().to_vec(),
        upload_sha256: format!("{seed:064x}"),
        width: 640,
        height: 480,
        embedding,
        model: "test-model".to_owned(),
        detector: "test-detector".to_owned(),
        face_box: [1.0, 2.0, 3.0, 4.0],
    }
}

fn faces(range: std::ops::Range<u32>) -> Vec<NewFace> {
    range.map(face).collect()
}

fn config() -> FirebaseConfig {
    let (firestore, storage) = emulators::hosts();
    let name = emulators::unique_name("fgt");
    FirebaseConfig::for_emulators(name.clone(), name, firestore, storage)
}

/// The names of every object in the store's bucket, asked of the Storage
/// emulator directly.
async fn objects(config: &FirebaseConfig) -> Vec<String> {
    let (_, storage) = emulators::hosts();
    let url = format!("{}/storage/v1/b/{}/o", storage.trim_end_matches('/'), config.bucket);
    let listing: serde_json::Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    let items = listing["items"].as_array().cloned().unwrap_or_default();
    items.iter().map(|item| item["name"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn listings_page_past_one_page() {
    let mut config = config();
    config.page_size = 100;
    let store = FirebaseStore::connect(config).await.unwrap();
    let (person, _) = store.create_person("Many", faces(0..250)).await.unwrap();
    store.create_person("Other", faces(250..251)).await.unwrap();
    for at in 0..230 {
        let check_in = NewCheckIn {
            at_ms: at,
            person_id: None,
            person_name: None,
            score: None,
            detector: "test".to_owned(),
            thumbnail_jpeg: None,
        };
        store.record_check_in(check_in).await.unwrap();
    }

    let all = store.all_faces().await.unwrap();
    assert_eq!(all.len(), 251);
    let mut ids: Vec<_> = all.iter().map(|f| f.face_id.clone()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 251, "a page was read twice");
    assert_eq!(store.photos(&person.id).await.unwrap().len(), 250);
    let log = store.check_ins(&CheckInQuery::default()).await.unwrap();
    assert_eq!(log.len(), 230);
    assert!(log.windows(2).all(|pair| pair[0].at_ms > pair[1].at_ms));
    let limited = CheckInQuery { limit: Some(150), ..CheckInQuery::default() };
    assert_eq!(store.check_ins(&limited).await.unwrap().len(), 150);
}

#[tokio::test]
async fn changes_past_500_writes_are_split_and_complete() {
    let config = config();
    let store = FirebaseStore::connect(config.clone()).await.unwrap();

    let (person, records) = store.create_person("Crowd", faces(0..620)).await.unwrap();
    assert_eq!((person.photos, records.len()), (620, 620));
    assert_eq!(store.person(&person.id).await.unwrap(), person);
    store.add_faces(&person.id, faces(620..1130)).await.unwrap();
    assert_eq!(store.person(&person.id).await.unwrap().photos, 1130);
    assert_eq!(store.all_faces().await.unwrap().len(), 1130);
    assert_eq!(objects(&config).await.len(), 1130);

    store.delete_person(&person.id, LogRetention::ForgetNames).await.unwrap();
    assert!(matches!(store.person(&person.id).await, Err(StoreError::PersonNotFound(_))));
    assert!(store.all_faces().await.unwrap().is_empty());
    assert!(objects(&config).await.is_empty());
}

/// What the failing stand-in does to a request.
type Rule = fn(&Method, &str, usize) -> bool;

/// A stand-in in front of an emulator: it passes requests through, except
/// those for which `fail` (given the method, path and query, and how many
/// requests of that kind came before) says to answer 503.
#[derive(Clone)]
struct Failing {
    upstream: String,
    fail: Rule,
    seen: Arc<AtomicUsize>,
}

async fn pass_or_fail(State(proxy): State<Failing>, request: Request) -> Response {
    let method = request.method().clone();
    let target =
        request.uri().path_and_query().map(|pq| pq.as_str().to_owned()).unwrap_or_default();
    let headers = request.headers().clone();
    let body: Bytes = axum::body::to_bytes(request.into_body(), usize::MAX).await.unwrap();
    let seen = proxy.seen.fetch_add(1, Ordering::SeqCst);
    if (proxy.fail)(&method, &target, seen) {
        return (StatusCode::SERVICE_UNAVAILABLE, "failing on purpose").into_response();
    }

    let mut forwarded =
        reqwest::Client::new().request(method, format!("{}{target}", proxy.upstream)).body(body);
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            forwarded = forwarded.header(name, value);
        }
    }
    let answer = forwarded.send().await.unwrap();
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
    (status, answer.bytes().await.unwrap()).into_response()
}

/// Starts a [`Failing`] stand-in for `upstream` and returns its `http://host:port`.
async fn failing(upstream: &str, fail: Rule) -> String {
    let upstream = if upstream.starts_with("http") {
        upstream.to_owned()
    } else {
        format!("http://{upstream}")
    };
    let proxy = Failing { upstream, fail, seen: Arc::default() };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(pass_or_fail).with_state(proxy);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}")
}

#[tokio::test]
async fn a_storage_failure_mid_enrolment_leaves_no_person_and_no_objects() {
    let mut config = config();
    // Uploads fail from the fourth request on (the bucket check and two
    // uploads pass), and keep failing through the retries.
    config.storage_emulator = Some(
        failing(&emulators::hosts().1, |method, target, seen| {
            *method == Method::POST && target.starts_with("/upload/") && seen >= 4
        })
        .await,
    );
    let store = FirebaseStore::connect(config.clone()).await.unwrap();

    let refused = store.create_person("Half", faces(0..6)).await;
    assert!(matches!(refused, Err(StoreError::Unavailable(_))), "{refused:?}");
    assert!(store.people().await.unwrap().is_empty());
    assert!(store.all_faces().await.unwrap().is_empty());
    assert_eq!(store.photo_owner(&face(0).upload_sha256).await.unwrap(), None);
    assert_eq!(objects(&config).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_firestore_failure_after_the_uploads_leaves_no_objects() {
    let mut config = config();
    config.firestore_emulator = Some(
        failing(&emulators::hosts().0, |method, target, _| {
            *method == Method::POST && target.ends_with(":commit")
        })
        .await,
    );
    let store = FirebaseStore::connect(config.clone()).await.unwrap();

    let refused = store.create_person("Ghost", faces(0..3)).await;
    assert!(matches!(refused, Err(StoreError::Unavailable(_))), "{refused:?}");
    assert!(store.people().await.unwrap().is_empty());
    assert_eq!(objects(&config).await, Vec::<String>::new());
}

#[tokio::test]
async fn find_nearest_ranks_faces_by_dot_product() {
    let store = FirebaseStore::connect(config()).await.unwrap();
    let (ada, _) = store.create_person("Ada", faces(0..3)).await.unwrap();
    let (bob, _) = store.create_person("Bob", faces(10..12)).await.unwrap();

    let nearest = store.find_nearest(&face(11).embedding, 3).await.unwrap();
    assert_eq!(nearest.len(), 3);
    assert_eq!(nearest[0].face.person_id, bob.id);
    assert_eq!(nearest[0].face.person_name, "Bob");
    assert_eq!(nearest[0].face.embedding, face(11).embedding);
    assert!((nearest[0].score - 1.0).abs() < 1e-5, "{}", nearest[0].score);
    assert!(nearest.windows(2).all(|pair| pair[0].score >= pair[1].score));
    // face(1) shares one coordinate with the query: 1.4 x 0.6.
    assert_eq!(nearest[1].face.person_id, ada.id);
    assert!((nearest[1].score - 0.84).abs() < 1e-5, "{}", nearest[1].score);

    assert!(store.find_nearest(&[], 3).await.is_err());
    assert!(store.find_nearest(&face(1).embedding, 1001).await.is_err());
}

#[tokio::test]
#[ignore = "a benchmark: prints figures, takes about a minute"]
async fn measures_gallery_load_and_enrolment_throughput() {
    let config = FirebaseConfig { page_size: 300, ..config() };
    let store = FirebaseStore::connect(config.clone()).await.unwrap();

    let started = Instant::now();
    for person in 0..100 {
        store
            .create_person(&format!("p{person}"), faces(person * 100..person * 100 + 100))
            .await
            .unwrap();
    }
    let batched = started.elapsed();
    let started = Instant::now();
    for one in 0..200 {
        store
            .create_person(&format!("single{one}"), faces(20_000 + one..20_001 + one))
            .await
            .unwrap();
    }
    let single = started.elapsed();

    let started = Instant::now();
    let loaded = store.all_faces().await.unwrap();
    let load = started.elapsed();
    assert_eq!(loaded.len(), 10_200);
    let large_pages =
        FirebaseStore::connect(FirebaseConfig { page_size: 1000, ..config }).await.unwrap();
    let started = Instant::now();
    assert_eq!(large_pages.all_faces().await.unwrap().len(), 10_200);
    let load_large_pages = started.elapsed();

    // A writes-per-second figure: one photo upload plus one face document per
    // face, and one person document per person.
    let report = format!(
        "firebase emulators: all_faces loaded {} embeddings (128-d) in {:.2} s with pages of \
         300, {:.2} s with pages of 1000; \
         enrolment of 100 people x 100 faces: {:.0} faces/s ({:.0} store writes/s); \
         200 single-face enrolments: {:.1} people/s",
        loaded.len(),
        load.as_secs_f64(),
        load_large_pages.as_secs_f64(),
        10_000.0 / batched.as_secs_f64(),
        (10_000.0 * 2.0 + 100.0) / batched.as_secs_f64(),
        200.0 / single.as_secs_f64(),
    );
    #[expect(clippy::print_stderr, reason = "a benchmark reports its figures")]
    {
        eprintln!("{report}");
    }
}

/// The five-person proof with FaceGate's service on the emulators: all 25
/// val photos recognised, a stranger unknown, and a restart that loads the
/// gallery from Firestore gives the same answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_people_are_recognised_on_firebase_and_after_a_restart() {
    let config = config();
    let open = || async {
        let store = FirebaseStore::connect(config.clone()).await.unwrap();
        support::TestApi::with_store(Arc::new(store)).await
    };
    support::five_people_round_trip(open).await;
}

/// `facegate migrate` copies an embedded store into Firebase and back, and
/// copies nothing twice when run again.
#[test]
fn migrate_copies_a_store_to_firebase_and_back_and_resumes() {
    let (firestore, storage) = emulators::hosts();
    let project = emulators::unique_name("mig");
    let (first, second) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let folder = support::enrol_folder(&["jerry_seinfeld", "mindy_kaling"], 4);
    let facegate = |data: &std::path::Path, args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_facegate"))
            .args(args)
            .env("FACEGATE_DATA_DIR", data)
            .env("FIRESTORE_EMULATOR_HOST", firestore)
            .env("STORAGE_EMULATOR_HOST", storage)
            .env("FACEGATE_FIREBASE_PROJECT", &project)
            .env("FACEGATE_FIREBASE_BUCKET", &project)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "facegate {args:?} failed: {stderr}");
        (String::from_utf8_lossy(&output.stdout).into_owned(), stderr)
    };
    facegate(first.path(), &["enroll", folder.path().to_str().unwrap()]);
    let val = support::photos("val", "mindy_kaling");
    facegate(first.path(), &["identify", val[0].to_str().unwrap()]);

    let (_, report) = facegate(first.path(), &["migrate", "--to", "firebase"]);
    assert!(report.contains("copied 2 new person(s)"), "{report}");
    let (_, again) = facegate(first.path(), &["migrate", "--to", "firebase"]);
    assert!(again.contains("copied 0 new person(s), 0 face(s)"), "not resumable: {again}");

    let (_, back) = facegate(second.path(), &["migrate", "--to", "sqlite"]);
    assert!(back.contains("copied 2 new person(s)"), "{back}");
    let people = |data: &std::path::Path| {
        let (json, _) = facegate(data, &["people", "--json"]);
        let people: serde_json::Value = serde_json::from_str(&json).unwrap();
        people
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["name"].as_str().unwrap().to_owned(), p["photos"].as_u64().unwrap()))
            .collect::<Vec<_>>()
    };
    assert_eq!(people(first.path()), people(second.path()));
    let (identified, _) = facegate(second.path(), &["identify", val[0].to_str().unwrap()]);
    assert!(identified.contains("\"person_name\":\"mindy kaling\""), "{identified}");
}
