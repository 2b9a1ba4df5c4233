//! Synthetic galleries for benchmarks: `n` images with seeded random unit vectors under the
//! given keys, written straight in the gallery file layout (format version 1) so that
//! galleries of a million images are made in seconds (adding them one by one through
//! `Gallery::add` checks every earlier image id, which is quadratic).
//!
//! Consumes a bundle id, keys and a size; produces file bytes that `Gallery::from_bytes`
//! reads and checks like any other gallery. Used by `gestalt-edge bench` and benches/stages.rs.

use gestalt_edge::gallery::{format, quant, Gene, ImageEntry, KeySpec, Storage, Syndrome};

/// Mirrors the gallery body (field order is the postcard layout).
#[derive(serde::Serialize)]
struct Data<'a> {
    bundle_id: &'a str,
    gallery_version: &'a str,
    revision: u32,
    keys: &'a [KeySpec],
    storage: Storage,
    syndromes: Vec<Syndrome>,
    genes: Vec<Gene>,
    subjects: Vec<String>,
    images: Vec<ImageEntry>,
    #[serde(with = "serde_bytes_ref")]
    embeddings: Vec<u8>,
}

#[derive(serde::Serialize)]
enum Body<'a> {
    V1(Data<'a>),
}

#[derive(serde::Serialize)]
struct Header {
    magic: [u8; 8],
    format_version: u16,
}

mod serde_bytes_ref {
    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }
}

/// Gallery file bytes: `n` images of `n / 10 + 1` syndromes, one subject each, vectors
/// drawn from `seed` (uniform in [-1, 1)) and stored as `storage`.
pub fn synthetic_gallery(
    bundle_id: &str,
    keys: &[KeySpec],
    n: usize,
    storage: Storage,
    seed: u64,
) -> Vec<u8> {
    let mut rng = gestalt_edge::bundle::synth::Rng::new(seed);
    let n_syn = n / 10 + 1;
    let syndromes = (0..n_syn)
        .map(|i| Syndrome {
            name: format!("syndrome {i}"),
            omim: Some(100000 + i as u32),
        })
        .collect();
    let subjects = (0..n).map(|i| format!("s{i}")).collect();
    let images = (0..n)
        .map(|i| ImageEntry {
            image_id: format!("img{i}"),
            subject: i as u32,
            syndrome: (i % n_syn) as u32,
            genes: Vec::new(),
        })
        .collect();
    let per: usize = keys
        .iter()
        .map(|k| quant::vector_bytes(storage, k.width).unwrap_or(0))
        .sum();
    let mut embeddings = Vec::with_capacity(n * per);
    let mut v = Vec::new();
    for _ in 0..n {
        for k in keys {
            v.clear();
            v.extend((0..k.width).map(|_| (rng.uniform() * 2.0 - 1.0) as f32));
            // finite values within the f16 range always encode
            let _ = quant::encode(storage, &v, &mut embeddings);
        }
    }
    let header = Header {
        magic: format::MAGIC,
        format_version: format::FORMAT_VERSION,
    };
    let body = Body::V1(Data {
        bundle_id,
        gallery_version: "synthetic",
        revision: 0,
        keys,
        storage,
        syndromes,
        genes: Vec::new(),
        subjects,
        images,
        embeddings,
    });
    let mut out = postcard::to_allocvec(&header).unwrap_or_default();
    out.extend(postcard::to_allocvec(&body).unwrap_or_default());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}
