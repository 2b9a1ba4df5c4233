//! The gallery: the on-device file of diagnosed cases the query face is ranked against.
//!
//! Consumes diagnosed [`Case`]s with their [`Embeddings`] (from `gallery build` / `import`)
//! or a gallery file; produces a [`Gallery`]: tables of syndromes, genes, subjects and
//! images, one stored vector per (image, key), and per stored vector the factor that
//! L2-normalises it: [`crate::rank`] reads the stored vectors scaled by it
//! ([`Gallery::scan`], [`Gallery::search_vector`]), so no second copy of the vectors is
//! kept in memory. [`format`] holds the file layout
//! (postcard, magic, version, CRC-32), [`io`] reading and atomic writing, [`quant`] the f16
//! and i8 vector storage, [`curate`] removal and relabelling (consent withdrawn, diagnosis
//! revised) and the per-syndrome PP4 thresholds.

pub mod curate;
pub mod format;
pub mod io;
pub mod labels;
pub mod lock;
pub mod quant;
pub mod skim;

use crate::embed::{Embeddings, Key};
use crate::rank::pp4::Pp4Thresholds;
use crate::{Error, Result};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// A syndrome (disorder) in the gallery.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Syndrome {
    /// Display name; unique within a gallery.
    pub name: String,
    /// OMIM number, when known.
    pub omim: Option<u32>,
}

/// A gene in the gallery.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Gene {
    /// Gene symbol; unique within a gallery.
    pub name: String,
    /// Entrez gene id, when known.
    pub entrez: Option<u32>,
}

/// One gallery photo. The numbers are indices into the gallery's tables.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageEntry {
    /// Image identifier (file name or database id); unique within a gallery.
    pub image_id: String,
    /// Index into the subjects table.
    pub subject: u32,
    /// Index into the syndromes table.
    pub syndrome: u32,
    /// Indices into the genes table.
    pub genes: Vec<u32>,
}

/// One embedding key the gallery stores, with its vector width (values per vector).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeySpec {
    /// Model and TTA view.
    pub key: Key,
    /// Values per vector (512 for the iResNets, 128 for SFace).
    pub width: u32,
}

/// How vectors are stored in the file (see [`quant`] for the byte layouts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// IEEE half floats, 2 bytes per value.
    F16,
    /// Symmetric int8 with one f32 scale per vector: `width + 4` bytes per vector.
    I8,
}

impl std::fmt::Display for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Storage::F16 => "f16",
            Storage::I8 => "i8",
        })
    }
}

impl std::str::FromStr for Storage {
    type Err = Error;

    /// Parses `f16` or `i8` (case-insensitive).
    fn from_str(s: &str) -> Result<Storage> {
        match s.to_ascii_lowercase().as_str() {
            "f16" => Ok(Storage::F16),
            "i8" => Ok(Storage::I8),
            _ => Err(Error::Usage(format!(
                "unknown gallery storage '{s}' (expected f16 or i8)"
            ))),
        }
    }
}

/// One diagnosed photo to add to a gallery.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Case {
    /// Image identifier; must not already be in the gallery.
    pub image_id: String,
    /// Subject (patient) id; `None` means the image id (one photo per patient).
    pub subject: Option<String>,
    /// Syndrome name.
    pub syndrome: String,
    /// OMIM number of the syndrome; must agree with earlier cases of the same syndrome.
    pub omim: Option<u32>,
    /// Genes as `(symbol, Entrez id)`; must agree with earlier cases naming the same gene.
    pub genes: Vec<(String, Option<u32>)>,
}

/// What `gallery inspect` shows.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Summary {
    /// Bundle the gallery embeddings were made with.
    pub bundle_id: String,
    /// Gallery version label.
    pub gallery_version: String,
    /// Revision counter of this gallery.
    pub revision: u32,
    /// File format version.
    pub format_version: u16,
    /// Vector storage.
    pub storage: Storage,
    /// Keys and widths, in stored order.
    pub keys: Vec<KeySpec>,
    /// Number of images.
    pub images: usize,
    /// Number of distinct subjects (patients).
    pub subjects: usize,
    /// Number of distinct syndromes.
    pub syndromes: usize,
    /// Number of distinct genes.
    pub genes: usize,
    /// Size of the encoded file in bytes.
    pub file_size_bytes: u64,
}

