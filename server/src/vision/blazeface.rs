//! MediaPipe BlazeFace, short range (128x128) and full range (192x192), with
//! the SSD anchors and decoding of MediaPipe's detection calculators.
//!
//! Model contract (`blazeface_short.onnx`, `blazeface_full.onnx`, converted
//! from the `.tflite` files by `models/prepare.py`): input `[1, 3, S, S]` f32,
//! NCHW, RGB scaled to `px / 127.5 - 1`; outputs `regressors` `[1, A, 16]`
//! (per anchor: box centre offset x, y, width, height, then six keypoints x, y,
//! all in input pixels) and `classificators` `[1, A, 1]` (score logits).
//! `S` = 128, `A` = 896 for short range; `S` = 192, `A` = 2304 for full range.
//!
//! The image is letterboxed: scaled to fit `S` along its longer side and
//! centred, the rest black. The six keypoints are the eyes, nose tip, mouth
//! centre and ear tragions; the mouth corners FaceGate's [`Landmarks`] ask
//! for are estimated from the mouth centre, half the typical mouth width
//! either side along the eye line (0.9 of the eye distance: the median ratio
//! of MTCNN's landmarks on the five-person set).

use std::path::Path;

use anyhow::Context;
use image::RgbImage;
use tract_onnx::prelude::*;

use super::geometry::weighted_nms;
use super::models::{self, Plan};
use super::resize::{Region, resample};
use super::{Detector, Face, FaceBox, Landmarks};

/// Which BlazeFace model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    Short,
    Full,
}

impl Range {
    fn file_name(self) -> &'static str {
        match self {
            Range::Short => "blazeface_short.onnx",
            Range::Full => "blazeface_full.onnx",
        }
    }

    fn input_side(self) -> usize {
        match self {
            Range::Short => 128,
            Range::Full => 192,
        }
    }

    /// MediaPipe's SSD anchor layout: (stride, anchors per cell) per layer.
    fn layers(self) -> &'static [(usize, usize)] {
        match self {
            Range::Short => &[(8, 2), (16, 6)],
            Range::Full => &[(4, 1)],
        }
    }
}

/// Faces scoring below this are dropped (MediaPipe's default).
pub const MIN_SCORE: f32 = 0.5;
/// Overlap (IoU) above which weighted NMS merges two detections.
const NMS_THRESHOLD: f32 = 0.3;
/// Logits are clipped to this before the sigmoid, as MediaPipe does.
const RAW_SCORE_LIMIT: f32 = 80.0;
/// Mouth width over eye distance, for the estimated mouth corners.
const MOUTH_TO_EYES: f32 = 0.9;

/// A BlazeFace detector.
pub struct BlazeFace {
    range: Range,
    plan: Plan,
    /// Anchor centres in 0..1 of the input square.
    anchors: Vec<[f32; 2]>,
}

impl BlazeFace {
    /// Loads the model for `range` from `dir`, checked against its recorded
    /// SHA-256.
    pub fn load(dir: &Path, range: Range) -> anyhow::Result<Self> {
        let model = models::load_onnx(dir, range.file_name())?;
        let s = range.input_side();
        let plan = models::plan_for_shape(&model, &[1, 3, s, s])
            .with_context(|| format!("tract cannot optimise {}", range.file_name()))?;
        Ok(BlazeFace { range, plan, anchors: anchors(range) })
    }
}

/// Anchor centres, row-major per layer, `per_cell` repeats per cell.
fn anchors(range: Range) -> Vec<[f32; 2]> {
    let side = range.input_side();
    let mut out = Vec::new();
    for &(stride, per_cell) in range.layers() {
        let cells = side / stride;
        for y in 0..cells {
            for x in 0..cells {
                let centre = [(x as f32 + 0.5) / cells as f32, (y as f32 + 0.5) / cells as f32];
                out.extend(std::iter::repeat_n(centre, per_cell));
            }
        }
    }
    out
}

/// The square of the source image that the letterboxed input shows: the
/// image centred in a square of its longer side.
pub fn letterbox(width: u32, height: u32) -> Region {
    let side = width.max(height) as f32;
    Region {
        x: -(side - width as f32) / 2.0,
        y: -(side - height as f32) / 2.0,
        width: side,
        height: side,
    }
}

/// Maps a point in 0..1 of the letterboxed input back to image pixels.
pub fn unletterbox(region: &Region, [u, v]: [f32; 2]) -> [f32; 2] {
    [region.x + u * region.width, region.y + v * region.height]
}

