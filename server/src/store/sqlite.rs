//! The embedded store: SQLite (bundled, WAL) for records and embeddings, and
//! photo files in a data directory, named by content hash.
//!
//! Photo files are written atomically (temporary file, fsync, rename) before
//! the transaction that records them, and removed after the transaction that
//! forgets them. A crash in between leaves at most a file without a record,
//! never a record without its file, and [`SqliteStore::open`] removes such
//! stray files.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use app::model::{CheckIn, Person, Photo};
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::{
    CheckInQuery, FaceRecord, LogRetention, NewCheckIn, NewFace, Store, StoreError, new_id, now_ms,
};

/// Schema migrations, applied in order; `PRAGMA user_version` records how
/// many have run. Never edit a shipped migration: append a new one.
const MIGRATIONS: &[&str] = &[r"
    CREATE TABLE people (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        created_ms  INTEGER NOT NULL
    );
    CREATE TABLE photos (
        id            TEXT PRIMARY KEY,
        person_id     TEXT NOT NULL REFERENCES people(id) ON DELETE CASCADE,
        upload_sha256 TEXT NOT NULL,
        width         INTEGER NOT NULL,
        height        INTEGER NOT NULL,
        created_ms    INTEGER NOT NULL
    );
    CREATE INDEX photos_by_person ON photos(person_id);
    CREATE INDEX photos_by_hash ON photos(upload_sha256);
    CREATE TABLE faces (
        id         TEXT PRIMARY KEY,
        photo_id   TEXT NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
        person_id  TEXT NOT NULL REFERENCES people(id) ON DELETE CASCADE,
        model      TEXT NOT NULL,
        detector   TEXT NOT NULL,
        box_x1 REAL NOT NULL, box_y1 REAL NOT NULL, box_x2 REAL NOT NULL, box_y2 REAL NOT NULL,
        embedding  BLOB NOT NULL
    );
    CREATE INDEX faces_by_person ON faces(person_id);
    CREATE TABLE check_ins (
        id           TEXT PRIMARY KEY,
        at_ms        INTEGER NOT NULL,
        person_id    TEXT REFERENCES people(id) ON DELETE SET NULL,
        person_name  TEXT,
        score        REAL,
        detector     TEXT NOT NULL,
        thumbnail    INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX check_ins_by_time ON check_ins(at_ms);
    CREATE INDEX check_ins_by_person ON check_ins(person_id, at_ms);
"];

/// The embedded store in a data directory.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    db: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (or creates) the store in `dir`, migrates its schema, and removes
    /// photo files that no record points to.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        for sub in ["photos", "thumbs", "tmp"] {
            fs::create_dir_all(dir.join(sub))?;
        }
        // Faces and embeddings are biometric data: only the owner may read them.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        }
        let mut db = Connection::open(dir.join("facegate.sqlite3")).map_err(unavailable)?;
        db.execute_batch(
            // secure_delete: deleted rows (names, embeddings) are overwritten, not
            // left in free pages where a copy of the file would still hold them.
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;
             PRAGMA busy_timeout = 5000; PRAGMA secure_delete = ON;",
        )
        .map_err(unavailable)?;
        migrate(&mut db)?;

        let store = Self { inner: Arc::new(Inner { dir: dir.to_owned(), db: Mutex::new(db) }) };
        store.inner.remove_stray_files()?;
        Ok(store)
    }

    /// Runs `work` on the connection off the async runtime.
    async fn with_db<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner, &mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut db = inner.db.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            work(&inner, &mut db)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
    }
}

fn migrate(db: &mut Connection) -> Result<(), StoreError> {
    let applied: usize =
        db.query_row("PRAGMA user_version", [], |row| row.get(0)).map_err(unavailable)?;
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Corrupt(format!(
            "the database has schema version {applied}, newer than this FaceGate knows ({})",
            MIGRATIONS.len()
        )));
    }
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = db.transaction().map_err(unavailable)?;
        tx.execute_batch(sql).map_err(unavailable)?;
        tx.pragma_update(None, "user_version", version + 1).map_err(unavailable)?;
        tx.commit().map_err(unavailable)?;
    }
    Ok(())
}

