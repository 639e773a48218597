//! Where the Firebase store lives and how patiently it talks to it.

use std::path::PathBuf;
use std::time::Duration;

use super::http::{FirebaseError, RetryPolicy};

/// Everything [`FirebaseStore::connect`](super::FirebaseStore::connect) needs.
#[derive(Clone, Debug)]
pub struct FirebaseConfig {
    /// The Google Cloud project that holds the Firestore database
    /// (`FACEGATE_FIREBASE_PROJECT`; falls back to the key file's `project_id`).
    pub project_id: String,
    /// The Firestore database, `(default)` unless set (`FACEGATE_FIREBASE_DATABASE`).
    pub database: String,
    /// The Cloud Storage bucket for photos and thumbnails, e.g.
    /// `my-project.firebasestorage.app` (`FACEGATE_FIREBASE_BUCKET`).
    pub bucket: String,
    /// A service-account key file (`GOOGLE_APPLICATION_CREDENTIALS`); needed
    /// unless both emulators are used.
    pub credentials: Option<PathBuf>,
    /// `host:port` of a Firestore emulator (`FIRESTORE_EMULATOR_HOST`); when
    /// set, Firestore is reached over plain HTTP with the emulator's `owner`
    /// token.
    pub firestore_emulator: Option<String>,
    /// `http://host:port` (or `host:port`) of a Cloud Storage emulator
    /// (`STORAGE_EMULATOR_HOST`); when set, Storage is reached without a token.
    pub storage_emulator: Option<String>,
    /// Limit for one HTTP request (`FACEGATE_FIREBASE_TIMEOUT_MS`, default 30 s).
    pub request_timeout: Duration,
    /// Limit for opening a connection (default 5 s).
    pub connect_timeout: Duration,
    /// Retries of requests that failed with 408, 429, 5xx or a transport error
    /// (`FACEGATE_FIREBASE_RETRIES`, default 5, backoff from 200 ms doubling to 10 s).
    pub retry: RetryPolicy,
    /// Documents asked for per page when listing (`FACEGATE_FIREBASE_PAGE_SIZE`, default and
    /// maximum 1000: fewer, larger pages load the gallery faster).
    pub page_size: u32,
    /// Whether `connect` removes what interrupted writes left behind
    /// (`FACEGATE_FIREBASE_SWEEP`, default true); see
    /// [`FirebaseStore::sweep_orphans`](super::FirebaseStore::sweep_orphans).
    pub sweep_at_connect: bool,
    /// How old an unreferenced object or document must be before a sweep
    /// removes it, so that a write in progress elsewhere is left alone (1 hour).
    pub sweep_grace: Duration,
    /// Production endpoints, replaceable for tests.
    pub firestore_url: String,
    pub storage_url: String,
}

impl FirebaseConfig {
    /// A configuration with the defaults above for `project_id` and `bucket`.
    pub fn new(project_id: impl Into<String>, bucket: impl Into<String>) -> Self {
        Self {
            project_id: project_id.into(),
            database: "(default)".to_owned(),
            bucket: bucket.into(),
            credentials: None,
            firestore_emulator: None,
            storage_emulator: None,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            retry: RetryPolicy {
                retries: 5,
                first_backoff: Duration::from_millis(200),
                max_backoff: Duration::from_secs(10),
            },
            page_size: 1000,
            sweep_at_connect: true,
            sweep_grace: Duration::from_secs(3600),
            firestore_url: "https://firestore.googleapis.com".to_owned(),
            storage_url: "https://storage.googleapis.com".to_owned(),
        }
    }

    /// Reads the variables named on each field. The project may come from
    /// the key file instead; the bucket is required.
    pub fn from_env() -> Result<Self, FirebaseError> {
        Self::from_lookup(|key| std::env::var(key).ok().filter(|value| !value.is_empty()))
    }

    /// Like [`from_env`](Self::from_env), reading variables through `var`.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, FirebaseError> {
        let credentials = var("GOOGLE_APPLICATION_CREDENTIALS").map(PathBuf::from);
        let project_id = match var("FACEGATE_FIREBASE_PROJECT") {
            Some(project) => project,
            None => match &credentials {
                Some(path) => {
                    super::auth::ServiceAccount::read(path)?.project_id.ok_or_else(|| {
                        missing("FACEGATE_FIREBASE_PROJECT (the key file names no project_id)")
                    })?
                }
                None => return Err(missing("FACEGATE_FIREBASE_PROJECT")),
            },
        };
        let bucket =
            var("FACEGATE_FIREBASE_BUCKET").ok_or_else(|| missing("FACEGATE_FIREBASE_BUCKET"))?;

