//! What the server functions need from the server: the [`Backend`] that the
//! server crate implements and provides as context. (The server owns the
//! engine and the stores; the app only knows this interface.)

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use leptos::prelude::*;

use crate::model::{
    ApiKeyInfo, CheckIn, CheckInResult, EnrolReport, FacePreview, LogFilter, Person, Settings,
};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A failure worth telling the person: a stable code and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendError {
    pub code: String,
    pub message: String,
    /// The HTTP status that fits (4xx for the caller's mistakes).
    pub status: u16,
    /// Seconds to wait before trying again, for a 429 or 503.
    pub retry_after_s: Option<u64>,
}

/// A photo handed to enrolment: file name and bytes.
pub type PhotoUpload = (String, Vec<u8>);

/// FaceGate's server, as the pages see it.
pub trait Backend: Send + Sync + 'static {
    /// Identifies a frame for `client` (its address, for the rate limit).
    fn check_in(
        &self,
        frame: Vec<u8>,
        log_unknown: bool,
        client: String,
    ) -> BoxFuture<'_, Result<CheckInResult, BackendError>>;
    /// The faces in a frame and whether it would do for enrolment (nothing is stored).
    fn preview(&self, frame: Vec<u8>) -> BoxFuture<'_, Result<FacePreview, BackendError>>;
    fn enrol(
        &self,
        name: String,
        photos: Vec<PhotoUpload>,
        allow_lookalike: bool,
    ) -> BoxFuture<'_, Result<EnrolReport, BackendError>>;
    fn add_photos(
        &self,
        person_id: String,
        photos: Vec<PhotoUpload>,
        allow_lookalike: bool,
    ) -> BoxFuture<'_, Result<EnrolReport, BackendError>>;
    fn people(&self) -> BoxFuture<'_, Result<Vec<Person>, BackendError>>;
    fn rename(
        &self,
        person_id: String,
        name: String,
    ) -> BoxFuture<'_, Result<Person, BackendError>>;
    fn delete(&self, person_id: String) -> BoxFuture<'_, Result<(), BackendError>>;
    fn check_ins(&self, filter: LogFilter) -> BoxFuture<'_, Result<Vec<CheckIn>, BackendError>>;
    fn settings(&self) -> Settings;
    fn api_keys(&self) -> Vec<ApiKeyInfo>;
    /// Creates a key; the key itself is returned once, never kept.
    fn create_api_key(&self, name: String) -> Result<(ApiKeyInfo, String), BackendError>;
    fn revoke_api_key(&self, id: String) -> Result<(), BackendError>;
    /// Largest total size of photos accepted in one enrolment, in bytes.
    fn max_upload_bytes(&self) -> usize;

    /// Checks the admin password; on success, a new session token.
    fn login(
        &self,
        password: String,
        client: String,
    ) -> BoxFuture<'_, Result<String, BackendError>>;
    fn logout(&self, token: &str);
    fn is_admin_session(&self, token: &str) -> bool;
    /// Whether cookies must be marked `Secure` (served over HTTPS).
    fn secure_cookies(&self) -> bool;
}

/// The backend from context.
pub fn backend() -> Result<Arc<dyn Backend>, ServerFnError> {
    use_context::<Arc<dyn Backend>>()
        .ok_or_else(|| ServerFnError::new("the server has no backend configured"))
}

/// Turns a backend failure into a server-function error with its status set.
pub fn fail(error: BackendError) -> ServerFnError {
    set_status(error.status);
    if let Some(wait_s) = error.retry_after_s
        && let Some(response) = use_context::<leptos_axum::ResponseOptions>()
    {
        response.insert_header(http::header::RETRY_AFTER, http::HeaderValue::from(wait_s));
    }
    ServerFnError::new(error.message)
}

pub fn set_status(status: u16) {
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>()
        && let Ok(status) = http::StatusCode::from_u16(status)
    {
        response.set_status(status);
    }
}

/// Name of the admin session cookie.
pub const SESSION_COOKIE: &str = "facegate_session";

/// The `Set-Cookie` value of an admin session: HttpOnly, SameSite=Strict,
/// 12 hours, and `Secure` when the server speaks HTTPS. An empty token with
/// `max_age_s` 0 clears the cookie.
pub fn session_cookie(token: &str, max_age_s: u32, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}"
    )
}

/// How long an admin session cookie lives, in seconds.
pub const SESSION_MAX_AGE_S: u32 = 12 * 3600;

/// Decodes base64 image data, with or without a `data:image/...;base64,`
/// prefix (whitespace and line breaks are ignored); the error is a sentence.
pub fn decode_base64_image(text: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    let data = match text.trim().strip_prefix("data:") {
        Some(url) => url
            .split_once(";base64,")
            .map(|(_, data)| data)
            .ok_or("a data URL must be base64-encoded (data:image/jpeg;base64,...)")?,
        None => text,
    };
    let data: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(&data)
        .map_err(|e| format!("the image is not valid base64: {e}"))
}

/// The session token of the current request, if it carries one.
pub fn session_token() -> Option<String> {
    session_from_headers(&use_context::<http::request::Parts>()?.headers)
}

/// The session token in a request's `Cookie` headers, if any.
pub fn session_from_headers(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, token)| token.to_owned())
}

/// The client's address, put into each request's extensions by the server.
#[derive(Clone, Debug)]
pub struct ClientAddr(pub String);

/// The client's address (for rate limits), as seen by the server.
pub fn client_address() -> String {
    use_context::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<ClientAddr>().map(|addr| addr.0.clone()))
        .unwrap_or_default()
}

/// Fails with 401 unless the request carries a valid admin session.
pub fn require_admin() -> Result<Arc<dyn Backend>, ServerFnError> {
    let backend = backend()?;
    match session_token() {
        Some(token) if backend.is_admin_session(&token) => Ok(backend),
        _ => {
            set_status(401);
            Err(ServerFnError::new("log in as the admin first"))
        }
    }
}
