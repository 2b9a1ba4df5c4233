//! Model bundles: a manifest plus the ONNX files it names, verified and loaded once.
//!
//! Consumes a manifest path; produces a [`Bundle`] that detects faces in an RGB photo
//! ([`Bundle::detect`]) and embeds an aligned 112x112 face under every TTA view of every
//! embedder ([`Bundle::embed`]). Model files are checked against the manifest's sha256
//! before use, and the bundle id (a hash of the manifest's content, which includes every
//! model's sha256) ties galleries and results to the exact models that made them.

pub mod confine;
pub mod input;
mod load;
pub mod manifest;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

pub use crate::engine::Backend;
use crate::engine::{self, cache};
pub use crate::engine::{Engine, Net, OrtOptions, OrtThreading};
pub use manifest::{
    ChannelOrder, CompiledSpec, DetectorKind, DetectorSpec, EmbedderSpec, EngineName, InputMode,
    InputSpec, Manifest, Precision,
};

use crate::{Error, Result};

/// How to load a bundle.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Worker threads for embedding (the TTA x ensemble passes are independent), and for
    /// loading the detector and embedders side by side. 0 = 1.
    pub threads: usize,
    /// Model cache folder (decluttered models as NNEF, see [`cache`]); `None`: no cache,
    /// every model is parsed and decluttered from its ONNX file.
    pub cache_dir: Option<PathBuf>,
    /// Inference engine (tract unless asked; onnxruntime needs the `ort` cargo feature).
    pub engine: Engine,
}

/// A verified, loaded model bundle.
#[derive(Debug)]
pub struct Bundle {
    /// The manifest as parsed.
    pub manifest: Manifest,
    /// Where the manifest was read from.
    pub path: PathBuf,
    /// Bundle id: 16 hex digits of the sha256 of the canonical manifest.
    pub id: String,
    pub(crate) detector: Net,
    /// `exact` input mode: the model bytes and one plan per photo shape.
    pub(crate) exact: Option<ExactDetector>,
    pub(crate) embedders: Vec<Net>,
    pub(crate) threads: usize,
    /// The engine every network runs on.
    engine: Engine,
    /// What the model cache did for the detector, then each embedder.
    cache_reports: Vec<cache::CacheReport>,
    /// What happened to the native engine's kernel-choice file (`None`: not used).
    kernel_report: Option<engine::native::choose::ChoiceReport>,
}

/// Plans of the detector for the reference's unpadded input, one per input size.
pub(crate) struct ExactDetector {
    bytes: Vec<u8>,
    outputs: Vec<String>,
    /// Engine and pipeline threads the plans are made for.
    engine: Engine,
    threads: usize,
    plans: Mutex<Vec<ShapedPlan>>,
}

/// An input size `(width, height)` and the plan optimised for it.
type ShapedPlan = ((u32, u32), Arc<Net>);

/// Most photo shapes whose detector plans are kept (photos from one camera share one).
const EXACT_PLANS: usize = 8;

impl std::fmt::Debug for ExactDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shapes: Vec<(u32, u32)> = match self.plans.lock() {
            Ok(p) => p.iter().map(|(s, _)| *s).collect(),
            Err(_) => Vec::new(),
        };
        f.debug_struct("ExactDetector")
            .field("model_bytes", &self.bytes.len())
            .field("shapes", &shapes)
            .finish()
    }
}

