//! Five-point face alignment: a similarity transform (Umeyama, with scale, no reflection)
//! from detected landmarks to the ArcFace 112x112 template, then a bilinear affine warp with
//! border 0. Also the rotation used by the reference's second detection pass.
//!
//! Consumes an RGB image and landmarks in its pixel coordinates; produces [`AlignedFace`].
//! The arithmetic follows the reference (scikit-image `SimilarityTransform.estimate`, then
//! `cv2.warpAffine` with `INTER_LINEAR` and a black border; `cv2.getRotationMatrix2D` for
//! the levelling pass), so crops agree with the reference pixel for pixel;
//! `tests/it/align_golden.rs` checks this against files made by `tests/golden/make_goldens.py`.

pub mod umeyama;
pub mod warp;

use image::RgbImage;

pub use umeyama::{invert_affine, umeyama, Similarity};
pub use warp::warp_affine;

/// Side of the aligned face crop, in pixels.
pub const ALIGNED_SIZE: u32 = 112;

/// The ArcFace landmark template for a 112x112 crop, `[x, y]` in pixels, in landmark order:
/// image-left eye, image-right eye, nose tip, left mouth corner, right mouth corner.
pub const ARCFACE_TEMPLATE_112: [[f32; 2]; 5] = [
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
];

/// A face warped onto the ArcFace template.
#[derive(Debug, Clone, PartialEq)]
pub struct AlignedFace {
    /// The 112x112 RGB crop.
    pub rgb: RgbImage,
    /// The transform from the source image's pixels to the crop's pixels.
    pub transform: Similarity,
}

/// Why a face could not be aligned. The caller knows the photo and wraps this into
/// [`crate::Error`] (e.g. `Error::image(path, err.to_string())`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AlignError {
    /// The photo has no pixels.
    #[error("the image is empty")]
    EmptyImage,
    /// A landmark coordinate is NaN or infinite.
    #[error("a face landmark is not a finite number")]
    NonFiniteLandmark,
    /// The landmarks coincide, so no similarity transform fits them.
    #[error("the face landmarks are degenerate (they coincide)")]
    DegenerateLandmarks,
}

/// Aligns the face whose five landmarks (pixels of `image`, in the order of
/// [`ARCFACE_TEMPLATE_112`]) are given: fits the similarity from landmarks to template and
/// warps `image` to a 112x112 crop (bilinear, border black).
pub fn align(image: &RgbImage, landmarks_px: &[[f32; 2]; 5]) -> Result<AlignedFace, AlignError> {
    if image.width() == 0 || image.height() == 0 {
        return Err(AlignError::EmptyImage);
    }
    if landmarks_px.iter().flatten().any(|v| !v.is_finite()) {
        return Err(AlignError::NonFiniteLandmark);
    }
    let src = landmarks_px.map(|[x, y]| [f64::from(x), f64::from(y)]);
    let dst = ARCFACE_TEMPLATE_112.map(|[x, y]| [f64::from(x), f64::from(y)]);
    let transform = umeyama(&src, &dst).ok_or(AlignError::DegenerateLandmarks)?;
    let rgb = warp_affine(image, &transform.m, ALIGNED_SIZE, ALIGNED_SIZE);
    Ok(AlignedFace { rgb, transform })
}

/// Angle of the line from the image-left eye (landmark 0) to the image-right eye
/// (landmark 1), in degrees, `atan2(dy, dx)` with y pointing down: positive when the
/// image-right eye is lower. It is the angle to pass to [`rotation_matrix`] (as to
/// `cv2.getRotationMatrix2D`) to make the eyes level. NaN if a landmark is not finite.
pub fn eye_angle_deg(landmarks_px: &[[f32; 2]; 5]) -> f64 {
    let [l, r] = [landmarks_px[0], landmarks_px[1]];
    let dy = f64::from(r[1]) - f64::from(l[1]);
    let dx = f64::from(r[0]) - f64::from(l[0]);
    dy.atan2(dx).to_degrees()
}

/// The 2x3 matrix of `cv2.getRotationMatrix2D(center, angle_deg, 1.0)`: rotation about
/// `center` (pixels) by `angle_deg` degrees, positive turning content counter-clockwise on
/// screen. Maps source pixels to destination pixels; apply it to landmarks with
/// [`Similarity::apply`].
pub fn rotation_matrix(center: [f32; 2], angle_deg: f64) -> [[f64; 3]; 2] {
    let rad = angle_deg * std::f64::consts::PI / 180.0;
    let (alpha, beta) = (rad.cos(), rad.sin());
    let (cx, cy) = (f64::from(center[0]), f64::from(center[1]));
    [
        [alpha, beta, (1.0 - alpha) * cx - beta * cy],
        [-beta, alpha, beta * cx + (1.0 - alpha) * cy],
    ]
}

