//! The HTTP layer shared by the Firestore, Storage and token clients: one
//! `reqwest` client, bounded retries with exponential backoff, and
//! [`FirebaseError`], the error of every Firebase call.

use std::time::Duration;

use reqwest::{RequestBuilder, Response, StatusCode};

use super::config::FirebaseConfig;

/// What went wrong talking to Firebase. Messages never contain tokens, keys,
/// photos or embeddings.
#[derive(Debug, thiserror::Error)]
pub enum FirebaseError {
    #[error("the Firebase configuration is incomplete: {0}")]
    Config(String),
    #[error("could not use the service-account key {path}: {message}")]
    Credentials { path: String, message: String },
    #[error("could not get an access token for {account} from {token_uri}: {message}")]
    Token { account: String, token_uri: String, message: String },
    #[error(
        "{what} was refused ({status}) for {credential} on project {project}: {message}; check \
         that this credential may use Firestore and Cloud Storage in that project"
    )]
    Denied { what: String, status: u16, credential: String, project: String, message: String },
    #[error("{what} failed with {status} {code}: {message}")]
    Status { what: String, status: u16, code: String, message: String },
    #[error("{what} failed: {source}")]
    Transport {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{what} may or may not have been applied: {message}")]
    Unconfirmed { what: String, message: String },
    #[error("{what} returned something unexpected: {message}")]
    Decode { what: String, message: String },
}

impl FirebaseError {
    /// Whether this is an API answer with HTTP status `status`.
    pub fn has_status(&self, status: StatusCode) -> bool {
        matches!(self, Self::Status { status: s, .. } if *s == status.as_u16())
    }

    /// Whether this is an API answer with the Google status code `code`, e.g.
    /// `NOT_FOUND` or `FAILED_PRECONDITION`.
    pub fn has_code(&self, code: &str) -> bool {
        matches!(self, Self::Status { code: c, .. } if c == code)
    }

    pub fn decode(what: &str, message: impl Into<String>) -> Self {
        Self::Decode { what: what.to_owned(), message: message.into() }
    }
}

/// Who is calling, named in a 401 or 403 error.
#[derive(Clone, Debug)]
pub struct Caller {
    pub credential: String,
    pub project: String,
}

/// How often and how patiently failed requests are tried again.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Tries after the first one.
    pub retries: u32,
    /// The wait before the first retry; it doubles with each one.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (0-based), with up to 25 %
    /// random jitter so that many clients do not retry in step.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let base = self.first_backoff.saturating_mul(1 << attempt.min(16)).min(self.max_backoff);
        let mut byte = [0u8; 1];
        let jitter =
            if getrandom::fill(&mut byte).is_ok() { f64::from(byte[0]) / 1020.0 } else { 0.0 };
        base.mul_f64(1.0 + jitter)
    }
}

/// Whether an answer with this status may succeed when sent again.
pub fn is_transient(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
}

/// Whether a transport error may succeed when the request is sent again.
pub fn is_transient_transport(error: &reqwest::Error) -> bool {
    error.is_timeout() || error.is_connect() || error.is_request() || error.is_body()
}

#[derive(Clone)]
pub struct Http {
    pub client: reqwest::Client,
    pub retry: RetryPolicy,
}

impl Http {
    pub fn new(config: &FirebaseConfig) -> Result<Self, FirebaseError> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .user_agent(concat!("facegate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FirebaseError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self { client, retry: config.retry })
    }

    /// Sends the request made by `build` once; an answer other than 2xx
    /// becomes an error, with 401 and 403 naming `caller`.
    pub async fn send_once(
        &self,
        what: &str,
        caller: Option<&Caller>,
        build: RequestBuilder,
    ) -> Result<Response, FirebaseError> {
        let response = build
            .send()
            .await
            .map_err(|source| FirebaseError::Transport { what: what.to_owned(), source })?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(status_error(what, caller, response).await)
    }

    /// Sends an idempotent request, again on 408, 429, 5xx and transport
    /// failures, at most `retry.retries` more times.
    pub async fn send<F, Fut>(
        &self,
        what: &str,
        caller: Option<&Caller>,
        build: F,
    ) -> Result<Response, FirebaseError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<RequestBuilder, FirebaseError>>,
    {
        let mut attempt = 0;
        loop {
            let outcome = self.send_once(what, caller, build().await?).await;
            match outcome {
                Err(error) if attempt < self.retry.retries && may_retry(&error) => {
                    tracing::debug!(what, attempt, %error, "retrying a Firebase request");
                    tokio::time::sleep(self.retry.backoff(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

/// Whether sending the same request again may help.
pub fn may_retry(error: &FirebaseError) -> bool {
    match error {
        FirebaseError::Status { status, .. } => {
            StatusCode::from_u16(*status).is_ok_and(is_transient)
        }
        FirebaseError::Transport { source, .. } => is_transient_transport(source),
        _ => false,
    }
}

async fn status_error(what: &str, caller: Option<&Caller>, response: Response) -> FirebaseError {
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let error = &body["error"];
    // Google APIs answer {"error": {"message", "status"}}; OAuth2 token
    // endpoints answer {"error": "invalid_grant", "error_description"}.
    let message = error["message"]
        .as_str()
        .or(body["error_description"].as_str())
        .unwrap_or("no details")
        .to_owned();
    let code =
        error["status"].as_str().or(error.as_str()).map(str::to_owned).unwrap_or_else(|| {
            status.canonical_reason().unwrap_or("").to_uppercase().replace(' ', "_")
        });
    match caller {
        Some(caller) if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN => {
            FirebaseError::Denied {
                what: what.to_owned(),
                status: status.as_u16(),
                credential: caller.credential.clone(),
                project: caller.project.clone(),
                message,
            }
        }
        _ => {
            FirebaseError::Status { what: what.to_owned(), status: status.as_u16(), code, message }
        }
    }
}
