//! The store contract and the sweep, against the Firestore and Storage
//! emulators (see `emulators.rs` for how they are found or started).

use std::time::Duration;

use super::*;
use crate::store::contract::face;

/// A store in a project and bucket of its own.
async fn fresh_store() -> FirebaseStore {
    let (firestore, storage) = emulators::hosts();
    let name = emulators::unique_name("fg");
    let config = FirebaseConfig::for_emulators(name.clone(), name, firestore, storage);
    FirebaseStore::connect(config).await.unwrap()
}

crate::store_contract_tests!(|_dir: std::path::PathBuf| fresh_store());

#[tokio::test]
async fn the_sweep_removes_orphans_and_keeps_the_living() {
    let store = fresh_store().await;
    let inner = &store.inner;
    let (kept, _) = store.create_person("Kept", vec![face(1)]).await.unwrap();
    let (gone, _) = store.create_person("Gone", vec![face(2), face(3)]).await.unwrap();
    let visit = store
        .record_check_in(NewCheckIn {
            at_ms: 1_000,
            person_id: Some(gone.id.clone()),
            person_name: Some("Gone".to_owned()),
            score: Some(0.9),
            detector: "test".to_owned(),
            thumbnail_jpeg: Some(vec![1, 2, 3]),
        })
        .await
        .unwrap();
    // What a deletion interrupted after its first commit leaves behind: the
    // person document is gone, their faces, photos and check-in are not.
    inner
        .firestore
        .commit(&[json!({ "delete": inner.firestore.name(&person_path(&gone.id)) })])
        .await
        .unwrap();
    inner.storage.upload("people/nobody/stray.jpg", b"x").await.unwrap();

    // Within the grace period nothing is touched.
    assert_eq!(store.sweep_orphans().await.unwrap(), SweepReport::default());

    let mut config = store.config().clone();
    config.sweep_grace = Duration::ZERO;
    config.sweep_at_connect = false;
    let eager = FirebaseStore::connect(config).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let report = eager.sweep_orphans().await.unwrap();
    assert_eq!(report, SweepReport { faces: 2, check_ins: 1, objects: 4 });

    let objects: Vec<String> =
        inner.storage.list("").await.unwrap().into_iter().map(|object| object.name).collect();
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert!(objects[0].starts_with(&format!("people/{}/", kept.id)));
    assert!(store.all_faces().await.unwrap().iter().all(|f| f.person_id == kept.id));
    let log = store.check_ins(&CheckInQuery::default()).await.unwrap();
    let anonymous = log.iter().find(|c| c.id == visit.id).unwrap();
    assert_eq!((anonymous.person_id.as_ref(), anonymous.person_name.as_ref()), (None, None));
    assert!(!anonymous.has_thumbnail);
    assert_eq!(eager.sweep_orphans().await.unwrap(), SweepReport::default());
}

#[tokio::test]
async fn a_check_in_for_a_missing_person_is_refused_and_leaves_no_thumbnail() {
    let store = fresh_store().await;
    let refused = store
        .record_check_in(NewCheckIn {
            at_ms: 1_000,
            person_id: Some("missing".to_owned()),
            person_name: Some("Nobody".to_owned()),
            score: Some(0.9),
            detector: "test".to_owned(),
            thumbnail_jpeg: Some(vec![1, 2, 3]),
        })
        .await;
    assert!(matches!(refused, Err(StoreError::PersonNotFound(_))), "{refused:?}");
    assert!(store.inner.storage.list("").await.unwrap().is_empty());
    assert!(store.check_ins(&CheckInQuery::default()).await.unwrap().is_empty());
}

#[tokio::test]
async fn embeddings_are_stored_as_firestore_vectors() {
    let store = fresh_store().await;
    let (person, faces) = store.create_person("Vi", vec![face(4)]).await.unwrap();
    let doc = store
        .inner
        .firestore
        .get(&face_path(&person.id, &faces[0].face_id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        doc.fields["embedding"]["mapValue"]["fields"]["__type__"]["stringValue"],
        "__vector__"
    );
    assert_eq!(doc.vector("embedding").unwrap(), face(4).embedding);
    assert_eq!(doc.doubles("box").unwrap(), [10.0, 20.0, 110.0, 140.0]);
}

#[tokio::test]
async fn commits_over_the_limit_are_refused_rather_than_sent() {
    let store = fresh_store().await;
    let writes: Vec<Value> = (0..=MAX_WRITES_PER_COMMIT)
        .map(|i| json!({ "delete": store.inner.firestore.name(&format!("people/p{i}")) }))
        .collect();
    let error = store.inner.firestore.commit(&writes).await.unwrap_err();
    assert!(error.to_string().contains("at most 500"), "{error}");
}
