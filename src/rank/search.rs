//! Indexed gallery search: a compact per-image code as a prefilter, then an exact re-rank.
//!
//! Consumes a [`VectorStore`] (per image and key: the L2-normalised vector, plus the image's
//! syndrome, subject and genes) and produces a [`SearchIndex`]; a search consumes the query's
//! normalised vectors and produces every image it had to score exactly, with its exact
//! distance (the same arithmetic as [`super::distances`]).
//!
//! The maths. With `K` keys, let `Q` and `G` be the query's and an image's normalised vectors
//! concatenated and divided by `sqrt(K)`: the image distance is `1 - Q.G`. The index holds an
//! orthonormal basis `P` (`dims` rows, [`super::pca`]) and per image the int8 code `c` of
//! `y = P G` with its scale `s`, the code error `e = |y - s c|` and the residual norm
//! `r = |G - P^T y|`. Then, exactly,
//!
//! ```text
//! Q.G = (P Q).(s c) + (P Q).(y - s c) + (Q - P^T P Q).(G - P^T P G)
//!     <= (P Q).(s c) + |P Q| e + |Q_perp| r        (Cauchy-Schwarz, twice)
//! ```
//!
//! so `1 - bound` is a lower bound on each image's distance. Images are scored exactly in
//! order of that lower bound; the search stops as soon as the syndrome, gene and patient lists
//! built from the exactly scored images closer than the next lower bound are full. The result
//! is then provably the flat scan's (same images, same distances); exact scores come from
//! [`super::exact`]. An optional cap on exact scores trades that proof for a time limit.

pub(crate) use super::exact::dot;
use super::exact::{exact_batch, lists_full};
pub use super::exact::{exact_distance, flat_scan};
use super::pca;
use super::scan::{dots_f32, dots_i8, QueryCode};
use std::time::Instant;

/// Slack added to every bound: f32 rounding in the scan, projection and exact distance.
const MARGIN: f32 = 1e-4;

/// Absolute slack added to each squared residual norm, which is computed as a difference
/// (`|G|^2 - |y|^2`) and so may come out slightly low.
const RESIDUAL_SLACK: f64 = 1e-4;

/// Suggested cap on exact scores, opt-in only (see [`super::indexed::CAPPED_MIN_IMAGES`]).
/// Its recall is not good enough at scale for a default (the README's "Gallery search" has
/// the measurements; `gestalt-edge bench --search-cap N` and the `gallery_search` bench
/// reproduce them). A capped search whose bounds did not prove its result reports
/// `certified: false`.
pub const DEFAULT_MAX_EXACT: usize = 4096;

/// What the search reads: per image and key slot a normalised vector, and the image's labels.
pub trait VectorStore: Sync {
    /// Number of images.
    fn len(&self) -> usize;
    /// True when the store holds no image.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Values per vector, per key slot (the slot order of every other method).
    fn widths(&self) -> Vec<usize>;
    /// The L2-normalised vector of `image` for key `slot` (`widths()[slot]` values; zero
    /// vectors stay zero), borrowed from the store or decoded into `buf`.
    fn vector<'a>(&'a self, image: usize, slot: usize, buf: &'a mut Vec<f32>) -> &'a [f32];
    /// Syndrome table index of `image`.
    fn syndrome(&self, image: usize) -> u32;
    /// Subject table index of `image`.
    fn subject(&self, image: usize) -> u32;
    /// Gene table indices of `image`.
    fn genes(&self, image: usize) -> &[u32];
    /// Entries in the syndrome, subject and gene tables.
    fn table_sizes(&self) -> [usize; 3];
}

/// How to build a [`SearchIndex`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexParams {
    /// Code length (projected dimensions, int8 each); capped at the total vector width.
    pub dims: usize,
    /// Images sampled (evenly spaced) to learn the projection.
    pub sample: usize,
    /// Subspace iterations of the projection learning.
    pub iterations: usize,
    /// Seed of the start basis (same seed, same index).
    pub seed: u64,
    /// Worker threads for building.
    pub threads: usize,
}

impl Default for IndexParams {
    fn default() -> Self {
        IndexParams {
            dims: 256,
            sample: 4096,
            iterations: 3,
            seed: 1,
            threads: 2,
        }
    }
}

