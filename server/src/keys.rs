//! API keys for the JSON API: created and revoked by the admin (admin pages
//! or `facegate keys`), sent as `X-API-Key: <key>`, kept only as SHA-256
//! hashes in `api-keys.json` in the data directory.
//!
//! A key is `fgk_` followed by 64 random hex digits, so a hash is as hard to
//! invert as the key is to guess; no slow password hash is needed.

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::auth::random_token;
use crate::service::hex_sha256;
use crate::store::{new_id, now_ms};

/// What is kept of a key: never the key itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    /// The first characters of the key, to tell keys apart.
    pub prefix: String,
    pub sha256: String,
    pub created_ms: i64,
}

/// The API keys of this server. Changes made by another process (say,
/// `facegate keys revoke` while the server runs) are picked up when the
/// file's modification time changes.
#[derive(Debug)]
pub struct ApiKeys {
    path: PathBuf,
    keys: RwLock<Vec<ApiKey>>,
    loaded: RwLock<Option<std::time::SystemTime>>,
}

impl ApiKeys {
    /// Loads the keys kept in `data_dir` (none if the file does not exist).
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join("api-keys.json");
        let keys = Self { path, keys: RwLock::default(), loaded: RwLock::default() };
        keys.reload()?;
        Ok(keys)
    }

    fn modified(&self) -> Option<std::time::SystemTime> {
        std::fs::metadata(&self.path).and_then(|m| m.modified()).ok()
    }

    fn reload(&self) -> anyhow::Result<()> {
        let modified = self.modified();
        let keys = match std::fs::read_to_string(&self.path) {
            Ok(text) => serde_json::from_str(&text)
                .with_context(|| format!("{} is not a valid key list", self.path.display()))?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(error) => {
                return Err(error).with_context(|| format!("cannot read {}", self.path.display()));
            }
        };
        *self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
        *self.loaded.write().unwrap_or_else(std::sync::PoisonError::into_inner) = modified;
        Ok(())
    }

    /// Creates a key named `name`; returns its record and the key, which is
    /// shown once and never kept.
    pub fn create(&self, name: &str) -> anyhow::Result<(ApiKey, String)> {
        let name = name.trim();
        anyhow::ensure!(
            !name.is_empty() && name.len() <= 100,
            "a key needs a name of 1 to 100 characters"
        );
        let secret = format!("fgk_{}", random_token(32));
        let record = ApiKey {
            id: new_id(),
            name: name.to_owned(),
            prefix: secret[..10].to_owned(),
            sha256: hex_sha256(secret.as_bytes()),
            created_ms: now_ms(),
        };
        let mut keys = self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut updated = keys.clone();
        updated.push(record.clone());
        self.save(&updated)?;
        *keys = updated;
        drop(keys);
        *self.loaded.write().unwrap_or_else(std::sync::PoisonError::into_inner) = self.modified();
        Ok((record, secret))
    }

    /// Revokes the key with `id`; false if there is none.
    pub fn revoke(&self, id: &str) -> anyhow::Result<bool> {
        let mut keys = self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let updated: Vec<ApiKey> = keys.iter().filter(|key| key.id != id).cloned().collect();
        if updated.len() == keys.len() {
            return Ok(false);
        }
        self.save(&updated)?;
        *keys = updated;
        drop(keys);
        *self.loaded.write().unwrap_or_else(std::sync::PoisonError::into_inner) = self.modified();
        Ok(true)
    }

    pub fn list(&self) -> Vec<ApiKey> {
        self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Whether `secret` is a live key.
    pub fn is_valid(&self, secret: &str) -> bool {
        let stale = *self.loaded.read().unwrap_or_else(std::sync::PoisonError::into_inner)
            != self.modified();
        if stale && let Err(error) = self.reload() {
            tracing::error!(error = %format!("{error:#}"), "cannot reload the API keys; keeping the old list");
        }
        let hash = hex_sha256(secret.trim().as_bytes());
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .any(|key| key.sha256 == hash)
    }

    /// Writes the list atomically, readable only by the owner.
    fn save(&self, keys: &[ApiKey]) -> anyhow::Result<()> {
        use std::io::Write;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".api-keys.{}.tmp", new_id()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file =
            options.open(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        file.write_all(serde_json::to_string_pretty(keys)?.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_work_until_revoked_and_survive_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let keys = ApiKeys::open(dir.path()).unwrap();
        let (record, secret) = keys.create("door kiosk").unwrap();
        assert!(secret.starts_with("fgk_") && secret.len() == 68);
        assert!(keys.is_valid(&secret));
        assert!(!keys.is_valid("fgk_guess"));

        let text = std::fs::read_to_string(dir.path().join("api-keys.json")).unwrap();
        assert!(!text.contains(&secret), "the key itself is stored");
        let reloaded = ApiKeys::open(dir.path()).unwrap();
        assert!(reloaded.is_valid(&secret));

        assert!(reloaded.revoke(&record.id).unwrap());
        assert!(!reloaded.is_valid(&secret));
        assert!(!reloaded.revoke(&record.id).unwrap());
        assert!(!ApiKeys::open(dir.path()).unwrap().is_valid(&secret));
        assert!(keys.create("  ").is_err());
    }
}
