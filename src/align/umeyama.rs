//! Least-squares similarity fit (Umeyama 1991, with scale, no reflection) between two
//! point sets in the plane.
//!
//! Consumes matched point lists `[x, y]` (pixels); produces a [`Similarity`], the 2x3 matrix
//! that maps the first set onto the second, as scikit-image's
//! `SimilarityTransform.estimate` does. The 2x2 SVD of Umeyama's method is done in closed
//! form: for a rotation `R(theta)`, `trace(R^T A)` is `c (a11 + a22) + s (a21 - a12)`, so the
//! best proper rotation and the signed sum of singular values follow from one `atan2` and
//! one `hypot`, without iterating.

/// A 2D similarity transform (rotation, uniform scale, translation), as a 2x3 matrix.
///
/// Maps a source pixel `(x, y)` to the destination:
/// `x' = m[0][0] x + m[0][1] y + m[0][2]`, `y' = m[1][0] x + m[1][1] y + m[1][2]`
/// (the layout of OpenCV's affine matrices and of scikit-image's `params[:2]`).
/// A similarity has `m[0][0] == m[1][1]` and `m[0][1] == -m[1][0]`; the methods below read
/// scale and rotation under that assumption.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    /// Row-major 2x3 matrix, source pixels -> destination pixels.
    pub m: [[f64; 3]; 2],
}

impl Similarity {
    /// The identity transform.
    pub const IDENTITY: Similarity = Similarity {
        m: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
    };

    /// Maps the point `p = [x, y]` (source pixels) to destination pixels.
    pub fn apply(&self, p: [f64; 2]) -> [f64; 2] {
        let m = &self.m;
        [
            m[0][0] * p[0] + m[0][1] * p[1] + m[0][2],
            m[1][0] * p[0] + m[1][1] * p[1] + m[1][2],
        ]
    }

    /// The transform mapping destination pixels back to the source; `None` when the linear
    /// part is singular or any entry is not finite.
    pub fn inverse(&self) -> Option<Similarity> {
        invert_affine(&self.m).map(|m| Similarity { m })
    }

    /// Uniform scale factor (destination pixels per source pixel).
    pub fn scale(&self) -> f64 {
        self.m[0][0].hypot(self.m[1][0])
    }

    /// Rotation in degrees: the direction of the mapped x axis, `atan2(m[1][0], m[0][0])`.
    /// With y pointing down, a positive angle turns content clockwise on screen; the matrix
    /// of `cv2.getRotationMatrix2D(c, a, 1)` has `rotation_deg() == -a`.
    pub fn rotation_deg(&self) -> f64 {
        self.m[1][0].atan2(self.m[0][0]).to_degrees()
    }
}

/// Inverts a 2x3 affine matrix (OpenCV's `invertAffineTransform` arithmetic); `None` when
/// the determinant is zero or the result is not finite.
pub fn invert_affine(m: &[[f64; 3]; 2]) -> Option<[[f64; 3]; 2]> {
    let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
    if det == 0.0 || !det.is_finite() {
        return None;
    }
    let d = 1.0 / det;
    let a11 = m[1][1] * d;
    let a22 = m[0][0] * d;
    let a12 = -m[0][1] * d;
    let a21 = -m[1][0] * d;
    let b1 = -a11 * m[0][2] - a12 * m[1][2];
    let b2 = -a21 * m[0][2] - a22 * m[1][2];
    let inv = [[a11, a12, b1], [a21, a22, b2]];
    inv.iter().flatten().all(|v| v.is_finite()).then_some(inv)
}