impl ExactDetector {
    /// The plan for a `width` x `height` input, optimised on first use.
    pub(crate) fn plan(&self, path: &Path, width: u32, height: u32) -> Result<Arc<Net>> {
        let mut plans = self
            .plans
            .lock()
            .map_err(|_| Error::bundle(path, "detector plan cache poisoned"))?;
        if let Some((_, net)) = plans.iter().find(|(s, _)| *s == (width, height)) {
            return Ok(net.clone());
        }
        let engine = self.engine.detector_engine(self.threads);
        let net = engine::load_net(
            &engine,
            path,
            &self.bytes,
            (width, height),
            &self.outputs,
            1,
        )?;
        let net = Arc::new(net);
        if plans.len() >= EXACT_PLANS {
            plans.remove(0);
        }
        plans.push(((width, height), net.clone()));
        Ok(net)
    }
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex of a digest.
fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads and parses a manifest without loading models.
pub fn read_manifest(path: &Path) -> Result<Manifest> {
    let text = confine::read_small_text(path, crate::fsio::Cap::MANIFEST)?;
    Manifest::parse(&text).map_err(|e| Error::bundle(path, e))
}

/// The bundle id of a manifest: 16 hex digits of the sha256 of the canonical JSON form of
/// everything that changes embeddings (model hashes, inputs, detector settings, embedder
/// names and views). File names, the bundle's name, version, description, revision and
/// precision are left out, so moving, relabelling or re-releasing the files keeps galleries
/// valid; comments and formatting never count.
pub fn bundle_id(manifest: &Manifest) -> String {
    let mut m = manifest.clone();
    m.bundle = manifest::BundleInfo {
        name: String::new(),
        version: String::new(),
        description: String::new(),
        revision: 0,
        precision: manifest::Precision::F32,
        engine: None,
    };
    m.detector.file.clear();
    m.detector.compiled = None;
    for e in m.embedders.iter_mut() {
        e.file.clear();
        e.compiled = None;
    }
    let canonical = serde_json::to_vec(&m).unwrap_or_default();
    sha256_hex(&canonical)[..16].to_string()
}

/// Reads the model file a manifest entry names (confined to the bundle folder, below
/// [`crate::fsio::Cap::MODEL`]) and checks it against the entry's sha256: the path and the
/// bytes, or an [`Error::Bundle`] naming the entry. Every model byte the runtime or a tool
/// uses comes through here.
pub fn read_verified(
    manifest_path: &Path,
    entry: &str,
    file: &str,
    sha256: &str,
) -> Result<(PathBuf, Vec<u8>)> {
    let (path, bytes) = confine::read(manifest_path, entry, file, crate::fsio::Cap::MODEL)?;
    let got = sha256_hex(&bytes);
    if got != sha256 {
        return Err(mismatch(&path, entry, sha256, &got));
    }
    Ok((path, bytes))
}

/// [`read_verified`] without holding the file's bytes: `decode` reads the file as it
/// streams from disk (it is given the file's size) while the same bytes are hashed, and its
/// result is returned only when the whole file's sha256 is the manifest's. A mismatch wins
/// over whatever `decode` made of the bytes.
pub fn decode_verified<T>(
    manifest_path: &Path,
    entry: &str,
    file: &str,
    sha256: &str,
    decode: impl FnOnce(&mut dyn std::io::Read, u64) -> T,
) -> Result<(PathBuf, T)> {
    let (path, f) = confine::open(manifest_path, entry, file, crate::fsio::Cap::MODEL)?;
    let size = f.size();
    // the bounded reader's handle: whatever the file does meanwhile, at most the cap comes out
    let mut src = Hashing {
        inner: std::io::BufReader::with_capacity(1 << 16, f),
        sha: Sha256::new(),
    };
    let out = decode(&mut src, size);
    // whatever the decoder left unread is hashed too
    std::io::copy(&mut src, &mut std::io::sink()).map_err(|e| {
        confine::file_error(manifest_path, entry, file, format!("cannot read: {e}"))
    })?;
    let got = hex(&src.sha.finalize());
    if got != sha256 {
        return Err(mismatch(&path, entry, sha256, &got));
    }
    Ok((path, out))
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    sha: Sha256,
}

impl<R: std::io::Read> std::io::Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha.update(&buf[..n]);
        Ok(n)
    }
}

fn mismatch(path: &Path, entry: &str, sha256: &str, got: &str) -> Error {
    Error::bundle(
        path,
        format!("{entry}: sha256 mismatch: the manifest says {sha256}, the file is {got} (tampered, truncated or replaced)"),
    )
}

impl Bundle {
    /// Loads the manifest at `path`, verifies every model file and prepares the models.
    pub fn load(path: &Path, options: LoadOptions) -> Result<Bundle> {
        Bundle::load_checked(path, options, None)
    }

