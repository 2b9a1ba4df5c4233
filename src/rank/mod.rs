//! Ranking: the query face against the gallery.
//!
//! Consumes the query [`Embeddings`] and a [`Gallery`]; produces a [`Ranking`]: gallery
//! images sorted by mean key-paired cosine distance ([`distance`]), then the syndromes
//! (nearest neighbour: a syndrome's distance is that of its closest image), genes and
//! patients in order of first occurrence in that image list, as the GestaltMatcher-Arc
//! reference reports them. `gestalt_score = 1.3 - distance`. Syndromes carry the ACMG PP4
//! level of their score ([`pp4`]); the patient list is sized on its own
//! ([`RankOptions::patients`], the service lists 100).

pub mod distance;
mod exact;
pub mod explain;
pub mod indexed;
pub mod pca;
pub mod pp4;
pub mod scan;
pub mod search;
pub mod synthetic;

pub use distance::{cosine_distance, distances};
pub use indexed::{
    default_max_exact, rank_indexed, GalleryIndex, Matcher, SearchPath, CAPPED_MIN_IMAGES,
};

use crate::embed::Embeddings;
use crate::gallery::Gallery;
use crate::Result;
use std::collections::HashSet;

/// The reference's offset for `gestalt_score = GESTALT_OFFSET - distance`.
pub const GESTALT_OFFSET: f32 = 1.3;

/// How to rank.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankOptions {
    /// Maximum entries in the syndrome and gene lists; 0 gives empty lists.
    pub top: usize,
    /// Maximum entries in the patient list (unique subjects; the service lists 100).
    pub patients: usize,
    /// Gallery images closer than this mean cosine distance are dropped before ranking as
    /// probable photos of the same patient (the reference used 0.4, later 0.3). `None` keeps
    /// every image.
    pub same_patient_threshold: Option<f32>,
}

/// One suggested syndrome. Field names are the JSON contract.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SyndromeHit {
    /// Syndrome name.
    pub syndrome_name: String,
    /// OMIM number, when known.
    pub omim_id: Option<u32>,
    /// Mean cosine distance of the syndrome's nearest gallery image.
    pub distance: f32,
    /// `1.3 - distance` (higher is more similar).
    pub gestalt_score: f32,
    /// That nearest image.
    pub image_id: String,
    /// Its subject (patient).
    pub subject_id: String,
    /// ACMG PP4 level reached by the gestalt score (`very_strong`, `strong`, `moderate`,
    /// `supporting`), or "" (see [`pp4`]).
    #[serde(rename = "ACMG_PP4")]
    pub acmg_pp4: String,
    /// "Yes" when the syndrome has PP4 thresholds, "Not available yet" when not, or why the
    /// level was withheld.
    #[serde(rename = "ACMG_PP4_support")]
    pub acmg_pp4_support: String,
    /// Calibrated probability; `None` (JSON null) without a calibration, as the service.
    pub probability: Option<f32>,
    /// Lower bound of its 95 % interval; `None` without a calibration.
    pub ci_lower: Option<f32>,
    /// Upper bound of its 95 % interval; `None` without a calibration.
    pub ci_upper: Option<f32>,
}

impl SyndromeHit {
    /// Clears the PP4 level and says why in `ACMG_PP4_support`.
    pub fn withhold_pp4(&mut self, why: &str) {
        self.acmg_pp4.clear();
        self.acmg_pp4_support = why.to_string();
    }
}

/// One suggested gene. Field names are the JSON contract.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GeneHit {
    /// Gene symbol.
    pub gene_name: String,
    /// Entrez gene id, when known.
    pub gene_entrez_id: Option<u32>,
    /// Syndrome of the image the gene was first met on.
    pub syndrome_name: String,
    /// Mean cosine distance of that image.
    pub distance: f32,
    /// `1.3 - distance`.
    pub gestalt_score: f32,
    /// That image.
    pub image_id: String,
    /// Its subject (patient).
    pub subject_id: String,
}

/// One similar patient. Field names are the JSON contract.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PatientHit {
    /// Subject (patient) id.
    pub subject_id: String,
    /// The first gene of that image, when it has one (as the service reports it).
    pub gene_name: Option<String>,
    /// Its Entrez id, when known.
    pub gene_entrez_id: Option<u32>,
    /// The patient's syndrome (of the nearest image of this patient).
    pub syndrome_name: String,
    /// Its OMIM number, when known.
    pub omim_id: Option<u32>,
    /// Mean cosine distance of the patient's nearest image.
    pub distance: f32,
    /// `1.3 - distance`.
    pub gestalt_score: f32,
    /// That image.
    pub image_id: String,
}

