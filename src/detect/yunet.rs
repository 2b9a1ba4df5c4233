//! YuNet (2023mar, anchor-free) decoding, the demo detector.
//!
//! Consumes, per stride level, the four output tensors of the YuNet ONNX model as row-major
//! `f32` slices: `cls_S` [1,N,1] and `obj_S` [1,N,1] (already through a sigmoid in the model),
//! `bbox_S` [1,N,4] `(dx, dy, dw, dh)` and `kps_S` [1,N,10] `(x, y)` x 5, where N = rows * cols
//! cells of the stride-S grid and cell index = row * cols + col. Produces [`Detection`]s in
//! pixels of the network input, sorted by score, highest first.
//!
//! Per cell: score = sqrt(clamp01(cls) * clamp01(obj)); centre = ((col + dx) * S,
//! (row + dy) * S); size = (exp(dw) * S, exp(dh) * S); landmark k = ((col + x_k) * S,
//! (row + y_k) * S), in the model's order (image-left eye, image-right eye, nose, left and
//! right mouth corners).

use super::nms::select;
use super::{DecodeError, Detection};

/// The strides of the YuNet 2023mar model, finest first.
pub const STRIDES: [u32; 3] = [8, 16, 32];

/// The output names of the YuNet 2023mar ONNX file, in the file's order: all `cls`, then all
/// `obj`, `bbox` and `kps`, each for strides 8, 16, 32. [`output_names`] gives one level's.
pub const OUTPUT_NAMES: [&str; 12] = crate::bundle::manifest::YUNET_OUTPUT_NAMES;

/// The output names `[cls, obj, bbox, kps]` of one stride level, e.g. `cls_8`, `obj_8`,
/// `bbox_8`, `kps_8` for stride 8 (the YuNet export's naming).
pub fn output_names(stride: u32) -> [String; 4] {
    ["cls", "obj", "bbox", "kps"].map(|t| format!("{t}_{stride}"))
}

/// The outputs of one stride level, borrowed from the model's output tensors.
#[derive(Debug, Clone, Copy)]
pub struct Level<'a> {
    /// Stride of this level in input pixels (8, 16 or 32).
    pub stride: u32,
    /// Class score per cell, [N] (0..1).
    pub cls: &'a [f32],
    /// Objectness per cell, [N] (0..1).
    pub obj: &'a [f32],
    /// Box offsets per cell, [N,4]: dx, dy (cells), dw, dh (log of size / stride).
    pub bbox: &'a [f32],
    /// Landmark offsets per cell, [N,10]: x, y (cells) for the five landmarks.
    pub kps: &'a [f32],
}

/// The three levels of the model's twelve outputs, given in [`OUTPUT_NAMES`] order (all `cls`,
/// then `obj`, `bbox`, `kps`, each for strides 8, 16, 32).
pub fn levels_from_outputs(outputs: &[Vec<f32>]) -> Result<Vec<Level<'_>>, DecodeError> {
    if outputs.len() != OUTPUT_NAMES.len() {
        return Err(DecodeError::Config(format!(
            "YuNet has {} outputs, got {}",
            OUTPUT_NAMES.len(),
            outputs.len()
        )));
    }
    Ok(STRIDES
        .iter()
        .enumerate()
        .map(|(i, &stride)| Level {
            stride,
            cls: &outputs[i],
            obj: &outputs[3 + i],
            bbox: &outputs[6 + i],
            kps: &outputs[9 + i],
        })
        .collect())
}

/// Score filtering and NMS settings of the YuNet decoder (OpenCV's defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct YunetParams {
    /// Keep cells whose score is strictly above this (default 0.6).
    pub score_threshold: f32,
    /// NMS IoU threshold, plain box convention (default 0.3).
    pub nms_iou: f32,
    /// Candidates kept, by score, before NMS (default 5000).
    pub top_k: usize,
    /// Detections kept after NMS (default 750).
    pub keep_top_k: usize,
}

impl Default for YunetParams {
    fn default() -> Self {
        YunetParams {
            score_threshold: 0.6,
            nms_iou: 0.3,
            top_k: 5000,
            keep_top_k: 750,
        }
    }
}

