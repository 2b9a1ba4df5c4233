//! `bench --backend both`: the same bench on tract and on onnxruntime (per-pass and
//! intra-op threading), each in a fresh process of this binary so cold start and peak RSS
//! are not shared, then the ratios tract / onnxruntime. Also the MAC count of a bundle
//! loaded on onnxruntime (which has no cost model), taken from tract.

use std::path::Path;
use std::process::Command;

use gestalt_edge::bundle::{self, Bundle, Net};
use gestalt_edge::{Error, Result};
use serde_json::{json, Map, Value};

use super::bench::BenchArgs;
use crate::cli::resolve::OrtThreadingArg;

/// Multiply-accumulates of one photo (two detector passes + every view of every embedder)
/// by tract's cost model: each model is loaded on tract once more.
pub fn tract_macs(b: &Bundle) -> Result<u64> {
    let dir = b.path.parent().unwrap_or(Path::new("."));
    let (det, embs) = b.nets();
    let mut total = 0u64;
    let mut nets: Vec<(&Net, u64)> = vec![(det, 2)];
    for (net, spec) in embs.iter().zip(&b.manifest.embedders) {
        nets.push((net, spec.views.len() as u64));
    }
    let files = std::iter::once(&b.manifest.detector.file)
        .chain(b.manifest.embedders.iter().map(|e| &e.file));
    for ((net, times), file) in nets.into_iter().zip(files) {
        let path = dir.join(file);
        let bytes = std::fs::read(&path).map_err(|e| Error::bundle(&path, e.to_string()))?;
        let names: Vec<String> = net.outputs().iter().map(|(n, _)| n.clone()).collect();
        let [_, _, h, w] = net.input_shape();
        let tract = Net::load(&path, &bytes, w as u32, h as u32, &names)?;
        total = total.saturating_add(tract.macs().saturating_mul(times));
    }
    Ok(total)
}

/// One child run: its label, the backend flags, the parsed JSON report.
struct Child {
    label: &'static str,
    report: Value,
}

fn child_args(a: &BenchArgs, threads: usize) -> Vec<std::ffi::OsString> {
    let mut v: Vec<std::ffi::OsString> = vec!["bench".into(), "--json".into(), "--bundle".into()];
    v.push(a.bundle.clone().into_os_string());
    v.push("--threads".into());
    v.push(threads.to_string().into());
    v.push("--gallery-size".into());
    v.push(a.gallery_size.to_string().into());
    if let Some(cap) = a.search_cap {
        v.push("--search-cap".into());
        v.push(cap.to_string().into());
    }
    v.push("--repeat".into());
    v.push(a.repeat.to_string().into());
    if a.cache.no_cache {
        v.push("--no-cache".into());
    } else if let Some(d) = &a.cache.cache_dir {
        v.push("--cache-dir".into());
        v.push(d.clone().into_os_string());
    }
    if let Some(p) = &a.photo {
        v.push("--photo".into());
        v.push(p.clone().into_os_string());
    }
    v
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

fn ratio(a: &Value, b: &Value, field: &str) -> Value {
    match (a[field].as_f64(), b[field].as_f64()) {
        (Some(x), Some(y)) if y > 0.0 => json!((x / y * 1000.0).round() / 1000.0),
        _ => Value::Null,
    }
}

/// Runs the bench on every engine and prints both (JSON with `--json`); returns the exit
/// code of the first child that failed, else 0.
pub fn run_both(a: &BenchArgs) -> Result<i32> {
    let threads = match a.threads {
        Some(0) => return Err(Error::Usage("--threads must be at least 1".into())),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    if !cfg!(feature = "ort") {
        return Err(Error::Usage(
            "--backend both needs a build with the `ort` cargo feature (cargo build --features ort)"
                .into(),
        ));
    }
    let library = a.ort.library()?;
    warm_page_cache(&a.bundle)?;
    let exe = std::env::current_exe()
        .map_err(|e| Error::Usage(format!("cannot find this program's file: {e}")))?;
    let runs: [(&'static str, Vec<&str>); 3] = [
        ("tract", vec!["--backend", "tract"]),
        (
            "ort",
            vec![
                "--backend",
                "ort",
                "--ort-threading",
                OrtThreadingArg::PerPass.flag(),
            ],
        ),
        (
            "ort_intra_op",
            vec![
                "--backend",
                "ort",
                "--ort-threading",
                OrtThreadingArg::IntraOp.flag(),
            ],
        ),
    ];
    let mut children = Vec::new();
    for (label, flags) in runs {
        let mut cmd = Command::new(&exe);
        cmd.args(child_args(a, threads)).args(flags);
        if label != "tract" {
            cmd.arg("--ort-lib").arg(&library);
        }
        let out = cmd
            .output()
            .map_err(|e| Error::Usage(format!("cannot run {}: {e}", exe.display())))?;
        if !out.status.success() {
            eprint!("{}", String::from_utf8_lossy(&out.stderr));
            eprintln!("error: the {label} bench failed");
            return Ok(out.status.code().unwrap_or(1));
        }
        let report: Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| Error::Usage(format!("the {label} bench printed no JSON report: {e}")))?;
        children.push(Child { label, report });
    }
    let tract = &children[0].report;
    let mut ratios = Map::new();
    for c in &children[1..] {
        for field in [
            "embed_ms",
            "detect_ms",
            "full_photo_ms",
            "cold_start_ms",
            "peak_rss_mb",
        ] {
            ratios.insert(
                format!("{field}_tract_over_{}", c.label),
                ratio(tract, &c.report, field),
            );
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
        print_table(a, threads, &children);
    }
    Ok(0)
}

fn print_table(a: &BenchArgs, threads: usize, children: &[Child]) {
    println!(
        "{} ({} threads, gallery {} images, median of {}; each engine in its own process)",
        a.bundle.display(),
        threads,
        a.gallery_size,
        a.repeat
    );
    let mut head = format!("  {:<20}", "");
    for c in children {
        head += &format!(" {:>14}", c.label);
    }
    println!("{head}");
    let rows = [
        ("cold start ms", "cold_start_ms"),
        ("detect ms", "detect_ms"),
        ("embed ms", "embed_ms"),
        ("rank ms", "rank_ms"),
        ("full photo ms", "full_photo_ms"),
        ("peak RSS MB", "peak_rss_mb"),
    ];
    for (name, field) in rows {
        let mut line = format!("  {name:<20}");
        for c in children {
            line += &format!(" {:>14.1}", c.report[field].as_f64().unwrap_or(f64::NAN));
        }
        println!("{line}");
    }
    for c in &children[1..] {
        let r = ratio(&children[0].report, &c.report, "embed_ms");
        println!(
            "  embed_ms tract / {}: {}",
            c.label,
            r.as_f64().map_or("n/a".to_string(), |x| format!("{x:.3}"))
        );
    }
}
