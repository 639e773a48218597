//! The admin login.

use leptos::prelude::*;

use crate::server_fns::Login;

#[component]
pub fn LoginPage() -> impl IntoView {
    let login = ServerAction::<Login>::new();
    Effect::new(move |_| {
        if let Some(Ok(())) = login.value().get() {
            // A full load, so that the server renders the admin pages with the new cookie.
            if let Some(window) = leptos::web_sys::window() {
                let _ = window.location().set_href("/admin");
            }
        }
    });
    let error =
        move || login.value().get().and_then(Result::err).map(|e| clean_error(&e.to_string()));

    view! {
        <section class="panel narrow">
            <h1>"Admin login"</h1>
            <ActionForm action=login>
                <label>
                    "Password"
                    <input type="password" name="password" autocomplete="current-password" required=true />
                </label>
                <button type="submit" disabled=move || login.pending().get()>"Log in"</button>
            </ActionForm>
            {move || error().map(|e| view! { <p class="warn" role="alert">{e}</p> })}
        </section>
    }
}

/// A server function's error without the framework's prefix.
pub fn clean_error(message: &str) -> String {
    message
        .trim_start_matches("error running server function: ")
        .trim_start_matches("Error running server function: ")
        .to_owned()
}