    /// [`Bundle::load`], and with `public_key`, first checks the manifest's detached
    /// signature (`bundle.toml.sig`, see [`crate::sign`]) over the exact bytes then parsed,
    /// and that it states the manifest's revision; the manifest pins every model's sha256, so
    /// the signature covers the models too. Under a key the model cache is not used
    /// ([`cache::CacheStatus::Unpinned`]): nothing the manifest does not pin runs.
    /// A missing, foreign or broken signature is an [`Error::Signature`].
    pub fn load_checked(
        path: &Path,
        options: LoadOptions,
        public_key: Option<&crate::sign::PublicKey>,
    ) -> Result<Bundle> {
        let manifest = match public_key {
            None => read_manifest(path)?,
            Some(key) => {
                let text = confine::read_small_text(path, crate::fsio::Cap::MANIFEST)?;
                let role = crate::sign::Role::Manifest;
                let signed = crate::sign::verify_detached(key, role, text.as_bytes(), path)?;
                let m = Manifest::parse(&text).map_err(|e| Error::bundle(path, e))?;
                crate::sign::check_revision(path, signed, m.bundle.revision)?;
                m
            }
        };
        let id = bundle_id(&manifest);
        #[cfg(not(feature = "ort"))]
        if let Engine::Ort(_) = options.engine {
            return Err(engine::ort_missing());
        }
        let d = &manifest.detector;
        let outputs = d.output_names();
        let mut jobs = vec![load::ModelJob {
            entry: "detector".into(),
            file: &d.file,
            sha256: &d.sha256,
            width: d.input.width,
            height: d.input.height,
            outputs: outputs.clone(),
            keep_bytes: d.input_mode == InputMode::Exact,
            ort: options.engine.detector_engine(options.threads).ort(),
            native: options
                .engine
                .detector_engine(options.threads)
                .native()
                .map(|n| n.1),
            compiled: d.compiled.as_ref(),
        }];
        for e in &manifest.embedders {
            jobs.push(load::ModelJob {
                entry: format!("embedder '{}'", e.name),
                file: &e.file,
                sha256: &e.sha256,
                width: e.input.width,
                height: e.input.height,
                outputs: e.output.iter().cloned().collect(),
                keep_bytes: false,
                ort: options
                    .engine
                    .embedder_engine(options.threads, e.views.len())
                    .ort(),
                native: options
                    .engine
                    .embedder_engine(options.threads, e.views.len())
                    .native()
                    .map(|n| n.1),
                compiled: e.compiled.as_ref(),
            });
        }
        // The trust rule: under a public key only what the signed manifest pins may influence
        // a result. Cache entries are pinned by nothing but their own header, which anyone who
        // can write the cache folder can recompute, so they are neither read nor written: every
        // model is derived in-process from its pinned, verified ONNX bytes.
        let unpinned = public_key.is_some() && options.cache_dir.is_some();
        let model_cache = match public_key {
            Some(_) => None,
            None => options.cache_dir.as_deref().map(cache::ModelCache::new),
        };
        // kernel choices are remembered in the cache folder even under a key: a choice cannot
        // change an integer result, and between f32 kernels only the rounding differs
        let kernels = match &options.engine {
            Engine::Native(o) => o.kernels,
            _ => engine::native::KernelMode::Features,
        };
        let chooser = Mutex::new(engine::native::Chooser::new(
            kernels,
            options.cache_dir.as_deref(),
        ));
        let mut loaded =
            load::load_all(path, &jobs, model_cache.as_ref(), options.threads, &chooser)?
                .into_iter();
        let kernel_report = chooser.into_inner().ok().and_then(|mut c| c.finish());
        let Some(first) = loaded.next() else {
            return Err(Error::bundle(path, "the detector was not loaded"));
        };
        let mut cache_reports = vec![first.cache];
        let detector = first.net;
        let exact = match d.input_mode {
            InputMode::Padded => None,
            InputMode::Exact if d.kind == DetectorKind::Yunet => {
                return Err(Error::bundle(
                    detector.path(),
                    "input_mode = \"exact\" needs a detector without fixed spatial sizes; YuNet's graph is fixed: use \"padded\"",
                ))
            }
            InputMode::Exact => Some(ExactDetector {
                bytes: first.bytes.unwrap_or_default(),
                outputs: outputs.clone(),
                engine: options.engine.clone(),
                threads: options.threads,
                plans: Mutex::new(Vec::new()),
            }),
        };
        let mut embedders = Vec::new();
        for (e, l) in manifest.embedders.iter().zip(loaded) {
            let net = l.net;
            cache_reports.push(l.cache);
            let got: usize = net
                .outputs()
                .first()
                .map(|(_, s)| s.iter().product())
                .unwrap_or(0);
            if got != e.width as usize {
                return Err(Error::bundle(
                    net.path(),
                    format!(
                        "embedder '{}' outputs {got} values, the manifest says width {}",
                        e.name, e.width
                    ),
                ));
            }
            embedders.push(net);
        }
        if unpinned {
            for r in cache_reports.iter_mut() {
                r.status = cache::CacheStatus::Unpinned;
            }
        }
        Ok(Bundle {
            manifest,
            path: path.to_path_buf(),
            id,
            detector,
            exact,
            embedders,
            threads: options.engine.workers(options.threads),
            engine: options.engine,
            cache_reports,
            kernel_report,
        })
    }

