//! The capture gate: is this frame good enough to analyse, and has the face held still?
//!
//! Consumes a frame and the detected face (box and 5 landmarks in frame pixels); produces a
//! [`QualityReport`] with the measured values (face size, sharpness as the variance of the
//! Laplacian, pose from the landmarks, exposure) and the [`Issue`]s that fail the board's
//! [`QualityThresholds`]. [`Steadiness`] counts consecutive passing frames whose face box
//! barely moved.

use image::imageops::{self, FilterType};
use image::{GrayImage, RgbImage};
use serde::{Deserialize, Serialize};

use crate::detect::Detection;

/// Limits a face must meet to be captured (a board profile's `[quality]` table).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QualityThresholds {
    /// Smallest face box height as a fraction of the frame height.
    pub min_face_fraction: f32,
    /// Smallest variance of the Laplacian of the face, gray levels squared, measured on the
    /// face box resized to 112 x 112.
    pub min_sharpness: f32,
    /// Largest sideways turn: nose offset from the eye midpoint along the eye line, in eye
    /// distances (0 = frontal).
    pub max_yaw: f32,
    /// Accepted nose height between the eye line (0) and the mouth (1); frontal is ~0.5.
    pub pitch_range: [f32; 2],
    /// Largest head tilt (eye line against the horizontal), degrees.
    pub max_roll_deg: f32,
    /// Accepted mean face brightness, gray levels 0..255.
    pub brightness_range: [f32; 2],
    /// Largest fraction of face pixels that are clipped (gray <= 8 or >= 247).
    pub max_clipped: f32,
    /// Consecutive passing frames needed before an automatic capture.
    pub steady_frames: u32,
    /// Smallest overlap (IoU) of the face box between consecutive frames to count as steady.
    pub steady_iou: f32,
}

impl Default for QualityThresholds {
    fn default() -> Self {
        QualityThresholds {
            min_face_fraction: 0.2,
            min_sharpness: 30.0,
            max_yaw: 0.2,
            pitch_range: [0.3, 0.75],
            max_roll_deg: 15.0,
            brightness_range: [50.0, 215.0],
            max_clipped: 0.25,
            steady_frames: 3,
            steady_iou: 0.8,
        }
    }
}

/// One reason a face is not captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Issue {
    /// The face is too small in the frame.
    TooSmall,
    /// The face is blurred (motion or focus).
    Blurry,
    /// The head is turned sideways.
    Turned,
    /// The head is tilted up or down.
    Nodding,
    /// The head is tilted sideways.
    Tilted,
    /// The face is under-exposed.
    TooDark,
    /// The face is over-exposed.
    TooBright,
}

impl Issue {
    /// The instruction shown on the screen.
    pub fn advice(self) -> &'static str {
        match self {
            Issue::TooSmall => "Move closer",
            Issue::Blurry => "Blurred: hold still",
            Issue::Turned => "Face the camera",
            Issue::Nodding => "Keep the chin level",
            Issue::Tilted => "Keep the head straight",
            Issue::TooDark => "Too dark: add light",
            Issue::TooBright => "Too bright: less light",
        }
    }
}

/// What the gate measured on one face.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QualityReport {
    /// Face box height / frame height.
    pub face_fraction: f32,
    /// Variance of the Laplacian on the 112 x 112 gray face.
    pub sharpness: f32,
    /// Nose offset along the eye line, in eye distances.
    pub yaw: f32,
    /// Nose height between eye line (0) and mouth (1).
    pub pitch: f32,
    /// Eye line angle, degrees.
    pub roll_deg: f32,
    /// Mean gray level of the face, 0..255.
    pub brightness: f32,
    /// Fraction of clipped face pixels.
    pub clipped: f32,
    /// Failed checks, in the order above (empty: the face passes).
    pub issues: Vec<Issue>,
}

impl QualityReport {
    /// True when every check passed.
    pub fn passes(&self) -> bool {
        self.issues.is_empty()
    }

    /// A one-line verdict for the screen: the first issue's advice, or "Good".
    pub fn verdict(&self) -> &'static str {
        self.issues.first().map(|i| i.advice()).unwrap_or("Good")
    }
}

/// Gray level (ITU-R BT.601 luma), 0..255.
fn luma(p: &image::Rgb<u8>) -> u8 {
    let [r, g, b] = p.0;
    ((4899 * r as u32 + 9617 * g as u32 + 1868 * b as u32 + 8192) >> 14) as u8
}

