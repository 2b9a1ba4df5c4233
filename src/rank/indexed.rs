//! Ranking a [`Gallery`] through its [`SearchIndex`] (derived when the gallery is loaded).
//!
//! Consumes the query [`Embeddings`], a [`Gallery`] and optionally its [`GalleryIndex`];
//! produces the same [`Ranking`] as [`super::rank`] (proven by the index's bounds, see
//! [`super::search`]) plus a [`SearchReport`] saying which path ran and how much it scored.

use super::search::{IndexParams, SearchIndex, SearchOptions, SearchStats, VectorStore};
use super::{distance::query_vectors, lists, RankOptions, Ranking};
use crate::embed::Embeddings;
use crate::gallery::Gallery;
use crate::Result;
use std::time::Instant;

/// Galleries with at least this many images are searched through an index by default; below,
/// the flat scan is as fast (measured: see README, gallery search).
pub const INDEX_MIN_IMAGES: usize = 20_000;

/// Galleries from this size on are where a cap on exact scores would be needed for the
/// 1M-image time budget (the proven search re-ranks a large share of a big gallery: the
/// Cauchy-Schwarz slack of real embeddings is ~0.5). The cap is NOT a default: at 200k images
/// x 500 syndromes a 4096 cap returned the flat scan's top-5 for 9 of 20 queries (measured),
/// and a clinical ranking must not silently differ from the exact one.
pub const CAPPED_MIN_IMAGES: usize = 100_000;

/// The default `max_exact` of [`rank_indexed`] for a gallery of `images` images: always
/// `None` (the proven search) until a capped search keeps the exact top-5 at scale; callers
/// may pass [`super::search::DEFAULT_MAX_EXACT`] explicitly, and a capped search says
/// whether it was still proven in [`SearchStats::certified`].
pub fn default_max_exact(_images: usize) -> Option<usize> {
    None
}

/// A gallery seen as a [`VectorStore`]: its stored vectors normalised as they are read
/// (into the caller's buffer) and its tables.
pub struct GalleryStore<'g>(pub &'g Gallery);

impl VectorStore for GalleryStore<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn widths(&self) -> Vec<usize> {
        self.0.keys().iter().map(|k| k.width as usize).collect()
    }

    fn vector<'a>(&'a self, image: usize, slot: usize, buf: &'a mut Vec<f32>) -> &'a [f32] {
        self.0.search_vector(image, slot, buf).unwrap_or_default()
    }

    fn syndrome(&self, image: usize) -> u32 {
        self.0
            .images()
            .get(image)
            .map_or(u32::MAX, |im| im.syndrome)
    }

    fn subject(&self, image: usize) -> u32 {
        self.0.images().get(image).map_or(u32::MAX, |im| im.subject)
    }

    fn genes(&self, image: usize) -> &[u32] {
        self.0.images().get(image).map_or(&[], |im| &im.genes)
    }

    fn table_sizes(&self) -> [usize; 3] {
        [
            self.0.syndromes().len(),
            self.0.subjects().len(),
            self.0.genes().len(),
        ]
    }
}

/// The search index of one gallery (valid while the gallery is unchanged).
#[derive(Debug, Clone)]
pub struct GalleryIndex {
    index: SearchIndex,
    /// Time it took to build (ms).
    pub build_ms: f64,
}

impl GalleryIndex {
    /// Builds the index of `gallery` (projection learnt on a sample, every image coded).
    pub fn build(gallery: &Gallery, params: &IndexParams) -> GalleryIndex {
        let t = Instant::now();
        let index = SearchIndex::build(&GalleryStore(gallery), params);
        GalleryIndex {
            index,
            build_ms: t.elapsed().as_secs_f64() * 1000.0,
        }
    }

    /// The underlying index.
    pub fn index(&self) -> &SearchIndex {
        &self.index
    }
}

/// Which search produced a ranking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchPath {
    /// Every image scored exactly.
    Flat,
    /// Index prefilter, exact re-rank of the images the bounds could not exclude.
    Indexed,
}

