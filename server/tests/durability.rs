//! A server killed with SIGKILL in the middle of bulk enrolments loses no
//! committed person and leaves no half-enrolled one, nor a photo file
//! without its record.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use server::service::QualityProblem;
use server::vision::{DecodeLimits, DetectorKind, decode_image};
use support::{Multipart, PEOPLE, ServerProcess, photos};

/// Photos per enrolment request.
const PHOTOS_EACH: usize = 3;

#[test]
fn sigkill_during_bulk_enrolment_loses_nothing_committed_and_leaves_nothing_half_done() {
    let data = tempfile::tempdir().unwrap();
    let site = tempfile::tempdir().unwrap();
    let pool = enrollable_photos();
    let committed = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut serial = 0usize;

    // Kill the server at three different moments of a stream of enrolments.
    for kill_after_ms in [700u64, 1900, 3100] {
        let server = ServerProcess::start(data.path(), site.path());
        let writer = {
            let (client, committed, pool) =
                (server.client.clone(), committed.clone(), pool.clone());
            let first = serial;
            std::thread::spawn(move || {
                let mut serial = first;
                loop {
                    serial += 1;
                    let mut form = Multipart::new();
                    form.text("name", &format!("person {serial:04}"));
                    for k in 0..PHOTOS_EACH {
                        // Bytes after a JPEG's end marker are ignored by decoders, so each
                        // enrolment gets photos of its own (no duplicate is skipped).
                        let mut photo = pool[(serial * PHOTOS_EACH + k) % pool.len()].clone();
                        photo.extend_from_slice(format!("facegate-test-{serial}-{k}").as_bytes());
                        form.bytes("photo", &format!("{serial}-{k}.jpg"), &photo);
                    }
                    let content_type = form.content_type();
                    let body = form.into_bytes();
                    let path = "/api/v1/people?allow_lookalike=true";
                    match client.request("POST", path, Some(&content_type), &body) {
                        Ok((201, report)) => committed
                            .lock()
                            .unwrap()
                            .push(report["person"]["id"].as_str().unwrap().to_owned()),
                        Ok((status, report)) => panic!("enrolment failed with {status}: {report}"),
                        // The connection broke: the server was killed mid-request.
                        Err(_) => return serial,
                    }
                }
            })
        };
        std::thread::sleep(Duration::from_millis(kill_after_ms));
        server.kill();
        serial = writer.join().unwrap();
    }

    let server = ServerProcess::start(data.path(), site.path());
    let (status, listing) = server.client.request("GET", "/api/v1/people", None, &[]).unwrap();
    assert_eq!(status, 200);
    let people = listing["people"].as_array().unwrap();
    let committed = committed.lock().unwrap().clone();
    assert!(
        committed.len() >= 3,
        "too few enrolments finished before the kills: {}",
        committed.len()
    );
    for id in &committed {
        assert!(people.iter().any(|p| p["id"] == id.as_str()), "committed person {id} was lost");
    }
    let mut records = 0;
    for person in people {
        assert_eq!(person["photos"], PHOTOS_EACH, "half-enrolled person: {person}");
        records += PHOTOS_EACH;
    }
    let files = std::fs::read_dir(data.path().join("photos")).unwrap().count();
    assert_eq!(files, records, "photo files and photo records differ");
    let leftovers = std::fs::read_dir(data.path().join("tmp")).unwrap().count();
    assert_eq!(leftovers, 0, "temporary files were left behind");
}

/// The train photos that enrolment accepts (exactly one face, large enough, good quality),
/// so that every request here is expected to store all its photos.
fn enrollable_photos() -> Vec<Vec<u8>> {
    let engine = support::engine();
    let min_face_px = server::service::ServiceConfig::default().min_face_px;
    let pool: Vec<Vec<u8>> = PEOPLE
        .iter()
        .flat_map(|person| photos("train", person))
        .map(|path| std::fs::read(path).unwrap())
        .filter(|bytes| {
            let image = decode_image(bytes, &DecodeLimits::default()).unwrap();
            let faces = engine.detect(&image, DetectorKind::Mtcnn).unwrap();
            faces.len() == 1
                && faces[0].bbox.width() >= min_face_px
                && QualityProblem::of(&engine.quality(&image, &faces)[0]).is_none()
        })
        .collect();
    assert!(pool.len() >= 60, "only {} usable photos", pool.len());
    pool
}
