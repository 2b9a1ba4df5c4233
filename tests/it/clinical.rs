//! The clinical workflow end to end on the demo bundle and photos: gallery curation (remove,
//! relabel, list), PP4 thresholds from a labels CSV, the service's result fields.

use std::path::{Path, PathBuf};

use crate::util::*;
use serde_json::Value;

/// A private copy of the demo gallery.
fn gallery_copy(dir: &Path) -> PathBuf {
    let p = dir.join("g.gallery");
    std::fs::copy(demo_gallery(), &p).unwrap();
    p
}

fn predict(gallery: &Path, extra: &[&str], photos: &[PathBuf]) -> Value {
    let mut c = cmd();
    c.args(["predict", "--json", "--top", "10", "--bundle"])
        .arg(demo_bundle())
        .arg("--gallery")
        .arg(gallery)
        .args(extra)
        .args(photos);
    let o = c.output().unwrap();
    let (code, out, err) = parts(&o);
    assert_eq!(code, 0, "{out}\n{err}");
    serde_json::from_str(&out).expect("JSON")
}

fn names(list: &Value, field: &str) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|x| x[field].as_str().unwrap_or_default().to_string())
        .collect()
}

fn gallery(args: &[&str], file: &Path) -> (i32, String, String) {
    let mut c = cmd();
    c.arg("gallery").args(&args[..1]).arg("--gallery").arg(file);
    c.args(&args[1..]);
    parts(&c.output().unwrap())
}

fn revision(file: &Path) -> u64 {
    let o = run([
        "gallery".as_ref(),
        "inspect".as_ref(),
        "--json".as_ref(),
        file.as_os_str(),
    ]);
    let (code, out, err) = parts(&o);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!(v["images"].is_u64() && v["subjects"].is_u64(), "{v}");
    v["revision"].as_u64().unwrap()
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn a_removed_subject_is_gone_from_results_and_file() {
    let dir = tempdir();
    let g = gallery_copy(dir.path());
    let before = std::fs::read(&g).unwrap();
    assert!(contains(&before, "person_b") && contains(&before, "Demo identity B"));
    let r0 = revision(&g);

    let (code, out, err) = gallery(&["remove", "--subject", "person_b"], &g);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("revision"), "{out}");
    assert_eq!(revision(&g), r0 + 1);
    let bytes = std::fs::read(&g).unwrap();
    for s in ["person_b", "person_b_1.jpg", "Demo identity B"] {
        assert!(!contains(&bytes, s), "'{s}' is still in the file");
    }
    let p = &predict(&g, &[], &[demo_photo("person_b_2.jpg")])[0];
    assert!(!names(&p["suggested_syndromes_list"], "syndrome_name")
        .contains(&"Demo identity B".to_string()));
    assert!(!names(&p["suggested_patients_list"], "subject_id").contains(&"person_b".to_string()));
    assert_eq!(p["images_compared"], 3);

    // unknown names: exit 2, named; the file is unchanged
    let now = std::fs::read(&g).unwrap();
    let (code, _, err) = gallery(&["remove", "--subject", "person_b"], &g);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("'person_b'"), "{err}");
    let (code, _, err) = gallery(&["remove", "--image", "nope.jpg"], &g);
    assert_eq!(code, 2);
    assert!(err.contains("'nope.jpg'"), "{err}");
    assert_eq!(std::fs::read(&g).unwrap(), now);
}

