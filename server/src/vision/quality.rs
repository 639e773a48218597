//! Cheap per-face quality figures, for callers that want to refuse dark,
//! blurred, tiny or turned faces. Nothing here is enforced.

use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::Face;

/// Quality figures of one face.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    /// Width of the detector's box in image pixels.
    pub face_width_px: f32,
    /// Mean luma (BT.601) of the face crop, 0..=255.
    pub brightness: f32,
    /// Variance of the 4-neighbour Laplacian of the crop's luma: low means
    /// blurred (sharp 160x160 faces give a few hundred, blurred ones tens).
    pub sharpness: f32,
    /// Rough head turn in degrees from the landmarks: how far the nose sits
    /// from the eyes' midpoint, relative to half the eye distance, through
    /// `asin`. 0 is frontal; the sign says towards which image side.
    pub yaw_degrees: f32,
}

impl Quality {
    /// Measures `face`, whose crop (as given to FaceNet) is `crop`.
    pub fn measure(face: &Face, crop: &RgbImage) -> Self {
        let luma = luma(crop);
        let brightness = luma.iter().sum::<f32>() / luma.len().max(1) as f32;
        Quality {
            face_width_px: face.bbox.width(),
            brightness,
            sharpness: laplacian_variance(&luma, crop.width() as usize, crop.height() as usize),
            yaw_degrees: yaw_degrees(face),
        }
    }
}

fn luma(image: &RgbImage) -> Vec<f32> {
    image
        .pixels()
        .map(|p| 0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2]))
        .collect()
}

fn laplacian_variance(luma: &[f32], width: usize, height: usize) -> f32 {
    if width < 3 || height < 3 {
        return 0.0;
    }
    let mut values = Vec::with_capacity((width - 2) * (height - 2));
    for y in 1..height - 1 {
        for x in 1..width - 1 {
            let c = luma[y * width + x];
            let v = luma[y * width + x - 1]
                + luma[y * width + x + 1]
                + luma[(y - 1) * width + x]
                + luma[(y + 1) * width + x]
                - 4.0 * c;
            values.push(v);
        }
    }
    let n = values.len() as f32;
    let mean = values.iter().sum::<f32>() / n;
    values.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n
}

fn yaw_degrees(face: &Face) -> f32 {
    let l = &face.landmarks;
    let half_eyes =
        ((l.right_eye.x - l.left_eye.x).powi(2) + (l.right_eye.y - l.left_eye.y).powi(2)).sqrt()
            / 2.0;
    if half_eyes <= f32::EPSILON {
        return 0.0;
    }
    let mid = (l.left_eye.x + l.right_eye.x) / 2.0;
    ((l.nose.x - mid) / half_eyes).clamp(-1.0, 1.0).asin().to_degrees()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::{FaceBox, Landmarks, Point};

    #[test]
    fn flat_crop_has_no_sharpness_and_a_frontal_face_no_yaw() {
        let crop = RgbImage::from_pixel(10, 10, image::Rgb([100, 100, 100]));
        let landmarks = Landmarks {
            left_eye: Point { x: 10.0, y: 10.0 },
            right_eye: Point { x: 30.0, y: 10.0 },
            nose: Point { x: 20.0, y: 20.0 },
            ..Landmarks::default()
        };
        let face =
            Face { bbox: FaceBox { x1: 0.0, y1: 0.0, x2: 40.0, y2: 40.0 }, score: 1.0, landmarks };
        let q = Quality::measure(&face, &crop);
        assert_eq!(q.face_width_px, 40.0);
        assert!((q.brightness - 100.0).abs() < 0.01);
        assert_eq!(q.sharpness, 0.0);
        assert_eq!(q.yaw_degrees, 0.0);
    }
}