/// The persisted content of a gallery (the body of format version 2; version 1 lacks `pp4`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Data {
    pub(crate) bundle_id: String,
    pub(crate) gallery_version: String,
    pub(crate) revision: u32,
    pub(crate) keys: Vec<KeySpec>,
    pub(crate) storage: Storage,
    pub(crate) syndromes: Vec<Syndrome>,
    /// PP4 thresholds per syndrome, parallel to `syndromes` (empty thresholds: none).
    pub(crate) pp4: Vec<Pp4Thresholds>,
    pub(crate) genes: Vec<Gene>,
    pub(crate) subjects: Vec<String>,
    pub(crate) images: Vec<ImageEntry>,
    /// Image-major, then key order; see [`quant`] for one vector's bytes.
    #[serde(with = "format::raw_bytes")]
    pub(crate) embeddings: Vec<u8>,
}

/// A gallery in memory: tables, stored vectors and their normalising factors.
///
/// Invariants (checked on [`Gallery::add`] and when reading a file): keys unique with
/// non-zero widths, table indices in range, names unique per table, the blob exactly
/// `images x sum(vector bytes per key)` long, every stored value finite.
#[derive(Debug, Clone)]
pub struct Gallery {
    data: Data,
    /// Where the gallery was read from (for messages); empty for a new gallery.
    source: PathBuf,
    /// Per key (gallery key order), per image: `1 / |stored vector|` (0 for a zero
    /// vector), so that the stored vector times it is the L2-normalised search vector.
    inv_norm: Vec<Vec<f32>>,
    /// Name -> table position, so that [`Gallery::add`] does not scan the tables.
    lookup: Lookup,
}

/// The gallery tables indexed by name; always in step with [`Data`] (built by
/// [`Lookup::of`] when a gallery is read, extended by [`Gallery::add`]).
#[derive(Debug, Clone, Default)]
struct Lookup {
    images: HashSet<String>,
    syndromes: HashMap<String, usize>,
    genes: HashMap<String, usize>,
    subjects: HashMap<String, usize>,
}

impl Lookup {
    /// The lookups of tables whose names are unique (checked by the reader beforehand).
    fn of(d: &Data) -> Lookup {
        Lookup {
            images: d.images.iter().map(|im| im.image_id.clone()).collect(),
            syndromes: positions(d.syndromes.iter().map(|s| &s.name)),
            genes: positions(d.genes.iter().map(|g| &g.name)),
            subjects: positions(d.subjects.iter()),
        }
    }
}

/// Each name with its position in the table.
fn positions<'a>(names: impl Iterator<Item = &'a String>) -> HashMap<String, usize> {
    names.enumerate().map(|(i, n)| (n.clone(), i)).collect()
}

impl Gallery {
    /// An empty gallery for embeddings of `keys` made by bundle `bundle_id`.
    ///
    /// Fails with [`Error::Usage`] when `keys` is empty, has duplicates or a zero width.
    pub fn new(
        bundle_id: impl Into<String>,
        gallery_version: impl Into<String>,
        keys: Vec<KeySpec>,
        storage: Storage,
    ) -> Result<Gallery> {
        check_keys(&keys).map_err(Error::Usage)?;
        let inv_norm = vec![Vec::new(); keys.len()];
        Ok(Gallery {
            data: Data {
                bundle_id: bundle_id.into(),
                gallery_version: gallery_version.into(),
                revision: 0,
                keys,
                storage,
                syndromes: Vec::new(),
                pp4: Vec::new(),
                genes: Vec::new(),
                subjects: Vec::new(),
                images: Vec::new(),
                embeddings: Vec::new(),
            },
            source: PathBuf::new(),
            inv_norm,
            lookup: Lookup::default(),
        })
    }