#[test]
fn a_relabelled_subject_shows_its_new_label_and_omim() {
    let dir = tempdir();
    let g = gallery_copy(dir.path());
    // Demo identity C has no OMIM number: another one conflicts (exit 2)
    let (code, _, err) = gallery(
        &[
            "relabel",
            "--subject",
            "person_a",
            "--label",
            "Demo identity C",
            "--omim",
            "1",
        ],
        &g,
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("Demo identity C"), "{err}");
    let (code, out, err) = gallery(
        &[
            "relabel",
            "--subject",
            "person_a",
            "--label",
            "Kabuki syndrome 1",
            "--omim",
            "147920",
            "--gene",
            "KMT2D",
            "--entrez",
            "8085",
        ],
        &g,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("Demo identity A"),
        "the emptied label is reported: {out}"
    );
    let p = &predict(&g, &[], &[demo_photo("person_a_2.jpg")])[0];
    let top = &p["suggested_syndromes_list"][0];
    assert_eq!(top["syndrome_name"], "Kabuki syndrome 1", "{p}");
    assert_eq!(top["omim_id"], 147920);
    let patient = &p["suggested_patients_list"][0];
    assert_eq!(
        (
            patient["subject_id"].as_str(),
            patient["gene_name"].as_str()
        ),
        (Some("person_a"), Some("KMT2D"))
    );
    assert_eq!(patient["gene_entrez_id"], 8085);

    // list shows subjects, labels and image counts
    let (code, out, _) = gallery(&["list", "--json"], &g);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    let a = v["subjects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["subject_id"] == "person_a")
        .unwrap()
        .clone();
    assert_eq!(a["labels"][0], "Kabuki syndrome 1");
    assert_eq!(a["images"], 1);
    assert_eq!(v["revision"].as_u64().unwrap(), revision(&g));
}

fn labels_with_thresholds(dir: &Path, a_thresholds: &str) -> PathBuf {
    let photos = root().join("models/demo/photos");
    let text = format!(
        "image,label,subject,very_strong,strong,moderate,supporting\n\
         {p}/person_a_1.jpg,Demo identity A,person_a,{a_thresholds}\n\
         {p}/person_b_1.jpg,Demo identity B,person_b,,,,\n\
         {p}/impostor_1.jpg,Demo identity C,impostor_1,,,,\n",
        p = photos.display()
    );
    write(dir, "labels.csv", text.as_bytes())
}

#[test]
fn pp4_levels_come_from_the_labels_csv() {
    let dir = tempdir();
    let labels = labels_with_thresholds(dir.path(), "1.29,0.5,0.2,0.1");
    let out = dir.path().join("pp4.gallery");
    let o = cmd()
        .args(["gallery", "build", "--bundle"])
        .arg(demo_bundle())
        .arg("--labels")
        .arg(&labels)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let (code, so, err) = parts(&o);
    assert_eq!(code, 0, "{so}{err}");
    let p = &predict(&out, &["--patients", "2"], &[demo_photo("person_a_2.jpg")])[0];
    let list = p["suggested_syndromes_list"].as_array().unwrap();
    let a = &list[0];
    assert_eq!(a["syndrome_name"], "Demo identity A");
    // the same person scores between 0.5 and 1.29 here: strong
    let score = a["gestalt_score"].as_f64().unwrap();
    assert!((0.5..1.29).contains(&score), "{score}");
    assert_eq!(
        (a["ACMG_PP4"].as_str(), a["ACMG_PP4_support"].as_str()),
        (Some("strong"), Some("Yes"))
    );
    for other in &list[1..] {
        assert_eq!(other["ACMG_PP4"], "");
        assert_eq!(other["ACMG_PP4_support"], "Not available yet");
        assert!(
            other["probability"].is_null()
                && other["ci_lower"].is_null()
                && other["ci_upper"].is_null()
        );
    }
    assert_eq!(p["suggested_patients_list"].as_array().unwrap().len(), 2);
    assert_eq!(list.len(), 3);

    // unordered and non-numeric thresholds: exit 2, file and line named
    for bad in ["0.5,0.9,0.2,0.1", "high,0.5,0.2,0.1"] {
        let labels = labels_with_thresholds(dir.path(), bad);
        let o = cmd()
            .args(["gallery", "build", "--bundle"])
            .arg(demo_bundle())
            .arg("--labels")
            .arg(&labels)
            .arg("--out")
            .arg(dir.path().join("bad.gallery"))
            .output()
            .unwrap();
        expect_failure(&o, 2, &["labels.csv", "line 2", "PP4"]);
        assert!(!dir.path().join("bad.gallery").exists());
    }
}

/// person_a_2 mirrored and shrunk: another photo of the same person, not in the gallery.
fn variant(dir: &Path) -> PathBuf {
    let img = image::open(demo_photo("person_a_2.jpg")).unwrap().to_rgb8();
    let img = image::imageops::flip_horizontal(&img);
    let (w, h) = img.dimensions();
    let img = image::imageops::resize(
        &img,
        w * 3 / 4,
        h * 3 / 4,
        image::imageops::FilterType::Triangle,
    );
    let p = dir.join("person_a_variant.png");
    img.save(&p).unwrap();
    p
}

fn fuse(extra: &[&str], photos: &[PathBuf]) -> (i32, Value, String) {
    let mut c = cmd();
    c.args(["predict", "--json", "--fuse", "--top", "10", "--bundle"])
        .arg(demo_bundle())
        .arg("--gallery")
        .arg(demo_gallery())
        .args(extra)
        .args(photos);
    let (code, out, err) = parts(&c.output().unwrap());
    let v = serde_json::from_str(&out).unwrap_or(Value::Null);
    (code, v, err)
}

#[test]
fn fused_photos_rank_the_right_person_first_and_skip_faceless_ones() {
    let dir = tempdir();
    let noise = write(dir.path(), "blank.png", &{
        let mut buf = std::io::Cursor::new(Vec::new());
        image::RgbImage::from_pixel(200, 200, image::Rgb([128, 128, 128]))
            .write_to(&mut buf, image::ImageFormat::Png)
            .unwrap();
        buf.into_inner()
    });
    let photos = [
        demo_photo("person_a_2.jpg"),
        variant(dir.path()),
        noise.clone(),
    ];
    let (code, v, err) = fuse(&[], &photos);
    assert_eq!(code, 0, "{err}");
    assert_eq!(v["images"].as_array().unwrap().len(), 2, "{v}");
    assert!(v["images"][0]["face"]["bbox_px"].is_array());
    let skipped = v["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0]["exit_code"], 3);
    assert!(skipped[0]["image"].as_str().unwrap().ends_with("blank.png"));
    assert_eq!(v["consistency"]["consistent"], true, "{v}");
    let top = &v["suggested_syndromes_list"][0];
    assert_eq!(top["syndrome_name"], "Demo identity A", "{v}");
    assert_eq!(top["ACMG_PP4"], "");
    assert!(
        top["ACMG_PP4_support"]
            .as_str()
            .unwrap()
            .starts_with("Withheld"),
        "{top}"
    );
    let fused = top["distance"].as_f64().unwrap();
    // the fused query is as close to person A as the photos are one by one, or closer
    let single = predict(demo_gallery(), &[], &photos[..2]);
    let each: Vec<f64> = single
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            p["suggested_syndromes_list"][0]["distance"]
                .as_f64()
                .unwrap()
        })
        .collect();
    assert!(
        fused <= each.iter().cloned().fold(0.0, f64::max) + 1e-6,
        "{fused} vs {each:?}"
    );
    // the numbers the README quotes (cargo test --test it clinical::fused_photos -- --nocapture),
    // within the last printed digit
    println!("person A: fused distance {fused:.4}, the photos alone {each:.4?}");
    for (got, quoted) in [(fused, 0.4121), (each[0], 0.4037), (each[1], 0.4322)] {
        assert!(
            (got - quoted).abs() <= 5e-5,
            "{got} vs the README's {quoted}"
        );
    }
    assert!(err.contains("skipped"), "{err}");
}

