//! The check-in page, the home of the installed app: the camera runs, a
//! frame goes to the server every half second, and the person is greeted by
//! name once recognised. Without a camera, a photo can be used instead.

use leptos::prelude::*;

use crate::camera::Facing;
use crate::model::{CheckInResult, CheckInStatus, format_utc};

/// What the page shows.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(
    not(feature = "hydrate"),
    expect(dead_code, reason = "the camera loop runs in the browser only")
)]
enum Phase {
    /// Checking that the server answers.
    Connecting,
    /// Looking for a face.
    Scanning,
    /// Recognised: whom and when.
    Welcome { name: String, at_ms: i64 },
    /// The camera cannot be used; the reason, in words.
    NoCamera(String),
    /// The server answered a frame with a refusal; the reason, in words.
    Refused(String),
}

/// Milliseconds from one frame being taken to the next.
#[cfg(feature = "hydrate")]
const FRAME_INTERVAL_MS: i32 = 500;
/// Milliseconds to wait for the camera's first picture before looking again.
#[cfg(feature = "hydrate")]
const FIRST_PICTURE_POLL_MS: i32 = 50;
/// After this many frames in a row with an unknown face, one is logged.
#[cfg(feature = "hydrate")]
const UNKNOWN_FRAMES_BEFORE_LOGGING: u32 = 6;
/// How long the welcome stays before the next person is looked for.
#[cfg(feature = "hydrate")]
const WELCOME_MS: i32 = 6000;
/// How long to wait after a failed check-in before the next frame.
#[cfg(feature = "hydrate")]
const RETRY_MS: i32 = 2000;

