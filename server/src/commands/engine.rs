//! `facegate detect | embed | verify | bench`: the face engine from the
//! command line. Results go to standard output as JSON (bench: a table);
//! errors name the file and the reason, and make the command exit non-zero.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use image::{Rgb, RgbImage};
use serde::Serialize;

use crate::vision::{
    self, CropMode, DEFAULT_MATCH_THRESHOLD, DecodeLimits, DetectorKind, EMBEDDING_MODEL_ID,
    Engine, Face, Quality,
};

/// Where the models are read from.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// Directory holding the ONNX models [default: <cache>/models, filled by
    /// `python3 models/prepare.py`; the cache is $FACEGATE_CACHE_DIR or
    /// ~/.cache/facegate].
    #[arg(long, visible_alias = "models-dir", value_name = "DIR")]
    pub models: Option<PathBuf>,
}

impl ModelArgs {
    fn dir(&self) -> PathBuf {
        self.models.clone().unwrap_or_else(vision::models_dir)
    }

    fn engine(&self, detectors: &[DetectorKind]) -> anyhow::Result<Engine> {
        Engine::load(&self.dir(), detectors)
    }
}

/// `facegate detect`: the faces in each image, as JSON.
#[derive(clap::Args, Debug)]
pub struct DetectArgs {
    /// Image files (JPEG, PNG, WebP, GIF, BMP, TIFF; the type is read from
    /// the content).
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
    /// Face detector: mtcnn, blazeface-short, blazeface-full or retinaface.
    #[arg(long, default_value_t = DetectorKind::Mtcnn)]
    pub detector: DetectorKind,
    /// Also write the image with boxes and landmarks drawn on it (one image
    /// only; the format follows the extension, e.g. .png).
    #[arg(long, value_name = "OUT.png")]
    pub draw: Option<PathBuf>,
    #[command(flatten)]
    pub models: ModelArgs,
}

/// `facegate embed`: the embedding of the largest face in each image.
#[derive(clap::Args, Debug)]
pub struct EmbedArgs {
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
    /// Face detector: mtcnn, blazeface-short, blazeface-full or retinaface.
    #[arg(long, default_value_t = DetectorKind::Mtcnn)]
    pub detector: DetectorKind,
    #[command(flatten)]
    pub models: ModelArgs,
}

/// `facegate verify`: whether two photos show the same person.
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    #[arg(value_name = "A")]
    pub a: PathBuf,
    #[arg(value_name = "B")]
    pub b: PathBuf,
    /// Face detector: mtcnn, blazeface-short, blazeface-full or retinaface.
    #[arg(long, default_value_t = DetectorKind::Mtcnn)]
    pub detector: DetectorKind,
    /// Similarity at or above which the faces count as the same person.
    #[arg(long, default_value_t = DEFAULT_MATCH_THRESHOLD)]
    pub threshold: f32,
    #[command(flatten)]
    pub models: ModelArgs,
}

/// `facegate bench`: per-stage timings, next to onnxruntime on the same
/// models and inputs.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Photos to time (searched recursively) [default: <cache>/data/faces5].
    #[arg(long, value_name = "DIR")]
    pub photos: Option<PathBuf>,
    /// Repetitions of each timing on the 640x480 frame.
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// Skip the onnxruntime reference (`bench/ort_reference.py`).
    #[arg(long)]
    pub no_reference: bool,
    /// Threads for the multithreaded rows (every stage is also timed on one
    /// thread) [default: the number of cores].
    #[arg(long)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub models: ModelArgs,
}

fn load_image(path: &Path) -> anyhow::Result<RgbImage> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    vision::decode_image(&bytes, &DecodeLimits::default())
        .with_context(|| format!("cannot use {}", path.display()))
}

