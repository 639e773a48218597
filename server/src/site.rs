//! The built front end (`cargo xtask site`): where it is and what its
//! content-hashed files are called.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use app::{Assets, Bundle};
use leptos::config::LeptosOptions;

/// Name shared by the WASM bundle, its JS glue and the stylesheet.
pub const OUTPUT_NAME: &str = "facegate";

/// Name of the check-in page's own bundle and of the file with its hashes.
pub const CHECK_IN_OUTPUT_NAME: &str = "facegate-checkin";
const CHECK_IN_HASH_FILE: &str = "hash-checkin.txt";

/// Folder below the site root that holds the bundles.
pub const PKG_DIR: &str = "pkg";

/// A site directory laid out by `cargo xtask site`.
#[derive(Clone, Debug)]
pub struct Site {
    root: PathBuf,
    hashes: Hashes,
    /// Whether `cargo xtask site` built the check-in page's own bundle.
    has_check_in_bundle: bool,
}

#[derive(Clone, Debug, Default)]
struct Hashes {
    js: String,
    wasm: String,
    css: String,
}

impl Site {
    /// Opens the site at `root`, refusing a folder that `cargo xtask site` did
    /// not lay out (so a missing build fails at start-up, not on first page).
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        let hash_file = root.join("hash.txt");
        let text = std::fs::read_to_string(&hash_file).with_context(|| {
            format!("no built front end at {} (run `cargo xtask site` first)", root.display())
        })?;
        let hashes = Hashes::parse(&text)
            .with_context(|| format!("{} is malformed", hash_file.display()))?;
        let root = std::path::absolute(root)
            .with_context(|| format!("cannot resolve {}", root.display()))?;
        let has_check_in_bundle = root.join(CHECK_IN_HASH_FILE).is_file();
        Ok(Self { root, hashes, has_check_in_bundle })
    }

    /// Leptos options that point the hydration scripts at the hashed bundles.
    pub fn leptos_options(&self, addr: std::net::SocketAddr) -> LeptosOptions {
        LeptosOptions::builder()
            .output_name(OUTPUT_NAME)
            .site_root(self.root.to_string_lossy().into_owned())
            .site_pkg_dir(PKG_DIR)
            .site_addr(addr)
            .hash_files(true)
            // Leptos joins this to the executable's folder; an absolute path wins.
            .hash_file(self.root.join("hash.txt").to_string_lossy().into_owned().into())
            .build()
    }

    /// The asset names the page shell links.
    pub fn assets(&self) -> Assets {
        Assets {
            stylesheet: format!("/{PKG_DIR}/{OUTPUT_NAME}.{}.css", self.hashes.css),
            check_in_bundle: self.has_check_in_bundle.then(|| Bundle {
                output_name: CHECK_IN_OUTPUT_NAME.to_owned(),
                hash_file: self.root.join(CHECK_IN_HASH_FILE).to_string_lossy().into_owned(),
            }),
        }
    }
}

impl Hashes {
    fn parse(text: &str) -> anyhow::Result<Self> {
        let mut hashes = Hashes::default();
        for line in text.lines().filter(|line| !line.trim().is_empty()) {
            let Some((kind, hash)) = line.split_once(':') else {
                bail!("line {line:?} is not `kind: hash`");
            };
            let hash = hash.trim().to_owned();
            if hash.is_empty() || !hash.chars().all(|c| c.is_ascii_alphanumeric()) {
                bail!("hash {hash:?} is not alphanumeric");
            }
            match kind.trim() {
                "js" => hashes.js = hash,
                "wasm" => hashes.wasm = hash,
                "css" => hashes.css = hash,
                other => bail!("unknown asset kind {other:?}"),
            }
        }
        if hashes.js.is_empty() || hashes.wasm.is_empty() || hashes.css.is_empty() {
            bail!("expected js, wasm and css hashes");
        }
        Ok(hashes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hash_file() {
        let hashes = Hashes::parse("js: abc\nwasm: def\ncss: 012\n").unwrap();
        assert_eq!(
            (hashes.js.as_str(), hashes.wasm.as_str(), hashes.css.as_str()),
            ("abc", "def", "012")
        );
    }

    #[test]
    fn the_check_in_bundle_is_offered_only_when_it_was_built() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("hash.txt"), "js: a\nwasm: b\ncss: c\n").unwrap();
        let without = Site::open(root.path()).unwrap().assets();
        assert_eq!(without.stylesheet, "/pkg/facegate.c.css");
        assert_eq!(without.check_in_bundle, None);

        std::fs::write(root.path().join(CHECK_IN_HASH_FILE), "js: d\nwasm: e\n").unwrap();
        let bundle = Site::open(root.path()).unwrap().assets().check_in_bundle.unwrap();
        assert_eq!(bundle.output_name, CHECK_IN_OUTPUT_NAME);
        assert!(Path::new(&bundle.hash_file).is_absolute(), "{}", bundle.hash_file);
        assert!(bundle.hash_file.ends_with(CHECK_IN_HASH_FILE));
    }

    #[test]
    fn rejects_missing_and_odd_hashes() {
        assert!(Hashes::parse("js: abc\nwasm: def\n").is_err());
        assert!(Hashes::parse("js: a/b\nwasm: def\ncss: x\n").is_err());
        assert!(Hashes::parse("font: abc\n").is_err());
    }
}
