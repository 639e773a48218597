//! The JSON API under `/api/v1`: images in (raw bytes, multipart or base64
//! JSON), JSON out. Errors are JSON with a stable code and a human message:
//! `{"error": {"code": "no_face", "message": "...", "details": ...}}`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use app::backend::{Backend, ClientAddr, SESSION_MAX_AGE_S, session_cookie, session_from_headers};

use crate::keys::ApiKeys;
use crate::limit::RateLimiter;
use crate::service::{LogPolicy, Service, ServiceError, Upload};
use crate::store::CheckInQuery;
use crate::vision::DetectorKind;

/// The OpenAPI description of this API, served at `/api/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Limits of the API.
#[derive(Clone, Copy, Debug)]
pub struct ApiLimits {
    /// Largest request body of a single-image request, in bytes.
    pub max_image_bytes: usize,
    /// Largest request body of an enrolment (several photos), in bytes.
    pub max_enrol_bytes: usize,
    /// Most photos in one enrolment request.
    pub max_photos: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self { max_image_bytes: 15 << 20, max_enrol_bytes: 60 << 20, max_photos: 50 }
    }
}

/// What the API's handlers share.
#[derive(Clone)]
pub struct Api {
    pub service: Arc<Service>,
    /// The admin sessions (and the pages' view of the service).
    pub backend: Arc<dyn Backend>,
    pub keys: Arc<ApiKeys>,
    pub limits: ApiLimits,
    /// Check-ins per client, shared with the pages.
    pub check_in_limit: Arc<RateLimiter>,
}

/// The `/api/v1` routes. All but health, readiness, this API's description
/// and the login itself need an API key (`X-API-Key`) or an admin session
/// (`POST /session`).
pub fn routes<S: Clone + Send + Sync + 'static>(api: Api) -> Router<S> {
    let limits = api.limits;
    let single_image = DefaultBodyLimit::max(limits.max_image_bytes);
    let several_images = DefaultBodyLimit::max(limits.max_enrol_bytes);
    let public = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/openapi.json", get(openapi))
        .route("/session", post(login).delete(logout));
    let protected = Router::new()
        .route("/checkins", post(check_in).get(list_check_ins).layer(single_image))
        .route("/detect", post(detect).layer(single_image))
        .route("/verify", post(verify).layer(several_images))
        .route("/people", post(enrol).get(list_people).layer(several_images))
        .route("/people/{id}", get(person).patch(rename).delete(delete_person))
        .route("/people/{id}/photos", post(add_photos).get(list_photos).layer(several_images))
        .route("/photos/{id}", get(photo))
        .route("/checkins/{id}/thumbnail", get(thumbnail))
        .route_layer(axum::middleware::from_fn_with_state(api.clone(), require_admin));
    public
        .merge(protected)
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such API route")
        })
        .layer(axum::middleware::map_response(errors_as_json))
        .with_state(api)
}

/// Gives the refusals that axum makes itself (a query it cannot parse, a
/// body that is not a form, a method a route does not take) the API's
/// error shape, keeping their status and their reason.
pub(crate) async fn errors_as_json(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let reason = axum::body::to_bytes(body, 16 << 10)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let code = match status {
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => "bad_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        _ if status.is_server_error() => "internal",
        _ => "refused",
    };
    let message = if reason.is_empty() {
        status.canonical_reason().unwrap_or("refused").to_lowercase()
    } else {
        reason
    };
    let mut response = ApiError::new(status, code, message).into_response();
    for name in [header::ALLOW, header::RETRY_AFTER, header::WWW_AUTHENTICATE] {
        if let Some(value) = parts.headers.get(&name) {
            response.headers_mut().insert(name, value.clone());
        }
    }
    response
}

async fn require_admin(
    State(api): State<Api>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let key = request.headers().get("x-api-key").and_then(|value| value.to_str().ok());
    if key.is_some_and(|key| api.keys.is_valid(key)) {
        return next.run(request).await;
    }
    let token = session_token(request.headers());
    if token.is_some_and(|token| api.backend.is_admin_session(&token)) {
        next.run(request).await
    } else {
        let message = "send an API key (X-API-Key) or log in first (POST /api/v1/session)";
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response()
    }
}

#[derive(Debug, Deserialize)]
struct LoginBody {
    password: String,
}

