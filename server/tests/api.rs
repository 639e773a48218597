//! The JSON API on the real models and the five-person photos: enrolment,
//! check-in, strangers, restarts, and the error answers.

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use support::{Multipart, TestApi, photos};
use tower::ServiceExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolled_people_are_recognised_strangers_are_not_and_a_restart_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let open = || async {
        let store = server::store::sqlite::SqliteStore::open(dir.path()).unwrap();
        TestApi::with_store(std::sync::Arc::new(store)).await
    };
    support::five_people_round_trip(open).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_refuses_bad_photos_duplicates_and_lookalikes() {
    let dir = tempfile::tempdir().unwrap();
    let api = TestApi::open(dir.path()).await;
    let jerry = photos("train", "jerry_seinfeld");

    let mut form = Multipart::new();
    form.text("name", "Jerry");
    form.file("photo", &jerry[0]);
    form.file("photo", &jerry[0]);
    form.bytes("photo", "notes.jpg", b"this is not a picture");
    form.bytes("photo", "blank.png", &blank_png());
    let (status, report) = api.send(form.request("/api/v1/people"), form.body()).await;
    assert_eq!(status, StatusCode::CREATED, "{report}");
    let codes: Vec<&str> =
        report["photos"].as_array().unwrap().iter().map(|p| p["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["accepted", "duplicate", "unsupported_image", "no_face"]);
    let jerry_id = report["person"]["id"].as_str().unwrap().to_owned();

    // The same face under another name is refused, naming who it looks like...
    let (status, refused) = api.enrol("Not Jerry", &jerry[1..3]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["error"]["code"], "no_usable_photo");
    assert_eq!(refused["error"]["details"][0]["code"], "looks_like_other_person");
    assert!(refused["error"]["message"].as_str().unwrap().contains("Jerry"), "{refused}");
    // ... unless the admin says they are different people.
    let mut form = Multipart::new();
    form.text("name", "Jerry's twin");
    form.file("photo", &jerry[1]);
    let (status, _) =
        api.send(form.request("/api/v1/people?allow_lookalike=true"), form.body()).await;
    assert_eq!(status, StatusCode::CREATED);

    // Adding more photos of the same person to them is fine.
    let mut form = Multipart::new();
    form.file("photo", &jerry[3]);
    let (status, added) =
        api.send(form.request(&format!("/api/v1/people/{jerry_id}/photos")), form.body()).await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    assert_eq!(added["person"]["photos"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_can_be_renamed_and_deleted_with_everything_they_own() {
    let dir = tempfile::tempdir().unwrap();
    let api = TestApi::open(dir.path()).await;
    let (_, report) = api.enrol("Elton", &photos("train", "elton_john")[..4]).await;
    let id = report["person"]["id"].as_str().unwrap().to_owned();
    let val = photos("val", "elton_john");
    assert_eq!(api.check_in(&val[0]).await["person_name"], "Elton");

    let rename = Request::patch(format!("/api/v1/people/{id}"))
        .header(header::CONTENT_TYPE, "application/json");
    let (status, person) = api.send(rename, Body::from(r#"{"name": "Sir Elton"}"#)).await;
    assert_eq!((status, person["name"].as_str()), (StatusCode::OK, Some("Sir Elton")));
    assert_eq!(api.check_in(&val[1]).await["person_name"], "Sir Elton");

    let (status, listed) =
        api.send(Request::get(format!("/api/v1/people/{id}/photos")), Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    let photo_id = listed["photos"][0]["id"].as_str().unwrap().to_owned();

    let (status, _) =
        api.send(Request::delete(format!("/api/v1/people/{id}")), Body::empty()).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(api.check_in(&val[0]).await["status"], "unknown");
    let (status, error) =
        api.send(Request::get(format!("/api/v1/people/{id}")), Body::empty()).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, _) =
        api.send(Request::get(format!("/api/v1/photos/{photo_id}")), Body::empty()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let stored: Vec<_> = std::fs::read_dir(dir.path().join("photos")).unwrap().collect();
    assert!(stored.is_empty(), "photo files remain after deletion");
    let (_, log) = api.send(Request::get("/api/v1/checkins"), Body::empty()).await;
    assert!(
        log["check_ins"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["person_name"].is_null() && c["person_id"].is_null())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let api = TestApi::open(dir.path()).await;
    let raw = |bytes: &'static [u8]| {
        (
            Request::post("/api/v1/checkins")
                .header(header::CONTENT_TYPE, "application/octet-stream"),
            Body::from(bytes),
        )
    };

    let cases: Vec<(&str, (axum::http::request::Builder, Body), StatusCode, &str)> = vec![
        ("empty body", raw(b""), StatusCode::BAD_REQUEST, "empty_image"),
        (
            "text",
            raw(b"hello, I am not an image"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_image",
        ),
        (
            "truncated PNG",
            raw(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0]),
            StatusCode::BAD_REQUEST,
            "corrupt_image",
        ),
        (
            "unknown detector",
            (Request::post("/api/v1/checkins?detector=haar"), Body::from("x")),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "bad base64",
            (
                Request::post("/api/v1/checkins").header(header::CONTENT_TYPE, "application/json"),
                Body::from(r#"{"image": "***"}"#),
            ),
            StatusCode::BAD_REQUEST,
            "invalid_base64",
        ),
        (
            "unknown person",
            (Request::get("/api/v1/people/nobody"), Body::empty()),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "no name",
            (
                Request::patch("/api/v1/people/nobody")
                    .header(header::CONTENT_TYPE, "application/json"),
                Body::from(r#"{"name": "  "}"#),
            ),
            StatusCode::BAD_REQUEST,
            "invalid_name",
        ),
        (
            "unknown route",
            (Request::get("/api/v1/nothing-here"), Body::empty()),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        // Refusals made by axum itself come in the same shape.
        (
            "a query that does not parse",
            (Request::get("/api/v1/checkins?limit=-1"), Body::empty()),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "JSON where a form is expected",
            (
                Request::post("/api/v1/people").header(header::CONTENT_TYPE, "application/json"),
                Body::from(r#"{"name": "Jerry"}"#),
            ),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "a method the route does not take",
            (Request::delete("/api/v1/health"), Body::empty()),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ];
    for (what, (request, body), status, code) in cases {
        let (got_status, got) = api.send(request, body).await;
        assert_eq!(
            (got_status, got["error"]["code"].as_str()),
            (status, Some(code)),
            "{what}: {got}"
        );
        assert!(
            !got["error"]["message"].as_str().unwrap_or_default().is_empty(),
            "{what}: no message"
        );
    }

    // A photo without a face is a valid answer, not an error.
    let (status, result) = api
        .send(
            Request::post("/api/v1/checkins").header(header::CONTENT_TYPE, "image/png"),
            Body::from(blank_png()),
        )
        .await;
    assert_eq!((status, result["status"].as_str()), (StatusCode::OK, Some("no_face")));

    // Base64, with and without a data: prefix.
    let jpeg = std::fs::read(&photos("val", "madonna")[0]).unwrap();
    let b64 = base64_encode(&jpeg);
    for body in [
        format!(r#"{{"image": "{b64}"}}"#),
        format!(r#"{{"image": "data:image/jpeg;base64,{b64}"}}"#),
    ] {
        let request =
            Request::post("/api/v1/checkins").header(header::CONTENT_TYPE, "application/json");
        let (status, result) = api.send(request, Body::from(body)).await;
        assert_eq!(
            (status, result["status"].as_str()),
            (StatusCode::OK, Some("unknown")),
            "{result}"
        );
    }

    // Without a session, only health and readiness answer.
    let (status, _) =
        support::send(&api.router, Request::get("/api/v1/people").body(Body::empty()).unwrap())
            .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, ready) =
        support::send(&api.router, Request::get("/api/v1/ready").body(Body::empty()).unwrap())
            .await;
    assert_eq!((status, ready["status"].as_str()), (StatusCode::OK, Some("ready")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_description_lists_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let api = TestApi::open(dir.path()).await;
    let (status, doc) = support::send(
        &api.router,
        Request::get("/api/v1/openapi.json").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let source = include_str!("../src/api.rs");
    let routes: Vec<&str> =
        source.split(".route(").skip(1).filter_map(|rest| rest.split('"').nth(1)).collect();
    assert!(routes.len() >= 10, "found only {routes:?}");
    for route in routes {
        assert!(doc["paths"].get(route).is_some(), "{route} is not in openapi.json");
    }
}

fn blank_png() -> Vec<u8> {
    let image = image::RgbImage::from_pixel(320, 240, image::Rgb([128, 128, 128]));
    let mut png = Vec::new();
    image.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
    png
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_open_the_api_until_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let api = TestApi::open(dir.path()).await;
    let people = |key: &str| {
        Request::get("/api/v1/people").header("x-api-key", key).body(Body::empty()).unwrap()
    };
    let (record, secret) = api.keys.create("integration test").unwrap();
    let (status, body) = support::send(&api.router, people(&secret)).await;
    assert_eq!((status, body["people"].is_array()), (StatusCode::OK, true));
    let (status, _) = support::send(&api.router, people("fgk_not-a-key")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    assert!(api.keys.revoke(&record.id).unwrap());
    let (status, body) = support::send(&api.router, people(&secret)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
}

/// Regression: enrolments of the same photos sent at once all passed the
/// duplicate check before any was stored, making several copies of one
/// person, whom check-in then could not tell apart from themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_enrolments_of_the_same_photos_make_one_person() {
    let dir = tempfile::tempdir().unwrap();
    let api = std::sync::Arc::new(TestApi::open(dir.path()).await);
    let mindy = photos("train", "mindy_kaling");
    let attempts = (0..4).map(|_| {
        let (api, mindy) = (api.clone(), mindy[..3].to_vec());
        tokio::spawn(async move { api.enrol("Mindy", &mindy).await })
    });
    let mut statuses = Vec::new();
    for attempt in attempts {
        statuses.push(attempt.await.unwrap().0);
    }
    statuses.sort();
    assert_eq!(
        statuses,
        [
            StatusCode::CREATED,
            StatusCode::UNPROCESSABLE_ENTITY,
            StatusCode::UNPROCESSABLE_ENTITY,
            StatusCode::UNPROCESSABLE_ENTITY
        ]
    );
    let (_, people) = api.send(Request::get("/api/v1/people"), Body::empty()).await;
    assert_eq!(people["people"].as_array().unwrap().len(), 1, "{people}");

    let answer = api.check_in(&photos("val", "mindy_kaling")[0]).await;
    assert_eq!(answer["status"], "recognised", "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_compares_two_photos_at_the_pairwise_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let api = TestApi::open(dir.path()).await;
    let verify = async |a: &std::path::Path, b: &std::path::Path| {
        let mut form = Multipart::new();
        form.file("a", a);
        form.file("b", b);
        let (status, verdict) = api.send(form.request("/api/v1/verify"), form.body()).await;
        assert_eq!(status, StatusCode::OK, "{verdict}");
        verdict
    };
    // Two clear frontal photos (similarity 0.86); some of the set's are far harder.
    let elton = photos("train", "elton_john");
    let pick = |start: &str| {
        elton
            .iter()
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(start))
            .unwrap()
            .clone()
    };
    let (a, b) = (pick("httpiamediaimdbcom"), pick("httpimagesmtvcom"));
    let same = verify(&a, &b).await;
    assert_eq!(same["threshold"].as_f64().unwrap() as f32, server::vision::DEFAULT_MATCH_THRESHOLD);
    assert_eq!(same["same_person"], true, "{same}");
    let different = verify(&a, &photos("train", "madonna")[0]).await;
    assert_eq!(different["same_person"], false, "{different}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_wrong_passwords_lock_the_client_out_and_say_for_how_long() {
    let dir = tempfile::tempdir().unwrap();
    let api = TestApi::open(dir.path()).await;
    let log_in = async |password: &str| {
        let request = Request::post("/api/v1/session")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(format!(r#"{{"password": "{password}"}}"#)))
            .unwrap();
        api.router.clone().oneshot(request).await.unwrap()
    };
    for _ in 0..5 {
        assert_eq!(log_in("guess").await.status(), StatusCode::UNAUTHORIZED);
    }
    let locked = log_in(support::ADMIN_PASSWORD).await;
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(locked.headers()[header::RETRY_AFTER], "60");
}

/// Regression: logging out with `Authorization: Bearer` answered 204 and
/// left the token working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_out_with_a_bearer_token_ends_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let api = TestApi::open(dir.path()).await;
    let (status, _) = api.send(Request::get("/api/v1/people"), Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api.send(Request::delete("/api/v1/session"), Body::empty()).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, refused) = api.send(Request::get("/api/v1/people"), Body::empty()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{refused}");
}
