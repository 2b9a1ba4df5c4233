//! `bench --engine both`: the same bench on tract and on onnxruntime (per-pass and
//! intra-op threading), each in a fresh process of this binary so cold start and peak RSS
//! are not shared, then the ratios tract / onnxruntime. Also the MAC count of a bundle
//! loaded on onnxruntime (which has no cost model), taken from tract.

use std::path::Path;
use std::process::Command;

use gestalt_edge::bundle::{self, Bundle};
use gestalt_edge::engine::Net;
use gestalt_edge::{Error, Result};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::cli::args::{BenchArgs, EngineArg, OrtThreadingArg};
use crate::cli::resolve::{self, BenchSettings};

/// Multiply-accumulates of one photo (two detector passes + every view of every embedder)
/// by tract's cost model: each model is loaded on tract once more.
pub fn tract_macs(b: &Bundle) -> Result<u64> {
    let (det, embs) = b.nets();
    let mut total = 0u64;
    let mut nets: Vec<(&Net, u64)> = vec![(det, 2)];
    for (net, spec) in embs.iter().zip(&b.manifest.embedders) {
        nets.push((net, spec.views.len() as u64));
    }
    let files = std::iter::once((&b.manifest.detector.file, &b.manifest.detector.sha256))
        .chain(b.manifest.embedders.iter().map(|e| (&e.file, &e.sha256)));
    for ((net, times), (file, sha256)) in nets.into_iter().zip(files) {
        let (path, bytes) = bundle::read_verified(&b.path, file, sha256)?;
        let names: Vec<String> = net.outputs().iter().map(|(n, _)| n.clone()).collect();
        let [_, _, h, w] = net.input_shape();
        let tract = Net::load(&path, &bytes, w as u32, h as u32, &names)?;
        total = total.saturating_add(tract.macs().saturating_mul(times));
    }
    Ok(total)
}

/// The fields of a child's JSON report the comparison reads (the whole report is passed on
/// unchanged).
#[derive(Debug, Clone, Copy, serde::Deserialize)]
struct Timings {
    cold_start_ms: f64,
    detect_ms: f64,
    embed_ms: f64,
    rank_ms: f64,
    full_photo_ms: f64,
    peak_rss_mb: f64,
}

impl Timings {
    /// The compared fields: (JSON name, table row, value).
    fn rows(&self) -> [(&'static str, &'static str, f64); 6] {
        [
            ("cold_start_ms", "cold start ms", self.cold_start_ms),
            ("detect_ms", "detect ms", self.detect_ms),
            ("embed_ms", "embed ms", self.embed_ms),
            ("rank_ms", "rank ms", self.rank_ms),
            ("full_photo_ms", "full photo ms", self.full_photo_ms),
            ("peak_rss_mb", "peak RSS MB", self.peak_rss_mb),
        ]
    }
}

/// One child run: its label, its JSON report and the timings read from it.
struct Child {
    label: &'static str,
    report: Value,
    timings: Timings,
}

/// Reads every model file once so all engines start from the same (warm) page cache.
fn warm_page_cache(manifest: &Path) -> Result<()> {
    let m = bundle::read_manifest(manifest)?;
    let dir = manifest.parent().unwrap_or(Path::new("."));
    for file in std::iter::once(&m.detector.file).chain(m.embedders.iter().map(|e| &e.file)) {
        let path = dir.join(file);
        std::fs::read(&path).map_err(|e| Error::bundle(&path, e.to_string()))?;
    }
    Ok(())
}

fn ratio(x: f64, y: f64) -> Value {
    if y > 0.0 {
        json!((x / y * 1000.0).round() / 1000.0)
    } else {
        Value::Null
    }
}