/// How to search.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchOptions {
    /// Entries in the syndrome and gene lists, as [`super::RankOptions::top`].
    pub top: usize,
    /// Entries in the patient list, as [`super::RankOptions::patients`].
    pub patients: usize,
    /// Same-patient filter, as [`super::RankOptions::same_patient_threshold`].
    pub same_patient_threshold: Option<f32>,
    /// Worker threads for the scan and the re-rank.
    pub threads: usize,
    /// Stop after this many exact scores even if the result is not proven yet (`None`: never).
    pub max_exact: Option<usize>,
}

/// What one search did.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct SearchStats {
    /// Images in the index.
    pub images: usize,
    /// Images scored exactly (full vectors).
    pub exact_scored: usize,
    /// True when the bounds prove the result equals the flat scan's.
    pub certified: bool,
    /// Time of the code scan (ms).
    pub scan_ms: f64,
    /// Time of ordering, exact scores and stop checks (ms).
    pub rerank_ms: f64,
}

/// The compact per-image codes and bound terms (see the module docs).
#[derive(Debug, Clone)]
pub struct SearchIndex {
    widths: Vec<usize>,
    dim: usize,
    dims: usize,
    /// `dim x dims`, row-major: the transposed basis (projection `y = G * basis_t`).
    basis_t: Vec<f32>,
    codes: Vec<i8>,
    scale: Vec<f32>,
    code_err: Vec<f32>,
    residual: Vec<f32>,
    /// `s |c|` per image: the norm of the decoded code (bounds the query-code rounding term).
    code_norm: Vec<f32>,
}

/// `image`'s vectors concatenated and divided by `sqrt(K)` into `row` (`dim` values).
fn fill_row(store: &dyn VectorStore, image: usize, widths: &[usize], row: &mut [f32]) {
    let inv = 1.0 / (widths.len().max(1) as f32).sqrt();
    let mut buf = Vec::new();
    let mut at = 0;
    for (slot, &w) in widths.iter().enumerate() {
        let v = store.vector(image, slot, &mut buf);
        for (o, x) in row[at..at + w].iter_mut().zip(v) {
            *o = x * inv;
        }
        at += w;
    }
}

/// Splits `0..n` into `parts` contiguous ranges of near-equal size.
pub(super) fn ranges(n: usize, parts: usize) -> Vec<std::ops::Range<usize>> {
    let parts = parts.clamp(1, n.max(1));
    (0..parts)
        .map(|p| (n * p / parts)..(n * (p + 1) / parts))
        .collect()
}

impl SearchIndex {
    /// Builds the index of every image in `store` (learns the projection on a sample, then
    /// codes all images in blocks of 1024 on `params.threads` threads).
    pub fn build(store: &dyn VectorStore, params: &IndexParams) -> SearchIndex {
        let widths = store.widths();
        let dim: usize = widths.iter().sum();
        let n = store.len();
        let m = params.sample.min(n);
        let mut sample = vec![0.0f32; m * dim];
        for r in 0..m {
            fill_row(
                store,
                r * n / m,
                &widths,
                &mut sample[r * dim..(r + 1) * dim],
            );
        }
        let basis =
            pca::principal_basis(&sample, m, dim, params.dims, params.iterations, params.seed);
        drop(sample);
        let dims = basis.len() / dim.max(1);
        let mut basis_t = vec![0.0f32; dim * dims];
        for j in 0..dims {
            for c in 0..dim {
                basis_t[c * dims + j] = basis[j * dim + c];
            }
        }
        let mut ix = SearchIndex {
            widths,
            dim,
            dims,
            basis_t,
            codes: vec![0; n * dims],
            scale: vec![0.0; n],
            code_err: vec![0.0; n],
            residual: vec![0.0; n],
            code_norm: vec![0.0; n],
        };
        let parts = ranges(n, params.threads);
        let (basis_t, widths) = (&ix.basis_t, &ix.widths);
        let mut codes: &mut [i8] = &mut ix.codes;
        let mut scale: &mut [f32] = &mut ix.scale;
        let mut err: &mut [f32] = &mut ix.code_err;
        let mut res: &mut [f32] = &mut ix.residual;
        let mut cn: &mut [f32] = &mut ix.code_norm;
        std::thread::scope(|s| {
            for range in parts {
                let len = range.len();
                let (c, rest) = std::mem::take(&mut codes).split_at_mut(len * dims);
                codes = rest;
                let (sc, rest) = std::mem::take(&mut scale).split_at_mut(len);
                scale = rest;
                let (e, rest) = std::mem::take(&mut err).split_at_mut(len);
                err = rest;
                let (r, rest) = std::mem::take(&mut res).split_at_mut(len);
                res = rest;
                let (nm, rest) = std::mem::take(&mut cn).split_at_mut(len);
                cn = rest;
                let out = CodeOut {
                    codes: c,
                    scale: sc,
                    err: e,
                    res: r,
                    norm: nm,
                };
                s.spawn(move || code_range(store, widths, basis_t, dim, dims, range, out));
            }
        });
        ix
    }

