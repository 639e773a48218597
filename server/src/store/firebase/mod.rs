//! The Firebase store: records in Cloud Firestore and photos in Cloud
//! Storage, both over their REST APIs (see `README.md` beside this file for
//! the data layout, the indexes it needs and how to run it locally).
//!
//! Write order keeps the contract of [`Store`]: photos are uploaded first and
//! the Firestore commit that records them follows; when the commit fails the
//! uploads are deleted again. A deletion commits Firestore first and deletes
//! objects afterwards. An interruption leaves at most objects (or, past one
//! commit, documents) that nothing reaches, which
//! [`FirebaseStore::sweep_orphans`] removes.
//!
//! Firestore applies at most [`MAX_WRITES_PER_COMMIT`] writes atomically.
//! Larger changes are split and ordered so that readers still see a person
//! whole or not at all: an enrolment commits the faces first and the person
//! document last (faces without a person are ignored everywhere), a deletion
//! commits the person document's removal first. Adding more than 499 faces to
//! an existing person is the one change that readers may see in part.

mod auth;
mod config;
mod firestore;
mod http;
mod storage;

#[cfg(test)]
pub(crate) mod emulators;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use app::model::{CheckIn, Person, Photo};
use async_trait::async_trait;
use serde_json::{Value, json};
use tracing::instrument;

pub use self::config::FirebaseConfig;
pub use self::firestore::MAX_WRITES_PER_COMMIT;
pub use self::http::{FirebaseError, RetryPolicy};

use self::auth::{Auth, TokenSource};
use self::firestore::{Doc, Firestore, value};
use self::http::{Caller, Http};
use self::storage::Storage;
use super::{
    CheckInQuery, FaceRecord, LogRetention, NewCheckIn, NewFace, Store, StoreError, new_id, now_ms,
};

/// Firestore's largest `findNearest` result.
pub const MAX_NEAREST: u32 = 1000;

/// Firestore's largest vector.
pub const MAX_VECTOR_DIMENSIONS: usize = 2048;

/// FaceGate's records in Firestore and photos in Cloud Storage.
#[derive(Clone)]
pub struct FirebaseStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: FirebaseConfig,
    firestore: Firestore,
    storage: Storage,
}

/// A face found by [`FirebaseStore::find_nearest`], with its dot product with
/// the query (the cosine similarity, for normalised embeddings).
#[derive(Clone, Debug, PartialEq)]
pub struct NearestFace {
    pub face: FaceRecord,
    pub score: f32,
}

/// What [`FirebaseStore::sweep_orphans`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Face documents whose person is gone.
    pub faces: usize,
    /// Check-ins that still pointed at a deleted person, now anonymous.
    pub check_ins: usize,
    /// Photo and thumbnail objects that no document refers to.
    pub objects: usize,
}

fn store_error(error: FirebaseError) -> StoreError {
    match error {
        FirebaseError::Decode { .. } => StoreError::Corrupt(error.to_string()),
        _ => StoreError::Unavailable(error.to_string()),
    }
}

fn person_path(person_id: &str) -> String {
    format!("people/{person_id}")
}

fn face_path(person_id: &str, face_id: &str) -> String {
    format!("people/{person_id}/faces/{face_id}")
}

fn check_in_path(check_in_id: &str) -> String {
    format!("checkins/{check_in_id}")
}

fn photo_object(person_id: &str, photo_id: &str) -> String {
    format!("people/{person_id}/{photo_id}.jpg")
}

fn thumbnail_object(check_in_id: &str) -> String {
    format!("checkins/{check_in_id}.jpg")
}

fn field(path: &str) -> Value {
    json!({ "fieldPath": path })
}

fn equals(path: &str, value: Value) -> Value {
    json!({ "fieldFilter": { "field": field(path), "op": "EQUAL", "value": value } })
}

/// The structured query over every `faces` collection (one per person).
fn all_faces_query() -> Value {
    json!({ "from": [{ "collectionId": "faces", "allDescendants": true }] })
}

