//! The admin pages: register people, manage them, read the check-in log and
//! the settings. Each page renders only for a valid admin session; without
//! one the server answers with a redirect to the login page.

use leptos::prelude::*;
use leptos_router::components::{A, Outlet, Redirect};

use crate::model::{
    CheckIn, EnrolReport, FacePreview, LogFilter, Person, date_to_ms, fixed, format_utc,
};
use crate::pages::login::clean_error;
use crate::server_fns::{
    Logout, delete_person, is_admin, list_check_ins, list_people, rename_person, server_settings,
};

/// The frame around every admin page: the session check and the navigation.
#[component]
pub fn AdminShell() -> impl IntoView {
    let admin = Resource::new(|| (), |()| is_admin());
    let logout = ServerAction::<Logout>::new();
    Effect::new(move |_| {
        if logout.value().get().is_some()
            && let Some(window) = leptos::web_sys::window()
        {
            let _ = window.location().set_href("/login");
        }
    });

    view! {
        <Suspense fallback=|| view! { <p class="muted">"Checking your session…"</p> }>
            {move || Suspend::new(async move {
                match admin.await {
                    Ok(true) => view! {
                        <nav class="admin-nav">
                            <A href="/admin" exact=true>"Register"</A>
                            <A href="/admin/people">"People"</A>
                            <A href="/admin/log">"Check-in log"</A>
                            <A href="/admin/keys">"API keys"</A>
                            <A href="/admin/settings">"Settings"</A>
                            <a href="/">"Check-in"</a>
                            <button class="link" on:click=move |_| { logout.dispatch(Logout {}); }>"Log out"</button>
                        </nav>
                        <Outlet />
                    }
                    .into_any(),
                    _ => view! { <Redirect path="/login" /> }.into_any(),
                }
            })}
        </Suspense>
    }
}

fn time_text(ms: i64) -> String {
    format_utc(ms).replace('T', " ").replace('Z', " UTC")
}

/// A log time that, on a narrow screen, wraps only between date and time.
fn time_cell(ms: i64) -> impl IntoView {
    let text = time_text(ms);
    let (date, time) = text.split_once(' ').unwrap_or((text.as_str(), ""));
    let (date, time) = (date.to_owned(), time.to_owned());
    view! { <time datetime=format_utc(ms)>{date} " " <span class="nowrap">{time}</span></time> }
}

/// Register a person: a name and photos from files or the camera.
#[component]
pub fn RegisterPage() -> impl IntoView {
    let form = NodeRef::<leptos::html::Form>::new();
    let captures = RwSignal::new(Vec::<String>::new());
    let report = RwSignal::new(None::<Result<EnrolReport, String>>);
    let busy = RwSignal::new(false);

    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        #[cfg(feature = "hydrate")]
        {
            let Some(form) = form.get_untracked() else {
                return;
            };
            let Ok(data) = leptos::web_sys::FormData::new_with_form(&form) else {
                return;
            };
            for capture in captures.get_untracked() {
                let _ = data.append_with_str("capture", &capture);
            }
            busy.set(true);
            leptos::task::spawn_local(async move {
                let outcome = crate::server_fns::enrol_person(data.into()).await;
                busy.set(false);
                let succeeded = matches!(&outcome, Ok(EnrolReport { person: Some(_), .. }));
                report.set(Some(outcome.map_err(|e| clean_error(&e.to_string()))));
                if succeeded {
                    captures.set(Vec::new());
                    form.reset();
                }
            });
        }
    };

    view! {
        <section class="panel">
            <h1>"Register a person"</h1>
            <form node_ref=form on:submit=on_submit class="stack">
                <label>"Name" <input type="text" name="name" required=true maxlength="100" autocomplete="off" /></label>
                <label class="file">
                    "Photos (several, each with just this person's face)"
                    <input type="file" name="photo" accept="image/*" multiple=true />
                </label>
                <CameraCapture captures />
                <label class="check">
                    <input type="checkbox" name="allow_lookalike" value="true" />
                    "Enrol even if a photo looks like someone already enrolled"
                </label>
                <button type="submit" disabled=busy>{move || if busy.get() { "Enrolling…" } else { "Register" }}</button>
            </form>
            {move || report.get().map(|outcome| match outcome {
                Ok(report) => view! { <EnrolResult report /> }.into_any(),
                Err(error) => view! { <p class="warn" role="alert">{error}</p> }.into_any(),
            })}
        </section>
    }
}