    /// Adds one diagnosed photo. Syndromes, genes and subjects are shared by name.
    ///
    /// Errors, leaving the gallery unchanged: [`Error::Usage`] for an empty or duplicate
    /// image id, an empty syndrome or gene name, a syndrome or gene already present with
    /// another OMIM / Entrez id, or non-finite (or, for f16, out of range) values;
    /// [`Error::Gallery`] when the embeddings' keys or widths are not exactly the gallery's.
    pub fn add(&mut self, case: &Case, emb: &Embeddings) -> Result<()> {
        let id = &case.image_id;
        if id.is_empty() {
            return Err(Error::Usage("a gallery case has an empty image id".into()));
        }
        if self.lookup.images.contains(id) {
            return Err(Error::Usage(format!(
                "image '{id}' is already in the gallery"
            )));
        }
        if case.syndrome.is_empty() {
            return Err(Error::Usage(format!(
                "image '{id}' has an empty syndrome name"
            )));
        }
        let syndrome = self.lookup.syndromes.get(&case.syndrome).copied();
        if let Some(known) = syndrome.and_then(|i| self.data.syndromes.get(i)) {
            if known.omim != case.omim {
                return Err(Error::Usage(format!(
                    "image '{id}': syndrome '{}' has OMIM {} in the gallery but {} here",
                    case.syndrome,
                    show_id(known.omim),
                    show_id(case.omim)
                )));
            }
        }
        for (name, entrez) in &case.genes {
            if name.is_empty() {
                return Err(Error::Usage(format!("image '{id}' has an empty gene name")));
            }
            // The id this gene already has: in the gallery, else its first mention here.
            let in_gallery = self.lookup.genes.get(name);
            let known = match in_gallery.and_then(|&i| self.data.genes.get(i)) {
                Some(g) => g.entrez,
                None => case
                    .genes
                    .iter()
                    .find(|(n, _)| n == name)
                    .and_then(|(_, e)| *e),
            };
            if known != *entrez {
                return Err(Error::Usage(format!(
                    "image '{id}': gene '{name}' is known with Entrez id {} but given {} here",
                    show_id(known),
                    show_id(*entrez)
                )));
            }
        }

        // Vectors in gallery key order, paired by key.
        let vectors = self.pair_keys(id, emb)?;
        let mut blob = Vec::new();
        let mut factors = Vec::with_capacity(vectors.len());
        let mut one = Vec::new();
        let mut decoded = Vec::new();
        for (spec, v) in self.data.keys.iter().zip(&vectors) {
            one.clear();
            quant::encode(self.data.storage, v, &mut one).map_err(|bad| {
                Error::Usage(format!(
                    "image '{id}': embedding {} holds {bad}, which {} storage cannot keep",
                    spec.key, self.data.storage
                ))
            })?;
            if !quant::decode(self.data.storage, spec.width, &one, &mut decoded) {
                return Err(Error::Usage(format!(
                    "image '{id}': embedding {} cannot be stored",
                    spec.key
                )));
            }
            blob.extend_from_slice(&one);
            factors.push(inv_norm(&decoded));
        }
        let limit = u32::MAX as usize;
        let d = &self.data;
        if d.images.len() >= limit
            || d.syndromes.len() >= limit
            || d.subjects.len() >= limit
            || d.genes.len().saturating_add(case.genes.len()) >= limit
        {
            return Err(Error::GalleryFull {
                limit: "2^32 entries".into(),
            });
        }

        // All checks passed: mutate (indices fit in u32, checked above).
        let syndrome = match syndrome {
            Some(i) => i,
            None => {
                self.data.syndromes.push(Syndrome {
                    name: case.syndrome.clone(),
                    omim: case.omim,
                });
                self.data.pp4.push(Pp4Thresholds::default());
                let i = self.data.syndromes.len() - 1;
                self.lookup.syndromes.insert(case.syndrome.clone(), i);
                i
            }
        };
        let subject_name = case.subject.as_deref().unwrap_or(id);
        let subject = match self.lookup.subjects.get(subject_name) {
            Some(&i) => i,
            None => {
                self.data.subjects.push(subject_name.to_string());
                let i = self.data.subjects.len() - 1;
                self.lookup.subjects.insert(subject_name.to_string(), i);
                i
            }
        };
        let mut genes = Vec::new();
        for (name, entrez) in &case.genes {
            let g = match self.lookup.genes.get(name) {
                Some(&i) => i,
                None => {
                    self.data.genes.push(Gene {
                        name: name.clone(),
                        entrez: *entrez,
                    });
                    let i = self.data.genes.len() - 1;
                    self.lookup.genes.insert(name.clone(), i);
                    i
                }
            };
            let g = g as u32;
            if !genes.contains(&g) {
                genes.push(g);
            }
        }
        self.lookup.images.insert(id.clone());
        self.data.images.push(ImageEntry {
            image_id: id.clone(),
            subject: subject as u32,
            syndrome: syndrome as u32,
            genes,
        });
        self.data.embeddings.extend_from_slice(&blob);
        for (slot, f) in self.inv_norm.iter_mut().zip(factors) {
            slot.push(f);
        }
        Ok(())
    }

