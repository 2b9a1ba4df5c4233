//! Fusion: several photos of one patient as one query.
//!
//! Consumes the [`Embeddings`] of each photo (same keys, from one bundle); produces one
//! [`Embeddings`]: per key, every photo's vector L2-normalised, averaged, and the mean
//! normalised again. The result is a unit vector per key like any single photo's, so ranking,
//! the gallery-search index and its exactness proof apply unchanged. Also measures whether
//! the photos look like one person ([`consistency`]: their own pairwise mean cosine
//! distances), because fusing two people's photos gives a query that resembles neither.

use serde::Serialize;

use crate::embed::Embeddings;
use crate::rank::cosine_distance;
use crate::{Error, Result};

/// Pairwise distance above which two photos are flagged as possibly different people.
///
/// Mean key-paired cosine distance; with the demo bundle (YuNet + SFace) photos of one person
/// taken years apart lie at 0.23-0.39 and different people at 0.77 and more; the midpoint
/// keeps a margin on both sides. Bundles whose models spread faces differently set their own
/// value through the caller.
pub const DEFAULT_CONSISTENCY_DISTANCE: f32 = 0.6;

/// Fuses the embeddings of several photos (see the module docs).
///
/// Errors ([`Error::Usage`]): no photo, or photos whose keys or widths differ (the key order of
/// the first photo is kept; the others are paired by key).
pub fn fuse(photos: &[Embeddings]) -> Result<Embeddings> {
    let first = photos
        .first()
        .ok_or_else(|| Error::Usage("nothing to fuse: no photo has embeddings".into()))?;
    let mut entries = Vec::with_capacity(first.entries.len());
    for (key, v0) in &first.entries {
        let mut sum = vec![0f64; v0.len()];
        for (n, p) in photos.iter().enumerate() {
            let v = p.get(key).ok_or_else(|| {
                Error::Usage(format!("photo {} has no embedding for key {key}", n + 1))
            })?;
            if v.len() != v0.len() || p.entries.len() != first.entries.len() {
                return Err(Error::Usage(format!(
                    "photo {} was embedded with other keys or widths than photo 1",
                    n + 1
                )));
            }
            let norm = v
                .iter()
                .map(|&x| f64::from(x) * f64::from(x))
                .sum::<f64>()
                .sqrt();
            if !(norm.is_finite() && norm > 0.0) {
                return Err(Error::Usage(format!(
                    "photo {} has a zero or non-finite embedding for key {key}",
                    n + 1
                )));
            }
            for (s, &x) in sum.iter_mut().zip(v) {
                *s += f64::from(x) / norm;
            }
        }
        let norm = sum.iter().map(|s| s * s).sum::<f64>().sqrt();
        let fused = if norm > 0.0 {
            sum.iter().map(|s| (s / norm) as f32).collect()
        } else {
            // opposite unit vectors cancel: no direction survives
            return Err(Error::Usage(format!(
                "the photos' embeddings for key {key} cancel out; they cannot be fused"
            )));
        };
        entries.push((key.clone(), fused));
    }
    Ok(Embeddings { entries })
}

/// The distance between two photos of the fused set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairDistance {
    /// Position of the first photo in the fused list (0-based).
    pub a: usize,
    /// Position of the second.
    pub b: usize,
    /// Mean key-paired cosine distance.
    pub distance: f32,
}

/// Whether the fused photos look like one person.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Consistency {
    /// False when some pair is farther apart than `threshold`.
    pub consistent: bool,
    /// The threshold applied.
    pub threshold: f32,
    /// The largest pairwise distance (0 for one photo).
    pub max_distance: f32,
    /// Every pair, in order (0,1), (0,2), ..., (1,2), ...
    pub pairs: Vec<PairDistance>,
}

/// Mean key-paired cosine distance between two photos' embeddings (keys paired by name).
/// Errors as [`fuse`] when a key is missing.
pub fn photo_distance(a: &Embeddings, b: &Embeddings) -> Result<f32> {
    if a.entries.is_empty() {
        return Err(Error::Usage("a photo has no embeddings".into()));
    }
    let mut sum = 0f64;
    for (k, va) in &a.entries {
        let vb = b
            .get(k)
            .ok_or_else(|| Error::Usage(format!("a photo has no embedding for key {k}")))?;
        sum += f64::from(cosine_distance(va, vb));
    }
    Ok((sum / a.entries.len() as f64) as f32)
}