fn unavailable(error: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

impl Inner {
    fn photo_path(&self, photo_id: &str) -> PathBuf {
        self.dir.join("photos").join(format!("{photo_id}.jpg"))
    }

    fn thumb_path(&self, check_in_id: &str) -> PathBuf {
        self.dir.join("thumbs").join(format!("{check_in_id}.jpg"))
    }

    /// Writes `bytes` to `path` so that `path` either does not exist or holds
    /// all of them, even across a crash.
    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        let tmp = self.dir.join("tmp").join(new_id());
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        if let Some(parent) = path.parent() {
            fs::File::open(parent)?.sync_all()?;
        }
        Ok(())
    }

    fn remove_files(&self, paths: impl IntoIterator<Item = PathBuf>) {
        for path in paths {
            if let Err(error) = fs::remove_file(&path)
                && error.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), %error, "could not remove a file; it is removed at next start");
            }
        }
    }

    /// Deletes unfinished temporary files and photo or thumbnail files whose
    /// record is gone (left by a crash between file and database work).
    fn remove_stray_files(&self) -> Result<(), StoreError> {
        let db = self.db.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let photo_ids = ids(&db, "SELECT id FROM photos")?;
        let thumb_ids = ids(&db, "SELECT id FROM check_ins WHERE thumbnail = 1")?;
        drop(db);

        let mut removed = 0;
        for (sub, keep) in
            [("photos", Some(&photo_ids)), ("thumbs", Some(&thumb_ids)), ("tmp", None)]
        {
            for entry in fs::read_dir(self.dir.join(sub))? {
                let path = entry?.path();
                let id = path.file_stem().and_then(|stem| stem.to_str()).unwrap_or_default();
                if keep.is_none_or(|keep| !keep.contains(id)) {
                    self.remove_files([path]);
                    removed += 1;
                }
            }
        }
        if removed > 0 {
            tracing::info!(
                files = removed,
                "removed files left without a record by an interrupted write"
            );
        }
        Ok(())
    }
}

fn ids(db: &Connection, sql: &str) -> Result<HashSet<String>, StoreError> {
    let mut statement = db.prepare(sql).map_err(unavailable)?;
    let rows = statement.query_map([], |row| row.get::<_, String>(0)).map_err(unavailable)?;
    rows.collect::<Result<_, _>>().map_err(unavailable)
}

fn embedding_to_blob(embedding: &[f32]) -> Vec<u8> {
    embedding.iter().flat_map(|value| value.to_le_bytes()).collect()
}

fn blob_to_embedding(blob: &[u8]) -> Result<Vec<f32>, StoreError> {
    let (chunks, rest) = blob.as_chunks::<4>();
    if !rest.is_empty() {
        return Err(StoreError::Corrupt(format!("an embedding blob has {} bytes", blob.len())));
    }
    Ok(chunks.iter().map(|bytes| f32::from_le_bytes(*bytes)).collect())
}

const PERSON_COLUMNS: &str = "p.id, p.name, p.created_ms,
    (SELECT COUNT(*) FROM photos WHERE person_id = p.id),
    (SELECT MAX(at_ms) FROM check_ins WHERE person_id = p.id),
    (SELECT id FROM photos WHERE person_id = p.id ORDER BY created_ms, id LIMIT 1)";

fn person_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Person> {
    Ok(Person {
        id: row.get(0)?,
        name: row.get(1)?,
        created_ms: row.get(2)?,
        photos: row.get(3)?,
        last_check_in_ms: row.get(4)?,
        cover_photo_id: row.get(5)?,
    })
}

fn load_person(db: &Connection, person_id: &str) -> Result<Person, StoreError> {
    db.query_row(
        &format!("SELECT {PERSON_COLUMNS} FROM people p WHERE p.id = ?1"),
        [person_id],
        person_from_row,
    )
    .optional()
    .map_err(unavailable)?
    .ok_or_else(|| StoreError::PersonNotFound(person_id.to_owned()))
}

