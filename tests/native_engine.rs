//! The native engine against tract-onnx on the same models: the demo SFace, a synthesized
//! iResNet-50 (float, and int8 as `model quantize` writes it), and an unsupported op.

use std::path::Path;

use gestalt_edge::bundle::quantize::{calibration_model, observe, quantize_with, QuantOptions};
use gestalt_edge::bundle::synth::{synth, Arch};
use gestalt_edge::bundle::Net;
use gestalt_edge::engine::native::{ByFeatures, NativeError, NativeNet};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Deterministic input in `[lo, hi)`, shaped like an image (smooth plus noise).
fn image(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let noise = (s >> 40) as f32 / (1u64 << 24) as f32;
            let smooth = ((i % 112) as f32 / 112.0 + (i / 112 % 112) as f32 / 224.0).fract();
            lo + (hi - lo) * (0.6 * smooth + 0.4 * noise)
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        ab += *x as f64 * *y as f64;
        aa += *x as f64 * *x as f64;
        bb += *y as f64 * *y as f64;
    }
    ab / (aa.sqrt() * bb.sqrt())
}

fn both(bytes: &[u8], threads: usize) -> (Net, NativeNet) {
    let tract = Net::load(Path::new("model.onnx"), bytes, 112, 112, &[]).expect("tract loads");
    let native =
        NativeNet::from_onnx(bytes, 112, 112, threads, &mut ByFeatures).expect("native imports");
    (tract, native)
}

fn agree(tract: &Net, native: &NativeNet, inputs: &[Vec<f32>], min: f64) {
    for (i, x) in inputs.iter().enumerate() {
        let want = tract.run(x.clone()).unwrap();
        let got = native.run(x).unwrap();
        assert_eq!(want.len(), got.len());
        for (w, g) in want.iter().zip(&got) {
            let c = cosine(w, g);
            assert!(c >= min, "input {i}: cosine {c} < {min}");
        }
    }
}

#[test]
fn sface_matches_tract() {
    let path = root().join("models/demo/sface.onnx");
    let bytes = std::fs::read(&path).expect("demo SFace (scripts/setup.sh)");
    let (tract, native) = both(&bytes, 2);
    let inputs: Vec<Vec<f32>> = (0..3)
        .map(|s| image(3 * 112 * 112, s, 0.0, 255.0))
        .collect();
    agree(&tract, &native, &inputs, 0.99999);
}

#[test]
fn iresnet50_matches_tract_f32_and_int8() {
    let f32_bytes = synth(Arch::Iresnet50, 3).onnx;
    let (tract, native) = both(&f32_bytes, 2);
    let inputs: Vec<Vec<f32>> = (0..3)
        .map(|s| image(3 * 112 * 112, 10 + s, -1.0, 1.0))
        .collect();
    agree(&tract, &native, &inputs, 0.99999);
    // one thread gives the same embedding
    let one = NativeNet::from_onnx(&f32_bytes, 112, 112, 1, &mut ByFeatures).unwrap();
    assert_eq!(
        one.run(&inputs[0]).unwrap(),
        native.run(&inputs[0]).unwrap()
    );

    // int8 as `model quantize` writes it, calibrated on a few inputs
    let p = Path::new("m.onnx");
    let (cal, names) = calibration_model(&f32_bytes, p).unwrap();
    let cal_net = Net::load(p, &cal, 112, 112, &[]).unwrap();
    let calib: Vec<Vec<f32>> = (0..4)
        .map(|s| image(3 * 112 * 112, 20 + s, -1.0, 1.0))
        .collect();
    let ranges = observe(&cal_net, &names, "input", &calib, 0.0).unwrap();
    for symmetric in [false, true] {
        let opts = QuantOptions {
            symmetric_activations: symmetric,
            ..QuantOptions::default()
        };
        let (q, stats) = quantize_with(&f32_bytes, p, &ranges, &opts).unwrap();
        assert!(stats.convs > 50 && stats.gemms == 1, "{stats:?}");
        let (tq, nq) = both(&q, 2);
        agree(&tq, &nq, &inputs, 0.9999);
        for x in &inputs {
            let c = cosine(&tract.run(x.clone()).unwrap()[0], &nq.run(x).unwrap()[0]);
            assert!(c >= 0.995, "int8 vs f32 cosine {c}");
        }
    }
}

#[test]
fn an_unsupported_op_is_named() {
    let bytes = synth(Arch::RetinafaceMnet025, 1).onnx;
    match NativeNet::from_onnx(&bytes, 640, 640, 1, &mut ByFeatures) {
        Err(NativeError::Unsupported { op, node, .. }) => {
            assert!(!op.is_empty() && !node.is_empty(), "{op} {node}");
        }
        other => panic!("expected an unsupported op, got {other:?}"),
    }
}
