//! Structured synthetic galleries for search tests and benchmarks, at sizes no real gallery
//! here reaches (up to 1M images x 12 keys x 512).
//!
//! Consumes key widths (grouped by model), a size and a seed; produces a [`SyntheticStore`]
//! ([`VectorStore`]) whose vectors are built like real embeddings: per model a shared mean
//! direction, a syndrome centroid, a subject offset and per-view noise, mixed so that a new
//! patient's nearest image of its own syndrome is at distance ~0.3-0.5 and other syndromes at
//! ~0.7-1.0. Vectors are stored as int8 with one f32 factor per vector chosen so that the
//! decoded vector has unit norm (1 byte per value, like `Storage::I8`). Same seed, same data.

use super::search::{dot, VectorStore};
use std::collections::HashSet;

/// Energy shares (sum 1) of the mean direction, syndrome centroid, subject offset, view noise.
const MIX: [f32; 4] = [0.15, 0.30, 0.35, 0.20];

/// xorshift64* numbers for the generator (fast; quality is ample for test data).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Roughly normal numbers (sum of two uniforms in -1..1, variance 2/3).
    pub fn normal(&mut self) -> f32 {
        let mut u = || {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        };
        u() + u()
    }
}

/// `n` unit vectors of width `w`, concatenated.
fn unit_vectors(n: usize, w: usize, rng: &mut Rng) -> Vec<f32> {
    let mut out = Vec::with_capacity(n * w);
    for _ in 0..n {
        let v: Vec<f32> = (0..w).map(|_| rng.normal()).collect();
        let norm = dot(&v, &v).sqrt().max(1e-12);
        out.extend(v.iter().map(|x| x / norm));
    }
    out
}

/// The generative model: per model (group of keys) the directions shared by images.
#[derive(Debug, Clone)]
pub struct Model {
    /// Per slot: the model group it belongs to and its width.
    slots: Vec<(usize, usize)>,
    /// Per group: mean direction, then `syndromes` centroids (unit vectors, concatenated).
    groups: Vec<Vec<f32>>,
    syndromes: usize,
}

impl Model {
    /// `slots[i] = (model group, width)`; slots of one group must share the width.
    pub fn new(slots: &[(usize, usize)], syndromes: usize, seed: u64) -> Model {
        let mut rng = Rng::new(seed);
        let n_groups = slots.iter().map(|s| s.0 + 1).max().unwrap_or(0);
        let groups = (0..n_groups)
            .map(|g| {
                let w = slots.iter().find(|s| s.0 == g).map_or(0, |s| s.1);
                unit_vectors(1 + syndromes, w, &mut rng)
            })
            .collect();
        Model {
            slots: slots.to_vec(),
            groups,
            syndromes,
        }
    }

    /// One image's vectors (per slot, not normalised) of `syndrome` for a subject whose offset
    /// is drawn from `subject_seed` (same seed, same patient), view noise from `rng`.
    pub fn image(&self, syndrome: usize, subject_seed: u64, rng: &mut Rng) -> Vec<Vec<f32>> {
        let mut subject_rng = Rng::new(subject_seed);
        let offsets: Vec<Vec<f32>> = self
            .groups
            .iter()
            .enumerate()
            .map(|(g, _)| {
                let w = self.slots.iter().find(|s| s.0 == g).map_or(0, |s| s.1);
                unit_vectors(1, w, &mut subject_rng)
            })
            .collect();
        let s = syndrome % self.syndromes.max(1);
        let [a, b, c, e] = MIX.map(f32::sqrt);
        self.slots
            .iter()
            .map(|&(g, w)| {
                let dirs = &self.groups[g];
                let mean = &dirs[..w];
                let centroid = &dirs[(1 + s) * w..(2 + s) * w];
                let noise = unit_vectors(1, w, rng);
                (0..w)
                    .map(|j| a * mean[j] + b * centroid[j] + c * offsets[g][j] + e * noise[j])
                    .collect()
            })
            .collect()
    }
}

/// A synthetic gallery held as unit-norm int8 vectors (see the module docs).
#[derive(Debug, Clone)]
pub struct SyntheticStore {
    widths: Vec<usize>,
    /// Image-major, then slot: int8 values.
    codes: Vec<i8>,
    /// Image-major, then slot: factor making the decoded vector unit norm.
    factors: Vec<f32>,
    syndromes: Vec<u32>,
    subjects: Vec<u32>,
    n_syndromes: usize,
    n_subjects: usize,
}

