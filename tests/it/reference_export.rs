//! The reference-model exporter (`models/export_reference.py`) checked on its stand-in
//! (`tests/golden/reference/`, made by `models/reference_standin.py`): two whole-module
//! pickles built like the reference's (onnx2torch base, Linear + BatchNorm1d head, dropout +
//! classifier) exported to ONNX, and an ONNX file used as is, with the manifest the exporter
//! wrote for them. Our engines on the exported files must give torch's representation of a
//! fixed crop, and the manifest must be a bundle `model compile` and `model quantize` take.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gestalt_edge::bundle::input::to_nchw;
use gestalt_edge::bundle::manifest::REFERENCE_VIEWS;
use gestalt_edge::bundle::{read_manifest, read_verified, sha256_hex, ChannelOrder, Net};
use gestalt_edge::engine::native::{ByFeatures, NativeNet};

use crate::util::{demo_bundle, link_demo_models, parts, root, run, tempdir};

/// Agreement with torch: f32 graphs of ~10 layers on the same input.
const MIN_COSINE: f64 = 0.99999;
const MAX_ABS_DIFF: f64 = 1e-4;
const MODELS: [&str; 3] = ["m0", "m1", "glint"];

fn golden_dir() -> PathBuf {
    root().join("tests/golden/reference")
}

/// torch.json: torch's representation of input.png per model, and the sha256 of the files
/// it was made with.
fn torch_golden() -> (BTreeMap<String, Vec<f32>>, serde_json::Value) {
    let text = std::fs::read_to_string(golden_dir().join("torch.json")).expect("torch.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("torch.json is JSON");
    let mut out = BTreeMap::new();
    for name in MODELS {
        let values: Vec<f32> = v["models"][name]
            .as_array()
            .unwrap_or_else(|| panic!("torch.json lacks models.{name}"))
            .iter()
            .map(|x| x.as_f64().expect("a number") as f32)
            .collect();
        assert_eq!(values.len(), 512, "{name}");
        assert!(
            values.iter().any(|x| x.abs() > 0.1),
            "{name}: a trivial golden"
        );
        out.insert(name.to_string(), values);
    }
    (out, v)
}

/// Cosine and largest absolute difference; panics beyond the tolerance.
fn agree(what: &str, got: &[f32], want: &[f32]) -> (f64, f64) {
    assert_eq!(got.len(), want.len(), "{what}: width");
    let (mut ab, mut aa, mut bb, mut max) = (0f64, 0f64, 0f64, 0f64);
    for (&g, &w) in got.iter().zip(want) {
        let (g, w) = (g as f64, w as f64);
        ab += g * w;
        aa += g * g;
        bb += w * w;
        max = max.max((g - w).abs());
    }
    let cos = ab / (aa.sqrt() * bb.sqrt());
    eprintln!("{what}: cosine {cos:.9}, max abs difference {max:.2e}");
    assert!(cos >= MIN_COSINE, "{what}: cosine {cos} < {MIN_COSINE}");
    assert!(
        max <= MAX_ABS_DIFF,
        "{what}: max abs difference {max} > {MAX_ABS_DIFF}"
    );
    (cos, max)
}

#[test]
fn golden_files_are_the_ones_torch_ran() {
    let (_, golden) = torch_golden();
    let hashes = golden["sha256"].as_object().expect("sha256 map");
    for f in ["input.png", "m0.onnx", "m1.onnx", "glint.onnx"] {
        let bytes = std::fs::read(golden_dir().join(f)).expect(f);
        assert_eq!(
            hashes[f].as_str(),
            Some(sha256_hex(&bytes).as_str()),
            "{f} is not the file torch.json was made from: run models/reference_standin.py"
        );
    }
    let total: u64 = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(total < 600_000, "tests/golden/reference is {total} bytes");
}

#[test]
fn the_manifest_states_the_reference_preprocessing() {
    let m = read_manifest(&golden_dir().join("bundle.toml")).expect("the exporter's manifest");
    let names: Vec<&str> = m.embedders.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, MODELS, "ensemble order");
    for e in &m.embedders {
        assert_eq!(e.input.channel_order, ChannelOrder::Rgb, "{}", e.name);
        assert_eq!((e.input.width, e.input.height), (112, 112), "{}", e.name);
        assert_eq!(e.width, 512, "{}", e.name);
        assert_eq!(e.views, REFERENCE_VIEWS.to_vec(), "{}", e.name);
        assert_eq!(e.output.as_deref(), Some("embedding"), "{}", e.name);
        // (x/255 - 0.5)/0.5 maps 0 to -1, 255 to 1 and 127.5 to 0
        for c in 0..3 {
            let f = |x: f32| (x - e.input.mean[c]) * e.input.scale[c];
            for (x, y) in [(0.0, -1.0), (255.0, 1.0), (127.5, 0.0), (51.0, -0.6)] {
                assert!((f(x) - y).abs() < 1e-6, "{}: {x} -> {}", e.name, f(x));
            }
        }
    }
}