impl FirebaseStore {
    /// Connects to Firestore and Cloud Storage as `config` says, checks that
    /// both answer (a refusal names the credential and project), and, if
    /// configured, sweeps orphans. With the Storage emulator the bucket is
    /// created when missing; production buckets are made in the console.
    pub async fn connect(config: FirebaseConfig) -> Result<Self, StoreError> {
        let http = Http::new(&config).map_err(store_error)?;
        let both_emulated =
            config.firestore_emulator.is_some() && config.storage_emulator.is_some();
        let service_account = match &config.credentials {
            Some(path) if !both_emulated => {
                Some(Arc::new(TokenSource::from_file(path, http.clone()).map_err(store_error)?))
            }
            _ => None,
        };
        let needs_key = || {
            StoreError::Unavailable(
                FirebaseError::Config(
                    "GOOGLE_APPLICATION_CREDENTIALS must name a service-account key file \
                     (or set FIRESTORE_EMULATOR_HOST and STORAGE_EMULATOR_HOST)"
                        .to_owned(),
                )
                .to_string(),
            )
        };
        let firestore_auth = match (&config.firestore_emulator, &service_account) {
            (Some(_), _) => Auth::EmulatorOwner,
            (None, Some(source)) => Auth::ServiceAccount(source.clone()),
            (None, None) => return Err(needs_key()),
        };
        let storage_auth = match (&config.storage_emulator, &service_account) {
            (Some(_), _) => Auth::Anonymous,
            (None, Some(source)) => Auth::ServiceAccount(source.clone()),
            (None, None) => return Err(needs_key()),
        };
        let caller = |auth: &Auth| Caller {
            credential: auth.describe(),
            project: config.project_id.clone(),
        };
        let firestore = Firestore::new(
            http.clone(),
            firestore_auth.clone(),
            caller(&firestore_auth),
            &config.firestore_base(),
            &config.database,
            config.page_size,
        );
        let storage = Storage::new(
            http,
            storage_auth.clone(),
            caller(&storage_auth),
            &config.storage_base(),
            &config.bucket,
        );

        if config.storage_emulator.is_some() {
            storage.create_bucket().await.map_err(store_error)?;
        }
        firestore.get("people/.facegate-connect-check").await.map_err(store_error)?;
        storage.probe().await.map_err(store_error)?;

        let store = Self { inner: Arc::new(Inner { config, firestore, storage }) };
        if store.inner.config.sweep_at_connect {
            let swept = store.sweep_orphans().await?;
            if swept != SweepReport::default() {
                tracing::info!(
                    faces = swept.faces,
                    check_ins = swept.check_ins,
                    objects = swept.objects,
                    "removed what interrupted writes left behind"
                );
            }
        }
        Ok(store)
    }

    /// The configuration this store was connected with.
    pub fn config(&self) -> &FirebaseConfig {
        &self.inner.config
    }

    /// The `limit` stored faces whose embeddings have the largest dot product
    /// with `embedding`, best first, through Firestore's `findNearest`
    /// (`DOT_PRODUCT` over the `embedding` vector field of the `faces`
    /// collection group). Production needs the vector index in `README.md`.
    /// Rejects more than [`MAX_VECTOR_DIMENSIONS`] dimensions or a `limit`
    /// outside `1..=MAX_NEAREST`.
    #[instrument(skip_all, fields(limit))]
    pub async fn find_nearest(
        &self,
        embedding: &[f32],
        limit: u32,
    ) -> Result<Vec<NearestFace>, StoreError> {
        if embedding.is_empty() || embedding.len() > MAX_VECTOR_DIMENSIONS {
            return Err(StoreError::Unavailable(format!(
                "findNearest takes 1 to {MAX_VECTOR_DIMENSIONS} dimensions, not {}",
                embedding.len()
            )));
        }
        if !(1..=MAX_NEAREST).contains(&limit) {
            return Err(StoreError::Unavailable(format!(
                "findNearest returns 1 to {MAX_NEAREST} faces, not {limit}"
            )));
        }
        let mut query = all_faces_query();
        query["findNearest"] = json!({
            "vectorField": field("embedding"),
            "queryVector": value::vector(embedding),
            "distanceMeasure": "DOT_PRODUCT",
            "limit": limit,
            "distanceResultField": "nearest_score",
        });
        let docs = self.inner.firestore.find_nearest(&query).await.map_err(store_error)?;
        let names = self.inner.names_of(&docs).await?;

        let mut nearest = Vec::with_capacity(docs.len());
        for doc in docs {
            #[expect(clippy::cast_possible_truncation, reason = "scores are f32 everywhere")]
            let score = doc.opt_double("nearest_score").map_err(store_error)?.unwrap_or(0.0) as f32;
            if let Some(face) = face_record(&doc, &names)? {
                nearest.push(NearestFace { face, score });
            }
        }
        Ok(nearest)
    }

