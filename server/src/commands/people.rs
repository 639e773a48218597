//! `facegate enroll | identify | people | checkins`: the embedded store from
//! the command line. These work on the store directly; a server running on
//! the same data directory sees enrolments made here after its next restart.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use app::model::{date_to_ms, format_utc};
use serde::Serialize;

use crate::config::{EngineArgs, StoreArgs};
use crate::gallery::MatchPolicy;
use crate::service::{LogPolicy, Service, ServiceConfig, ServiceError, Upload};
use crate::store::sqlite::SqliteStore;
use crate::store::{CheckInQuery, Store};
use crate::vision::Engine;

/// `facegate enroll DIR`: one sub-folder per person, named after them.
#[derive(clap::Args, Debug)]
pub struct EnrollArgs {
    /// A folder holding one sub-folder of photos per person.
    pub dir: PathBuf,
    /// Enrol a photo even when its face matches a different person.
    #[arg(long)]
    pub allow_lookalike: bool,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// `facegate identify IMAGE...`: who is in each image (nothing is logged).
#[derive(clap::Args, Debug)]
pub struct IdentifyArgs {
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// `facegate people`: everyone enrolled.
#[derive(clap::Args, Debug)]
pub struct PeopleArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `facegate checkins`: the check-in log, newest first.
#[derive(clap::Args, Debug)]
pub struct CheckInsArgs {
    /// Print CSV (for spreadsheets) instead of a table.
    #[arg(long)]
    pub csv: bool,
    /// Only this person's check-ins (their id, as `facegate people` shows).
    #[arg(long)]
    pub person: Option<String>,
    /// From this date (YYYY-MM-DD, UTC), inclusive.
    #[arg(long)]
    pub from: Option<String>,
    /// Up to this date (YYYY-MM-DD, UTC), inclusive.
    #[arg(long)]
    pub to: Option<String>,
    /// At most this many entries.
    #[arg(long, default_value_t = 1000)]
    pub limit: u32,
    #[command(flatten)]
    pub store: StoreArgs,
}

fn open_store(args: &StoreArgs) -> anyhow::Result<SqliteStore> {
    let dir = args.data_dir();
    SqliteStore::open(&dir).with_context(|| format!("cannot open the store in {}", dir.display()))
}

async fn start_service(store: &StoreArgs, engine: &EngineArgs) -> anyhow::Result<Service> {
    let store = Arc::new(open_store(store)?);
    let models = engine.models_dir();
    let detector = engine.detector;
    let loaded = tokio::task::spawn_blocking(move || Engine::load(&models, &[detector])).await??;
    let config = ServiceConfig {
        detector,
        policy: MatchPolicy { threshold: engine.threshold, min_margin: engine.min_margin },
        verify_threshold: engine.verify_threshold,
        min_face_px: engine.min_face_px,
        ..ServiceConfig::default()
    };
    Ok(Service::start(loaded, store, config).await?)
}

/// What happened to each photo that was not enrolled.
#[derive(Debug, Default)]
struct EnrolSummary {
    people: usize,
    accepted: usize,
    skipped: Vec<(String, String)>,
}

#[tokio::main]
pub async fn run_enroll(args: EnrollArgs) -> anyhow::Result<()> {
    let folders = person_folders(&args.dir)?;
    let total: usize = folders.values().map(Vec::len).sum();
    let service = start_service(&args.store, &args.engine).await?;
    let existing: BTreeMap<String, String> =
        service.people().await?.into_iter().map(|p| (p.name, p.id)).collect();

    let mut summary = EnrolSummary::default();
    let mut progress = Progress::new(total);
    for (name, photos) in folders {
        let mut uploads = Vec::new();
        for path in &photos {
            progress.step(&format!("{name}: {}", file_label(path)));
            match std::fs::read(path) {
                Ok(bytes) => uploads.push(Upload { label: path.display().to_string(), bytes }),
                Err(error) => summary.skipped.push((path.display().to_string(), error.to_string())),
            }
        }
        if uploads.is_empty() {
            continue;
        }
        // A person already enrolled under this name gets the new photos (re-running is safe:
        // photos enrolled before are skipped as duplicates).
        let report = match existing.get(&name) {
            Some(id) => service.add_photos(id, uploads, args.allow_lookalike).await,
            None => service.enrol(&name, uploads, args.allow_lookalike).await,
        };
        let outcomes = match report {
            Ok(report) => {
                summary.people += 1;
                report.photos
            }
            Err(ServiceError::NothingEnrolled(_, outcomes)) => outcomes,
            // A folder whose name cannot be a person's: its photos are skipped, the rest go on.
            Err(error @ ServiceError::InvalidName(_)) => {
                let reason = format!("the folder name cannot be used: {error}");
                summary
                    .skipped
                    .extend(photos.iter().map(|p| (p.display().to_string(), reason.clone())));
                continue;
            }
            Err(error) => return Err(anyhow::anyhow!("{name}: {error}")),
        };
        for outcome in outcomes {
            if outcome.accepted {
                summary.accepted += 1;
            } else {
                summary.skipped.push((outcome.label, outcome.message));
            }
        }
    }
    progress.finish();

    let mut err = std::io::stderr().lock();
    writeln!(
        err,
        "enrolled {} photo(s) of {} person(s); skipped {}",
        summary.accepted,
        summary.people,
        summary.skipped.len()
    )?;
    for (photo, reason) in &summary.skipped {
        let photo = photo.strip_prefix(&format!("{}/", args.dir.display())).unwrap_or(photo);
        writeln!(err, "  skipped {photo}: {reason}")?;
    }
    Ok(())
}

/// The photos of each person: `DIR/<name>/<photo>`, sorted.
fn person_folders(dir: &Path) -> anyhow::Result<BTreeMap<String, Vec<PathBuf>>> {
    let mut folders = BTreeMap::new();
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if !path.is_dir() || file_label(&path).starts_with('.') {
            continue;
        }
        let name =
            path.file_name().map(|n| n.to_string_lossy().replace('_', " ")).unwrap_or_default();
        let mut photos: Vec<PathBuf> = std::fs::read_dir(&path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && !file_label(p).starts_with('.'))
            .collect();
        photos.sort();
        if !photos.is_empty() {
            folders.insert(name, photos);
        }
    }
    if folders.is_empty() {
        bail!("{} has no sub-folders with photos (expected DIR/<person>/<photo>)", dir.display());
    }
    Ok(folders)
}

fn file_label(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// A progress bar on a terminal, a line per step otherwise.
pub(crate) struct Progress {
    total: usize,
    done: usize,
    terminal: bool,
}

impl Progress {
    pub(crate) fn new(total: usize) -> Self {
        Self { total, done: 0, terminal: std::io::stderr().is_terminal() }
    }

    pub(crate) fn step(&mut self, what: &str) {
        self.done += 1;
        let mut err = std::io::stderr().lock();
        // Progress output is best effort: a closed stderr must not stop the enrolment.
        let _ = if self.terminal {
            let width = 30;
            let filled = width * self.done / self.total.max(1);
            let what: String = what.chars().take(50).collect();
            write!(
                err,
                "\r[{}{}] {}/{} {what:<50}",
                "#".repeat(filled),
                " ".repeat(width - filled),
                self.done,
                self.total
            )
        } else {
            writeln!(err, "[{}/{}] {what}", self.done, self.total)
        };
    }

    pub(crate) fn finish(&self) {
        if self.terminal {
            let _ = writeln!(std::io::stderr());
        }
    }
}

#[derive(Serialize)]
struct Identification {
    file: String,
    status: String,
    person_id: Option<String>,
    person_name: Option<String>,
    score: Option<f32>,
    hint: Option<String>,
}

#[tokio::main]
pub async fn run_identify(args: IdentifyArgs) -> anyhow::Result<()> {
    let service = start_service(&args.store, &args.engine).await?;
    let mut out = std::io::stdout().lock();
    let mut failed = false;
    for path in &args.images {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) => {
                writeln!(std::io::stderr(), "{}: {error}", path.display())?;
                failed = true;
                continue;
            }
        };
        match service.check_in(bytes, None, LogPolicy::Nothing).await {
            Ok(result) => {
                let line = Identification {
                    file: path.display().to_string(),
                    status: serde_json::to_value(result.status)?
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    person_id: result.person_id,
                    person_name: result.person_name,
                    score: result.score,
                    hint: result.hint,
                };
                writeln!(out, "{}", serde_json::to_string(&line)?)?;
            }
            Err(error) => {
                writeln!(std::io::stderr(), "{}: {error}", path.display())?;
                failed = true;
            }
        }
    }
    if failed {
        bail!("some images could not be identified");
    }
    Ok(())
}

