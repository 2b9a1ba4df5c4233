//! The paper's metric (GestaltMatcher-Arc, Eq. 1): top-k mean accuracy.
//!
//! Consumes, per test image, its true syndrome and the 1-based position of that syndrome in
//! the image's ranked syndrome list (`None` when the gallery lacks it); produces, for each k,
//! the mean over the syndromes present in the test set of the fraction of their test images
//! whose true syndrome is within the first k, in percent. Macro averaging: a syndrome with
//! one test image weighs as much as one with fifty.

use std::collections::BTreeMap;

/// The k values the paper reports.
pub const PAPER_KS: [usize; 4] = [1, 5, 10, 30];

/// Longest top-k curve computed (k = 1..=CURVE_MAX_K).
pub const CURVE_MAX_K: usize = 30;

/// One ranked test image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// True syndrome id.
    pub truth: String,
    /// 1-based position of the true syndrome in the ranked list; `None` if not listed.
    pub position: Option<usize>,
}

/// Top-k mean accuracy in percent (0..=100), or `None` for an empty test set.
pub fn top_k_mean_accuracy(outcomes: &[Outcome], k: usize) -> Option<f64> {
    let mut per: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for o in outcomes {
        let e = per.entry(o.truth.as_str()).or_default();
        e.1 += 1;
        if o.position.is_some_and(|p| p >= 1 && p <= k) {
            e.0 += 1;
        }
    }
    if per.is_empty() {
        return None;
    }
    let sum: f64 = per.values().map(|&(hit, n)| hit as f64 / n as f64).sum();
    Some(100.0 * sum / per.len() as f64)
}

/// Top-k mean accuracy for k = 1..=`max_k` (index 0 is k = 1); empty for no outcomes.
pub fn curve(outcomes: &[Outcome], max_k: usize) -> Vec<f64> {
    (1..=max_k)
        .map_while(|k| top_k_mean_accuracy(outcomes, k))
        .collect()
}

/// Number of distinct true syndromes.
pub fn syndromes(outcomes: &[Outcome]) -> usize {
    outcomes
        .iter()
        .map(|o| o.truth.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(truth: &str, position: Option<usize>) -> Outcome {
        Outcome {
            truth: truth.into(),
            position,
        }
    }

    #[test]
    fn macro_average_by_hand() {
        // A: 2 images (top-1 hit, rank 3), B: one image at rank 6, C: not in the gallery.
        let out = [
            o("A", Some(1)),
            o("A", Some(3)),
            o("B", Some(6)),
            o("C", None),
        ];
        // k=1: A 1/2, B 0, C 0 -> 0.5/3
        assert!((top_k_mean_accuracy(&out, 1).unwrap() - 100.0 * 0.5 / 3.0).abs() < 1e-12);
        // k=5: A 2/2, B 0, C 0 -> 1/3
        assert!((top_k_mean_accuracy(&out, 5).unwrap() - 100.0 / 3.0).abs() < 1e-12);
        // k=10: A 1, B 1, C 0 -> 2/3
        assert!((top_k_mean_accuracy(&out, 10).unwrap() - 200.0 / 3.0).abs() < 1e-12);
        assert_eq!(syndromes(&out), 3);
        let c = curve(&out, 30);
        assert_eq!(c.len(), 30);
        assert!(c.windows(2).all(|w| w[0] <= w[1]));
        assert!((c[29] - 200.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn single_image_syndrome_weighs_fully() {
        let mut out: Vec<Outcome> = (0..9).map(|_| o("big", Some(1))).collect();
        out.push(o("one", Some(2)));
        // micro accuracy would be 90 %, macro top-1 is (1 + 0) / 2
        assert_eq!(top_k_mean_accuracy(&out, 1), Some(50.0));
        assert_eq!(top_k_mean_accuracy(&out, 2), Some(100.0));
    }

    #[test]
    fn empty_is_none() {
        assert_eq!(top_k_mean_accuracy(&[], 1), None);
        assert!(curve(&[], 30).is_empty());
    }
}
