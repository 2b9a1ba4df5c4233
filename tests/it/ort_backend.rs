//! The onnxruntime backend (cargo feature `ort`) on the real demo bundle: same embeddings and
//! ranking as tract, the bench in both engines, and exit 5 for a library that cannot load.
//! The library comes from the onnxruntime Python wheel (scripts/setup.sh installs it) or
//! `ORT_DYLIB_PATH`; without either these tests fail with the fix, they are never skipped.
#![cfg(feature = "ort")]

use crate::util;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use gestalt_edge::bundle::{Bundle, LoadOptions};
use gestalt_edge::engine::{Engine, OrtOptions, OrtThreading};
use serde_json::Value;
use util::{demo_bundle, demo_gallery, demo_photo, expect_failure, parts};

/// The onnxruntime shared library: `ORT_DYLIB_PATH`, else the one inside the installed
/// onnxruntime Python package.
fn ort_lib() -> PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
        let script = "import onnxruntime, os, glob; d = os.path.join(os.path.dirname(onnxruntime.__file__), 'capi'); print(sorted(glob.glob(os.path.join(d, 'libonnxruntime.so*')))[0])";
        let out = Command::new("python3").args(["-c", script]).output();
        let path = match out {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
            _ => String::new(),
        };
        assert!(
            !path.is_empty() && PathBuf::from(&path).is_file(),
            "no onnxruntime library: run scripts/setup.sh (installs the pinned onnxruntime wheel, models/requirements.txt) or set ORT_DYLIB_PATH"
        );
        PathBuf::from(path)
    })
    .clone()
}

fn predict(backend: &[&str], photo: &str) -> Value {
    let mut c = util::cmd();
    c.args([
        "predict",
        "--json",
        "--top",
        "5",
        "--threads",
        "2",
        "--bundle",
    ])
    .arg(demo_bundle())
    .arg("--gallery")
    .arg(demo_gallery())
    .args(backend)
    .arg(demo_photo(photo));
    let o = c.output().expect("run gestalt-edge");
    let (code, out, err) = parts(&o);
    assert_eq!(code, 0, "predict {backend:?} failed: {err}");
    let mut v: Vec<Value> = serde_json::from_str(&out).expect("predict --json prints an array");
    v.pop().expect("one prediction")
}

fn syndromes(p: &Value) -> Vec<(String, f64)> {
    p["suggested_syndromes_list"]
        .as_array()
        .expect("syndrome list")
        .iter()
        .map(|s| {
            (
                s["syndrome_name"].as_str().unwrap_or("").to_string(),
                s["distance"].as_f64().expect("distance"),
            )
        })
        .collect()
}

#[test]
fn predict_on_onnxruntime_ranks_like_tract() {
    let lib = ort_lib();
    let lib = lib.to_str().expect("utf-8 path");
    for photo in ["person_a_2.jpg", "person_b_2.jpg", "impostor_1.jpg"] {
        let tract = syndromes(&predict(&["--engine", "tract"], photo));
        assert!(tract.len() >= 4, "{photo}: {tract:?}");
        // and the native engine (the CLI's default), named too
        let native = syndromes(&predict(&["--engine", "native"], photo));
        for threading in ["per-pass", "intra-op"] {
            let ort = syndromes(&predict(
                &[
                    "--backend",
                    "ort",
                    "--ort-lib",
                    lib,
                    "--ort-threading",
                    threading,
                ],
                photo,
            ));
            let names = |v: &[(String, f64)]| v.iter().map(|s| s.0.clone()).collect::<Vec<_>>();
            assert_eq!(
                names(&ort),
                names(&tract),
                "{photo} ({threading}): top-5 order"
            );
            assert_eq!(
                names(&ort),
                names(&native),
                "{photo} ({threading}): top-5 order vs native"
            );
            for (((name, d_ort), (_, d_tract)), (_, d_native)) in
                ort.iter().zip(&tract).zip(&native)
            {
                assert!(
                    (d_ort - d_tract).abs() <= 1e-4,
                    "{photo} ({threading}) {name}: onnxruntime {d_ort} vs tract {d_tract}"
                );
                assert!(
                    (d_ort - d_native).abs() <= 1e-4,
                    "{photo} ({threading}) {name}: onnxruntime {d_ort} vs native {d_native}"
                );
            }
        }
    }
}

#[test]
fn embeddings_agree_with_tract_per_key() {
    let options = |engine| LoadOptions {
        threads: 2,
        engine,
        ..Default::default()
    };
    let tract = Bundle::load(&demo_bundle(), options(Engine::Tract)).expect("tract bundle");
    let ort = Bundle::load(
        &demo_bundle(),
        options(Engine::Ort(OrtOptions {
            library: ort_lib(),
            threading: OrtThreading::PerPass,
        })),
    )
    .expect("onnxruntime bundle");
    assert_eq!(ort.nets().0.engine(), "ort");
    assert_eq!(tract.nets().0.engine(), "tract");
    let face = image::RgbImage::from_fn(112, 112, |x, y| {
        image::Rgb([(x * 2) as u8, (y * 2) as u8, ((x * y) % 251) as u8])
    });
    let a = tract.embed(&face).expect("tract embeds");
    let b = ort.embed(&face).expect("onnxruntime embeds");
    assert_eq!(a.entries.len(), 4);
    for ((ka, va), (kb, vb)) in a.entries.iter().zip(&b.entries) {
        assert_eq!(ka, kb, "same key order");
        let dot: f32 = va.iter().zip(vb).map(|(x, y)| x * y).sum();
        let na: f32 = va.iter().map(|x| x * x).sum::<f32>().sqrt();
        let nb: f32 = vb.iter().map(|x| x * x).sum::<f32>().sqrt();
        let cos = dot / (na * nb);
        assert!(cos > 0.99999, "{ka:?}: cosine {cos}");
    }
    // detection: same face, same landmarks to a fraction of a pixel
    let photo = image::open(demo_photo("person_a_1.jpg"))
        .expect("photo")
        .to_rgb8();
    let (da, db) = (
        tract.detect(&photo).expect("tract"),
        ort.detect(&photo).expect("ort"),
    );
    assert!(!da.is_empty() && da.len() == db.len(), "{da:?} vs {db:?}");
    assert!((da[0].score - db[0].score).abs() < 1e-3);
    for (p, q) in da[0].landmarks_px.iter().zip(&db[0].landmarks_px) {
        assert!(
            (p[0] - q[0]).abs() < 0.05 && (p[1] - q[1]).abs() < 0.05,
            "{p:?} vs {q:?}"
        );
    }
}