impl SyntheticStore {
    /// `n` images of `model`: image `i` has syndrome `i % syndromes` and subject `i / 2`
    /// (two photos per patient), noise from `seed`. Memory: `n x (sum widths + 4 x slots)`.
    pub fn generate(model: &Model, n: usize, seed: u64) -> SyntheticStore {
        let widths: Vec<usize> = model.slots.iter().map(|s| s.1).collect();
        let per_image: usize = widths.iter().sum();
        let mut store = SyntheticStore {
            codes: Vec::with_capacity(n * per_image),
            factors: Vec::with_capacity(n * widths.len()),
            syndromes: Vec::with_capacity(n),
            subjects: Vec::with_capacity(n),
            widths,
            n_syndromes: model.syndromes.min(n),
            n_subjects: n.div_ceil(2),
        };
        let mut rng = Rng::new(seed);
        for i in 0..n {
            let syndrome = i % model.syndromes.max(1);
            let subject = i / 2;
            let vectors = model.image(syndrome, seed ^ ((subject as u64 + 1) << 20), &mut rng);
            for v in &vectors {
                let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
                let s = if max > 0.0 { 127.0 / max } else { 0.0 };
                let q: Vec<i8> = v
                    .iter()
                    .map(|x| (x * s).round().clamp(-127.0, 127.0) as i8)
                    .collect();
                let norm = q.iter().map(|&x| f32::from(x).powi(2)).sum::<f32>().sqrt();
                store
                    .factors
                    .push(if norm > 0.0 { 1.0 / norm } else { 0.0 });
                store.codes.extend_from_slice(&q);
            }
            store.syndromes.push(syndrome as u32);
            store.subjects.push(subject as u32);
        }
        store
    }
}

impl VectorStore for SyntheticStore {
    fn len(&self) -> usize {
        self.syndromes.len()
    }

    fn widths(&self) -> Vec<usize> {
        self.widths.clone()
    }

    fn vector<'a>(&'a self, image: usize, slot: usize, buf: &'a mut Vec<f32>) -> &'a [f32] {
        let per_image: usize = self.widths.iter().sum();
        let at = image * per_image + self.widths[..slot].iter().sum::<usize>();
        let w = self.widths.get(slot).copied().unwrap_or(0);
        let f = self
            .factors
            .get(image * self.widths.len() + slot)
            .copied()
            .unwrap_or(0.0);
        buf.clear();
        if let Some(q) = self.codes.get(at..at + w) {
            buf.extend(q.iter().map(|&x| f32::from(x) * f));
        }
        buf
    }

    fn syndrome(&self, image: usize) -> u32 {
        self.syndromes.get(image).copied().unwrap_or(u32::MAX)
    }

    fn subject(&self, image: usize) -> u32 {
        self.subjects.get(image).copied().unwrap_or(u32::MAX)
    }

    fn genes(&self, _image: usize) -> &[u32] {
        &[]
    }

    fn table_sizes(&self) -> [usize; 3] {
        [self.n_syndromes, self.n_subjects, 0]
    }
}

/// L2-normalised copies of `vectors` (the query form the search takes).
pub fn normalised(vectors: &[Vec<f32>]) -> Vec<Vec<f32>> {
    vectors
        .iter()
        .map(|v| {
            let norm = v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
            let inv = if norm > 0.0 { 1.0 / norm } else { 0.0 };
            v.iter().map(|&x| (f64::from(x) * inv) as f32).collect()
        })
        .collect()
}

/// The top `top` syndromes as `(syndrome, image, distance)` from `(image, distance)` pairs
/// sorted by distance then image, skipping images closer than `same_patient_threshold`.
pub fn top_syndromes(
    store: &dyn VectorStore,
    sorted: &[(usize, f32)],
    top: usize,
    same_patient_threshold: Option<f32>,
) -> Vec<(u32, usize, f32)> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for &(i, d) in sorted {
        if out.len() >= top {
            break;
        }
        if same_patient_threshold.is_some_and(|t| d < t) {
            continue;
        }
        if seen.insert(store.syndrome(i)) {
            out.push((store.syndrome(i), i, d));
        }
    }
    out
}
