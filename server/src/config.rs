//! Configuration of `facegate serve` and the commands that open the store,
//! read from flags and environment variables (each flag names its variable).

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::gallery::MatchPolicy;
use crate::service::{DEFAULT_GALLERY_THRESHOLD, ServiceConfig};
use crate::store::LogRetention;
use crate::vision::{DEFAULT_MATCH_THRESHOLD, DecodeLimits, DetectorKind};

/// Which store backend `facegate serve` uses.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StoreKind {
    /// SQLite and photo files in the data directory: nothing to set up.
    #[default]
    Sqlite,
    /// Cloud Firestore and Cloud Storage, configured by FACEGATE_FIREBASE_*
    /// and GOOGLE_APPLICATION_CREDENTIALS (or the emulator variables).
    Firebase,
}

/// Where FaceGate keeps its data.
#[derive(clap::Args, Clone, Debug)]
pub struct StoreArgs {
    /// Folder of the embedded store (database and photos). Defaults to
    /// `$XDG_DATA_HOME/facegate`, else `~/.local/share/facegate`.
    #[arg(long, env = "FACEGATE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

impl StoreArgs {
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(default_data_dir)
    }
}

fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|dir| !dir.is_empty()) {
        return PathBuf::from(dir).join("facegate");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/facegate")
}

/// The face engine and the matching rules.
#[derive(clap::Args, Clone, Debug)]
pub struct EngineArgs {
    /// Folder of the prepared models (`python3 models/prepare.py`). Defaults
    /// to `<cache>/models`, the cache being `$FACEGATE_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/facegate`, else `~/.cache/facegate`.
    #[arg(long, env = "FACEGATE_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// Default face detector: mtcnn, blazeface-short, blazeface-full or retinaface.
    #[arg(long, env = "FACEGATE_DETECTOR", default_value = "mtcnn")]
    pub detector: DetectorKind,
    /// Lowest cosine similarity at which a check-in names a person.
    #[arg(long, env = "FACEGATE_THRESHOLD", default_value_t = DEFAULT_GALLERY_THRESHOLD)]
    pub threshold: f32,
    /// How far the best person must be ahead of the second to be named.
    #[arg(long, env = "FACEGATE_MIN_MARGIN", default_value_t = 0.05)]
    pub min_margin: f32,
    /// Lowest cosine similarity at which `verify` (POST /api/v1/verify) calls
    /// two single photos the same person.
    #[arg(long, env = "FACEGATE_VERIFY_THRESHOLD", default_value_t = DEFAULT_MATCH_THRESHOLD)]
    pub verify_threshold: f32,
    /// Smallest face width in pixels to enrol; at check-in, a smaller face
    /// that matches nobody gets a "come closer" hint.
    #[arg(long, env = "FACEGATE_MIN_FACE_PX", default_value_t = 40.0)]
    pub min_face_px: f32,
    /// Largest image accepted, in megapixels (checked before decoding).
    #[arg(long, env = "FACEGATE_MAX_MEGAPIXELS", default_value_t = 40)]
    pub max_megapixels: u64,
    /// Largest check-in frame accepted, in megapixels: anyone may send one,
    /// and a browser's frames are at most 640 pixels wide.
    #[arg(long, env = "FACEGATE_MAX_CHECK_IN_MEGAPIXELS", default_value_t = crate::service::DEFAULT_CHECK_IN_MEGAPIXELS)]
    pub max_check_in_megapixels: u64,
    /// Threads one model run may spread its matrix products over. More
    /// than 1 helps RetinaFace and BlazeFace full range on an idle server,
    /// hardly FaceNet, and slows MTCNN (`facegate bench` shows each); the
    /// concurrent check-ins of a busy server use the cores anyway.
    #[arg(long, env = "FACEGATE_INFERENCE_THREADS", default_value_t = 1)]
    pub inference_threads: usize,
}

impl EngineArgs {
    pub fn models_dir(&self) -> PathBuf {
        self.models_dir.clone().unwrap_or_else(crate::vision::models_dir)
    }
}