    /// Number of images indexed.
    pub fn len(&self) -> usize {
        self.scale.len()
    }

    /// True when no image is indexed.
    pub fn is_empty(&self) -> bool {
        self.scale.is_empty()
    }

    /// Code length (projected dimensions).
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Vector widths per key slot the index was built for.
    pub fn widths(&self) -> &[usize] {
        &self.widths
    }

    /// Bytes per image in memory: the code plus four f32 bound terms.
    pub fn bytes_per_image(&self) -> usize {
        self.dims + 16
    }

    /// Bytes of the whole index in memory (codes, bound terms and the basis).
    pub fn memory_bytes(&self) -> usize {
        self.len() * self.bytes_per_image() + self.basis_t.len() * 4
    }

    /// Searches with the query's normalised vectors (`query[slot]`, the store's widths).
    ///
    /// Returns every exactly scored image as `(image, distance)`, sorted by distance then
    /// image, and the stats; `None` when the query or the store do not have the index's
    /// shape. Building the syndrome/gene/patient lists from the returned images (same-patient
    /// filter applied) gives the flat scan's lists whenever `stats.certified` is true.
    pub fn search(
        &self,
        store: &dyn VectorStore,
        query: &[Vec<f32>],
        opts: &SearchOptions,
    ) -> Option<(Vec<(usize, f32)>, SearchStats)> {
        let n = self.len();
        let shape_ok = store.len() == n
            && store.widths() == self.widths
            && query.len() == self.widths.len()
            && query.iter().zip(&self.widths).all(|(q, &w)| q.len() == w);
        if !shape_ok {
            return None;
        }
        let t = Instant::now();
        let k = self.widths.len().max(1) as f32;
        let inv = 1.0 / k.sqrt();
        let full: Vec<f32> = query.iter().flatten().map(|x| x * inv).collect();
        let mut qc = vec![0.0f32; self.dims];
        pca::matmul(1, self.dim, self.dims, &full, false, &self.basis_t, &mut qc);
        let q2: f64 = full.iter().map(|&x| f64::from(x).powi(2)).sum();
        let qc2: f64 = qc.iter().map(|&x| f64::from(x).powi(2)).sum();
        let qn = qc2.sqrt() as f32;
        let qperp = ((q2 - qc2).max(0.0) + RESIDUAL_SLACK).sqrt() as f32;

        let (lower, estimate) = self.lower_bounds(&qc, qn, qperp, opts.threads, true);
        let scan_ms = t.elapsed().as_secs_f64() * 1000.0;

        // The proven search takes images in order of their lower bound: the fewest exact
        // scores before the bounds prove the lists. A capped search takes them in order of
        // their estimated distance instead: the bounds' error terms (large when the gallery
        // spans more directions than the code has dims) would otherwise fill the cap with
        // images that are merely uncertain, not close.
        let t = Instant::now();
        let by_estimate = opts.max_exact.is_some();
        let mut pool: Vec<Candidate> = lower
            .iter()
            .zip(&estimate)
            .enumerate()
            .map(|(i, (&lower, &est))| Candidate {
                key: if by_estimate { est } else { lower },
                lower,
                image: i as u32,
            })
            .collect();
        drop((lower, estimate));
        let order =
            |a: &Candidate, b: &Candidate| a.key.total_cmp(&b.key).then(a.image.cmp(&b.image));
        let mut scored: Vec<(usize, f32)> = Vec::new();
        let mut start = 0usize;
        let mut batch = 512usize;
        let mut certified = false;
        loop {
            let mut end = (start + batch).min(pool.len());
            if let Some(cap) = opts.max_exact {
                end = end.min(start.max(cap));
            }
            if end < pool.len() {
                pool[start..].select_nth_unstable_by(end - start, order);
            }
            pool[start..end].sort_unstable_by(order);
            let ids: Vec<usize> = pool[start..end].iter().map(|p| p.image as usize).collect();
            scored.extend(exact_batch(store, query, &ids, opts.threads));
            start = end;
            scored.sort_unstable_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            let frontier = pool[start..]
                .iter()
                .map(|p| p.lower)
                .fold(f32::INFINITY, f32::min);
            if start == pool.len() || lists_full(store, &scored, frontier, opts) {
                certified = true;
                break;
            }
            if opts.max_exact.is_some_and(|cap| scored.len() >= cap) {
                break;
            }
            batch = (batch * 2).min(1 << 16);
        }
        let stats = SearchStats {
            images: n,
            exact_scored: scored.len(),
            certified,
            scan_ms,
            rerank_ms: t.elapsed().as_secs_f64() * 1000.0,
        };
        Some((scored, stats))
    }