fn bench(args: &[&str]) -> Value {
    let mut c = util::cmd();
    c.args([
        "bench",
        "--json",
        "--repeat",
        "1",
        "--gallery-size",
        "500",
        "--threads",
        "2",
    ])
    .arg("--bundle")
    .arg(demo_bundle())
    .arg("--photo")
    .arg(demo_photo("person_a_1.jpg"))
    .args(args);
    let o = c.output().expect("run gestalt-edge");
    let (code, out, err) = parts(&o);
    assert_eq!(code, 0, "bench {args:?} failed: {err}");
    serde_json::from_str(&out).expect("bench --json prints one object")
}

fn assert_bench_fields(r: &Value, backend: &str) {
    assert_eq!(r["backend"], backend, "{r}");
    assert_eq!(r["face_found"], true, "{r}");
    assert_eq!(r["embed_passes"], 4, "{r}");
    for f in [
        "detect_ms",
        "embed_ms",
        "full_photo_ms",
        "cold_start_ms",
        "peak_rss_mb",
        "gmac_per_s",
    ] {
        let v = r[f].as_f64().unwrap_or(-1.0);
        assert!(v > 0.0 && v.is_finite(), "{backend} {f} = {v}: {r}");
    }
    assert!(r["rank_ms"].as_f64().is_some_and(|v| v >= 0.0), "{r}");
}

#[test]
fn bench_on_onnxruntime_reports_every_stage() {
    let lib = ort_lib();
    let r = bench(&[
        "--backend",
        "ort",
        "--ort-lib",
        lib.to_str().expect("utf-8"),
    ]);
    assert_bench_fields(&r, "ort");
    assert_eq!(r["ort_threading"], "per-pass");
}

#[test]
fn bench_both_compares_the_engines_in_one_run() {
    let lib = ort_lib();
    let r = bench(&[
        "--backend",
        "both",
        "--ort-lib",
        lib.to_str().expect("utf-8"),
    ]);
    assert_bench_fields(&r["tract"], "tract");
    assert_bench_fields(&r["ort"], "ort");
    assert_bench_fields(&r["ort_intra_op"], "ort");
    assert_eq!(r["ort_intra_op"]["ort_threading"], "intra-op");
    // the same models: the cost model counts the same work on both engines
    assert_eq!(r["tract"]["gmac_per_photo"], r["ort"]["gmac_per_photo"]);
    for key in [
        "embed_ms_tract_over_ort",
        "embed_ms_tract_over_ort_intra_op",
    ] {
        let ratio = r["ratios"][key].as_f64().unwrap_or(-1.0);
        let want = r["tract"]["embed_ms"].as_f64().unwrap_or(0.0)
            / r[&key["embed_ms_tract_over_".len()..]]["embed_ms"]
                .as_f64()
                .unwrap_or(f64::NAN);
        assert!(
            ratio > 0.0 && (ratio - want).abs() < 2e-3,
            "{key} {ratio} vs {want}: {r}"
        );
    }
}

#[test]
fn an_unloadable_library_is_exit_5() {
    let run = |args: &[&str]| {
        let mut c = util::cmd();
        c.args(["predict", "--backend", "ort", "--bundle"])
            .arg(demo_bundle())
            .arg("--gallery")
            .arg(demo_gallery())
            .args(args)
            .arg(demo_photo("person_a_1.jpg"));
        c.output().expect("run gestalt-edge")
    };
    let dir = util::tempdir();
    let missing = dir.path().join("libonnxruntime.so.0");
    expect_failure(
        &run(&["--ort-lib", missing.to_str().expect("utf-8")]),
        5,
        &["libonnxruntime.so.0", "cannot load onnxruntime"],
    );
    let not_a_library = util::write(dir.path(), "libfake.so", b"not an ELF file");
    expect_failure(
        &run(&["--ort-lib", not_a_library.to_str().expect("utf-8")]),
        5,
        &["libfake.so", "cannot load onnxruntime"],
    );
    // util::cmd clears the environment: no ORT_DYLIB_PATH either
    expect_failure(&run(&[]), 5, &["--ort-lib", "ORT_DYLIB_PATH"]);
    let mut c = util::cmd();
    c.args(["bench", "--backend", "both", "--bundle"])
        .arg(demo_bundle());
    expect_failure(&c.output().expect("run"), 5, &["ORT_DYLIB_PATH"]);
}
