//! `bench --engine both|all`: the same bench on several engines (`both`: tract and
//! onnxruntime per-pass and intra-op; `all`: native, tract and, with the `ort` feature,
//! onnxruntime per-pass), each in a fresh process of this binary so cold start and peak RSS
//! are not shared, then the ratios of each engine over the last one. Also the per-model rows
//! of one bench (engine, kernels, one timed pass, GMAC/s) and the MAC count of a bundle
//! loaded on onnxruntime (which has no cost model), taken from tract.

use crate::cli::out::outln;
use std::path::Path;
use std::process::Command;

use gestalt_edge::bundle::{self, Bundle};
use gestalt_edge::engine::Net;
use gestalt_edge::{Error, Result};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::cli::args::{BenchArgs, BenchEngineArg, EngineArg, OrtThreadingArg};
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
    let files = std::iter::once((
        "detector".to_string(),
        &b.manifest.detector.file,
        &b.manifest.detector.sha256,
    ))
    .chain(
        b.manifest
            .embedders
            .iter()
            .map(|e| (format!("embedder '{}'", e.name), &e.file, &e.sha256)),
    );
    for ((net, times), (entry, file, sha256)) in nets.into_iter().zip(files) {
        let (path, bytes) = bundle::read_verified(&b.path, &entry, file, sha256)?;
        let names: Vec<String> = net.outputs().iter().map(|(n, _)| n.clone()).collect();
        let [_, _, h, w] = net.input_shape();
        let tract = Net::load(&path, &bytes, w as u32, h as u32, &names)?;
        total = total.saturating_add(tract.macs().saturating_mul(times));
    }
    Ok(total)
}

/// One model of a bench: who ran it and how fast.
#[derive(Debug, serde::Serialize)]
pub struct ModelRow {
    /// `detector` or the embedder's name.
    pub model: String,
    /// The engine that ran it.
    pub engine: &'static str,
    /// Why it runs on another engine than asked (the native engine's reason), if it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The native engine's kernels (empty on the others).
    pub kernels: Vec<String>,
    /// Multiply-accumulates of one pass, 1e9.
    pub gmac_per_pass: f64,
    /// Median of 3 passes on a constant input, after one warm-up, ms.
    pub pass_ms: f64,
    /// `gmac_per_pass` over `pass_ms`.
    pub gmac_per_s: f64,
}