/// Inserts photos and faces inside `tx`; the photo files must already exist.
fn insert_faces(
    tx: &Transaction<'_>,
    person_id: &str,
    person_name: &str,
    faces: &[(String, NewFace)],
) -> Result<Vec<FaceRecord>, StoreError> {
    let now = now_ms();
    let mut records = Vec::with_capacity(faces.len());
    for (photo_id, face) in faces {
        tx.execute(
            "INSERT INTO photos (id, person_id, upload_sha256, width, height, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![photo_id, person_id, face.upload_sha256, face.width, face.height, now],
        )
        .map_err(unavailable)?;
        let face_id = new_id();
        let [x1, y1, x2, y2] = face.face_box;
        tx.execute(
            "INSERT INTO faces (id, photo_id, person_id, model, detector, box_x1, box_y1, box_x2, box_y2, embedding)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![face_id, photo_id, person_id, face.model, face.detector, x1, y1, x2, y2, embedding_to_blob(&face.embedding)],
        )
        .map_err(unavailable)?;
        records.push(FaceRecord {
            face_id,
            person_id: person_id.to_owned(),
            person_name: person_name.to_owned(),
            photo_id: photo_id.clone(),
            model: face.model.clone(),
            embedding: face.embedding.clone(),
            detector: face.detector.clone(),
            face_box: face.face_box,
        });
    }
    Ok(records)
}