    /// Removes what interrupted writes leave behind, once it is older than
    /// the configured grace period (so that a write still in progress on
    /// another server is left alone): face documents whose person is gone
    /// (with their photos), check-ins still linked to a deleted person (made
    /// anonymous and stripped of their thumbnail, the stricter retention), and
    /// photo or thumbnail objects that no document refers to. `connect` runs
    /// it unless `sweep_at_connect` is off.
    #[instrument(skip_all)]
    pub async fn sweep_orphans(&self) -> Result<SweepReport, StoreError> {
        let inner = &self.inner;
        let grace_ms = i64::try_from(inner.config.sweep_grace.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now_ms().saturating_sub(grace_ms);
        let mut report = SweepReport::default();

        let people: HashSet<String> = inner
            .people_docs(&["created_ms"])
            .await?
            .iter()
            .map(|doc| doc.id().to_owned())
            .collect();
        let mut query = all_faces_query();
        query["select"] = json!({ "fields": [field("photo_object"), field("created_ms")] });
        query["orderBy"] = json!([{ "field": field("__name__") }]);
        let faces =
            inner.firestore.query_pages(&query, &["__name__"], None).await.map_err(store_error)?;

        let mut kept_photos = HashSet::new();
        let mut orphan_docs = Vec::new();
        let mut orphan_objects = Vec::new();
        let mut orphan_people = BTreeSet::new();
        for face in &faces {
            let object = face.string("photo_object").map_err(store_error)?;
            let person = face.parent_id().unwrap_or_default();
            if people.contains(person) || face.integer("created_ms").map_err(store_error)? > cutoff
            {
                kept_photos.insert(object);
            } else {
                orphan_docs.push(json!({ "delete": face.name }));
                orphan_objects.push(object);
                orphan_people.insert(person.to_owned());
            }
        }

        // Check-ins left linked by a deletion whose later commits failed.
        let mut check_in_writes = Vec::new();
        for person in &orphan_people {
            for check_in in inner.check_ins_of(person).await? {
                check_in_writes.push(anonymise(&check_in, LogRetention::ForgetNames));
                if let Some(object) =
                    check_in.opt_string("thumbnail_object").map_err(store_error)?
                {
                    orphan_objects.push(object);
                }
            }
        }
        report.check_ins = check_in_writes.len();
        report.faces = orphan_docs.len();
        check_in_writes.extend(orphan_docs);
        inner.commit_in_order(&check_in_writes).await.map_err(|(_, error)| store_error(error))?;
        report.objects += orphan_objects.len();
        inner.storage.delete_all(&orphan_objects).await;

        let thumbs_query = json!({
            "from": [{ "collectionId": "checkins" }],
            "where": equals("thumbnail", value::boolean(true)),
            "select": { "fields": [field("thumbnail_object")] },
            "orderBy": [{ "field": field("__name__") }],
        });
        let thumbs = inner
            .firestore
            .query_pages(&thumbs_query, &["__name__"], None)
            .await
            .map_err(store_error)?;
        let mut kept: HashSet<String> = kept_photos;
        for thumb in thumbs {
            if let Some(object) = thumb.opt_string("thumbnail_object").map_err(store_error)? {
                kept.insert(object);
            }
        }
        let mut stray = Vec::new();
        for prefix in ["people/", "checkins/"] {
            for object in inner.storage.list(prefix).await.map_err(store_error)? {
                if !kept.contains(&object.name) && object.created_ms <= cutoff {
                    stray.push(object.name);
                }
            }
        }
        report.objects += stray.len();
        inner.storage.delete_all(&stray).await;
        Ok(report)
    }
}

/// The write that unlinks a check-in from its person.
fn anonymise(check_in: &Doc, retention: LogRetention) -> Value {
    let mut fields = json!({
        "person_id": value::null(),
        "thumbnail": value::boolean(false),
        "thumbnail_object": value::null(),
    });
    let mut mask = vec!["person_id", "thumbnail", "thumbnail_object"];
    if retention == LogRetention::ForgetNames {
        fields["person_name"] = value::null();
        mask.push("person_name");
    }
    json!({
        "update": { "name": check_in.name, "fields": fields },
        "updateMask": { "fieldPaths": mask },
    })
}

fn to_person(doc: &Doc) -> Result<Person, StoreError> {
    let photos = doc.integer("photos").map_err(store_error)?;
    Ok(Person {
        id: doc.id().to_owned(),
        name: doc.string("name").map_err(store_error)?,
        created_ms: doc.integer("created_ms").map_err(store_error)?,
        photos: u32::try_from(photos)
            .map_err(|_| StoreError::Corrupt(format!("a photo count of {photos}")))?,
        last_check_in_ms: doc.opt_integer("last_check_in_ms").map_err(store_error)?,
        cover_photo_id: doc.opt_string("cover_photo_id").map_err(store_error)?,
    })
}

/// The record of a face document, or `None` when its person is gone (an
/// enrolment still in progress, or the rest of an interrupted deletion).
fn face_record(
    doc: &Doc,
    names: &HashMap<String, String>,
) -> Result<Option<FaceRecord>, StoreError> {
    let person_id = doc.string("person_id").map_err(store_error)?;
    let Some(person_name) = names.get(&person_id) else {
        return Ok(None);
    };
    Ok(Some(FaceRecord {
        face_id: doc.id().to_owned(),
        person_id,
        person_name: person_name.clone(),
        photo_id: doc.string("photo_id").map_err(store_error)?,
        model: doc.string("model").map_err(store_error)?,
        embedding: doc.vector("embedding").map_err(store_error)?,
        detector: doc.string("detector").map_err(store_error)?,
        face_box: face_box(&doc.doubles("box").map_err(store_error)?)?,
    }))
}

#[expect(clippy::cast_possible_truncation, reason = "boxes are stored from f32")]
fn face_box(values: &[f64]) -> Result<[f32; 4], StoreError> {
    match values {
        [x1, y1, x2, y2] => Ok([*x1 as f32, *y1 as f32, *x2 as f32, *y2 as f32]),
        other => Err(StoreError::Corrupt(format!("a face box has {} numbers, not 4", other.len()))),
    }
}

fn to_check_in(doc: &Doc) -> Result<CheckIn, StoreError> {
    #[expect(clippy::cast_possible_truncation, reason = "scores are stored from f32")]
    let score = doc.opt_double("score").map_err(store_error)?.map(|score| score as f32);
    Ok(CheckIn {
        id: doc.id().to_owned(),
        at_ms: doc.integer("at_ms").map_err(store_error)?,
        person_id: doc.opt_string("person_id").map_err(store_error)?,
        person_name: doc.opt_string("person_name").map_err(store_error)?,
        score,
        detector: doc.string("detector").map_err(store_error)?,
        has_thumbnail: doc.boolean("thumbnail").map_err(store_error)?,
    })
}

/// A face on its way into the store, with its new ids.
struct Prepared {
    photo_id: String,
    face_id: String,
    face: NewFace,
}

impl Inner {
    async fn person_doc(&self, person_id: &str) -> Result<Doc, StoreError> {
        self.firestore
            .get(&person_path(person_id))
            .await
            .map_err(store_error)?
            .ok_or_else(|| StoreError::PersonNotFound(person_id.to_owned()))
    }

