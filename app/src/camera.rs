//! The camera and image helpers the pages use in the browser. On the server
//! these do nothing: a camera exists only after hydration.

/// Which camera to ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Facing {
    /// The selfie camera.
    User,
    /// The rear camera.
    Environment,
}

impl Facing {
    pub fn toggled(self) -> Self {
        match self {
            Facing::User => Facing::Environment,
            Facing::Environment => Facing::User,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Facing::User => "user",
            Facing::Environment => "environment",
        }
    }
}

/// Longest side of a frame sent to the server.
pub const FRAME_MAX_SIDE: u32 = 640;

#[cfg(feature = "hydrate")]
pub use browser::*;

#[cfg(feature = "hydrate")]
mod browser {
    use js_sys::{Object, Promise, Reflect};
    use wasm_bindgen::{JsCast, JsValue};
    use wasm_bindgen_futures::JsFuture;
    use web_sys::{
        CanvasRenderingContext2d, DomException, File, HtmlCanvasElement, HtmlVideoElement,
        ImageBitmap, MediaStream, MediaStreamConstraints, MediaStreamTrack,
    };

    use super::Facing;

    /// Starts the camera into `video`; on failure, advice a person can follow.
    pub async fn start_camera(
        video: &HtmlVideoElement,
        facing: Facing,
    ) -> Result<MediaStream, String> {
        let window = web_sys::window().ok_or("no browser window")?;
        let devices = window.navigator().media_devices().map_err(|_| {
            "This browser gives no camera access here. Open FaceGate over HTTPS (or on localhost), \
             or use a photo instead."
                .to_owned()
        })?;
        let video_constraints = Object::new();
        set(&video_constraints, "facingMode", &facing.as_str().into());
        set(&video_constraints, "width", &JsValue::from(640));
        set(&video_constraints, "height", &JsValue::from(480));
        let constraints = MediaStreamConstraints::new();
        constraints.set_video(&video_constraints);
        constraints.set_audio(&JsValue::FALSE);
        let request =
            devices.get_user_media_with_constraints(&constraints).map_err(|e| camera_error(&e))?;
        let stream: MediaStream = JsFuture::from(request)
            .await
            .map_err(|e| camera_error(&e))?
            .dyn_into()
            .map_err(|_| "no video stream")?;
        video.set_muted(true);
        video.set_src_object(Some(&stream));
        if let Ok(playing) = video.play() {
            // Autoplay of a muted inline video is allowed; a refusal only delays the picture.
            let _ = JsFuture::from(playing).await;
        }
        Ok(stream)
    }

    /// Stops every track of `stream`, turning the camera light off.
    pub fn stop_camera(stream: &MediaStream) {
        for track in stream.get_tracks().iter() {
            if let Ok(track) = track.dyn_into::<MediaStreamTrack>() {
                track.stop();
            }
        }
    }

    fn set(object: &Object, key: &str, value: &JsValue) {
        // Setting a property on a fresh plain object cannot fail.
        let _ = Reflect::set(object, &key.into(), value);
    }

    fn camera_error(error: &JsValue) -> String {
        let name = error.dyn_ref::<DomException>().map(DomException::name).unwrap_or_default();
        match name.as_str() {
            "NotAllowedError" | "SecurityError" => "Camera access was refused. Allow the camera for this site \
                (the camera icon in the address bar, or the browser's site settings), then reload the page. \
                Or use a photo instead."
                .to_owned(),
            "NotFoundError" | "OverconstrainedError" => {
                "No camera was found on this device. Use a photo instead.".to_owned()
            }
            "NotReadableError" | "AbortError" => {
                "The camera is busy in another app. Close it and reload, or use a photo instead.".to_owned()
            }
            _ => "The camera could not be started. Use a photo instead.".to_owned(),
        }
    }

    /// The current video picture as a JPEG `data:` URL, at most `max_side`
    /// pixels on its longer side; `None` before the first picture arrives.
    pub fn capture_frame(
        video: &HtmlVideoElement,
        canvas: &HtmlCanvasElement,
        max_side: u32,
    ) -> Option<String> {
        let (width, height) = (video.video_width(), video.video_height());
        if width == 0 || height == 0 {
            return None;
        }
        let (out_width, out_height) = fit(width, height, max_side);
        let context = context_2d(canvas, out_width, out_height)?;
        context
            .draw_image_with_html_video_element_and_dw_and_dh(
                video,
                0.0,
                0.0,
                out_width.into(),
                out_height.into(),
            )
            .ok()?;
        canvas.to_data_url_with_type_and_encoder_options("image/jpeg", &JsValue::from(0.85)).ok()
    }

    /// A chosen photo file, upright and scaled down, as a JPEG `data:` URL.
    pub async fn photo_to_frame(
        file: &File,
        canvas: &HtmlCanvasElement,
        max_side: u32,
    ) -> Result<String, String> {
        let window = web_sys::window().ok_or("no browser window")?;
        let promise =
            window.create_image_bitmap_with_blob(file).map_err(|_| "this file is not an image")?;
        let bitmap: ImageBitmap = JsFuture::from(promise)
            .await
            .map_err(|_| "this file is not an image the browser can read")?
            .dyn_into()
            .map_err(|_| "this file is not an image")?;
        let (out_width, out_height) = fit(bitmap.width(), bitmap.height(), max_side);
        let context = context_2d(canvas, out_width, out_height).ok_or("no canvas")?;
        context
            .draw_image_with_image_bitmap_and_dw_and_dh(
                &bitmap,
                0.0,
                0.0,
                out_width.into(),
                out_height.into(),
            )
            .map_err(|_| "the image could not be drawn")?;
        canvas
            .to_data_url_with_type_and_encoder_options("image/jpeg", &JsValue::from(0.9))
            .map_err(|_| "no JPEG".into())
    }

    fn fit(width: u32, height: u32, max_side: u32) -> (u32, u32) {
        let scale = (f64::from(max_side) / f64::from(width.max(height))).min(1.0);
        (
            (f64::from(width) * scale).round().max(1.0) as u32,
            (f64::from(height) * scale).round().max(1.0) as u32,
        )
    }

    fn context_2d(
        canvas: &HtmlCanvasElement,
        width: u32,
        height: u32,
    ) -> Option<CanvasRenderingContext2d> {
        canvas.set_width(width);
        canvas.set_height(height);
        canvas.get_context("2d").ok()??.dyn_into().ok()
    }

    /// Waits `ms` milliseconds without blocking the page.
    pub async fn sleep(ms: i32) {
        let promise = Promise::new(&mut |resolve, _| {
            if let Some(window) = web_sys::window() {
                let _ = window.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
            }
        });
        let _ = JsFuture::from(promise).await;
    }

    /// Whether the browser believes it is online.
    pub fn online() -> bool {
        web_sys::window().is_none_or(|window| window.navigator().on_line())
    }
}