#[tokio::main]
pub async fn run_people(args: PeopleArgs) -> anyhow::Result<()> {
    let people = open_store(&args.store)?.people().await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&people)?)?;
        return Ok(());
    }
    writeln!(out, "{:<32}  {:<30}  {:>6}  last check-in", "id", "name", "photos")?;
    for person in people {
        let last = person.last_check_in_ms.map_or_else(|| "never".to_owned(), format_utc);
        writeln!(out, "{:<32}  {:<30}  {:>6}  {last}", person.id, person.name, person.photos)?;
    }
    Ok(())
}

#[tokio::main]
pub async fn run_check_ins(args: CheckInsArgs) -> anyhow::Result<()> {
    let parse_date = |date: &Option<String>, flag: &str| -> anyhow::Result<Option<i64>> {
        date.as_deref()
            .map(|d| {
                date_to_ms(d).with_context(|| format!("--{flag} {d:?} is not a YYYY-MM-DD date"))
            })
            .transpose()
    };
    let query = CheckInQuery {
        person_id: args.person.clone(),
        from_ms: parse_date(&args.from, "from")?,
        to_ms: parse_date(&args.to, "to")?.map(|ms| ms + 86_400_000),
        limit: Some(args.limit),
    };
    let store = open_store(&args.store)?;
    let mut out = std::io::stdout().lock();
    if args.csv {
        write!(out, "{}", crate::service::check_ins_csv(&store.check_ins(&query).await?))?;
        return Ok(());
    }
    writeln!(out, "{:<20}  {:<30}  {:>6}  detector", "time (UTC)", "person", "score")?;
    for entry in store.check_ins(&query).await? {
        let who = entry.person_name.unwrap_or_else(|| "unknown".to_owned());
        let score = entry.score.map(|s| format!("{s:.3}")).unwrap_or_default();
        writeln!(
            out,
            "{:<20}  {who:<30}  {score:>6}  {}",
            format_utc(entry.at_ms),
            entry.detector
        )?;
    }
    Ok(())
}

