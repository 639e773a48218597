//! The face engine: decoding, face detection, crops, FaceNet embeddings.
//!
//! Everything here is synchronous and CPU-bound; callers on async threads
//! should run it through `spawn_blocking`. Models load once into an
//! [`Engine`], which is cheap to share (`Arc`) and safe to use from many
//! threads at once.
//!
//! Coordinates are image pixels in continuous coordinates: pixel `(i, j)`
//! covers `[i, i + 1) x [j, j + 1)`, the origin is the top-left corner of the
//! decoded (EXIF-upright) image.

pub mod align;
pub mod blazeface;
pub mod decode;
mod engine;
pub mod facenet;
pub mod geometry;
pub mod models;
pub mod mtcnn;
pub mod quality;
pub mod resize;
pub mod retinaface;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use image::RgbImage;
use serde::{Deserialize, Serialize};

pub use align::{CropMode, align_face, crop_face};
pub use decode::{DecodeError, DecodeLimits, decode_image};
pub use engine::Engine;
pub use facenet::{EMBEDDING_MODEL_ID, Embedding, FaceNet};
pub use models::{available_cores, set_inference_threads};
pub use quality::Quality;

/// Cosine similarity (dot product of L2-normalised embeddings) at or above
/// which two faces are taken to be the same person.
///
/// Measured on the five-person set (118 photos, MTCNN, box-margin crops;
/// `server/tests/engine.rs` prints these figures): same-person pairs (1354)
/// have mean similarity 0.62, different-person pairs (5549) mean -0.04 and
/// at most 0.40. Balanced accuracy peaks at 0.98 near 0.22, where about 1%
/// of different-person pairs still pass. At 0.35, 0.1% of different-person
/// pairs (6 of 5549) pass and 93% of same-person pairs do: a check-in system
/// should rather ask a person to try again than admit a stranger. The
/// figures are in-sample, from five people; recheck them on a larger set.
pub const DEFAULT_MATCH_THRESHOLD: f32 = 0.35;

/// The environment variable that overrides the cache directory.
pub const CACHE_DIR_ENV: &str = "FACEGATE_CACHE_DIR";

/// FaceGate's cache directory: `$FACEGATE_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/facegate`, else `~/.cache/facegate`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(CACHE_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("facegate");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("facegate")
}

/// Where the models are looked for by default: `<cache dir>/models`, filled by
/// `python3 models/prepare.py`.
pub fn models_dir() -> PathBuf {
    cache_dir().join("models")
}

/// The face detectors FaceGate can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum DetectorKind {
    /// MTCNN (P-Net, R-Net, O-Net cascade): the most accurate landmarks here,
    /// the slowest. The default.
    #[default]
    #[serde(rename = "mtcnn")]
    Mtcnn,
    /// MediaPipe BlazeFace short range (128x128 input): faces within about
    /// two metres, the fastest.
    #[serde(rename = "blazeface-short")]
    BlazeFaceShort,
    /// MediaPipe BlazeFace full range (192x192 input): smaller, more distant
    /// faces.
    #[serde(rename = "blazeface-full")]
    BlazeFaceFull,
    /// RetinaFace with a MobileNet-0.25 backbone.
    #[serde(rename = "retinaface")]
    RetinaFace,
}

impl DetectorKind {
    /// Every detector, default first.
    pub const ALL: [DetectorKind; 4] = [
        DetectorKind::Mtcnn,
        DetectorKind::BlazeFaceShort,
        DetectorKind::BlazeFaceFull,
        DetectorKind::RetinaFace,
    ];

    /// The name used on the command line, in JSON and in configuration.
    pub fn name(self) -> &'static str {
        match self {
            DetectorKind::Mtcnn => "mtcnn",
            DetectorKind::BlazeFaceShort => "blazeface-short",
            DetectorKind::BlazeFaceFull => "blazeface-full",
            DetectorKind::RetinaFace => "retinaface",
        }
    }
}

impl fmt::Display for DetectorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A detector name that is not one of [`DetectorKind::ALL`].
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown detector {0:?}; expected one of mtcnn, blazeface-short, blazeface-full, retinaface"
)]
pub struct UnknownDetector(String);

impl FromStr for DetectorKind {
    type Err = UnknownDetector;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DetectorKind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownDetector(s.to_string()))
    }
}

/// An axis-aligned face box in image pixels; `x1 < x2`, `y1 < y2`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct FaceBox {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

impl FaceBox {
    pub fn width(&self) -> f32 {
        self.x2 - self.x1
    }

    pub fn height(&self) -> f32 {
        self.y2 - self.y1
    }

    /// Zero for an empty or inverted box.
    pub fn area(&self) -> f32 {
        self.width().max(0.0) * self.height().max(0.0)
    }
}

/// A point in image pixels.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Point {
    pub x: f32,
    pub y: f32,
}

/// Five facial landmarks in image pixels.
///
/// "Left" and "right" are as seen in the image, not the person's own sides:
/// `left_eye` is the eye nearer the image's left edge (the person's right
/// eye, for a frontal face), and likewise for the mouth corners. BlazeFace
/// reports the mouth centre rather than its corners; its corners are estimated
/// from the centre and the eye line (see [`blazeface`]).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Landmarks {
    pub left_eye: Point,
    pub right_eye: Point,
    pub nose: Point,
    pub mouth_left: Point,
    pub mouth_right: Point,
}

impl Landmarks {
    /// In order: left eye, right eye, nose, mouth left, mouth right.
    pub fn points(&self) -> [[f32; 2]; 5] {
        [self.left_eye, self.right_eye, self.nose, self.mouth_left, self.mouth_right]
            .map(|p| [p.x, p.y])
    }

    /// The inverse of [`Landmarks::points`].
    pub fn from_points(p: [[f32; 2]; 5]) -> Self {
        let [le, re, n, ml, mr] = p.map(|[x, y]| Point { x, y });
        Landmarks { left_eye: le, right_eye: re, nose: n, mouth_left: ml, mouth_right: mr }
    }
}

/// One detected face.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Face {
    #[serde(rename = "box")]
    pub bbox: FaceBox,
    /// The detector's confidence in 0..=1. Scores of different detectors are
    /// not comparable with each other.
    pub score: f32,
    pub landmarks: Landmarks,
}

/// The face with the largest box, the one a check-in or a comparison uses.
pub fn largest_face(faces: &[Face]) -> Option<&Face> {
    faces.iter().max_by(|a, b| a.bbox.area().total_cmp(&b.bbox.area()))
}

/// A face detector.
pub trait Detector: Send + Sync {
    /// Finds the faces in `image`, strongest first, after non-maximum
    /// suppression, with boxes and landmarks in `image`'s pixel coordinates.
    /// An image without faces gives an empty list, not an error.
    fn detect(&self, image: &RgbImage) -> anyhow::Result<Vec<Face>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detector_names_round_trip_through_text_and_serde() {
        for kind in DetectorKind::ALL {
            assert_eq!(kind.to_string().parse::<DetectorKind>().unwrap(), kind);
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{kind}\""));
            assert_eq!(serde_json::from_str::<DetectorKind>(&json).unwrap(), kind);
        }
        assert!("haar".parse::<DetectorKind>().is_err());
    }

    #[test]
    fn a_face_serialises_with_a_box_field() {
        let face = Face { bbox: FaceBox::default(), score: 0.5, landmarks: Landmarks::default() };
        let json = serde_json::to_value(&face).unwrap();
        assert!(json["box"]["x2"].is_number());
        assert!(json["landmarks"]["mouth_right"]["y"].is_number());
    }
}