    /// Lower bounds on the distance of the images in `range` into `out.lower`, and the
    /// estimated distances (the code term alone, no error terms) into `out.estimate`.
    /// `integer` picks the int8 scan: with `qc ~ q.scale * q.code` (error norm `q.err`),
    /// `(P Q).(s c) <= s q.scale (q.code . c) + q.err |s c|`; else the float-per-value loop,
    /// `(P Q).(s c)` from the f32 query code.
    fn scan(&self, q: &ScanQuery<'_>, range: std::ops::Range<usize>, out: ScanOut<'_>) {
        const BLOCK: usize = 512;
        let d = self.dims;
        let mut dots = [0i32; BLOCK];
        let mut proj = [0f32; BLOCK];
        let mut at = range.start;
        let chunks = out
            .lower
            .chunks_mut(BLOCK)
            .zip(out.estimate.chunks_mut(BLOCK));
        for (lower, estimate) in chunks {
            let n = lower.len();
            let codes = self.codes.get(at * d..(at + n) * d).unwrap_or_default();
            // (P Q).(s c) estimated, plus the slack of the query's own rounding
            if q.integer {
                dots_i8(codes, &q.code.code, &mut dots[..n]);
                for (k, (p, &dot)) in proj[..n].iter_mut().zip(&dots[..n]).enumerate() {
                    *p = self.scale[at + k] * q.code.scale * dot as f32;
                }
            } else {
                dots_f32(codes, q.projected, &mut proj[..n]);
                for (k, p) in proj[..n].iter_mut().enumerate() {
                    *p *= self.scale[at + k];
                }
            }
            let rounding = if q.integer { q.code.err } else { 0.0 };
            for (k, ((lo, est), &p)) in lower.iter_mut().zip(estimate).zip(&proj[..n]).enumerate() {
                let i = at + k;
                let bound = p
                    + rounding * self.code_norm[i]
                    + q.qn * self.code_err[i]
                    + q.qperp * self.residual[i];
                *lo = 1.0 - bound - MARGIN;
                *est = 1.0 - p;
            }
            at += n;
        }
    }

    /// Lower bounds and estimated distances of every image from the projected query `qc`
    /// (`dims` values), on `threads` threads; `integer` picks the int8 scan.
    fn lower_bounds(
        &self,
        qc: &[f32],
        qn: f32,
        qperp: f32,
        threads: usize,
        integer: bool,
    ) -> (Vec<f32>, Vec<f32>) {
        let n = self.len();
        let q = ScanQuery {
            code: QueryCode::new(qc),
            projected: qc,
            qn,
            qperp,
            integer,
        };
        let mut lower = vec![0.0f32; n];
        let mut estimate = vec![0.0f32; n];
        std::thread::scope(|s| {
            let mut rest_l: &mut [f32] = &mut lower;
            let mut rest_e: &mut [f32] = &mut estimate;
            for range in ranges(n, threads) {
                let (l, tail) = std::mem::take(&mut rest_l).split_at_mut(range.len());
                rest_l = tail;
                let (e, tail) = std::mem::take(&mut rest_e).split_at_mut(range.len());
                rest_e = tail;
                let q = &q;
                s.spawn(move || {
                    self.scan(
                        q,
                        range,
                        ScanOut {
                            lower: l,
                            estimate: e,
                        },
                    )
                });
            }
        });
        (lower, estimate)
    }

