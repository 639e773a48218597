// The face engine on the real models and the five-person photo set.
//
// Needs `python3 models/prepare.py` to have filled the cache directory
// ($FACEGATE_CACHE_DIR, else ~/.cache/facegate); without it every test here
// fails with a message saying so. The suite decodes the 118 photos and runs
// every detector over them once, shared by all tests (a minute or two on two
// cores in release).

#![expect(
    clippy::print_stdout,
    reason = "the measured figures are printed for the report; see them with --nocapture"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use image::RgbImage;
use server::vision::{
    self, CropMode, DEFAULT_MATCH_THRESHOLD, DecodeLimits, DetectorKind, Embedding, Engine, Face,
};

/// One photo of the set, decoded.
struct Photo {
    split: String,
    person: String,
    path: PathBuf,
    image: RgbImage,
}

/// Everything the tests share, computed once.
struct Fixture {
    engine: Engine,
    photos: Vec<Photo>,
    /// Per detector, per photo, the faces found.
    faces: BTreeMap<&'static str, Vec<Vec<Face>>>,
}

fn prepare_hint() -> String {
    format!(
        "the face models and photos are missing from {}; run `python3 models/prepare.py` first",
        vision::cache_dir().display()
    )
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let engine = Engine::load(&vision::models_dir(), &DetectorKind::ALL)
            .unwrap_or_else(|e| panic!("{e:#}\n{}", prepare_hint()));
        let photos = load_photos();
        let mut faces = BTreeMap::new();
        for kind in DetectorKind::ALL {
            let found: Vec<Vec<Face>> = photos
                .iter()
                .map(|p| {
                    engine
                        .detect(&p.image, kind)
                        .unwrap_or_else(|e| panic!("{kind} on {}: {e:#}", p.path.display()))
                })
                .collect();
            faces.insert(kind.name(), found);
        }
        Fixture { engine, photos, faces }
    })
}

fn load_photos() -> Vec<Photo> {
    let root = vision::cache_dir().join("data").join("faces5");
    let mut photos = Vec::new();
    for split in ["train", "val"] {
        let dir = root.join(split);
        let people = sorted_entries(&dir).unwrap_or_else(|e| panic!("{e}\n{}", prepare_hint()));
        for person_dir in people {
            let person = person_dir.file_name().unwrap().to_string_lossy().into_owned();
            for path in sorted_entries(&person_dir).unwrap() {
                let bytes = std::fs::read(&path).unwrap();
                let image = vision::decode_image(&bytes, &DecodeLimits::default())
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                photos.push(Photo {
                    split: split.to_string(),
                    person: person.clone(),
                    path,
                    image,
                });
            }
        }
    }
    assert_eq!(photos.len(), 118, "expected 118 photos in {}; {}", root.display(), prepare_hint());
    photos
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    Ok(entries)
}

/// The embedding of each photo's strongest MTCNN face cut out with `mode`.
fn embeddings(mode: CropMode) -> Vec<Embedding> {
    let f = fixture();
    let engine = f.engine.clone().with_crop_mode(mode);
    f.photos
        .iter()
        .zip(&f.faces["mtcnn"])
        .map(|(photo, faces)| {
            let face =
                faces.first().unwrap_or_else(|| panic!("no face in {}", photo.path.display()));
            engine.embed_faces(&photo.image, std::slice::from_ref(face)).unwrap().remove(0)
        })
        .collect()
}

/// How many val photos have a train photo of the same person as nearest
/// neighbour.
fn nearest_neighbour_hits(photos: &[Photo], embeddings: &[Embedding]) -> usize {
    let train: Vec<usize> = (0..photos.len()).filter(|&i| photos[i].split == "train").collect();
    (0..photos.len())
        .filter(|&i| photos[i].split == "val")
        .filter(|&i| {
            let best = train
                .iter()
                .max_by(|&&a, &&b| {
                    embeddings[i].dot(&embeddings[a]).total_cmp(&embeddings[i].dot(&embeddings[b]))
                })
                .unwrap();
            photos[*best].person == photos[i].person
        })
        .count()
}

struct Stats {
    n: usize,
    mean: f32,
    min: f32,
    max: f32,
}

fn stats(values: &[f32]) -> Stats {
    Stats {
        n: values.len(),
        mean: values.iter().sum::<f32>() / values.len() as f32,
        min: values.iter().copied().fold(f32::INFINITY, f32::min),
        max: values.iter().copied().fold(f32::NEG_INFINITY, f32::max),
    }
}

