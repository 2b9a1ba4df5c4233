//! Bad inputs of the core pipeline: each gives its exit code and a message naming the file
//! and what is wrong, never a panic. 2 usage, 3 no face, 4 unreadable image, 5 bad bundle,
//! 6 bad gallery.

use crate::util;

use std::path::{Path, PathBuf};
use util::*;

fn predict(bundle: &Path, gallery: &Path, image: &Path) -> std::process::Output {
    cmd()
        .arg("predict")
        .arg("--bundle")
        .arg(bundle)
        .arg("--gallery")
        .arg(gallery)
        .arg(image)
        .output()
        .unwrap()
}

fn jpeg_bytes() -> Vec<u8> {
    std::fs::read(demo_photo("person_b_2.jpg")).unwrap()
}

#[test]
fn empty_file_is_exit_4() {
    let d = tempdir();
    let p = write(d.path(), "empty.jpg", b"");
    expect_failure(
        &predict(&demo_bundle(), demo_gallery(), &p),
        4,
        &["empty.jpg", "empty (0 bytes)"],
    );
}

#[test]
fn truncated_jpeg_is_exit_4() {
    let d = tempdir();
    let bytes = jpeg_bytes();
    let p = write(d.path(), "truncated.jpg", &bytes[..bytes.len() / 3]);
    expect_failure(
        &predict(&demo_bundle(), demo_gallery(), &p),
        4,
        &["truncated.jpg", "corrupt or truncated"],
    );
}

#[test]
fn text_named_jpg_is_exit_4() {
    let d = tempdir();
    let p = write(d.path(), "notes.jpg", b"patient notes, not a photo\n");
    expect_failure(
        &predict(&demo_bundle(), demo_gallery(), &p),
        4,
        &["notes.jpg", "not an image"],
    );
}

#[test]
fn missing_photo_is_exit_4() {
    let p = PathBuf::from("no/such/photo.jpg");
    expect_failure(
        &predict(&demo_bundle(), demo_gallery(), &p),
        4,
        &["photo.jpg", "cannot read"],
    );
}

#[test]
fn photo_without_a_face_is_exit_3() {
    // the lower part of a real portrait: clothes and background, no face
    let img = image::open(demo_photo("impostor_1.jpg")).unwrap().to_rgb8();
    let (w, h) = img.dimensions();
    let crop = image::imageops::crop_imm(&img, 0, h * 3 / 4, w, h / 4).to_image();
    let d = tempdir();
    let p = d.path().join("no_face.png");
    crop.save(&p).unwrap();
    expect_failure(
        &predict(&demo_bundle(), demo_gallery(), &p),
        3,
        &["no_face.png", "no face found"],
    );
    // and a flat synthetic image
    let flat = image::RgbImage::from_pixel(320, 240, image::Rgb([128, 128, 128]));
    let p = d.path().join("flat.png");
    flat.save(&p).unwrap();
    expect_failure(
        &predict(&demo_bundle(), demo_gallery(), &p),
        3,
        &["flat.png", "no face found"],
    );
}

#[test]
fn one_bad_photo_does_not_stop_a_batch() {
    let d = tempdir();
    let bad = write(d.path(), "empty.jpg", b"");
    let o = cmd()
        .args(["predict", "--json", "--bundle"])
        .arg(demo_bundle())
        .arg("--gallery")
        .arg(demo_gallery())
        .arg(&bad)
        .arg(demo_photo("person_b_2.jpg"))
        .output()
        .unwrap();
    let (code, out, _) = parts(&o);
    assert_eq!(code, 4);
    let v: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(v.len(), 2);
    assert_eq!(v[0]["exit_code"], 4);
    assert_eq!(
        v[1]["suggested_syndromes_list"][0]["syndrome_name"],
        "Demo identity B"
    );
}

#[test]
fn gallery_with_one_flipped_byte_is_exit_6() {
    let d = tempdir();
    let mut bytes = std::fs::read(demo_gallery()).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    let g = write(d.path(), "flipped.gallery", &bytes);
    expect_failure(
        &predict(&demo_bundle(), &g, &demo_photo("person_a_2.jpg")),
        6,
        &["flipped.gallery", "checksum"],
    );
}

#[test]
fn not_a_gallery_is_exit_6() {
    let d = tempdir();
    let g = write(d.path(), "photo.gallery", &jpeg_bytes());
    expect_failure(
        &predict(&demo_bundle(), &g, &demo_photo("person_a_2.jpg")),
        6,
        &["photo.gallery"],
    );
    let missing = d.path().join("missing.gallery");
    expect_failure(
        &predict(&demo_bundle(), &missing, &demo_photo("person_a_2.jpg")),
        6,
        &["missing.gallery"],
    );
}

