//! The `facegate` command line on the real models and photos.

mod support;

use std::process::{Command, Output};

fn facegate(data_dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(args)
        .env("FACEGATE_DATA_DIR", data_dir)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn enroll_a_folder_then_identify_list_and_export() {
    let data = tempfile::tempdir().unwrap();
    let folder = support::enrol_folder(&["jerry_seinfeld", "mindy_kaling"], 6);
    std::fs::write(folder.path().join("jerry_seinfeld/notes.jpg"), "not a photo").unwrap();

    let enrolled = facegate(data.path(), &["enroll", folder.path().to_str().unwrap()]);
    let report = String::from_utf8_lossy(&enrolled.stderr);
    assert!(enrolled.status.success(), "{report}");
    assert!(report.contains("of 2 person(s)"), "{report}");
    assert!(report.contains("skipped jerry_seinfeld/notes.jpg: not a supported image"), "{report}");

    // Enrolling the same folder again adds nothing: every photo is a duplicate.
    let again = facegate(data.path(), &["enroll", folder.path().to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("enrolled 0 photo(s)"));

    let people = facegate(data.path(), &["people", "--json"]);
    let people: serde_json::Value = serde_json::from_slice(&people.stdout).unwrap();
    let names: Vec<&str> =
        people.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["jerry seinfeld", "mindy kaling"]);

    let val = support::photos("val", "mindy_kaling");
    let identified = facegate(data.path(), &["identify", val[0].to_str().unwrap()]);
    assert!(identified.status.success());
    let line: serde_json::Value = serde_json::from_slice(&identified.stdout).unwrap();
    assert_eq!(
        (line["status"].as_str(), line["person_name"].as_str()),
        (Some("recognised"), Some("mindy kaling"))
    );

    // identify logs nothing; the CSV has only its header.
    let csv = facegate(data.path(), &["checkins", "--csv"]);
    assert_eq!(
        String::from_utf8_lossy(&csv.stdout),
        "id,time_utc,person_id,person_name,score,detector\r\n"
    );

    let missing = facegate(data.path(), &["identify", "/nonexistent/photo.jpg"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/photo.jpg"));
    let bad_date = facegate(data.path(), &["checkins", "--from", "yesterday"]);
    assert!(!bad_date.status.success());
    assert!(String::from_utf8_lossy(&bad_date.stderr).contains("is not a YYYY-MM-DD date"));
}

#[test]
fn a_busy_port_is_reported_before_anything_loads() {
    let data = tempfile::tempdir().unwrap();
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("hash.txt"), "js: a\nwasm: b\ncss: c\n").unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    // With no models at all, only the port can be the first complaint.
    let missing_models = data.path().join("no-models-here");
    let served = facegate(
        data.path(),
        &[
            "serve",
            "--addr",
            &addr,
            "--site-root",
            site.path().to_str().unwrap(),
            "--models-dir",
            missing_models.to_str().unwrap(),
        ],
    );
    let message = String::from_utf8_lossy(&served.stderr);
    assert!(!served.status.success(), "{message}");
    assert!(message.contains(&format!("cannot listen on {addr}")), "{message}");
}
