//! Key-paired cosine distances between a query and every gallery image.
//!
//! Consumes the query [`Embeddings`] and a [`Gallery`] (its stored vectors, normalised as
//! they are read);
//! produces one distance per gallery image: the plain mean over the gallery's keys of
//! `1 - cos(query[key], image[key])`, always pairing vectors by key, never by position.

use super::search::dot;
use crate::embed::Embeddings;
use crate::gallery::Gallery;
use crate::{Error, Result};

/// Cosine distance `1 - a.b / (|a| |b|)`, in `0..=2`.
///
/// A zero vector on either side, or slices of different lengths, give 1.0 (no similarity
/// can be claimed). Accumulates in f64.
pub fn cosine_distance(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return 1.0;
    }
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        return 1.0;
    }
    (1.0 - ab / (aa.sqrt() * bb.sqrt())) as f32
}

/// The mean key-paired cosine distance from `query` to each gallery image, in gallery image
/// order (`gallery.len()` values).
///
/// Keys of the query that the gallery does not store are ignored. Errors: a gallery key
/// missing from the query, or a width mismatch, is an [`Error::Gallery`] (the gallery was
/// made with another bundle or other keys); non-finite query values are an
/// [`Error::Usage`].
pub fn distances(query: &Embeddings, gallery: &Gallery) -> Result<Vec<f32>> {
    distances_on(query, gallery, 1)
}

/// [`distances`] with the gallery split into `threads` runs of images, one per thread.
/// Every image's sum is made by one thread in key order, so the results are the same on any
/// number of threads.
pub fn distances_on(query: &Embeddings, gallery: &Gallery, threads: usize) -> Result<Vec<f32>> {
    let n = gallery.len();
    let q = query_vectors(query, gallery)?;
    let mut sum = vec![0.0f32; n];
    // image by image, each image's keys in key order: the same sums as key by key
    let scan = |first: usize, part: &mut [f32]| {
        gallery.scan_images(first..first + part.len(), |i, slot, g| {
            if let (Some(s), Some(q)) = (part.get_mut(i - first), q.get(slot)) {
                *s += 1.0 - dot(q, g);
            }
        })
    };
    // below a few thousand images a thread costs more than it saves
    let threads = threads.clamp(1, n.div_ceil(2048).max(1));
    if threads == 1 {
        scan(0, &mut sum);
    } else {
        let per = n.div_ceil(threads);
        std::thread::scope(|s| {
            for (t, part) in sum.chunks_mut(per).enumerate() {
                let scan = &scan;
                s.spawn(move || scan(t * per, part));
            }
        });
    }
    let k = gallery.keys().len().max(1) as f32;
    Ok(sum.into_iter().map(|s| s / k).collect())
}

/// The query's vectors in gallery key order, L2-normalised (a zero vector stays zero), after
/// checking them against the gallery and its search index. Errors as [`distances`].
pub fn query_vectors(query: &Embeddings, gallery: &Gallery) -> Result<Vec<Vec<f32>>> {
    let n = gallery.len();
    let mismatch = |reason: String| {
        Error::gallery(
            gallery.display_path(),
            format!(
                "{reason}; the gallery was made with another bundle or other keys \
                 (gallery bundle '{}')",
                gallery.bundle_id()
            ),
        )
    };
    let mut out = Vec::with_capacity(gallery.keys().len());
    for (slot, spec) in gallery.keys().iter().enumerate() {
        let raw = query
            .get(&spec.key)
            .ok_or_else(|| mismatch(format!("the query has no embedding for key {}", spec.key)))?;
        if raw.len() as u64 != u64::from(spec.width) {
            return Err(mismatch(format!(
                "the query embedding for key {} has {} values, the gallery stores {}",
                spec.key,
                raw.len(),
                spec.width
            )));
        }
        if raw.iter().any(|x| !x.is_finite()) {
            return Err(Error::Usage(format!(
                "the query embedding for key {} holds non-finite values",
                spec.key
            )));
        }
        gallery
            .inv_norms(slot)
            .filter(|f| f.len() == n)
            .ok_or_else(|| mismatch(format!("the search index for key {} is missing", spec.key)))?;
        let mut q = Vec::new();
        normalise_into(raw, &mut q);
        out.push(q);
    }
    Ok(out)
}

/// `v / |v|` into `out` (norm in f64); a zero vector gives zeros.
fn normalise_into(v: &[f32], out: &mut Vec<f32>) {
    out.clear();
    let norm = v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
    let inv = if norm > 0.0 { 1.0 / norm } else { 0.0 };
    out.extend(v.iter().map(|&x| (f64::from(x) * inv) as f32));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gallery::tests::{case, key, random_emb, spec, Rng};
    use crate::gallery::{Gallery, Storage};

    #[test]
    fn cosine_distance_by_hand() {
        assert!((cosine_distance(&[1.0, 0.0], &[0.0, 2.0]) - 1.0).abs() < 1e-7);
        assert!(cosine_distance(&[1.0, 1.0], &[2.0, 2.0]).abs() < 1e-7);
        assert!((cosine_distance(&[1.0, 0.0], &[-3.0, 0.0]) - 2.0).abs() < 1e-7);
        // cos = (3*4 + 4*3) / 25 = 0.96
        assert!((cosine_distance(&[3.0, 4.0], &[4.0, 3.0]) - 0.04).abs() < 1e-6);
        assert_eq!(cosine_distance(&[0.0, 0.0], &[1.0, 2.0]), 1.0);
        assert_eq!(cosine_distance(&[1.0], &[1.0, 2.0]), 1.0);
    }

    #[test]
    fn dot_handles_remainders() {
        let a: Vec<f32> = (0..19).map(|i| i as f32).collect();
        let want: f32 = a.iter().map(|x| x * x).sum();
        assert_eq!(dot(&a, &a), want);
    }

    #[test]
    fn index_distances_match_the_plain_formula() {
        for storage in [Storage::F16, Storage::I8] {
            let keys = vec![
                spec("a", false, 37),
                spec("a", true, 37),
                spec("b", false, 8),
            ];
            let mut g = Gallery::new("b", "v", keys, storage).unwrap();
            let mut rng = Rng::new(11);
            for i in 0..10 {
                let e = random_emb(&g, &mut rng);
                g.add(&case(&format!("i{i}"), "s", None), &e).unwrap();
            }
            let mut query = random_emb(&g, &mut rng);
            query.entries.rotate_left(1);
            query
                .entries
                .push((key("unused", false, false), vec![1.0; 3]));
            let got = distances(&query, &g).unwrap();
            assert_eq!(got.len(), 10);
            for (i, d) in got.iter().enumerate() {
                let stored = g.embeddings(i).unwrap();
                let want = g
                    .keys()
                    .iter()
                    .map(|s| {
                        cosine_distance(query.get(&s.key).unwrap(), stored.get(&s.key).unwrap())
                    })
                    .sum::<f32>()
                    / 3.0;
                assert!(
                    (d - want).abs() < 1e-5,
                    "{storage} image {i}: {d} vs {want}"
                );
            }
        }
    }
}
