//! End-to-end tests of the `gestalt-edge` binary on the real demo bundle (YuNet + SFace) and
//! the real demo photos: gallery build/add/inspect, predict, and every bad input of the core
//! issue with its exit code and message.

use crate::util;

use serde_json::Value;
use util::*;

fn predict_json(gallery: &std::path::Path, photos: &[std::path::PathBuf]) -> Vec<Value> {
    let mut c = cmd();
    c.args(["predict", "--json", "--top", "10", "--bundle"])
        .arg(demo_bundle())
        .arg("--gallery")
        .arg(gallery);
    c.args(photos);
    let o = c.output().unwrap();
    let (code, out, err) = parts(&o);
    assert_eq!(code, 0, "{out}\n{err}");
    serde_json::from_str::<Vec<Value>>(&out).expect("predict --json prints a JSON array")
}

fn syndrome_distance(p: &Value, name: &str) -> f64 {
    p["suggested_syndromes_list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["syndrome_name"] == name)
        .unwrap_or_else(|| panic!("{name} missing"))["distance"]
        .as_f64()
        .unwrap()
}

#[test]
fn held_back_photos_rank_their_own_identity_first() {
    let preds = predict_json(
        demo_gallery(),
        &[demo_photo("person_a_2.jpg"), demo_photo("person_b_2.jpg")],
    );
    assert_eq!(preds.len(), 2);
    for (p, own) in preds.iter().zip(["Demo identity A", "Demo identity B"]) {
        let list = p["suggested_syndromes_list"].as_array().unwrap();
        assert_eq!(list.len(), 4, "all four gallery identities are ranked");
        assert_eq!(list[0]["syndrome_name"], own, "{p}");
        // impostor distances exceed the same-person distance
        let same = syndrome_distance(p, own);
        for other in ["Demo identity C", "Demo identity D"] {
            assert!(
                syndrome_distance(p, other) > same + 0.1,
                "{other} vs {own}: {p}"
            );
        }
        // distances ascend and gestalt_score = 1.3 - distance
        let d: Vec<f64> = list
            .iter()
            .map(|s| s["distance"].as_f64().unwrap())
            .collect();
        assert!(d.windows(2).all(|w| w[0] <= w[1]), "{d:?}");
        for s in list {
            let g = s["gestalt_score"].as_f64().unwrap();
            assert!((g - (1.3 - s["distance"].as_f64().unwrap())).abs() < 1e-5);
        }
    }
}

#[test]
fn json_has_the_reference_fields_and_provenance() {
    let preds = predict_json(demo_gallery(), &[demo_photo("person_b_2.jpg")]);
    let p = &preds[0];
    for field in [
        "model_version",
        "gallery_version",
        "bundle_id",
        "faces_found",
        "suggested_syndromes_list",
        "suggested_genes_list",
        "suggested_patients_list",
    ] {
        assert!(p.get(field).is_some(), "missing {field}: {p}");
    }
    assert_eq!(p["faces_found"], 1);
    let s = &p["suggested_syndromes_list"][0];
    for field in [
        "syndrome_name",
        "omim_id",
        "distance",
        "gestalt_score",
        "image_id",
        "subject_id",
    ] {
        assert!(s.get(field).is_some(), "missing {field}: {s}");
    }
    assert_eq!(s["subject_id"], "person_b");
    assert_eq!(s["image_id"], "photos/person_b_1.jpg");
    assert_eq!(p["suggested_patients_list"].as_array().unwrap().len(), 4);
    // the bundle id reported is the one the gallery was built with
    let inspect = run([
        "gallery".as_ref(),
        "inspect".as_ref(),
        "--json".as_ref(),
        demo_gallery().as_os_str(),
    ]);
    let summary: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(summary["bundle_id"], p["bundle_id"]);
    assert_eq!(summary["images"], 4);
}

#[test]
fn human_table_lists_top_five_and_the_disclaimer() {
    let o = run([
        "predict".as_ref(),
        "--bundle".as_ref(),
        demo_bundle().as_os_str(),
        "--gallery".as_ref(),
        demo_gallery().as_os_str(),
        demo_photo("person_a_2.jpg").as_os_str(),
    ]);
    let (code, out, err) = parts(&o);
    assert_eq!(code, 0, "{err}");
    let first_row = out
        .lines()
        .find(|l| l.trim_start().starts_with("1 "))
        .expect("a ranked row");
    assert!(first_row.contains("Demo identity A"), "{out}");
    assert!(out.contains("not a diagnosis"), "{out}");
    assert!(out.contains("1 face found"), "{out}");
}

#[test]
fn gallery_add_enrols_and_keeps_existing_cases() {
    let dir = tempdir();
    let g = dir.path().join("g.gallery");
    std::fs::copy(demo_gallery(), &g).unwrap();
    let before = predict_json(&g, &[demo_photo("person_b_2.jpg")]);
    let o = cmd()
        .args(["gallery", "add", "--bundle"])
        .arg(demo_bundle())
        .arg("--gallery")
        .arg(&g)
        .arg("--image")
        .arg(demo_photo("person_a_2.jpg"))
        .args([
            "--label",
            "Demo identity A",
            "--subject",
            "person_a",
            "--gene",
            "DEMO1",
            "--entrez",
            "42",
        ])
        .output()
        .unwrap();
    let (code, out, err) = parts(&o);
    assert_eq!(code, 0, "{out}\n{err}");
    let inspect = run([
        "gallery".as_ref(),
        "inspect".as_ref(),
        "--json".as_ref(),
        g.as_os_str(),
    ]);
    let s: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(s["images"], 5);
    assert_eq!(s["subjects"], 4);
    assert_eq!(s["syndromes"], 4);
    assert_eq!(s["genes"], 1);
    assert_eq!(s["revision"], 1);
    // the existing cases are untouched: person_b_2 sees the same distances to them
    let after = predict_json(&g, &[demo_photo("person_b_2.jpg")]);
    for name in ["Demo identity B", "Demo identity C", "Demo identity D"] {
        assert_eq!(
            syndrome_distance(&before[0], name),
            syndrome_distance(&after[0], name)
        );
    }
    // the enrolled photo now matches itself: distance ~0 and the gene is suggested
    let again = predict_json(&g, &[demo_photo("person_a_2.jpg")]);
    assert!(
        syndrome_distance(&again[0], "Demo identity A") < 1e-3,
        "{}",
        again[0]
    );
    assert_eq!(again[0]["suggested_genes_list"][0]["gene_name"], "DEMO1");
    assert_eq!(again[0]["suggested_genes_list"][0]["gene_entrez_id"], 42);
    // adding the same image id twice is refused and leaves the file as it was
    let bytes = std::fs::read(&g).unwrap();
    let o = cmd()
        .args(["gallery", "add", "--bundle"])
        .arg(demo_bundle())
        .arg("--gallery")
        .arg(&g)
        .arg("--image")
        .arg(demo_photo("person_a_2.jpg"))
        .args(["--label", "Demo identity A"])
        .output()
        .unwrap();
    expect_failure(&o, 2, &["already in the gallery"]);
    assert_eq!(std::fs::read(&g).unwrap(), bytes);
}

#[test]
fn same_patient_filter_drops_near_duplicates() {
    let o = cmd()
        .args([
            "predict",
            "--json",
            "--same-patient-threshold",
            "0.3",
            "--bundle",
        ])
        .arg(demo_bundle())
        .arg("--gallery")
        .arg(demo_gallery())
        .arg(demo_photo("person_b_2.jpg"))
        .output()
        .unwrap();
    let v: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> = v[0]["suggested_syndromes_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["syndrome_name"].as_str().unwrap())
        .collect();
    // person_b_1 is closer than 0.3 to person_b_2 (same person) and is dropped
    assert!(!names.contains(&"Demo identity B"), "{names:?}");
    assert_eq!(names.len(), 3);
}

/// `bench` takes its engine from the manifest when no flag names one, like every command
/// that loads a bundle; the flag still wins.
#[test]
fn bench_honours_the_manifests_engine() {
    let d = tempdir();
    let m = demo_bundle_copy(d.path());
    let text = std::fs::read_to_string(&m).unwrap().replacen(
        "[bundle]\n",
        "[bundle]\nengine = \"tract\"\n",
        1,
    );
    std::fs::write(&m, text).unwrap();
    let bench = |extra: &[&str]| -> Value {
        let o = cmd()
            .args([
                "bench",
                "--json",
                "--no-cache",
                "--repeat",
                "1",
                "--gallery-size",
                "50",
            ])
            .arg("--bundle")
            .arg(&m)
            .args(extra)
            .output()
            .unwrap();
        serde_json::from_str(&ok(&o)).expect("bench --json")
    };
    assert_eq!(bench(&[])["backend"], "tract");
    assert_eq!(bench(&["--engine", "native"])["backend"], "native");
}