#[component]
pub fn CheckInPage() -> impl IntoView {
    let phase = RwSignal::new(Phase::Connecting);
    // Whether the server answers, apart from the phase: the network can go
    // away in any phase, and a late camera error must not hide that.
    let reachable = RwSignal::new(true);
    let last = RwSignal::new(None::<CheckInResult>);
    let facing = RwSignal::new(Facing::User);
    let video = NodeRef::<leptos::html::Video>::new();
    let canvas = NodeRef::<leptos::html::Canvas>::new();

    #[cfg(feature = "hydrate")]
    {
        use crate::camera::{FRAME_MAX_SIDE, capture_frame, sleep, start_camera, stop_camera};
        use crate::server_fns::check_in_frame;
        use leptos::task::spawn_local;

        // Each camera session has a number; a loop whose number is stale ends.
        let session = StoredValue::new(0u32);
        let stream = StoredValue::new_local(None::<web_sys::MediaStream>);

        let scan = move |id: u32| {
            spawn_local(async move {
                let mut unknown_in_a_row = 0;
                let mut unknown_logged = false;
                while session.get_value() == id {
                    let frame = video
                        .get_untracked()
                        .zip(canvas.get_untracked())
                        .and_then(|(video, canvas)| capture_frame(&video, &canvas, FRAME_MAX_SIDE));
                    let Some(frame) = frame else {
                        // The first frame goes out as soon as the camera shows a picture.
                        sleep(FIRST_PICTURE_POLL_MS).await;
                        continue;
                    };
                    let taken_ms = js_sys::Date::now();
                    let log_unknown =
                        !unknown_logged && unknown_in_a_row + 1 >= UNKNOWN_FRAMES_BEFORE_LOGGING;
                    let answer = check_in_frame(frame, log_unknown).await;
                    if session.get_value() != id {
                        break;
                    }
                    reachable.set(!answer.as_ref().is_err_and(unreachable));
                    match answer {
                        Ok(result) => {
                            unknown_in_a_row = if result.status == CheckInStatus::Unknown {
                                unknown_in_a_row + 1
                            } else {
                                0
                            };
                            unknown_logged |= result.check_in.is_some()
                                && result.status == CheckInStatus::Unknown;
                            let welcome = (result.status == CheckInStatus::Recognised).then(|| {
                                Phase::Welcome {
                                    name: result.person_name.clone().unwrap_or_default(),
                                    at_ms: result.check_in.as_ref().map_or(0, |c| c.at_ms),
                                }
                            });
                            last.set(Some(result));
                            phase.set(Phase::Scanning);
                            if let Some(welcome) = welcome {
                                phase.set(welcome);
                                sleep(WELCOME_MS).await;
                                if session.get_value() == id {
                                    last.set(None);
                                    phase.set(Phase::Scanning);
                                }
                            }
                        }
                        Err(error) => {
                            if !unreachable(&error) {
                                let reason = crate::pages::login::clean_error(&error.to_string());
                                phase.set(Phase::Refused(reason));
                            }
                            sleep(RETRY_MS).await;
                        }
                    }
                    let elapsed_ms = (js_sys::Date::now() - taken_ms) as i32;
                    sleep((FRAME_INTERVAL_MS - elapsed_ms).max(0)).await;
                }
            });
        };

        let start = move || {
            session.update_value(|id| *id += 1);
            let id = session.get_value();
            if let Some(old) = stream.get_value() {
                stop_camera(&old);
            }
            spawn_local(async move {
                // Until the server answers, ask again now and then: it may be
                // restarting while the network itself stays up.
                while crate::status::fetch_server_status().await.is_err() {
                    reachable.set(false);
                    sleep(RETRY_MS).await;
                    if session.get_value() != id {
                        return;
                    }
                }
                reachable.set(true);
                let Some(video_element) = video.get_untracked() else {
                    return;
                };
                let started = start_camera(&video_element, facing.get_untracked()).await;
                if session.get_value() != id {
                    // Switched or left while the camera was starting.
                    if let Ok(late) = started {
                        stop_camera(&late);
                    }
                    return;
                }
                match started {
                    Ok(new_stream) => {
                        stream.set_value(Some(new_stream));
                        phase.set(Phase::Scanning);
                        scan(id);
                    }
                    Err(reason) => phase.set(Phase::NoCamera(reason)),
                }
            });
        };

        Effect::new(move |_| {
            facing.track();
            start();
        });
        on_cleanup(move || {
            session.update_value(|id| *id += 1);
            if let Some(old) = stream.get_value() {
                stop_camera(&old);
            }
        });
        let _ = window_event_listener(leptos::ev::online, move |_| start());
        let _ = window_event_listener(leptos::ev::offline, move |_| reachable.set(false));
    }

    let mirrored = move || (facing.get() == Facing::User).then_some("mirrored");
    let face_box = move || {
        last.get().and_then(|result| {
            let face = result.face?;
            let style = face.css_position(result.image_width, result.image_height);
            let class = match result.status {
                CheckInStatus::Recognised => "face-box ok",
                _ => "face-box",
            };
            Some(view! { <div class=class style=style></div> })
        })
    };

    view! {
        <section class="checkin">
            <div class="stage" class:mirrored=move || mirrored().is_some()>
                <video node_ref=video autoplay=true playsinline=true muted=true aria-label="Camera"></video>
                {face_box}
            </div>
            <canvas node_ref=canvas hidden=true></canvas>
            <div id="checkin-status" class="status-card" role="status" aria-live="polite">
                {move || {
                    if reachable.get() {
                        status_view(phase.get(), last.get())
                    } else {
                        offline_view()
                    }
                }}
            </div>
            <div class="toolbar">
                <button
                    type="button"
                    on:click=move |_| facing.update(|f| *f = f.toggled())
                    disabled=move || !reachable.get() || matches!(phase.get(), Phase::NoCamera(_))
                >
                    "Switch camera"
                </button>
            </div>
            <PhotoFallback last phase />
        </section>
    }
}

/// Whether a failed call means the server is out of reach, rather than a
/// refusal with a reason.
#[cfg(feature = "hydrate")]
fn unreachable(error: &leptos::prelude::ServerFnError) -> bool {
    !crate::camera::online() || matches!(error, leptos::prelude::ServerFnError::Request(_))
}

fn offline_view() -> AnyView {
    view! {
        <p class="offline">"Offline: FaceGate's server cannot be reached."</p>
        <p class="muted">"Check the network connection; this page retries when it comes back."</p>
    }
    .into_any()
}

