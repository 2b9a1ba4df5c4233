//! Exact distances: the flat scan's arithmetic, shared by the flat search, the indexed
//! search's re-rank and the benchmarks.
//!
//! Consumes a [`VectorStore`] and a query's normalised vectors (one per key slot); produces
//! per image the mean over slots of `1 - q.g` (f32, eight accumulators), and the test that
//! tells the indexed search its lists can no longer change ([`lists_full`]).

use std::collections::HashSet;

use super::search::{ranges, SearchOptions, VectorStore};

/// Dot product with eight independent accumulators: the arithmetic of the flat scan.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// The exact distance of one image: the flat scan's arithmetic (sum over slots of
/// `1 - q.g` in f32, divided by the number of slots).
pub fn exact_distance(
    store: &dyn VectorStore,
    query: &[Vec<f32>],
    image: usize,
    buf: &mut Vec<f32>,
) -> f32 {
    let mut sum = 0.0f32;
    for (slot, q) in query.iter().enumerate() {
        let g = store.vector(image, slot, buf);
        sum += 1.0 - dot(q, g);
    }
    sum / query.len().max(1) as f32
}

/// Exact distances of `ids` on `threads` threads, in `ids` order.
pub(super) fn exact_batch(
    store: &dyn VectorStore,
    query: &[Vec<f32>],
    ids: &[usize],
    threads: usize,
) -> Vec<(usize, f32)> {
    std::thread::scope(|s| {
        let handles: Vec<_> = ranges(ids.len(), threads)
            .into_iter()
            .map(|r| {
                let part = &ids[r];
                s.spawn(move || {
                    let mut buf = Vec::new();
                    part.iter()
                        .map(|&i| (i, exact_distance(store, query, i, &mut buf)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// True when the lists built from the scored images strictly closer than `frontier` (the
/// smallest lower bound not scored yet) are already full: no unscored image can change them.
pub(super) fn lists_full(
    store: &dyn VectorStore,
    scored: &[(usize, f32)],
    frontier: f32,
    opts: &SearchOptions,
) -> bool {
    let [n_syn, n_subj, n_genes] = store.table_sizes();
    let (want_syn, want_subj, want_genes) = (
        opts.top.min(n_syn),
        opts.patients.min(n_subj),
        opts.top.min(n_genes),
    );
    let (mut syn, mut subj, mut genes) = (HashSet::new(), HashSet::new(), HashSet::new());
    for &(i, d) in scored {
        if syn.len() >= want_syn && subj.len() >= want_subj && genes.len() >= want_genes {
            return true;
        }
        if d >= frontier {
            return false;
        }
        if opts.same_patient_threshold.is_some_and(|t| d < t) {
            continue;
        }
        if syn.len() < want_syn {
            syn.insert(store.syndrome(i));
        }
        if subj.len() < want_subj {
            subj.insert(store.subject(i));
        }
        for &g in store.genes(i) {
            if genes.len() >= want_genes {
                break;
            }
            genes.insert(g);
        }
    }
    syn.len() >= want_syn && subj.len() >= want_subj && genes.len() >= want_genes
}

/// The flat scan over a store: every image's exact distance on `threads` threads, returned as
/// `(image, distance)` sorted by distance then image (the order [`super::rank`] uses).
pub fn flat_scan(store: &dyn VectorStore, query: &[Vec<f32>], threads: usize) -> Vec<(usize, f32)> {
    let ids: Vec<usize> = (0..store.len()).collect();
    let mut all = exact_batch(store, query, &ids, threads);
    all.sort_unstable_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    all
}
