//! On-disk cache of decluttered models, so a device starts in well under the time it takes
//! to parse and declutter its ONNX files.
//!
//! Consumes a cache folder (a [`super::LoadOptions`] field; the library never picks one from
//! the environment), a model's verified sha256, its pinned input shape and selected outputs;
//! produces, per model, one entry file `<key>.gemc`: a fixed header (magic, format version,
//! the key, the sha256 and length of the payload) followed by tract's NNEF tar of the
//! DECLUTTERED typed model (tract cannot serialise an optimised one; optimising the
//! decluttered model again is cheap and gives the same plan).
//!
//! The key is the sha256 of the model's sha256, the input shape, the output names, the tract
//! version and [`FORMAT_VERSION`]: a model, shape, output or engine change never reuses an
//! entry. Entries are written atomically (temporary file, fsync, rename, folder fsync) and
//! checked in full when read: a truncated, corrupt or foreign entry is reported as
//! [`Lookup::Corrupt`] and the caller rebuilds it from ONNX; it is never trusted. Before tract
//! reads the payload, every size in it is checked against the bytes that hold it
//! ([`check_payload`]: the tar's entries, each weight file's tensor header), so an entry
//! whose sizes lie cannot make tract allocate more than the entry's own size.
//!
//! The header only proves an entry is intact, not that it is authentic: whoever can write the
//! folder can recompute it. So the entry's key binds it to the manifest's pinned sha256 of the
//! model (without a key, that is the check), and with a public key in force the bundle does
//! not use the cache at all ([`CacheStatus::Unpinned`]): a signed device runs only models
//! derived in-process from the signed manifest's pinned files.
//! Like `net.rs`, this file knows tract (the NNEF writer and reader).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tract_onnx::prelude::*;
use tract_onnx::WithOnnx;

/// Version of the entry layout and of what goes into the key; bump it when either changes.
pub const FORMAT_VERSION: u32 = 1;

/// The tract version whose NNEF the entries hold (the pinned `tract-onnx` in Cargo.toml;
/// a unit test keeps the two equal).
pub const TRACT_VERSION: &str = "0.23.9";

/// First bytes of every entry.
const MAGIC: &[u8; 8] = b"GEMCACHE";

/// Header: magic, format version (u32 LE), key (64 hex), payload sha256 (32 bytes),
/// payload length (u64 LE).
const HEADER_LEN: usize = 8 + 4 + 64 + 32 + 8;

/// File-name extension of entries.
pub const ENTRY_EXT: &str = "gemc";

/// The identity of one cache entry: 64 lower-case hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey(String);

impl CacheKey {
    /// The key of a model given its verified sha256 (hex), the pinned input shape
    /// `[batch, 3, height, width]` and the selected output names (empty: all outputs).
    pub fn new(model_sha256: &str, shape: [usize; 4], outputs: &[String]) -> CacheKey {
        let mut h = Sha256::new();
        h.update(format!(
            "gestalt-edge model cache\nformat {FORMAT_VERSION}\ntract {TRACT_VERSION}\n"
        ));
        h.update(format!("model {}\n", model_sha256.to_ascii_lowercase()));
        h.update(format!(
            "shape {}x{}x{}x{}\n",
            shape[0], shape[1], shape[2], shape[3]
        ));
        h.update(format!("outputs {}\n", outputs.len()));
        for o in outputs {
            // length-prefixed: names may hold any character
            h.update(format!("{}:{o}\n", o.len()));
        }
        CacheKey(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The key as 64 hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What reading an entry found.
#[derive(Debug)]
pub enum Lookup {
    /// A complete entry whose payload matches its recorded sha256: the NNEF tar bytes.
    Hit(Vec<u8>),
    /// No entry for this key.
    Missing,
    /// An entry exists but cannot be trusted (truncated, corrupt, other key or format);
    /// the text says what is wrong.
    Corrupt(String),
}

/// What happened to one model's entry while a bundle loaded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheStatus {
    /// No cache folder was given: loaded from ONNX.
    Disabled,
    /// Loaded from a valid entry.
    Hit,
    /// No entry: loaded from ONNX and wrote one.
    Written,
    /// A corrupt entry was found and ignored: loaded from ONNX and wrote a fresh one.
    Rebuilt,
    /// Loaded from ONNX; no entry could be written (the text says why: read-only folder,
    /// a model tract cannot store as NNEF, ...). The load itself succeeded.
    NotWritten(String),
    /// A public key is in force and the signed manifest pins no cached form of the model:
    /// entries were neither read nor written, the model was derived from its pinned ONNX file.
    Unpinned,
}

impl CacheStatus {
    /// True when the model came from a cache entry.
    pub fn is_hit(&self) -> bool {
        *self == CacheStatus::Hit
    }
}

/// One model's cache outcome, for reports (`bench`, `model compile`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct CacheReport {
    /// The model file.
    pub model: PathBuf,
    /// The entry file (whether or not it was used).
    pub entry: Option<PathBuf>,
    /// What happened.
    pub status: CacheStatus,
    /// Size of the entry in bytes (0 when none was read or written).
    pub bytes: u64,
}

/// A cache folder. It need not exist: it is created on the first write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelCache {
    dir: PathBuf,
}

