//! The paper's evaluation protocol over image lists: frequent, rare (per split, then
//! averaged) and unified (frequent gallery plus rare split s).
//!
//! Consumes gallery image lists, a test image list, the syndromes table and one
//! [`Embeddings`] per listed image; produces an [`EvalReport`]. Each test image is ranked
//! with [`crate::rank::rank`] against an in-memory [`Gallery`] built exactly as
//! `gallery build` builds one (same storage, same key pairing), so evaluation and `predict`
//! rank identically: mean key-paired cosine distance, nearest image per syndrome, ties
//! broken by gallery order (the order of the gallery lists).
//!
//! Splits: when any list has a `split` column, the splits are the split values present;
//! split s uses the gallery rows with split s or no split, and the test rows likewise (the
//! reference's `fillna(split)`), so passing the frequent gallery list next to the rare one
//! gives the unified setting. Errors ([`Error::Gallery`], exit code 6) name the list file
//! and line: labels that are not in the syndromes table, an image in both the gallery and
//! the test set, a split without gallery or test images.
//!
//! Patient-grouped mode ([`EvalOptions::group_by_subject`]): the test images of a subject
//! are fused into one query and count as one outcome; the metric is otherwise unchanged.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::Serialize;

use super::metric::{self, Outcome, CURVE_MAX_K, PAPER_KS};
use crate::embed::Embeddings;
use crate::gallery::{Case, Gallery, KeySpec, Storage};
use crate::gmdb::reference::{ImageList, ImageRow, SyndromeTable};
use crate::rank::{self, RankOptions};
use crate::{Error, Result};

/// Results of one split (or of the whole run when there are no splits).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitResult {
    /// Split number; `None` without splits.
    pub split: Option<u32>,
    /// Gallery images.
    pub gallery_images: usize,
    /// Syndromes in the gallery.
    pub gallery_syndromes: usize,
    /// Test images.
    pub test_images: usize,
    /// Ranked queries: the test images, or with patient grouping the test subjects.
    pub test_queries: usize,
    /// Syndromes in the test set.
    pub test_syndromes: usize,
    /// Test syndromes with no gallery image (their images can never be a hit).
    pub test_syndromes_not_in_gallery: usize,
    /// Top-k mean accuracy in percent for k = 1, 5, 10, 30.
    pub top_k: [f64; 4],
    /// Top-k mean accuracy in percent for k = 1..=30.
    pub curve: Vec<f64>,
}

/// The evaluation: per split, and the mean over splits.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    /// One entry per split (one entry without splits), in split order.
    pub splits: Vec<SplitResult>,
    /// Mean over splits of the top-k mean accuracy, percent, for k = 1, 5, 10, 30.
    pub top_k: [f64; 4],
    /// Mean over splits of the curves, k = 1..=30.
    pub curve: Vec<f64>,
    /// Mean gallery size over splits (the reference's table reports this).
    pub gallery_images: f64,
    /// Mean test-set size over splits.
    pub test_images: f64,
}

/// How to evaluate.
#[derive(Debug, Clone, Copy)]
pub struct EvalOptions {
    /// Storage of the in-memory galleries (as `gallery build --storage`).
    pub storage: Storage,
    /// Patient-grouped mode: the test images of one subject are fused ([`crate::fuse`]) into
    /// one query, and each subject is one outcome (the authors' multi-image evaluation).
    pub group_by_subject: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            storage: Storage::F16,
            group_by_subject: false,
        }
    }
}

fn err(list: &ImageList, line: u64, msg: impl std::fmt::Display) -> Error {
    Error::gallery(&list.path, format!("line {line}: {msg}"))
}

