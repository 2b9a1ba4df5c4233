//! The model cache from the command line: `--cache-dir DIR` / `--no-cache` on every command
//! that loads a bundle (the default folder comes from `$XDG_CACHE_HOME` or `$HOME`: the only
//! place that reads them), warnings when the cache could not be used, and
//! `gestalt-edge model compile`, which fills the cache ahead of time (for a kiosk image).

use std::path::PathBuf;
use std::time::Instant;

use gestalt_edge::bundle::cache::{CacheReport, CacheStatus};
use gestalt_edge::bundle::{Bundle, LoadOptions};
use gestalt_edge::{Error, Result};

/// Cache folder under the user's cache home.
const CACHE_SUBDIR: &str = "gestalt-edge";

/// Model-cache flags shared by the commands that load a bundle.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CacheArgs {
    /// Model cache folder: each model is stored decluttered (NNEF) on first load, so later
    /// starts skip ONNX parsing [default: board profile's cache_dir, else
    /// $XDG_CACHE_HOME/gestalt-edge, else ~/.cache/gestalt-edge].
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    pub cache_dir: Option<PathBuf>,
    /// Load every model from its ONNX file; read and write no model cache.
    #[arg(long)]
    pub no_cache: bool,
}

impl CacheArgs {
    /// The cache folder to use: `None` with `--no-cache` or when no home folder is known.
    pub fn resolve(&self) -> Option<PathBuf> {
        if self.no_cache {
            return None;
        }
        self.cache_dir.clone().or_else(default_cache_dir)
    }
}

/// `$XDG_CACHE_HOME/gestalt-edge` (when absolute), else `$HOME/.cache/gestalt-edge`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let home = || {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .map(|h| h.join(".cache"))
    };
    xdg.or_else(home).map(|d| d.join(CACHE_SUBDIR))
}

/// Prints a warning for every model whose cache entry was rebuilt or could not be written
/// (the load itself succeeded).
pub fn warn(bundle: &Bundle) {
    for r in bundle.cache_reports() {
        match &r.status {
            CacheStatus::NotWritten(why) => eprintln!(
                "warning: model cache not used for {}: {why}",
                r.model.display()
            ),
            CacheStatus::Rebuilt => eprintln!(
                "warning: model cache entry for {} was damaged or stale; rebuilt",
                r.model.display()
            ),
            _ => {}
        }
    }
}

/// The cache's part in a load: "off" (no cache folder), "cold" (no model came from the
/// cache), "warm" (every model did) or "partial".
pub fn cache_state(bundle: &Bundle) -> &'static str {
    let r = bundle.cache_reports();
    let hits = r.iter().filter(|r| r.status.is_hit()).count();
    if r.iter().all(|r| r.status == CacheStatus::Disabled) {
        "off"
    } else if hits == r.len() {
        "warm"
    } else if hits == 0 {
        "cold"
    } else {
        "partial"
    }
}

/// Arguments of `model compile`.
#[derive(Debug, clap::Args)]
pub struct CompileArgs {
    /// Model-bundle manifest (TOML).
    #[arg(long, value_name = "MANIFEST")]
    pub bundle: PathBuf,
    /// Cache folder to fill [default: $XDG_CACHE_HOME/gestalt-edge, else
    /// ~/.cache/gestalt-edge].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Models loaded side by side [default: all cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

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
        .or_else(default_cache_dir)
        .ok_or_else(|| {
            Error::Usage(
                "no cache folder: pass --cache-dir (neither XDG_CACHE_HOME nor HOME is set)".into(),
            )
        })?;
    let threads = match a.threads {
        Some(0) => return Err(Error::Usage("--threads must be at least 1".into())),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
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
                CacheStatus::Unpinned => {
                    "not cached (a public key is in force: models run from the pinned ONNX)"
                        .to_string()
                }
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