impl ModelCache {
    /// A cache in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> ModelCache {
        ModelCache { dir: dir.into() }
    }

    /// The cache folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the entry for `key` lives.
    pub fn entry_path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{}.{ENTRY_EXT}", key.as_str()))
    }

    /// Reads and checks the entry for `key`.
    pub fn read(&self, key: &CacheKey) -> Lookup {
        let path = self.entry_path(key);
        // bounded: a FIFO, a device or an oversized entry is a damaged entry, rebuilt
        let bytes = match crate::fsio::read_capped(&path, crate::fsio::Cap::CACHE_ENTRY) {
            Ok(b) => b,
            Err(e) if e.is_missing() => return Lookup::Missing,
            Err(e) => return Lookup::Corrupt(format!("{}: {e}", path.display())),
        };
        match check_entry(&bytes, key).and_then(|()| check_payload(&bytes[HEADER_LEN..])) {
            Ok(()) => {
                let mut bytes = bytes;
                bytes.drain(..HEADER_LEN);
                Lookup::Hit(bytes)
            }
            Err(what) => Lookup::Corrupt(format!("{}: {what}", path.display())),
        }
    }

    /// Writes the entry for `key` atomically (temporary file in the cache folder, fsync,
    /// rename, folder fsync); creates the folder when missing. Returns the entry's path.
    pub fn write(&self, key: &CacheKey, payload: &[u8]) -> std::io::Result<PathBuf> {
        crate::fsio::create_dir_all(&self.dir)?;
        let path = self.entry_path(key);
        crate::fsio::write_atomic_with(&path, crate::fsio::Access::Shared, |w| {
            w.write_all(&header(key, payload))?;
            w.write_all(payload)
        })
        .map_err(|e| match e {
            crate::Error::Io { source, .. } => source,
            other => std::io::Error::other(other.to_string()),
        })?;
        Ok(path)
    }
}

fn header(key: &CacheKey, payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    h.extend_from_slice(key.as_str().as_bytes());
    h.extend_from_slice(&Sha256::digest(payload));
    h.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    h
}

/// Checks an entry's header against `key` and its payload against the recorded sha256.
fn check_entry(bytes: &[u8], key: &CacheKey) -> std::result::Result<(), String> {
    if bytes.len() < HEADER_LEN {
        return Err(format!(
            "truncated ({} bytes, the header alone is {HEADER_LEN})",
            bytes.len()
        ));
    }
    if &bytes[..8] != MAGIC {
        return Err("not a model-cache entry (bad magic)".into());
    }
    let mut v = [0u8; 4];
    v.copy_from_slice(&bytes[8..12]);
    let version = u32::from_le_bytes(v);
    if version != FORMAT_VERSION {
        return Err(format!(
            "format version {version}, this build reads {FORMAT_VERSION}"
        ));
    }
    if &bytes[12..76] != key.as_str().as_bytes() {
        return Err("the entry was made for another model, shape or output set".into());
    }
    let mut n = [0u8; 8];
    n.copy_from_slice(&bytes[108..116]);
    let len = u64::from_le_bytes(n);
    let payload = &bytes[HEADER_LEN..];
    if payload.len() as u64 != len {
        return Err(format!(
            "payload is {} bytes, the header says {len} (truncated or appended to)",
            payload.len()
        ));
    }
    if Sha256::digest(payload).as_slice() != &bytes[76..108] {
        return Err("payload sha256 does not match the header (corrupt)".into());
    }
    Ok(())
}

/// Bytes of a tar header block (and the unit entries are padded to).
const TAR_BLOCK: usize = 512;
/// Bytes of the NNEF tensor header in front of a `.dat` file's data.
const NNEF_TENSOR_HEADER: usize = 128;