fn write_json(value: &impl Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Runs `each` over `images`, printing the successes as one JSON array and
/// each failure on standard error; fails when any image failed.
fn for_each_image<T: Serialize>(
    images: &[PathBuf],
    mut each: impl FnMut(&Path) -> anyhow::Result<T>,
) -> anyhow::Result<()> {
    let mut results = Vec::new();
    let mut failed = 0;
    for path in images {
        match each(path) {
            Ok(result) => results.push(result),
            Err(e) => {
                failed += 1;
                tracing::error!("{e:#}");
            }
        }
    }
    write_json(&results)?;
    ensure!(failed == 0, "{failed} of {} images failed", images.len());
    Ok(())
}

#[derive(Serialize)]
struct Detection {
    image: PathBuf,
    width: u32,
    height: u32,
    detector: DetectorKind,
    faces: Vec<FaceReport>,
}

#[derive(Serialize)]
struct FaceReport {
    #[serde(flatten)]
    face: Face,
    quality: Quality,
}

/// `facegate detect`.
pub fn run_detect(args: DetectArgs) -> anyhow::Result<()> {
    if args.draw.is_some() {
        ensure!(args.images.len() == 1, "--draw takes exactly one image");
    }
    let engine = args.models.engine(&[args.detector])?;
    for_each_image(&args.images, |path| {
        let image = load_image(path)?;
        let faces = engine
            .detect(&image, args.detector)
            .with_context(|| format!("detection failed on {}", path.display()))?;
        if let Some(out) = &args.draw {
            draw_faces(&image, &faces)
                .save(out)
                .with_context(|| format!("cannot write {}", out.display()))?;
        }
        let quality = engine.quality(&image, &faces);
        Ok(Detection {
            image: path.to_path_buf(),
            width: image.width(),
            height: image.height(),
            detector: args.detector,
            faces: faces
                .into_iter()
                .zip(quality)
                .map(|(face, quality)| FaceReport { face, quality })
                .collect(),
        })
    })
}

#[derive(Serialize)]
struct EmbeddingReport {
    image: PathBuf,
    model: &'static str,
    crop: CropMode,
    face: Face,
    embedding: Vec<f32>,
}

fn embed_largest(
    engine: &Engine,
    path: &Path,
    detector: DetectorKind,
) -> anyhow::Result<EmbeddingReport> {
    let image = load_image(path)?;
    let faces = engine.detect(&image, detector)?;
    let face = vision::largest_face(&faces)
        .with_context(|| format!("no face found in {} ({detector})", path.display()))?
        .clone();
    let embedding = engine.embed_faces(&image, std::slice::from_ref(&face))?.remove(0);
    Ok(EmbeddingReport {
        image: path.to_path_buf(),
        model: EMBEDDING_MODEL_ID,
        crop: engine.crop_mode(),
        face,
        embedding: embedding.into(),
    })
}

/// `facegate embed`.
pub fn run_embed(args: EmbedArgs) -> anyhow::Result<()> {
    let engine = args.models.engine(&[args.detector])?;
    for_each_image(&args.images, |path| embed_largest(&engine, path, args.detector))
}

#[derive(Serialize)]
struct Verdict<'a> {
    a: &'a Path,
    b: &'a Path,
    similarity: f32,
    threshold: f32,
    same_person: bool,
}

/// `facegate verify`.
pub fn run_verify(args: VerifyArgs) -> anyhow::Result<()> {
    let engine = args.models.engine(&[args.detector])?;
    let a = embed_largest(&engine, &args.a, args.detector)?;
    let b = embed_largest(&engine, &args.b, args.detector)?;
    let similarity: f32 = a.embedding.iter().zip(&b.embedding).map(|(x, y)| x * y).sum();
    write_json(&Verdict {
        a: &args.a,
        b: &args.b,
        similarity,
        threshold: args.threshold,
        same_person: similarity >= args.threshold,
    })
}

/// A copy of `image` with each face's box (green) and landmarks (red) drawn.
pub fn draw_faces(image: &RgbImage, faces: &[Face]) -> RgbImage {
    let mut out = image.clone();
    let (w, h) = (out.width() as i64, out.height() as i64);
    let mut put = |x: i64, y: i64, colour: Rgb<u8>| {
        if (0..w).contains(&x) && (0..h).contains(&y) {
            out.put_pixel(x as u32, y as u32, colour);
        }
    };
    let thickness = (image.width().max(image.height()) / 400).max(1) as i64;
    for face in faces {
        let b = face.bbox;
        let (x1, y1, x2, y2) = (b.x1 as i64, b.y1 as i64, b.x2 as i64, b.y2 as i64);
        for t in 0..thickness {
            for x in x1..=x2 {
                put(x, y1 + t, Rgb([0, 255, 0]));
                put(x, y2 - t, Rgb([0, 255, 0]));
            }
            for y in y1..=y2 {
                put(x1 + t, y, Rgb([0, 255, 0]));
                put(x2 - t, y, Rgb([0, 255, 0]));
            }
        }
        for [x, y] in face.landmarks.points() {
            for dx in -thickness..=thickness {
                for dy in -thickness..=thickness {
                    put(x as i64 + dx, y as i64 + dy, Rgb([255, 0, 0]));
                }
            }
        }
    }
    out
}

/// Median and 95th percentile of a set of timings, in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
struct Summary {
    median_ms: f64,
    p95_ms: f64,
    n: usize,
}

fn summarise(times: &[Duration]) -> Summary {
    if times.is_empty() {
        return Summary::default();
    }
    let mut ms: Vec<f64> = times.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    Summary { median_ms: at(0.5), p95_ms: at(0.95), n: ms.len() }
}

fn timed<T>(times: &mut Vec<Duration>, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let value = f();
    times.push(started.elapsed());
    value
}

