//! The contract every [`Store`] backend must keep, written once and run
//! against each backend through [`store_contract_tests!`](crate::store_contract_tests).

use super::{CheckInQuery, LogRetention, NewCheckIn, NewFace, Store, StoreError};

/// A face with a distinct photo and embedding for each `seed`.
pub fn face(seed: u8) -> NewFace {
    let mut embedding = vec![0.0; 128];
    embedding[usize::from(seed) % 128] = 1.0;
    NewFace {
        photo_jpeg: vec![0xFF, 0xD8, seed, seed, 0xFF, 0xD9],
        upload_sha256: format!("{seed:064x}"),
        width: 640,
        height: 480,
        embedding,
        model: "test-model".to_owned(),
        detector: "test-detector".to_owned(),
        face_box: [10.0, 20.0, 110.0, 140.0],
    }
}

fn check_in(at_ms: i64, person: Option<(&str, &str)>, thumbnail: bool) -> NewCheckIn {
    NewCheckIn {
        at_ms,
        person_id: person.map(|(id, _)| id.to_owned()),
        person_name: person.map(|(_, name)| name.to_owned()),
        score: person.map(|_| 0.8),
        detector: "mtcnn".to_owned(),
        thumbnail_jpeg: thumbnail.then(|| vec![0xFF, 0xD8, 1, 0xFF, 0xD9]),
    }
}

pub async fn creates_people_with_their_faces(store: &dyn Store) {
    let (person, faces) =
        store.create_person("Ada Lovelace", vec![face(1), face(2)]).await.unwrap();
    assert_eq!(person.name, "Ada Lovelace");
    assert_eq!(person.photos, 2);
    assert_eq!(person.last_check_in_ms, None);
    assert_eq!(faces.len(), 2);

    let stored = store.all_faces().await.unwrap();
    assert_eq!(stored.len(), 2);
    assert!(stored.iter().all(|f| f.person_id == person.id && f.person_name == "Ada Lovelace"));
    let mut embeddings: Vec<_> = stored.iter().map(|f| f.embedding.clone()).collect();
    embeddings.sort_by(|a, b| b.partial_cmp(a).unwrap());
    assert_eq!(embeddings, vec![face(1).embedding, face(2).embedding]);

    let photos = store.photos(&person.id).await.unwrap();
    assert_eq!(photos.len(), 2);
    for photo in &photos {
        let jpeg = store.photo_jpeg(&photo.id).await.unwrap();
        assert!(jpeg == face(1).photo_jpeg || jpeg == face(2).photo_jpeg);
    }
    assert_eq!(store.person(&person.id).await.unwrap(), person);
}

pub async fn lists_people_by_name(store: &dyn Store) {
    for name in ["carol", "Alice", "bob"] {
        store.create_person(name, vec![face(name.len() as u8)]).await.unwrap();
    }
    let names: Vec<_> = store.people().await.unwrap().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["Alice", "bob", "carol"]);
}

pub async fn renames_people_everywhere(store: &dyn Store) {
    let (person, _) = store.create_person("Bob", vec![face(3)]).await.unwrap();
    let renamed = store.rename_person(&person.id, "Robert").await.unwrap();
    assert_eq!(renamed.name, "Robert");
    assert_eq!(store.all_faces().await.unwrap()[0].person_name, "Robert");
    assert!(matches!(
        store.rename_person("missing", "X").await,
        Err(StoreError::PersonNotFound(_))
    ));
}

pub async fn adds_faces_to_existing_people_only(store: &dyn Store) {
    let (person, _) = store.create_person("Cy", vec![face(4)]).await.unwrap();
    let added = store.add_faces(&person.id, vec![face(5)]).await.unwrap();
    assert_eq!(added.len(), 1);
    assert_eq!(store.person(&person.id).await.unwrap().photos, 2);
    assert!(matches!(
        store.add_faces("missing", vec![face(6)]).await,
        Err(StoreError::PersonNotFound(_))
    ));
    assert_eq!(store.all_faces().await.unwrap().len(), 2);
}

pub async fn finds_the_owner_of_a_photo_hash(store: &dyn Store) {
    let (person, _) = store.create_person("Di", vec![face(7)]).await.unwrap();
    assert_eq!(store.photo_owner(&face(7).upload_sha256).await.unwrap(), Some(person.id));
    assert_eq!(store.photo_owner(&face(8).upload_sha256).await.unwrap(), None);
}