/// Checks the sizes inside a payload before tract reads it: a plain tar (what [`to_nnef`]
/// writes; no compression) of regular files, folders and long-name or extended headers, each
/// entry inside the payload, and each `.dat` tensor's header (rank <= 8, data size) stating no
/// more data than its entry holds, since tract allocates a tensor from its header before
/// reading the data. Sparse entries, whose stated size is not on disk, are refused.
fn check_payload(tar: &[u8]) -> std::result::Result<(), String> {
    let bad = |what: String| Err(format!("the model inside is damaged: {what}"));
    let mut at = 0usize;
    while let Some(h) = tar.get(at..at + TAR_BLOCK) {
        if h.iter().all(|&b| b == 0) {
            return Ok(());
        }
        // the size: octal ASCII digits (base-256 sizes are for files over 8 GB)
        let field = &h[124..136];
        let digits = field
            .iter()
            .copied()
            .skip_while(|&b| b == b' ')
            .take_while(|&b| (b'0'..=b'7').contains(&b));
        let mut size: u64 = 0;
        for d in digits {
            size = size.saturating_mul(8).saturating_add(u64::from(d - b'0'));
        }
        if field[0] & 0x80 != 0 {
            return bad("a tar entry size in base-256".into());
        }
        let data = at + TAR_BLOCK;
        let Some(end) = usize::try_from(size)
            .ok()
            .and_then(|n| data.checked_add(n))
            .filter(|&e| e <= tar.len())
        else {
            return bad(format!("a tar entry of {size} bytes past the end"));
        };
        match h[156] {
            b'0' | 0 | b'5' | b'L' | b'x' | b'g' => {}
            t => return bad(format!("a tar entry of type '{}'", t.escape_ascii())),
        }
        let name_end = h[..100].iter().position(|&b| b == 0).unwrap_or(100);
        if h[156] != b'L' && h[..name_end].ends_with(b".dat") {
            check_tensor(&tar[data..end])?;
        }
        at = end.div_ceil(TAR_BLOCK) * TAR_BLOCK;
    }
    bad("the tar archive has no end".into())
}

/// An NNEF tensor file: its header's rank and data size against the bytes after it.
fn check_tensor(dat: &[u8]) -> std::result::Result<(), String> {
    let bad = |what: &str| Err(format!("the model inside is damaged: a tensor {what}"));
    let Some(h) = dat.get(..NNEF_TENSOR_HEADER) else {
        return bad("file shorter than its header");
    };
    let word = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    if h[..2] != [0x4e, 0xef] {
        return bad("without the NNEF magic");
    }
    let (data, rank) = (word(4) as usize, word(8));
    if rank > 8 {
        return bad("of rank over 8");
    }
    if data != dat.len() - NNEF_TENSOR_HEADER {
        return bad("header stating another data size than the file holds");
    }
    Ok(())
}

/// The NNEF framework with the ONNX extension ops registered (tract core ops are built in).
fn framework() -> tract_nnef::framework::Nnef {
    tract_nnef::nnef().with_onnx()
}

/// Serialises a decluttered typed model to an uncompressed NNEF tar.
pub(crate) fn to_nnef(model: &TypedModel) -> TractResult<Vec<u8>> {
    framework().write_to_tar(model, Vec::new())
}

