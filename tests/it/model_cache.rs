//! The model cache on the real demo bundle (YuNet + SFace): a bundle loaded from cache
//! entries gives BIT-IDENTICAL detections and embeddings to one loaded from ONNX; damaged
//! entries are rebuilt, never trusted; an entry made for another input shape is never
//! reused; the CLI (`model compile`, `--cache-dir`, `--no-cache`) fills and uses the cache
//! and survives an unusable cache folder.

use crate::util;

use std::path::Path;

use gestalt_edge::bundle::{Bundle, LoadOptions, Net};
use gestalt_edge::capture::{load_image, Limits};
use gestalt_edge::engine::cache::{CacheStatus, ModelCache, ENTRY_EXT};
use gestalt_edge::pipeline::{self, PipelineOptions};
use gestalt_edge::tools::synth::{self, Arch};
use util::*;

fn load(cache: Option<&Path>, threads: usize) -> Bundle {
    let options = LoadOptions {
        threads,
        cache_dir: cache.map(Path::to_path_buf),
        ..Default::default()
    };
    Bundle::load(&demo_bundle(), options).expect("demo bundle loads")
}

fn statuses(b: &Bundle) -> Vec<CacheStatus> {
    b.cache_reports().iter().map(|r| r.status.clone()).collect()
}

fn entries(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .expect("cache dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ENTRY_EXT))
        .collect();
    v.sort();
    v
}

/// Detections (all faces, both passes through the pipeline) and embeddings of every demo
/// photo, as raw f32 bits.
fn outputs(b: &Bundle) -> Vec<(String, Vec<u32>)> {
    let mut out = Vec::new();
    for name in [
        "person_a_1.jpg",
        "person_a_2.jpg",
        "person_b_1.jpg",
        "impostor_1.jpg",
    ] {
        let frame = load_image(&demo_photo(name), &Limits::default()).expect("photo");
        let mut bits = Vec::new();
        for d in b.detect(&frame.rgb).expect("detect") {
            bits.extend(d.bbox_px.iter().map(|x| x.to_bits()));
            bits.push(d.score.to_bits());
            bits.extend(d.landmarks_px.iter().flatten().map(|x| x.to_bits()));
        }
        let a = pipeline::analyse(b, &frame, &PipelineOptions::default()).expect("a face");
        for (key, v) in &a.embeddings.entries {
            assert!(
                v.iter().any(|x| *x != 0.0),
                "{name} {key:?}: empty embedding"
            );
            bits.extend(v.iter().map(|x| x.to_bits()));
        }
        out.push((name.to_string(), bits));
    }
    out
}

#[test]
fn cached_load_is_bit_identical_to_onnx_load() {
    let dir = tempdir();
    let cache = dir.path().join("cache");
    let plain = load(None, 1);
    assert_eq!(statuses(&plain), vec![CacheStatus::Disabled; 2]);
    let reference = outputs(&plain);
    drop(plain);

    let first = load(Some(&cache), 2);
    assert_eq!(statuses(&first), vec![CacheStatus::Written; 2]);
    assert_eq!(entries(&cache).len(), 2, "one entry per model");
    assert!(first.cache_reports().iter().all(|r| r.bytes > 1000));
    assert_eq!(outputs(&first), reference, "a load that writes the cache");
    drop(first);

    for threads in [1, 2] {
        let hit = load(Some(&cache), threads);
        assert_eq!(
            statuses(&hit),
            vec![CacheStatus::Hit; 2],
            "{threads} threads"
        );
        assert_eq!(outputs(&hit), reference, "cached load, {threads} threads");
    }
}

#[test]
fn damaged_entries_are_rebuilt_not_trusted() {
    let dir = tempdir();
    let cache = dir.path().join("cache");
    let reference = outputs(&load(Some(&cache), 2));
    let files = entries(&cache);
    assert_eq!(files.len(), 2);
    // one entry truncated, the other with one flipped bit in the middle of its weights
    let bytes = std::fs::read(&files[0]).expect("entry");
    std::fs::write(&files[0], &bytes[..bytes.len() / 2]).expect("truncate");
    let mut bytes = std::fs::read(&files[1]).expect("entry");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&files[1], &bytes).expect("corrupt");

    let rebuilt = load(Some(&cache), 2);
    assert_eq!(statuses(&rebuilt), vec![CacheStatus::Rebuilt; 2]);
    assert_eq!(outputs(&rebuilt), reference);
    let again = load(Some(&cache), 1);
    assert_eq!(statuses(&again), vec![CacheStatus::Hit; 2]);
    assert_eq!(outputs(&again), reference);

    // garbage in place of an entry: rebuilt as well
    std::fs::write(&files[0], b"not a model").expect("garbage");
    let b = load(Some(&cache), 1);
    assert!(
        statuses(&b).contains(&CacheStatus::Rebuilt),
        "{:?}",
        statuses(&b)
    );
}

