//! Where people, photos, embeddings and check-ins are kept.
//!
//! [`Store`] is the one interface the rest of the server uses; each backend
//! (the embedded [`sqlite`] store, Firebase) implements it and passes the same
//! contract tests. Every multi-record change is atomic: a person is enrolled
//! with all their faces or not at all, and a deletion erases photos,
//! embeddings and thumbnails together.

pub mod firebase;
pub mod sqlite;

use app::model::{CheckIn, Person, Photo};
use async_trait::async_trait;

/// A face to store with its photo: the photo bytes, their hash, and the
/// embedding computed from it.
#[derive(Clone, Debug)]
pub struct NewFace {
    /// The photo as it will be kept (re-encoded JPEG, orientation applied,
    /// metadata stripped).
    pub photo_jpeg: Vec<u8>,
    /// SHA-256 (hex) of the bytes as uploaded, used to skip duplicates.
    pub upload_sha256: String,
    pub width: u32,
    pub height: u32,
    /// L2-normalised embedding.
    pub embedding: Vec<f32>,
    /// Which recogniser made the embedding, e.g. `facenet-keras-128`.
    pub model: String,
    /// Which detector found the face.
    pub detector: String,
    /// The face box in the photo, `[x1, y1, x2, y2]` in pixels.
    pub face_box: [f32; 4],
}

/// A stored embedding with its owner, as loaded into the gallery.
#[derive(Clone, Debug, PartialEq)]
pub struct FaceRecord {
    pub face_id: String,
    pub person_id: String,
    pub person_name: String,
    pub photo_id: String,
    pub model: String,
    pub embedding: Vec<f32>,
    /// The detector that found the face, and its box `[x1, y1, x2, y2]` in the photo.
    pub detector: String,
    pub face_box: [f32; 4],
}

/// A check-in to log.
#[derive(Clone, Debug)]
pub struct NewCheckIn {
    pub at_ms: i64,
    pub person_id: Option<String>,
    pub person_name: Option<String>,
    pub score: Option<f32>,
    pub detector: String,
    /// A JPEG of the face, kept only when the server is configured to.
    pub thumbnail_jpeg: Option<Vec<u8>>,
}

impl NewCheckIn {
    /// The log entry this becomes once stored under `id`.
    pub fn stored(self, id: String, has_thumbnail: bool) -> CheckIn {
        CheckIn {
            id,
            at_ms: self.at_ms,
            person_id: self.person_id,
            person_name: self.person_name,
            score: self.score,
            detector: self.detector,
            has_thumbnail,
        }
    }
}

/// Which check-ins to list, newest first.
#[derive(Clone, Debug, Default)]
pub struct CheckInQuery {
    pub person_id: Option<String>,
    /// Inclusive lower bound, ms since the epoch.
    pub from_ms: Option<i64>,
    /// Exclusive upper bound, ms since the epoch.
    pub to_ms: Option<i64>,
    pub limit: Option<u32>,
}

/// What a deletion does to the check-in log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogRetention {
    /// Check-ins of a deleted person become anonymous.
    ForgetNames,
    /// Check-ins keep the name the person had (but lose the link and thumbnails).
    KeepNames,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no person with id {0}")]
    PersonNotFound(String),
    #[error("no photo with id {0}")]
    PhotoNotFound(String),
    #[error("no check-in thumbnail with id {0}")]
    ThumbnailNotFound(String),
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The storage backend of FaceGate.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A short name for logs and the settings page, e.g. `sqlite`.
    fn backend(&self) -> String;

    /// Creates a person with their faces, atomically.
    async fn create_person(
        &self,
        name: &str,
        faces: Vec<NewFace>,
    ) -> Result<(Person, Vec<FaceRecord>), StoreError>;

    /// Adds faces to an existing person, atomically.
    async fn add_faces(
        &self,
        person_id: &str,
        faces: Vec<NewFace>,
    ) -> Result<Vec<FaceRecord>, StoreError>;

    async fn rename_person(&self, person_id: &str, name: &str) -> Result<Person, StoreError>;

    /// Erases the person, their photos, embeddings and check-in thumbnails.
    async fn delete_person(
        &self,
        person_id: &str,
        retention: LogRetention,
    ) -> Result<(), StoreError>;

    async fn person(&self, person_id: &str) -> Result<Person, StoreError>;

    /// Everyone, ordered by name.
    async fn people(&self) -> Result<Vec<Person>, StoreError>;

    async fn photos(&self, person_id: &str) -> Result<Vec<Photo>, StoreError>;

    /// The stored JPEG of a photo.
    async fn photo_jpeg(&self, photo_id: &str) -> Result<Vec<u8>, StoreError>;

    /// The person who already has a photo with this upload hash, if any.
    async fn photo_owner(&self, upload_sha256: &str) -> Result<Option<String>, StoreError>;

    /// Every stored embedding, for loading the gallery at start-up.
    async fn all_faces(&self) -> Result<Vec<FaceRecord>, StoreError>;

    async fn record_check_in(&self, check_in: NewCheckIn) -> Result<CheckIn, StoreError>;

    async fn check_ins(&self, query: &CheckInQuery) -> Result<Vec<CheckIn>, StoreError>;

    async fn check_in_thumbnail(&self, check_in_id: &str) -> Result<Vec<u8>, StoreError>;
}

/// A new random identifier: 128 bits as 32 hex digits.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
pub mod contract;