#[test]
fn fusing_two_people_warns_and_no_usable_photo_fails() {
    let (code, v, err) = fuse(
        &[],
        &[demo_photo("person_a_2.jpg"), demo_photo("person_b_2.jpg")],
    );
    assert_eq!(code, 0);
    assert_eq!(v["consistency"]["consistent"], false, "{v}");
    assert!(v["consistency"]["max_distance"].as_f64().unwrap() > 0.6);
    assert!(err.contains("may not show one person"), "{err}");

    let dir = tempdir();
    let junk = write(dir.path(), "junk.jpg", b"not a photo");
    let (code, _, err) = fuse(&[], &[junk, dir.path().join("missing.jpg")]);
    assert_eq!(code, 4, "{err}");
}

#[test]
fn explain_gives_per_model_and_per_view_distances() {
    let mut c = cmd();
    c.args(["predict", "--json", "--explain", "--bundle"])
        .arg(demo_bundle())
        .arg("--gallery")
        .arg(demo_gallery())
        .arg(demo_photo("person_b_2.jpg"));
    let (code, out, err) = parts(&c.output().unwrap());
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let e = v[0]["explanation"].as_array().unwrap();
    assert_eq!(e.len(), 4, "all four gallery syndromes are in the top 5");
    for (x, s) in e
        .iter()
        .zip(v[0]["suggested_syndromes_list"].as_array().unwrap())
    {
        assert_eq!(x["syndrome_name"], s["syndrome_name"]);
        let views = x["per_view"].as_array().unwrap();
        assert!(!views.is_empty());
        let mean = views
            .iter()
            .map(|w| w["distance"].as_f64().unwrap())
            .sum::<f64>()
            / views.len() as f64;
        assert!((mean - s["distance"].as_f64().unwrap()).abs() < 1e-3, "{x}");
        assert_eq!(x["per_model"][0]["model"], views[0]["model"]);
    }
    // without --explain the field is absent
    let p = &predict(demo_gallery(), &[], &[demo_photo("person_b_2.jpg")])[0];
    assert!(p.get("explanation").is_none());
}