/// Rotates `image` about `center` (pixels) by `angle_deg` (as [`rotation_matrix`]) onto a
/// canvas of the same size: bilinear, corners that come from outside are black. This is the
/// reference's levelling step before its second detection pass.
pub fn rotate_about(image: &RgbImage, center: [f32; 2], angle_deg: f64) -> RgbImage {
    let m = rotation_matrix(center, angle_deg);
    warp_affine(image, &m, image.width(), image.height())
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn textured(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            Rgb([
                (x * 3 % 256) as u8,
                (y * 5 % 256) as u8,
                ((x ^ y) % 256) as u8,
            ])
        })
    }

    #[test]
    fn template_landmarks_align_to_identity() {
        let img = textured(112, 112);
        let face = align(&img, &ARCFACE_TEMPLATE_112).unwrap();
        let t = face.transform;
        assert!((t.scale() - 1.0).abs() < 1e-9 && t.rotation_deg().abs() < 1e-9);
        assert!(t.m[0][2].abs() < 1e-9 && t.m[1][2].abs() < 1e-9);
        assert_eq!(face.rgb, img);
    }

    #[test]
    fn scaled_rotated_landmarks_map_onto_the_template() {
        // Landmarks of a face twice as large, rotated by 10 degrees, shifted.
        let truth = Similarity {
            m: rotation_matrix([100.0, 80.0], 10.0),
        };
        let lm = ARCFACE_TEMPLATE_112.map(|[x, y]| {
            let p = truth.apply([f64::from(x) * 2.0 + 40.0, f64::from(y) * 2.0 + 20.0]);
            [p[0] as f32, p[1] as f32]
        });
        let face = align(&textured(300, 300), &lm).unwrap();
        assert_eq!(face.rgb.dimensions(), (112, 112));
        assert!((face.transform.scale() - 0.5).abs() < 1e-6);
        assert!((face.transform.rotation_deg() - 10.0).abs() < 1e-5);
        for (p, q) in lm.iter().zip(&ARCFACE_TEMPLATE_112) {
            let m = face.transform.apply([f64::from(p[0]), f64::from(p[1])]);
            assert!((m[0] - f64::from(q[0])).abs() < 1e-3 && (m[1] - f64::from(q[1])).abs() < 1e-3);
        }
    }

    #[test]
    fn align_rejects_bad_input() {
        let img = textured(50, 50);
        assert_eq!(
            align(&img, &[[10.0, 10.0]; 5]),
            Err(AlignError::DegenerateLandmarks)
        );
        let mut lm = ARCFACE_TEMPLATE_112;
        lm[2][1] = f32::NAN;
        assert_eq!(align(&img, &lm), Err(AlignError::NonFiniteLandmark));
        assert_eq!(
            align(&RgbImage::new(0, 7), &ARCFACE_TEMPLATE_112),
            Err(AlignError::EmptyImage)
        );
        assert!(!AlignError::DegenerateLandmarks.to_string().is_empty());
    }

    #[test]
    fn eye_angle_levels_the_eyes() {
        // Image-right eye lower by 10 px over 40 px.
        let lm = [
            [30.0, 50.0],
            [70.0, 60.0],
            [50.0, 70.0],
            [35.0, 90.0],
            [65.0, 95.0],
        ];
        let angle = eye_angle_deg(&lm);
        assert!((angle - 0.25f64.atan().to_degrees()).abs() < 1e-12);
        assert!(angle > 0.0);
        let r = Similarity {
            m: rotation_matrix(lm[2], angle),
        };
        let (l, rr) = (r.apply([30.0, 50.0]), r.apply([70.0, 60.0]));
        assert!((l[1] - rr[1]).abs() < 1e-9, "eyes level after rotation");
        assert!(rr[0] > l[0], "left stays left");
        let nose = r.apply([50.0, 70.0]);
        assert!(
            (nose[0] - 50.0).abs() < 1e-9 && (nose[1] - 70.0).abs() < 1e-9,
            "centre is fixed"
        );
        assert_eq!(
            eye_angle_deg(&[[0.0, 0.0], [10.0, 0.0], [0.0; 2], [0.0; 2], [0.0; 2]]),
            0.0
        );
    }

    #[test]
    fn rotation_matrix_matches_opencv_layout() {
        // cv2.getRotationMatrix2D((10, 20), 90, 1): [[0, 1, -10], [-1, 0, 30]].
        let m = rotation_matrix([10.0, 20.0], 90.0);
        let want = [[0.0, 1.0, -10.0], [-1.0, 0.0, 30.0]];
        for (a, b) in m.iter().flatten().zip(want.iter().flatten()) {
            assert!((a - b).abs() < 1e-12, "{m:?}");
        }
    }

    #[test]
    fn rotate_about_keeps_size_and_quarter_turns_exactly() {
        let img = textured(9, 9);
        let same = rotate_about(&img, [4.0, 4.0], 0.0);
        assert_eq!(same, img);
        let turned = rotate_about(&img, [4.0, 4.0], 90.0);
        assert_eq!(turned.dimensions(), (9, 9));
        // Counter-clockwise on screen: the source's right edge lands on the top edge.
        for k in 0..9 {
            assert_eq!(turned.get_pixel(k, 0), img.get_pixel(8, k), "k={k}");
        }
        // Off-centre rotation of a non-square canvas leaves black corners.
        let wide = RgbImage::from_pixel(20, 6, Rgb([90, 90, 90]));
        let r = rotate_about(&wide, [10.0, 3.0], 90.0);
        assert_eq!(r.dimensions(), (20, 6));
        assert_eq!(r.get_pixel(0, 0), &Rgb([0, 0, 0]));
        assert_eq!(r.get_pixel(10, 3), &Rgb([90, 90, 90]));
    }
}