fn photo_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in
            std::fs::read_dir(&d).with_context(|| format!("cannot read {}", d.display()))?
        {
            let path = entry?.path();
            if path.is_dir() { stack.push(path) } else { files.push(path) }
        }
    }
    files.sort();
    Ok(files)
}

/// The 640x480 test frame: the photo scaled to cover the frame, centred.
fn camera_frame(photo: &RgbImage) -> RgbImage {
    let scale = (640.0 / photo.width() as f32).max(480.0 / photo.height() as f32);
    let (w, h) = (
        (photo.width() as f32 * scale).ceil() as u32,
        (photo.height() as f32 * scale).ceil() as u32,
    );
    let resized = image::imageops::resize(
        photo,
        w.max(640),
        h.max(480),
        image::imageops::FilterType::Triangle,
    );
    image::imageops::crop_imm(
        &resized,
        (resized.width() - 640) / 2,
        (resized.height() - 480) / 2,
        640,
        480,
    )
    .to_image()
}

/// `facegate bench`.
pub fn run_bench(args: BenchArgs) -> anyhow::Result<()> {
    let photos_dir =
        args.photos.clone().unwrap_or_else(|| vision::cache_dir().join("data").join("faces5"));
    let files = photo_files(&photos_dir)?;
    ensure!(!files.is_empty(), "no photos in {}", photos_dir.display());
    let threads = args.threads.unwrap_or_else(vision::available_cores).max(1);
    vision::set_inference_threads(1);
    let load_started = Instant::now();
    let engine = args.models.engine(&DetectorKind::ALL)?;
    let load_ms = load_started.elapsed().as_secs_f64() * 1e3;
    let mut rows: Vec<(String, Summary)> = Vec::new();

    // The photos: decode, every detector, both crops, FaceNet per face.
    let mut decode = Vec::new();
    let mut images = Vec::new();
    for path in &files {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let image = timed(&mut decode, || vision::decode_image(&bytes, &DecodeLimits::default()))
            .with_context(|| format!("cannot use {}", path.display()))?;
        images.push(image);
    }
    rows.push(("photos: decode".into(), summarise(&decode)));
    // MTCNN and RetinaFace optimise a plan per input size on first sight:
    // the first pass over the photos pays for that, the second does not.
    let mut mtcnn_faces = Vec::new();
    for kind in DetectorKind::ALL {
        let _warm = engine.detect(&images[0], kind)?;
        let (mut first, mut again) = (Vec::new(), Vec::new());
        for image in &images {
            timed(&mut first, || engine.detect(image, kind))?;
        }
        for image in &images {
            let faces = timed(&mut again, || engine.detect(image, kind))?;
            if kind == DetectorKind::Mtcnn {
                mtcnn_faces.push(faces);
            }
        }
        rows.push((format!("photos: detect {kind}, new sizes"), summarise(&first)));
        rows.push((format!("photos: detect {kind}"), summarise(&again)));
    }
    let (mut crop_box, mut crop_aligned, mut embed) = (Vec::new(), Vec::new(), Vec::new());
    let mut crops = Vec::new();
    for (image, faces) in images.iter().zip(&mtcnn_faces) {
        let Some(face) = faces.first() else { continue };
        crops.push(timed(&mut crop_box, || vision::crop_face(image, face, CropMode::BoxMargin)));
        timed(&mut crop_aligned, || vision::crop_face(image, face, CropMode::Landmarks));
    }
    for crop in &crops {
        timed(&mut embed, || engine.facenet().embed_batch(std::slice::from_ref(crop)))?;
    }
    rows.push(("photos: crop box-margin".into(), summarise(&crop_box)));
    rows.push(("photos: crop landmarks (align)".into(), summarise(&crop_aligned)));
    rows.push(("photos: facenet per face".into(), summarise(&embed)));

    // A 640x480 camera frame, each stage repeated.
    let frame = camera_frame(&images[0]);
    for kind in DetectorKind::ALL {
        let _warm = engine.detect(&frame, kind)?;
        let mut times = Vec::new();
        for _ in 0..args.runs {
            timed(&mut times, || engine.detect(&frame, kind))?;
        }
        rows.push((format!("frame 640x480: detect {kind}"), summarise(&times)));
    }
    let frame_faces = engine.detect(&frame, DetectorKind::Mtcnn)?;
    let frame_face = frame_faces.first().context("no face in the 640x480 test frame")?;
    let frame_crop = vision::crop_face(&frame, frame_face, CropMode::BoxMargin);
    let mut times = Vec::new();
    for _ in 0..args.runs {
        timed(&mut times, || engine.facenet().embed_batch(std::slice::from_ref(&frame_crop)))?;
    }
    rows.push(("frame 640x480: facenet per face".into(), summarise(&times)));
    let four = vec![frame_crop.clone(); 4];
    let mut times = Vec::new();
    for _ in 0..args.runs.div_ceil(4) {
        let started = Instant::now();
        engine.facenet().embed_batch(&four)?;
        times.extend(std::iter::repeat_n(started.elapsed() / 4, 4));
    }
    rows.push(("frame 640x480: facenet per face, 4 at once".into(), summarise(&times)));

    // One model run spread over several threads: what an idle server does.
    if threads > 1 {
        vision::set_inference_threads(threads);
        for kind in DetectorKind::ALL {
            let _warm = engine.detect(&frame, kind)?;
            let mut times = Vec::new();
            for _ in 0..args.runs {
                timed(&mut times, || engine.detect(&frame, kind))?;
            }
            rows.push((
                format!("frame 640x480: detect {kind}, {threads} threads"),
                summarise(&times),
            ));
        }
        let _warm = engine.facenet().embed_batch(std::slice::from_ref(&frame_crop))?;
        let mut times = Vec::new();
        for _ in 0..args.runs {
            timed(&mut times, || engine.facenet().embed_batch(std::slice::from_ref(&frame_crop)))?;
        }
        rows.push((
            format!("frame 640x480: facenet per face, {threads} threads"),
            summarise(&times),
        ));
        vision::set_inference_threads(1);
    }

    let reference = if args.no_reference {
        None
    } else {
        match reference_timings(&args, threads, &photos_dir, &frame, &crops) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!("onnxruntime reference not run: {e:#}");
                None
            }
        }
    };

    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "facegate bench: {} photos from {}; engine loaded in {load_ms:.0} ms",
        files.len(),
        photos_dir.display()
    )?;
    writeln!(
        out,
        "{:<44} {:>6} {:>10} {:>10}   {:>10} {:>10}",
        "stage", "n", "tract med", "tract p95", "ort med", "ort p95"
    )?;
    for (name, s) in &rows {
        let r = reference.as_ref().and_then(|r| r.get(name.as_str()));
        let (rm, rp) = match r {
            Some(v) => (fmt_ms(v["median_ms"].as_f64()), fmt_ms(v["p95_ms"].as_f64())),
            None => ("-".to_string(), "-".to_string()),
        };
        writeln!(
            out,
            "{name:<44} {:>6} {:>10.2} {:>10.2}   {rm:>10} {rp:>10}",
            s.n, s.median_ms, s.p95_ms
        )?;
    }
    writeln!(
        out,
        "times in ms; tract = this binary, ort = onnxruntime on the same ONNX files and inputs; \
         one thread per model run unless a row says otherwise"
    )?;
    Ok(())
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"))
}

