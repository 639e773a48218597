//! Cutting a face out of an image as FaceNet's 160x160 input.

use image::{Rgb, RgbImage};
use serde::{Deserialize, Serialize};

use super::facenet::INPUT_SIDE;
use super::resize::{Region, resample_image};
use super::{Face, Landmarks};

/// How a face is cut out for FaceNet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CropMode {
    /// The detector's box widened by [`BOX_MARGIN`] of its width (height) on
    /// the left and right (top and bottom), clipped to the image, then resized
    /// to 160x160 without keeping the aspect ratio. This is how the Keras
    /// FaceNet's reference pipeline feeds it, and it measured best here.
    #[default]
    BoxMargin,
    /// A similarity transform (rotation, uniform scale, shift) fitted by least
    /// squares from the five landmarks to [`TEMPLATE`], sampled bilinearly.
    /// Levels tilted heads, but depends on landmark quality.
    Landmarks,
}

/// The margin added on each side of the box in [`CropMode::BoxMargin`], as a
/// fraction of the box's width (left, right) or height (top, bottom).
pub const BOX_MARGIN: f32 = 0.1;

/// Where [`CropMode::Landmarks`] puts the five landmarks in the 160x160 crop
/// (left eye, right eye, nose, mouth left, mouth right; image sides). These
/// are the mean positions of MTCNN's landmarks inside the box-margin crops of
/// the five-person set's 91 unclipped training faces, made left-right
/// symmetric, so both modes frame a face alike.
pub const TEMPLATE: [[f32; 2]; 5] =
    [[50.4, 65.4], [109.6, 65.4], [80.0, 92.2], [53.5, 113.3], [106.5, 113.3]];

/// Cuts `face` out of `image` as a 160x160 crop, the way `mode` says.
pub fn crop_face(image: &RgbImage, face: &Face, mode: CropMode) -> RgbImage {
    match mode {
        CropMode::BoxMargin => crop_box(image, face),
        CropMode::Landmarks => align_face(image, &face.landmarks),
    }
}

/// The [`CropMode::BoxMargin`] crop.
pub fn crop_box(image: &RgbImage, face: &Face) -> RgbImage {
    let b = face.bbox;
    let (mx, my) = (b.width() * BOX_MARGIN, b.height() * BOX_MARGIN);
    let x1 = (b.x1 - mx).clamp(0.0, image.width() as f32);
    let y1 = (b.y1 - my).clamp(0.0, image.height() as f32);
    let x2 = (b.x2 + mx).clamp(0.0, image.width() as f32);
    let y2 = (b.y2 + my).clamp(0.0, image.height() as f32);
    let region = Region { x: x1, y: y1, width: (x2 - x1).max(1.0), height: (y2 - y1).max(1.0) };
    resample_image(image, region, INPUT_SIDE, INPUT_SIDE)
}

/// The [`CropMode::Landmarks`] crop: 160x160, the landmarks mapped as near
/// to [`TEMPLATE`] as a similarity transform allows; outside the image the
/// nearest edge pixel is repeated.
pub fn align_face(image: &RgbImage, landmarks: &Landmarks) -> RgbImage {
    let t = similarity(&landmarks.points(), &TEMPLATE);
    let inv = t.inverse();
    RgbImage::from_fn(INPUT_SIDE, INPUT_SIDE, |u, v| {
        let [sx, sy] = inv.apply([u as f32 + 0.5, v as f32 + 0.5]);
        bilinear(image, sx - 0.5, sy - 0.5)
    })
}

/// `p -> [[a, -b], [b, a]] p + [tx, ty]`: rotation and uniform scale, then a
/// shift (no reflection, no shear).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    pub a: f32,
    pub b: f32,
    pub tx: f32,
    pub ty: f32,
}

impl Similarity {
    pub fn apply(&self, [x, y]: [f32; 2]) -> [f32; 2] {
        [self.a * x - self.b * y + self.tx, self.b * x + self.a * y + self.ty]
    }

    pub fn inverse(&self) -> Similarity {
        let d = self.a * self.a + self.b * self.b;
        let (a, b) = (self.a / d, -self.b / d);
        Similarity { a, b, tx: -(a * self.tx - b * self.ty), ty: -(b * self.tx + a * self.ty) }
    }
}