#[component]
fn EnrolResult(report: EnrolReport) -> impl IntoView {
    let headline = match &report.person {
        Some(person) => format!("{} is enrolled with {} photo(s).", person.name, person.photos),
        None => "Nobody was enrolled: no photo was usable.".to_owned(),
    };
    view! {
        <div id="enrol-result" class="result" role="status">
            <p class=if report.person.is_some() { "ok" } else { "warn" }>{headline}</p>
            <ul class="outcomes">
                {report
                    .photos
                    .into_iter()
                    .map(|photo| {
                        let class = if photo.accepted { "ok" } else { "warn" };
                        view! {
                            <li class=class>
                                <strong>{photo.label}</strong>
                                ": "
                                {photo.message}
                            </li>
                        }
                    })
                    .collect_view()}
            </ul>
        </div>
    }
}

/// Photos from the camera, with a live face box and per-frame advice.
#[component]
fn CameraCapture(captures: RwSignal<Vec<String>>) -> impl IntoView {
    let on = RwSignal::new(false);
    let video = NodeRef::<leptos::html::Video>::new();
    let canvas = NodeRef::<leptos::html::Canvas>::new();
    let preview = RwSignal::new(None::<FacePreview>);
    let problem = RwSignal::new(None::<String>);

    #[cfg(feature = "hydrate")]
    {
        use crate::camera::{
            FRAME_MAX_SIDE, Facing, capture_frame, sleep, start_camera, stop_camera,
        };
        let stream = StoredValue::new_local(None::<leptos::web_sys::MediaStream>);
        Effect::new(move |_| {
            if !on.get() {
                if let Some(old) = stream.get_value() {
                    stop_camera(&old);
                }
                stream.set_value(None);
                preview.set(None);
                return;
            }
            leptos::task::spawn_local(async move {
                let Some(video_element) = video.get_untracked() else {
                    return;
                };
                match start_camera(&video_element, Facing::User).await {
                    Ok(new_stream) => stream.set_value(Some(new_stream)),
                    Err(reason) => {
                        problem.set(Some(reason));
                        on.set(false);
                        return;
                    }
                }
                while on.get_untracked() {
                    sleep(700).await;
                    let (Some(video), Some(canvas)) =
                        (video.get_untracked(), canvas.get_untracked())
                    else {
                        break;
                    };
                    let Some(frame) = capture_frame(&video, &canvas, FRAME_MAX_SIDE) else {
                        continue;
                    };
                    if let Ok(faces) = crate::server_fns::preview_faces(frame).await {
                        preview.set(Some(faces));
                    }
                }
            });
        });
        on_cleanup(move || {
            if let Some(old) = stream.get_value() {
                stop_camera(&old);
            }
        });
    }

    let capture = move |_| {
        #[cfg(feature = "hydrate")]
        {
            let (Some(video), Some(canvas)) = (video.get_untracked(), canvas.get_untracked())
            else {
                return;
            };
            if let Some(frame) = crate::camera::capture_frame(&video, &canvas, 1280) {
                captures.update(|all| all.push(frame));
            }
        }
    };
    let boxes = move || {
        preview.get().map(|p| {
            p.faces
                .iter()
                .map(|f| {
                    let style = f.css_position(p.image_width, p.image_height);
                    let class = if p.usable { "face-box ok" } else { "face-box" };
                    view! { <div class=class style=style></div> }
                })
                .collect_view()
        })
    };

    view! {
        <fieldset class="camera-capture">
            <legend>"Camera"</legend>
            <button type="button" on:click=move |_| on.update(|value| *value = !*value)>
                {move || if on.get() { "Stop camera" } else { "Use camera" }}
            </button>
            {move || problem.get().map(|p| view! { <p class="warn">{p}</p> })}
            <div class="stage mirrored" hidden=move || !on.get()>
                <video node_ref=video autoplay=true playsinline=true muted=true aria-label="Camera preview"></video>
                {boxes}
            </div>
            <canvas node_ref=canvas hidden=true></canvas>
            <Show when=move || on.get()>
                <p class="muted">{move || preview.get().map(|p| p.message).unwrap_or_else(|| "Starting…".to_owned())}</p>
                <button type="button" on:click=capture>"Capture photo"</button>
            </Show>
            <ul class="captures">
                {move || {
                    captures
                        .get()
                        .into_iter()
                        .enumerate()
                        .map(|(index, src)| {
                            view! {
                                <li>
                                    <img src=src alt=format!("camera photo {}", index + 1) />
                                    <button
                                        type="button"
                                        class="link"
                                        on:click=move |_| captures.update(|all| { all.remove(index); })
                                    >
                                        "Remove"
                                    </button>
                                </li>
                            }
                        })
                        .collect_view()
                }}
            </ul>
        </fieldset>
    }
}

