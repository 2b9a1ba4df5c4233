//! Identity verification: are two photos of the same person?
//!
//! Consumes a pairs file (`image_a,image_b,same`, header required; `same` is 1/0 or
//! true/false) and one [`Embeddings`] per photo; produces a [`VerifyReport`]: for each pair
//! the similarity `1 - mean key-paired cosine distance` (the distance `predict` ranks by),
//! the accuracy at the best threshold and the ROC AUC. This is how the demo bundle (a face
//! verification model, not a syndrome model) can be evaluated honestly on real photos.

use std::path::Path;

use serde::Serialize;

use crate::embed::Embeddings;
use crate::rank::cosine_distance;
use crate::{Error, Result};

/// One pair of the pairs file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// First photo, as written (relative to the photo folder).
    pub a: String,
    /// Second photo.
    pub b: String,
    /// Whether both show the same person.
    pub same: bool,
    /// Line in the file.
    pub line: u64,
}

/// Reads a pairs file. Errors are [`Error::Gallery`] (exit code 6) with file and line.
pub fn read_pairs(path: &Path) -> Result<Vec<Pair>> {
    let e = |line: u64, msg: String| Error::gallery(path, format!("line {line}: {msg}"));
    let file = crate::fsio::open_capped(path, crate::fsio::Cap::TABLE)
        .map_err(|x| Error::gallery(path, x.to_string()))?;
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(file);
    let headers = rdr
        .headers()
        .map_err(|x| e(1, format!("cannot read the header: {x}")))?
        .clone();
    let col = |n: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(n));
    let (Some(ca), Some(cb), Some(cs)) = (col("image_a"), col("image_b"), col("same")) else {
        return Err(e(
            1,
            "the header must name the columns image_a,image_b,same".into(),
        ));
    };
    let mut pairs = Vec::new();
    for record in rdr.records() {
        let record = record.map_err(|x| {
            e(
                x.position().map(|p| p.line()).unwrap_or(0),
                format!("malformed row: {x}"),
            )
        })?;
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        let get = |i: usize| record.get(i).unwrap_or("").to_string();
        let (a, b, s) = (get(ca), get(cb), get(cs));
        if a.is_empty() || b.is_empty() {
            return Err(e(line, "empty image_a or image_b".into()));
        }
        let same = match s.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" => true,
            "0" | "false" | "no" => false,
            _ => {
                return Err(e(
                    line,
                    format!("same must be 1/0 or true/false, not '{s}'"),
                ))
            }
        };
        pairs.push(Pair { a, b, same, line });
    }
    if !pairs.iter().any(|p| p.same) || pairs.iter().all(|p| p.same) {
        return Err(Error::gallery(
            path,
            "needs at least one same-person pair and one different-person pair",
        ));
    }
    Ok(pairs)
}

/// `1 - mean over the keys of a of the cosine distance to b's vector of the same key`.
/// `None` when `b` lacks a key of `a` or `a` is empty.
pub fn similarity(a: &Embeddings, b: &Embeddings) -> Option<f64> {
    if a.entries.is_empty() {
        return None;
    }
    let mut sum = 0.0f64;
    for (k, v) in &a.entries {
        sum += f64::from(cosine_distance(v, b.get(k)?));
    }
    Some(1.0 - sum / a.entries.len() as f64)
}

/// One scored pair.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoredPair {
    /// First photo.
    pub image_a: String,
    /// Second photo.
    pub image_b: String,
    /// Ground truth.
    pub same: bool,
    /// `1 - mean cosine distance` (higher is more alike), in -1..=1.
    pub similarity: f64,
}

/// The verification result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifyReport {
    /// Pairs scored.
    pub pairs: usize,
    /// Same-person pairs.
    pub positives: usize,
    /// Different-person pairs.
    pub negatives: usize,
    /// Area under the ROC curve (ties count one half), 0..=1.
    pub roc_auc: f64,
    /// Similarity threshold with the best accuracy (pairs at or above it are called
    /// "same"); the midpoint between neighbouring scores.
    pub best_threshold: f64,
    /// Accuracy at that threshold, in percent.
    pub accuracy_at_best_threshold: f64,
    /// Every pair with its score, in file order.
    pub scores: Vec<ScoredPair>,
}

/// ROC AUC by the rank-sum (Mann-Whitney) formula with average ranks for ties; `None`
/// without positives or negatives.
pub fn roc_auc(scored: &[(bool, f64)]) -> Option<f64> {
    let pos = scored.iter().filter(|s| s.0).count();
    let neg = scored.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scored.len()).collect();
    order.sort_by(|&a, &b| scored[a].1.total_cmp(&scored[b].1));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scored[order[j + 1]].1 == scored[order[i]].1 {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += (i..=j).filter(|&t| scored[order[t]].0).count() as f64 * avg;
        i = j + 1;
    }
    let p = pos as f64;
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * neg as f64))
}