#[test]
fn an_entry_for_another_input_shape_is_never_reused() {
    // a RetinaFace graph accepts any input size: the same bytes pinned to two shapes
    let model = synth::synth(Arch::RetinafaceMnet025, 3).onnx;
    let sha = gestalt_edge::bundle::sha256_hex(&model);
    let dir = tempdir();
    let cache = ModelCache::new(dir.path());
    let path = dir.path().join("retinaface.onnx");
    let outputs = ["loc".to_string(), "conf".to_string(), "landms".to_string()];
    let load = |w: u32, h: u32| {
        Net::load_cached(&path, &model, Some((&cache, &sha)), w, h, &outputs, 1).expect("load")
    };
    let priors = |w: usize, h: usize| -> usize {
        [8, 16, 32]
            .iter()
            .map(|s| 2 * w.div_ceil(*s) * h.div_ceil(*s))
            .sum()
    };
    let (small, r) = load(320, 256);
    assert_eq!(r.status, CacheStatus::Written);
    assert_eq!(
        small.outputs()[0].1.iter().product::<usize>(),
        4 * priors(320, 256)
    );
    let (large, r2) = load(640, 480);
    assert_eq!(
        r2.status,
        CacheStatus::Written,
        "the 320x256 entry must not serve 640x480"
    );
    assert_ne!(r.entry, r2.entry);
    assert_eq!(
        large.outputs()[0].1.iter().product::<usize>(),
        4 * priors(640, 480)
    );
    let (again, r3) = load(320, 256);
    assert_eq!(r3.status, CacheStatus::Hit);
    assert_eq!(again.outputs(), small.outputs());

    // the small entry copied under the large one's name is refused (the key is inside)
    let (small_entry, large_entry) = (r.entry.expect("entry"), r2.entry.expect("entry"));
    std::fs::copy(&small_entry, &large_entry).expect("plant");
    let (large2, r4) = load(640, 480);
    assert_eq!(r4.status, CacheStatus::Rebuilt);
    assert_eq!(large2.outputs(), large.outputs());

    // same shape, other outputs: another entry too
    let one = ["conf".to_string()];
    let (_, r5) =
        Net::load_cached(&path, &model, Some((&cache, &sha)), 320, 256, &one, 1).expect("load");
    assert_eq!(r5.status, CacheStatus::Written);
}

fn predict_json(extra: &[&str]) -> serde_json::Value {
    predict_json_with(&demo_bundle(), extra)
}

const DEMO_PHOTOS: [&str; 6] = [
    "person_a_1.jpg",
    "person_a_2.jpg",
    "person_b_1.jpg",
    "person_b_2.jpg",
    "impostor_1.jpg",
    "impostor_2.jpg",
];

/// Per photo of a `predict --json` of [`DEMO_PHOTOS`]: the syndromes by name, in rank order,
/// with their distances.
fn ranked(v: &serde_json::Value) -> Vec<Vec<(String, f64)>> {
    let photos = v.as_array().expect("one result per photo");
    assert_eq!(photos.len(), DEMO_PHOTOS.len(), "{v}");
    photos
        .iter()
        .map(|p| {
            p["suggested_syndromes_list"]
                .as_array()
                .expect("list")
                .iter()
                .map(|s| {
                    (
                        s["syndrome_name"].as_str().expect("name").to_string(),
                        s["distance"].as_f64().expect("distance"),
                    )
                })
                .collect()
        })
        .collect()
}

/// Two predictions of the demo photos rank the same syndromes by name on every photo, with
/// distances within `tol`.
fn same_ranking(a: &serde_json::Value, b: &serde_json::Value, tol: f64, what: &str) {
    for ((photo, x), y) in DEMO_PHOTOS.iter().zip(ranked(a)).zip(ranked(b)) {
        let names = |v: &[(String, f64)]| v.iter().map(|s| s.0.clone()).collect::<Vec<_>>();
        assert!(x.len() >= 4, "{photo}: {x:?}");
        assert_eq!(names(&x), names(&y), "{photo}: ranking, {what}");
        for ((name, d), (_, e)) in x.iter().zip(&y) {
            assert!((d - e).abs() <= tol, "{photo} {name}: {d} vs {e}, {what}");
        }
    }
}