/// Runs `bench/ort_reference.py` in `<cache>/bench-venv` (created from
/// `bench/requirements.txt` when missing) on the same models and inputs, and
/// returns its timings by stage name.
fn reference_timings(
    args: &BenchArgs,
    threads: usize,
    photos: &Path,
    frame: &RgbImage,
    crops: &[RgbImage],
) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let bench_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench");
    let script = bench_dir.join("ort_reference.py");
    ensure!(script.is_file(), "{} is missing (run from a source checkout)", script.display());
    let venv = vision::cache_dir().join("bench-venv");
    let python = venv.join("bin").join("python");
    if !python.is_file() {
        tracing::info!("creating {} for the onnxruntime reference", venv.display());
        run_checked(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
        run_checked(
            Command::new(&python)
                .args(["-m", "pip", "install", "--quiet", "-r"])
                .arg(bench_dir.join("requirements.txt")),
        )?;
    }

    let work = std::env::temp_dir().join(format!("facegate-bench-{}", std::process::id()));
    std::fs::create_dir_all(work.join("crops"))?;
    frame.save(work.join("frame.png"))?;
    for (i, crop) in crops.iter().enumerate() {
        crop.save(work.join("crops").join(format!("{i:04}.png")))?;
    }
    let output = Command::new(&python)
        .arg(&script)
        .arg("--models")
        .arg(args.models.dir())
        .arg("--photos")
        .arg(photos)
        .arg("--work")
        .arg(&work)
        .arg("--runs")
        .arg(args.runs.to_string())
        .arg("--threads")
        .arg(threads.to_string())
        .output()
        .with_context(|| format!("cannot run {}", python.display()))?;
    let _ = std::fs::remove_dir_all(&work);
    if !output.status.success() {
        bail!("{} failed: {}", script.display(), String::from_utf8_lossy(&output.stderr).trim());
    }
    let value: serde_json::Value = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("{} printed no JSON", script.display()))?;
    value.as_object().cloned().context("reference output is not a JSON object")
}

fn run_checked(command: &mut Command) -> anyhow::Result<()> {
    let status = command.status().with_context(|| format!("cannot run {command:?}"))?;
    ensure!(status.success(), "{command:?} failed with {status}");
    Ok(())
}
