//! The HTTP layer: Leptos pages and server functions, static files, and the
//! JSON API, in one axum router.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use app::backend::{Backend, ClientAddr, session_from_headers};
use app::status::StartedAt;
use app::{App, Assets, shell};
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;
use leptos_axum::{LeptosRoutes, generate_route_list};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::api::{self, Api, ApiLimits};
use crate::keys::ApiKeys;
use crate::limit::RateLimiter;
use crate::service::Service;

/// Everything a page or server function may need, cheap to clone.
#[derive(Clone, axum::extract::FromRef)]
pub struct AppState {
    pub leptos: LeptosOptions,
    pub assets: Assets,
    pub started: Instant,
    pub service: Arc<Service>,
    pub backend: Arc<dyn Backend>,
    pub limits: ApiLimits,
    /// Check-ins per client, shared by the pages and the API.
    pub check_in_limit: Arc<RateLimiter>,
    pub keys: Arc<ApiKeys>,
}

/// Builds the whole router; tests drive it without a socket.
pub fn router(state: AppState) -> Router {
    let routes = generate_route_list(App);
    let context = {
        let assets = state.assets.clone();
        let started = StartedAt(state.started);
        let backend = state.backend.clone();
        move || {
            provide_context(assets.clone());
            provide_context(started);
            provide_context(backend.clone());
        }
    };
    let leptos = state.leptos.clone();
    // Server functions read their bodies themselves; this caps every body
    // (the API's routes have tighter limits of their own).
    let body_limit = RequestBodyLimitLayer::new(state.limits.max_enrol_bytes + (1 << 20));

    Router::new()
        .nest(
            "/api/v1",
            api::routes(Api {
                service: state.service.clone(),
                backend: state.backend.clone(),
                keys: state.keys.clone(),
                limits: state.limits,
                check_in_limit: state.check_in_limit.clone(),
            }),
        )
        .leptos_routes_with_context(&state, routes, context.clone(), move || shell(leptos.clone()))
        .fallback(leptos_axum::file_and_error_handler_with_context::<AppState, _>(context, shell))
        .layer(body_limit)
        .layer(middleware::from_fn(api_errors_as_json))
        .layer(middleware::from_fn(server_fn_guard))
        .layer(middleware::from_fn_with_state(state.backend.clone(), admin_pages_gate))
        .layer(middleware::from_fn(client_addr))
        .layer(middleware::from_fn(cache_headers))
        .layer(security_header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(security_header(header::REFERRER_POLICY, "no-referrer"))
        .layer(security_header(header::X_FRAME_OPTIONS, "DENY"))
        .layer(security_header(
            HeaderName::from_static("permissions-policy"),
            "camera=(self), microphone=(), geolocation=()",
        ))
        // Failures are logged where they happen (once, without request data);
        // a flood of deliberate 503s under load must not flood the log.
        .layer(TraceLayer::new_for_http().on_failure(()))
        .with_state(state)
}

/// The API's error shape for refusals made outside the API's own router
/// (the body limit above it, say).
async fn api_errors_as_json(request: Request, next: Next) -> Response {
    let api = request.uri().path().starts_with("/api/v1/");
    let response = next.run(request).await;
    if api { api::errors_as_json(response).await } else { response }
}

fn security_header(name: HeaderName, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
}

/// Sends a request for an admin page without a valid session to the login.
async fn admin_pages_gate(
    State(backend): State<Arc<dyn Backend>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let admin_page = path == "/admin" || path.starts_with("/admin/");
    if admin_page
        && !session_from_headers(request.headers())
            .is_some_and(|token| backend.is_admin_session(&token))
    {
        return Redirect::to("/login").into_response();
    }
    next.run(request).await
}

/// Keeps malformed calls of server functions from reaching Leptos's codecs
/// as they are: a multipart function called without a multipart body (whose
/// decoder would panic on the missing boundary) is refused, and a body the
/// function cannot decode is the caller's mistake, 400 or 413, not a 500.
async fn server_fn_guard(request: Request, next: Next) -> Response {
    use app::server_fns::{AddPersonPhotos, EnrolPerson};
    use axum::http::StatusCode;
    use leptos::server_fn::ServerFn;

    let path = request.uri().path();
    if path.starts_with("/api/v1/") || !path.starts_with("/api/") {
        return next.run(request).await;
    }
    if [EnrolPerson::PATH, AddPersonPhotos::PATH].contains(&path)
        && !has_multipart_boundary(request.headers())
    {
        return (StatusCode::BAD_REQUEST, "expected a multipart/form-data body with a boundary")
            .into_response();
    }
    let response = next.run(request).await;
    if response.status() != StatusCode::INTERNAL_SERVER_ERROR {
        return response;
    }
    // Leptos writes the error's kind first: `Deserialization|missing field ...`.
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 << 10).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let text = String::from_utf8_lossy(&bytes);
    if text.contains("length limit exceeded") {
        parts.status = StatusCode::PAYLOAD_TOO_LARGE;
    } else if ["Deserialization|", "Args|", "MissingArg|"].iter().any(|kind| text.starts_with(kind))
    {
        parts.status = StatusCode::BAD_REQUEST;
    }
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

/// Whether the request says it is `multipart/form-data` and names a boundary.
fn has_multipart_boundary(headers: &axum::http::HeaderMap) -> bool {
    let Some(content_type) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut parts = content_type.split(';').map(str::trim);
    parts.next().is_some_and(|mime| mime.eq_ignore_ascii_case("multipart/form-data"))
        && parts.any(|param| {
            param.split_once('=').is_some_and(|(name, value)| {
                name.trim().eq_ignore_ascii_case("boundary")
                    && !value.trim().trim_matches('"').is_empty()
            })
        })
}

/// Content-hashed bundles never change, so browsers may keep them for a
/// year; the service worker must always be fetched fresh to see new builds.
async fn cache_headers(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let policy = if path.starts_with("/pkg/") {
        Some("public, max-age=31536000, immutable")
    } else if path == "/sw.js" {
        Some("no-cache")
    } else {
        None
    };
    let mut response = next.run(request).await;
    if let Some(policy) = policy
        && response.status().is_success()
    {
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(policy));
    }
    response
}

/// Records the peer's address for rate limits (absent in socket-less tests).
async fn client_addr(mut request: Request, next: Next) -> Response {
    let addr = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string())
        .unwrap_or_default();
    request.extensions_mut().insert(ClientAddr(addr));
    next.run(request).await
}