fn predict_json_with(bundle: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "predict".to_string(),
        "--bundle".into(),
        bundle.display().to_string(),
        "--gallery".into(),
        demo_gallery().display().to_string(),
        "--json".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    // every demo photo: rankings are compared photo by photo
    args.extend(
        DEMO_PHOTOS
            .iter()
            .map(|p| demo_photo(p).display().to_string()),
    );
    let o = run(&args);
    let (code, out, err) = parts(&o);
    assert_eq!(code, 0, "predict {extra:?}: {err}");
    let mut v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    // timings differ run to run; everything else must not
    strip_timings(&mut v);
    v
}

fn strip_timings(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            m.retain(|k, _| !k.contains("timing") && !k.ends_with("_ms"));
            m.values_mut().for_each(strip_timings);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(strip_timings),
        _ => {}
    }
}

#[test]
fn cli_compile_then_predict_from_cache() {
    let dir = tempdir();
    let cache = dir.path().join("kiosk-cache");
    // compile rewrites the manifest (it pins the compiled files): a copy
    let bundle = demo_bundle_copy(dir.path());
    let before = std::fs::read_to_string(&bundle).expect("manifest");
    let compile = |json: bool| {
        let mut args = vec![
            "model".as_ref(),
            "compile".as_ref(),
            "--bundle".as_ref(),
            bundle.as_os_str(),
            "--cache-dir".as_ref(),
            cache.as_os_str(),
        ];
        if json {
            args.push("--json".as_ref());
        }
        let o = run(args);
        let (code, out, err) = parts(&o);
        assert_eq!(code, 0, "compile: {err}");
        out
    };
    let out = compile(false);
    assert_eq!(out.matches(": written").count(), 2, "{out}");
    assert!(
        out.contains("yunet.onnx") && out.contains("sface.onnx"),
        "{out}"
    );
    assert_eq!(entries(&cache).len(), 2);
    // the native engine covers both networks: two compiled files, pinned
    assert!(
        out.contains("embedder 'sface': compiled")
            && out.contains("detector: compiled")
            && out.contains("pinned in the manifest"),
        "{out}"
    );
    let after = std::fs::read_to_string(&bundle).expect("manifest");
    let native = dir.path().join("sface.native");
    for file in ["yunet.native", "sface.native"] {
        let sha = gestalt_edge::bundle::sha256_hex(
            &std::fs::read(dir.path().join(file)).expect("compiled"),
        );
        assert!(
            after.contains(&format!(
                "compiled = {{ file = \"{file}\", sha256 = \"{sha}\" }}"
            )),
            "{after}"
        );
    }
    // only those lines were added: comments and everything else kept
    assert_eq!(after.lines().count(), before.lines().count() + 2);
    let json: serde_json::Value = serde_json::from_str(&compile(true)).expect("JSON");
    let models = json["models"].as_array().expect("models");
    assert_eq!(models.len(), 2);
    assert!(models.iter().all(|m| m["status"] == "hit"), "{json}");
    assert_eq!(json["native"]["manifest_changed"], false, "{json}");
    assert_eq!(
        std::fs::read_to_string(&bundle).expect("manifest"),
        after,
        "a second compile changes nothing"
    );

    // the demo gallery still matches (the pins are outside the bundle id); the compiled file
    // runs without its ONNX file, and gives tract's result
    let uncached = predict_json_with(&bundle, &["--no-cache"]);
    let cached = predict_json_with(&bundle, &["--cache-dir", &cache.display().to_string()]);
    // the cache folder holds the native kernels measured on this CPU, which may differ from
    // the ones picked by CPU feature without it: the same ranking, distances within 1e-6
    // (float sums in another order; measured: at most 6e-8)
    same_ranking(&cached, &uncached, 1e-6, "with and without the cache");
    assert!(uncached.to_string().contains("person_a"), "{uncached}");
    let tract = predict_json_with(&bundle, &["--no-cache", "--engine", "tract"]);
    same_ranking(&uncached, &tract, 1e-4, "native vs tract");
    let n = ranked(&uncached);
    for onnx in ["yunet.onnx", "sface.onnx"] {
        std::fs::remove_file(dir.path().join(onnx)).expect("remove the ONNX file");
    }
    assert_eq!(predict_json_with(&bundle, &["--no-cache"]), uncached);
    // signed on the workstation, the manifest covers the compiled file a device runs
    let (secret, public) = gen_key(dir.path(), "site");
    sign(&secret, &bundle);
    let gallery = dir.path().join("demo.gallery");
    std::fs::copy(demo_gallery(), &gallery).expect("copy the gallery");
    sign(&secret, &gallery);
    let o = cmd()
        .args(["predict", "--json", "--no-cache", "--public-key"])
        .arg(&public)
        .arg("--bundle")
        .arg(&bundle)
        .arg("--gallery")
        .arg(&gallery)
        .args(DEMO_PHOTOS.iter().map(|p| demo_photo(p)))
        .output()
        .expect("run");
    let signed: serde_json::Value = serde_json::from_str(&ok(&o)).expect("JSON");
    assert_eq!(ranked(&signed), n);

    // a damaged or replaced compiled file is never used: exit 5 naming it and the fix
    let refused = |want: &[&str]| {
        let o = run([
            "predict",
            "--bundle",
            &bundle.display().to_string(),
            "--gallery",
            &demo_gallery().display().to_string(),
            "--no-cache",
            &demo_photo("person_a_2.jpg").display().to_string(),
        ]);
        expect_failure(&o, 5, want);
    };
    let good = std::fs::read(&native).expect("compiled");
    for bad in [good[..good.len() / 2].to_vec(), {
        let mut b = good.clone();
        let mid = b.len() / 2;
        b[mid] ^= 1;
        b
    }] {
        std::fs::write(&native, &bad).expect("damage");
        refused(&["sface.native", "sha256 mismatch", "model compile --bundle"]);
    }
    // a compiled file of another format version, pinned with its own (matching) sha256:
    // refused by its version, never read as if it were this build's format
    let mut other = good.clone();
    other[8..12].copy_from_slice(&99u32.to_le_bytes());
    std::fs::write(&native, &other).expect("other version");
    let manifest = std::fs::read_to_string(&bundle).expect("manifest");
    let (old, new) = (
        gestalt_edge::bundle::sha256_hex(&good),
        gestalt_edge::bundle::sha256_hex(&other),
    );
    assert!(manifest.contains(&old));
    std::fs::write(&bundle, manifest.replace(&old, &new)).expect("re-pin");
    refused(&[
        "sface.native",
        "format version 99",
        "model compile --bundle",
    ]);
}

