//! Box geometry shared by the detectors: intersection over union and the two
//! flavours of non-maximum suppression.

use super::{Face, FaceBox};

/// Intersection over union of two boxes in continuous pixel coordinates
/// (a box covers `x2 - x1` by `y2 - y1`). Empty or inverted boxes give 0.
pub fn iou(a: &FaceBox, b: &FaceBox) -> f32 {
    let inter = intersection(a, b);
    let union = a.area() + b.area() - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// Intersection area divided by the smaller box's area ("Min" overlap, used by
/// MTCNN's last stage so that a small box inside a larger one is dropped).
pub fn overlap_min(a: &FaceBox, b: &FaceBox) -> f32 {
    let smaller = a.area().min(b.area());
    if smaller <= 0.0 { 0.0 } else { intersection(a, b) / smaller }
}

fn intersection(a: &FaceBox, b: &FaceBox) -> f32 {
    let w = (a.x2.min(b.x2) - a.x1.max(b.x1)).max(0.0);
    let h = (a.y2.min(b.y2) - a.y1.max(b.y1)).max(0.0);
    w * h
}

/// How two boxes' overlap is measured in [`nms`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// Intersection over union.
    Union,
    /// Intersection over the smaller area.
    Min,
}

/// Greedy non-maximum suppression: returns the indices of the kept items,
/// strongest first. An item is dropped when it overlaps an already kept,
/// stronger one by more than `threshold`. The strongest item always survives.
pub fn nms<T>(
    items: &[T],
    bbox: impl Fn(&T) -> FaceBox,
    score: impl Fn(&T) -> f32,
    threshold: f32,
    overlap: Overlap,
) -> Vec<usize> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| score(&items[b]).total_cmp(&score(&items[a])));
    let boxes: Vec<FaceBox> = items.iter().map(&bbox).collect();

    let mut kept: Vec<usize> = Vec::new();
    for i in order {
        let suppressed = kept.iter().any(|&k| {
            let o = match overlap {
                Overlap::Union => iou(&boxes[k], &boxes[i]),
                Overlap::Min => overlap_min(&boxes[k], &boxes[i]),
            };
            o > threshold
        });
        if !suppressed {
            kept.push(i);
        }
    }
    kept
}

/// Weighted non-maximum suppression (BlazeFace): each cluster of faces that
/// overlap the strongest remaining one by more than `threshold` (IoU) is
/// replaced by the score-weighted mean of its boxes and landmarks, keeping the
/// strongest score. Returns faces strongest first.
pub fn weighted_nms(mut faces: Vec<Face>, threshold: f32) -> Vec<Face> {
    faces.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut out = Vec::new();
    while !faces.is_empty() {
        let best = faces[0].bbox;
        let (cluster, rest): (Vec<Face>, Vec<Face>) =
            faces.into_iter().partition(|f| iou(&best, &f.bbox) > threshold || f.bbox == best);
        faces = rest;

        let total: f32 = cluster.iter().map(|f| f.score).sum();
        let mut merged = cluster[0].clone();
        if total > 0.0 {
            let mut b = [0.0f32; 4];
            let mut l = [[0.0f32; 2]; 5];
            for f in &cluster {
                let w = f.score / total;
                for (acc, v) in b.iter_mut().zip([f.bbox.x1, f.bbox.y1, f.bbox.x2, f.bbox.y2]) {
                    *acc += w * v;
                }
                for (acc, p) in l.iter_mut().zip(f.landmarks.points()) {
                    acc[0] += w * p[0];
                    acc[1] += w * p[1];
                }
            }
            merged.bbox = FaceBox { x1: b[0], y1: b[1], x2: b[2], y2: b[3] };
            merged.landmarks = super::Landmarks::from_points(l);
        }
        out.push(merged);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(x1: f32, y1: f32, x2: f32, y2: f32) -> FaceBox {
        FaceBox { x1, y1, x2, y2 }
    }

    #[test]
    fn iou_of_identical_disjoint_and_half_overlapping_boxes() {
        assert_eq!(iou(&b(0.0, 0.0, 10.0, 10.0), &b(0.0, 0.0, 10.0, 10.0)), 1.0);
        assert_eq!(iou(&b(0.0, 0.0, 10.0, 10.0), &b(20.0, 20.0, 30.0, 30.0)), 0.0);
        // Overlap 5x10 = 50, union 150.
        let v = iou(&b(0.0, 0.0, 10.0, 10.0), &b(5.0, 0.0, 15.0, 10.0));
        assert!((v - 1.0 / 3.0).abs() < 1e-6, "{v}");
        assert_eq!(iou(&b(5.0, 5.0, 5.0, 5.0), &b(5.0, 5.0, 5.0, 5.0)), 0.0);
    }

    #[test]
    fn min_overlap_of_a_box_inside_another_is_one() {
        assert_eq!(overlap_min(&b(0.0, 0.0, 100.0, 100.0), &b(10.0, 10.0, 20.0, 20.0)), 1.0);
    }

    #[test]
    fn nms_keeps_the_strongest_box_and_distant_ones() {
        let items = [
            (b(0.0, 0.0, 10.0, 10.0), 0.7),
            (b(1.0, 1.0, 11.0, 11.0), 0.9),
            (b(50.0, 50.0, 60.0, 60.0), 0.5),
            (b(0.5, 0.0, 10.5, 10.0), 0.8),
        ];
        let kept = nms(&items, |i| i.0, |i| i.1, 0.3, Overlap::Union);
        assert_eq!(kept, vec![1, 2]);
    }

    #[test]
    fn weighted_nms_averages_a_cluster_and_keeps_the_top_score() {
        let face =
            |bbox, score| Face { bbox, score, landmarks: super::super::Landmarks::default() };
        let faces = vec![face(b(0.0, 0.0, 10.0, 10.0), 0.9), face(b(2.0, 0.0, 12.0, 10.0), 0.3)];
        let out = weighted_nms(faces, 0.3);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].score, 0.9);
        assert!((out[0].bbox.x1 - 0.5).abs() < 1e-5, "{:?}", out[0].bbox);
    }
}