impl Detector for BlazeFace {
    fn detect(&self, image: &RgbImage) -> anyhow::Result<Vec<Face>> {
        let s = self.range.input_side();
        let region = letterbox(image.width(), image.height());
        let pixels = resample(image, region, s, s);
        let mut input = vec![0.0f32; 3 * s * s];
        for (i, px) in pixels.chunks_exact(3).enumerate() {
            for c in 0..3 {
                input[c * s * s + i] = px[c] / 127.5 - 1.0;
            }
        }
        let input = Tensor::from_shape(&[1, 3, s, s], &input)?;
        let out = self.plan.run(tvec!(input.into()))?;
        let regressors = models::output_f32(&out[0])?;
        let logits = models::output_f32(&out[1])?;

        let scale = s as f32;
        let mut faces = Vec::new();
        for (k, anchor) in self.anchors.iter().enumerate() {
            let score = sigmoid(logits[k].clamp(-RAW_SCORE_LIMIT, RAW_SCORE_LIMIT));
            if score < MIN_SCORE {
                continue;
            }
            let r = &regressors[k * 16..(k + 1) * 16];
            let (cx, cy) = (anchor[0] + r[0] / scale, anchor[1] + r[1] / scale);
            let (w, h) = (r[2] / scale, r[3] / scale);
            if w <= 0.0 || h <= 0.0 {
                continue;
            }
            let [x1, y1] = unletterbox(&region, [cx - w / 2.0, cy - h / 2.0]);
            let [x2, y2] = unletterbox(&region, [cx + w / 2.0, cy + h / 2.0]);
            let kp = |i: usize| {
                unletterbox(
                    &region,
                    [anchor[0] + r[4 + 2 * i] / scale, anchor[1] + r[5 + 2 * i] / scale],
                )
            };
            faces.push(Face {
                bbox: FaceBox { x1, y1, x2, y2 },
                score,
                landmarks: five_points(kp(0), kp(1), kp(2), kp(3)),
            });
        }
        Ok(weighted_nms(faces, NMS_THRESHOLD))
    }
}

/// FaceGate's five landmarks from BlazeFace's eyes, nose tip and mouth
/// centre; eyes ordered by image side, mouth corners estimated.
fn five_points(eye_a: [f32; 2], eye_b: [f32; 2], nose: [f32; 2], mouth: [f32; 2]) -> Landmarks {
    let (left, right) = if eye_a[0] <= eye_b[0] { (eye_a, eye_b) } else { (eye_b, eye_a) };
    let half = MOUTH_TO_EYES / 2.0;
    let (dx, dy) = ((right[0] - left[0]) * half, (right[1] - left[1]) * half);
    Landmarks::from_points([
        left,
        right,
        nose,
        [mouth[0] - dx, mouth[1] - dy],
        [mouth[0] + dx, mouth[1] + dy],
    ])
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_counts_match_the_models() {
        assert_eq!(anchors(Range::Short).len(), 896);
        assert_eq!(anchors(Range::Full).len(), 2304);
        assert_eq!(anchors(Range::Short)[0], [1.0 / 32.0, 1.0 / 32.0]);
    }

    #[test]
    fn letterbox_centres_a_wide_image_and_maps_back() {
        // 640x480: a 640 square, 80 px of black above and below.
        let region = letterbox(640, 480);
        assert_eq!(region, Region { x: 0.0, y: -80.0, width: 640.0, height: 640.0 });
        assert_eq!(unletterbox(&region, [0.5, 0.5]), [320.0, 240.0]);
        assert_eq!(unletterbox(&region, [0.0, 80.0 / 640.0]), [0.0, 0.0]);
        assert_eq!(unletterbox(&region, [1.0, 560.0 / 640.0]), [640.0, 480.0]);
        // A tall image pads left and right.
        let tall = letterbox(100, 200);
        assert_eq!(unletterbox(&tall, [0.25, 0.0]), [0.0, 0.0]);
    }

    #[test]
    fn mouth_corners_lie_on_either_side_of_the_centre() {
        let l = five_points([60.0, 40.0], [20.0, 40.0], [40.0, 55.0], [40.0, 70.0]);
        assert_eq!(l.left_eye.x, 20.0);
        assert!((l.mouth_left.x - (40.0 - 0.45 * 40.0)).abs() < 1e-4);
        assert!((l.mouth_right.x - (40.0 + 0.45 * 40.0)).abs() < 1e-4);
    }
}