/// Least-squares similarity (rotation, uniform scale, translation; never a reflection)
/// mapping `src[i]` onto `dst[i]`, in the sense of Umeyama (1991) with scale estimation.
///
/// Returns `None` when the fit is degenerate: lists of different lengths or shorter than 2,
/// any non-finite coordinate, all source points equal (zero variance), or a cross-covariance
/// of zero (e.g. all destination points equal), where no rotation is defined.
pub fn umeyama(src: &[[f64; 2]], dst: &[[f64; 2]]) -> Option<Similarity> {
    if src.len() != dst.len() || src.len() < 2 {
        return None;
    }
    if src
        .iter()
        .chain(dst.iter())
        .flatten()
        .any(|v| !v.is_finite())
    {
        return None;
    }
    let n = src.len() as f64;
    let mean = |pts: &[[f64; 2]]| {
        let (sx, sy) = pts
            .iter()
            .fold((0.0, 0.0), |(ax, ay), p| (ax + p[0], ay + p[1]));
        [sx / n, sy / n]
    };
    let ms = mean(src);
    let md = mean(dst);

    // Cross-covariance A = dst_demeaned^T src_demeaned / n, and the source variance.
    let mut a = [[0.0f64; 2]; 2];
    let mut var_src = 0.0;
    for (s, d) in src.iter().zip(dst) {
        let sc = [s[0] - ms[0], s[1] - ms[1]];
        let dc = [d[0] - md[0], d[1] - md[1]];
        for (r, row) in a.iter_mut().enumerate() {
            for (c, v) in row.iter_mut().enumerate() {
                *v += dc[r] * sc[c];
            }
        }
        var_src += sc[0] * sc[0] + sc[1] * sc[1];
    }
    for v in a.iter_mut().flatten() {
        *v /= n;
    }
    var_src /= n;
    if !var_src.is_finite() || var_src <= 0.0 {
        return None;
    }

    // Best proper rotation: maximise c (a11 + a22) + s (a21 - a12) over c^2 + s^2 = 1.
    let p = a[0][0] + a[1][1];
    let q = a[1][0] - a[0][1];
    let norm = p.hypot(q); // = sigma1 + sign(det A) sigma2, Umeyama's trace(D S)
    if !norm.is_finite() || norm <= 0.0 {
        return None;
    }
    let (c, s) = (p / norm, q / norm);
    let scale = norm / var_src;
    let (sc, ss) = (scale * c, scale * s);
    let tx = md[0] - (sc * ms[0] - ss * ms[1]);
    let ty = md[1] - (ss * ms[0] + sc * ms[1]);
    let m = [[sc, -ss, tx], [ss, sc, ty]];
    m.iter()
        .flatten()
        .all(|v| v.is_finite())
        .then_some(Similarity { m })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tiny deterministic generator (Knuth's MMIX LCG), uniform in `[lo, hi)`.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, lo: f64, hi: f64) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            lo + (hi - lo) * ((self.0 >> 11) as f64 / (1u64 << 53) as f64)
        }
    }

    fn make(scale: f64, deg: f64, tx: f64, ty: f64) -> Similarity {
        let (s, c) = deg.to_radians().sin_cos();
        Similarity {
            m: [[scale * c, -scale * s, tx], [scale * s, scale * c, ty]],
        }
    }

    fn max_diff(a: &Similarity, b: &Similarity) -> f64 {
        a.m.iter()
            .flatten()
            .zip(b.m.iter().flatten())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    }

    #[test]
    fn recovers_random_similarities_exactly() {
        let mut rng = Lcg(7);
        for _ in 0..200 {
            let truth = make(
                rng.next(0.05, 5.0),
                rng.next(-180.0, 180.0),
                rng.next(-300.0, 300.0),
                rng.next(-300.0, 300.0),
            );
            let n = 2 + (rng.next(0.0, 8.0) as usize);
            let src: Vec<[f64; 2]> = (0..n)
                .map(|_| [rng.next(0.0, 500.0), rng.next(0.0, 500.0)])
                .collect();
            let dst: Vec<[f64; 2]> = src.iter().map(|&p| truth.apply(p)).collect();
            let got = umeyama(&src, &dst).expect("non-degenerate");
            assert!(max_diff(&got, &truth) < 1e-9, "{got:?} vs {truth:?}");
            assert!((got.scale() - truth.scale()).abs() < 1e-9);
        }
    }

    #[test]
    fn noisy_points_give_the_least_squares_fit() {
        // With noise the fit is no longer exact, but it is a stationary point of the squared
        // error: nudging any parameter must not lower it.
        let mut rng = Lcg(11);
        let truth = make(1.7, 23.0, 10.0, -4.0);
        let src: Vec<[f64; 2]> = (0..12)
            .map(|_| [rng.next(0.0, 100.0), rng.next(0.0, 100.0)])
            .collect();
        let dst: Vec<[f64; 2]> = src
            .iter()
            .map(|&p| {
                let q = truth.apply(p);
                [q[0] + rng.next(-2.0, 2.0), q[1] + rng.next(-2.0, 2.0)]
            })
            .collect();
        let fit = umeyama(&src, &dst).unwrap();
        let err = |t: &Similarity| -> f64 {
            src.iter()
                .zip(&dst)
                .map(|(&s, d)| {
                    let q = t.apply(s);
                    (q[0] - d[0]).powi(2) + (q[1] - d[1]).powi(2)
                })
                .sum()
        };
        let e0 = err(&fit);
        assert!(max_diff(&fit, &truth) < 0.5);
        let (a, b) = (fit.m[0][0], fit.m[1][0]);
        for k in 0..4 {
            for sign in [-1.0, 1.0] {
                let h = 1e-4 * sign;
                let mut p = [a, b, fit.m[0][2], fit.m[1][2]];
                p[k] += h;
                let t = Similarity {
                    m: [[p[0], -p[1], p[2]], [p[1], p[0], p[3]]],
                };
                assert!(err(&t) >= e0, "parameter {k} {sign}");
            }
        }
    }

    #[test]
    fn never_returns_a_reflection() {
        let mut rng = Lcg(3);
        for _ in 0..100 {
            let src: Vec<[f64; 2]> = (0..5)
                .map(|_| [rng.next(0.0, 50.0), rng.next(0.0, 50.0)])
                .collect();
            // Mirror image of the source: the best reflection would be exact.
            let dst: Vec<[f64; 2]> = src.iter().map(|p| [-p[0] + 3.0, p[1]]).collect();
            let t = umeyama(&src, &dst).expect("a mirrored point set still has a best rotation");
            let det = t.m[0][0] * t.m[1][1] - t.m[0][1] * t.m[1][0];
            assert!(det > 0.0);
            assert_eq!(t.m[0][0], t.m[1][1]);
            assert_eq!(t.m[0][1], -t.m[1][0]);
            // The best rotation fits a mirror image worse than the mirror would (exactly).
            let err: f64 = src
                .iter()
                .zip(&dst)
                .map(|(&s, d)| {
                    let q = t.apply(s);
                    (q[0] - d[0]).hypot(q[1] - d[1])
                })
                .sum();
            assert!(err > 1e-3);
        }
    }

    #[test]
    fn degenerate_inputs_give_none() {
        let p = [[1.0, 2.0], [3.0, 4.0], [5.0, 7.0]];
        assert!(umeyama(&p[..1], &p[..1]).is_none());
        assert!(umeyama(&p, &p[..2]).is_none());
        assert!(umeyama(&[], &[]).is_none());
        let same = [[2.0, 2.0]; 3];
        assert!(umeyama(&same, &p).is_none(), "all source points equal");
        assert!(umeyama(&p, &same).is_none(), "all destination points equal");
        let mut nan = p;
        nan[1][0] = f64::NAN;
        assert!(umeyama(&nan, &p).is_none());
        assert!(umeyama(&p, &nan).is_none());
        let mut inf = p;
        inf[2][1] = f64::INFINITY;
        assert!(umeyama(&inf, &p).is_none());
        // Two distinct points are enough.
        let t = umeyama(&p[..2], &[[0.0, 0.0], [0.0, 2.0]]).unwrap();
        assert!((t.scale() - 2.0f64.sqrt() / 2.0).abs() < 1e-12);
    }

    #[test]
    fn inverse_scale_and_rotation() {
        let t = make(2.5, 30.0, 7.0, -3.0);
        assert!((t.scale() - 2.5).abs() < 1e-12);
        assert!((t.rotation_deg() - 30.0).abs() < 1e-12);
        let inv = t.inverse().unwrap();
        let p = [12.5, -40.0];
        let back = inv.apply(t.apply(p));
        assert!((back[0] - p[0]).abs() < 1e-12 && (back[1] - p[1]).abs() < 1e-12);
        assert!((inv.scale() - 0.4).abs() < 1e-12);
        assert!((inv.rotation_deg() + 30.0).abs() < 1e-12);
        assert!(Similarity { m: [[0.0; 3]; 2] }.inverse().is_none());
        assert!(Similarity {
            m: [[f64::NAN, 0.0, 0.0], [0.0, 1.0, 0.0]]
        }
        .inverse()
        .is_none());
        assert_eq!(Similarity::IDENTITY.apply(p), p);
    }
}