    /// `bundle.name` and version, reported as `model_version`.
    pub fn model_version(&self) -> String {
        format!(
            "{}-{}",
            self.manifest.bundle.name, self.manifest.bundle.version
        )
    }

    /// The loaded detector and embedders (ensemble order), for benchmarks and cost reports.
    pub fn nets(&self) -> (&Net, &[Net]) {
        (&self.detector, &self.embedders)
    }

    /// What the model cache did while loading: the detector, then each embedder in
    /// ensemble order ([`cache::CacheStatus::Disabled`] everywhere without a cache folder).
    pub fn cache_reports(&self) -> &[cache::CacheReport] {
        &self.cache_reports
    }

    /// Changes the number of embedding worker threads (0 = 1; onnxruntime with intra-op
    /// threading keeps 1 worker).
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = self.engine.workers(threads);
    }

    /// The engine the networks run on.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// What happened to the native engine's kernel-choice file while loading: choices
    /// remembered, measured, and why a damaged file was rebuilt (`None`: not used).
    pub fn kernel_report(&self) -> Option<&engine::native::choose::ChoiceReport> {
        self.kernel_report.as_ref()
    }
}

/// Hands the memory freed while loading (ONNX protobufs, intermediate graphs, per-thread
/// allocator arenas of the parallel loaders) back to the system: call it once the bundle and
/// the gallery are loaded. glibc keeps freed heap pages resident otherwise, so a device's
/// resident size would carry the loading peak for its whole life. Elsewhere a no-op.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own heap and returns unused pages; it takes no
    // pointers and may be called at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streamed_file_is_hashed_whole_and_its_hash_wins() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("bundle.toml");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(dir.path().join("m.bin"), &data).unwrap();
        let sha = sha256_hex(&data);
        // the decoder reads a little and stops: the rest is still hashed, and it gets the size
        let (path, got) = decode_verified(&manifest, "m", "m.bin", &sha, |src, size| {
            let mut head = [0u8; 10];
            src.read_exact(&mut head).unwrap();
            (head, size)
        })
        .unwrap();
        assert_eq!(path, dir.path().join("m.bin"));
        assert_eq!(
            got,
            (
                <[u8; 10]>::try_from(&data[..10]).unwrap(),
                data.len() as u64
            )
        );
        // another pin: refused whatever the decoder made of the bytes
        let other = sha256_hex(b"other");
        let err = decode_verified(&manifest, "m", "m.bin", &other, |_, _| ()).unwrap_err();
        assert!(err.to_string().contains("sha256 mismatch"), "{err}");
        // the same checks as a whole read: outside the folder is refused before any read
        let err = decode_verified(&manifest, "m", "../m.bin", &sha, |_, _| ()).unwrap_err();
        assert!(matches!(err, Error::Bundle { .. }), "{err}");
    }
}