impl std::fmt::Display for SearchPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SearchPath::Flat => "flat",
            SearchPath::Indexed => "indexed",
        })
    }
}

/// What one ranking cost.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct SearchReport {
    /// The path taken.
    pub path: SearchPath,
    /// Index statistics (`exact_scored == images` on the flat path).
    pub stats: SearchStats,
}

/// Ranks like [`rank`], through `index` when given and built for this gallery (same image
/// count and widths), else by the flat scan. With `max_exact`, the indexed search may stop
/// before its result is proven (`stats.certified` false). Errors as [`super::distances`].
pub fn rank_indexed(
    query: &Embeddings,
    gallery: &Gallery,
    index: Option<&GalleryIndex>,
    opts: &RankOptions,
    threads: usize,
    max_exact: Option<usize>,
) -> Result<(Ranking, SearchReport)> {
    let q = query_vectors(query, gallery)?;
    let store = GalleryStore(gallery);
    let search_opts = SearchOptions {
        top: opts.top,
        patients: opts.patients,
        same_patient_threshold: opts.same_patient_threshold,
        threads,
        max_exact,
    };
    if let Some((scored, stats)) = index.and_then(|ix| ix.index.search(&store, &q, &search_opts)) {
        let order: Vec<(usize, f32)> = scored
            .into_iter()
            .filter(|&(_, d)| opts.same_patient_threshold.is_none_or(|t| d >= t))
            .collect();
        let ranking = lists(&order, gallery, opts, gallery.len());
        let report = SearchReport {
            path: SearchPath::Indexed,
            stats,
        };
        return Ok((ranking, report));
    }
    let t = Instant::now();
    let ranking = super::rank_on(query, gallery, opts, threads)?;
    let stats = SearchStats {
        images: gallery.len(),
        exact_scored: gallery.len(),
        certified: true,
        scan_ms: 0.0,
        rerank_ms: t.elapsed().as_secs_f64() * 1000.0,
    };
    Ok((
        ranking,
        SearchReport {
            path: SearchPath::Flat,
            stats,
        },
    ))
}

/// A gallery ready to be searched: the gallery, and its search index when the gallery is large
/// enough for the index to pay ([`INDEX_MIN_IMAGES`]). Ranking through it always gives the
/// flat scan's lists (the proven search: no cap on exact scores).
#[derive(Debug)]
pub struct Matcher<'g> {
    gallery: &'g Gallery,
    index: Option<GalleryIndex>,
    threads: usize,
}

impl<'g> Matcher<'g> {
    /// Prepares `gallery` for searching on `threads` threads: builds its index when it holds
    /// at least [`INDEX_MIN_IMAGES`] images (seconds at 100k+ images; once per load).
    pub fn new(gallery: &'g Gallery, threads: usize) -> Matcher<'g> {
        let threads = threads.max(1);
        let index = (gallery.len() >= INDEX_MIN_IMAGES).then(|| {
            let params = IndexParams {
                threads,
                ..IndexParams::default()
            };
            GalleryIndex::build(gallery, &params)
        });
        Matcher {
            gallery,
            index,
            threads,
        }
    }

    /// A matcher that always scans the whole gallery, on `threads` threads.
    pub fn flat(gallery: &'g Gallery, threads: usize) -> Matcher<'g> {
        Matcher {
            gallery,
            index: None,
            threads: threads.max(1),
        }
    }

    /// The gallery searched.
    pub fn gallery(&self) -> &'g Gallery {
        self.gallery
    }

    /// The index, when one was built.
    pub fn index(&self) -> Option<&GalleryIndex> {
        self.index.as_ref()
    }

    /// Ranks `query` (the lists of [`rank`], through the index when there is one).
    pub fn rank(&self, query: &Embeddings, opts: &RankOptions) -> Result<(Ranking, SearchReport)> {
        rank_indexed(
            query,
            self.gallery,
            self.index.as_ref(),
            opts,
            self.threads,
            None,
        )
    }
}