/// Reads a typed model back from an NNEF tar made by [`to_nnef`].
pub(crate) fn from_nnef(tar: &[u8]) -> TractResult<TypedModel> {
    framework().model_for_read(&mut std::io::Cursor::new(tar))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CacheKey {
        CacheKey::new(&"ab".repeat(32), [1, 3, 112, 112], &["fc1".to_string()])
    }

    #[test]
    fn tract_version_matches_the_pinned_dependency() {
        let manifest = include_str!("../../Cargo.toml");
        let pin = format!("tract-onnx = {{ version = \"={TRACT_VERSION}\"");
        assert!(manifest.contains(&pin), "Cargo.toml lacks `{pin}`");
    }

    #[test]
    fn key_changes_with_every_input() {
        let base = key();
        assert_eq!(base.as_str().len(), 64);
        assert_eq!(base, key());
        let other_model = CacheKey::new(&"cd".repeat(32), [1, 3, 112, 112], &["fc1".into()]);
        let other_shape = CacheKey::new(&"ab".repeat(32), [1, 3, 112, 96], &["fc1".into()]);
        let other_batch = CacheKey::new(&"ab".repeat(32), [4, 3, 112, 112], &["fc1".into()]);
        let no_outputs = CacheKey::new(&"ab".repeat(32), [1, 3, 112, 112], &[]);
        let split = CacheKey::new(
            &"ab".repeat(32),
            [1, 3, 112, 112],
            &["f".into(), "c1".into()],
        );
        for k in [other_model, other_shape, other_batch, no_outputs, split] {
            assert_ne!(k, base);
        }
    }

    #[test]
    fn round_trip_and_every_kind_of_damage() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ModelCache::new(dir.path().join("sub/dir"));
        let k = key();
        assert!(matches!(cache.read(&k), Lookup::Missing));
        let payload = tar_with_tensor(4800, 4800, b'0');
        let path = cache.write(&k, &payload).unwrap();
        assert_eq!(path, cache.entry_path(&k));
        match cache.read(&k) {
            Lookup::Hit(p) => assert_eq!(p, payload),
            other => panic!("expected a hit, got {other:?}"),
        }
        // no temporary files left behind
        let names: Vec<_> = std::fs::read_dir(cache.dir()).unwrap().collect();
        assert_eq!(names.len(), 1);

        let good = std::fs::read(&path).unwrap();
        let damage: Vec<(&str, Vec<u8>)> = vec![
            ("empty", Vec::new()),
            ("truncated header", good[..50].to_vec()),
            ("truncated payload", good[..good.len() - 1].to_vec()),
            ("appended", [good.clone(), vec![0]].concat()),
            ("flipped payload bit", {
                let mut b = good.clone();
                b[HEADER_LEN + 100] ^= 1;
                b
            }),
            ("bad magic", {
                let mut b = good.clone();
                b[0] = b'X';
                b
            }),
            ("other version", {
                let mut b = good.clone();
                b[8] = 99;
                b
            }),
        ];
        for (what, bytes) in damage {
            std::fs::write(&path, &bytes).unwrap();
            assert!(
                matches!(cache.read(&k), Lookup::Corrupt(_)),
                "{what} was not detected"
            );
        }
        // an entry copied under another key's name is refused
        let k2 = CacheKey::new(&"ab".repeat(32), [1, 3, 64, 64], &[]);
        std::fs::write(cache.entry_path(&k2), &good).unwrap();
        match cache.read(&k2) {
            Lookup::Corrupt(w) => assert!(w.contains("another model"), "{w}"),
            other => panic!("expected corrupt, got {other:?}"),
        }
    }

    /// A tar of one `.dat` file holding an NNEF tensor header stating `data` bytes of data,
    /// followed by `held` bytes.
    fn tar_with_tensor(data: u32, held: usize, kind: u8) -> Vec<u8> {
        let mut dat = vec![0u8; NNEF_TENSOR_HEADER];
        dat[..4].copy_from_slice(&[0x4e, 0xef, 1, 0]);
        dat[4..8].copy_from_slice(&data.to_le_bytes());
        dat[8..12].copy_from_slice(&1u32.to_le_bytes());
        dat[12..16].copy_from_slice(&(data / 4).to_le_bytes());
        dat[44..48].copy_from_slice(&32u32.to_le_bytes());
        dat.resize(NNEF_TENSOR_HEADER + held, 0);
        let mut h = vec![0u8; TAR_BLOCK];
        h[..5].copy_from_slice(b"w.dat");
        h[124..135].copy_from_slice(format!("{:011o}", dat.len()).as_bytes());
        h[156] = kind;
        let mut tar = h;
        tar.extend_from_slice(&dat);
        tar.resize(tar.len().div_ceil(TAR_BLOCK) * TAR_BLOCK + 2 * TAR_BLOCK, 0);
        tar
    }

    #[test]
    fn sizes_inside_the_payload_are_checked_against_its_bytes() {
        assert_eq!(check_payload(&tar_with_tensor(64, 64, b'0')), Ok(()));
        // a tensor stating 4 GB of data in a 64-byte file: tract would allocate it first
        let e = check_payload(&tar_with_tensor(u32::MAX - 3, 64, b'0')).unwrap_err();
        assert!(e.contains("data size"), "{e}");
        // a tar entry stating more bytes than the payload has, a sparse entry, no end
        let mut long = tar_with_tensor(64, 64, b'0');
        long[124..135].copy_from_slice(b"77777777777");
        assert!(check_payload(&long).unwrap_err().contains("past the end"));
        let sparse = tar_with_tensor(64, 64, b'S');
        assert!(check_payload(&sparse).unwrap_err().contains("type 'S'"));
        let good = tar_with_tensor(64, 64, b'0');
        assert!(check_payload(&good[..TAR_BLOCK * 2]).is_err());
        // what tract writes passes: tests/it/model_cache.rs (every entry there is a hit)
    }

    #[test]
    fn unwritable_folder_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let cache = ModelCache::new(&file);
        assert!(cache.write(&key(), b"payload").is_err());
        assert!(matches!(cache.read(&key()), Lookup::Corrupt(_)));
    }
}
