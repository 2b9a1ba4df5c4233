//! RetinaFace decoding, as the GestaltMatcher-Arc reference does it.
//!
//! Consumes the three output tensors of a RetinaFace network (`loc` [N,4] box offsets,
//! `conf` [N,2] background/face scores, `landms` [N,10] landmark offsets, row-major `f32`)
//! together with the prior boxes of the input size, and produces [`Detection`]s in pixels of
//! the network input, sorted by score, highest first.
//!
//! Priors: one level per step; on a feature map of ceil(H/step) x ceil(W/step) cells, in the
//! order level -> row -> column -> min_size, each prior is `[cx, cy, w, h]` relative to the
//! input size: `[(j+0.5)*step/W, (i+0.5)*step/H, min/W, min/H]`, never clipped.

use super::nms::select;
use super::{DecodeError, Detection};

/// Prior (anchor) layout of a RetinaFace network.
#[derive(Debug, Clone, PartialEq)]
pub struct PriorConfig {
    /// Feature-map stride of each level, in input pixels.
    pub steps: Vec<u32>,
    /// Anchor sizes of each level, in input pixels (one list per step).
    pub min_sizes: Vec<Vec<f32>>,
    /// Variances `[centre, size]` the box and landmark offsets are scaled by.
    pub variance: [f32; 2],
}

impl Default for PriorConfig {
    /// The reference configuration (ResNet-50 and mobilenet0.25 alike): steps 8, 16, 32,
    /// min sizes [16, 32], [64, 128], [256, 512], variance [0.1, 0.2].
    fn default() -> Self {
        PriorConfig {
            steps: vec![8, 16, 32],
            min_sizes: vec![vec![16.0, 32.0], vec![64.0, 128.0], vec![256.0, 512.0]],
            variance: [0.1, 0.2],
        }
    }
}

impl PriorConfig {
    /// Checks that every level has a non-zero step and a list of min sizes.
    pub fn validate(&self) -> Result<(), DecodeError> {
        if self.steps.len() != self.min_sizes.len() {
            return Err(DecodeError::Config(format!(
                "RetinaFace priors: {} steps but {} min_sizes lists",
                self.steps.len(),
                self.min_sizes.len()
            )));
        }
        if self.steps.contains(&0) {
            return Err(DecodeError::Config("RetinaFace priors: a step is 0".into()));
        }
        Ok(())
    }
}

/// Prior boxes `[cx, cy, w, h]` (fractions of the input width/height) for an input of
/// `height` x `width` pixels, in the order level -> row -> column -> min_size.
///
/// Computed in `f64` and rounded to `f32`, as the reference does. Levels with a zero step are
/// skipped and levels beyond the shorter of `steps`/`min_sizes` are ignored
/// ([`PriorConfig::validate`] reports both); a zero width or height gives no priors.
pub fn priors(cfg: &PriorConfig, height: u32, width: u32) -> Vec<[f32; 4]> {
    let mut out = Vec::new();
    if height == 0 || width == 0 {
        return out;
    }
    let (w, h) = (f64::from(width), f64::from(height));
    for (&step, sizes) in cfg.steps.iter().zip(&cfg.min_sizes) {
        if step == 0 {
            continue;
        }
        let rows = height.div_ceil(step);
        let cols = width.div_ceil(step);
        let s = f64::from(step);
        for i in 0..rows {
            let cy = (f64::from(i) + 0.5) * s / h;
            for j in 0..cols {
                let cx = (f64::from(j) + 0.5) * s / w;
                for &m in sizes {
                    let m = f64::from(m);
                    out.push([cx as f32, cy as f32, (m / w) as f32, (m / h) as f32]);
                }
            }
        }
    }
    out
}

/// Score filtering and NMS settings of the RetinaFace decoder.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeParams {
    /// Keep candidates whose face score is strictly above this (reference 0.02).
    pub score_threshold: f32,
    /// Candidates kept, by score, before NMS (reference 5000).
    pub top_k: usize,
    /// NMS IoU threshold, "+1" box convention (reference 0.4).
    pub nms_iou: f32,
    /// Detections kept after NMS (reference 750).
    pub keep_top_k: usize,
    /// `conf` holds raw logits, so softmax each row first (false: the network already
    /// applied softmax, as the reference export does).
    pub scores_are_logits: bool,
}