/// Same-person and different-person similarities over all pairs.
fn pair_similarities(photos: &[Photo], embeddings: &[Embedding]) -> (Vec<f32>, Vec<f32>) {
    let (mut same, mut different) = (Vec::new(), Vec::new());
    for i in 0..photos.len() {
        for j in i + 1..photos.len() {
            let s = embeddings[i].dot(&embeddings[j]);
            if photos[i].person == photos[j].person { same.push(s) } else { different.push(s) }
        }
    }
    (same, different)
}

/// Mean of the true-accept and true-reject rates at `threshold`.
fn balanced_accuracy(same: &[f32], different: &[f32], threshold: f32) -> f32 {
    let accept = same.iter().filter(|&&s| s >= threshold).count() as f32 / same.len() as f32;
    let reject =
        different.iter().filter(|&&s| s < threshold).count() as f32 / different.len() as f32;
    (accept + reject) / 2.0
}

#[test]
fn facenet_reproduces_the_golden_embeddings() {
    let golden_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/golden/facenet_golden.json");
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&golden_path).unwrap()).unwrap();
    let root = vision::cache_dir().join("data").join("faces5");
    let facenet = fixture().engine.facenet();

    let mut strict = 0;
    for crop in golden["crops"].as_array().unwrap() {
        let id = crop["id"].as_str().unwrap();
        let path = root.join(crop["path"].as_str().unwrap());
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", path.display(), prepare_hint()));
        let image = vision::decode_image(&bytes, &DecodeLimits::default()).unwrap();
        let (x, y, size) = (
            crop["rect"]["x"].as_u64().unwrap() as u32,
            crop["rect"]["y"].as_u64().unwrap() as u32,
            crop["rect"]["size"].as_u64().unwrap() as u32,
        );
        let factor = crop["resample"]["factor"].as_u64().unwrap() as u32;
        let rect = image::imageops::crop_imm(&image, x, y, size, size).to_image();
        let input = match crop["resample"]["mode"].as_str().unwrap() {
            "replicate" => {
                RgbImage::from_fn(160, 160, |c, r| *rect.get_pixel(c / factor, r / factor))
            }
            "box" => {
                assert_eq!(
                    factor, 1,
                    "{id}: box resampling with a factor is not used by the golden set"
                );
                rect.clone()
            }
            other => panic!("{id}: unknown resample mode {other}"),
        };
        let got = facenet.embed_batch(&[input]).unwrap().remove(0);
        let want: Vec<f32> = crop["embedding_l2"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let max_diff =
            got.as_slice().iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);

        let rect_sha = sha256_hex(rect.as_raw());
        let comparable = crop["exact"].as_bool().unwrap()
            || crop["rect_rgb_sha256"].as_str() == Some(rect_sha.as_str());
        println!(
            "golden {id}: max |diff| {max_diff:.2e} ({})",
            if comparable { "strict" } else { "decoder differs" }
        );
        if comparable {
            strict += 1;
            assert!(max_diff < 1e-4, "{id}: embedding differs from the golden one by {max_diff}");
        } else {
            // A different JPEG decoder changes pixels by a level or two; the
            // embedding must still be nearly the same direction.
            let cos: f32 = got.as_slice().iter().zip(&want).map(|(a, b)| a * b).sum();
            assert!(cos > 0.99, "{id}: cosine {cos} to the golden embedding");
        }
    }
    assert!(strict >= 4, "only {strict} golden crops were compared strictly");
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn every_detector_finds_exactly_one_face_in_nearly_every_photo() {
    let f = fixture();
    let mut counts = Vec::new();
    for (name, per_photo) in &f.faces {
        let one = per_photo.iter().filter(|faces| faces.len() == 1).count();
        let none: Vec<_> = f
            .photos
            .iter()
            .zip(per_photo)
            .filter(|(_, faces)| faces.is_empty())
            .map(|(p, _)| p.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        let many = per_photo.iter().filter(|faces| faces.len() > 1).count();
        println!(
            "{name}: exactly one face in {one}/118, none in {}, several in {many}",
            none.len()
        );
        for (photo, faces) in f.photos.iter().zip(per_photo).filter(|(_, faces)| faces.len() > 1) {
            let summary: Vec<String> =
                faces.iter().map(|x| format!("{:.3}@{:.0}px", x.score, x.bbox.width())).collect();
            println!(
                "  several: {} {}",
                photo.path.file_name().unwrap().to_string_lossy(),
                summary.join(" ")
            );
        }
        counts.push((name, one, none));
    }
    for (name, one, none) in counts {
        assert!(
            one >= 110,
            "{name} found exactly one face in only {one} of 118 photos (none: {none:?})"
        );
    }
}

#[test]
fn detectors_return_sorted_faces_with_landmarks_inside_their_boxes() {
    let f = fixture();
    for (name, per_photo) in &f.faces {
        for (photo, faces) in f.photos.iter().zip(per_photo) {
            assert!(faces.windows(2).all(|w| w[0].score >= w[1].score), "{name}: unsorted");
            for face in faces {
                let b = face.bbox;
                assert!(b.x1 < b.x2 && b.y1 < b.y2, "{name} {}: {b:?}", photo.path.display());
                let l = face.landmarks;
                let slack = b.width().max(b.height()) * 0.25;
                for [x, y] in l.points() {
                    assert!(
                        x > b.x1 - slack
                            && x < b.x2 + slack
                            && y > b.y1 - slack
                            && y < b.y2 + slack,
                        "{name} {}: landmark ({x}, {y}) far outside {b:?}",
                        photo.path.display()
                    );
                }
            }
        }
    }
}

#[test]
fn nearest_neighbour_identifies_the_val_photos_and_the_threshold_separates_pairs() {
    let f = fixture();
    let mut results = Vec::new();
    for mode in [CropMode::BoxMargin, CropMode::Landmarks] {
        let embeddings = embeddings(mode);
        let hits = nearest_neighbour_hits(&f.photos, &embeddings);
        let (same, different) = pair_similarities(&f.photos, &embeddings);
        let (s, d) = (stats(&same), stats(&different));
        let best = (0..100)
            .map(|t| t as f32 / 100.0)
            .max_by(|a, b| {
                balanced_accuracy(&same, &different, *a)
                    .total_cmp(&balanced_accuracy(&same, &different, *b))
            })
            .unwrap();
        println!(
            "{mode:?}: nearest neighbour {hits}/25; same-person pairs n={} mean {:.3} min {:.3} max {:.3}; \
             different-person pairs n={} mean {:.3} min {:.3} max {:.3}; best threshold {best:.2} \
             (balanced accuracy {:.3}); at DEFAULT_MATCH_THRESHOLD {DEFAULT_MATCH_THRESHOLD}: {:.3}",
            s.n,
            s.mean,
            s.min,
            s.max,
            d.n,
            d.mean,
            d.min,
            d.max,
            balanced_accuracy(&same, &different, best),
            balanced_accuracy(&same, &different, DEFAULT_MATCH_THRESHOLD),
        );
        for t in [0.2f32, 0.25, 0.3, 0.35, 0.4, 0.45] {
            let accept = same.iter().filter(|&&x| x >= t).count() as f32 / same.len() as f32;
            let false_accept =
                different.iter().filter(|&&x| x >= t).count() as f32 / different.len() as f32;
            println!(
                "  threshold {t:.2}: same-person accepted {accept:.3}, different-person accepted {false_accept:.4}"
            );
        }
        results.push((
            mode,
            hits,
            balanced_accuracy(&same, &different, DEFAULT_MATCH_THRESHOLD),
            s,
            d,
        ));
    }

    let (mode, hits, accuracy, same, different) = &results[0];
    assert_eq!(*mode, CropMode::default());
    assert!(*hits >= 24, "nearest neighbour identified only {hits} of 25 val photos");
    assert!(
        same.mean > different.mean + 0.3,
        "same-person and different-person similarities overlap"
    );
    assert!(*accuracy >= 0.95, "balanced pair accuracy {accuracy} at the default threshold");
}

#[test]
fn the_engine_is_safe_to_use_from_several_threads_at_once() {
    let f = fixture();
    let photo = &f.photos[0];
    let expected = embeddings(CropMode::default())[0].clone();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                let faces = f.engine.detect(&photo.image, DetectorKind::Mtcnn).unwrap();
                let e = f.engine.embed_faces(&photo.image, &faces[..1]).unwrap().remove(0);
                assert!((e.dot(&expected) - 1.0).abs() < 1e-5);
            });
        }
    });
}

#[test]
fn a_photo_without_a_face_gives_no_faces() {
    let f = fixture();
    let blank = RgbImage::from_pixel(320, 240, image::Rgb([128, 128, 128]));
    for kind in DetectorKind::ALL {
        assert!(
            f.engine.detect(&blank, kind).unwrap().is_empty(),
            "{kind} found a face in a grey frame"
        );
    }
}
