//! `facegate migrate --to firebase|sqlite`: copies people (with their photos
//! and embeddings) and the check-in log from one store into the other.
//!
//! Resumable: a person whose photos are all in the target already is
//! skipped, one with some of them gets the rest, and check-ins are copied
//! from after the newest one the target holds. Run it again after an
//! interruption; nothing is copied twice.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use anyhow::Context;

use super::people::Progress;
use crate::config::{StoreArgs, StoreKind};
use crate::store::firebase::{FirebaseConfig, FirebaseStore};
use crate::store::sqlite::SqliteStore;
use crate::store::{CheckInQuery, FaceRecord, NewCheckIn, NewFace, Store};

#[derive(clap::Args, Debug)]
pub struct MigrateArgs {
    /// The store to copy into; the other one is read.
    #[arg(long, value_enum)]
    pub to: StoreKind,
    #[command(flatten)]
    pub store: StoreArgs,
}

async fn open(kind: StoreKind, args: &StoreArgs) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match kind {
        StoreKind::Sqlite => Arc::new(SqliteStore::open(&args.data_dir())?),
        StoreKind::Firebase => {
            let config = FirebaseConfig::from_env().context("Firebase is not configured")?;
            Arc::new(FirebaseStore::connect(config).await.context("cannot reach Firebase")?)
        }
    })
}

#[tokio::main]
pub async fn run(args: MigrateArgs) -> anyhow::Result<()> {
    let from_kind = match args.to {
        StoreKind::Sqlite => StoreKind::Firebase,
        StoreKind::Firebase => StoreKind::Sqlite,
    };
    let source = open(from_kind, &args.store).await?;
    let target = open(args.to, &args.store).await?;
    let mut err = std::io::stderr().lock();
    writeln!(err, "copying {} into {}", source.backend(), target.backend())?;

    let mut faces_by_person: HashMap<String, Vec<FaceRecord>> = HashMap::new();
    for face in source.all_faces().await? {
        faces_by_person.entry(face.person_id.clone()).or_default().push(face);
    }
    let people = source.people().await?;
    let mut ids = HashMap::new();
    let (mut copied_people, mut copied_faces) = (0, 0);
    let mut progress = Progress::new(people.len());
    for person in &people {
        progress.step(&person.name);
        let photos = source.photos(&person.id).await?;
        let faces = faces_by_person.remove(&person.id).unwrap_or_default();
        let mut owner = None;
        let mut missing = Vec::new();
        for photo in &photos {
            match target.photo_owner(&photo.sha256).await? {
                Some(existing) => owner = Some(existing),
                None => missing.push(photo),
            }
        }
        let mut new_faces = Vec::new();
        for photo in missing {
            for face in faces.iter().filter(|face| face.photo_id == photo.id) {
                new_faces.push(NewFace {
                    photo_jpeg: source.photo_jpeg(&photo.id).await?,
                    upload_sha256: photo.sha256.clone(),
                    width: photo.width,
                    height: photo.height,
                    embedding: face.embedding.clone(),
                    model: face.model.clone(),
                    detector: face.detector.clone(),
                    face_box: face.face_box,
                });
            }
        }
        copied_faces += new_faces.len();
        let target_id = match (owner, new_faces.is_empty()) {
            (Some(existing), true) => existing,
            (Some(existing), false) => {
                target.add_faces(&existing, new_faces).await?;
                existing
            }
            (None, _) => {
                copied_people += 1;
                target.create_person(&person.name, new_faces).await?.0.id
            }
        };
        ids.insert(person.id.clone(), target_id);
    }
    progress.finish();

    // The log is append-only in time: resume after the newest entry the target has.
    let newest =
        target.check_ins(&CheckInQuery { limit: Some(1), ..CheckInQuery::default() }).await?;
    let after = newest.first().map(|entry| entry.at_ms + 1);
    let mut log =
        source.check_ins(&CheckInQuery { from_ms: after, ..CheckInQuery::default() }).await?;
    log.reverse();
    for entry in &log {
        let thumbnail = if entry.has_thumbnail {
            Some(source.check_in_thumbnail(&entry.id).await?)
        } else {
            None
        };
        target
            .record_check_in(NewCheckIn {
                at_ms: entry.at_ms,
                person_id: entry.person_id.as_ref().and_then(|id| ids.get(id).cloned()),
                person_name: entry.person_name.clone(),
                score: entry.score,
                detector: entry.detector.clone(),
                thumbnail_jpeg: thumbnail,
            })
            .await?;
    }
    writeln!(
        err,
        "copied {copied_people} new person(s), {copied_faces} face(s) and {} check-in(s); \
         {} person(s) were there already",
        log.len(),
        people.len() - copied_people
    )?;
    Ok(())
}