#[test]
fn exported_models_give_torchs_representation() {
    let manifest = golden_dir().join("bundle.toml");
    let m = read_manifest(&manifest).expect("the exporter's manifest");
    let (torch, _) = torch_golden();
    let img = image::open(golden_dir().join("input.png"))
        .expect("input.png")
        .to_rgb8();
    assert_eq!(img.dimensions(), (112, 112));
    for e in &m.embedders {
        let (path, bytes) = read_verified(&manifest, &e.name, &e.file, &e.sha256)
            .expect("a model pinned by the manifest");
        let x = to_nchw(&img, &e.input);
        let want = &torch[&e.name];
        let outputs = [e.output.clone().expect("output name")];
        let net = Net::load(&path, &bytes, 112, 112, &outputs).expect("tract loads the export");
        let got = net.run(x.clone()).expect("tract runs").remove(0);
        agree(&format!("{} tract", e.name), &got, want);
        let native = NativeNet::from_onnx(&bytes, 112, 112, 1, &mut ByFeatures)
            .expect("the native engine imports the export");
        let got = native.run(&x).expect("native runs").remove(0);
        agree(&format!("{} native", e.name), &got, want);
    }
}

/// The golden bundle in `dir` with the demo detector beside it (the exporter's manifest pins
/// the demo YuNet; the detector file itself is not in the golden folder).
fn bundle_copy(dir: &Path) -> PathBuf {
    demo_bundle(); // panics with the fix when the demo models are not prepared
    link_demo_models(dir);
    for f in ["bundle.toml", "m0.onnx", "m1.onnx", "glint.onnx"] {
        std::fs::copy(golden_dir().join(f), dir.join(f)).expect(f);
    }
    dir.join("bundle.toml")
}

#[test]
fn the_exported_manifest_compiles_and_quantizes() {
    let dir = tempdir();
    let manifest = bundle_copy(dir.path());
    let cache = dir.path().join("cache");
    let o = run([
        "model".as_ref(),
        "compile".as_ref(),
        "--bundle".as_ref(),
        manifest.as_os_str(),
        "--cache-dir".as_ref(),
        cache.as_os_str(),
        "--threads".as_ref(),
        "1".as_ref(),
        "--json".as_ref(),
    ]);
    let (code, out, err) = parts(&o);
    assert_eq!(code, 0, "compile: {out}\n{err}");
    let json: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let models = json["models"].as_array().expect("models");
    assert_eq!(models.len(), 4, "detector + 3 embedders: {json}");
    assert!(models.iter().all(|m| m["status"] == "written"), "{json}");

    let int8 = dir.path().join("int8").join("bundle.toml");
    std::fs::create_dir_all(int8.parent().unwrap()).unwrap();
    let o = run([
        "model".as_ref(),
        "quantize".as_ref(),
        "--bundle".as_ref(),
        manifest.as_os_str(),
        "--calib".as_ref(),
        root().join("models/demo/photos").as_os_str(),
        "--out".as_ref(),
        int8.as_os_str(),
        "--threads".as_ref(),
        "1".as_ref(),
    ]);
    let (code, out, err) = parts(&o);
    assert_eq!(code, 0, "quantize: {out}\n{err}");
    let q = read_manifest(&int8).expect("the int8 manifest");
    assert_eq!(q.bundle.precision.to_string(), "int8");
    let names: Vec<&str> = q.embedders.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, MODELS);
}