/// The least-squares similarity transform taking `src` onto `dst` (Umeyama,
/// 1991, which in two dimensions has this closed form).
pub fn similarity(src: &[[f32; 2]], dst: &[[f32; 2]]) -> Similarity {
    let n = src.len() as f64;
    let mean = |p: &[[f32; 2]]| {
        let (sx, sy) =
            p.iter().fold((0.0, 0.0), |(x, y), q| (x + f64::from(q[0]), y + f64::from(q[1])));
        (sx / n, sy / n)
    };
    let (msx, msy) = mean(src);
    let (mdx, mdy) = mean(dst);
    let (mut dot, mut cross, mut norm) = (0.0f64, 0.0f64, 0.0f64);
    for (s, d) in src.iter().zip(dst) {
        let (sx, sy) = (f64::from(s[0]) - msx, f64::from(s[1]) - msy);
        let (dx, dy) = (f64::from(d[0]) - mdx, f64::from(d[1]) - mdy);
        dot += sx * dx + sy * dy;
        cross += sx * dy - sy * dx;
        norm += sx * sx + sy * sy;
    }
    if norm <= f64::EPSILON {
        // All landmarks in one place: shift only.
        return Similarity { a: 1.0, b: 0.0, tx: (mdx - msx) as f32, ty: (mdy - msy) as f32 };
    }
    let (a, b) = (dot / norm, cross / norm);
    Similarity {
        a: a as f32,
        b: b as f32,
        tx: (mdx - (a * msx - b * msy)) as f32,
        ty: (mdy - (b * msx + a * msy)) as f32,
    }
}

/// Bilinear sample at index-space coordinates (pixel centres at integers),
/// clamped to the image.
fn bilinear(image: &RgbImage, x: f32, y: f32) -> Rgb<u8> {
    let (w, h) = (image.width() as i64, image.height() as i64);
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let px =
        |xi: i64, yi: i64| image.get_pixel(xi.clamp(0, w - 1) as u32, yi.clamp(0, h - 1) as u32);
    let (xi, yi) = (x0 as i64, y0 as i64);
    let (p00, p10, p01, p11) = (px(xi, yi), px(xi + 1, yi), px(xi, yi + 1), px(xi + 1, yi + 1));
    Rgb(std::array::from_fn(|c| {
        let top = f32::from(p00[c]) * (1.0 - fx) + f32::from(p10[c]) * fx;
        let bottom = f32::from(p01[c]) * (1.0 - fx) + f32::from(p11[c]) * fx;
        (top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::FaceBox;

    #[test]
    fn similarity_recovers_a_known_rotation_scale_and_shift() {
        let truth = Similarity { a: 1.2 * 0.5f32.cos(), b: 1.2 * 0.5f32.sin(), tx: 7.0, ty: -3.0 };
        let src = [[10.0, 20.0], [50.0, 22.0], [30.0, 40.0], [15.0, 60.0], [45.0, 61.0]];
        let dst = src.map(|p| truth.apply(p));
        let fit = similarity(&src, &dst);
        for (got, want) in
            [fit.a, fit.b, fit.tx, fit.ty].iter().zip([truth.a, truth.b, truth.tx, truth.ty])
        {
            assert!((got - want).abs() < 1e-3, "{fit:?} vs {truth:?}");
        }
        let back = fit.inverse().apply(fit.apply([3.0, 4.0]));
        assert!((back[0] - 3.0).abs() < 1e-4 && (back[1] - 4.0).abs() < 1e-4);
    }

    #[test]
    fn alignment_maps_the_landmarks_onto_the_template() {
        // A white image with a dark 3x3 dot at each landmark, placed at half
        // the template's scale, rotated by 90 degrees, and shifted. After
        // alignment the dots must sit at the template's points.
        let rot = Similarity { a: 0.0, b: 0.5, tx: 150.0, ty: 20.0 };
        let marks = TEMPLATE.map(|p| rot.apply(p));
        let mut img = RgbImage::from_pixel(200, 200, Rgb([255, 255, 255]));
        for [x, y] in marks {
            for dx in -1..=1 {
                for dy in -1..=1 {
                    img.put_pixel((x as i32 + dx) as u32, (y as i32 + dy) as u32, Rgb([0, 0, 0]));
                }
            }
        }
        let crop = align_face(&img, &Landmarks::from_points(marks));
        assert_eq!(crop.dimensions(), (160, 160));
        for [x, y] in TEMPLATE {
            let p = crop.get_pixel(x as u32, y as u32);
            assert!(p[0] < 128, "template point ({x}, {y}) is {p:?}, not dark");
        }
        assert_eq!(crop.get_pixel(5, 5)[0], 255);
    }

    #[test]
    fn box_crop_adds_the_margin_and_stays_inside_the_image() {
        // Inside the box+margin the image is black, outside white: the crop
        // must be all black.
        let bbox = FaceBox { x1: 20.0, y1: 30.0, x2: 70.0, y2: 90.0 };
        let img = RgbImage::from_fn(120, 120, |x, y| {
            let inside = (15..75).contains(&x) && (24..96).contains(&y);
            if inside { Rgb([0, 0, 0]) } else { Rgb([255, 255, 255]) }
        });
        let face = Face { bbox, score: 1.0, landmarks: Landmarks::default() };
        let crop = crop_box(&img, &face);
        assert!(crop.pixels().all(|p| p[0] == 0));
        // A box at the corner is clipped, not padded.
        let corner = Face { bbox: FaceBox { x1: -10.0, y1: -10.0, x2: 10.0, y2: 10.0 }, ..face };
        assert!(crop_box(&img, &corner).pixels().all(|p| p[0] == 255));
    }
}
