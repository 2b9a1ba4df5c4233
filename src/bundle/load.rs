//! Loading a bundle's models side by side: the detector and every embedder are independent
//! (read, verify, parse or read from the cache, optimise), so they run on up to
//! `LoadOptions::threads` scoped threads, largest file first.
//!
//! Consumes the manifest's path and the per-model facts (file, sha256, input size, outputs);
//! produces the loaded [`Net`]s with their cache outcome, in the order asked, and the first
//! error in that order (the same error whatever the thread timing).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{read_verified, Net};
use crate::engine::cache::{CacheReport, ModelCache};
use crate::{Error, Result};

/// One model to load.
pub(crate) struct ModelJob<'a> {
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
}

/// A loaded model.
pub(crate) struct Loaded {
    pub net: Net,
    pub cache: CacheReport,
    /// The model file's bytes when the job asked to keep them.
    pub bytes: Option<Vec<u8>>,
}

fn load_one(manifest: &Path, job: &ModelJob<'_>, cache: Option<&ModelCache>) -> Result<Loaded> {
    let (path, bytes) = read_verified(manifest, job.file, job.sha256)?;
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
    let (net, report) = Net::load_cached(
        &path,
        &bytes,
        cache.map(|c| (c, job.sha256)),
        job.width,
        job.height,
        &job.outputs,
        1,
    )?;
    Ok(Loaded {
        net,
        cache: report,
        bytes: job.keep_bytes.then_some(bytes),
    })
}

/// Loads every job on up to `threads` threads (at least 1); results in job order.
pub(crate) fn load_all(
    manifest: &Path,
    jobs: &[ModelJob<'_>],
    cache: Option<&ModelCache>,
    threads: usize,
) -> Result<Vec<Loaded>> {
    let dir = manifest.parent().unwrap_or(Path::new("."));
    // largest first, so the last thread to finish is not left with the biggest model
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    let size = |i: usize| std::fs::metadata(dir.join(jobs[i].file)).map_or(0, |m| m.len());
    order.sort_by_key(|&i| (std::cmp::Reverse(size(i)), i));
    let workers = threads.max(1).min(jobs.len());
    let results: Vec<(usize, Result<Loaded>)> = if workers <= 1 {
        order
            .iter()
            .map(|&i| (i, load_one(manifest, &jobs[i], cache)))
            .collect()
    } else {
        let next = AtomicUsize::new(0);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    s.spawn(|| {
                        let mut done = Vec::new();
                        while let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                            done.push((i, load_one(manifest, &jobs[i], cache)));
                        }
                        done
                    })
                })
                .collect();
            handles
                .into_iter()
                // a thread that panicked leaves its models' slots empty (an error below)
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        })
    };
    let mut slots: Vec<Option<Result<Loaded>>> = (0..jobs.len()).map(|_| None).collect();
    for (i, r) in results {
        if let Some(slot) = slots.get_mut(i) {
            *slot = Some(r);
        }
    }
    slots
        .into_iter()
        .map(|s| {
            s.unwrap_or_else(|| Err(Error::Internal("a model-loading thread panicked".into())))
        })
        .collect()
}
