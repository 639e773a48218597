//! FaceGate's user interface: the pages, their components and the server
//! functions they call. Rendered on the server (`ssr`) and hydrated in the
//! browser (`hydrate`); server-only code lives behind the `ssr` feature.

#[cfg(feature = "ssr")]
pub mod backend;
pub mod camera;
pub mod model;
pub mod pages;
pub mod server_fns;
pub mod status;

use leptos::prelude::*;
use leptos_meta::{Meta, MetaTags, Title, provide_meta_context};
use leptos_router::{
    StaticSegment,
    components::{Route, Router, Routes},
};

use crate::pages::checkin::CheckInPage;

/// Names of the built front-end assets, as laid out by `cargo xtask site`.
///
/// The server reads them from the site's `hash.txt` at start-up and provides
/// them as context, so that the shell links the content-hashed files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assets {
    /// URL of the stylesheet, e.g. `/pkg/facegate.1a2b3c.css`.
    pub stylesheet: String,
    /// The check-in page's own, smaller bundle, when the site has one.
    pub check_in_bundle: Option<Bundle>,
}

/// A browser bundle other than the main one, for the hydration script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    /// The file name stem of its JS glue and WASM.
    pub output_name: String,
    /// The absolute path of the file that lists its content hashes.
    pub hash_file: String,
}

/// The HTML document around every page.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    let assets = use_context::<Assets>();
    #[cfg(feature = "ssr")]
    let options = bundle_for_this_page(options, assets.as_ref());
    let stylesheet =
        assets.map(|assets| assets.stylesheet).unwrap_or_else(|| "/pkg/facegate.css".to_owned());
    #[cfg(feature = "ssr")]
    set_content_security_policy();
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1, viewport-fit=cover" />
                <meta name="theme-color" content="#0f172a" />
                <link rel="manifest" href="/manifest.webmanifest" />
                <link rel="icon" type="image/png" sizes="192x192" href="/icons/icon-192.png" />
                <link rel="apple-touch-icon" href="/icons/icon-192.png" />
                <link rel="stylesheet" href=stylesheet />
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

/// The check-in page (`/`) hydrates with its own bundle when there is one;
/// every other page with the main bundle.
#[cfg(feature = "ssr")]
fn bundle_for_this_page(mut options: LeptosOptions, assets: Option<&Assets>) -> LeptosOptions {
    let on_check_in_page =
        use_context::<http::request::Parts>().is_some_and(|request| request.uri.path() == "/");
    if let Some(bundle) = assets.and_then(|assets| assets.check_in_bundle.as_ref())
        && on_check_in_page
    {
        options.output_name = bundle.output_name.as_str().into();
        options.hash_file = bundle.hash_file.as_str().into();
    }
    options
}

/// Sends a Content-Security-Policy that allows only this server's scripts,
/// the inline scripts Leptos writes (each carries the response's nonce), and
/// the WASM bundle; no framing, no plugins, no foreign connections.
#[cfg(feature = "ssr")]
fn set_content_security_policy() {
    let (Some(nonce), Some(response)) =
        (leptos::nonce::use_nonce(), use_context::<leptos_axum::ResponseOptions>())
    else {
        return;
    };
    let policy = format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self'; style-src-attr 'unsafe-inline'; img-src 'self' data: blob:; \
         media-src 'self' blob: mediastream:; connect-src 'self'; worker-src 'self'; \
         manifest-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; \
         frame-ancestors 'none'"
    );
    if let Ok(value) = http::HeaderValue::from_str(&policy) {
        response.insert_header(http::header::CONTENT_SECURITY_POLICY, value);
    }
}

/// The application: meta tags and the router.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();

    view! {
        <Title text="FaceGate" />
        <Meta name="description" content="Face-recognition check-in" />
        <Router>
            <header class="topbar">
                <a class="brand" href="/">"FaceGate"</a>
                <a class="admin-link" href="/admin" rel="external">"Admin"</a>
            </header>
            <main>{routes()}</main>
        </Router>
    }
}

#[cfg(feature = "admin")]
fn routes() -> impl IntoView {
    use crate::pages::admin::{
        AdminShell, KeysPage, LogPage, PeoplePage, RegisterPage, SettingsPage,
    };
    use crate::pages::login::LoginPage;
    use leptos_router::SsrMode;
    use leptos_router::components::ParentRoute;
    view! {
        <Routes fallback=NotFound>
            <Route path=StaticSegment("") view=CheckInPage />
            <Route path=StaticSegment("login") view=LoginPage />
            <ParentRoute path=StaticSegment("admin") view=AdminShell ssr=SsrMode::Async>
                <Route path=StaticSegment("") view=RegisterPage />
                <Route path=StaticSegment("people") view=PeoplePage />
                <Route path=StaticSegment("log") view=LogPage />
                <Route path=StaticSegment("keys") view=KeysPage />
                <Route path=StaticSegment("settings") view=SettingsPage />
            </ParentRoute>
        </Routes>
    }
}

/// The check-in page's own bundle: the page is served only at `/`, and the
/// links away from it load their pages from the server.
#[cfg(not(feature = "admin"))]
fn routes() -> impl IntoView {
    view! {
        <Routes fallback=NotFound>
            <Route path=StaticSegment("") view=CheckInPage />
        </Routes>
    }
}

#[component]
fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    {
        if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
            response.set_status(http::StatusCode::NOT_FOUND);
        }
    }
    view! {
        <h1>"Page not found"</h1>
        <a href="/">"Back to check-in"</a>
    }
}