    async fn person_exists(&self, person_id: &str) -> Result<bool, StoreError> {
        Ok(self.firestore.get(&person_path(person_id)).await.map_err(store_error)?.is_some())
    }

    async fn people_docs(&self, mask: &[&str]) -> Result<Vec<Doc>, StoreError> {
        self.firestore.list("people", mask).await.map_err(store_error)
    }

    /// The names of the people the face documents `faces` belong to.
    async fn names_of(&self, faces: &[Doc]) -> Result<HashMap<String, String>, StoreError> {
        let ids: BTreeSet<String> =
            faces.iter().filter_map(|doc| doc.opt_string("person_id").ok().flatten()).collect();
        let mut names = HashMap::new();
        for id in ids {
            if let Some(doc) = self.firestore.get(&person_path(&id)).await.map_err(store_error)? {
                names.insert(id, doc.string("name").map_err(store_error)?);
            }
        }
        Ok(names)
    }

    async fn check_ins_of(&self, person_id: &str) -> Result<Vec<Doc>, StoreError> {
        let query = json!({
            "from": [{ "collectionId": "checkins" }],
            "where": equals("person_id", value::string(person_id)),
            "orderBy": [{ "field": field("__name__") }],
        });
        self.firestore.query_pages(&query, &["__name__"], None).await.map_err(store_error)
    }

