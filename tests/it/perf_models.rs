//! The design-card models at full size: `model synth` graphs load and run in tract and on
//! the native engine with the outputs onnxruntime computes (goldens in models/perf/golden/, made by
//! models/perf/ort_golden.py), and the bench / quantize commands on real bundles.

use crate::util;

use std::path::{Path, PathBuf};

use gestalt_edge::bundle::Net;
use util::{parts, run, tempdir};

/// The input pattern ort_golden.py uses: ((i * 2654435761) mod 2^32) / 2^32 * 2 - 1.
fn pattern(n: usize) -> Vec<f32> {
    (0..n as u64)
        .map(|i| {
            ((i.wrapping_mul(2654435761) % (1u64 << 32)) as f64 / 4294967296.0 * 2.0 - 1.0) as f32
        })
        .collect()
}

fn synth(dir: &Path, arch: &str) -> PathBuf {
    let out = dir.join(format!("{arch}.onnx"));
    let o = run([
        "model",
        "synth",
        "--arch",
        arch,
        "--out",
        out.to_str().unwrap(),
        "--seed",
        "1",
    ]);
    let (code, stdout, stderr) = parts(&o);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(arch), "{stdout}");
    out
}

/// Runs `arch` (seed 1) in tract and checks every output against onnxruntime's golden.
fn check_against_ort(arch: &str, width: u32, height: u32) {
    let dir = tempdir();
    let path = synth(dir.path(), arch);
    let golden_path = util::root().join(format!("models/perf/golden/{arch}-seed1.json"));
    let golden: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&golden_path).expect("golden file")).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let tract = Net::load(&path, &bytes, width, height, &[]).expect("tract loads the graph");
    // the native engine runs the whole graph (detectors included) to the same outputs
    let native = gestalt_edge::engine::load_net(
        &gestalt_edge::engine::NetEngine::Native(Default::default(), 2),
        &path,
        &bytes,
        (width, height),
        &[],
        1,
    )
    .expect("the native engine loads the graph");
    assert_eq!(native.engine(), "native", "{:?}", native.engine_note());
    for net in [tract, native] {
        agrees_with_golden(arch, &net, &golden, width * height);
    }
}