/// The result of ranking one query.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct Ranking {
    /// Syndromes, nearest first.
    pub syndromes: Vec<SyndromeHit>,
    /// Genes, in order of first occurrence in the ranked image list.
    pub genes: Vec<GeneHit>,
    /// Patients, in order of first occurrence in the ranked image list.
    pub patients: Vec<PatientHit>,
    /// Gallery images the query was compared with (before the same-patient filter).
    pub images_compared: usize,
}

/// Ranks the gallery against `query` (see the module docs for the rules).
///
/// Images are sorted by distance ascending, ties by gallery image index, so the output is
/// deterministic. Errors as [`distances`].
pub fn rank(query: &Embeddings, gallery: &Gallery, opts: &RankOptions) -> Result<Ranking> {
    rank_on(query, gallery, opts, 1)
}

/// [`rank`] with the distances computed on `threads` threads (the same result).
pub fn rank_on(
    query: &Embeddings,
    gallery: &Gallery,
    opts: &RankOptions,
    threads: usize,
) -> Result<Ranking> {
    let dist = distance::distances_on(query, gallery, threads)?;
    let mut order: Vec<(usize, f32)> = dist
        .iter()
        .copied()
        .enumerate()
        .filter(|&(_, d)| opts.same_patient_threshold.is_none_or(|t| d >= t))
        .collect();
    order.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    Ok(lists(&order, gallery, opts, dist.len()))
}

/// The syndrome, gene and patient lists from `order`: `(image, distance)` pairs already
/// filtered and sorted (distance, then image index).
pub(crate) fn lists(
    order: &[(usize, f32)],
    gallery: &Gallery,
    opts: &RankOptions,
    images_compared: usize,
) -> Ranking {
    let images = gallery.images();
    let syndromes = gallery.syndromes();
    let genes = gallery.genes();
    let subjects = gallery.subjects();
    let subject_name = |s: u32| subjects.get(s as usize).cloned().unwrap_or_default();

    let mut out = Ranking {
        images_compared,
        ..Ranking::default()
    };
    let mut seen_syndromes = HashSet::new();
    let mut seen_genes = HashSet::new();
    let mut seen_subjects = HashSet::new();
    for &(i, d) in order {
        let Some(image) = images.get(i) else {
            continue;
        };
        let syndrome = syndromes.get(image.syndrome as usize);
        let syndrome_name = syndrome.map(|s| s.name.clone()).unwrap_or_default();
        let omim_id = syndrome.and_then(|s| s.omim);
        let score = GESTALT_OFFSET - d;
        if out.syndromes.len() < opts.top && seen_syndromes.insert(image.syndrome) {
            let (level, support) = pp4::assess(gallery.pp4(image.syndrome as usize), score);
            out.syndromes.push(SyndromeHit {
                syndrome_name: syndrome_name.clone(),
                omim_id,
                distance: d,
                gestalt_score: score,
                image_id: image.image_id.clone(),
                subject_id: subject_name(image.subject),
                acmg_pp4: level.to_string(),
                acmg_pp4_support: support.to_string(),
                probability: None,
                ci_lower: None,
                ci_upper: None,
            });
        }
        for &g in &image.genes {
            if out.genes.len() >= opts.top {
                break;
            }
            let Some(gene) = genes.get(g as usize) else {
                continue;
            };
            if seen_genes.insert(g) {
                out.genes.push(GeneHit {
                    gene_name: gene.name.clone(),
                    gene_entrez_id: gene.entrez,
                    syndrome_name: syndrome_name.clone(),
                    distance: d,
                    gestalt_score: score,
                    image_id: image.image_id.clone(),
                    subject_id: subject_name(image.subject),
                });
            }
        }
        if out.patients.len() < opts.patients && seen_subjects.insert(image.subject) {
            let first_gene = image.genes.first().and_then(|&g| genes.get(g as usize));
            out.patients.push(PatientHit {
                subject_id: subject_name(image.subject),
                gene_name: first_gene.map(|g| g.name.clone()),
                gene_entrez_id: first_gene.and_then(|g| g.entrez),
                syndrome_name,
                omim_id,
                distance: d,
                gestalt_score: score,
                image_id: image.image_id.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests;