impl Default for DecodeParams {
    fn default() -> Self {
        DecodeParams {
            score_threshold: 0.02,
            top_k: 5000,
            nms_iou: 0.4,
            keep_top_k: 750,
            scores_are_logits: false,
        }
    }
}

/// Checks that `data` holds `per_prior` values for each of `n` priors.
fn check_len(tensor: &str, data: &[f32], n: usize, per_prior: usize) -> Result<(), DecodeError> {
    let expected = n.saturating_mul(per_prior);
    if data.len() == expected {
        Ok(())
    } else {
        Err(DecodeError::Length {
            tensor: tensor.into(),
            expected,
            got: data.len(),
        })
    }
}

/// Face probability from a `[background, face]` pair (softmax of logits when asked).
fn face_score(c: &[f32], logits: bool) -> f32 {
    match (c, logits) {
        ([_, face], false) => *face,
        ([bg, face], true) => {
            let m = bg.max(*face);
            let (eb, ef) = ((bg - m).exp(), (face - m).exp());
            ef / (eb + ef)
        }
        _ => f32::NAN,
    }
}

/// Decodes RetinaFace outputs into detections in pixels of the `width` x `height` input.
///
/// `loc` is [N,4], `conf` [N,2] (column 1 is the face), `landms` [N,10], all row-major with
/// N = `priors.len()` (the priors of the same input size, see [`priors`]).
/// Box: centre = p_c + l[0..2] * v0 * p_wh, size = p_wh * exp(l[2..4] * v1), corners
/// x1 = cx - w/2, x2 = x1 + w (as the reference); landmarks p_c + l * v0 * p_wh; x scaled by
/// `width`, y by `height`. Candidates with score > `score_threshold` are sorted by score
/// (stable), cut to `top_k`, passed through NMS ("+1" convention) and cut to `keep_top_k`.
/// Candidates whose coordinates are not finite (overflowing offsets) are dropped.
///
/// Errors when a tensor length does not match the priors, the prior configuration is
/// invalid or the input size is zero.
#[allow(clippy::too_many_arguments)]
pub fn decode(
    loc: &[f32],
    conf: &[f32],
    landms: &[f32],
    priors: &[[f32; 4]],
    width: u32,
    height: u32,
    cfg: &PriorConfig,
    params: &DecodeParams,
) -> Result<Vec<Detection>, DecodeError> {
    cfg.validate()?;
    if width == 0 || height == 0 {
        return Err(DecodeError::Config(format!(
            "RetinaFace input size {width}x{height}"
        )));
    }
    let n = priors.len();
    check_len("loc", loc, n, 4)?;
    check_len("conf", conf, n, 2)?;
    check_len("landms", landms, n, 10)?;
    let [v0, v1] = cfg.variance;
    let (sx, sy) = (width as f32, height as f32);

    let mut candidates = Vec::new();
    let rows = priors
        .iter()
        .zip(loc.chunks_exact(4))
        .zip(conf.chunks_exact(2));
    for (((p, l), c), lm) in rows.zip(landms.chunks_exact(10)) {
        let score = face_score(c, params.scores_are_logits);
        if score.is_nan() || score <= params.score_threshold {
            continue;
        }
        let [pcx, pcy, pw, ph] = *p;
        let cx = pcx + l[0] * v0 * pw;
        let cy = pcy + l[1] * v0 * ph;
        let w = pw * (l[2] * v1).exp();
        let h = ph * (l[3] * v1).exp();
        let (x1, y1) = (cx - w / 2.0, cy - h / 2.0);
        let bbox_px = [x1 * sx, y1 * sy, (x1 + w) * sx, (y1 + h) * sy];
        let mut landmarks_px = [[0.0f32; 2]; 5];
        for (out, o) in landmarks_px.iter_mut().zip(lm.chunks_exact(2)) {
            *out = [(pcx + o[0] * v0 * pw) * sx, (pcy + o[1] * v0 * ph) * sy];
        }
        let d = Detection {
            bbox_px,
            score,
            landmarks_px,
        };
        if d.is_finite() {
            candidates.push(d);
        }
    }
    Ok(select(
        candidates,
        params.top_k,
        params.nms_iou,
        true,
        params.keep_top_k,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::detect::test_util::{assert_close, flat};

    #[test]
    fn prior_count_square_640() {
        // 80*80*2 + 40*40*2 + 20*20*2
        assert_eq!(priors(&PriorConfig::default(), 640, 640).len(), 16800);
    }

    #[test]
    fn prior_count_non_square_uses_ceil() {
        let cfg = PriorConfig::default();
        // 480 high, 640 wide: 60*80*2 + 30*40*2 + 15*20*2.
        assert_eq!(priors(&cfg, 480, 640).len(), 12600);
        // 427 high: ceil(427/8) = 54, ceil(427/16) = 27, ceil(427/32) = 14 rows.
        assert_eq!(
            priors(&cfg, 427, 640).len(),
            54 * 80 * 2 + 27 * 40 * 2 + 14 * 20 * 2
        );
        assert_eq!(priors(&cfg, 427, 640).len(), 11360);
        // Width side: 640 high, 500 wide: ceil(500/8) = 63, 32, 16 columns.
        assert_eq!(
            priors(&cfg, 640, 500).len(),
            80 * 63 * 2 + 40 * 32 * 2 + 20 * 16 * 2
        );
    }

    #[test]
    fn first_priors_by_hand() {
        let cfg = PriorConfig::default();
        let p = priors(&cfg, 640, 640);
        // Level 0 (step 8), row 0, column 0, min sizes 16 then 32.
        assert_close(&p[0], &[0.00625, 0.00625, 0.025, 0.025], 1e-7);
        assert_close(&p[1], &[0.00625, 0.00625, 0.05, 0.05], 1e-7);
        // Column 1: cx = 1.5 * 8 / 640.
        assert_close(&p[2], &[0.01875, 0.00625, 0.025, 0.025], 1e-7);
        // Row 1 starts after 80 columns * 2 sizes: cy = 1.5 * 8 / 640.
        assert_close(&p[160], &[0.00625, 0.01875, 0.025, 0.025], 1e-7);
        // First prior of level 1 (step 16): centre 8 / 640, size 64 / 640.
        assert_close(&p[12800], &[0.0125, 0.0125, 0.1, 0.1], 1e-7);
        // First prior of level 2 (step 32): centre 16 / 640, size 256 / 640, then 512 / 640.
        assert_close(&p[16000], &[0.025, 0.025, 0.4, 0.4], 1e-7);
        assert_close(&p[16001], &[0.025, 0.025, 0.8, 0.8], 1e-7);
        // Last prior: level 2, row 19, column 19, size 512.
        assert_close(&p[16799], &[0.975, 0.975, 0.8, 0.8], 1e-7);
    }

    #[test]
    fn non_square_priors_by_hand() {
        let p = priors(&PriorConfig::default(), 427, 640);
        // x relative to 640, y relative to 427; no clipping of the sizes.
        assert_close(
            &p[0],
            &[4.0 / 640.0, 4.0 / 427.0, 16.0 / 640.0, 16.0 / 427.0],
            1e-7,
        );
        // Level 2 starts after 54*80*2 + 27*40*2 = 10800 priors.
        assert_close(
            &p[10800],
            &[16.0 / 640.0, 16.0 / 427.0, 256.0 / 640.0, 256.0 / 427.0],
            1e-7,
        );
        assert_close(&p[10801], &[0.025, 16.0 / 427.0, 0.8, 512.0 / 427.0], 1e-7);
        // The last row of level 2 reaches past the bottom edge: cy = 13.5 * 32 / 427 > 1.
        let last = p[p.len() - 1];
        assert_close(
            &last,
            &[19.5 * 32.0 / 640.0, 13.5 * 32.0 / 427.0, 0.8, 512.0 / 427.0],
            1e-6,
        );
        assert!(last[1] > 1.0);
    }

    #[test]
    fn invalid_prior_configs() {
        let mut cfg = PriorConfig::default();
        cfg.steps[1] = 0;
        assert!(cfg.validate().is_err());
        // Step-0 level skipped, no division by zero.
        assert_eq!(priors(&cfg, 640, 640).len(), 12800 + 800);
        let mut cfg = PriorConfig::default();
        cfg.min_sizes.pop();
        assert!(cfg.validate().is_err());
        assert!(priors(&PriorConfig::default(), 0, 640).is_empty());
    }

    fn one(
        loc: [f32; 4],
        conf: [f32; 2],
        landms: [f32; 10],
        prior: [f32; 4],
        w: u32,
        h: u32,
    ) -> Vec<Detection> {
        let cfg = PriorConfig::default();
        decode(
            &loc,
            &conf,
            &landms,
            &[prior],
            w,
            h,
            &cfg,
            &DecodeParams::default(),
        )
        .unwrap()
    }

    #[test]
    fn zero_offsets_give_the_prior_box() {
        let out = one(
            [0.0; 4],
            [0.1, 0.9],
            [0.0; 10],
            [0.5, 0.5, 0.1, 0.2],
            200,
            100,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].score, 0.9);
        // Centre (100, 50), size 20 x 20.
        let mut want = vec![90.0, 40.0, 110.0, 60.0];
        want.extend([100.0, 50.0].repeat(5));
        assert_close(&flat(&out[0]), &want, 1e-4);
    }

    #[test]
    fn non_zero_offsets_by_hand() {
        // Prior centre (0.5, 0.5), size (0.2, 0.4), input 100 x 50.
        // cx = 0.5 + 1 * 0.1 * 0.2 = 0.52; cy = 0.5 - 2 * 0.1 * 0.4 = 0.42;
        // w = 0.2 * exp(0.2 * ln2 / 0.2) = 0.4; h = 0.4 * exp(0) = 0.4.
        // Box (0.32, 0.22)-(0.72, 0.62) -> pixels (32, 11)-(72, 31).
        let loc = [1.0, -2.0, std::f32::consts::LN_2 / 0.2, 0.0];
        // Landmarks: x = 0.5 + lx * 0.02, y = 0.5 + ly * 0.04.
        let landms = [1.0, 1.0, -1.0, 0.0, 0.0, 0.0, 0.0, 5.0, 2.0, -1.0];
        let out = one(loc, [0.3, 0.7], landms, [0.5, 0.5, 0.2, 0.4], 100, 50);
        assert_eq!(out.len(), 1);
        let want = [
            32.0, 11.0, 72.0, 31.0, // box
            52.0, 27.0, 48.0, 25.0, 50.0, 25.0, 50.0, 35.0, 54.0, 23.0, // landmarks
        ];
        assert_close(&flat(&out[0]), &want, 1e-4);
    }

    #[test]
    fn logits_are_softmaxed() {
        let cfg = PriorConfig::default();
        let params = DecodeParams {
            scores_are_logits: true,
            ..DecodeParams::default()
        };
        let conf = [0.0, 3.0f32.ln()];
        let out = decode(
            &[0.0; 4],
            &conf,
            &[0.0; 10],
            &[[0.5; 4]],
            10,
            10,
            &cfg,
            &params,
        )
        .unwrap();
        assert_eq!(out.len(), 1);
        assert!((out[0].score - 0.75).abs() < 1e-6);
        // Large logits do not overflow.
        let out = decode(
            &[0.0; 4],
            &[0.0, 1000.0],
            &[0.0; 10],
            &[[0.5; 4]],
            10,
            10,
            &cfg,
            &params,
        )
        .unwrap();
        assert_eq!(out[0].score, 1.0);
    }

    #[test]
    fn score_threshold_is_strict() {
        let cfg = PriorConfig::default();
        // Three far-apart priors with scores 0.02 (dropped), 0.021 and 0.5.
        let pri = [
            [0.1, 0.1, 0.05, 0.05],
            [0.5, 0.5, 0.05, 0.05],
            [0.9, 0.9, 0.05, 0.05],
        ];
        let conf = [0.98, 0.02, 0.979, 0.021, 0.5, 0.5];
        let out = decode(
            &[0.0; 12],
            &conf,
            &[0.0; 30],
            &pri,
            100,
            100,
            &cfg,
            &DecodeParams::default(),
        )
        .unwrap();
        let scores: Vec<f32> = out.iter().map(|d| d.score).collect();
        assert_eq!(scores, vec![0.5, 0.021]);
        assert_close(&out[0].bbox_px, &[87.5, 87.5, 92.5, 92.5], 1e-4);
        assert_close(&out[1].bbox_px, &[47.5, 47.5, 52.5, 52.5], 1e-4);
    }

    #[test]
    fn nms_and_limits_are_applied() {
        let cfg = PriorConfig::default();
        // Priors 0 and 1 share a centre (same box, IoU 1); prior 2 is elsewhere.
        let pri = [
            [0.3, 0.3, 0.2, 0.2],
            [0.3, 0.3, 0.2, 0.2],
            [0.7, 0.7, 0.2, 0.2],
        ];
        let conf = [0.4, 0.6, 0.1, 0.9, 0.3, 0.7];
        let p = DecodeParams::default();
        let out = decode(&[0.0; 12], &conf, &[0.0; 30], &pri, 100, 100, &cfg, &p).unwrap();
        let scores: Vec<f32> = out.iter().map(|d| d.score).collect();
        assert_eq!(scores, vec![0.9, 0.7]);
        assert_close(&out[0].bbox_px, &[20.0, 20.0, 40.0, 40.0], 1e-4);
        // keep_top_k cuts after NMS.
        let p1 = DecodeParams { keep_top_k: 1, ..p };
        assert_eq!(
            decode(&[0.0; 12], &conf, &[0.0; 30], &pri, 100, 100, &cfg, &p1)
                .unwrap()
                .len(),
            1
        );
        // top_k cuts before NMS: only the best (0.9) candidate remains.
        let p2 = DecodeParams { top_k: 1, ..p };
        let out = decode(&[0.0; 12], &conf, &[0.0; 30], &pri, 100, 100, &cfg, &p2).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].score, 0.9);
    }

    #[test]
    fn length_mismatches_are_errors() {
        let cfg = PriorConfig::default();
        let p = DecodeParams::default();
        let pri = [[0.5; 4]; 2];
        let err = decode(&[0.0; 7], &[0.0; 4], &[0.0; 20], &pri, 10, 10, &cfg, &p).unwrap_err();
        assert_eq!(
            err,
            DecodeError::Length {
                tensor: "loc".into(),
                expected: 8,
                got: 7
            }
        );
        assert!(err.to_string().contains("loc"));
        let err = decode(&[0.0; 8], &[0.0; 3], &[0.0; 20], &pri, 10, 10, &cfg, &p).unwrap_err();
        assert_eq!(
            err,
            DecodeError::Length {
                tensor: "conf".into(),
                expected: 4,
                got: 3
            }
        );
        let err = decode(&[0.0; 8], &[0.0; 4], &[0.0; 21], &pri, 10, 10, &cfg, &p).unwrap_err();
        assert_eq!(
            err,
            DecodeError::Length {
                tensor: "landms".into(),
                expected: 20,
                got: 21
            }
        );
        assert!(decode(&[0.0; 8], &[0.0; 4], &[0.0; 20], &pri, 0, 10, &cfg, &p).is_err());
    }

    #[test]
    fn non_finite_candidates_are_dropped() {
        let cfg = PriorConfig::default();
        let p = DecodeParams::default();
        let pri = [[0.5; 4]; 2];
        let loc = [0.0, 0.0, 1e6, 0.0, 0.0, 0.0, 0.0, 0.0];
        let out = decode(
            &loc,
            &[0.0, 0.9, f32::NAN, f32::NAN],
            &[0.0; 20],
            &pri,
            10,
            10,
            &cfg,
            &p,
        )
        .unwrap();
        assert!(out.is_empty());
    }
}