/// The face box clamped to the frame, as (x, y, w, h); `None` when nothing is left.
fn face_rect(frame: &RgbImage, d: &Detection) -> Option<(u32, u32, u32, u32)> {
    let (fw, fh) = (frame.width() as f32, frame.height() as f32);
    let [x1, y1, x2, y2] = d.bbox_px;
    if ![x1, y1, x2, y2].iter().all(|v| v.is_finite()) {
        return None;
    }
    let (x1, y1) = (x1.clamp(0.0, fw), y1.clamp(0.0, fh));
    let (x2, y2) = (x2.clamp(0.0, fw), y2.clamp(0.0, fh));
    let (w, h) = ((x2 - x1) as u32, (y2 - y1) as u32);
    (w >= 2 && h >= 2).then_some((x1 as u32, y1 as u32, w, h))
}

/// Variance of the 4-neighbour Laplacian over the interior of `g`.
pub fn laplacian_variance(g: &GrayImage) -> f32 {
    let (w, h) = g.dimensions();
    if w < 3 || h < 3 {
        return 0.0;
    }
    let (mut sum, mut sum2, mut n) = (0f64, 0f64, 0f64);
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let c = g.get_pixel(x, y).0[0] as f64;
            let l = g.get_pixel(x - 1, y).0[0] as f64
                + g.get_pixel(x + 1, y).0[0] as f64
                + g.get_pixel(x, y - 1).0[0] as f64
                + g.get_pixel(x, y + 1).0[0] as f64
                - 4.0 * c;
            sum += l;
            sum2 += l * l;
            n += 1.0;
        }
    }
    let mean = sum / n;
    (sum2 / n - mean * mean) as f32
}

/// Measures the face `d` in `frame` against `t`.
pub fn assess(frame: &RgbImage, d: &Detection, t: &QualityThresholds) -> QualityReport {
    let fh = frame.height().max(1) as f32;
    let face_fraction = (d.bbox_px[3] - d.bbox_px[1]).max(0.0) / fh;

    let [le, re, nose, ml, mr] = d.landmarks_px;
    let (ex, ey) = (re[0] - le[0], re[1] - le[1]);
    let eye_dist = (ex * ex + ey * ey).sqrt();
    let roll_deg = ey.atan2(ex).to_degrees();
    let mid = [(le[0] + re[0]) / 2.0, (le[1] + re[1]) / 2.0];
    let mouth = [(ml[0] + mr[0]) / 2.0, (ml[1] + mr[1]) / 2.0];
    let (yaw, pitch) = if eye_dist > 1e-3 {
        let (ux, uy) = (ex / eye_dist, ey / eye_dist);
        // along the eye line, and perpendicular to it (downwards on an upright face)
        let along = |p: [f32; 2]| (p[0] - mid[0]) * ux + (p[1] - mid[1]) * uy;
        let across = |p: [f32; 2]| -(p[0] - mid[0]) * uy + (p[1] - mid[1]) * ux;
        let mouth_depth = across(mouth);
        let pitch = if mouth_depth.abs() > 1e-3 {
            across(nose) / mouth_depth
        } else {
            f32::NAN
        };
        (along(nose) / eye_dist, pitch)
    } else {
        (f32::NAN, f32::NAN)
    };

    let (mut sharpness, mut brightness, mut clipped) = (0.0, 0.0, 1.0);
    if let Some((x, y, w, h)) = face_rect(frame, d) {
        let crop = imageops::crop_imm(frame, x, y, w, h).to_image();
        let gray = GrayImage::from_fn(w, h, |i, j| image::Luma([luma(crop.get_pixel(i, j))]));
        let n = (w * h) as f32;
        brightness = gray.pixels().map(|p| p.0[0] as f32).sum::<f32>() / n;
        clipped = gray
            .pixels()
            .filter(|p| p.0[0] <= 8 || p.0[0] >= 247)
            .count() as f32
            / n;
        sharpness = laplacian_variance(&imageops::resize(&gray, 112, 112, FilterType::Triangle));
    }

    let mut issues = Vec::new();
    let out = |v: f32, lo: f32, hi: f32| !(v.is_finite() && v >= lo && v <= hi);
    if out(face_fraction, t.min_face_fraction, f32::INFINITY) {
        issues.push(Issue::TooSmall);
    }
    if out(sharpness, t.min_sharpness, f32::INFINITY) {
        issues.push(Issue::Blurry);
    }
    if out(yaw, -t.max_yaw, t.max_yaw) {
        issues.push(Issue::Turned);
    }
    if out(pitch, t.pitch_range[0], t.pitch_range[1]) {
        issues.push(Issue::Nodding);
    }
    if out(roll_deg, -t.max_roll_deg, t.max_roll_deg) {
        issues.push(Issue::Tilted);
    }
    if brightness < t.brightness_range[0] {
        issues.push(Issue::TooDark);
    } else if brightness > t.brightness_range[1] || clipped > t.max_clipped {
        issues.push(Issue::TooBright);
    }
    QualityReport {
        face_fraction,
        sharpness,
        yaw,
        pitch,
        roll_deg,
        brightness,
        clipped,
        issues,
    }
}