/// Everyone enrolled: rename, add photos, delete.
#[component]
pub fn PeoplePage() -> impl IntoView {
    let version = RwSignal::new(0u32);
    let people = Resource::new(move || version.get(), |_| list_people());
    let reload = move || version.update(|v| *v += 1);

    view! {
        <section class="panel">
            <h1>"People"</h1>
            <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match people.await {
                        Ok(people) if people.is_empty() => view! {
                            <p class="muted">"Nobody is enrolled yet. " <A href="/admin">"Register someone"</A></p>
                        }
                        .into_any(),
                        Ok(people) => view! {
                            <ul id="people" class="people">
                                {people.into_iter().map(|person| view! { <PersonRow person reload /> }).collect_view()}
                            </ul>
                        }
                        .into_any(),
                        Err(error) => view! { <p class="warn">{clean_error(&error.to_string())}</p> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

#[component]
fn PersonRow(person: Person, reload: impl Fn() + Copy + Send + Sync + 'static) -> impl IntoView {
    let name = RwSignal::new(person.name.clone());
    let message = RwSignal::new(None::<String>);
    let id = person.id.clone();
    let photo_form = NodeRef::<leptos::html::Form>::new();

    let rename = {
        let id = id.clone();
        move |_| {
            let (id, new_name) = (id.clone(), name.get_untracked());
            leptos::task::spawn_local(async move {
                match rename_person(id, new_name).await {
                    Ok(_) => reload(),
                    Err(error) => message.set(Some(clean_error(&error.to_string()))),
                }
            });
        }
    };
    let delete = {
        let (id, who) = (id.clone(), person.name.clone());
        move |_| {
            let confirmed = leptos::web_sys::window()
                .and_then(|w| {
                    w.confirm_with_message(&format!("Delete {who} with all their photos?")).ok()
                })
                .unwrap_or(false);
            if !confirmed {
                return;
            }
            let id = id.clone();
            leptos::task::spawn_local(async move {
                match delete_person(id).await {
                    Ok(()) => reload(),
                    Err(error) => message.set(Some(clean_error(&error.to_string()))),
                }
            });
        }
    };
    let add_photos = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        #[cfg(feature = "hydrate")]
        {
            let Some(form) = photo_form.get_untracked() else {
                return;
            };
            let Ok(data) = leptos::web_sys::FormData::new_with_form(&form) else {
                return;
            };
            leptos::task::spawn_local(async move {
                match crate::server_fns::add_person_photos(data.into()).await {
                    Ok(report) => {
                        let refused: Vec<String> = report
                            .photos
                            .iter()
                            .filter(|p| !p.accepted)
                            .map(|p| format!("{}: {}", p.label, p.message))
                            .collect();
                        if refused.is_empty() {
                            reload();
                        } else {
                            message.set(Some(refused.join("; ")));
                        }
                    }
                    Err(error) => message.set(Some(clean_error(&error.to_string()))),
                }
            });
        }
    };
    let cover = person.cover_photo_id.clone().map(|photo| format!("/api/v1/photos/{photo}"));
    let last = person.last_check_in_ms.map_or_else(|| "never".to_owned(), time_text);

    view! {
        <li class="person" data-name=person.name.clone()>
            {cover.map(|src| view! { <img class="cover" src=src alt="" /> })}
            <div class="details">
                <strong class="name">{person.name.clone()}</strong>
                <span class="muted">{format!("{} photo(s) · last check-in: {last}", person.photos)}</span>
                <div class="row">
                    <input
                        type="text"
                        aria-label="New name"
                        prop:value=move || name.get()
                        on:input=move |ev| name.set(event_target_value(&ev))
                    />
                    <button type="button" on:click=rename>"Rename"</button>
                    <button type="button" class="danger" on:click=delete>"Delete"</button>
                </div>
                <form node_ref=photo_form on:submit=add_photos class="row">
                    <input type="hidden" name="person_id" value=id />
                    <input type="file" name="photo" accept="image/*" multiple=true aria-label="More photos" />
                    <button type="submit">"Add photos"</button>
                </form>
                {move || message.get().map(|m| view! { <p class="warn">{m}</p> })}
            </div>
        </li>
    }
}

/// The check-in log, newest first, with filters and a CSV download.
#[component]
pub fn LogPage() -> impl IntoView {
    let person = RwSignal::new(String::new());
    let from = RwSignal::new(String::new());
    let to = RwSignal::new(String::new());
    let filter = Memo::new(move |_| LogFilter {
        person_id: Some(person.get()).filter(|p| !p.is_empty()),
        from_ms: date_to_ms(&from.get()),
        // The "to" date is inclusive: everything before the next midnight.
        to_ms: date_to_ms(&to.get()).map(|ms| ms + 86_400_000),
        limit: Some(500),
    });
    let log = Resource::new(move || filter.get(), list_check_ins);
    let people = Resource::new(|| (), |()| list_people());
    let csv_href = move || {
        let f = filter.get();
        let mut href = "/api/v1/checkins?format=csv&limit=10000".to_owned();
        if let Some(person) = f.person_id {
            href.push_str(&format!("&person_id={person}"));
        }
        if let Some(ms) = f.from_ms {
            href.push_str(&format!("&from_ms={ms}"));
        }
        if let Some(ms) = f.to_ms {
            href.push_str(&format!("&to_ms={ms}"));
        }
        href
    };

    view! {
        <section class="panel">
            <h1>"Check-in log"</h1>
            <div class="filters row">
                <label>
                    "Person"
                    <select on:change=move |ev| person.set(event_target_value(&ev))>
                        <option value="">"Everyone"</option>
                        <Suspense>
                            {move || Suspend::new(async move {
                                people
                                    .await
                                    .unwrap_or_default()
                                    .into_iter()
                                    .map(|p| view! { <option value=p.id>{p.name}</option> })
                                    .collect_view()
                            })}
                        </Suspense>
                    </select>
                </label>
                <label>"From" <input type="date" on:change=move |ev| from.set(event_target_value(&ev)) /></label>
                <label>"To" <input type="date" on:change=move |ev| to.set(event_target_value(&ev)) /></label>
                <a class="button" href=csv_href download="facegate-checkins.csv">"Download CSV"</a>
            </div>
            <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match log.await {
                        Ok(entries) if entries.is_empty() => view! { <p class="muted">"No check-ins."</p> }.into_any(),
                        Ok(entries) => view! { <LogTable entries /> }.into_any(),
                        Err(error) => view! { <p class="warn">{clean_error(&error.to_string())}</p> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

#[component]
fn LogTable(entries: Vec<CheckIn>) -> impl IntoView {
    view! {
        <div class="table-wrap">
            <table id="log">
                <thead>
                    <tr><th>"Time"</th><th>"Person"</th><th>"Score"</th><th>"Detector"</th></tr>
                </thead>
                <tbody>
                    {entries
                        .into_iter()
                        .map(|entry| {
                            let who = entry.person_name.clone().unwrap_or_else(|| "unknown".to_owned());
                            let score = entry.score.map(|s| fixed(s, 2)).unwrap_or_default();
                            view! {
                                <tr>
                                    <td>{time_cell(entry.at_ms)}</td>
                                    <td>{who}</td>
                                    <td>{score}</td>
                                    <td>{entry.detector}</td>
                                </tr>
                            }
                        })
                        .collect_view()}
                </tbody>
            </table>
        </div>
    }
}

/// "1 person, 4 faces", "2 people, 7 faces".
fn enrolled_text(people: u32, faces: u32) -> String {
    let people = if people == 1 { "1 person".to_owned() } else { format!("{people} people") };
    let faces = if faces == 1 { "1 face".to_owned() } else { format!("{faces} faces") };
    format!("{people}, {faces}")
}

/// The server's settings, read-only.
#[component]
pub fn SettingsPage() -> impl IntoView {
    let settings = Resource::new(|| (), |()| server_settings());
    view! {
        <section class="panel">
            <h1>"Settings"</h1>
            <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match settings.await {
                        Ok(s) => view! {
                            <dl class="settings">
                                <dt>"Detector"</dt><dd>{s.detector}</dd>
                                <dt>"Detectors available"</dt><dd>{s.detectors.join(", ")}</dd>
                                <dt>"Match threshold"</dt><dd>{fixed(s.threshold, 2)}</dd>
                                <dt>"Minimum margin"</dt><dd>{fixed(s.min_margin, 2)}</dd>
                                <dt>"Minimum face width"</dt><dd>{format!("{} px", fixed(s.min_face_px, 0))}</dd>
                                <dt>"Store"</dt><dd>{s.store_backend}</dd>
                                <dt>"Thumbnails with check-ins"</dt><dd>{if s.keep_thumbnails { "kept" } else { "not kept" }}</dd>
                                <dt>"Names of deleted people in the log"</dt><dd>{if s.keep_names_in_log { "kept" } else { "erased" }}</dd>
                                <dt>"Enrolled"</dt><dd>{enrolled_text(s.people, s.faces)}</dd>
                            </dl>
                        }
                        .into_any(),
                        Err(error) => view! { <p class="warn">{clean_error(&error.to_string())}</p> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enrolled_text_counts_in_words() {
        assert_eq!(enrolled_text(1, 1), "1 person, 1 face");
        assert_eq!(enrolled_text(1, 4), "1 person, 4 faces");
        assert_eq!(enrolled_text(0, 0), "0 people, 0 faces");
        assert_eq!(enrolled_text(2, 7), "2 people, 7 faces");
    }
}

/// API keys for the JSON API: create (shown once), list, revoke.
#[component]
pub fn KeysPage() -> impl IntoView {
    let version = RwSignal::new(0u32);
    let keys = Resource::new(move || version.get(), |_| crate::server_fns::list_api_keys());
    let name = RwSignal::new(String::new());
    let created = RwSignal::new(None::<String>);
    let problem = RwSignal::new(None::<String>);

    let create = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let key_name = name.get_untracked();
        leptos::task::spawn_local(async move {
            match crate::server_fns::create_api_key(key_name).await {
                Ok((_, secret)) => {
                    created.set(Some(secret));
                    problem.set(None);
                    name.set(String::new());
                    version.update(|v| *v += 1);
                }
                Err(error) => problem.set(Some(clean_error(&error.to_string()))),
            }
        });
    };
    let revoke = move |id: String| {
        leptos::task::spawn_local(async move {
            match crate::server_fns::revoke_api_key(id).await {
                Ok(()) => version.update(|v| *v += 1),
                Err(error) => problem.set(Some(clean_error(&error.to_string()))),
            }
        });
    };

    view! {
        <section class="panel">
            <h1>"API keys"</h1>
            <p class="muted">
                "Programs call the JSON API with a key in the X-API-Key header. "
                "A key is shown once, when it is created; only its hash is kept."
            </p>
            <form on:submit=create class="row">
                <input
                    type="text"
                    aria-label="Key name"
                    placeholder="What is it for? (e.g. front door kiosk)"
                    required=true
                    maxlength="100"
                    prop:value=move || name.get()
                    on:input=move |ev| name.set(event_target_value(&ev))
                />
                <button type="submit">"Create key"</button>
            </form>
            {move || created.get().map(|secret| view! {
                <p id="new-key" class="ok" role="status">
                    "New key (copy it now, it is not shown again): " <code>{secret}</code>
                </p>
            })}
            {move || problem.get().map(|p| view! { <p class="warn" role="alert">{p}</p> })}
            <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match keys.await {
                        Ok(keys) if keys.is_empty() => view! { <p class="muted">"No keys yet."</p> }.into_any(),
                        Ok(keys) => view! {
                            <table id="keys">
                                <thead><tr><th>"Name"</th><th>"Starts with"</th><th>"Created"</th><th></th></tr></thead>
                                <tbody>
                                    {keys
                                        .into_iter()
                                        .map(|key| {
                                            let id = key.id.clone();
                                            view! {
                                                <tr>
                                                    <td>{key.name}</td>
                                                    <td><code>{key.prefix}</code></td>
                                                    <td>{time_text(key.created_ms)}</td>
                                                    <td>
                                                        <button type="button" class="danger" on:click=move |_| revoke(id.clone())>
                                                            "Revoke"
                                                        </button>
                                                    </td>
                                                </tr>
                                            }
                                        })
                                        .collect_view()}
                                </tbody>
                            </table>
                        }
                        .into_any(),
                        Err(error) => view! { <p class="warn">{clean_error(&error.to_string())}</p> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}