/// Logs the admin in; the token comes back in a cookie and in the body (for
/// clients that send `Authorization: Bearer <token>`).
async fn login(State(api): State<Api>, request: Request) -> ApiResult<Response> {
    let client =
        request.extensions().get::<ClientAddr>().map(|addr| addr.0.clone()).unwrap_or_default();
    let bytes = axum::body::to_bytes(request.into_body(), 64 << 10).await.map_err(|error| {
        ApiError::bad_request(format!("cannot read the login body (at most 64 KiB): {error}"))
    })?;
    let body: LoginBody = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(format!("expected JSON {{\"password\": \"...\"}}: {e}"))
    })?;
    let token = match api.backend.login(body.password, client).await {
        Ok(token) => token,
        Err(error) if error.status == 429 => {
            let mut refused =
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts", error.message)
                    .into_response();
            if let Some(wait_s) = error.retry_after_s {
                refused.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait_s));
            }
            return Ok(refused);
        }
        Err(error) => {
            let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::UNAUTHORIZED);
            return Err(ApiError::new(status, "wrong_password", error.message));
        }
    };
    let cookie = session_cookie(&token, SESSION_MAX_AGE_S, api.backend.secure_cookies());
    Ok(([(header::SET_COOKIE, cookie)], Json(json!({ "token": token }))).into_response())
}

/// Ends the session whichever way it was sent: cookie or bearer token.
async fn logout(State(api): State<Api>, request: Request) -> StatusCode {
    if let Some(token) = session_token(request.headers()) {
        api.backend.logout(&token);
    }
    StatusCode::NO_CONTENT
}

/// The session token of a request: the cookie, else `Authorization: Bearer`.
fn session_token(headers: &axum::http::HeaderMap) -> Option<String> {
    session_from_headers(headers).or_else(|| {
        let header = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        header.strip_prefix("Bearer ").map(str::to_owned)
    })
}

/// An error as the API reports it.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Option<Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), details: None }
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message a person sees (generic for internal faults, whose detail
    /// is only logged).
    /// Seconds to wait before trying again: a full inference queue drains fast.
    pub fn retry_after_s(&self) -> Option<u64> {
        (self.status == StatusCode::SERVICE_UNAVAILABLE).then_some(1)
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        let status = match &error {
            ServiceError::Image { source, .. } => match source {
                crate::vision::DecodeError::Unsupported(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                crate::vision::DecodeError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::BAD_REQUEST,
            },
            ServiceError::NoFace { .. }
            | ServiceError::ManyFaces { .. }
            | ServiceError::FaceTooSmall { .. }
            | ServiceError::PoorQuality { .. }
            | ServiceError::NothingEnrolled(..) => StatusCode::UNPROCESSABLE_ENTITY,
            ServiceError::NoPhotos
            | ServiceError::InvalidName(_)
            | ServiceError::DetectorNotLoaded(_) => StatusCode::BAD_REQUEST,
            ServiceError::PersonNotFound(_) | ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
            ServiceError::Busy | ServiceError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            ServiceError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = match &error {
            // Internal details are logged once here and never sent.
            ServiceError::Internal(_) | ServiceError::Store(_) => {
                tracing::error!(error = %error, "request failed");
                match error {
                    ServiceError::Store(_) => {
                        "the store is unavailable; try again later".to_owned()
                    }
                    _ => "internal error; the server log has the details".to_owned(),
                }
            }
            _ => error.to_string(),
        };
        let details = match &error {
            ServiceError::NothingEnrolled(_, outcomes) => serde_json::to_value(outcomes).ok(),
            _ => None,
        };
        Self { status, code: error.code(), message, details }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry_after_s = self.retry_after_s();
        let mut body = json!({ "error": { "code": self.code, "message": self.message } });
        if let Some(details) = self.details {
            body["error"]["details"] = details;
        }
        let mut response = (self.status, Json(body)).into_response();
        if let Some(wait_s) = retry_after_s {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait_s));
        }
        response
    }
}

type ApiResult<T> = Result<T, ApiError>;

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn ready(State(api): State<Api>) -> Response {
    if api.service.is_ready() {
        Json(json!({ "status": "ready", "faces": api.service.gallery().len() })).into_response()
    } else {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "the gallery is still loading")
            .into_response()
    }
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// A query that may pick a detector.
#[derive(Debug, Default, Deserialize)]
struct DetectorQuery {
    detector: Option<String>,
    #[serde(default)]
    log_unknown: bool,
}

impl DetectorQuery {
    fn detector(&self) -> ApiResult<Option<DetectorKind>> {
        self.detector
            .as_deref()
            .map(|name| {
                name.parse().map_err(|e: crate::vision::UnknownDetector| {
                    ApiError::bad_request(e.to_string())
                })
            })
            .transpose()
    }
}

