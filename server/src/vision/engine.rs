//! [`Engine`]: every loaded model behind one handle.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, anyhow};
use image::RgbImage;

use super::blazeface::{BlazeFace, Range};
use super::mtcnn::{Mtcnn, MtcnnConfig};
use super::retinaface::RetinaFace;
use super::{CropMode, Detector, DetectorKind, Embedding, Face, FaceNet, Quality, crop_face};

/// The face engine: the requested detectors and FaceNet, loaded once.
///
/// Cloning is cheap (the models are shared), and every method takes `&self`
/// and may run on many threads at once. All methods are CPU-bound and
/// blocking.
#[derive(Clone)]
pub struct Engine {
    detectors: Arc<HashMap<DetectorKind, Arc<dyn Detector>>>,
    facenet: Arc<FaceNet>,
    crop_mode: CropMode,
}

impl Engine {
    /// Loads FaceNet and the `detectors` asked for (pass
    /// [`DetectorKind::ALL`] for all) from `models_dir` (usually
    /// [`super::models_dir`]), with MTCNN's default settings. Fails, naming
    /// the file and the command that prepares it, when a model is missing or
    /// its SHA-256 differs from the recorded one.
    pub fn load(models_dir: &Path, detectors: &[DetectorKind]) -> anyhow::Result<Engine> {
        Engine::load_with(models_dir, detectors, MtcnnConfig::default())
    }

    /// [`Engine::load`] with explicit MTCNN settings.
    pub fn load_with(
        models_dir: &Path,
        detectors: &[DetectorKind],
        mtcnn: MtcnnConfig,
    ) -> anyhow::Result<Engine> {
        let started = Instant::now();
        let mut loaded: HashMap<DetectorKind, Arc<dyn Detector>> = HashMap::new();
        for &kind in detectors {
            if loaded.contains_key(&kind) {
                continue;
            }
            let detector: Arc<dyn Detector> = match kind {
                DetectorKind::Mtcnn => Arc::new(Mtcnn::load(models_dir, mtcnn)?),
                DetectorKind::BlazeFaceShort => {
                    Arc::new(BlazeFace::load(models_dir, Range::Short)?)
                }
                DetectorKind::BlazeFaceFull => Arc::new(BlazeFace::load(models_dir, Range::Full)?),
                DetectorKind::RetinaFace => Arc::new(RetinaFace::load(models_dir)?),
            };
            loaded.insert(kind, detector);
        }
        let facenet = FaceNet::load(models_dir)?;
        tracing::info!(
            detectors = ?detectors,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "face engine loaded"
        );
        Ok(Engine {
            detectors: Arc::new(loaded),
            facenet: Arc::new(facenet),
            crop_mode: CropMode::default(),
        })
    }

    /// The same engine cutting faces out with `mode` instead of the default.
    pub fn with_crop_mode(mut self, mode: CropMode) -> Engine {
        self.crop_mode = mode;
        self
    }

    pub fn crop_mode(&self) -> CropMode {
        self.crop_mode
    }

    /// Whether `kind` was loaded.
    pub fn has_detector(&self, kind: DetectorKind) -> bool {
        self.detectors.contains_key(&kind)
    }

    /// The FaceNet model, for callers with their own crops.
    pub fn facenet(&self) -> &FaceNet {
        &self.facenet
    }

    /// The faces in `image` found by `kind`, strongest first. Fails when
    /// `kind` was not loaded.
    #[tracing::instrument(skip_all, fields(detector = %kind, width = image.width(), height = image.height()))]
    pub fn detect(&self, image: &RgbImage, kind: DetectorKind) -> anyhow::Result<Vec<Face>> {
        let detector = self
            .detectors
            .get(&kind)
            .ok_or_else(|| anyhow!("the {kind} detector was not loaded"))?;
        let started = Instant::now();
        let faces = detector.detect(image).with_context(|| format!("{kind} detection failed"))?;
        tracing::debug!(
            faces = faces.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "detected"
        );
        Ok(faces)
    }

    /// The 160x160 crop of `face` that FaceNet is given.
    pub fn crop(&self, image: &RgbImage, face: &Face) -> RgbImage {
        crop_face(image, face, self.crop_mode)
    }

    /// The 160x160 crops of `faces` that FaceNet is given.
    pub fn crop_faces(&self, image: &RgbImage, faces: &[Face]) -> Vec<RgbImage> {
        faces.iter().map(|f| self.crop(image, f)).collect()
    }

    /// One embedding per face, in order.
    #[tracing::instrument(skip_all, fields(faces = faces.len()))]
    pub fn embed_faces(&self, image: &RgbImage, faces: &[Face]) -> anyhow::Result<Vec<Embedding>> {
        let started = Instant::now();
        let embeddings = self.facenet.embed_batch(&self.crop_faces(image, faces))?;
        tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "embedded");
        Ok(embeddings)
    }

    /// Quality figures of each face, in order.
    pub fn quality(&self, image: &RgbImage, faces: &[Face]) -> Vec<Quality> {
        faces.iter().map(|f| Quality::measure(f, &self.crop(image, f))).collect()
    }
}
