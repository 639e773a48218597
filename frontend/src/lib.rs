//! The browser entry point: hydrates the server-rendered page and registers
//! the service worker that makes FaceGate installable and work offline.

use wasm_bindgen::prelude::wasm_bindgen;

/// Called by the hydration script once the WASM module is loaded.
///
/// When hydration is done it sets `data-hydrated` on `<body>`, which the
/// browser tests wait for before they touch the page.
#[wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);

    let Some(window) = web_sys::window() else {
        return;
    };
    // Registration fails on plain HTTP other than localhost; the app still works, only not offline.
    let _ = window.navigator().service_worker().register("/sw.js");
    if let Some(body) = window.document().and_then(|doc| doc.body()) {
        // Failing to set a marker attribute only affects tests; nothing to recover.
        let _ = body.set_attribute("data-hydrated", "true");
    }
}