/// The threshold (midpoint between neighbouring distinct scores, or just outside the range)
/// that maximises accuracy when pairs scoring at or above it are called "same", with that
/// accuracy in percent. Ties between thresholds keep the highest. `None` when empty.
pub fn best_threshold(scored: &[(bool, f64)]) -> Option<(f64, f64)> {
    if scored.is_empty() {
        return None;
    }
    let mut values: Vec<f64> = scored.iter().map(|s| s.1).collect();
    values.sort_by(|a, b| b.total_cmp(a));
    values.dedup();
    let mut candidates = vec![values[0] + 1e-6];
    candidates.extend(values.windows(2).map(|w| (w[0] + w[1]) / 2.0));
    candidates.push(values[values.len() - 1] - 1e-6);
    let mut best: Option<(f64, f64)> = None;
    for t in candidates {
        let correct = scored.iter().filter(|(same, s)| (*s >= t) == *same).count();
        let acc = 100.0 * correct as f64 / scored.len() as f64;
        if best.is_none_or(|(_, b)| acc > b) {
            best = Some((t, acc));
        }
    }
    best
}

/// Scores every pair. `embeddings(name)` gives the embeddings of a photo named in the pairs
/// file (the caller decodes and encodes it). Errors: those of `embeddings`, and an
/// [`Error::Gallery`] for two photos with different keys.
pub fn verify(
    pairs_path: &Path,
    pairs: &[Pair],
    embeddings: &dyn Fn(&str) -> Result<Embeddings>,
) -> Result<VerifyReport> {
    let mut scores = Vec::new();
    for p in pairs {
        let (a, b) = (embeddings(&p.a)?, embeddings(&p.b)?);
        let sim = similarity(&a, &b).ok_or_else(|| {
            Error::gallery(
                pairs_path,
                format!(
                    "line {}: {} and {} have different embedding keys",
                    p.line, p.a, p.b
                ),
            )
        })?;
        scores.push(ScoredPair {
            image_a: p.a.clone(),
            image_b: p.b.clone(),
            same: p.same,
            similarity: sim,
        });
    }
    let scored: Vec<(bool, f64)> = scores.iter().map(|s| (s.same, s.similarity)).collect();
    let none = || Error::gallery(pairs_path, "needs same-person and different-person pairs");
    let auc = roc_auc(&scored).ok_or_else(none)?;
    let (t, acc) = best_threshold(&scored).ok_or_else(none)?;
    let positives = scored.iter().filter(|s| s.0).count();
    Ok(VerifyReport {
        pairs: scored.len(),
        positives,
        negatives: scored.len() - positives,
        roc_auc: auc,
        best_threshold: t,
        accuracy_at_best_threshold: acc,
        scores,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_and_threshold_by_hand() {
        // positives 0.9, 0.4; negatives 0.5, 0.1: 3 of 4 pos>neg pairs -> AUC 0.75
        let s = [(true, 0.9), (false, 0.5), (true, 0.4), (false, 0.1)];
        assert!((roc_auc(&s).unwrap() - 0.75).abs() < 1e-12);
        let (t, acc) = best_threshold(&s).unwrap();
        // t = 0.7 -> 3/4 correct (0.9 same, 0.5/0.1 different; 0.4 missed)
        assert!((t - 0.7).abs() < 1e-12, "{t}");
        assert_eq!(acc, 75.0);
        // perfectly separated
        let s = [(true, 0.8), (true, 0.6), (false, 0.2)];
        assert_eq!(roc_auc(&s), Some(1.0));
        assert_eq!(best_threshold(&s).unwrap(), (0.4, 100.0));
        // ties count half
        let s = [(true, 0.5), (false, 0.5)];
        assert_eq!(roc_auc(&s), Some(0.5));
        assert_eq!(roc_auc(&[(true, 1.0)]), None);
    }

    #[test]
    fn similarity_pairs_by_key() {
        use crate::embed::Key;
        let k = |m: &str| Key {
            model: m.into(),
            flip: false,
            gray: false,
        };
        let a = Embeddings {
            entries: vec![(k("x"), vec![1.0, 0.0]), (k("y"), vec![0.0, 1.0])],
        };
        let b = Embeddings {
            entries: vec![(k("y"), vec![0.0, 2.0]), (k("x"), vec![0.0, 1.0])],
        };
        // x: distance 1, y: distance 0 -> similarity 0.5
        assert!((similarity(&a, &b).unwrap() - 0.5).abs() < 1e-7);
        let c = Embeddings {
            entries: vec![(k("x"), vec![1.0, 0.0])],
        };
        assert_eq!(similarity(&a, &c), None);
    }
}