/// The pairwise distances of `photos` against `threshold`.
pub fn consistency(photos: &[Embeddings], threshold: f32) -> Result<Consistency> {
    let mut pairs = Vec::new();
    for a in 0..photos.len() {
        for b in a + 1..photos.len() {
            let distance = photo_distance(&photos[a], &photos[b])?;
            pairs.push(PairDistance { a, b, distance });
        }
    }
    let max_distance = pairs.iter().map(|p| p.distance).fold(0f32, f32::max);
    Ok(Consistency {
        consistent: pairs.iter().all(|p| p.distance <= threshold),
        threshold,
        max_distance,
        pairs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::Key;

    fn key(m: &str) -> Key {
        Key {
            model: m.into(),
            flip: false,
            gray: false,
        }
    }

    fn emb(a: [f32; 2], b: [f32; 3]) -> Embeddings {
        Embeddings {
            entries: vec![(key("a"), a.to_vec()), (key("b"), b.to_vec())],
        }
    }

    fn close(x: &[f32], y: &[f32]) -> bool {
        x.iter().zip(y).all(|(p, q)| (p - q).abs() < 1e-6)
    }

    #[test]
    fn averages_unit_vectors_per_key_and_renormalises() {
        // key a: (3,4)/5 and (0,2)/2 -> mean (0.3, 0.9) -> /sqrt(0.9) ; key b: e1 and e2
        let p = [
            emb([3.0, 4.0], [5.0, 0.0, 0.0]),
            emb([0.0, 2.0], [0.0, 0.5, 0.0]),
        ];
        let f = fuse(&p).unwrap();
        let n = 0.9f32.sqrt();
        assert!(
            close(f.get(&key("a")).unwrap(), &[0.3 / n, 0.9 / n]),
            "{f:?}"
        );
        let h = std::f32::consts::FRAC_1_SQRT_2;
        assert!(close(f.get(&key("b")).unwrap(), &[h, h, 0.0]), "{f:?}");
        // the scale of a photo's vector does not weigh it
        let q = [emb([30.0, 40.0], [50.0, 0.0, 0.0]), p[1].clone()];
        assert!(close(
            fuse(&q).unwrap().get(&key("a")).unwrap(),
            f.get(&key("a")).unwrap()
        ));
        // one photo: its normalised vectors
        let one = fuse(&p[..1]).unwrap();
        assert!(close(one.get(&key("a")).unwrap(), &[0.6, 0.8]));
    }

    #[test]
    fn pairs_keys_by_name_and_refuses_mismatches() {
        let a = emb([1.0, 0.0], [1.0, 0.0, 0.0]);
        let mut b = a.clone();
        b.entries.reverse();
        let f = fuse(&[a.clone(), b]).unwrap();
        assert_eq!(f.entries[0].0, key("a"));
        let mut c = a.clone();
        c.entries.pop();
        assert!(matches!(fuse(&[a.clone(), c]), Err(Error::Usage(_))));
        assert!(fuse(&[]).is_err());
        let opposite = emb([-1.0, 0.0], [1.0, 0.0, 0.0]);
        assert!(fuse(&[a.clone(), opposite]).is_err());
        let zero = emb([0.0, 0.0], [1.0, 0.0, 0.0]);
        assert!(fuse(&[a, zero]).is_err());
    }

    #[test]
    fn consistency_flags_distant_pairs() {
        let a = emb([1.0, 0.0], [1.0, 0.0, 0.0]);
        let near = emb([1.0, 0.1], [1.0, 0.1, 0.0]);
        let far = emb([0.0, 1.0], [0.0, 1.0, 0.0]);
        let c = consistency(&[a.clone(), near.clone()], 0.6).unwrap();
        assert!(c.consistent && c.max_distance < 0.01, "{c:?}");
        let c = consistency(&[a, near, far], 0.6).unwrap();
        assert!(!c.consistent);
        assert_eq!(c.pairs.len(), 3);
        assert!((c.max_distance - 1.0).abs() < 0.01, "{c:?}");
        assert_eq!((c.pairs[1].a, c.pairs[1].b), (0, 2));
    }
}
