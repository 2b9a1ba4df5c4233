//! Synthetic galleries for benchmarks: `n` images with seeded structured vectors under the
//! given keys (syndrome centroids + subject offsets + view noise, see
//! `crate::rank::synthetic`), built through `Gallery::new` + `Gallery::add` and encoded
//! by `Gallery::to_bytes`, so they go through the same checks and file layout as any other
//! gallery; and the gallery-search measurement (flat scan against the index) on them.
//!
//! Consumes a bundle id, keys and a size; produces file bytes that `Gallery::from_bytes`
//! reads, and a [`SearchBench`]. Used by `gestalt-edge bench` and benches/.

use std::fmt::Write as _;

use crate::embed::Embeddings;
use crate::gallery::{Case, Gallery, KeySpec, Storage};
use crate::rank::synthetic::{Model, Rng};
use crate::rank::{self, Matcher, RankOptions, SearchPath};

/// The generative model behind [`synthetic_gallery`] for these keys and size (keys of one
/// model share centroids), so queries of new patients can be drawn from it.
pub fn synthetic_model(keys: &[KeySpec], n: usize, seed: u64) -> Model {
    let mut models: Vec<&str> = Vec::new();
    let slots: Vec<(usize, usize)> = keys
        .iter()
        .map(|k| {
            let g = match models.iter().position(|m| *m == k.key.model) {
                Some(g) => g,
                None => {
                    models.push(&k.key.model);
                    models.len() - 1
                }
            };
            (g, k.width as usize)
        })
        .collect();
    Model::new(&slots, n / 10 + 1, seed)
}

/// Gallery file bytes: `n` images (`img0`, `img1`, ...) of `n / 10 + 1` syndromes (image
/// `i` has syndrome `i % (n / 10 + 1)`, OMIM `100000 +` that number), one subject each
/// (`s<i>`), no genes, vectors from [`synthetic_model`] (`seed`) and stored as `storage`.
/// Same arguments, same bytes.
///
/// Returns no bytes (which the reader refuses as too short) when `Gallery::new` refuses the
/// keys (empty, repeated or of width 0).
pub fn synthetic_gallery(
    bundle_id: &str,
    keys: &[KeySpec],
    n: usize,
    storage: Storage,
    seed: u64,
) -> Vec<u8> {
    let Ok(mut gallery) = Gallery::new(bundle_id, "synthetic", keys.to_vec(), storage) else {
        return Vec::new();
    };
    let model = synthetic_model(keys, n, seed);
    let mut rng = Rng::new(seed ^ 0x5eed);
    let n_syn = n / 10 + 1;
    let mut emb = Embeddings {
        entries: keys
            .iter()
            .map(|k| (k.key.clone(), Vec::with_capacity(k.width as usize)))
            .collect(),
    };
    let mut case = Case::default();
    for i in 0..n {
        let syn = i % n_syn;
        let vectors = model.image(syn, i as u64, &mut rng);
        for ((_, v), new) in emb.entries.iter_mut().zip(vectors) {
            *v = new;
        }
        case.image_id.clear();
        let _ = write!(case.image_id, "img{i}");
        case.subject = Some(format!("s{i}"));
        case.syndrome.clear();
        let _ = write!(case.syndrome, "syndrome {syn}");
        case.omim = u32::try_from(syn).ok().and_then(|s| s.checked_add(100000));
        // Unique ids, non-empty names, one OMIM per syndrome and finite values within the
        // f16 range: every case is accepted.
        if gallery.add(&case, &emb).is_err() {
            return Vec::new();
        }
    }
    gallery.to_bytes()
}