    /// Uploads the objects a few at a time; on failure, deletes whatever was
    /// uploaded and returns the first error.
    async fn upload_all(
        self: &Arc<Self>,
        objects: Vec<(String, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        const IN_FLIGHT: usize = 8;
        let names: Vec<String> = objects.iter().map(|(name, _)| name.clone()).collect();
        let mut pending = objects.into_iter();
        let mut running = tokio::task::JoinSet::new();
        let mut failure = None;
        loop {
            while failure.is_none() && running.len() < IN_FLIGHT {
                let Some((name, bytes)) = pending.next() else { break };
                let inner = self.clone();
                running.spawn(async move { inner.storage.upload(&name, &bytes).await });
            }
            let Some(finished) = running.join_next().await else { break };
            let outcome = finished
                .map_err(|e| StoreError::Unavailable(format!("an upload task failed: {e}")))
                .and_then(|uploaded| uploaded.map_err(store_error));
            if let Err(error) = outcome {
                failure.get_or_insert(error);
            }
        }
        match failure {
            None => Ok(()),
            Some(error) => {
                self.storage.delete_all(&names).await;
                Err(error)
            }
        }
    }

    /// Commits `writes` in order, at most [`MAX_WRITES_PER_COMMIT`] at a
    /// time. On failure, says how many commits were applied before it.
    async fn commit_in_order(&self, writes: &[Value]) -> Result<(), (usize, FirebaseError)> {
        for (applied, chunk) in writes.chunks(MAX_WRITES_PER_COMMIT).enumerate() {
            self.firestore.commit(chunk).await.map_err(|error| (applied, error))?;
        }
        Ok(())
    }

    /// Uploads the photos of `faces`, then commits their face documents
    /// followed by `last` (the person's own write), and returns their
    /// records. Whatever fails is undone: the uploads, and documents of
    /// earlier commits when the change took more than one.
    async fn store_faces(
        self: &Arc<Self>,
        person_id: &str,
        person_name: &str,
        faces: Vec<Prepared>,
        last: Value,
    ) -> Result<Vec<FaceRecord>, StoreError> {
        let now = now_ms();
        let objects: Vec<(String, Vec<u8>)> = faces
            .iter()
            .map(|prepared| {
                (photo_object(person_id, &prepared.photo_id), prepared.face.photo_jpeg.clone())
            })
            .collect();
        let object_names: Vec<String> = objects.iter().map(|(name, _)| name.clone()).collect();
        self.upload_all(objects).await?;

        let mut writes: Vec<Value> =
            faces.iter().map(|prepared| self.face_write(person_id, prepared, now)).collect();
        writes.push(last);
        // One commit when it fits, with the person's write first so that it
        // is the commit's probe; otherwise the person's write goes last.
        if writes.len() <= MAX_WRITES_PER_COMMIT {
            writes.rotate_right(1);
        }
        if let Err((applied, error)) = self.commit_in_order(&writes).await {
            if matches!(error, FirebaseError::Unconfirmed { .. }) {
                tracing::warn!(%error, "an enrolment's outcome is unknown; a later sweep tidies up if it failed");
            } else {
                let undo: Vec<Value> = writes[..applied * MAX_WRITES_PER_COMMIT]
                    .iter()
                    .filter_map(|write| {
                        write["update"]["name"].as_str().map(|name| json!({ "delete": name }))
                    })
                    .collect();
                if let Err((_, undo_error)) = self.commit_in_order(&undo).await {
                    tracing::warn!(error = %undo_error, "could not undo part of an enrolment; the next sweep does");
                }
                self.storage.delete_all(&object_names).await;
            }
            // Only adding faces can meet a missing person (deleted meanwhile).
            return Err(if error.has_code("NOT_FOUND") || error.has_code("FAILED_PRECONDITION") {
                StoreError::PersonNotFound(person_id.to_owned())
            } else {
                store_error(error)
            });
        }

        Ok(faces
            .into_iter()
            .map(|prepared| FaceRecord {
                face_id: prepared.face_id,
                person_id: person_id.to_owned(),
                person_name: person_name.to_owned(),
                photo_id: prepared.photo_id,
                model: prepared.face.model,
                embedding: prepared.face.embedding,
                detector: prepared.face.detector,
                face_box: prepared.face.face_box,
            })
            .collect())
    }

    fn face_write(&self, person_id: &str, prepared: &Prepared, now: i64) -> Value {
        let face = &prepared.face;
        let face_box: Vec<Value> =
            face.face_box.iter().map(|&v| value::double(f64::from(v))).collect();
        json!({
            "update": {
                "name": self.firestore.name(&face_path(person_id, &prepared.face_id)),
                "fields": {
                    "person_id": value::string(person_id),
                    "photo_id": value::string(&prepared.photo_id),
                    "photo_object": value::string(&photo_object(person_id, &prepared.photo_id)),
                    "upload_sha256": value::string(&face.upload_sha256),
                    "width": value::integer(face.width.into()),
                    "height": value::integer(face.height.into()),
                    "created_ms": value::integer(now),
                    "model": value::string(&face.model),
                    "detector": value::string(&face.detector),
                    "box": { "arrayValue": { "values": face_box } },
                    "embedding": value::vector(&face.embedding),
                },
            },
            "currentDocument": { "exists": false },
        })
    }
}

fn prepare(faces: Vec<NewFace>) -> Vec<Prepared> {
    faces.into_iter().map(|face| Prepared { photo_id: new_id(), face_id: new_id(), face }).collect()
}

#[async_trait]
impl Store for FirebaseStore {
    fn backend(&self) -> String {
        let config = &self.inner.config;
        let emulated = if config.firestore_emulator.is_some() { ", emulated" } else { "" };
        format!("firebase ({}, gs://{}{emulated})", config.project_id, config.bucket)
    }