#[test]
fn eval_grouped_by_patient_against_the_golden() {
    let g = |n: &str| root().join("tests/golden/eval_grouped").join(n);
    let exp: Value =
        serde_json::from_str(&std::fs::read_to_string(g("expected.json")).unwrap()).unwrap();
    for (mode, flag) in [("single", None), ("grouped", Some("--group-by-subject"))] {
        let mut c = cmd();
        c.args(["eval", "--json", "--encodings"])
            .arg(g("encodings.csv"))
            .arg("--gallery-images")
            .arg(g("gallery.csv"))
            .arg("--test-images")
            .arg(g("test.csv"))
            .arg("--syndromes")
            .arg(g("syndromes.tsv"))
            .args(flag);
        let (code, out, err) = parts(&c.output().unwrap());
        assert_eq!(code, 0, "{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["group_by_subject"], flag.is_some());
        assert_eq!(v["splits"][0]["test_queries"], exp[mode]["queries"]);
        for (i, k) in ["1", "5", "10", "30"].iter().enumerate() {
            let got = v["top_k_mean_accuracy"][k].as_f64().unwrap();
            let want = exp[mode]["top_k"][i].as_f64().unwrap();
            assert!(
                (got - want).abs() < 0.006,
                "{mode} top-{k}: {got} vs {want}"
            );
        }
    }
}

#[test]
fn run_analyses_a_still_the_gate_would_refuse_and_gives_advice() {
    let dir = tempdir();
    // person_a_2 small in a large grey canvas: the face is far under the rpi4 gate's 25 %
    let face = image::open(demo_photo("person_a_2.jpg")).unwrap().to_rgb8();
    let (w, h) = face.dimensions();
    let mut canvas = image::RgbImage::from_pixel(w * 3, h * 3, image::Rgb([120, 120, 120]));
    image::imageops::overlay(&mut canvas, &face, i64::from(w), i64::from(h));
    let photo = dir.path().join("far.png");
    canvas.save(&photo).unwrap();
    let screen = dir.path().join("screen.png");
    // the rpi4 profile runs int8 bundles; the demo bundle is f32, so a copy that says f32
    let text = std::fs::read_to_string(root().join("boards/rpi4.toml")).unwrap();
    let f32_text = text.replace("precision = \"int8\"", "precision = \"f32\"");
    assert_ne!(f32_text, text);
    let rpi4 = dir.path().join("rpi4-f32.toml");
    std::fs::write(&rpi4, f32_text).unwrap();
    let rpi4 = rpi4.to_str().unwrap();
    let o = cmd()
        .args(["run", "--board", rpi4, "--once", "--bundle"])
        .arg(demo_bundle())
        .arg("--gallery")
        .arg(demo_gallery())
        .arg("--source")
        .arg(&photo)
        .arg("--screen")
        .arg(format!("png:{}", screen.display()))
        .output()
        .unwrap();
    let (code, out, err) = parts(&o);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("advice: Photo quality: "), "{err}");
    assert!(out.contains("Demo identity A"), "{out}");
    assert!(screen.exists(), "the result screen was drawn");

    // sessions are for the live camera, and bounded by the board profile
    for (n, source) in [
        ("2", photo.display().to_string()),
        ("9", "synthetic".into()),
    ] {
        let o = cmd()
            .args(["run", "--board", rpi4, "--once", "--session", n, "--bundle"])
            .arg(demo_bundle())
            .arg("--gallery")
            .arg(demo_gallery())
            .args(["--source", &source, "--screen", "none"])
            .output()
            .unwrap();
        expect_failure(&o, 2, &["--session"]);
    }
}