/// Everything `facegate serve` is told.
#[derive(clap::Args, Clone, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "FACEGATE_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,
    /// The built front end (`cargo xtask site`).
    #[arg(long, env = "FACEGATE_SITE_ROOT", default_value = "target/site")]
    pub site_root: PathBuf,
    /// Where people, photos, embeddings and check-ins are kept.
    #[arg(long = "store", env = "FACEGATE_STORE", value_enum, default_value_t = StoreKind::Sqlite)]
    pub store_kind: StoreKind,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Keep a small face thumbnail with each check-in.
    #[arg(long, env = "FACEGATE_KEEP_THUMBNAILS")]
    pub keep_thumbnails: bool,
    /// Keep a deleted person's name in the check-in log (it is erased by default).
    #[arg(long, env = "FACEGATE_KEEP_NAMES_IN_LOG")]
    pub keep_names_in_log: bool,
    /// Inference jobs that run at once; defaults to the number of cores.
    #[arg(long, env = "FACEGATE_WORKERS")]
    pub workers: Option<usize>,
    /// Inference jobs that may wait; beyond that, requests get 503 with Retry-After.
    #[arg(long, env = "FACEGATE_QUEUE", default_value_t = 64)]
    pub queue: usize,
    /// Argon2 PHC hash of the admin password (`facegate hash-password`). When
    /// unset, the hash kept in the data directory is used; on first start a
    /// random initial password is written to `initial-admin-password.txt` there.
    #[arg(long, env = "FACEGATE_ADMIN_PASSWORD_HASH", hide_env_values = true)]
    pub admin_password_hash: Option<String>,
    /// Check-ins each client (IP address) may make per second, on average;
    /// 0 turns the limit off. Beyond it: 429 with Retry-After.
    #[arg(long, env = "FACEGATE_CHECK_IN_RATE", default_value_t = 5.0)]
    pub check_in_rate: f64,
    /// Check-ins a client may make at once before the rate applies.
    #[arg(long, env = "FACEGATE_CHECK_IN_BURST", default_value_t = 20)]
    pub check_in_burst: u32,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(
        long,
        env = "FACEGATE_TLS_CERT",
        requires = "tls_key",
        conflicts_with = "tls_self_signed"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "FACEGATE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve HTTPS with a self-signed certificate, made once and kept in the
    /// data directory (phones then ask to accept it once).
    #[arg(long, env = "FACEGATE_TLS_SELF_SIGNED")]
    pub tls_self_signed: bool,
    /// A host name or IP address the self-signed certificate is for, besides
    /// localhost and 127.0.0.1 (repeatable; e.g. the machine's LAN address).
    #[arg(long = "tls-name", env = "FACEGATE_TLS_NAMES", value_delimiter = ',')]
    pub tls_names: Vec<String>,
    /// Also open a public HTTPS address through ngrok (the account's
    /// authtoken in NGROK_AUTHTOKEN). Every frame then passes through
    /// ngrok's service; if the tunnel cannot be opened, FaceGate says why and
    /// keeps serving locally.
    #[arg(long, env = "FACEGATE_NGROK", conflicts_with_all = ["tls_cert", "tls_self_signed"])]
    pub ngrok: bool,
    /// A domain reserved in the ngrok account for the tunnel.
    #[arg(long, env = "FACEGATE_NGROK_DOMAIN", requires = "ngrok")]
    pub ngrok_domain: Option<String>,
    /// A custom ngrok ingress, `host:port` [default: ngrok's own].
    #[arg(long, env = "FACEGATE_NGROK_SERVER", requires = "ngrok")]
    pub ngrok_server: Option<String>,
    /// Largest single-image request body, in MiB.
    #[arg(long, env = "FACEGATE_MAX_IMAGE_MIB", default_value_t = 15)]
    pub max_image_mib: usize,
    /// Connections open at once; past it, new ones wait their turn.
    #[arg(long, env = "FACEGATE_MAX_CONNECTIONS", default_value_t = 512,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Connections open at once from one client address (behind a reverse
    /// proxy or a tunnel, every client shares the proxy's).
    #[arg(long, env = "FACEGATE_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_client: u32,
    /// Lowest upload rate, in KiB/s, that a request body must keep over each
    /// stretch of the client timeout.
    #[arg(long, env = "FACEGATE_MIN_UPLOAD_KIB_PER_SEC", default_value_t = 8)]
    pub min_upload_kib_per_sec: u64,
    /// Seconds a client may take to send a request's headers (and that an
    /// idle keep-alive connection stays open), and may let an upload stall.
    #[arg(long, env = "FACEGATE_CLIENT_TIMEOUT_SECS", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub client_timeout_secs: u64,
}

impl ServeArgs {
    pub fn connection_limits(&self) -> crate::conn::ConnectionLimits {
        let client_timeout = std::time::Duration::from_secs(self.client_timeout_secs);
        crate::conn::ConnectionLimits {
            header_timeout: client_timeout,
            body_idle_timeout: client_timeout,
            min_upload_rate: self.min_upload_kib_per_sec * 1024,
            max_connections: self.max_connections,
            max_connections_per_client: self.max_connections_per_client,
            ..Default::default()
        }
    }

    pub fn service_config(&self) -> ServiceConfig {
        let defaults = ServiceConfig::default();
        ServiceConfig {
            detector: self.engine.detector,
            policy: MatchPolicy {
                threshold: self.engine.threshold,
                min_margin: self.engine.min_margin,
            },
            verify_threshold: self.engine.verify_threshold,
            min_face_px: self.engine.min_face_px,
            keep_thumbnails: self.keep_thumbnails,
            log_retention: if self.keep_names_in_log {
                LogRetention::KeepNames
            } else {
                LogRetention::ForgetNames
            },
            decode_limits: DecodeLimits::megapixels(self.engine.max_megapixels),
            check_in_limits: DecodeLimits::megapixels(self.engine.max_check_in_megapixels),
            workers: self.workers.unwrap_or(defaults.workers),
            max_queue: self.queue,
        }
    }
}