    #[instrument(skip_all, fields(faces = faces.len()))]
    async fn create_person(
        &self,
        name: &str,
        faces: Vec<NewFace>,
    ) -> Result<(Person, Vec<FaceRecord>), StoreError> {
        let faces = prepare(faces);
        let person = Person {
            id: new_id(),
            name: name.to_owned(),
            created_ms: now_ms(),
            photos: u32::try_from(faces.len()).unwrap_or(u32::MAX),
            last_check_in_ms: None,
            cover_photo_id: faces.iter().map(|prepared| prepared.photo_id.clone()).min(),
        };
        let write = json!({
            "update": {
                "name": self.inner.firestore.name(&person_path(&person.id)),
                "fields": {
                    "name": value::string(&person.name),
                    "created_ms": value::integer(person.created_ms),
                    "photos": value::integer(person.photos.into()),
                    "last_check_in_ms": value::null(),
                    "cover_photo_id": value::optional(person.cover_photo_id.as_deref(), value::string),
                },
            },
            "currentDocument": { "exists": false },
        });
        let records = self.inner.store_faces(&person.id, name, faces, write).await?;
        Ok((person, records))
    }

    #[instrument(skip_all, fields(faces = faces.len()))]
    async fn add_faces(
        &self,
        person_id: &str,
        faces: Vec<NewFace>,
    ) -> Result<Vec<FaceRecord>, StoreError> {
        let person = to_person(&self.inner.person_doc(person_id).await?)?;
        let faces = prepare(faces);
        let count = i64::try_from(faces.len()).unwrap_or(i64::MAX);
        let mut fields = json!({});
        let mut mask: Vec<&str> = Vec::new();
        if person.cover_photo_id.is_none()
            && let Some(cover) = faces.iter().map(|prepared| &prepared.photo_id).min()
        {
            fields["cover_photo_id"] = value::string(cover);
            mask.push("cover_photo_id");
        }
        let write = json!({
            "update": { "name": self.inner.firestore.name(&person_path(person_id)), "fields": fields },
            "updateMask": { "fieldPaths": mask },
            "updateTransforms": [{ "fieldPath": "photos", "increment": value::integer(count) }],
            "currentDocument": { "exists": true },
        });
        self.inner.store_faces(person_id, &person.name, faces, write).await
    }

    #[instrument(skip_all)]
    async fn rename_person(&self, person_id: &str, name: &str) -> Result<Person, StoreError> {
        let write = json!({
            "update": {
                "name": self.inner.firestore.name(&person_path(person_id)),
                "fields": { "name": value::string(name) },
            },
            "updateMask": { "fieldPaths": ["name"] },
            "currentDocument": { "exists": true },
        });
        match self.inner.firestore.commit(&[write]).await {
            Err(error) if error.has_code("NOT_FOUND") || error.has_code("FAILED_PRECONDITION") => {
                return Err(StoreError::PersonNotFound(person_id.to_owned()));
            }
            other => other.map_err(store_error)?,
        }
        self.person(person_id).await
    }

    #[instrument(skip_all)]
    async fn delete_person(
        &self,
        person_id: &str,
        retention: LogRetention,
    ) -> Result<(), StoreError> {
        let inner = &self.inner;
        let person = inner.person_doc(person_id).await?;
        let faces = inner
            .firestore
            .list(&format!("{}/faces", person_path(person_id)), &["photo_object"])
            .await
            .map_err(store_error)?;
        let check_ins = inner.check_ins_of(person_id).await?;

        // The person goes first: once that commit is applied, nobody sees them
        // again, even if a later commit of a large deletion fails.
        let mut writes = vec![json!({ "delete": person.name })];
        let mut objects = Vec::new();
        for check_in in &check_ins {
            writes.push(anonymise(check_in, retention));
            if let Some(object) = check_in.opt_string("thumbnail_object").map_err(store_error)? {
                objects.push(object);
            }
        }
        for face in &faces {
            writes.push(json!({ "delete": face.name }));
            objects.push(face.string("photo_object").map_err(store_error)?);
        }
        inner.commit_in_order(&writes).await.map_err(|(applied, error)| {
            if applied > 0 {
                tracing::warn!(%error, "a deletion stopped part-way; the next sweep finishes it");
            }
            store_error(error)
        })?;

        inner.storage.delete_all(&objects).await;
        Ok(())
    }