impl Inner {
    /// Writes the photo files, then runs `record` in a transaction; if the
    /// transaction fails, the files are removed again.
    fn store_faces<T>(
        &self,
        db: &mut Connection,
        faces: Vec<NewFace>,
        record: impl FnOnce(&Transaction<'_>, &[(String, NewFace)]) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let faces: Vec<(String, NewFace)> =
            faces.into_iter().map(|face| (new_id(), face)).collect();
        let paths: Vec<PathBuf> = faces.iter().map(|(id, _)| self.photo_path(id)).collect();
        let written = faces
            .iter()
            .zip(&paths)
            .try_for_each(|((_, face), path)| self.write_atomically(path, &face.photo_jpeg));
        let outcome = written.and_then(|()| {
            let tx = db.transaction().map_err(unavailable)?;
            let value = record(&tx, &faces)?;
            tx.commit().map_err(unavailable)?;
            Ok(value)
        });
        if outcome.is_err() {
            self.remove_files(paths);
        }
        outcome
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> String {
        format!("sqlite ({})", self.inner.dir.display())
    }

    async fn create_person(
        &self,
        name: &str,
        faces: Vec<NewFace>,
    ) -> Result<(Person, Vec<FaceRecord>), StoreError> {
        let name = name.to_owned();
        self.with_db(move |inner, db| {
            let person_id = new_id();
            inner.store_faces(db, faces, |tx, faces| {
                tx.execute(
                    "INSERT INTO people (id, name, created_ms) VALUES (?1, ?2, ?3)",
                    params![person_id, name, now_ms()],
                )
                .map_err(unavailable)?;
                let records = insert_faces(tx, &person_id, &name, faces)?;
                Ok((load_person(tx, &person_id)?, records))
            })
        })
        .await
    }

    async fn add_faces(
        &self,
        person_id: &str,
        faces: Vec<NewFace>,
    ) -> Result<Vec<FaceRecord>, StoreError> {
        let person_id = person_id.to_owned();
        self.with_db(move |inner, db| {
            let person = load_person(db, &person_id)?;
            inner.store_faces(db, faces, |tx, faces| {
                insert_faces(tx, &person.id, &person.name, faces)
            })
        })
        .await
    }

    async fn rename_person(&self, person_id: &str, name: &str) -> Result<Person, StoreError> {
        let (person_id, name) = (person_id.to_owned(), name.to_owned());
        self.with_db(move |_, db| {
            let changed = db
                .execute("UPDATE people SET name = ?2 WHERE id = ?1", params![person_id, name])
                .map_err(unavailable)?;
            if changed == 0 {
                return Err(StoreError::PersonNotFound(person_id));
            }
            load_person(db, &person_id)
        })
        .await
    }

    async fn delete_person(
        &self,
        person_id: &str,
        retention: LogRetention,
    ) -> Result<(), StoreError> {
        let person_id = person_id.to_owned();
        self.with_db(move |inner, db| {
            let tx = db.transaction().map_err(unavailable)?;
            load_person(&tx, &person_id)?;
            let photo_ids = {
                let mut statement = tx
                    .prepare("SELECT id FROM photos WHERE person_id = ?1")
                    .map_err(unavailable)?;
                let rows = statement
                    .query_map([&person_id], |row| row.get::<_, String>(0))
                    .map_err(unavailable)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)?
            };
            let thumb_ids = {
                let mut statement = tx
                    .prepare("SELECT id FROM check_ins WHERE person_id = ?1 AND thumbnail = 1")
                    .map_err(unavailable)?;
                let rows = statement
                    .query_map([&person_id], |row| row.get::<_, String>(0))
                    .map_err(unavailable)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)?
            };
            let forget_names = retention == LogRetention::ForgetNames;
            tx.execute(
                "UPDATE check_ins SET thumbnail = 0, person_id = NULL,
                        person_name = CASE WHEN ?2 THEN NULL ELSE person_name END
                 WHERE person_id = ?1",
                params![person_id, forget_names],
            )
            .map_err(unavailable)?;
            // Photos and faces go with the person (ON DELETE CASCADE).
            tx.execute("DELETE FROM people WHERE id = ?1", [&person_id]).map_err(unavailable)?;
            tx.commit().map_err(unavailable)?;
            // The write-ahead log still holds the pages as they were before the
            // deletion: fold it into the database and empty it. Readers elsewhere
            // can make this a partial checkpoint; the next deletion retries.
            if let Err(error) = db.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
                tracing::warn!(%error, "cannot empty the write-ahead log after a deletion");
            }

            let photos = photo_ids.iter().map(|id| inner.photo_path(id));
            let thumbs = thumb_ids.iter().map(|id| inner.thumb_path(id));
            inner.remove_files(photos.chain(thumbs));
            Ok(())
        })
        .await
    }

    async fn person(&self, person_id: &str) -> Result<Person, StoreError> {
        let person_id = person_id.to_owned();
        self.with_db(move |_, db| load_person(db, &person_id)).await
    }

    async fn people(&self) -> Result<Vec<Person>, StoreError> {
        self.with_db(|_, db| {
            let mut statement = db
                .prepare(&format!(
                    "SELECT {PERSON_COLUMNS} FROM people p ORDER BY p.name COLLATE NOCASE, p.id"
                ))
                .map_err(unavailable)?;
            let rows = statement.query_map([], person_from_row).map_err(unavailable)?;
            rows.collect::<Result<_, _>>().map_err(unavailable)
        })
        .await
    }

    async fn photos(&self, person_id: &str) -> Result<Vec<Photo>, StoreError> {
        let person_id = person_id.to_owned();
        self.with_db(move |_, db| {
            load_person(db, &person_id)?;
            let mut statement = db
                .prepare(
                    "SELECT id, person_id, upload_sha256, width, height, created_ms FROM photos
                     WHERE person_id = ?1 ORDER BY created_ms, id",
                )
                .map_err(unavailable)?;
            let rows = statement
                .query_map([&person_id], |row| {
                    Ok(Photo {
                        id: row.get(0)?,
                        person_id: row.get(1)?,
                        sha256: row.get(2)?,
                        width: row.get(3)?,
                        height: row.get(4)?,
                        created_ms: row.get(5)?,
                    })
                })
                .map_err(unavailable)?;
            rows.collect::<Result<_, _>>().map_err(unavailable)
        })
        .await
    }

    async fn photo_jpeg(&self, photo_id: &str) -> Result<Vec<u8>, StoreError> {
        let photo_id = photo_id.to_owned();
        self.with_db(move |inner, db| {
            let exists: bool = db
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM photos WHERE id = ?1)",
                    [&photo_id],
                    |row| row.get(0),
                )
                .map_err(unavailable)?;
            if !exists {
                return Err(StoreError::PhotoNotFound(photo_id));
            }
            Ok(fs::read(inner.photo_path(&photo_id))?)
        })
        .await
    }

    async fn photo_owner(&self, upload_sha256: &str) -> Result<Option<String>, StoreError> {
        let hash = upload_sha256.to_owned();
        self.with_db(move |_, db| {
            db.query_row(
                "SELECT person_id FROM photos WHERE upload_sha256 = ?1 LIMIT 1",
                [&hash],
                |row| row.get(0),
            )
            .optional()
            .map_err(unavailable)
        })
        .await
    }

    async fn all_faces(&self) -> Result<Vec<FaceRecord>, StoreError> {
        self.with_db(|_, db| {
            let mut statement = db
                .prepare(
                    "SELECT f.id, f.person_id, p.name, f.photo_id, f.model, f.embedding,
                            f.detector, f.box_x1, f.box_y1, f.box_x2, f.box_y2
                     FROM faces f JOIN people p ON p.id = f.person_id ORDER BY f.person_id, f.id",
                )
                .map_err(unavailable)?;
            let mut rows = statement.query([]).map_err(unavailable)?;
            let mut faces = Vec::new();
            while let Some(row) = rows.next().map_err(unavailable)? {
                let blob: Vec<u8> = row.get(5).map_err(unavailable)?;
                faces.push(FaceRecord {
                    face_id: row.get(0).map_err(unavailable)?,
                    person_id: row.get(1).map_err(unavailable)?,
                    person_name: row.get(2).map_err(unavailable)?,
                    photo_id: row.get(3).map_err(unavailable)?,
                    model: row.get(4).map_err(unavailable)?,
                    embedding: blob_to_embedding(&blob)?,
                    detector: row.get(6).map_err(unavailable)?,
                    face_box: [
                        row.get(7).map_err(unavailable)?,
                        row.get(8).map_err(unavailable)?,
                        row.get(9).map_err(unavailable)?,
                        row.get(10).map_err(unavailable)?,
                    ],
                });
            }
            Ok(faces)
        })
        .await
    }

    async fn record_check_in(&self, check_in: NewCheckIn) -> Result<CheckIn, StoreError> {
        self.with_db(move |inner, db| {
            let id = new_id();
            if let Some(jpeg) = &check_in.thumbnail_jpeg {
                inner.write_atomically(&inner.thumb_path(&id), jpeg)?;
            }
            let recorded = db.execute(
                "INSERT INTO check_ins (id, at_ms, person_id, person_name, score, detector, thumbnail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    id,
                    check_in.at_ms,
                    check_in.person_id,
                    check_in.person_name,
                    check_in.score,
                    check_in.detector,
                    check_in.thumbnail_jpeg.is_some()
                ],
            );
            if let Err(error) = recorded {
                inner.remove_files([inner.thumb_path(&id)]);
                // The person was deleted after the gallery named them.
                if let rusqlite::Error::SqliteFailure(failure, _) = &error
                    && failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY
                {
                    return Err(StoreError::PersonNotFound(
                        check_in.person_id.clone().unwrap_or_default(),
                    ));
                }
                return Err(unavailable(error));
            }
            let has_thumbnail = check_in.thumbnail_jpeg.is_some();
            Ok(check_in.stored(id, has_thumbnail))
        })
        .await
    }

    async fn check_ins(&self, query: &CheckInQuery) -> Result<Vec<CheckIn>, StoreError> {
        let query = query.clone();
        self.with_db(move |_, db| {
            let mut statement = db
                .prepare(
                    "SELECT id, at_ms, person_id, person_name, score, detector, thumbnail FROM check_ins
                     WHERE (?1 IS NULL OR person_id = ?1) AND (?2 IS NULL OR at_ms >= ?2) AND (?3 IS NULL OR at_ms < ?3)
                     ORDER BY at_ms DESC, id DESC LIMIT ?4",
                )
                .map_err(unavailable)?;
            let limit = i64::from(query.limit.unwrap_or(u32::MAX));
            let rows = statement
                .query_map(params![query.person_id, query.from_ms, query.to_ms, limit], |row| {
                    Ok(CheckIn {
                        id: row.get(0)?,
                        at_ms: row.get(1)?,
                        person_id: row.get(2)?,
                        person_name: row.get(3)?,
                        score: row.get(4)?,
                        detector: row.get(5)?,
                        has_thumbnail: row.get(6)?,
                    })
                })
                .map_err(unavailable)?;
            rows.collect::<Result<_, _>>().map_err(unavailable)
        })
        .await
    }

    async fn check_in_thumbnail(&self, check_in_id: &str) -> Result<Vec<u8>, StoreError> {
        let id = check_in_id.to_owned();
        self.with_db(move |inner, db| {
            let has: Option<bool> = db
                .query_row("SELECT thumbnail FROM check_ins WHERE id = ?1", [&id], |row| row.get(0))
                .optional()
                .map_err(unavailable)?;
            if has != Some(true) {
                return Err(StoreError::ThumbnailNotFound(id));
            }
            Ok(fs::read(inner.thumb_path(&id))?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::store_contract_tests!(|dir: PathBuf| async move { SqliteStore::open(&dir).unwrap() });

    #[test]
    fn embedding_blob_round_trips_and_rejects_ragged_blobs() {
        let embedding = vec![0.5, -1.25, 3.0];
        assert_eq!(blob_to_embedding(&embedding_to_blob(&embedding)).unwrap(), embedding);
        assert!(blob_to_embedding(&[0, 1, 2]).is_err());
    }

    #[tokio::test]
    async fn stray_files_are_removed_at_open() {
        let dir = tempdir();
        let store = SqliteStore::open(dir.path()).unwrap();
        let (_, faces) =
            store.create_person("Ada", vec![super::super::contract::face(1)]).await.unwrap();
        drop(store);
        fs::write(dir.path().join("photos/orphan.jpg"), b"x").unwrap();
        fs::write(dir.path().join("tmp/half-written"), b"x").unwrap();

        let store = SqliteStore::open(dir.path()).unwrap();
        assert!(!dir.path().join("photos/orphan.jpg").exists());
        assert!(!dir.path().join("tmp/half-written").exists());
        assert!(store.photo_jpeg(&faces[0].photo_id).await.is_ok());
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempdir();
        drop(SqliteStore::open(dir.path()).unwrap());
        let db = Connection::open(dir.path().join("facegate.sqlite3")).unwrap();
        db.pragma_update(None, "user_version", 99).unwrap();
        drop(db);
        assert!(matches!(SqliteStore::open(dir.path()), Err(StoreError::Corrupt(_))));
    }

    /// Regression: a deleted person's name and embeddings stayed readable in
    /// the database file's free pages and in its write-ahead log.
    #[tokio::test]
    async fn deletion_leaves_no_trace_in_the_database_files() {
        let dir = tempdir();
        let store = SqliteStore::open(dir.path()).unwrap();
        let name = "Zebulon Quartermaine";
        let mut faces = vec![super::super::contract::face(7), super::super::contract::face(8)];
        // Embeddings with a byte pattern that nothing else in the file has.
        for face in &mut faces {
            face.embedding = (0..128).map(|i| 0.123_456_79 + i as f32 * 1e-3).collect();
        }
        let needle = embedding_to_blob(&faces[0].embedding)[..64].to_vec();
        let (person, _) = store.create_person(name, faces).await.unwrap();
        let files = || {
            ["facegate.sqlite3", "facegate.sqlite3-wal"]
                .iter()
                .filter_map(|file| fs::read(dir.path().join(file)).ok())
                .collect::<Vec<_>>()
        };
        let holds = |bytes: &[u8], what: &[u8]| bytes.windows(what.len()).any(|w| w == what);
        assert!(
            files().iter().any(|bytes| holds(bytes, name.as_bytes())),
            "the name was never written"
        );

        store.delete_person(&person.id, LogRetention::ForgetNames).await.unwrap();
        for bytes in files() {
            assert!(!holds(&bytes, name.as_bytes()), "the deleted name is still in the files");
            assert!(!holds(&bytes, &needle), "a deleted embedding is still in the files");
        }
    }

    fn tempdir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }
}
