//! The server's status, as shown to a person checking that FaceGate is up.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// What the server says about itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerStatus {
    /// The server's version (its crate version).
    pub version: String,
    /// Seconds since the server started.
    pub uptime_s: u64,
}

/// When the server process started; provided as context by the server.
#[cfg(feature = "ssr")]
#[derive(Clone, Copy, Debug)]
pub struct StartedAt(pub std::time::Instant);

/// Reports the server's version and uptime.
#[server]
pub async fn fetch_server_status() -> Result<ServerStatus, ServerFnError> {
    let started = use_context::<StartedAt>()
        .ok_or_else(|| ServerFnError::new("server start time is not configured"))?;
    Ok(ServerStatus {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        uptime_s: started.0.elapsed().as_secs(),
    })
}