fn agrees_with_golden(arch: &str, net: &Net, golden: &serde_json::Value, pixels: u32) {
    let engine = net.engine();
    let outs = net
        .run(pattern(3 * pixels as usize))
        .expect("the engine runs the graph");
    let want = golden["outputs"].as_array().unwrap();
    assert_eq!(outs.len(), want.len());
    for ((name, shape), (got, w)) in net.outputs().iter().zip(outs.iter().zip(want)) {
        let wshape: Vec<usize> = w["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(shape, &wshape, "{arch} output {name}");
        let num = |k: &str| {
            w[k].as_f64()
                .unwrap_or_else(|| panic!("{arch} {name}: golden lacks {k}"))
        };
        let (sum, sum_sq, dot) = (num("sum"), num("sum_sq"), num("dot"));
        let n = got.len() as f64;
        let rms = (sum_sq / n).sqrt();
        // one value may be off by this much (float order of the engines' sums)
        let tol = 1e-3 * rms.max(1e-3) + 1e-5;
        let p = pattern(got.len());
        let got_sum: f64 = got.iter().map(|&v| v as f64).sum();
        let got_sq: f64 = got.iter().map(|&v| (v as f64).powi(2)).sum();
        let got_dot: f64 = got.iter().zip(&p).map(|(&v, &q)| v as f64 * q as f64).sum();
        // whole-output checks: the engines' rounding moved these by at most 1.5e-3 of
        // sqrt(n) * tol (measured on all three graphs: a tenth of this bound); reversing half
        // an output (sum and sum of squares unchanged) moved the dot product by 50-150 times
        // the bound
        let whole = 0.05 * n.sqrt() * tol;
        eprintln!(
            "{arch} {name} {engine}: sum {:.2e}, dot {:.2e}, sum_sq {:.2e} of the bound",
            (got_sum - sum).abs() / whole,
            (got_dot - dot).abs() / whole,
            (got_sq - sum_sq).abs() / (1e-5 * sum_sq)
        );
        assert!(
            (got_sq - sum_sq).abs() <= 1e-5 * sum_sq,
            "{arch} {name}: {engine} sum of squares {got_sq} vs onnxruntime {sum_sq}"
        );
        assert!(
            (got_sum - sum).abs() <= whole,
            "{arch} {name}: {engine} sum {got_sum} vs onnxruntime {sum}"
        );
        assert!(
            (got_dot - dot).abs() <= whole,
            "{arch} {name}: {engine} pattern dot product {got_dot} vs onnxruntime {dot}"
        );
        let first = w["first"].as_array().unwrap().iter().enumerate();
        let strided = strided_indices(got.len())
            .into_iter()
            .zip(w["strided"].as_array().expect("golden lacks strided"));
        let mut checked = 0;
        for (i, e) in first.chain(strided) {
            let e = e.as_f64().unwrap();
            assert!(
                (got[i] as f64 - e).abs() <= tol,
                "{arch} {name}[{i}]: {engine} {} vs onnxruntime {e}",
                got[i]
            );
            checked += 1;
        }
        assert!(
            checked >= 16 + got.len().min(1024),
            "{checked} values compared"
        );
    }
}

/// The indices ort_golden.py samples: 1024 spread over the whole output (all of a short one).
fn strided_indices(n: usize) -> Vec<usize> {
    if n <= 1024 {
        return (0..n).collect();
    }
    (0..1024).map(|k| (k * n) / 1024 + (k % 7)).collect()
}

#[test]
fn retinaface_mnet025_matches_onnxruntime() {
    check_against_ort("retinaface-mnet025", 640, 640);
}

#[test]
fn retinaface_r50_matches_onnxruntime() {
    check_against_ort("retinaface-r50", 640, 640);
}

#[test]
fn iresnet50_matches_onnxruntime() {
    check_against_ort("iresnet50", 112, 112);
}

#[test]
fn synth_rejects_unknown_arch_and_writes_nothing() {
    let dir = tempdir();
    let out = dir.path().join("x.onnx");
    let o = run([
        "model",
        "synth",
        "--arch",
        "resnet18",
        "--out",
        out.to_str().unwrap(),
    ]);
    let (code, _, stderr) = parts(&o);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("iresnet100"), "{stderr}");
    assert!(!out.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn perf_manifest_matches_the_generator() {
    // make.sh writes the detector with seed 100; the committed manifest pins its sha256
    let dir = tempdir();
    let out = dir.path().join("d.onnx");
    let o = run([
        "model",
        "synth",
        "--arch",
        "retinaface-mnet025",
        "--out",
        out.to_str().unwrap(),
        "--seed",
        "100",
    ]);
    assert_eq!(parts(&o).0, 0);
    let sha = gestalt_edge::bundle::sha256_hex(&std::fs::read(&out).unwrap());
    let manifest =
        gestalt_edge::bundle::read_manifest(&util::root().join("models/perf/bundle-f32.toml"))
            .expect("perf manifest parses");
    assert_eq!(manifest.detector.sha256, sha);
    assert_eq!(manifest.embedders.len(), 3);
    assert!(manifest.embedders.iter().all(|e| e.width == 512));
}

fn bench_json(args: &[&str]) -> serde_json::Value {
    let o = run(args);
    let (code, stdout, stderr) = parts(&o);
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("bench JSON: {e}\n{stdout}"))
}

#[test]
fn bench_reports_every_stage_on_the_demo_bundle() {
    let bundle = util::demo_bundle();
    let photo = util::demo_photo("person_a_1.jpg");
    let r = bench_json(&[
        "bench",
        "--bundle",
        bundle.to_str().unwrap(),
        "--photo",
        photo.to_str().unwrap(),
        "--gallery-size",
        "500",
        "--repeat",
        "1",
        "--threads",
        "2",
        "--compare",
        "--json",
    ]);
    assert_eq!(r["face_found"], true, "{r}");
    assert_eq!(r["embed_passes"], 4);
    assert_eq!(r["gallery_size"], 500);
    for field in [
        "detect_ms",
        "embed_ms",
        "rank_ms",
        "full_photo_ms",
        "cold_start_ms",
        "peak_rss_mb",
        "gmac_per_s",
        "gmac_per_photo",
    ] {
        let v = r[field].as_f64().unwrap_or(-1.0);
        assert!(v > 0.0 && v.is_finite(), "{field} = {v}");
    }
    let f = |k: &str| r[k].as_f64().unwrap();
    // the full photo holds every stage
    assert!(f("full_photo_ms") >= f("detect_ms") + f("embed_ms") + f("rank_ms") - 1.0);
    // resident memory: never above the peak; what the hand-back released is not negative
    assert!(f("rss_after_load_mb") > 0.0 && f("rss_after_load_mb") <= f("peak_rss_mb"));
    assert!(f("rss_steady_mb") > 0.0 && f("rss_steady_mb") <= f("peak_rss_mb"));
    assert!(f("rss_released_at_load_mb") >= 0.0, "{r}");
    // YuNet + 4 SFace passes: between 0.5 and 10 GMAC per photo
    assert!((0.5..10.0).contains(&f("gmac_per_photo")), "{r}");
    let c = &r["compare"];
    assert!(c["embed_1_thread_ms"].as_f64().unwrap() > 0.0);
    assert!(c["embed_batched_ms"].as_f64().unwrap() > 0.0);
}

#[test]
fn bench_refuses_a_bad_bundle_with_exit_5() {
    let dir = tempdir();
    let m = dir.path().join("bundle.toml");
    std::fs::write(&m, "[bundle]\nname = 1\n").unwrap();
    let o = run(["bench", "--bundle", m.to_str().unwrap(), "--json"]);
    let (code, stdout, stderr) = parts(&o);
    assert_eq!(code, 5, "{stderr}");
    assert!(stdout.is_empty());
    assert!(stderr.contains("bundle.toml"), "{stderr}");
}

fn quantize(calib: &Path, out: &Path, extra: &[&str]) -> (i32, String, String) {
    let bundle = util::demo_bundle();
    let mut args = vec![
        "model".to_string(),
        "quantize".into(),
        "--bundle".into(),
        bundle.to_str().unwrap().into(),
        "--calib".into(),
        calib.to_str().unwrap().into(),
        "--out".into(),
        out.to_str().unwrap().into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    parts(&run(args))
}

fn cosine_mean(stdout: &str) -> f64 {
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("all"))
        .unwrap_or_else(|| panic!("no agreement line in\n{stdout}"));
    line.split_whitespace()
        .nth(3)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the cosine in '{line}'"))
}

#[test]
fn quantize_demo_bundle_reaches_integer_ops_and_agrees() {
    let dir = tempdir();
    let out = dir.path().join("int8/bundle.toml");
    let photos = util::demo_photo("");
    let (code, stdout, stderr) = quantize(&photos, &out, &[]);
    assert_eq!(code, 0, "{stderr}");
    // integer kernels, not QDQ: the graphs hold QLinearConv and MatMulInteger
    let m = gestalt_edge::bundle::read_manifest(&out).expect("int8 manifest");
    let sface = std::fs::read(out.parent().unwrap().join(&m.embedders[0].file)).unwrap();
    let text = String::from_utf8_lossy(&sface);
    assert!(text.contains("QLinearConv") && text.contains("MatMulInteger"));
    assert!(!text.contains("\"Conv\""));
    assert!(
        stderr.contains("sface: 27 QLinearConv, 1 MatMulInteger"),
        "{stderr}"
    );
    // measured 0.9946 (0.991 with plain min/max ranges) on the six demo photos, short of the
    // 0.995 target that the options below reach (the README says both)
    let cos = cosine_mean(&stdout);
    assert!((0.994..=1.0).contains(&cos), "{stdout}");
    // the int8 bundle runs the whole pipeline: a gallery of the demo identities, and the
    // second photos of persons A and B find their own identity first, as with the float bundle
    assert_eq!(
        top1_on_demo(&out, dir.path()),
        vec!["Demo identity A", "Demo identity B"]
    );
}

/// Builds a gallery of the demo identities with `bundle` (in `dir`) and returns the top-1
/// syndrome of the second photos of persons A and B.
fn top1_on_demo(bundle: &Path, dir: &Path) -> Vec<String> {
    let gallery = dir.join("top1.gallery");
    let labels = util::root().join("models/demo/labels.csv");
    let o = run([
        "gallery",
        "build",
        "--bundle",
        bundle.to_str().unwrap(),
        "--labels",
        labels.to_str().unwrap(),
        "--out",
        gallery.to_str().unwrap(),
    ]);
    assert_eq!(parts(&o).0, 0, "{}", parts(&o).2);
    let o = run([
        "predict",
        "--bundle",
        bundle.to_str().unwrap(),
        "--gallery",
        gallery.to_str().unwrap(),
        "--json",
        util::demo_photo("person_a_2.jpg").to_str().unwrap(),
        util::demo_photo("person_b_2.jpg").to_str().unwrap(),
    ]);
    let (code, stdout, stderr) = parts(&o);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            p["suggested_syndromes_list"][0]["syndrome_name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn quantize_refuses_empty_and_faceless_calibration_with_exit_5() {
    let dir = tempdir();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("bundle.toml");
    let (code, _, stderr) = quantize(&empty, &out, &[]);
    assert_eq!(code, 5, "{stderr}");
    assert!(stderr.contains("no JPEG or PNG"), "{stderr}");
    let faceless = dir.path().join("faceless");
    std::fs::create_dir(&faceless).unwrap();
    image::RgbImage::from_fn(320, 240, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    })
    .save(faceless.join("gradient.png"))
    .unwrap();
    let (code, _, stderr) = quantize(&faceless, &out, &[]);
    assert_eq!(code, 5, "{stderr}");
    assert!(stderr.contains("shows a face"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(&out_dir).unwrap().count(),
        0,
        "nothing half-written"
    );
}

#[test]
fn quantize_options_keep_mobile_layers_float_and_reach_integer_kernels() {
    let dir = tempdir();
    let out = dir.path().join("int8/bundle.toml");
    let photos = util::demo_photo("");
    let (code, stdout, stderr) = quantize(
        &photos,
        &out,
        &["--keep-float-ends", "--float-fc", "--float-depthwise"],
    );
    assert_eq!(code, 0, "{stderr}");
    // SFace: 27 convolutions, 13 of them depthwise, the first and the last kept float
    assert!(
        stderr.contains("sface: 12 QLinearConv, 0 MatMulInteger, 2 kept float"),
        "{stderr}"
    );
    // measured 0.99777 on the six demo photos; the target is 0.995, with the same top-1
    let cos = cosine_mean(&stdout);
    assert!((0.995..=1.0).contains(&cos), "{stdout}");
    assert_eq!(
        top1_on_demo(&out, dir.path()),
        vec!["Demo identity A", "Demo identity B"]
    );
    // what tract makes of it: integer matrix kernels for the int8 model, none for the float one
    let m = gestalt_edge::bundle::read_manifest(&out).expect("int8 manifest");
    let int8 = out.parent().unwrap().join(&m.embedders[0].file);
    let float = util::root().join("models/demo/sface.onnx");
    // `model profile --json` of `model` (on the native engine with `native`), checked exit 0
    let profile = |model: &Path, native: bool| -> serde_json::Value {
        let mut args = vec!["model", "profile", "--model", model.to_str().unwrap()];
        args.extend(["--passes", "1", "--json"]);
        args.extend(native.then_some("--native"));
        let o = run(args);
        let (code, stdout, stderr) = parts(&o);
        assert_eq!(code, 0, "{stderr}");
        serde_json::from_str(&stdout).unwrap()
    };
    let kernels = |model: &Path| {
        let v = profile(model, false);
        assert!(v["pass_ms"].as_f64().unwrap() > 0.0);
        v["kernels"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    let k8 = kernels(&int8);
    assert!(k8.iter().any(|k| k.contains("i32")), "{k8:?}");
    let kf = kernels(&float);
    assert!(
        !kf.is_empty() && kf.iter().all(|k| !k.contains("i32")),
        "{kf:?}"
    );
    // the native engine's profile: every step timed, its products adding up to the pass
    for (model, int) in [(&int8, true), (&float, false)] {
        let v = profile(model, true);
        let stdout = v.to_string();
        let steps = v["steps"].as_array().unwrap();
        let macs: u64 = steps.iter().map(|s| s["macs"].as_u64().unwrap()).sum();
        assert_eq!(macs, v["macs"].as_u64().unwrap(), "{stdout}");
        // SFace's 27 convolutions (13 depthwise, 14 matrix products) and its fully connected
        // layer, a 1x1 product over the flattened map
        let convs = |kind: &str| {
            steps
                .iter()
                .filter(|s| s["label"].as_str().unwrap().starts_with(kind))
                .count()
        };
        assert_eq!((convs("conv "), convs("depthwise ")), (15, 13), "{stdout}");
        let k: Vec<&str> = v["kernels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        // the int8 model keeps its ends float: integer kernels, and an f32 one for the ends
        let integer = k.iter().filter(|k| k.contains("i32")).count();
        assert!(!k.is_empty() && (integer > 0) == int, "{k:?}");
    }
}

#[test]
fn profile_refuses_a_missing_or_broken_model_with_exit_5() {
    let dir = tempdir();
    let bad = dir.path().join("bad.onnx");
    std::fs::write(&bad, b"not a model").unwrap();
    for p in [dir.path().join("missing.onnx"), bad] {
        for native in [false, true] {
            let mut args = vec!["model", "profile", "--model", p.to_str().unwrap()];
            args.extend(native.then_some("--native"));
            let o = run(args);
            let (code, stdout, stderr) = parts(&o);
            assert_eq!(code, 5, "{stderr}");
            assert!(stdout.is_empty() && stderr.contains(".onnx"), "{stderr}");
        }
    }
}