pub async fn deletion_erases_photos_faces_and_thumbnails(store: &dyn Store) {
    let (gone, _) = store.create_person("Eve", vec![face(9), face(10)]).await.unwrap();
    let (kept, _) = store.create_person("Fay", vec![face(11)]).await.unwrap();
    let photos = store.photos(&gone.id).await.unwrap();
    let visit =
        store.record_check_in(check_in(1_000, Some((&gone.id, "Eve")), true)).await.unwrap();
    store.record_check_in(check_in(2_000, Some((&kept.id, "Fay")), false)).await.unwrap();

    store.delete_person(&gone.id, LogRetention::ForgetNames).await.unwrap();

    assert!(matches!(store.person(&gone.id).await, Err(StoreError::PersonNotFound(_))));
    for photo in photos {
        assert!(matches!(store.photo_jpeg(&photo.id).await, Err(StoreError::PhotoNotFound(_))));
    }
    assert!(store.all_faces().await.unwrap().iter().all(|f| f.person_id == kept.id));
    assert_eq!(store.photo_owner(&face(9).upload_sha256).await.unwrap(), None);
    assert!(matches!(
        store.check_in_thumbnail(&visit.id).await,
        Err(StoreError::ThumbnailNotFound(_))
    ));
    let log = store.check_ins(&CheckInQuery::default()).await.unwrap();
    let anonymous = log.iter().find(|c| c.id == visit.id).unwrap();
    assert_eq!((anonymous.person_id.as_deref(), anonymous.person_name.as_deref()), (None, None));
    assert!(!anonymous.has_thumbnail);
    assert!(matches!(
        store.delete_person(&gone.id, LogRetention::ForgetNames).await,
        Err(StoreError::PersonNotFound(_))
    ));
}

pub async fn deletion_can_keep_names_in_the_log(store: &dyn Store) {
    let (person, _) = store.create_person("Gil", vec![face(12)]).await.unwrap();
    store.record_check_in(check_in(1_000, Some((&person.id, "Gil")), false)).await.unwrap();
    store.delete_person(&person.id, LogRetention::KeepNames).await.unwrap();
    let log = store.check_ins(&CheckInQuery::default()).await.unwrap();
    assert_eq!(log[0].person_id, None);
    assert_eq!(log[0].person_name.as_deref(), Some("Gil"));
}

pub async fn lists_check_ins_newest_first_with_filters(store: &dyn Store) {
    let (person, _) = store.create_person("Hal", vec![face(13)]).await.unwrap();
    for at in [1_000, 3_000, 2_000] {
        store.record_check_in(check_in(at, Some((&person.id, "Hal")), false)).await.unwrap();
    }
    store.record_check_in(check_in(2_500, None, false)).await.unwrap();

    let times =
        |log: Vec<app::model::CheckIn>| log.into_iter().map(|c| c.at_ms).collect::<Vec<_>>();
    assert_eq!(
        times(store.check_ins(&CheckInQuery::default()).await.unwrap()),
        [3_000, 2_500, 2_000, 1_000]
    );
    let mine = CheckInQuery { person_id: Some(person.id.clone()), ..CheckInQuery::default() };
    assert_eq!(times(store.check_ins(&mine).await.unwrap()), [3_000, 2_000, 1_000]);
    let window =
        CheckInQuery { from_ms: Some(2_000), to_ms: Some(3_000), ..CheckInQuery::default() };
    assert_eq!(times(store.check_ins(&window).await.unwrap()), [2_500, 2_000]);
    let first = CheckInQuery { limit: Some(1), ..CheckInQuery::default() };
    assert_eq!(times(store.check_ins(&first).await.unwrap()), [3_000]);
    assert_eq!(store.person(&person.id).await.unwrap().last_check_in_ms, Some(3_000));
}

pub async fn keeps_check_in_thumbnails(store: &dyn Store) {
    let with = store.record_check_in(check_in(1_000, None, true)).await.unwrap();
    let without = store.record_check_in(check_in(2_000, None, false)).await.unwrap();
    assert!(with.has_thumbnail);
    assert_eq!(store.check_in_thumbnail(&with.id).await.unwrap(), [0xFF, 0xD8, 1, 0xFF, 0xD9]);
    assert!(matches!(
        store.check_in_thumbnail(&without.id).await,
        Err(StoreError::ThumbnailNotFound(_))
    ));
    assert!(matches!(store.photo_jpeg("missing").await, Err(StoreError::PhotoNotFound(_))));
}

/// A check-in that names a person deleted meanwhile (the gallery answered
/// just before the deletion) is refused as not found, not as a store fault.
pub async fn refuses_check_ins_of_people_who_are_gone(store: &dyn Store) {
    let (person, _) = store.create_person("Gone Soon", vec![face(9)]).await.unwrap();
    store.delete_person(&person.id, LogRetention::ForgetNames).await.unwrap();
    let refused =
        store.record_check_in(check_in(1_000, Some((&person.id, "Gone Soon")), true)).await;
    assert!(matches!(refused, Err(StoreError::PersonNotFound(_))), "{refused:?}");
    assert!(store.check_ins(&CheckInQuery::default()).await.unwrap().is_empty());
}

/// Runs the whole contract against a backend. `$make` is a closure taking a
/// fresh temporary folder (a `PathBuf`) and returning a future of an empty store.
#[macro_export]
macro_rules! store_contract_tests {
    ($make:expr) => {
        $crate::store_contract_tests!(@each $make;
            creates_people_with_their_faces,
            lists_people_by_name,
            renames_people_everywhere,
            adds_faces_to_existing_people_only,
            finds_the_owner_of_a_photo_hash,
            deletion_erases_photos_faces_and_thumbnails,
            deletion_can_keep_names_in_the_log,
            lists_check_ins_newest_first_with_filters,
            keeps_check_in_thumbnails,
            refuses_check_ins_of_people_who_are_gone
        );
    };
    (@each $make:expr; $($name:ident),*) => {
        mod contract {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = ($make)(dir.path().to_owned()).await;
                    $crate::store::contract::$name(&store).await;
                }
            )*
        }
    };
}
