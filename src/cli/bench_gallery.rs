//! Synthetic galleries for benchmarks: `n` images with seeded random vectors under the given
//! keys, built through `Gallery::new` + `Gallery::add` and encoded by `Gallery::to_bytes`, so
//! they go through the same checks and file layout as any other gallery.
//!
//! Consumes a bundle id, keys and a size; produces file bytes that `Gallery::from_bytes`
//! reads. Used by `gestalt-edge bench` and benches/stages.rs.

use std::fmt::Write as _;

use gestalt_edge::embed::Embeddings;
use gestalt_edge::gallery::{Case, Gallery, KeySpec, Storage};

/// Gallery file bytes: `n` images (`img0`, `img1`, ...) of `n / 10 + 1` syndromes (image
/// `i` has syndrome `i % (n / 10 + 1)`, OMIM `100000 +` that number), one subject each
/// (`s<i>`), no genes, vectors drawn from `seed` (uniform in [-1, 1), image by image, key by
/// key) and stored as `storage`. Same arguments, same bytes.
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
    let mut rng = gestalt_edge::bundle::synth::Rng::new(seed);
    let n_syn = n / 10 + 1;
    let mut emb = Embeddings {
        entries: keys
            .iter()
            .map(|k| (k.key.clone(), Vec::with_capacity(k.width as usize)))
            .collect(),
    };
    let mut case = Case::default();
    for i in 0..n {
        for ((_, v), k) in emb.entries.iter_mut().zip(keys) {
            v.clear();
            v.extend((0..k.width).map(|_| (rng.uniform() * 2.0 - 1.0) as f32));
        }
        let syn = i % n_syn;
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
