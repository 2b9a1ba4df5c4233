//! The reference's detector input (`input_mode = "exact"`): the photo scaled so its long side
//! is 640 and run at exactly that size, no padding, as GestaltMatcher-Arc runs RetinaFace.
//! Checked on an architecture-exact RetinaFace-mobilenet0.25 made by `model synth`.

use crate::util;

use std::path::Path;

use gestalt_edge::bundle::{input, Bundle, InputSpec, LoadOptions, Net};
use gestalt_edge::detect::retinaface;
use util::*;

fn manifest(dir: &Path, detector: &Path, mode: &str) -> std::path::PathBuf {
    let sha = gestalt_edge::bundle::sha256_hex(&std::fs::read(detector).unwrap());
    let demo = root().join("models/demo");
    let sface_sha =
        gestalt_edge::bundle::sha256_hex(&std::fs::read(demo.join("sface.onnx")).unwrap());
    let text = format!(
        r#"[bundle]
name = "exact-test"
version = "1"

[detector]
kind = "retinaface"
file = {det:?}
sha256 = "{sha}"
input = {{ width = 640, height = 640, channel_order = "bgr", mean = [104.0, 117.0, 123.0] }}
score_threshold = 0.0
nms_iou = 0.4
input_mode = "{mode}"

[[embedders]]
name = "sface"
file = {sface:?}
sha256 = "{sface_sha}"
input = {{ width = 112, height = 112, channel_order = "rgb" }}
output = "fc1"
width = 128
"#,
        det = detector.display().to_string(),
        sface = demo.join("sface.onnx").display().to_string(),
    );
    let p = dir.join(format!("{mode}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn exact_mode_runs_retinaface_unpadded_at_the_photo_shape() {
    let _ = demo_bundle();
    let dir = tempdir();
    let det = dir.path().join("retinaface.onnx");
    let o = run([
        "model",
        "synth",
        "--arch",
        "retinaface-mnet025",
        "--seed",
        "3",
        "--out",
        det.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let bundle = Bundle::load(&manifest(dir.path(), &det, "exact"), LoadOptions::default())
        .expect("exact bundle loads");

    // a landscape photo: 1000x750 -> 640x480, no padding
    let photo = image::open(demo_photo("person_b_2.jpg")).unwrap().to_rgb8();
    let photo = image::imageops::resize(&photo, 1000, 750, image::imageops::FilterType::Triangle);
    let got = bundle.detect(&photo).expect("detect");

    // the same by hand: a plan pinned at 640x480, priors of a 480x640 input
    let bytes = std::fs::read(&det).unwrap();
    let net = Net::load(&det, &bytes, 640, 480, &[]).unwrap();
    let lb = input::letterbox(&photo, 640, 640);
    assert_eq!(lb.image.dimensions(), (640, 480));
    let spec = InputSpec {
        width: 640,
        height: 480,
        ..bundle.manifest.detector.input.clone()
    };
    let outs = net.run(input::to_nchw(&lb.image, &spec)).unwrap();
    let cfg = retinaface::PriorConfig::default();
    let priors = retinaface::priors(&cfg, 480, 640);
    assert_eq!(
        priors.len(),
        outs[0].len() / 4,
        "one prior per output row at 480x640"
    );
    // seeded weights score every prior near 0: keep all candidates so there is something to compare
    let params = retinaface::DecodeParams {
        score_threshold: 0.0,
        ..Default::default()
    };
    let want = retinaface::decode(
        &outs[0], &outs[1], &outs[2], &priors, 640, 480, &cfg, &params,
    )
    .unwrap();
    assert!(!want.is_empty(), "the decoder keeps candidates");
    assert_eq!(got.len(), want.len());
    let inv = (1.0 / lb.scale) as f32;
    for (g, w) in got.iter().zip(&want) {
        let w = w.scaled(inv, inv);
        assert!((g.score - w.score).abs() < 1e-6);
        for (a, b) in g.bbox_px.iter().zip(w.bbox_px.iter()) {
            assert!((a - b).abs() < 1e-3, "{g:?} vs {w:?}");
        }
    }

    // a portrait photo gets its own plan and still decodes
    let portrait = image::imageops::resize(&photo, 300, 500, image::imageops::FilterType::Triangle);
    bundle.detect(&portrait).expect("portrait detect");

    // padded mode differs: the same photo in a 640x640 canvas
    let padded = Bundle::load(
        &manifest(dir.path(), &det, "padded"),
        LoadOptions::default(),
    )
    .unwrap();
    let p = padded.detect(&photo).unwrap();
    assert_ne!(p.len(), 0);
    assert!(
        p.iter()
            .zip(&got)
            .any(|(a, b)| a.bbox_px != b.bbox_px || a.score != b.score)
            || p.len() != got.len()
    );
}

#[test]
fn exact_mode_is_refused_for_yunet() {
    let dir = tempdir();
    let text = std::fs::read_to_string(demo_bundle()).unwrap();
    let demo = root().join("models/demo");
    let text = text
        .replace("nms_iou = 0.3", "nms_iou = 0.3\ninput_mode = \"exact\"")
        .replace(
            "\"yunet.onnx\"",
            &format!("{:?}", demo.join("yunet.onnx").display().to_string()),
        )
        .replace(
            "\"sface.onnx\"",
            &format!("{:?}", demo.join("sface.onnx").display().to_string()),
        );
    let m = dir.path().join("bundle.toml");
    std::fs::write(&m, text).unwrap();
    let o = cmd()
        .args(["predict", "--bundle"])
        .arg(&m)
        .arg("--gallery")
        .arg(demo_gallery())
        .arg(demo_photo("person_a_2.jpg"))
        .output()
        .unwrap();
    expect_failure(&o, 5, &["yunet.onnx", "exact", "padded"]);
}
