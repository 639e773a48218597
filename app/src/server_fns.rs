//! The server functions the pages call. Their bodies run on the server and
//! reach the engine and the store through [`crate::backend::Backend`]; every
//! admin function refuses a request without an admin session (401).

use leptos::prelude::*;
use leptos::server_fn::codec::{Json, MultipartData, MultipartFormData};

use crate::model::{
    ApiKeyInfo, CheckIn, CheckInResult, EnrolReport, FacePreview, LogFilter, Person, Settings,
};

/// Identifies the largest face in a camera frame (a JPEG as a `data:` URL or
/// plain base64) and logs a recognised check-in. An unknown face is logged
/// only with `log_unknown`.
#[server(input = Json)]
pub async fn check_in_frame(
    frame: String,
    log_unknown: bool,
) -> Result<CheckInResult, ServerFnError> {
    use crate::backend::{backend, fail};
    let frame = ssr::decode_data_url(&frame)?;
    let client = crate::backend::client_address();
    backend()?.check_in(frame, log_unknown, client).await.map_err(fail)
}

/// Live feedback while enrolling from the camera: the faces in a frame and
/// whether it would be accepted. Nothing is stored or logged.
#[server(input = Json)]
pub async fn preview_faces(frame: String) -> Result<FacePreview, ServerFnError> {
    use crate::backend::{fail, require_admin};
    let backend = require_admin()?;
    backend.preview(ssr::decode_data_url(&frame)?).await.map_err(fail)
}

/// Logs the admin in: checks the password and sets the session cookie.
#[server]
pub async fn login(password: String) -> Result<(), ServerFnError> {
    use crate::backend::{SESSION_MAX_AGE_S, backend, client_address, fail, session_cookie};
    let backend = backend()?;
    let token = backend.login(password, client_address()).await.map_err(fail)?;
    ssr::set_cookie(&session_cookie(&token, SESSION_MAX_AGE_S, backend.secure_cookies()));
    Ok(())
}

/// Ends the admin session.
#[server]
pub async fn logout() -> Result<(), ServerFnError> {
    use crate::backend::{backend, session_cookie, session_token};
    if let Some(token) = session_token() {
        backend()?.logout(&token);
    }
    ssr::set_cookie(&session_cookie("", 0, false));
    Ok(())
}

/// Whether this request carries a valid admin session.
#[server]
pub async fn is_admin() -> Result<bool, ServerFnError> {
    use crate::backend::{backend, session_token};
    let backend = backend()?;
    Ok(session_token().is_some_and(|token| backend.is_admin_session(&token)))
}

/// Enrols a person from a form with a `name`, optional `allow_lookalike`,
/// and one or more `photo` files.
#[server(input = MultipartFormData)]
pub async fn enrol_person(data: MultipartData) -> Result<EnrolReport, ServerFnError> {
    use crate::backend::{fail, require_admin};
    let backend = require_admin()?;
    let form = ssr::read_form(data, backend.max_upload_bytes()).await?;
    let (name, allow_lookalike) =
        (form.text("name").unwrap_or_default(), form.flag("allow_lookalike"));
    backend.enrol(name, form.photos, allow_lookalike).await.map_err(fail)
}

/// Adds `photo` files to the person named by the `person_id` field.
#[server(input = MultipartFormData)]
pub async fn add_person_photos(data: MultipartData) -> Result<EnrolReport, ServerFnError> {
    use crate::backend::{fail, require_admin};
    let backend = require_admin()?;
    let form = ssr::read_form(data, backend.max_upload_bytes()).await?;
    let person_id =
        form.text("person_id").ok_or_else(|| ServerFnError::new("the form names no person"))?;
    let allow_lookalike = form.flag("allow_lookalike");
    backend.add_photos(person_id, form.photos, allow_lookalike).await.map_err(fail)
}

#[server]
pub async fn list_people() -> Result<Vec<Person>, ServerFnError> {
    use crate::backend::{fail, require_admin};
    require_admin()?.people().await.map_err(fail)
}

#[server]
pub async fn rename_person(person_id: String, name: String) -> Result<Person, ServerFnError> {
    use crate::backend::{fail, require_admin};
    require_admin()?.rename(person_id, name).await.map_err(fail)
}

/// Deletes a person with their photos, embeddings and thumbnails.
#[server]
pub async fn delete_person(person_id: String) -> Result<(), ServerFnError> {
    use crate::backend::{fail, require_admin};
    require_admin()?.delete(person_id).await.map_err(fail)
}

