//! `gestalt-edge model compile`: fills the model cache ahead of time (for a kiosk image), so
//! the first start on the device skips ONNX parsing. The cache folder comes from
//! `--cache-dir`, else the per-user default ([`resolve::default_cache_dir`]).

use std::time::Instant;

use gestalt_edge::bundle::{Bundle, LoadOptions};
use gestalt_edge::engine::cache::{CacheReport, CacheStatus};
use gestalt_edge::{Error, Result};

use crate::cli::args::CompileArgs;
use crate::cli::resolve;

#[derive(serde::Serialize)]
struct CompileReport<'a> {
    bundle: String,
    bundle_id: &'a str,
    cache_dir: String,
    load_ms: f64,
    models: &'a [CacheReport],
}

/// Loads the bundle through the cache (verifying every model) and reports each entry.
/// Fails with exit code 5 when an entry could not be written.
pub fn run(a: CompileArgs) -> Result<i32> {
    let dir = a
        .cache_dir
        .clone()
        .or_else(resolve::default_cache_dir)
        .ok_or_else(|| {
            Error::Usage(
                "no cache folder: pass --cache-dir (neither XDG_CACHE_HOME nor HOME is set)".into(),
            )
        })?;
    let threads = resolve::threads(a.threads, None);
    let t = Instant::now();
    let options = LoadOptions {
        threads,
        cache_dir: Some(dir.clone()),
        ..Default::default()
    };
    let bundle = Bundle::load(&a.bundle, options)?;
    let load_ms = t.elapsed().as_secs_f64() * 1000.0;
    let reports = bundle.cache_reports();
    if a.json {
        let r = CompileReport {
            bundle: a.bundle.display().to_string(),
            bundle_id: &bundle.id,
            cache_dir: dir.display().to_string(),
            load_ms,
            models: reports,
        };
        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
    } else {
        println!(
            "{} (bundle {}) -> {} in {load_ms:.0} ms",
            a.bundle.display(),
            bundle.id,
            dir.display()
        );
        for r in reports {
            let what = match &r.status {
                CacheStatus::Hit => "already cached".to_string(),
                CacheStatus::Written => "written".to_string(),
                CacheStatus::Rebuilt => "rebuilt (the old entry was damaged)".to_string(),
                CacheStatus::Disabled => "not cached".to_string(),
                CacheStatus::NotWritten(why) => format!("NOT written: {why}"),
            };
            let entry = r
                .entry
                .as_ref()
                .map_or(String::new(), |p| format!(" {}", p.display()));
            println!(
                "  {}: {what}{entry} ({:.1} MB)",
                r.model.display(),
                r.bytes as f64 / 1e6
            );
        }
    }
    if let Some(r) = reports
        .iter()
        .find(|r| matches!(r.status, CacheStatus::NotWritten(_)))
    {
        let why = match &r.status {
            CacheStatus::NotWritten(w) => w.as_str(),
            _ => "",
        };
        return Err(Error::bundle(
            &r.model,
            format!("model cache entry not written: {why}"),
        ));
    }
    Ok(0)
}
