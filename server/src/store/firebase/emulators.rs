//! The Firestore and Cloud Storage emulators for tests, shared by the unit
//! tests of the Firebase store and `server/tests/firebase.rs` (which includes
//! this file by path).
//!
//! When `FIRESTORE_EMULATOR_HOST` and `STORAGE_EMULATOR_HOST` are set, the
//! tests use those emulators. Otherwise the first test to ask starts a private
//! pair with `scripts/emulators.sh start --owner PID`; it stops by itself when
//! this test process exits. Tests never skip for want of emulators: a failure
//! to start them fails the test with the script's message.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// Where the two emulators answer: (`host:port` of Firestore, `http://host:port` of Storage).
pub fn hosts() -> &'static (String, String) {
    static HOSTS: OnceLock<(String, String)> = OnceLock::new();
    HOSTS.get_or_init(|| {
        let from_env = |key| std::env::var(key).ok().filter(|value: &String| !value.is_empty());
        if let (Some(firestore), Some(storage)) =
            (from_env("FIRESTORE_EMULATOR_HOST"), from_env("STORAGE_EMULATOR_HOST"))
        {
            return (firestore, storage);
        }
        start()
    })
}

fn start() -> (String, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/emulators.sh");
    let output = std::process::Command::new("bash")
        .args([script, "start", "--owner", &std::process::id().to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("could not run scripts/emulators.sh");
    assert!(output.status.success(), "scripts/emulators.sh could not start the emulators");
    let printed = String::from_utf8_lossy(&output.stdout);
    let value = |key: &str| {
        printed
            .lines()
            .find_map(|line| line.strip_prefix(&format!("export {key}=")).map(str::to_owned))
            .unwrap_or_else(|| panic!("scripts/emulators.sh printed no {key}: {printed}"))
    };
    (value("FIRESTORE_EMULATOR_HOST"), value("STORAGE_EMULATOR_HOST"))
}

/// A name no other test uses, valid as a project id and as a bucket name:
/// each test gets its own Firestore project and bucket in the emulators.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let mut random = [0u8; 4];
    getrandom::fill(&mut random).expect("no randomness");
    format!(
        "{prefix}-{}-{}-{:08x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        u32::from_le_bytes(random)
    )
}
