//! Loading a bundle's models side by side: the detector and every embedder are independent
//! (read, verify, parse or read from the cache, optimise), so they run on up to
//! `LoadOptions::threads` scoped threads, largest file first.
//!
//! Consumes the manifest's path and the per-model facts (file, sha256, input size, outputs,
//! compiled file); produces the loaded [`Net`]s with their cache outcome, in the order asked,
//! and the first error in that order (the same error whatever the thread timing).
//!
//! On the native engine a model with a pinned compiled file is loaded from that file alone
//! (its ONNX file is not read); a damaged or foreign compiled file is an error naming the
//! file and `model compile`, never skipped. Without one, the ONNX file is imported; a model
//! outside the native set runs on tract, with the reason in [`Net::engine_note`].

use std::path::Path;

use std::sync::Mutex;

use super::manifest::CompiledSpec;
use super::{decode_verified, read_verified, Net};
use crate::engine::cache::{CacheReport, CacheStatus, ModelCache};
use crate::engine::native::compiled::{self, Source};
use crate::engine::native::{Chooser, NativeError, NativeNet};
use crate::{Error, Result};

/// One model to load.
pub(crate) struct ModelJob<'a> {
    /// The manifest entry that names the model ("detector", "embedder 'x'"), for messages.
    pub entry: String,
    /// File name relative to the manifest's folder.
    pub file: &'a str,
    /// The manifest's sha256 of that file (hex).
    pub sha256: &'a str,
    /// Input width and height in pixels.
    pub width: u32,
    pub height: u32,
    /// Outputs to select by name (empty: all).
    pub outputs: Vec<String>,
    /// Keep the model bytes after loading (the exact-mode detector re-plans per photo shape).
    pub keep_bytes: bool,
    /// Run on onnxruntime instead of tract: the shared library and the session plan
    /// (`None`: tract, through the cache).
    pub ort: Option<(&'a Path, crate::engine::OrtPlan)>,
    /// Run on the native engine with this many threads per pass (`None`: not native).
    pub native: Option<usize>,
    /// The compiled file the manifest pins for this model.
    pub compiled: Option<&'a CompiledSpec>,
}

/// A loaded model.
pub(crate) struct Loaded {
    pub net: Net,
    pub cache: CacheReport,
    /// The model file's bytes when the job asked to keep them.
    pub bytes: Option<Vec<u8>>,
}

/// A report for a model loaded without the model cache.
fn no_cache(path: &Path) -> CacheReport {
    CacheReport {
        model: path.to_path_buf(),
        entry: None,
        status: CacheStatus::Disabled,
        bytes: 0,
    }
}

/// The source identity a compiled file must carry: the ONNX file's sha256 and the size.
fn source_of(job: &ModelJob<'_>) -> Result<Source> {
    Source::from_hex(job.sha256, job.width, job.height)
        .ok_or_else(|| Error::Usage(format!("{}: sha256 is not hex", job.entry)))
}

/// Loads the model's pinned compiled file on the native engine.
fn load_compiled(
    manifest: &Path,
    job: &ModelJob<'_>,
    c: &CompiledSpec,
    threads: usize,
    chooser: &Mutex<Chooser>,
) -> Result<Loaded> {
    let entry = format!("{}: compiled file", job.entry);
    let remake = format!(
        "remake it with `gestalt-edge model compile --bundle {}`",
        manifest.display()
    );
    let source = source_of(job)?;
    // decoded as it streams from disk (the file's bytes are never held beside the weights)
    // and outside the chooser's lock
    let (path, model) = decode_verified(manifest, &entry, &c.file, &c.sha256, |src, size| {
        compiled::read_from(src, size, &source)
    })
    .map_err(|e| match e {
        Error::Bundle { path, reason } => Error::bundle(path, format!("{reason}; {remake}")),
        other => other,
    })?;
    let planned = match model {
        Ok(model) => {
            let mut ch = chooser
                .lock()
                .map_err(|_| Error::Internal("kernel chooser poisoned".into()))?;
            NativeNet::from_model(model, threads, &mut *ch)
        }
        Err(e) => Err(NativeError::from(e)),
    };
    let net = planned
        .map_err(|e| e.to_string())
        .and_then(|n| Net::from_native(&path, n, &job.outputs, 1))
        .map_err(|e| Error::bundle(&path, format!("{entry}: {e}; {remake}")))?;
    Ok(Loaded {
        net,
        cache: no_cache(&path),
        bytes: None,
    })
}