fn status_view(phase: Phase, last: Option<CheckInResult>) -> AnyView {
    match phase {
        Phase::Connecting => view! { <p class="muted">"Connecting to FaceGate…"</p> }.into_any(),
        Phase::Refused(reason) => view! {
            <p class="warn">{reason}</p>
            <p class="muted">"Trying again…"</p>
        }
        .into_any(),
        Phase::Welcome { name, at_ms } => view! {
            <p class="welcome">"Welcome, " {name} "!"</p>
            <p class="muted">"Checked in at " {format_utc(at_ms).replace('T', " ").replace('Z', " UTC")}</p>
        }
        .into_any(),
        Phase::NoCamera(reason) => view! {
            <p class="warn">{reason}</p>
        }
        .into_any(),
        Phase::Scanning => {
            let (headline, hint) = match &last {
                None => ("Look at the camera".to_owned(), None),
                Some(result) => match result.status {
                    CheckInStatus::Unknown => ("Not recognised".to_owned(), result.hint.clone()),
                    CheckInStatus::NoFace => ("Looking for a face…".to_owned(), result.hint.clone()),
                    CheckInStatus::FaceTooSmall => ("Come closer".to_owned(), result.hint.clone()),
                    CheckInStatus::Recognised => ("Recognised".to_owned(), None),
                },
            };
            view! {
                <p class="headline">{headline}</p>
                {hint.map(|hint| view! { <p class="muted">{hint}</p> })}
            }
            .into_any()
        }
    }
}

/// Check in with a photo when there is no usable camera.
#[component]
fn PhotoFallback(last: RwSignal<Option<CheckInResult>>, phase: RwSignal<Phase>) -> impl IntoView {
    let canvas = NodeRef::<leptos::html::Canvas>::new();
    let input = NodeRef::<leptos::html::Input>::new();
    let busy = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);

    let on_change = move |_| {
        #[cfg(feature = "hydrate")]
        {
            use crate::camera::{FRAME_MAX_SIDE, photo_to_frame};
            let Some(file) = input
                .get_untracked()
                .and_then(|input| input.files())
                .and_then(|files| files.get(0))
            else {
                return;
            };
            let Some(canvas) = canvas.get_untracked() else {
                return;
            };
            busy.set(true);
            leptos::task::spawn_local(async move {
                let frame = photo_to_frame(&file, &canvas, FRAME_MAX_SIDE * 2).await;
                let outcome = match frame {
                    Ok(frame) => crate::server_fns::check_in_frame(frame, true)
                        .await
                        .map_err(|e| e.to_string()),
                    Err(reason) => Err(reason),
                };
                busy.set(false);
                match outcome {
                    Ok(result) => {
                        error.set(None);
                        if result.status == CheckInStatus::Recognised {
                            phase.set(Phase::Welcome {
                                name: result.person_name.clone().unwrap_or_default(),
                                at_ms: result.check_in.as_ref().map_or(0, |c| c.at_ms),
                            });
                        } else if !matches!(phase.get_untracked(), Phase::NoCamera(_)) {
                            phase.set(Phase::Scanning);
                        }
                        last.set(Some(result));
                    }
                    Err(reason) => error.set(Some(reason)),
                }
            });
        }
    };

    view! {
        <details class="fallback" open=move || matches!(phase.get(), Phase::NoCamera(_))>
            <summary>"No camera? Use a photo"</summary>
            <label class="file">
                "Take or choose a photo of your face"
                <input node_ref=input type="file" accept="image/*" capture="user" on:change=on_change disabled=busy />
            </label>
            <canvas node_ref=canvas hidden=true></canvas>
            {move || busy.get().then(|| view! { <p class="muted">"Checking…"</p> })}
            {move || error.get().map(|e| view! { <p class="warn">{e}</p> })}
            {move || {
                let result = last.get()?;
                matches!(phase.get(), Phase::NoCamera(_))
                    .then(|| match result.status {
                        CheckInStatus::Unknown => "Not recognised.".to_owned(),
                        CheckInStatus::NoFace => "No face found in the photo.".to_owned(),
                        CheckInStatus::FaceTooSmall => "The face is too small in the photo.".to_owned(),
                        CheckInStatus::Recognised => String::new(),
                    })
                    .map(|text| view! { <p id="photo-result">{text}</p> })
            }}
        </details>
    }
}