#[server]
pub async fn list_check_ins(filter: LogFilter) -> Result<Vec<CheckIn>, ServerFnError> {
    use crate::backend::{fail, require_admin};
    require_admin()?.check_ins(filter).await.map_err(fail)
}

#[server]
pub async fn server_settings() -> Result<Settings, ServerFnError> {
    use crate::backend::require_admin;
    Ok(require_admin()?.settings())
}

#[server]
pub async fn list_api_keys() -> Result<Vec<ApiKeyInfo>, ServerFnError> {
    use crate::backend::require_admin;
    Ok(require_admin()?.api_keys())
}

/// Creates an API key; the answer holds the key itself, shown once.
#[server]
pub async fn create_api_key(name: String) -> Result<(ApiKeyInfo, String), ServerFnError> {
    use crate::backend::{fail, require_admin};
    require_admin()?.create_api_key(name).map_err(fail)
}

#[server]
pub async fn revoke_api_key(id: String) -> Result<(), ServerFnError> {
    use crate::backend::{fail, require_admin};
    require_admin()?.revoke_api_key(id).map_err(fail)
}

#[cfg(feature = "ssr")]
mod ssr {
    use leptos::prelude::*;
    use leptos::server_fn::codec::MultipartData;

    use crate::backend::{PhotoUpload, set_status};

    /// Decodes a frame sent as base64 (400 when it is not).
    pub fn decode_data_url(text: &str) -> Result<Vec<u8>, ServerFnError> {
        crate::backend::decode_base64_image(text).map_err(|message| {
            set_status(400);
            ServerFnError::new(message)
        })
    }

    pub fn set_cookie(cookie: &str) {
        if let Some(response) = use_context::<leptos_axum::ResponseOptions>()
            && let Ok(value) = http::HeaderValue::from_str(cookie)
        {
            response.append_header(http::header::SET_COOKIE, value);
        }
    }

    /// The text fields and photo files of a multipart form.
    pub struct Form {
        texts: Vec<(String, String)>,
        pub photos: Vec<PhotoUpload>,
    }

    impl Form {
        pub fn text(&self, name: &str) -> Option<String> {
            self.texts.iter().find(|(field, _)| field == name).map(|(_, value)| value.clone())
        }

        pub fn flag(&self, name: &str) -> bool {
            self.text(name).is_some_and(|value| matches!(value.as_str(), "true" | "on" | "1"))
        }
    }

    /// Reads a form, refusing (413) one whose files add up to more than `max_bytes`.
    pub async fn read_form(data: MultipartData, max_bytes: usize) -> Result<Form, ServerFnError> {
        let mut multipart =
            data.into_inner().ok_or_else(|| ServerFnError::new("expected a multipart form"))?;
        let mut form = Form { texts: Vec::new(), photos: Vec::new() };
        let mut total = 0usize;
        let bad_form = |e: &dyn std::fmt::Display| {
            set_status(400);
            ServerFnError::new(format!("malformed form: {e}"))
        };
        while let Some(mut field) = multipart.next_field().await.map_err(|e| bad_form(&e))? {
            let name = field.name().unwrap_or_default().to_owned();
            let file_name = field.file_name().map(str::to_owned);
            let mut bytes = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(|e| bad_form(&e))? {
                total += chunk.len();
                if total > max_bytes {
                    set_status(413);
                    return Err(ServerFnError::new(format!(
                        "the photos add up to more than {} MiB; send fewer or smaller photos",
                        max_bytes >> 20
                    )));
                }
                bytes.extend_from_slice(&chunk);
            }
            if file_name.is_none() && name == "capture" {
                // A camera capture arrives as a JPEG data URL in a text field.
                let index = form.photos.len() + 1;
                form.photos.push((
                    format!("camera photo {index}"),
                    decode_data_url(&String::from_utf8_lossy(&bytes))?,
                ));
                continue;
            }
            match file_name {
                Some(file_name) => {
                    // Browsers send an empty, nameless part for a file input left empty.
                    if !(file_name.is_empty() && bytes.is_empty()) {
                        form.photos.push((file_name, bytes));
                    }
                }
                None => form.texts.push((name, String::from_utf8_lossy(&bytes).into_owned())),
            }
        }
        Ok(form)
    }
}
