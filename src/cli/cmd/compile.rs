//! `gestalt-edge model compile`: compiles the models the native engine covers and pins the
//! compiled files in the manifest ([`gestalt_edge::tools::compile`]), then fills the model
//! cache ahead of time (for a kiosk image), so the first start on the device skips ONNX
//! parsing. The cache folder comes from `--cache-dir`, else the per-user default
//! ([`resolve::default_cache_dir`]).

use crate::cli::out::outln;
use std::time::Instant;

use gestalt_edge::bundle::{Bundle, LoadOptions};
use gestalt_edge::engine::cache::{CacheReport, CacheStatus};
use gestalt_edge::tools::compile::{compile_bundle, Outcome};
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
    /// The native engine's compiled files, detector first (absent with `--no-native`).
    #[serde(skip_serializing_if = "Option::is_none")]
    native: Option<&'a Outcome>,
}

/// Loads the bundle through the cache (verifying every model) and reports each entry.
/// Fails with exit code 5 when an entry could not be written.
pub fn run(a: CompileArgs) -> Result<i32> {
    if a.no_cache {
        return native_only(&a);
    }
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
    // the manifest and the compiled files are written only once the cache is
    let native = if a.no_native {
        None
    } else {
        Some(compile_bundle(&a.bundle)?)
    };
    if a.json {
        let r = CompileReport {
            bundle: a.bundle.display().to_string(),
            bundle_id: &bundle.id,
            cache_dir: dir.display().to_string(),
            load_ms,
            models: reports,
            native: native.as_ref(),
        };
        outln!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
    } else {
        outln!(
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
                CacheStatus::Unpinned => {
                    "not cached (a public key is in force: models run from the pinned ONNX)"
                        .to_string()
                }
            };
            let entry = r
                .entry
                .as_ref()
                .map_or(String::new(), |p| format!(" {}", p.display()));
            outln!(
                "  {}: {what}{entry} ({:.1} MB)",
                r.model.display(),
                r.bytes as f64 / 1e6
            );
        }
        print_native(native.as_ref(), &a.bundle);
    }
    Ok(0)
}

fn print_native(outcome: Option<&Outcome>, manifest: &std::path::Path) {
    let Some(outcome) = outcome else { return };
    outln!("native engine:");
    for r in &outcome.models {
        match (&r.compiled, &r.not_compiled) {
            (Some(file), _) => outln!(
                "  {}: compiled {} ({:.1} MB), pinned in the manifest",
                r.entry,
                file.display(),
                r.bytes as f64 / 1e6
            ),
            (None, why) => outln!(
                "  {}: runs on tract: {}",
                r.entry,
                why.as_deref().unwrap_or("not compiled")
            ),
        }
    }
    let sig = manifest.with_file_name(format!(
        "{}.sig",
        manifest.file_name().unwrap_or_default().to_string_lossy()
    ));
    if outcome.manifest_changed && sig.exists() {
        outln!(
            "  the manifest changed: {} no longer matches; sign it again (gestalt-edge sign --key SECRET --file {})",
            sig.display(),
            manifest.display()
        );
    }
}

/// `--no-cache`: compiles and pins without loading the bundle on tract.
fn native_only(a: &CompileArgs) -> Result<i32> {
    let t = Instant::now();
    let outcome = compile_bundle(&a.bundle)?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    if a.json {
        let v = serde_json::json!({
            "bundle": a.bundle.display().to_string(),
            "compile_ms": ms,
            "native": outcome,
        });
        outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        outln!("{} in {ms:.0} ms", a.bundle.display());
        print_native(Some(&outcome), &a.bundle);
    }
    Ok(0)
}