    async fn person(&self, person_id: &str) -> Result<Person, StoreError> {
        to_person(&self.inner.person_doc(person_id).await?)
    }

    async fn people(&self) -> Result<Vec<Person>, StoreError> {
        let mut people = self
            .inner
            .people_docs(&[])
            .await?
            .iter()
            .map(to_person)
            .collect::<Result<Vec<_>, _>>()?;
        // As SQLite's NOCASE: ASCII letters fold, others compare as they are.
        people.sort_by(|a, b| {
            (a.name.to_ascii_lowercase(), &a.id).cmp(&(b.name.to_ascii_lowercase(), &b.id))
        });
        Ok(people)
    }

    async fn photos(&self, person_id: &str) -> Result<Vec<Photo>, StoreError> {
        self.inner.person_doc(person_id).await?;
        let faces = self
            .inner
            .firestore
            .list(
                &format!("{}/faces", person_path(person_id)),
                &["photo_id", "upload_sha256", "width", "height", "created_ms"],
            )
            .await
            .map_err(store_error)?;
        let dimension = |doc: &Doc, key: &str| -> Result<u32, StoreError> {
            let value = doc.integer(key).map_err(store_error)?;
            u32::try_from(value)
                .map_err(|_| StoreError::Corrupt(format!("a photo {key} of {value}")))
        };
        let mut photos = faces
            .iter()
            .map(|doc| {
                Ok(Photo {
                    id: doc.string("photo_id").map_err(store_error)?,
                    person_id: person_id.to_owned(),
                    sha256: doc.string("upload_sha256").map_err(store_error)?,
                    width: dimension(doc, "width")?,
                    height: dimension(doc, "height")?,
                    created_ms: doc.integer("created_ms").map_err(store_error)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        photos.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        Ok(photos)
    }

    async fn photo_jpeg(&self, photo_id: &str) -> Result<Vec<u8>, StoreError> {
        let mut query = all_faces_query();
        query["where"] = equals("photo_id", value::string(photo_id));
        query["select"] = json!({ "fields": [field("person_id"), field("photo_object")] });
        query["limit"] = json!(1);
        let docs = self.inner.firestore.run_query(&query).await.map_err(store_error)?;
        let not_found = || StoreError::PhotoNotFound(photo_id.to_owned());
        let doc = docs.first().ok_or_else(not_found)?;
        if !self.inner.person_exists(&doc.string("person_id").map_err(store_error)?).await? {
            return Err(not_found());
        }
        let object = doc.string("photo_object").map_err(store_error)?;
        self.inner
            .storage
            .download(&object)
            .await
            .map_err(store_error)?
            .ok_or_else(|| StoreError::Corrupt(format!("photo {photo_id} has no stored image")))
    }

    async fn photo_owner(&self, upload_sha256: &str) -> Result<Option<String>, StoreError> {
        let mut query = all_faces_query();
        query["where"] = equals("upload_sha256", value::string(upload_sha256));
        query["select"] = json!({ "fields": [field("person_id")] });
        query["limit"] = json!(20);
        for doc in self.inner.firestore.run_query(&query).await.map_err(store_error)? {
            let person_id = doc.string("person_id").map_err(store_error)?;
            if self.inner.person_exists(&person_id).await? {
                return Ok(Some(person_id));
            }
        }
        Ok(None)
    }

    #[instrument(skip_all, fields(faces))]
    async fn all_faces(&self) -> Result<Vec<FaceRecord>, StoreError> {
        let names: HashMap<String, String> = self
            .inner
            .people_docs(&["name"])
            .await?
            .iter()
            .map(|doc| Ok((doc.id().to_owned(), doc.string("name").map_err(store_error)?)))
            .collect::<Result<_, StoreError>>()?;
        let mut query = all_faces_query();
        query["select"] = json!({ "fields": [
            field("person_id"),
            field("photo_id"),
            field("model"),
            field("embedding"),
            field("detector"),
            field("box"),
        ] });
        query["orderBy"] = json!([{ "field": field("__name__") }]);
        let docs = self
            .inner
            .firestore
            .query_pages(&query, &["__name__"], None)
            .await
            .map_err(store_error)?;

        let mut faces = Vec::with_capacity(docs.len());
        for doc in &docs {
            if let Some(face) = face_record(doc, &names)? {
                faces.push(face);
            }
        }
        tracing::Span::current().record("faces", faces.len());
        Ok(faces)
    }

    #[instrument(skip_all)]
    async fn record_check_in(&self, check_in: NewCheckIn) -> Result<CheckIn, StoreError> {
        let inner = &self.inner;
        let id = new_id();
        let thumbnail = check_in.thumbnail_jpeg.as_ref().map(|_| thumbnail_object(&id));
        if let (Some(object), Some(jpeg)) = (&thumbnail, &check_in.thumbnail_jpeg) {
            inner.upload_all(vec![(object.clone(), jpeg.clone())]).await?;
        }

        let mut writes = vec![json!({
            "update": {
                "name": inner.firestore.name(&check_in_path(&id)),
                "fields": {
                    "at_ms": value::integer(check_in.at_ms),
                    "person_id": value::optional(check_in.person_id.as_deref(), value::string),
                    "person_name": value::optional(check_in.person_name.as_deref(), value::string),
                    "score": value::optional(check_in.score, |score| value::double(f64::from(score))),
                    "detector": value::string(&check_in.detector),
                    "thumbnail": value::boolean(thumbnail.is_some()),
                    "thumbnail_object": value::optional(thumbnail.as_deref(), value::string),
                },
            },
            "currentDocument": { "exists": false },
        })];
        if let Some(person_id) = &check_in.person_id {
            writes.push(json!({
                "update": { "name": inner.firestore.name(&person_path(person_id)), "fields": {} },
                "updateMask": { "fieldPaths": [] },
                "updateTransforms": [{ "fieldPath": "last_check_in_ms", "maximum": value::integer(check_in.at_ms) }],
                "currentDocument": { "exists": true },
            }));
        }
        if let Err(error) = inner.firestore.commit(&writes).await {
            if !matches!(error, FirebaseError::Unconfirmed { .. }) {
                inner.storage.delete_all(thumbnail.as_slice()).await;
            }
            return Err(
                match (
                    &check_in.person_id,
                    error.has_code("NOT_FOUND") || error.has_code("FAILED_PRECONDITION"),
                ) {
                    (Some(person_id), true) => StoreError::PersonNotFound(person_id.clone()),
                    _ => store_error(error),
                },
            );
        }

        Ok(check_in.stored(id, thumbnail.is_some()))
    }

    async fn check_ins(&self, query: &CheckInQuery) -> Result<Vec<CheckIn>, StoreError> {
        let mut filters = Vec::new();
        if let Some(person_id) = &query.person_id {
            filters.push(equals("person_id", value::string(person_id)));
        }
        let range = [("GREATER_THAN_OR_EQUAL", query.from_ms), ("LESS_THAN", query.to_ms)];
        for (op, bound) in range {
            if let Some(bound) = bound {
                filters.push(json!({ "fieldFilter": { "field": field("at_ms"), "op": op, "value": value::integer(bound) } }));
            }
        }
        let mut structured = json!({
            "from": [{ "collectionId": "checkins" }],
            "orderBy": [
                { "field": field("at_ms"), "direction": "DESCENDING" },
                { "field": field("__name__"), "direction": "DESCENDING" },
            ],
        });
        if !filters.is_empty() {
            structured["where"] = json!({ "compositeFilter": { "op": "AND", "filters": filters } });
        }
        let max = query.limit.map(|limit| limit as usize);
        let docs = self
            .inner
            .firestore
            .query_pages(&structured, &["at_ms", "__name__"], max)
            .await
            .map_err(store_error)?;
        docs.iter().map(to_check_in).collect()
    }

    async fn check_in_thumbnail(&self, check_in_id: &str) -> Result<Vec<u8>, StoreError> {
        let not_found = || StoreError::ThumbnailNotFound(check_in_id.to_owned());
        let doc = self
            .inner
            .firestore
            .get(&check_in_path(check_in_id))
            .await
            .map_err(store_error)?
            .ok_or_else(not_found)?;
        let Some(object) = doc
            .opt_string("thumbnail_object")
            .map_err(store_error)?
            .filter(|_| doc.boolean("thumbnail").unwrap_or(false))
        else {
            return Err(not_found());
        };
        self.inner.storage.download(&object).await.map_err(store_error)?.ok_or_else(|| {
            StoreError::Corrupt(format!("check-in {check_in_id} has no stored thumbnail"))
        })
    }
}

#[cfg(test)]
mod tests;