    /// The query's vectors in gallery key order, or an [`Error::Gallery`] naming the first
    /// key that is missing, duplicated, extra or of the wrong width.
    fn pair_keys<'e>(&self, id: &str, emb: &'e Embeddings) -> Result<Vec<&'e [f32]>> {
        let err = |reason: String| {
            Error::gallery(
                self.display_path(),
                format!("image '{id}': {reason}; the embeddings were made with another bundle or other keys"),
            )
        };
        let mut seen = HashSet::new();
        for (k, _) in &emb.entries {
            if !seen.insert(k) {
                return Err(err(format!("embedding {k} appears twice")));
            }
            if !self.data.keys.iter().any(|s| &s.key == k) {
                return Err(err(format!("embedding {k} is not a key of this gallery")));
            }
        }
        self.data
            .keys
            .iter()
            .map(|spec| match emb.get(&spec.key) {
                None => Err(err(format!("no embedding for key {}", spec.key))),
                Some(v) if v.len() as u64 != u64::from(spec.width) => Err(err(format!(
                    "embedding {} has {} values, the gallery stores {}",
                    spec.key,
                    v.len(),
                    spec.width
                ))),
                Some(v) => Ok(v),
            })
            .collect()
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.data.images.len()
    }

    /// True when the gallery holds no image.
    pub fn is_empty(&self) -> bool {
        self.data.images.is_empty()
    }

    /// The stored (dequantised) embeddings of image `i`, in gallery key order, or `None`
    /// when `i` is out of range.
    pub fn embeddings(&self, i: usize) -> Option<Embeddings> {
        if i >= self.len() {
            return None;
        }
        let per_image = self.image_bytes()?;
        let mut at = i.checked_mul(per_image)?;
        let mut entries = Vec::with_capacity(self.data.keys.len());
        for spec in &self.data.keys {
            let n = quant::vector_bytes(self.data.storage, spec.width)?;
            let bytes = self.data.embeddings.get(at..at.checked_add(n)?)?;
            let mut v = Vec::new();
            if !quant::decode(self.data.storage, spec.width, bytes, &mut v) {
                return None;
            }
            entries.push((spec.key.clone(), v));
            at += n;
        }
        Some(Embeddings { entries })
    }

    /// Bytes one image occupies in the blob (all keys), or `None` on overflow.
    pub(crate) fn image_bytes(&self) -> Option<usize> {
        image_bytes(self.data.storage, &self.data.keys)
    }

    /// The search vector of `image` for the key at position `slot` of [`Gallery::keys`]: the
    /// stored vector L2-normalised (a zero vector stays zero), decoded into `buf`. `None` if
    /// either is out of range.
    pub fn search_vector<'b>(
        &self,
        image: usize,
        slot: usize,
        buf: &'b mut Vec<f32>,
    ) -> Option<&'b [f32]> {
        let (at, n, width) = self.key_bytes(slot)?;
        let start = image.checked_mul(self.image_bytes()?)?.checked_add(at)?;
        let bytes = self.data.embeddings.get(start..start.checked_add(n)?)?;
        let f = *self.inv_norm.get(slot)?.get(image)?;
        let mut bits = Vec::new();
        quant::decode_scaled(self.data.storage, width, bytes, f, &mut bits, buf).then_some(&buf[..])
    }

    /// Calls `f(image, slot, vector)` with every search vector (see
    /// [`Gallery::search_vector`]), image by image and within an image key by key: one
    /// sequential pass over the stored vectors (a pass per key would stride through them and
    /// stall on memory), no allocation per vector.
    pub fn scan(&self, f: impl FnMut(usize, usize, &[f32])) {
        self.scan_images(0..self.len(), f)
    }

    /// [`Gallery::scan`] of the images in `images` only (clipped to the gallery), so a
    /// search can split the gallery between threads.
    pub fn scan_images(
        &self,
        images: std::ops::Range<usize>,
        mut f: impl FnMut(usize, usize, &[f32]),
    ) {
        let Some(per_image) = self.image_bytes().filter(|&n| n > 0) else {
            return;
        };
        let keys: Vec<(usize, usize, u32)> = (0..self.data.keys.len())
            .map_while(|slot| self.key_bytes(slot))
            .collect();
        let (mut bits, mut buf) = (Vec::new(), Vec::new());
        let stored = self.data.embeddings.chunks_exact(per_image).enumerate();
        for (i, image) in stored.skip(images.start).take(images.len()) {
            for (slot, &(at, n, width)) in keys.iter().enumerate() {
                let k = self.inv_norm.get(slot).and_then(|f| f.get(i)).copied();
                let Some(bytes) = image.get(at..at + n) else {
                    continue;
                };
                let (storage, k) = (self.data.storage, k.unwrap_or(0.0));
                if quant::decode_scaled(storage, width, bytes, k, &mut bits, &mut buf) {
                    f(i, slot, &buf);
                }
            }
        }
    }

    /// Byte offset inside an image's stored bytes, byte length and width of the key at
    /// `slot`.
    fn key_bytes(&self, slot: usize) -> Option<(usize, usize, u32)> {
        let mut at = 0usize;
        for (i, spec) in self.data.keys.iter().enumerate() {
            let n = quant::vector_bytes(self.data.storage, spec.width)?;
            if i == slot {
                return Some((at, n, spec.width));
            }
            at = at.checked_add(n)?;
        }
        None
    }

    /// Per image, the factor that normalises its stored vector of the key at `slot`.
    pub(crate) fn inv_norms(&self, slot: usize) -> Option<&[f32]> {
        self.inv_norm.get(slot).map(Vec::as_slice)
    }

    /// Bundle the embeddings were made with.
    pub fn bundle_id(&self) -> &str {
        &self.data.bundle_id
    }

    /// Gallery version label (reported next to every ranking).
    pub fn gallery_version(&self) -> &str {
        &self.data.gallery_version
    }

    /// Keys and widths, in stored order.
    pub fn keys(&self) -> &[KeySpec] {
        &self.data.keys
    }

    /// Vector storage.
    pub fn storage(&self) -> Storage {
        self.data.storage
    }

    /// The syndromes table.
    pub fn syndromes(&self) -> &[Syndrome] {
        &self.data.syndromes
    }

    /// The genes table.
    pub fn genes(&self) -> &[Gene] {
        &self.data.genes
    }

    /// The subjects (patient ids) table.
    pub fn subjects(&self) -> &[String] {
        &self.data.subjects
    }

    /// The images, in insertion order (the order of [`Gallery::embeddings`] and of the index).
    pub fn images(&self) -> &[ImageEntry] {
        &self.data.images
    }

    /// Where the gallery was read from; empty for a gallery built in memory.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The path to name in messages: the source, or `(new gallery)`.
    pub fn display_path(&self) -> &Path {
        if self.source.as_os_str().is_empty() {
            Path::new("(new gallery)")
        } else {
            &self.source
        }
    }

    /// Counts and settings for `gallery inspect`; the file size is that of
    /// [`Gallery::to_bytes`] (equal to the file's when it was read unchanged).
    pub fn summary(&self) -> Summary {
        Summary {
            bundle_id: self.data.bundle_id.clone(),
            gallery_version: self.data.gallery_version.clone(),
            revision: self.data.revision,
            format_version: format::FORMAT_VERSION,
            storage: self.data.storage,
            keys: self.data.keys.clone(),
            images: self.data.images.len(),
            subjects: self.data.subjects.len(),
            syndromes: self.data.syndromes.len(),
            genes: self.data.genes.len(),
            file_size_bytes: self.to_bytes().len() as u64,
        }
    }
}

