//! The admin account: one password (its Argon2 hash comes from configuration
//! or from a file in the data directory), in-memory sessions, and a limit on
//! failed logins per client.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// How long an admin session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(app::backend::SESSION_MAX_AGE_S as u64);

/// Failed logins a client may make per window before it is refused (429).
const MAX_FAILURES: u32 = 5;
/// How long a client that failed `MAX_FAILURES` times waits to try again (at most).
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Why a login was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoginError {
    #[error("wrong password")]
    WrongPassword,
    #[error("too many failed logins; wait a minute and try again")]
    TooManyAttempts,
}

/// The admin's password hash and live sessions.
pub struct AdminAuth {
    password_hash: String,
    sessions: Mutex<HashMap<String, Instant>>,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl AdminAuth {
    /// Uses `hash` (a PHC string, as `facegate hash-password` prints).
    pub fn new(hash: &str) -> anyhow::Result<Self> {
        PasswordHash::new(hash)
            .map_err(|e| anyhow::anyhow!("the admin password hash is not a PHC string: {e}"))?;
        Ok(Self {
            password_hash: hash.to_owned(),
            sessions: Mutex::default(),
            failures: Mutex::default(),
        })
    }

    /// The configured hash, or else the one kept in `data_dir`; on first
    /// start, creates a random initial password, keeps its hash, and writes
    /// the password to a file only the owner can read (never to the log).
    pub fn from_config_or_data_dir(
        configured: Option<&str>,
        data_dir: &Path,
    ) -> anyhow::Result<Self> {
        if let Some(hash) = configured.filter(|hash| !hash.trim().is_empty()) {
            return Self::new(hash.trim());
        }
        let hash_file = data_dir.join("admin-password.phc");
        if let Ok(hash) = std::fs::read_to_string(&hash_file) {
            return Self::new(hash.trim()).with_context(|| format!("in {}", hash_file.display()));
        }
        let password = random_token(12);
        let hash = hash_password(&password)?;
        let password_file = initial_password_file(data_dir);
        std::fs::create_dir_all(data_dir)?;
        write_private(&password_file, &format!("{password}\n"))?;
        write_private(&hash_file, &hash)?;
        tracing::warn!(
            file = %password_file.display(),
            "no admin password was configured; an initial one was written to this file (readable only by its owner)"
        );
        Self::new(&hash)
    }

    /// Checks the password; on success, a new session token.
    pub fn login(&self, password: &str, client: &str) -> Result<String, LoginError> {
        let now = Instant::now();
        {
            let mut failures = lock(&self.failures);
            failures.retain(|_, (_, since)| now.duration_since(*since) < FAILURE_WINDOW);
            if failures.get(client).is_some_and(|(count, _)| *count >= MAX_FAILURES) {
                return Err(LoginError::TooManyAttempts);
            }
        }
        let parsed =
            PasswordHash::new(&self.password_hash).map_err(|_| LoginError::WrongPassword)?;
        if Argon2::default().verify_password(password.as_bytes(), &parsed).is_err() {
            let mut failures = lock(&self.failures);
            let entry = failures.entry(client.to_owned()).or_insert((0, now));
            entry.0 += 1;
            return Err(LoginError::WrongPassword);
        }
        let token = random_token(32);
        let mut sessions = lock(&self.sessions);
        sessions.retain(|_, expires| *expires > now);
        sessions.insert(token.clone(), now + SESSION_TTL);
        Ok(token)
    }

    pub fn logout(&self, token: &str) {
        lock(&self.sessions).remove(token);
    }

    pub fn is_valid(&self, token: &str) -> bool {
        lock(&self.sessions).get(token).is_some_and(|expires| *expires > Instant::now())
    }
}

/// Where the initial admin password is written on first start.
pub fn initial_password_file(data_dir: &Path) -> PathBuf {
    data_dir.join("initial-admin-password.txt")
}

/// An Argon2id PHC string for `password`.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("no randomness for the salt: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))?
        .to_string())
}

/// `bytes` random bytes as hex.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // Without an OS random source nothing about sessions can be secure.
    getrandom::fill(&mut buf).expect("the operating system's random source failed");
    buf.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Writes `text` to `path`, readable and writable by the owner only.
pub(crate) fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file =
        options.open(path).with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn right_password_opens_a_session_and_logout_closes_it() {
        let auth = AdminAuth::new(&hash_password("correct horse").unwrap()).unwrap();
        let token = auth.login("correct horse", "a").unwrap();
        assert!(auth.is_valid(&token));
        auth.logout(&token);
        assert!(!auth.is_valid(&token));
        assert!(!auth.is_valid("forged"));
    }

    #[test]
    fn repeated_failures_are_refused_per_client() {
        let auth = AdminAuth::new(&hash_password("pw").unwrap()).unwrap();
        for _ in 0..MAX_FAILURES {
            assert_eq!(auth.login("wrong", "mallory"), Err(LoginError::WrongPassword));
        }
        assert_eq!(auth.login("pw", "mallory"), Err(LoginError::TooManyAttempts));
        assert!(auth.login("pw", "alice").is_ok());
    }

    #[test]
    fn first_start_writes_an_initial_password_that_works() {
        let dir = tempfile::tempdir().unwrap();
        let auth = AdminAuth::from_config_or_data_dir(None, dir.path()).unwrap();
        let password = std::fs::read_to_string(initial_password_file(dir.path())).unwrap();
        assert!(auth.login(password.trim(), "a").is_ok());
        // A restart uses the same hash.
        let again = AdminAuth::from_config_or_data_dir(None, dir.path()).unwrap();
        assert!(again.login(password.trim(), "a").is_ok());
        assert!(AdminAuth::new("not a hash").is_err());
    }
}