#[test]
fn cli_unusable_cache_folder_warns_and_still_predicts() {
    let dir = tempdir();
    // a regular file where the folder should be: nothing can be created under it
    let not_dir = write(dir.path(), "file", b"x");
    let p = not_dir.display().to_string();
    // the kernels are still measured (not kept), so the sums may run in another order
    let got = predict_json(&["--cache-dir", &p]);
    same_ranking(
        &got,
        &predict_json(&["--no-cache"]),
        1e-6,
        "unusable cache vs none",
    );
    let o = run([
        "predict",
        "--bundle",
        &demo_bundle().display().to_string(),
        "--gallery",
        &demo_gallery().display().to_string(),
        "--cache-dir",
        &p,
        &demo_photo("person_b_1.jpg").display().to_string(),
    ]);
    let (code, _, err) = parts(&o);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("warning: model cache not used"), "{err}");

    // compile must fail loudly instead: exit 5, the folder named, nothing written
    let copy = dir.path().join("copy");
    std::fs::create_dir(&copy).expect("mkdir");
    let bundle = demo_bundle_copy(&copy);
    let before = std::fs::read(&bundle).expect("manifest");
    let o = run([
        "model",
        "compile",
        "--bundle",
        &bundle.display().to_string(),
        "--cache-dir",
        &p,
    ]);
    expect_failure(&o, 5, &["model cache entry not written", "file"]);
    assert_eq!(std::fs::read(&bundle).expect("manifest"), before);
    assert!(!copy.join("sface.native").exists());
    // --cache-dir and --no-cache together are a usage error
    let o = run([
        "predict",
        "--bundle",
        "b",
        "--gallery",
        "g",
        "--no-cache",
        "--cache-dir",
        "d",
        "x.jpg",
    ]);
    expect_failure(&o, 2, &[]);
}