/// Bytes one image occupies in the blob, or `None` on overflow.
fn image_bytes(storage: Storage, keys: &[KeySpec]) -> Option<usize> {
    keys.iter().try_fold(0usize, |acc, s| {
        acc.checked_add(quant::vector_bytes(storage, s.width)?)
    })
}

/// Checks a key list: non-empty, unique keys, non-zero widths. The error is a sentence.
fn check_keys(keys: &[KeySpec]) -> std::result::Result<(), String> {
    if keys.is_empty() {
        return Err("a gallery needs at least one embedding key".into());
    }
    let mut seen = HashSet::new();
    for s in keys {
        if !seen.insert(&s.key) {
            return Err(format!("embedding key {} is listed twice", s.key));
        }
        if s.width == 0 {
            return Err(format!("embedding key {} has width 0", s.key));
        }
    }
    Ok(())
}

fn show_id(id: Option<u32>) -> String {
    id.map_or_else(|| "none".to_string(), |x| x.to_string())
}

/// `1 / |v|` (norm accumulated in f64), or 0 for a zero vector (which then stays zero).
pub(crate) fn inv_norm(v: &[f32]) -> f32 {
    let norm = v
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 && norm.is_finite() {
        (1.0 / norm) as f32
    } else {
        0.0
    }
}

#[cfg(test)]
pub(crate) mod tests;
