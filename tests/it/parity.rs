//! Fidelity against the reference libraries: goldens made once by
//! `tests/golden/parity/make_parity.py` (onnxruntime 1.22, OpenCV 4.11, numpy) on the real
//! demo bundle and photos. No Python runs here.
//!
//! - SFace embeddings of the OpenCV-aligned crops (tests/golden/align/), four TTA views:
//!   cosine >= 0.9999999 between `Bundle::embed` (tract) and onnxruntime on the same model;
//! - YuNet detections of every demo photo: our `Bundle::detect` against onnxruntime plus a
//!   Python decoder, boxes and landmarks within 1 px;
//! - distance matrix and ranked syndrome lists on a synthetic gallery: within 1e-5 and in
//!   identical order.
//!
//! Rotation, aligned crop and gray view against OpenCV / scikit-image are in
//! `tests/it/align_golden.rs`. Missing files fail the tests; they never skip.

use crate::util;

use std::path::PathBuf;

use gestalt_edge::bundle::{sha256_hex, Bundle, LoadOptions};
use gestalt_edge::capture::{load_image, Limits};
use gestalt_edge::detect::Detection;
use gestalt_edge::embed::{Embeddings, Key};
use gestalt_edge::gallery::{Case, Gallery, KeySpec, Storage};
use gestalt_edge::rank::{self, cosine_distance, RankOptions};
use serde_json::Value;
use util::*;

/// Least cosine similarity accepted between our embeddings and onnxruntime's (measured
/// 1.00000000 to eight places; the README quotes 1.0000000, so one unit of the seventh place
/// is the bound).
const MIN_COSINE: f32 = 0.9999999;
/// Largest box / landmark difference accepted, in photo pixels.
const MAX_PX: f32 = 1.0;

fn golden(name: &str) -> Value {
    let p: PathBuf = root().join("tests/golden/parity").join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| {
        panic!(
            "golden {} missing ({e}): run python3 tests/golden/parity/make_parity.py",
            p.display()
        )
    });
    serde_json::from_str(&text).expect("golden JSON")
}