    /// An index of `n` seeded random codes of `dims` values (bound terms all 1/dims): for
    /// timing the scan only, its bounds mean nothing. The scan's cost does not depend on the
    /// code values, so this measures a 1M-image scan without a 1M-image gallery in memory.
    pub fn random_codes(n: usize, dims: usize, seed: u64) -> SearchIndex {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let codes = (0..n * dims)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (((x >> 32) % 255) as i32 - 127) as i8
            })
            .collect();
        let t = 1.0 / dims.max(1) as f32;
        SearchIndex {
            widths: vec![dims],
            dim: dims,
            dims,
            basis_t: Vec::new(),
            codes,
            scale: vec![t; n],
            code_err: vec![t; n],
            residual: vec![t; n],
            code_norm: vec![t; n],
        }
    }

    /// Times one full code scan of `projected` (`dims` values, the query already projected)
    /// on `threads` threads; `integer` picks the int8 scan, else the float-per-value loop.
    /// Returns the lower bounds (for a checksum) and the time (ms). For benchmarks.
    pub fn time_scan(&self, projected: &[f32], threads: usize, integer: bool) -> (Vec<f32>, f64) {
        let t = Instant::now();
        let (lower, _) = self.lower_bounds(projected, 0.5, 0.5, threads, integer);
        (lower, t.elapsed().as_secs_f64() * 1000.0)
    }

    /// Times the integer scan plus the selection of the `cap` smallest estimates (the part of a
    /// capped search before its exact re-rank). Returns the selected images and the time (ms).
    pub fn time_scan_select(
        &self,
        projected: &[f32],
        threads: usize,
        cap: usize,
    ) -> (Vec<u32>, f64) {
        let t = Instant::now();
        let (_, estimate) = self.lower_bounds(projected, 0.5, 0.5, threads, true);
        let mut pool: Vec<(f32, u32)> = estimate
            .iter()
            .enumerate()
            .map(|(i, &b)| (b, i as u32))
            .collect();
        let cap = cap.min(pool.len());
        if cap < pool.len() {
            pool.select_nth_unstable_by(cap, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        }
        let ids = pool[..cap].iter().map(|p| p.1).collect();
        (ids, t.elapsed().as_secs_f64() * 1000.0)
    }
}

/// An image waiting for its exact score: the order key (lower bound or estimate) and its
/// lower bound.
#[derive(Clone, Copy)]
struct Candidate {
    key: f32,
    lower: f32,
    image: u32,
}

/// The query as the scan reads it.
struct ScanQuery<'a> {
    code: QueryCode,
    projected: &'a [f32],
    qn: f32,
    qperp: f32,
    integer: bool,
}

/// One scan worker's output slices (one range of images).
struct ScanOut<'a> {
    lower: &'a mut [f32],
    estimate: &'a mut [f32],
}

/// One coding worker's output slices (one range of images).
struct CodeOut<'a> {
    codes: &'a mut [i8],
    scale: &'a mut [f32],
    err: &'a mut [f32],
    res: &'a mut [f32],
    norm: &'a mut [f32],
}

/// Codes the images of `range` (outputs are that range's slices).
fn code_range(
    store: &dyn VectorStore,
    widths: &[usize],
    basis_t: &[f32],
    dim: usize,
    dims: usize,
    range: std::ops::Range<usize>,
    out: CodeOut<'_>,
) {
    let CodeOut {
        codes,
        scale,
        err,
        res,
        norm,
    } = out;
    const BLOCK: usize = 1024;
    let mut rows = vec![0.0f32; BLOCK * dim];
    let mut y = vec![0.0f32; BLOCK * dims];
    let first = range.start;
    let mut at = range.start;
    while at < range.end {
        let len = BLOCK.min(range.end - at);
        for r in 0..len {
            fill_row(store, at + r, widths, &mut rows[r * dim..(r + 1) * dim]);
        }
        pca::matmul(len, dim, dims, &rows, false, basis_t, &mut y);
        for r in 0..len {
            let local = at + r - first;
            let g2: f64 = rows[r * dim..(r + 1) * dim]
                .iter()
                .map(|&x| f64::from(x).powi(2))
                .sum();
            let yr = &y[r * dims..(r + 1) * dims];
            let max = yr.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            let s = max / 127.0;
            let (mut e2, mut y2, mut c2) = (0.0f64, 0.0f64, 0.0f64);
            for (j, &v) in yr.iter().enumerate() {
                let q = if s > 0.0 {
                    (v / s).round().clamp(-127.0, 127.0)
                } else {
                    0.0
                };
                codes[local * dims + j] = q as i8;
                e2 += (f64::from(v) - f64::from(q) * f64::from(s)).powi(2);
                y2 += f64::from(v).powi(2);
                c2 += f64::from(q).powi(2);
            }
            norm[local] = (c2.sqrt() * f64::from(s)) as f32 * (1.0 + 1e-6);
            scale[local] = s;
            err[local] = e2.sqrt() as f32;
            res[local] = ((g2 - y2).max(0.0) + RESIDUAL_SLACK).sqrt() as f32;
        }
        at += len;
    }
}

#[cfg(test)]
#[path = "search_tests.rs"]
mod tests;