/// Plain intersection over union of two `[x1, y1, x2, y2]` boxes.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// Counts consecutive passing frames whose face box stayed put.
#[derive(Debug, Clone, Default)]
pub struct Steadiness {
    last: Option<[f32; 4]>,
    count: u32,
}

impl Steadiness {
    /// Feeds one frame: the face box (if any) and whether it passed the gate. Returns the
    /// number of consecutive steady passing frames, this one included.
    pub fn update(&mut self, face: Option<&[f32; 4]>, passes: bool, min_iou: f32) -> u32 {
        match face {
            Some(b) if passes => {
                let still = self.last.is_some_and(|l| iou(&l, b) >= min_iou);
                self.count = if still { self.count + 1 } else { 1 };
                self.last = Some(*b);
            }
            Some(b) => {
                self.count = 0;
                self.last = Some(*b);
            }
            None => *self = Steadiness::default(),
        }
        self.count
    }

    /// Starts counting afresh.
    pub fn reset(&mut self) {
        *self = Steadiness::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frontal face on an ArcFace-like layout, box 100 px wide at (50, 40), sharp texture.
    fn face_scene(noise: bool, level: u8) -> (RgbImage, Detection) {
        let img = RgbImage::from_fn(200, 200, |x, y| {
            let v = if noise && (x * 7 + y * 13) % 5 < 2 {
                60
            } else {
                0
            };
            image::Rgb([level.saturating_add(v); 3])
        });
        let d = crate::detect::test_util::template_face();
        (img, d)
    }

    #[test]
    fn good_face_passes() {
        let (img, d) = face_scene(true, 100);
        let r = assess(&img, &d, &QualityThresholds::default());
        assert!(r.passes(), "{r:?}");
        assert!(r.yaw.abs() < 0.02 && (r.pitch - 0.49).abs() < 0.02, "{r:?}");
        assert_eq!(r.verdict(), "Good");
    }

    #[test]
    fn each_check_can_fail() {
        let t = QualityThresholds::default();
        let (flat, d) = face_scene(false, 100);
        assert_eq!(assess(&flat, &d, &t).issues, vec![Issue::Blurry]);
        let (dark, _) = face_scene(true, 5);
        assert!(assess(&dark, &d, &t).issues.contains(&Issue::TooDark));
        let (img, _) = face_scene(true, 100);
        let mut turned = d;
        turned.landmarks_px[2][0] += 20.0;
        assert_eq!(assess(&img, &turned, &t).issues, vec![Issue::Turned]);
        let mut tilted = d;
        tilted.landmarks_px[1][1] += 15.0;
        assert!(assess(&img, &tilted, &t).issues.contains(&Issue::Tilted));
        let small = RgbImage::from_fn(1000, 1000, |x, y| *img.get_pixel(x % 200, y % 200));
        assert_eq!(assess(&small, &d, &t).issues, vec![Issue::TooSmall]);
        let mut broken = d;
        broken.bbox_px[0] = f32::NAN;
        assert!(!assess(&img, &broken, &t).passes());
    }

    #[test]
    fn steadiness_counts_still_passing_frames() {
        let mut s = Steadiness::default();
        let a = [0.0, 0.0, 100.0, 100.0];
        let moved = [50.0, 0.0, 150.0, 100.0];
        assert_eq!(s.update(Some(&a), true, 0.8), 1);
        assert_eq!(s.update(Some(&a), true, 0.8), 2);
        assert_eq!(s.update(Some(&moved), true, 0.8), 1);
        assert_eq!(s.update(Some(&moved), false, 0.8), 0);
        assert_eq!(s.update(None, true, 0.8), 0);
        assert!((iou(&a, &moved) - 1.0 / 3.0).abs() < 1e-6);
    }
}