/// Runs the bench on every engine and prints both (JSON with `--json`); returns the exit
/// code of the first child that failed, else 0.
pub fn run_both(a: &BenchArgs, settings: &BenchSettings) -> Result<i32> {
    if !cfg!(feature = "ort") {
        return Err(Error::Usage(
            "--engine both needs a build with the `ort` cargo feature (cargo build --features ort)"
                .into(),
        ));
    }
    let threads = settings.threads;
    let library = resolve::ort_library(&a.ort)?;
    warm_page_cache(&a.bundle)?;
    let exe = std::env::current_exe()
        .map_err(|e| Error::Usage(format!("cannot find this program's file: {e}")))?;
    let runs: [(&'static str, EngineArg, Option<OrtThreadingArg>); 3] = [
        ("tract", EngineArg::Tract, None),
        ("ort", EngineArg::Ort, Some(OrtThreadingArg::PerPass)),
        (
            "ort_intra_op",
            EngineArg::Ort,
            Some(OrtThreadingArg::IntraOp),
        ),
    ];
    let mut children = Vec::new();
    for (label, engine, threading) in runs {
        let ort = threading.map(|t| (library.as_path(), t));
        let out = Command::new(&exe)
            .args(resolve::child_args(settings, engine, ort))
            .output()
            .map_err(|e| Error::Usage(format!("cannot run {}: {e}", exe.display())))?;
        if !out.status.success() {
            eprint!("{}", String::from_utf8_lossy(&out.stderr));
            eprintln!("error: the {label} bench failed");
            return Ok(out.status.code().unwrap_or(1));
        }
        let report: Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| Error::Usage(format!("the {label} bench printed no JSON report: {e}")))?;
        let timings = Timings::deserialize(&report)
            .map_err(|e| Error::Usage(format!("the {label} bench report lacks a timing: {e}")))?;
        children.push(Child {
            label,
            report,
            timings,
        });
    }
    let tract = children[0].timings;
    let mut ratios = Map::new();
    for c in &children[1..] {
        let t = &c.timings;
        for (field, x, y) in [
            ("embed_ms", tract.embed_ms, t.embed_ms),
            ("detect_ms", tract.detect_ms, t.detect_ms),
            ("full_photo_ms", tract.full_photo_ms, t.full_photo_ms),
            ("cold_start_ms", tract.cold_start_ms, t.cold_start_ms),
            ("peak_rss_mb", tract.peak_rss_mb, t.peak_rss_mb),
        ] {
            ratios.insert(format!("{field}_tract_over_{}", c.label), ratio(x, y));
        }
    }
    let mut out = Map::new();
    out.insert("bundle".into(), json!(a.bundle.display().to_string()));
    out.insert("threads".into(), json!(threads));
    out.insert("ort_library".into(), json!(library.display().to_string()));
    for c in &children {
        out.insert(c.label.into(), c.report.clone());
    }
    out.insert("ratios".into(), Value::Object(ratios));
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&Value::Object(out)).unwrap_or_default()
        );
    } else {
        print_table(a, settings, &children);
    }
    Ok(0)
}

fn print_table(a: &BenchArgs, settings: &BenchSettings, children: &[Child]) {
    println!(
        "{} ({} threads, gallery {} images, median of {}; each engine in its own process)",
        a.bundle.display(),
        settings.threads,
        settings.gallery_size,
        settings.repeat
    );
    let mut head = format!("  {:<20}", "");
    for c in children {
        head += &format!(" {:>14}", c.label);
    }
    println!("{head}");
    for row in 0..children[0].timings.rows().len() {
        let mut line = format!("  {:<20}", children[0].timings.rows()[row].1);
        for c in children {
            line += &format!(" {:>14.1}", c.timings.rows()[row].2);
        }
        println!("{line}");
    }
    for c in &children[1..] {
        let r = ratio(children[0].timings.embed_ms, c.timings.embed_ms);
        println!(
            "  embed_ms tract / {}: {}",
            c.label,
            r.as_f64().map_or("n/a".to_string(), |x| format!("{x:.3}"))
        );
    }
}