/// Grid size `(rows, cols)` of a stride level for a `width` x `height` input:
/// ceil(height / stride) x ceil(width / stride) (exactly H/S x W/S for the multiples of 32 the
/// model is fed). `None` for a zero stride.
pub fn grid(stride: u32, width: u32, height: u32) -> Option<(usize, usize)> {
    if stride == 0 {
        return None;
    }
    Some((
        height.div_ceil(stride) as usize,
        width.div_ceil(stride) as usize,
    ))
}

/// Checks that `data` holds `per_cell` values for each of `n` cells.
fn check_len(
    tensor: &str,
    stride: u32,
    data: &[f32],
    n: usize,
    per_cell: usize,
) -> Result<(), DecodeError> {
    let expected = n.saturating_mul(per_cell);
    if data.len() == expected {
        Ok(())
    } else {
        Err(DecodeError::Length {
            tensor: format!("{tensor}_{stride}"),
            expected,
            got: data.len(),
        })
    }
}

/// Decodes the levels of a YuNet output into detections in pixels of the `width` x `height`
/// network input.
///
/// Cells with score > `score_threshold` become candidates (levels in the given order, cells
/// by index); they are sorted by score (stable), cut to `top_k`, passed through NMS (plain
/// convention, no "+1") and cut to `keep_top_k`. Boxes are `x1 = cx - w/2, x2 = x1 + w`
/// (OpenCV's x, y, w, h), not clipped to the image; candidates with non-finite coordinates are
/// dropped.
///
/// Errors when a stride or the input size is zero, or a tensor's length does not match its
/// grid.
pub fn decode(
    levels: &[Level],
    width: u32,
    height: u32,
    params: &YunetParams,
) -> Result<Vec<Detection>, DecodeError> {
    if width == 0 || height == 0 {
        return Err(DecodeError::Config(format!(
            "YuNet input size {width}x{height}"
        )));
    }
    let mut candidates = Vec::new();
    for level in levels {
        let s = level.stride;
        let (rows, cols) = grid(s, width, height)
            .ok_or_else(|| DecodeError::Config("YuNet level with stride 0".into()))?;
        let n = rows.saturating_mul(cols);
        check_len("cls", s, level.cls, n, 1)?;
        check_len("obj", s, level.obj, n, 1)?;
        check_len("bbox", s, level.bbox, n, 4)?;
        check_len("kps", s, level.kps, n, 10)?;
        let sf = s as f32;
        let cells = level
            .cls
            .iter()
            .zip(level.obj)
            .zip(level.bbox.chunks_exact(4))
            .zip(level.kps.chunks_exact(10));
        for (idx, (((&cls, &obj), b), k)) in cells.enumerate() {
            let score = (cls.clamp(0.0, 1.0) * obj.clamp(0.0, 1.0)).sqrt();
            if score.is_nan() || score <= params.score_threshold {
                continue;
            }
            let (row, col) = ((idx / cols) as f32, (idx % cols) as f32);
            let cx = (col + b[0]) * sf;
            let cy = (row + b[1]) * sf;
            let w = b[2].exp() * sf;
            let h = b[3].exp() * sf;
            let (x1, y1) = (cx - w / 2.0, cy - h / 2.0);
            let bbox_px = [x1, y1, x1 + w, y1 + h];
            let mut landmarks_px = [[0.0f32; 2]; 5];
            for (out, o) in landmarks_px.iter_mut().zip(k.chunks_exact(2)) {
                *out = [(col + o[0]) * sf, (row + o[1]) * sf];
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
    }
    Ok(select(
        candidates,
        params.top_k,
        params.nms_iou,
        false,
        params.keep_top_k,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::detect::test_util::{assert_close, flat};

    /// Owned tensors of one level with `n` cells, all zero scores.
    struct Owned {
        stride: u32,
        cls: Vec<f32>,
        obj: Vec<f32>,
        bbox: Vec<f32>,
        kps: Vec<f32>,
    }

    impl Owned {
        fn new(stride: u32, n: usize) -> Self {
            Owned {
                stride,
                cls: vec![0.0; n],
                obj: vec![0.0; n],
                bbox: vec![0.0; 4 * n],
                kps: vec![0.0; 10 * n],
            }
        }
        fn set(&mut self, idx: usize, cls: f32, obj: f32, bbox: [f32; 4], kps: [f32; 10]) {
            self.cls[idx] = cls;
            self.obj[idx] = obj;
            self.bbox[idx * 4..idx * 4 + 4].copy_from_slice(&bbox);
            self.kps[idx * 10..idx * 10 + 10].copy_from_slice(&kps);
        }
        fn level(&self) -> Level<'_> {
            Level {
                stride: self.stride,
                cls: &self.cls,
                obj: &self.obj,
                bbox: &self.bbox,
                kps: &self.kps,
            }
        }
    }

    #[test]
    fn names_match_the_model_file() {
        assert_eq!(output_names(16), ["cls_16", "obj_16", "bbox_16", "kps_16"]);
        for (i, s) in STRIDES.iter().enumerate() {
            let names = output_names(*s);
            for (t, name) in names.iter().enumerate() {
                assert_eq!(OUTPUT_NAMES[t * 3 + i], name);
            }
        }
    }

    #[test]
    fn grid_sizes() {
        assert_eq!(grid(8, 640, 640), Some((80, 80)));
        assert_eq!(grid(32, 640, 480), Some((15, 20)));
        assert_eq!(grid(32, 100, 64), Some((2, 4)));
        assert_eq!(grid(0, 640, 640), None);
    }

    #[test]
    fn one_cell_by_hand() {
        // 64 x 64 input, stride 32: 2 x 2 grid. Cell 3 = row 1, column 1.
        let mut l = Owned::new(32, 4);
        let kps = [0.1, 0.2, 0.9, 0.2, 0.5, 0.5, 0.25, 0.75, 0.75, 0.75];
        l.set(3, 0.81, 1.0, [0.5, 0.25, std::f32::consts::LN_2, 0.0], kps);
        let out = decode(&[l.level()], 64, 64, &YunetParams::default()).unwrap();
        assert_eq!(out.len(), 1);
        assert!((out[0].score - 0.9).abs() < 1e-6);
        // Centre ((1 + 0.5) * 32, (1 + 0.25) * 32) = (48, 40); size (64, 32).
        let want = [
            16.0, 24.0, 80.0, 56.0, // box
            35.2, 38.4, 60.8, 38.4, 48.0, 48.0, 40.0, 56.0, 56.0, 56.0, // landmarks
        ];
        assert_close(&flat(&out[0]), &want, 1e-4);
    }

    #[test]
    fn scores_are_clamped_and_thresholded() {
        // 3 x 1 grid at stride 8 (24 wide, 8 high), cells far enough apart for NMS.
        let mut l = Owned::new(8, 3);
        l.set(0, 1.5, -0.1, [0.0; 4], [0.0; 10]); // clamps to 1 * 0 -> 0
        l.set(1, 1.2, 0.64, [0.0; 4], [0.0; 10]); // clamps to sqrt(1 * 0.64) = 0.8
        l.set(2, 0.25, 1.0, [0.0; 4], [0.0; 10]); // 0.5: below 0.6
        let out = decode(&[l.level()], 24, 8, &YunetParams::default()).unwrap();
        assert_eq!(out.len(), 1);
        assert!((out[0].score - 0.8).abs() < 1e-6);
        assert_close(&out[0].bbox_px, &[4.0, -4.0, 12.0, 4.0], 1e-5);
        // The threshold is strict: 0.5 is dropped at 0.5 and kept just below it.
        let at = YunetParams {
            score_threshold: 0.5,
            ..YunetParams::default()
        };
        assert_eq!(decode(&[l.level()], 24, 8, &at).unwrap().len(), 1);
        let below = YunetParams {
            score_threshold: 0.49,
            ..YunetParams::default()
        };
        let out = decode(&[l.level()], 24, 8, &below).unwrap();
        assert_eq!(out.len(), 2);
        assert_close(&out[1].bbox_px, &[12.0, -4.0, 20.0, 4.0], 1e-5);
    }

    #[test]
    fn nms_across_levels_and_order() {
        // 32 x 32 input: stride 16 is 2 x 2, stride 32 is 1 x 1.
        let mut fine = Owned::new(16, 4);
        // Cell 0 (row 0, col 0): centre (16, 16) with size 32 -> box (0, 0)-(32, 32).
        let ln2 = std::f32::consts::LN_2;
        fine.set(0, 0.81, 0.81, [1.0, 1.0, ln2, ln2], [0.0; 10]);
        // Cell 3 (row 1, col 1): centre (32, 32) with size 16 -> box (24, 24)-(40, 40);
        // IoU with the first 64 / 1216.
        fine.set(3, 0.49, 1.0, [1.0, 1.0, 0.0, 0.0], [0.0; 10]);
        let mut coarse = Owned::new(32, 1);
        // Centre (16, 16), size 32: the same box as the fine cell 0, higher score.
        coarse.set(0, 1.0, 0.9025, [0.5, 0.5, 0.0, 0.0], [0.0; 10]);
        let params = YunetParams::default();
        let out = decode(&[fine.level(), coarse.level()], 32, 32, &params).unwrap();
        let scores: Vec<f32> = out.iter().map(|d| d.score).collect();
        assert_close(&scores, &[0.95, 0.7], 1e-6);
        assert_close(&out[0].bbox_px, &[0.0, 0.0, 32.0, 32.0], 1e-4);
        assert_close(&out[1].bbox_px, &[24.0, 24.0, 40.0, 40.0], 1e-4);
        // Without NMS suppression (IoU threshold 1) all three come back, sorted.
        let all = YunetParams {
            nms_iou: 1.0,
            ..params
        };
        let out = decode(&[fine.level(), coarse.level()], 32, 32, &all).unwrap();
        let scores: Vec<f32> = out.iter().map(|d| d.score).collect();
        assert_close(&scores, &[0.95, 0.81, 0.7], 1e-6);
        let one = YunetParams {
            keep_top_k: 1,
            ..all
        };
        assert_eq!(
            decode(&[fine.level(), coarse.level()], 32, 32, &one)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn bad_lengths_and_strides_are_errors() {
        let l = Owned::new(32, 4);
        // 64 x 96 needs 2 x 3 = 6 cells.
        let err = decode(&[l.level()], 96, 64, &YunetParams::default()).unwrap_err();
        assert_eq!(
            err,
            DecodeError::Length {
                tensor: "cls_32".into(),
                expected: 6,
                got: 4
            }
        );
        let mut l = Owned::new(32, 4);
        l.kps.pop();
        let err = decode(&[l.level()], 64, 64, &YunetParams::default()).unwrap_err();
        assert_eq!(
            err,
            DecodeError::Length {
                tensor: "kps_32".into(),
                expected: 40,
                got: 39
            }
        );
        let l = Owned::new(0, 4);
        assert!(matches!(
            decode(&[l.level()], 64, 64, &YunetParams::default()),
            Err(DecodeError::Config(_))
        ));
        let l = Owned::new(32, 4);
        assert!(decode(&[l.level()], 0, 64, &YunetParams::default()).is_err());
        assert!(decode(&[], 64, 64, &YunetParams::default())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn overflowing_sizes_are_dropped() {
        let mut l = Owned::new(32, 1);
        l.set(0, 1.0, 1.0, [0.0, 0.0, 200.0, 0.0], [0.0; 10]);
        assert!(decode(&[l.level()], 32, 32, &YunetParams::default())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn levels_come_from_twelve_outputs_in_file_order() {
        let outputs: Vec<Vec<f32>> = (0..12).map(|i| vec![i as f32]).collect();
        let levels = levels_from_outputs(&outputs).unwrap();
        assert_eq!(
            levels.iter().map(|l| l.stride).collect::<Vec<_>>(),
            vec![8, 16, 32]
        );
        assert_eq!(
            (
                levels[1].cls[0],
                levels[1].obj[0],
                levels[1].bbox[0],
                levels[1].kps[0]
            ),
            (1.0, 4.0, 7.0, 10.0)
        );
        assert!(matches!(
            levels_from_outputs(&outputs[..11]),
            Err(DecodeError::Config(_))
        ));
    }
}