/// A copy of the demo manifest in `dir` with absolute model paths and `edit` applied.
fn manifest_variant(dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let demo = root().join("models/demo");
    let text = std::fs::read_to_string(demo.join("bundle.toml")).unwrap();
    let text = text
        .replace(
            "file = \"yunet.onnx\"",
            &format!("file = {:?}", demo.join("yunet.onnx").display().to_string()),
        )
        .replace(
            "file = \"sface.onnx\"",
            &format!("file = {:?}", demo.join("sface.onnx").display().to_string()),
        );
    let edited = edit(text.clone());
    let p = dir.join("bundle.toml");
    std::fs::write(&p, edited).unwrap();
    p
}

#[test]
fn gallery_from_another_bundle_is_exit_6() {
    let d = tempdir();
    let other = manifest_variant(d.path(), |t| {
        t.replace("score_threshold = 0.6", "score_threshold = 0.5")
    });
    let e = expect_failure(
        &predict(&other, demo_gallery(), &demo_photo("person_a_2.jpg")),
        6,
        &["another model bundle", "rebuild"],
    );
    assert!(e.contains("demo.gallery"), "{e}");
}

#[test]
fn manifest_with_wrong_sha256_is_exit_5() {
    let d = tempdir();
    let sha = "5cb856745aadb54d2a79b10f3bdf05d5f2eaac267e9717e2d363791aa92b6ca9";
    let bad = manifest_variant(d.path(), |t| {
        assert!(
            t.contains(sha),
            "the demo manifest pins the prepared SFace file"
        );
        t.replace(sha, &"0".repeat(64))
    });
    expect_failure(
        &predict(&bad, demo_gallery(), &demo_photo("person_a_2.jpg")),
        5,
        &["sface.onnx", "sha256 mismatch"],
    );
}

#[test]
fn malformed_manifest_is_exit_5() {
    let d = tempdir();
    let bad = manifest_variant(d.path(), |t| t.replace("width = 128", "width = 512"));
    expect_failure(
        &predict(&bad, demo_gallery(), &demo_photo("person_a_2.jpg")),
        5,
        &["outputs 128 values", "width 512"],
    );
    let bad = write(d.path(), "garbage.toml", b"[bundle\nname=");
    expect_failure(
        &predict(&bad, demo_gallery(), &demo_photo("person_a_2.jpg")),
        5,
        &["garbage.toml", "invalid manifest"],
    );
    let model_as_manifest = root().join("models/demo/labels.csv");
    expect_failure(
        &predict(
            &model_as_manifest,
            demo_gallery(),
            &demo_photo("person_a_2.jpg"),
        ),
        5,
        &["labels.csv"],
    );
}

#[test]
fn usage_errors_are_exit_2() {
    let o = run(["predict"]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
    let d = tempdir();
    let csv = write(d.path(), "labels.csv", b"photo,diagnosis\na.jpg,X\n");
    let o = cmd()
        .args(["gallery", "build", "--bundle"])
        .arg(demo_bundle())
        .arg("--labels")
        .arg(&csv)
        .arg("--out")
        .arg(d.path().join("g"))
        .output()
        .unwrap();
    expect_failure(&o, 2, &["labels.csv", "image and label"]);
    assert!(!d.path().join("g").exists());
}

#[test]
fn gallery_build_lists_unusable_photos_and_fails_only_when_none_is_usable() {
    let d = tempdir();
    write(d.path(), "empty.jpg", b"");
    std::fs::copy(demo_photo("person_a_1.jpg"), d.path().join("a.jpg")).unwrap();
    write(
        d.path(),
        "labels.csv",
        b"image,label,subject,omim\na.jpg,Syndrome X,p1,123456\nempty.jpg,Syndrome Y,p2,\n",
    );
    let out = d.path().join("g.gallery");
    let build = |labels: &str| {
        cmd()
            .args(["gallery", "build", "--bundle"])
            .arg(demo_bundle())
            .arg("--labels")
            .arg(d.path().join(labels))
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap()
    };
    let o = build("labels.csv");
    let (code, stdout, err) = parts(&o);
    assert_eq!(code, 0, "{stdout}{err}");
    assert!(
        err.contains("skipped") && err.contains("empty.jpg"),
        "{err}"
    );
    assert!(
        stdout.contains("1 images") && stdout.contains("1 skipped"),
        "{stdout}"
    );
    write(d.path(), "none.csv", b"image,label\nempty.jpg,Y\n");
    std::fs::remove_file(&out).unwrap();
    expect_failure(&build("none.csv"), 3, &["none of the 1 listed photos"]);
    assert!(
        !out.exists(),
        "no gallery is written when no photo is usable"
    );
}
