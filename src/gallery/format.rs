//! The gallery file layout, version 2 (version 1 still read).
//!
//! Consumes a [`Gallery`] (to write) or the bytes of a file (to read); produces the other.
//! Layout, all postcard:
//!
//! ```text
//! Header { magic: [u8; 8] = b"GESTALTG", format_version: u16 = 1 }
//! Body::V2 { bundle_id, gallery_version, revision, keys, storage, syndromes,
//!            pp4 (per syndrome: four optional gestalt-score thresholds),
//!            genes, subjects, images, embeddings (length-prefixed raw bytes) }
//! (Body::V1: the same without pp4; the header says which body follows)
//! CRC-32 (IEEE, crc32fast) of every preceding byte, little-endian u32
//! ```
//!
//! postcard has no schema evolution: a new layout adds a `Body` variant and bumps the header
//! version; readers keep decoding the old variants.

use super::{check_keys, image_bytes, inv_norm, quant, Data, Gallery, Lookup};
use crate::{Error, Result};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// First eight bytes of every gallery file.
pub(crate) const MAGIC: [u8; 8] = *b"GESTALTG";

/// The format version this build writes (and the newest it reads).
pub const FORMAT_VERSION: u16 = 2;

/// The oldest format version this build still reads.
pub const OLDEST_READ_VERSION: u16 = 1;

/// Magic, one varint byte of version, at least one byte of body, the CRC.
pub(crate) const MIN_LEN: usize = MAGIC.len() + 1 + 1 + 4;

#[derive(serde::Serialize, serde::Deserialize)]
struct Header {
    magic: [u8; 8],
    format_version: u16,
}

/// The body as read: one variant per layout version (postcard's variant index).
#[derive(serde::Deserialize)]
enum Body {
    V1(DataV1),
    V2(Data),
}

/// The body as written; encodes exactly like [`Body`] without cloning the data.
#[derive(serde::Serialize)]
enum BodyRef<'a> {
    #[allow(dead_code)]
    V1(&'a DataV1),
    V2(&'a Data),
}

/// The body of format version 1: [`Data`] without PP4 thresholds.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct DataV1 {
    bundle_id: String,
    gallery_version: String,
    revision: u32,
    keys: Vec<super::KeySpec>,
    storage: super::Storage,
    syndromes: Vec<super::Syndrome>,
    genes: Vec<super::Gene>,
    subjects: Vec<String>,
    images: Vec<super::ImageEntry>,
    #[serde(with = "raw_bytes")]
    embeddings: Vec<u8>,
}

impl From<DataV1> for Data {
    fn from(d: DataV1) -> Data {
        Data {
            pp4: vec![Default::default(); d.syndromes.len()],
            bundle_id: d.bundle_id,
            gallery_version: d.gallery_version,
            revision: d.revision,
            keys: d.keys,
            storage: d.storage,
            syndromes: d.syndromes,
            genes: d.genes,
            subjects: d.subjects,
            images: d.images,
            embeddings: d.embeddings,
        }
    }
}

/// The revision stored in the first bytes of a gallery file (header, body tag, bundle id,
/// version label, revision), without reading the rest; `None` when they do not hold one.
/// Writers use it to see whether the file changed under them ([`super::lock`]).
pub(crate) fn peek_revision(head: &[u8]) -> Option<u32> {
    let (header, rest): (Header, &[u8]) = postcard::take_from_bytes(head).ok()?;
    if header.magic != MAGIC {
        return None;
    }
    // Body::V1 and Body::V2 both begin with the bundle id, the label and the revision
    let (tag, rest): (u32, &[u8]) = postcard::take_from_bytes(rest).ok()?;
    if tag > 1 {
        return None;
    }
    let (_, rest): (&str, &[u8]) = postcard::take_from_bytes(rest).ok()?;
    let (_, rest): (&str, &[u8]) = postcard::take_from_bytes(rest).ok()?;
    let (revision, _): (u32, &[u8]) = postcard::take_from_bytes(rest).ok()?;
    Some(revision)
}