/// One image from the request body: raw bytes (`image/*` or
/// `application/octet-stream`), the first file of a multipart form, or JSON
/// `{"image": "<base64>"}` with or without a `data:` URL prefix.
struct ImageBody(Vec<u8>);

impl<S: Send + Sync> FromRequest<S> for ImageBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if content_type.starts_with("multipart/form-data") {
            let uploads = read_uploads(
                Multipart::from_request(request, state).await.map_err(multipart_error)?,
            )
            .await?;
            let Some(upload) = uploads.into_photos().into_iter().next() else {
                return Err(ApiError::bad_request("the form has no image file"));
            };
            return Ok(ImageBody(upload.bytes));
        }
        let bytes = Bytes::from_request(request, state).await.map_err(body_error)?;
        if content_type.starts_with("application/json") {
            #[derive(Deserialize)]
            struct Base64Image {
                image: String,
            }
            let body: Base64Image = serde_json::from_slice(&bytes).map_err(|e| {
                ApiError::bad_request(format!("expected JSON {{\"image\": \"<base64>\"}}: {e}"))
            })?;
            return decode_base64(&body.image).map(ImageBody);
        }
        Ok(ImageBody(bytes.to_vec()))
    }
}

/// Decodes base64 image data, with or without a `data:image/...;base64,` prefix.
pub fn decode_base64(text: &str) -> ApiResult<Vec<u8>> {
    app::backend::decode_base64_image(text)
        .map_err(|message| ApiError::new(StatusCode::BAD_REQUEST, "invalid_base64", message))
}

fn body_error(rejection: axum::extract::rejection::BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "the request body is larger than this server accepts",
        )
    } else {
        ApiError::bad_request(rejection.body_text())
    }
}

fn multipart_error(rejection: axum::extract::multipart::MultipartRejection) -> ApiError {
    ApiError::bad_request(rejection.body_text())
}

/// The text fields and files of a multipart form.
#[derive(Default)]
struct Uploads {
    name: Option<String>,
    /// Each file with the name of its form field.
    files: Vec<(String, Upload)>,
}

impl Uploads {
    fn into_photos(self) -> Vec<Upload> {
        self.files.into_iter().map(|(_, upload)| upload).collect()
    }
}

async fn read_uploads(mut form: Multipart) -> ApiResult<Uploads> {
    let mut uploads = Uploads::default();
    let mut index = 0;
    loop {
        let field = form.next_field().await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    "the upload is larger than this server accepts",
                )
            } else {
                ApiError::bad_request(format!("malformed form: {}", e.body_text()))
            }
        })?;
        let Some(field) = field else { break };
        let field_name = field.name().unwrap_or_default().to_owned();
        let file_name = field.file_name().map(str::to_owned);
        let bytes = field.bytes().await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    "the upload is larger than this server accepts",
                )
            } else {
                ApiError::bad_request(format!("malformed form: {}", e.body_text()))
            }
        })?;
        if field_name == "name" && file_name.is_none() {
            uploads.name = Some(
                String::from_utf8(bytes.to_vec())
                    .map_err(|_| ApiError::bad_request("the name is not UTF-8"))?,
            );
            continue;
        }
        index += 1;
        let label = file_name.filter(|n| !n.is_empty()).unwrap_or_else(|| format!("photo {index}"));
        uploads.files.push((field_name, Upload { label, bytes: bytes.to_vec() }));
    }
    Ok(uploads)
}

async fn check_in(
    State(api): State<Api>,
    Query(query): Query<DetectorQuery>,
    client: Option<axum::Extension<ClientAddr>>,
    ImageBody(frame): ImageBody,
) -> ApiResult<Response> {
    let client = client.map(|axum::Extension(ClientAddr(addr))| addr).unwrap_or_default();
    if let Err(wait_s) = api.check_in_limit.check(&client) {
        let mut error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many check-ins from this client; try again in {wait_s} s"),
        )
        .into_response();
        error.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait_s));
        return Ok(error);
    }
    let logging = if query.log_unknown { LogPolicy::Everything } else { LogPolicy::Recognised };
    let result = api.service.check_in(frame, query.detector()?, logging).await?;
    Ok(Json(result).into_response())
}

async fn detect(
    State(api): State<Api>,
    Query(query): Query<DetectorQuery>,
    ImageBody(image): ImageBody,
) -> ApiResult<Json<Value>> {
    let (width, height, faces) = api.service.detect(image, query.detector()?).await?;
    Ok(Json(json!({ "width": width, "height": height, "faces": faces })))
}