/// `facegate keys`: API keys of the server using this data directory.
#[derive(clap::Args, Debug)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub action: KeysAction,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(clap::Subcommand, Debug)]
pub enum KeysAction {
    /// Create a key; it is printed once and never kept.
    Create {
        /// What the key is for, e.g. "front door kiosk".
        name: String,
    },
    /// List the keys (their names and first characters).
    List,
    /// Revoke a key by its id; a running server refuses it from then on.
    Revoke { id: String },
}

pub fn run_keys(args: KeysArgs) -> anyhow::Result<()> {
    let keys = crate::keys::ApiKeys::open(&args.store.data_dir())?;
    let mut out = std::io::stdout().lock();
    match args.action {
        KeysAction::Create { name } => {
            let (record, secret) = keys.create(&name)?;
            writeln!(out, "{secret}")?;
            writeln!(
                std::io::stderr(),
                "created key {} ({}); send it as X-API-Key; it is not shown again",
                record.id,
                record.name
            )?;
        }
        KeysAction::List => {
            writeln!(out, "{:<32}  {:<12}  {:<20}  name", "id", "starts with", "created (UTC)")?;
            for key in keys.list() {
                let created = format_utc(key.created_ms);
                writeln!(out, "{:<32}  {:<12}  {created:<20}  {}", key.id, key.prefix, key.name)?;
            }
        }
        KeysAction::Revoke { id } => {
            if !keys.revoke(&id)? {
                bail!("no key with id {id}");
            }
            writeln!(std::io::stderr(), "revoked key {id}")?;
        }
    }
    Ok(())
}