fn load_one(
    manifest: &Path,
    job: &ModelJob<'_>,
    cache: Option<&ModelCache>,
    chooser: &Mutex<Chooser>,
) -> Result<Loaded> {
    if let (Some(threads), Some(c), false) = (job.native, job.compiled, job.keep_bytes) {
        return load_compiled(manifest, job, c, threads, chooser);
    }
    let (path, bytes) = read_verified(manifest, &job.entry, job.file, job.sha256)?;
    let mut note = None;
    if let Some(threads) = job.native {
        let planned = {
            let mut ch = chooser
                .lock()
                .map_err(|_| Error::Internal("kernel chooser poisoned".into()))?;
            NativeNet::from_onnx(
                &bytes,
                job.width as usize,
                job.height as usize,
                threads,
                &mut *ch,
            )
        };
        match planned
            .map_err(|e| e.to_string())
            .and_then(|n| Net::from_native(&path, n, &job.outputs, 1))
        {
            Ok(net) => {
                return Ok(Loaded {
                    net,
                    cache: no_cache(&path),
                    bytes: job.keep_bytes.then_some(bytes),
                })
            }
            Err(why) => note = Some(why),
        }
    }
    if let Some((library, plan)) = job.ort {
        let net = crate::engine::load_net(
            &crate::engine::NetEngine::Ort(library, plan),
            &path,
            &bytes,
            (job.width, job.height),
            &job.outputs,
            1,
        )?;
        return Ok(Loaded {
            net,
            cache: CacheReport {
                model: path.clone(),
                entry: None,
                status: crate::engine::cache::CacheStatus::Disabled,
                bytes: 0,
            },
            bytes: job.keep_bytes.then_some(bytes),
        });
    }
    let (mut net, report) = Net::load_cached(
        &path,
        &bytes,
        cache.map(|c| (c, job.sha256)),
        job.width,
        job.height,
        &job.outputs,
        1,
    )?;
    if let Some(why) = note {
        net.set_engine_note(why);
    }
    Ok(Loaded {
        net,
        cache: report,
        bytes: job.keep_bytes.then_some(bytes),
    })
}

/// Loads every job on up to `threads` threads (at least 1); results in job order. Native
/// plans take their kernels from `chooser`.
pub(crate) fn load_all(
    manifest: &Path,
    jobs: &[ModelJob<'_>],
    cache: Option<&ModelCache>,
    threads: usize,
    chooser: &Mutex<Chooser>,
) -> Result<Vec<Loaded>> {
    let dir = manifest.parent().unwrap_or(Path::new("."));
    // largest first, so the last thread to finish is not left with the biggest model
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    let size = |i: usize| std::fs::metadata(dir.join(jobs[i].file)).map_or(0, |m| m.len());
    order.sort_by_key(|&i| (std::cmp::Reverse(size(i)), i));
    // what one model's loading freed goes back to the system before the next one loads, so
    // the peak is the models themselves, not the models plus every loader's leftovers
    let load = |i: usize| {
        let loaded = load_one(manifest, &jobs[i], cache, chooser);
        super::release_freed_memory();
        loaded
    };
    crate::engine::queue::run(&order, threads, load)
        .into_iter()
        .map(|s| {
            s.unwrap_or_else(|| Err(Error::Internal("a model-loading thread panicked".into())))
        })
        .collect()
}