/// Gallery search on a synthetic gallery: the flat scan against the index, same queries.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SearchBench {
    /// Search path `bench` uses for this gallery size (`indexed` from
    /// `rank::indexed::INDEX_MIN_IMAGES` images).
    pub path: SearchPath,
    /// Images searched.
    pub images: usize,
    /// Queries timed (new patients drawn from the gallery's generative model).
    pub queries: usize,
    /// Time to derive the index from the loaded gallery (ms).
    pub index_build_ms: f64,
    /// Index bytes per image in memory (code + bound terms).
    pub index_bytes_per_image: usize,
    /// Median ranking time, flat scan (1 thread, ms).
    pub rank_flat_ms: f64,
    /// Median ranking time on the path above (ms).
    pub rank_indexed_ms: f64,
    /// rank_flat_ms / rank_indexed_ms.
    pub speedup: f64,
    /// Median images scored exactly per query.
    pub exact_scored: usize,
    /// Every query's result proven equal to the flat scan's by the bounds.
    pub certified: bool,
    /// Every query's ranking equal to the flat scan's (checked, not assumed).
    pub same_top5_as_flat: bool,
    /// The capped search, when asked for (`bench --search-cap N`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capped: Option<CappedBench>,
}

/// A capped indexed search (at most `max_exact` exact scores) on the same queries.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CappedBench {
    /// The cap on exact scores.
    pub max_exact: usize,
    /// Median ranking time (ms).
    pub rank_ms: f64,
    /// Queries whose top-5 syndromes equal the flat scan's.
    pub same_top5_syndromes: usize,
    /// Queries whose result the bounds still proved.
    pub certified: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Times `queries` rankings of new patients (seeded) against the matcher's gallery, made by
/// [`synthetic_gallery`] with the same `keys` and `seed`: the flat scan against the product's
/// path (`matcher`), and with `max_exact` also a capped indexed search.
pub fn search_bench(
    matcher: &Matcher<'_>,
    keys: &[KeySpec],
    seed: u64,
    threads: usize,
    queries: usize,
    max_exact: Option<usize>,
) -> crate::Result<SearchBench> {
    let gallery = matcher.gallery();
    let model = synthetic_model(keys, gallery.len(), seed);
    let n_syn = gallery.len() / 10 + 1;
    let mut rng = Rng::new(seed ^ 0x0e11);
    let opts = RankOptions {
        top: 5,
        patients: 5,
        same_patient_threshold: None,
    };
    let (mut flat_ms, mut fast_ms, mut capped_ms, mut scored) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut certified, mut same) = (true, true);
    let (mut capped_same, mut capped_certified) = (0, 0);
    for q in 0..queries.max(1) {
        let vectors = model.image(q * 7919 % n_syn, (1 << 40) + q as u64, &mut rng);
        let query = Embeddings {
            entries: keys.iter().map(|k| k.key.clone()).zip(vectors).collect(),
        };
        let t = std::time::Instant::now();
        let flat = rank::rank(&query, gallery, &opts)?;
        flat_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = std::time::Instant::now();
        let (fast, report) = matcher.rank(&query, &opts)?;
        fast_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        scored.push(report.stats.exact_scored as f64);
        certified &= report.stats.certified;
        same &= fast == flat;
        if let (Some(cap), Some(ix)) = (max_exact, matcher.index()) {
            let t = std::time::Instant::now();
            let (got, report) =
                rank::rank_indexed(&query, gallery, Some(ix), &opts, threads, Some(cap))?;
            capped_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            capped_same += usize::from(got.syndromes == flat.syndromes);
            capped_certified += usize::from(report.stats.certified);
        }
    }
    let (rank_flat_ms, rank_indexed_ms) = (median(flat_ms), median(fast_ms));
    let capped = (!capped_ms.is_empty()).then(|| CappedBench {
        max_exact: max_exact.unwrap_or(0),
        rank_ms: median(capped_ms),
        same_top5_syndromes: capped_same,
        certified: capped_certified,
    });
    let index = matcher.index();
    Ok(SearchBench {
        path: if index.is_some() {
            SearchPath::Indexed
        } else {
            SearchPath::Flat
        },
        images: gallery.len(),
        queries: queries.max(1),
        index_build_ms: index.map_or(0.0, |ix| ix.build_ms),
        index_bytes_per_image: index.map_or(0, |ix| ix.index().bytes_per_image()),
        rank_flat_ms,
        rank_indexed_ms,
        speedup: rank_flat_ms / rank_indexed_ms.max(1e-9),
        exact_scored: median(scored) as usize,
        certified,
        same_top5_as_flat: same,
        capped,
    })
}