fn bundle() -> Bundle {
    Bundle::load(
        &demo_bundle(),
        LoadOptions {
            threads: 1,
            ..Default::default()
        },
    )
    .expect("demo bundle loads")
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

fn check_model(g: &Value, file: &str) {
    let bytes = std::fs::read(root().join("models/demo").join(file)).expect("model file");
    assert_eq!(
        g["model_sha256"].as_str(),
        Some(sha256_hex(&bytes).as_str()),
        "{file} differs from the one the goldens were made with: regenerate them"
    );
}

#[test]
fn sface_embeddings_match_onnxruntime() {
    let g = golden("embeddings.json");
    check_model(&g, "sface.onnx");
    let b = bundle();
    let cases = g["cases"].as_array().expect("cases");
    assert!(cases.len() >= 3);
    let mut worst = 1.0f32;
    for c in cases {
        let png = root()
            .join("tests/golden/align")
            .join(c["crop_png"].as_str().unwrap());
        let crop = image::open(&png).expect("crop PNG").to_rgb8();
        assert_eq!(crop.dimensions(), (112, 112));
        let ours = b.embed(&crop).expect("embed");
        assert_eq!(ours.entries.len(), 4);
        for v in c["views"].as_array().unwrap() {
            let key = Key {
                model: "sface".into(),
                flip: v["flip"].as_bool().unwrap(),
                gray: v["gray"].as_bool().unwrap(),
            };
            let want = floats(&v["embedding"]);
            let got = ours.get(&key).unwrap_or_else(|| panic!("no {key}"));
            assert_eq!(got.len(), 128);
            let cos = 1.0 - cosine_distance(got, &want);
            worst = worst.min(cos);
            assert!(cos >= MIN_COSINE, "{png:?} {key}: cosine {cos}");
        }
    }
    eprintln!("worst cosine vs onnxruntime: {worst:.8}");
}

/// Compares our detections with the golden faces; returns the largest coordinate
/// difference in pixels. Panics (naming `what`) when the face count differs, a score is
/// off by 0.01 or more, or a coordinate by more than `max_px`.
fn compare_faces(what: &str, ours: &[Detection], want: &[Value], max_px: f32) -> f32 {
    assert_eq!(ours.len(), want.len(), "{what}: number of faces");
    assert!(!ours.is_empty(), "{what}: no face in the golden");
    let mut worst = 0.0f32;
    for (d, w) in ours.iter().zip(want) {
        let wb = floats(&w["bbox_px"]);
        let wl: Vec<f32> = w["landmarks_px"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(floats)
            .collect();
        let got: Vec<f32> = d
            .bbox_px
            .iter()
            .chain(d.landmarks_px.iter().flatten())
            .copied()
            .collect();
        for (g, w) in got.iter().zip(wb.iter().chain(wl.iter())) {
            worst = worst.max((g - w).abs());
            assert!((g - w).abs() <= max_px, "{what}: {got:?} vs {wb:?} {wl:?}");
        }
        let ws = w["score"].as_f64().unwrap() as f32;
        assert!(
            (d.score - ws).abs() < 0.01,
            "{what}: score {} vs {ws}",
            d.score
        );
    }
    worst
}

/// Lossless inputs (aligned crops pasted on a black canvas): the same pixels on both sides,
/// so resize + model + decoder must agree within 1 px.
#[test]
fn yunet_detections_match_onnxruntime() {
    let g = golden("detections.json");
    check_model(&g, "yunet.onnx");
    let b = bundle();
    let (cw, ch) = (
        g["canvas"][0].as_u64().unwrap() as u32,
        g["canvas"][1].as_u64().unwrap() as u32,
    );
    let (px, py) = (
        g["paste"][0].as_u64().unwrap() as i64,
        g["paste"][1].as_u64().unwrap() as i64,
    );
    let cases = g["composites"].as_array().expect("composites");
    assert_eq!(cases.len(), 3);
    let mut worst = 0.0f32;
    for c in cases {
        let name = c["crop_png"].as_str().unwrap();
        let crop = image::open(root().join("tests/golden/align").join(name))
            .expect("crop")
            .to_rgb8();
        let mut canvas = image::RgbImage::new(cw, ch);
        image::imageops::replace(&mut canvas, &crop, px, py);
        let ours = b.detect(&canvas).expect("detect");
        worst = worst.max(compare_faces(
            name,
            &ours,
            c["faces"].as_array().unwrap(),
            MAX_PX,
        ));
    }
    eprintln!("composites: largest box/landmark difference vs onnxruntime: {worst} px");
}

/// The real JPEG photos: the two sides decode the JPEG differently (OpenCV's libjpeg-turbo
/// vs the image crate: mean 0.12, max 4 levels), and this YuNet moves a box edge by up to
/// ~8 px on such differences; onnxruntime fed our decoded pixels agrees with us to 0.2 px.
/// Held to the same faces, scores within 0.01 and coordinates within `MAX_JPEG_PX`.
#[test]
fn yunet_detections_on_jpeg_photos_stay_close() {
    const MAX_JPEG_PX: f32 = 10.0;
    let g = golden("detections.json");
    check_model(&g, "yunet.onnx");
    let b = bundle();
    let photos = g["photos"].as_array().expect("photos");
    assert_eq!(photos.len(), 6);
    let mut worst = 0.0f32;
    for p in photos {
        let name = p["photo"].as_str().unwrap();
        let path = demo_photo(name);
        let bytes = std::fs::read(&path).expect("photo");
        assert_eq!(
            p["photo_sha256"].as_str(),
            Some(sha256_hex(&bytes).as_str()),
            "{name} changed"
        );
        let frame = load_image(&path, &Limits::default()).expect("decode");
        let ours = b.detect(&frame.rgb).expect("detect");
        worst = worst.max(compare_faces(
            name,
            &ours,
            p["faces"].as_array().unwrap(),
            MAX_JPEG_PX,
        ));
    }
    eprintln!("JPEG photos: largest box/landmark difference vs onnxruntime: {worst} px");
}

#[test]
fn distances_and_rankings_match_python() {
    let g = golden("ranking.json");
    let keys: Vec<KeySpec> = g["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| KeySpec {
            key: Key {
                model: k["model"].as_str().unwrap().into(),
                flip: k["flip"].as_bool().unwrap(),
                gray: k["gray"].as_bool().unwrap(),
            },
            width: k["width"].as_u64().unwrap() as u32,
        })
        .collect();
    let emb = |v: &Value| Embeddings {
        entries: keys
            .iter()
            .zip(v.as_array().unwrap())
            .map(|(s, x)| (s.key.clone(), floats(x)))
            .collect(),
    };
    let mut gallery = Gallery::new("parity", "1", keys.clone(), Storage::F16).unwrap();
    for im in g["gallery"].as_array().unwrap() {
        let case = Case {
            image_id: im["image_id"].as_str().unwrap().into(),
            syndrome: im["syndrome"].as_str().unwrap().into(),
            ..Case::default()
        };
        gallery.add(&case, &emb(&im["vectors"])).unwrap();
    }
    let opts = RankOptions {
        top: 10,
        patients: 10,
        same_patient_threshold: None,
    };
    for (qi, q) in g["queries"].as_array().unwrap().iter().enumerate() {
        let mut query = emb(&q["vectors"]);
        query.entries.reverse(); // pairing is by key, never by position
        let got = rank::distances(&query, &gallery).unwrap();
        let want = floats(&g["distances"][qi]);
        assert_eq!(got.len(), want.len());
        for (j, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!((a - b).abs() < 1e-5, "query {qi} image {j}: {a} vs {b}");
        }
        let r = rank::rank(&query, &gallery, &opts).unwrap();
        let names: Vec<&str> = r
            .syndromes
            .iter()
            .map(|h| h.syndrome_name.as_str())
            .collect();
        let want: Vec<&str> = g["ranked_syndromes"][qi]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(names, want, "query {qi}");
    }
}