/// Checks every label against the syndromes table.
pub fn check_labels(
    galleries: &[ImageList],
    test: &ImageList,
    syndromes: &SyndromeTable,
) -> Result<()> {
    for list in galleries.iter().chain(std::iter::once(test)) {
        for row in &list.rows {
            if syndromes.get(&row.label).is_none() {
                return Err(err(
                    list,
                    row.line,
                    format!(
                        "label {} of image {} is not a syndrome_id of {}",
                        row.label,
                        row.image_id,
                        syndromes.path.display()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The test rows as queries: one row each, or grouped by subject (first appearance order).
/// A subject whose rows carry different labels is an [`Error::Gallery`] naming the line.
fn queries<'r>(
    rows: &[&'r ImageRow],
    group: bool,
    test: &ImageList,
    name: &str,
) -> Result<Vec<Vec<&'r ImageRow>>> {
    if !group {
        return Ok(rows.iter().map(|r| vec![*r]).collect());
    }
    let mut at: HashMap<&str, usize> = HashMap::new();
    let mut out: Vec<Vec<&ImageRow>> = Vec::new();
    for &r in rows {
        match at.get(r.subject.as_str()) {
            Some(&i) => {
                if out[i][0].label != r.label {
                    return Err(err(
                        test,
                        r.line,
                        format!(
                            "{name}subject {} has label {} here but {} on line {}; patient grouping needs one label per subject",
                            r.subject, r.label, out[i][0].label, out[i][0].line
                        ),
                    ));
                }
                out[i].push(r);
            }
            None => {
                at.insert(r.subject.as_str(), out.len());
                out.push(vec![r]);
            }
        }
    }
    Ok(out)
}

fn in_split(row: &ImageRow, split: Option<u32>) -> bool {
    match (split, row.split) {
        (None, _) | (_, None) => true,
        (Some(s), Some(r)) => s == r,
    }
}

/// Runs the protocol. `progress(done, total)` is called after each ranked test image.
///
/// Errors: see the module docs; an image missing from `embeddings` is an [`Error::Gallery`]
/// naming its list and line; embeddings whose keys differ between images are an
/// [`Error::Gallery`] as well.
pub fn evaluate(
    galleries: &[ImageList],
    test: &ImageList,
    syndromes: &SyndromeTable,
    embeddings: &HashMap<String, Embeddings>,
    opts: &EvalOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<EvalReport> {
    check_labels(galleries, test, syndromes)?;
    let get = |list: &ImageList, row: &ImageRow| {
        embeddings.get(&row.image_id).ok_or_else(|| {
            err(
                list,
                row.line,
                format!("image {} has no embeddings", row.image_id),
            )
        })
    };
    let splits: BTreeSet<u32> = galleries
        .iter()
        .chain(std::iter::once(test))
        .flat_map(|l| l.rows.iter().filter_map(|r| r.split))
        .collect();
    let splits: Vec<Option<u32>> = if splits.is_empty() {
        vec![None]
    } else {
        splits.into_iter().map(Some).collect()
    };
    let first = galleries
        .iter()
        .flat_map(|l| l.rows.iter().map(move |r| (l, r)))
        .next()
        .ok_or_else(|| Error::Usage("no gallery image list given".into()))?;
    let keys: Vec<KeySpec> = get(first.0, first.1)?
        .entries
        .iter()
        .map(|(k, v)| KeySpec {
            key: k.clone(),
            width: u32::try_from(v.len()).unwrap_or(u32::MAX),
        })
        .collect();
    let total: usize = splits
        .iter()
        .map(|&s| test.rows.iter().filter(|r| in_split(r, s)).count())
        .sum();
    let mut done = 0;
    let mut results = Vec::new();
    for &split in &splits {
        let name = split.map_or(String::new(), |s| format!("split {s}: "));
        let mut gallery = Gallery::new("eval", "eval", keys.clone(), opts.storage)?;
        for list in galleries {
            for row in list.rows.iter().filter(|r| in_split(r, split)) {
                let case = Case {
                    image_id: row.image_id.clone(),
                    subject: Some(row.subject.clone()),
                    syndrome: row.label.clone(),
                    omim: None,
                    genes: Vec::new(),
                };
                gallery.add(&case, get(list, row)?).map_err(|e| {
                    err(
                        list,
                        row.line,
                        format!("{name}cannot add image {}: {e}", row.image_id),
                    )
                })?;
            }
        }
        if gallery.is_empty() {
            let list = galleries.first().unwrap_or(test);
            return Err(Error::gallery(
                &list.path,
                format!("{name}the gallery is empty (no gallery image in this split)"),
            ));
        }
        let rows: Vec<&ImageRow> = test.rows.iter().filter(|r| in_split(r, split)).collect();
        let gallery_ids: HashSet<&str> = gallery
            .images()
            .iter()
            .map(|im| im.image_id.as_str())
            .collect();
        if let Some(row) = rows
            .iter()
            .find(|r| gallery_ids.contains(r.image_id.as_str()))
        {
            return Err(err(
                test,
                row.line,
                format!(
                    "{name}test image {} is also a gallery image; the test set must be held out",
                    row.image_id
                ),
            ));
        }
        if rows.is_empty() {
            return Err(Error::gallery(
                &test.path,
                format!("{name}no test image in this split"),
            ));
        }
        let in_gallery: BTreeSet<&str> = gallery
            .syndromes()
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        let rank_opts = RankOptions {
            top: gallery.syndromes().len(),
            patients: gallery.syndromes().len(),
            same_patient_threshold: None,
        };
        let test_images = rows.len();
        let mut outcomes = Vec::with_capacity(rows.len());
        for group in queries(&rows, opts.group_by_subject, test, &name)? {
            let row = group[0];
            let fused;
            let query = if opts.group_by_subject {
                let photos = group
                    .iter()
                    .map(|r| get(test, r).cloned())
                    .collect::<Result<Vec<_>>>()?;
                fused = crate::fuse::fuse(&photos).map_err(|e| {
                    err(
                        test,
                        row.line,
                        format!("{name}subject {}: {e}", row.subject),
                    )
                })?;
                &fused
            } else {
                get(test, row)?
            };
            let ranking = rank::rank(query, &gallery, &rank_opts).map_err(|e| {
                err(
                    test,
                    row.line,
                    format!("{name}cannot rank image {}: {e}", row.image_id),
                )
            })?;
            let position = ranking
                .syndromes
                .iter()
                .position(|h| h.syndrome_name == row.label)
                .map(|p| p + 1);
            outcomes.push(Outcome {
                truth: row.label.clone(),
                position,
            });
            done += group.len();
            progress(done, total);
        }
        let truths: BTreeSet<&str> = outcomes.iter().map(|o| o.truth.as_str()).collect();
        let top_k = PAPER_KS.map(|k| metric::top_k_mean_accuracy(&outcomes, k).unwrap_or(0.0));
        results.push(SplitResult {
            split,
            gallery_images: gallery.len(),
            gallery_syndromes: gallery.syndromes().len(),
            test_images,
            test_queries: outcomes.len(),
            test_syndromes: truths.len(),
            test_syndromes_not_in_gallery: truths
                .iter()
                .filter(|t| !in_gallery.contains(*t))
                .count(),
            top_k,
            curve: metric::curve(&outcomes, CURVE_MAX_K),
        });
    }
    let n = results.len() as f64;
    let mean = |f: &dyn Fn(&SplitResult) -> f64| results.iter().map(f).sum::<f64>() / n;
    let top_k = [0, 1, 2, 3].map(|i| mean(&|r: &SplitResult| r.top_k[i]));
    let curve = (0..CURVE_MAX_K)
        .map(|i| mean(&|r: &SplitResult| r.curve.get(i).copied().unwrap_or(0.0)))
        .collect();
    Ok(EvalReport {
        top_k,
        curve,
        gallery_images: mean(&|r: &SplitResult| r.gallery_images as f64),
        test_images: mean(&|r: &SplitResult| r.test_images as f64),
        splits: results,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gmdb::reference::EncodingTable;
    use std::path::PathBuf;

    fn golden(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden/eval_grouped")
            .join(name)
    }

    /// Against `tests/golden/eval_grouped/make_grouped_golden.py`: per photo and per patient.
    #[test]
    fn patient_grouping_matches_the_python_golden() {
        let exp: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(golden("expected.json")).unwrap())
                .unwrap();
        let enc = EncodingTable::read(&golden("encodings.csv")).unwrap();
        let gallery = ImageList::read(&golden("gallery.csv")).unwrap();
        let test = ImageList::read(&golden("test.csv")).unwrap();
        let syndromes = SyndromeTable::read(&golden("syndromes.tsv")).unwrap();
        let mut embeddings = HashMap::new();
        for row in gallery.rows.iter().chain(&test.rows) {
            let im = enc.find(&row.image_id).unwrap().unwrap();
            embeddings.insert(row.image_id.clone(), im.embeddings.clone());
        }
        let mut top1 = Vec::new();
        for (mode, group) in [("single", false), ("grouped", true)] {
            let opts = EvalOptions {
                group_by_subject: group,
                ..EvalOptions::default()
            };
            let r = evaluate(
                std::slice::from_ref(&gallery),
                &test,
                &syndromes,
                &embeddings,
                &opts,
                &mut |_, _| {},
            )
            .unwrap();
            let want = &exp[mode];
            assert_eq!(r.splits[0].test_images, 72);
            assert_eq!(
                r.splits[0].test_queries as u64,
                want["queries"].as_u64().unwrap(),
                "{mode}"
            );
            for i in 0..4 {
                let w = want["top_k"][i].as_f64().unwrap();
                assert!(
                    (r.top_k[i] - w).abs() < 1e-9,
                    "{mode} k#{i}: {} vs {w}",
                    r.top_k[i]
                );
            }
            top1.push(r.top_k[0]);
        }
        assert!(top1[1] > top1[0], "fusion helps on this set: {top1:?}");
    }

    #[test]
    fn a_subject_with_two_labels_cannot_be_grouped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        std::fs::write(&p, "image_id,subject,label\n1,a,201\n2,a,202\n").unwrap();
        let test = ImageList::read(&p).unwrap();
        let rows: Vec<&ImageRow> = test.rows.iter().collect();
        let e = queries(&rows, true, &test, "").unwrap_err();
        assert!(matches!(e, Error::Gallery { .. }), "{e:?}");
        assert!(e.to_string().contains("line 3"), "{e}");
        assert_eq!(queries(&rows, false, &test, "").unwrap().len(), 2);
    }
}