/// Times one pass of every model of `b` (detector, then embedders).
pub fn model_rows(b: &Bundle) -> Result<Vec<ModelRow>> {
    let (det, embs) = b.nets();
    let names = std::iter::once("detector".to_string())
        .chain(b.manifest.embedders.iter().map(|e| e.name.clone()));
    let mut rows = Vec::new();
    for (net, model) in std::iter::once(det).chain(embs.iter()).zip(names) {
        let n: usize = net.input_shape().iter().product();
        let input = vec![0.25f32; n];
        net.run(input.clone())?;
        let mut times = Vec::new();
        for _ in 0..3 {
            let t = std::time::Instant::now();
            net.run(input.clone())?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        let pass_ms = times[1];
        let gmac = net.macs() as f64 / 1e9;
        rows.push(ModelRow {
            model,
            engine: net.engine(),
            note: net.engine_note().map(str::to_string),
            kernels: net.kernels(),
            gmac_per_pass: gmac,
            pass_ms,
            gmac_per_s: gmac / (pass_ms / 1e3).max(1e-9),
        });
    }
    Ok(rows)
}

/// The load average (1, 5, 15 minutes) from /proc/loadavg; zeros where there is none.
pub fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut v = text.split_whitespace().map(|x| x.parse().unwrap_or(0.0));
    [
        v.next().unwrap_or(0.0),
        v.next().unwrap_or(0.0),
        v.next().unwrap_or(0.0),
    ]
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
        gestalt_edge::fsio::read_capped(&path, gestalt_edge::fsio::Cap::MODEL)
            .map_err(|e| Error::bundle(&path, e.to_string()))?;
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

/// Runs the bench on every engine of `--engine both` or `all` and prints them (JSON with
/// `--json`); returns the exit code of the first child that failed, else 0.
pub fn run_engines(a: &BenchArgs, settings: &BenchSettings) -> Result<i32> {
    let with_ort = cfg!(feature = "ort");
    if a.engine == Some(BenchEngineArg::Both) && !with_ort {
        return Err(Error::Usage(
            "--engine both needs a build with the `ort` cargo feature (cargo build --features ort)"
                .into(),
        ));
    }
    let threads = settings.threads;
    let library = if with_ort {
        Some(resolve::ort_library(&a.ort)?)
    } else {
        None
    };
    warm_page_cache(&a.bundle)?;
    let exe = std::env::current_exe()
        .map_err(|e| Error::Usage(format!("cannot find this program's file: {e}")))?;
    let mut runs: Vec<(&'static str, EngineArg, Option<OrtThreadingArg>)> = Vec::new();
    if a.engine == Some(BenchEngineArg::All) {
        runs.push(("native", EngineArg::Native, None));
        runs.push(("tract", EngineArg::Tract, None));
        if with_ort {
            runs.push(("ort", EngineArg::Ort, Some(OrtThreadingArg::PerPass)));
        }
    } else {
        runs.push(("tract", EngineArg::Tract, None));
        runs.push(("ort", EngineArg::Ort, Some(OrtThreadingArg::PerPass)));
        runs.push((
            "ort_intra_op",
            EngineArg::Ort,
            Some(OrtThreadingArg::IntraOp),
        ));
    }
    let mut children = Vec::new();
    for (label, engine, threading) in runs {
        let ort = match (threading, &library) {
            (Some(t), Some(lib)) => Some((lib.as_path(), t)),
            _ => None,
        };
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
    let mut ratios = Map::new();
    for (x, y) in ratio_pairs(a.engine.unwrap_or(BenchEngineArg::All), &children) {
        let (xt, yt) = (&children[x].timings, &children[y].timings);
        for (field, p, q) in [
            ("embed_ms", xt.embed_ms, yt.embed_ms),
            ("detect_ms", xt.detect_ms, yt.detect_ms),
            ("full_photo_ms", xt.full_photo_ms, yt.full_photo_ms),
            ("cold_start_ms", xt.cold_start_ms, yt.cold_start_ms),
            ("peak_rss_mb", xt.peak_rss_mb, yt.peak_rss_mb),
        ] {
            let name = format!("{field}_{}_over_{}", children[x].label, children[y].label);
            ratios.insert(name, ratio(p, q));
        }
    }
    let mut out = Map::new();
    out.insert("bundle".into(), json!(a.bundle.display().to_string()));
    out.insert("threads".into(), json!(threads));
    out.insert("load_average".into(), json!(load_average()));
    if let Some(library) = &library {
        out.insert("ort_library".into(), json!(library.display().to_string()));
    }
    for c in &children {
        out.insert(c.label.into(), c.report.clone());
    }
    out.insert("ratios".into(), Value::Object(ratios));
    if a.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&Value::Object(out)).unwrap_or_default()
        );
    } else {
        print_table(a, settings, &children);
    }
    Ok(0)
}

/// The (numerator, denominator) children of the ratios: `both` compares tract with each
/// onnxruntime run; `all` compares every engine with the last (onnxruntime when built in).
fn ratio_pairs(engine: BenchEngineArg, children: &[Child]) -> Vec<(usize, usize)> {
    let n = children.len();
    match engine {
        BenchEngineArg::All => (0..n.saturating_sub(1)).map(|i| (i, n - 1)).collect(),
        _ => (1..n).map(|i| (0, i)).collect(),
    }
}

fn print_table(a: &BenchArgs, settings: &BenchSettings, children: &[Child]) {
    outln!(
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
    outln!("{head}");
    for row in 0..children[0].timings.rows().len() {
        let mut line = format!("  {:<20}", children[0].timings.rows()[row].1);
        for c in children {
            line += &format!(" {:>14.1}", c.timings.rows()[row].2);
        }
        outln!("{line}");
    }
    for (x, y) in ratio_pairs(a.engine.unwrap_or(BenchEngineArg::All), children) {
        let r = ratio(children[x].timings.embed_ms, children[y].timings.embed_ms);
        outln!(
            "  embed_ms {} / {}: {}",
            children[x].label,
            children[y].label,
            r.as_f64().map_or("n/a".to_string(), |x| format!("{x:.3}"))
        );
    }
    for c in children {
        for m in c.report["models"].as_array().into_iter().flatten() {
            let f = |k: &str| m[k].as_f64().unwrap_or(0.0);
            let kernels: Vec<&str> = m["kernels"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|k| k.as_str())
                .collect();
            outln!(
                "  {:<14} {:<10} {:>8.1} ms/pass {:>6.1} GMAC/s  {}{}",
                c.label,
                m["model"].as_str().unwrap_or(""),
                f("pass_ms"),
                f("gmac_per_s"),
                m["engine"].as_str().unwrap_or(""),
                if kernels.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", kernels.join(", "))
                }
            );
        }
    }
    outln!("  load average {:.2}", load_average()[0]);
}