        let mut config = Self::new(project_id, bucket);
        config.credentials = credentials;
        config.firestore_emulator = var("FIRESTORE_EMULATOR_HOST");
        config.storage_emulator = var("STORAGE_EMULATOR_HOST");
        if let Some(database) = var("FACEGATE_FIREBASE_DATABASE") {
            config.database = database;
        }
        if let Some(ms) = parsed::<u64>(&var, "FACEGATE_FIREBASE_TIMEOUT_MS")? {
            config.request_timeout = Duration::from_millis(ms);
        }
        if let Some(retries) = parsed(&var, "FACEGATE_FIREBASE_RETRIES")? {
            config.retry.retries = retries;
        }
        if let Some(size) = parsed::<u32>(&var, "FACEGATE_FIREBASE_PAGE_SIZE")? {
            config.page_size = size.clamp(1, 1000);
        }
        if let Some(sweep) = parsed(&var, "FACEGATE_FIREBASE_SWEEP")? {
            config.sweep_at_connect = sweep;
        }
        Ok(config)
    }

    /// The configuration for talking to both emulators, with short retries.
    pub fn for_emulators(
        project_id: impl Into<String>,
        bucket: impl Into<String>,
        firestore_host: impl Into<String>,
        storage_host: impl Into<String>,
    ) -> Self {
        let mut config = Self::new(project_id, bucket);
        config.firestore_emulator = Some(firestore_host.into());
        config.storage_emulator = Some(storage_host.into());
        config.retry = RetryPolicy {
            retries: 2,
            first_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
        };
        config.sweep_at_connect = false;
        config
    }

    /// The base URL for Firestore, without the trailing slash.
    pub(super) fn firestore_base(&self) -> String {
        match &self.firestore_emulator {
            Some(host) => with_scheme(host),
            None => self.firestore_url.trim_end_matches('/').to_owned(),
        }
    }

    pub(super) fn storage_base(&self) -> String {
        match &self.storage_emulator {
            Some(host) => with_scheme(host),
            None => self.storage_url.trim_end_matches('/').to_owned(),
        }
    }
}

/// Emulator hosts are given as `host:port` (as Google's SDKs accept them) or
/// as a URL; plain HTTP is assumed without a scheme.
fn with_scheme(host: &str) -> String {
    let host = host.trim_end_matches('/');
    if host.starts_with("http://") || host.starts_with("https://") {
        host.to_owned()
    } else {
        format!("http://{host}")
    }
}

fn missing(key: &str) -> FirebaseError {
    FirebaseError::Config(format!("{key} is not set"))
}

fn parsed<T: std::str::FromStr>(
    var: &impl Fn(&str) -> Option<String>,
    key: &str,
) -> Result<Option<T>, FirebaseError> {
    var(key)
        .map(|value| {
            value
                .parse()
                .map_err(|_| FirebaseError::Config(format!("{key} has an invalid value {value:?}")))
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_environment_and_names_the_key_that_failed() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |key: &str| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| (*v).to_owned())
        };
        let config = FirebaseConfig::from_lookup(env(&[
            ("FACEGATE_FIREBASE_PROJECT", "p"),
            ("FACEGATE_FIREBASE_BUCKET", "b"),
            ("FIRESTORE_EMULATOR_HOST", "127.0.0.1:8080"),
            ("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9000/"),
            ("FACEGATE_FIREBASE_PAGE_SIZE", "5000"),
        ]))
        .unwrap();
        assert_eq!((config.project_id.as_str(), config.bucket.as_str()), ("p", "b"));
        assert_eq!(config.firestore_base(), "http://127.0.0.1:8080");
        assert_eq!(config.storage_base(), "http://127.0.0.1:9000");
        assert_eq!(config.page_size, 1000);

        let error =
            FirebaseConfig::from_lookup(env(&[("FACEGATE_FIREBASE_PROJECT", "p")])).unwrap_err();
        assert!(error.to_string().contains("FACEGATE_FIREBASE_BUCKET"), "{error}");
        let error = FirebaseConfig::from_lookup(env(&[
            ("FACEGATE_FIREBASE_PROJECT", "p"),
            ("FACEGATE_FIREBASE_BUCKET", "b"),
            ("FACEGATE_FIREBASE_RETRIES", "many"),
        ]))
        .unwrap_err();
        assert!(error.to_string().contains("FACEGATE_FIREBASE_RETRIES"), "{error}");
    }
}
