//! Greedy non-maximum suppression, shared by the detector decoders.
//!
//! Consumes candidate [`Detection`]s (boxes in pixels, any order) and produces the survivors
//! sorted by score, highest first. Two box conventions exist: the reference RetinaFace code
//! treats coordinates as inclusive pixel indices (`+1` on widths and heights), OpenCV's YuNet
//! post-processing uses plain continuous boxes.

use std::cmp::Ordering;

use super::Detection;

/// Orders two scores highest first; NaN sorts after every number, equal scores compare equal
/// (so a stable sort keeps their input order).
pub fn cmp_score_desc(a: f32, b: f32) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (false, false) => b.partial_cmp(&a).unwrap_or(Ordering::Equal),
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
    }
}

/// Sorts detections by score, highest first, in place. Stable: equal scores keep their order.
pub fn sort_by_score_desc(dets: &mut [Detection]) {
    dets.sort_by(|a, b| cmp_score_desc(a.score, b.score));
}

/// Width or height of the span `lo..hi` under the chosen convention, never negative.
fn extent(lo: f32, hi: f32, plus_one: bool) -> f32 {
    let e = if plus_one { hi - lo + 1.0 } else { hi - lo };
    e.max(0.0)
}

/// Intersection over union of two boxes `[x1, y1, x2, y2]` in pixels.
///
/// With `plus_one` the coordinates are inclusive pixel indices, as in the reference
/// RetinaFace code: area = (x2 - x1 + 1) * (y2 - y1 + 1) and the intersection width is
/// max(0, xx2 - xx1 + 1). Without it boxes are continuous: area = (x2 - x1) * (y2 - y1).
/// Returns a value in `0..=1`; 0 when the union is empty or not a number.
pub fn iou(a: &[f32; 4], b: &[f32; 4], plus_one: bool) -> f32 {
    let area_a = extent(a[0], a[2], plus_one) * extent(a[1], a[3], plus_one);
    let area_b = extent(b[0], b[2], plus_one) * extent(b[1], b[3], plus_one);
    let iw = extent(a[0].max(b[0]), a[2].min(b[2]), plus_one);
    let ih = extent(a[1].max(b[1]), a[3].min(b[3]), plus_one);
    let inter = iw * ih;
    let union = area_a + area_b - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// Greedy NMS: visits candidates by score, highest first (stable, equal scores keep input
/// order), keeps a candidate unless a kept one overlaps it with IoU strictly above
/// `iou_threshold`, and stops after `keep` survivors. Returns the survivors sorted by score,
/// highest first. `plus_one` selects the box convention (see [`iou`]).
pub fn nms(dets: &[Detection], iou_threshold: f32, plus_one: bool, keep: usize) -> Vec<Detection> {
    let mut order: Vec<usize> = (0..dets.len()).collect();
    order.sort_by(|&i, &j| cmp_score_desc(dets[i].score, dets[j].score));
    let mut suppressed = vec![false; dets.len()];
    let mut kept = Vec::new();
    for (pos, &i) in order.iter().enumerate() {
        if kept.len() >= keep {
            break;
        }
        if suppressed[i] {
            continue;
        }
        let best = dets[i];
        kept.push(best);
        for &j in &order[pos + 1..] {
            if !suppressed[j] && iou(&best.bbox_px, &dets[j].bbox_px, plus_one) > iou_threshold {
                suppressed[j] = true;
            }
        }
    }
    kept
}

/// The decoders' common tail: best `top_k` candidates by score, then NMS keeping at most
/// `keep` detections, best first.
pub fn select(
    mut candidates: Vec<Detection>,
    top_k: usize,
    iou_threshold: f32,
    plus_one: bool,
    keep: usize,
) -> Vec<Detection> {
    sort_by_score_desc(&mut candidates);
    candidates.truncate(top_k);
    nms(&candidates, iou_threshold, plus_one, keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(bbox_px: [f32; 4], score: f32) -> Detection {
        Detection {
            bbox_px,
            score,
            landmarks_px: [[0.0; 2]; 5],
        }
    }

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn iou_plain_by_hand() {
        // 10x10 boxes shifted by 5 in x: inter 5*10 = 50, union 100 + 100 - 50 = 150.
        let a = [0.0, 0.0, 10.0, 10.0];
        let b = [5.0, 0.0, 15.0, 10.0];
        assert!(close(iou(&a, &b, false), 50.0 / 150.0));
        assert!(close(iou(&a, &a, false), 1.0));
        // Touching edges do not overlap in the plain convention.
        assert_eq!(iou(&a, &[10.0, 0.0, 20.0, 10.0], false), 0.0);
        // Disjoint.
        assert_eq!(iou(&a, &[30.0, 30.0, 40.0, 40.0], false), 0.0);
    }

    #[test]
    fn iou_plus_one_by_hand() {
        // Inclusive pixels: each box 11x11 = 121; intersection x 5..=10 (6 wide) by 11 = 66;
        // union 121 + 121 - 66 = 176.
        let a = [0.0, 0.0, 10.0, 10.0];
        let b = [5.0, 0.0, 15.0, 10.0];
        assert!(close(iou(&a, &b, true), 66.0 / 176.0));
        // Touching at x = 10 shares one pixel column: 1 * 11 = 11, union 121 + 121 - 11.
        let c = [10.0, 0.0, 20.0, 10.0];
        assert!(close(iou(&a, &c, true), 11.0 / 231.0));
        // A zero-size box is one pixel under "+1".
        let p = [3.0, 3.0, 3.0, 3.0];
        assert!(close(iou(&a, &p, true), 1.0 / 121.0));
        assert_eq!(iou(&a, &p, false), 0.0);
    }

    #[test]
    fn iou_degenerate_is_zero_not_nan() {
        let p = [1.0, 1.0, 1.0, 1.0];
        assert_eq!(iou(&p, &p, false), 0.0);
        let inverted = [10.0, 10.0, 0.0, 0.0];
        assert_eq!(iou(&inverted, &inverted, false), 0.0);
        assert_eq!(iou(&[f32::NAN; 4], &[0.0, 0.0, 1.0, 1.0], false), 0.0);
    }

    #[test]
    fn nms_suppresses_overlaps_above_threshold() {
        let dets = [
            det([0.0, 0.0, 10.0, 10.0], 0.8),
            det([1.0, 0.0, 11.0, 10.0], 0.9), // IoU with the first: 90 / 110 = 0.818
            det([50.0, 50.0, 60.0, 60.0], 0.7), // far away
            det([5.0, 0.0, 15.0, 10.0], 0.6), // IoU with #2: 60 / 140 = 0.43; with #1: 0.33
        ];
        let out = nms(&dets, 0.5, false, usize::MAX);
        let scores: Vec<f32> = out.iter().map(|d| d.score).collect();
        assert_eq!(scores, vec![0.9, 0.7, 0.6]);
        // A lower threshold also removes the last one (0.43 > 0.4).
        let out = nms(&dets, 0.4, false, usize::MAX);
        let scores: Vec<f32> = out.iter().map(|d| d.score).collect();
        assert_eq!(scores, vec![0.9, 0.7]);
    }

    #[test]
    fn nms_threshold_is_strict_and_suppressed_boxes_do_not_suppress() {
        // IoU of a and b is exactly 0.5 (plain): inter 100, union 200 -> kept at 0.5.
        let a = det([0.0, 0.0, 10.0, 15.0], 0.9);
        let b = det([0.0, 5.0, 10.0, 20.0], 0.8);
        assert_eq!(iou(&a.bbox_px, &b.bbox_px, false), 0.5);
        assert_eq!(nms(&[a, b], 0.5, false, usize::MAX).len(), 2);
        assert_eq!(nms(&[a, b], 0.49, false, usize::MAX).len(), 1);
        // Chain: b overlaps a (suppressed), c overlaps only b -> c survives.
        let a = det([0.0, 0.0, 10.0, 10.0], 0.9);
        let b = det([4.0, 0.0, 14.0, 10.0], 0.8);
        let c = det([9.0, 0.0, 19.0, 10.0], 0.7);
        let out = nms(&[c, b, a], 0.2, false, usize::MAX);
        assert_eq!(out, vec![a, c]);
    }

    #[test]
    fn nms_plus_one_changes_the_decision() {
        // Plain: touching boxes have IoU 0. "+1": 11 / 231 = 0.0476 > 0.04.
        let a = det([0.0, 0.0, 10.0, 10.0], 0.9);
        let b = det([10.0, 0.0, 20.0, 10.0], 0.8);
        assert_eq!(nms(&[a, b], 0.04, false, usize::MAX).len(), 2);
        assert_eq!(nms(&[a, b], 0.04, true, usize::MAX), vec![a]);
    }

    #[test]
    fn nms_ties_keep_input_order_and_keep_caps_output() {
        let dets: Vec<Detection> = (0..5)
            .map(|i| det([i as f32 * 100.0, 0.0, i as f32 * 100.0 + 10.0, 10.0], 0.5))
            .collect();
        let out = nms(&dets, 0.3, true, usize::MAX);
        assert_eq!(out, dets);
        let out = nms(&dets, 0.3, true, 2);
        assert_eq!(out, dets[..2].to_vec());
        assert!(nms(&dets, 0.3, true, 0).is_empty());
        assert!(nms(&[], 0.3, true, 10).is_empty());
    }

    #[test]
    fn nan_scores_sort_last() {
        let mut dets = [
            det([0.0; 4], f32::NAN),
            det([0.0; 4], 0.1),
            det([0.0; 4], 0.7),
        ];
        sort_by_score_desc(&mut dets);
        assert_eq!(dets[0].score, 0.7);
        assert_eq!(dets[1].score, 0.1);
        assert!(dets[2].score.is_nan());
    }
}