async fn verify(State(api): State<Api>, form: Multipart) -> ApiResult<Json<Value>> {
    let uploads = read_uploads(form).await?;
    let pick = |name: &str| {
        uploads.files.iter().find(|(field, _)| field == name).map(|(_, upload)| upload.clone())
    };
    let (Some(a), Some(b)) = (pick("a"), pick("b")) else {
        return Err(ApiError::bad_request("send two image files in form fields `a` and `b`"));
    };
    let verification = api.service.verify(a, b).await?;
    Ok(Json(serde_json::to_value(verification).unwrap_or_default()))
}

#[derive(Debug, Default, Deserialize)]
struct EnrolQuery {
    #[serde(default)]
    allow_lookalike: bool,
}

async fn enrol(
    State(api): State<Api>,
    Query(query): Query<EnrolQuery>,
    form: Multipart,
) -> ApiResult<Response> {
    let uploads = read_uploads(form).await?;
    let name = uploads
        .name
        .clone()
        .ok_or_else(|| ApiError::bad_request("the form needs a `name` field"))?;
    check_photo_count(&api, uploads.files.len())?;
    let report = api.service.enrol(&name, uploads.into_photos(), query.allow_lookalike).await?;
    Ok((StatusCode::CREATED, Json(report)).into_response())
}

async fn add_photos(
    State(api): State<Api>,
    Path(id): Path<String>,
    Query(query): Query<EnrolQuery>,
    form: Multipart,
) -> ApiResult<Response> {
    let uploads = read_uploads(form).await?;
    check_photo_count(&api, uploads.files.len())?;
    let report = api.service.add_photos(&id, uploads.into_photos(), query.allow_lookalike).await?;
    Ok((StatusCode::CREATED, Json(report)).into_response())
}

fn check_photo_count(api: &Api, count: usize) -> ApiResult<()> {
    if count > api.limits.max_photos {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_photos",
            format!("{count} photos sent; at most {} per request", api.limits.max_photos),
        ));
    }
    Ok(())
}

async fn list_people(State(api): State<Api>) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "people": api.service.people().await? })))
}

async fn person(State(api): State<Api>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(serde_json::to_value(api.service.person(&id).await?).unwrap_or_default()))
}

#[derive(Debug, Deserialize)]
struct RenameBody {
    name: String,
}

async fn rename(
    State(api): State<Api>,
    Path(id): Path<String>,
    body: Result<Json<RenameBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<Value>> {
    let Json(body) = body.map_err(|e| {
        ApiError::bad_request(format!("expected JSON {{\"name\": \"...\"}}: {}", e.body_text()))
    })?;
    Ok(Json(serde_json::to_value(api.service.rename(&id, &body.name).await?).unwrap_or_default()))
}

async fn delete_person(State(api): State<Api>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    api.service.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_photos(State(api): State<Api>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "photos": api.service.photos(&id).await? })))
}

async fn photo(State(api): State<Api>, Path(id): Path<String>) -> ApiResult<Response> {
    let jpeg = api.service.photo_jpeg(&id).await?;
    Ok(([(header::CONTENT_TYPE, "image/jpeg"), (header::CACHE_CONTROL, "private, no-store")], jpeg)
        .into_response())
}

async fn thumbnail(State(api): State<Api>, Path(id): Path<String>) -> ApiResult<Response> {
    let jpeg = api.service.check_in_thumbnail(&id).await?;
    Ok(([(header::CONTENT_TYPE, "image/jpeg"), (header::CACHE_CONTROL, "private, no-store")], jpeg)
        .into_response())
}

#[derive(Debug, Default, Deserialize)]
struct LogQuery {
    person_id: Option<String>,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    limit: Option<u32>,
    format: Option<String>,
}

async fn list_check_ins(
    State(api): State<Api>,
    Query(query): Query<LogQuery>,
) -> ApiResult<Response> {
    let filter = CheckInQuery {
        person_id: query.person_id,
        from_ms: query.from_ms,
        to_ms: query.to_ms,
        limit: Some(query.limit.unwrap_or(500).min(10_000)),
    };
    match query.format.as_deref() {
        None | Some("json") => {
            Ok(Json(json!({ "check_ins": api.service.check_ins(&filter).await? })).into_response())
        }
        Some("csv") => {
            let csv = api.service.check_ins_csv(&filter).await?;
            Ok((
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                    (header::CONTENT_DISPOSITION, "attachment; filename=\"facegate-checkins.csv\""),
                ],
                csv,
            )
                .into_response())
        }
        Some(other) => {
            Err(ApiError::bad_request(format!("unknown format {other:?}; use json or csv")))
        }
    }
}