impl Gallery {
    /// The complete file content: header, body, CRC-32.
    pub fn to_bytes(&self) -> Vec<u8> {
        let header = Header {
            magic: MAGIC,
            format_version: FORMAT_VERSION,
        };
        // Serialising plain structs into a Vec cannot fail; an empty result would be caught
        // by the reader's length and checksum checks anyway.
        let mut out = postcard::to_allocvec(&header).unwrap_or_default();
        let body = postcard::to_extend(&BodyRef::V2(&self.data), Vec::new()).unwrap_or_default();
        out.extend_from_slice(&body);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads a gallery from the bytes of a file; `path` names it in errors and becomes
    /// [`Gallery::source`].
    ///
    /// Checks, in order, each failure an [`Error::Gallery`] with its own message: length and
    /// magic, format version, CRC-32, the table sizes against the bytes that remain, each other
    /// and a memory budget ([`super::skim`], before anything is allocated), body decoding,
    /// table consistency (indices in range, unique keys and names, blob length, finite values).
    pub fn from_bytes(bytes: &[u8], path: impl AsRef<Path>) -> Result<Gallery> {
        let path = path.as_ref();
        let (data, blob) = Gallery::decode_tables(bytes, path)?;
        finish(data, bytes[blob].to_vec(), path)
    }

    /// [`Gallery::from_bytes`] of a file's bytes it owns: the stored vectors stay where they
    /// are in `bytes` (the tables before them are dropped), so the vectors are never held
    /// twice while a gallery is read.
    pub fn from_vec(mut bytes: Vec<u8>, path: impl AsRef<Path>) -> Result<Gallery> {
        let path = path.as_ref();
        let (data, blob) = Gallery::decode_tables(&bytes, path)?;
        bytes.truncate(blob.end);
        bytes.drain(..blob.start);
        finish(data, bytes, path)
    }

    /// The checks of [`Gallery::from_bytes`] up to the decoded tables (without the stored
    /// vectors, which the decoder skips) and where the vectors lie in `bytes`.
    fn decode_tables(bytes: &[u8], path: &Path) -> Result<(Data, std::ops::Range<usize>)> {
        let fail = |reason: String| Error::gallery(path, reason);
        if bytes.len() < MIN_LEN {
            return Err(fail(
                if bytes.starts_with(&MAGIC) || MAGIC.starts_with(bytes) {
                    format!(
                        "the file is truncated ({} bytes, too short for a gallery)",
                        bytes.len()
                    )
                } else {
                    "not a gestalt-edge gallery file (too short, wrong magic bytes)".to_string()
                },
            ));
        }
        if !bytes.starts_with(&MAGIC) {
            return Err(fail(
                "not a gestalt-edge gallery file (wrong magic bytes)".into(),
            ));
        }
        let (header, rest) = postcard::take_from_bytes::<Header>(bytes)
            .map_err(|e| fail(format!("unreadable header: {e}")))?;
        if !(OLDEST_READ_VERSION..=FORMAT_VERSION).contains(&header.format_version) {
            let hint = if header.format_version > FORMAT_VERSION {
                "it was written by a newer gestalt-edge; upgrade this device"
            } else {
                "rebuild the gallery"
            };
            return Err(fail(format!(
                "gallery format version {} is not supported (this build reads versions {}-{}); {hint}",
                header.format_version, OLDEST_READ_VERSION, FORMAT_VERSION
            )));
        }
        let (content, stored) = bytes.split_at(bytes.len() - 4);
        let stored = u32::from_le_bytes([stored[0], stored[1], stored[2], stored[3]]);
        let actual = crc32fast::hash(content);
        if stored != actual {
            return Err(fail(format!(
                "checksum mismatch (stored {stored:08x}, computed {actual:08x}): the file is \
                 corrupted or truncated; restore it from a backup or rebuild it"
            )));
        }
        let body_bytes = rest.get(..rest.len().saturating_sub(4)).unwrap_or_default();
        // bounded: counts and lengths are checked before the decoder allocates anything
        let skim = super::skim::skim(body_bytes, bytes.len() as u64).map_err(fail)?;
        // the vectors are the body's last bytes (the skim checked that nothing follows them)
        let body_end = bytes.len() - 4;
        let blob = usize::try_from(skim.embedding_bytes)
            .ok()
            .and_then(|n| body_end.checked_sub(n))
            .map(|start| start..body_end)
            .ok_or_else(|| {
                fail("cannot decode the gallery body: the embeddings overrun it".into())
            })?;
        let (body, trailing) = postcard::take_from_bytes::<Body>(body_bytes)
            .map_err(|e| fail(format!("cannot decode the gallery body: {e}")))?;
        if !trailing.is_empty() {
            return Err(fail(format!(
                "cannot decode the gallery body: {} unexpected bytes after it",
                trailing.len()
            )));
        }
        let data = match (header.format_version, body) {
            (1, Body::V1(d)) => Data::from(d),
            (2, Body::V2(d)) => d,
            (v, _) => {
                return Err(fail(format!(
                    "cannot decode the gallery body: its layout is not that of format version {v}"
                )))
            }
        };
        Ok((data, blob))
    }
}

/// The gallery of decoded tables `data` and its stored vectors `blob`, checked.
fn finish(mut data: Data, blob: Vec<u8>, path: &Path) -> Result<Gallery> {
    data.embeddings = blob;
    let inv_norm = build_index(&data)
        .map_err(|e| Error::gallery(path, format!("inconsistent tables: {e}")))?;
    let lookup = Lookup::of(&data);
    Ok(Gallery {
        data,
        source: PathBuf::from(path),
        inv_norm,
        lookup,
    })
}

/// Validates decoded tables (every stored value finite) and computes each stored vector's
/// normalising factor (per key, per image). The error is a sentence naming the first problem.
fn build_index(d: &Data) -> std::result::Result<Vec<Vec<f32>>, String> {
    check_keys(&d.keys)?;
    if d.pp4.len() != d.syndromes.len() {
        return Err(format!(
            "{} PP4 threshold entries for {} syndromes",
            d.pp4.len(),
            d.syndromes.len()
        ));
    }
    for (s, t) in d.syndromes.iter().zip(&d.pp4) {
        crate::rank::pp4::Pp4Thresholds::new(t.levels())
            .map_err(|e| format!("syndrome '{}': {e}", s.name))?;
    }
    first_duplicate(d.syndromes.iter().map(|s| s.name.as_str()), "syndrome")?;
    first_duplicate(d.genes.iter().map(|g| g.name.as_str()), "gene")?;
    first_duplicate(d.subjects.iter().map(String::as_str), "subject")?;
    first_duplicate(d.images.iter().map(|i| i.image_id.as_str()), "image")?;
    let in_range = |i: u32, n: usize| usize::try_from(i).is_ok_and(|i| i < n);
    for im in &d.images {
        let id = &im.image_id;
        if !in_range(im.subject, d.subjects.len()) {
            return Err(out_of_range(id, "subject", im.subject, d.subjects.len()));
        }
        if !in_range(im.syndrome, d.syndromes.len()) {
            return Err(out_of_range(id, "syndrome", im.syndrome, d.syndromes.len()));
        }
        if let Some(&g) = im.genes.iter().find(|&&g| !in_range(g, d.genes.len())) {
            return Err(out_of_range(id, "gene", g, d.genes.len()));
        }
    }
    let per_image = image_bytes(d.storage, &d.keys).ok_or("the key widths are impossibly large")?;
    let expected = per_image.checked_mul(d.images.len());
    if expected != Some(d.embeddings.len()) {
        return Err(format!(
            "the embeddings hold {} bytes but {} images x {} bytes per image need {}",
            d.embeddings.len(),
            d.images.len(),
            per_image,
            expected.map_or_else(|| "more than fits".to_string(), |n| n.to_string())
        ));
    }
    // The blob length matches, so every size below is bounded by the file size.
    let mut index: Vec<Vec<f32>> = d
        .keys
        .iter()
        .map(|_| Vec::with_capacity(d.images.len()))
        .collect();
    let mut decoded = Vec::new();
    let mut at = 0usize;
    for im in &d.images {
        for (spec, slot) in d.keys.iter().zip(index.iter_mut()) {
            let n = quant::vector_bytes(d.storage, spec.width).unwrap_or(usize::MAX);
            let bytes = at
                .checked_add(n)
                .and_then(|end| d.embeddings.get(at..end))
                .ok_or("the embeddings end early")?;
            if !quant::decode(d.storage, spec.width, bytes, &mut decoded) {
                return Err(format!(
                    "image '{}' has non-finite values for key {}",
                    im.image_id, spec.key
                ));
            }
            slot.push(inv_norm(&decoded));
            at += n;
        }
    }
    Ok(index)
}

fn out_of_range(image: &str, table: &str, i: u32, n: usize) -> String {
    format!("image '{image}' refers to {table} {i} but the {table} table has {n} entries")
}

fn first_duplicate<'a>(
    names: impl Iterator<Item = &'a str>,
    what: &str,
) -> std::result::Result<(), String> {
    let mut seen = HashSet::new();
    for n in names {
        if !seen.insert(n) {
            return Err(format!("{what} '{n}' is listed twice"));
        }
    }
    Ok(())
}

/// serde adapter storing a `Vec<u8>` as one length-prefixed byte string (postcard: varint
/// length + raw bytes, decoded in one copy instead of byte by byte).
pub(crate) mod raw_bytes {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    /// Skips the stored vectors without copying them (an empty vector): the reader takes
    /// them from the file's bytes, where they are the body's last field
    /// ([`crate::gallery::Gallery::from_vec`]).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_bytes(BytesVisitor)
    }

    struct BytesVisitor;

    impl<'de> serde::de::Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E: serde::de::Error>(self, _: &[u8]) -> Result<Vec<u8>, E> {
            Ok(Vec::new())
        }
    }
}
