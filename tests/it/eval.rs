//! `gestalt-edge eval`: the paper's metric against a committed Python re-implementation
//! (`tests/golden/eval/make_eval_golden.py` and its `expected.json`), hand-computed cases,
//! bad input (file and line, exit code 6 for data files, 4 for photos, nothing written), and
//! the real demo photos (photo mode, saved encodings, verification).

use crate::util;

use std::path::{Path, PathBuf};

use gestalt_edge::gallery::{Case, Gallery, KeySpec, Storage};
use gestalt_edge::gmdb::reference::{EncodingTable, ImageList};
use gestalt_edge::rank::{self, RankOptions};
use serde_json::Value;
use util::*;

fn golden(name: &str) -> PathBuf {
    let p = root().join("tests/golden/eval").join(name);
    assert!(
        p.exists(),
        "missing golden {}: run python3 tests/golden/eval/make_eval_golden.py",
        p.display()
    );
    p
}

fn expected() -> Value {
    let text = std::fs::read_to_string(golden("expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("expected.json is JSON")
}

/// Runs `eval --json` with the golden encodings and syndromes; returns the parsed output.
fn eval_json(galleries: &[&str], test: &str) -> Value {
    let mut args: Vec<String> = vec!["eval".into(), "--json".into()];
    args.push("--encodings".into());
    args.push(golden("encodings.csv").display().to_string());
    for g in galleries {
        args.push("--gallery-images".into());
        args.push(golden(g).display().to_string());
    }
    args.extend(["--test-images".into(), golden(test).display().to_string()]);
    args.extend([
        "--syndromes".into(),
        golden("syndromes.tsv").display().to_string(),
    ]);
    let o = run(&args);
    let (code, out, err) = parts(&o);
    assert_eq!(code, 0, "eval failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn matches_the_python_metric_in_every_setting() {
    let exp = expected();
    for (setting, galleries, test) in [
        (
            "frequent",
            vec!["frequent_gallery.csv"],
            "frequent_test.csv",
        ),
        ("rare", vec!["rare_gallery.csv"], "rare_test.csv"),
        (
            "unified_rare",
            vec!["frequent_gallery.csv", "rare_gallery.csv"],
            "rare_test.csv",
        ),
        (
            "unified_frequent",
            vec!["frequent_gallery.csv", "rare_gallery.csv"],
            "frequent_test.csv",
        ),
    ] {
        let got = eval_json(&galleries, test);
        let want = &exp[setting];
        for (i, k) in ["1", "5", "10", "30"].iter().enumerate() {
            let g = got["top_k_mean_accuracy"][k].as_f64().expect("number");
            let w = want["top_k"][i].as_f64().expect("number");
            assert!(close(g, w, 1e-3), "{setting} top-{k}: {g} vs python {w}");
        }
        let curve = got["curve_k_1_to_30"].as_array().expect("curve");
        for (k, (g, w)) in curve
            .iter()
            .zip(want["curve"].as_array().expect("curve"))
            .enumerate()
        {
            assert!(
                close(g.as_f64().unwrap(), w.as_f64().unwrap(), 1e-3),
                "{setting} curve k={}",
                k + 1
            );
        }
        let splits = got["splits"].as_array().expect("splits");
        let wsplits = want["splits"].as_array().expect("splits");
        assert_eq!(splits.len(), wsplits.len(), "{setting}: number of splits");
        for (g, w) in splits.iter().zip(wsplits) {
            assert_eq!(g["split"], w["split"], "{setting}");
            assert_eq!(g["gallery_images"], w["gallery_images"], "{setting}");
            assert_eq!(g["test_images"], w["test_images"], "{setting}");
        }
        assert!(close(
            got["gallery_images"].as_f64().unwrap(),
            want["gallery_images"].as_f64().unwrap(),
            1e-9
        ));
    }
}

/// The ranked syndrome lists themselves, per test image, in identical order (ties included:
/// the golden gallery holds an exact duplicate under another syndrome).
#[test]
fn ranked_lists_are_identical_to_python() {
    let exp = expected();
    let enc = EncodingTable::read(&golden("encodings.csv")).unwrap();
    for (setting, galleries, test) in [
        (
            "frequent",
            vec!["frequent_gallery.csv"],
            "frequent_test.csv",
        ),
        (
            "unified_rare",
            vec!["frequent_gallery.csv", "rare_gallery.csv"],
            "rare_test.csv",
        ),
    ] {
        let lists: Vec<ImageList> = galleries
            .iter()
            .map(|g| ImageList::read(&golden(g)).unwrap())
            .collect();
        let test = ImageList::read(&golden(test)).unwrap();
        for split in exp[setting]["splits"].as_array().unwrap() {
            let s = split["split"].as_u64().map(|x| x as u32);
            let keep = |r: &&gestalt_edge::gmdb::reference::ImageRow| {
                s.is_none() || r.split.is_none() || r.split == s
            };
            let mut g = Gallery::new("t", "t", enc.keys.clone(), Storage::F16).unwrap();
            for row in lists.iter().flat_map(|l| l.rows.iter()).filter(keep) {
                let e = &enc.find(&row.image_id).unwrap().unwrap().embeddings;
                let case = Case {
                    image_id: row.image_id.clone(),
                    subject: Some(row.subject.clone()),
                    syndrome: row.label.clone(),
                    ..Case::default()
                };
                g.add(&case, e).unwrap();
            }
            let mut checked = 0;
            for row in test.rows.iter().filter(keep) {
                let q = &enc.find(&row.image_id).unwrap().unwrap().embeddings;
                let r = rank::rank(
                    q,
                    &g,
                    &RankOptions {
                        top: 100,
                        patients: 100,
                        same_patient_threshold: None,
                    },
                )
                .unwrap();
                let got: Vec<&str> = r
                    .syndromes
                    .iter()
                    .map(|h| h.syndrome_name.as_str())
                    .collect();
                let want: Vec<&str> = split["ranked"][&row.image_id]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap())
                    .collect();
                assert_eq!(got, want, "{setting} split {s:?} image {}", row.image_id);
                checked += 1;
            }
            assert!(checked > 0);
        }
    }
    // the width check of the encodings matters for the above: 2 models x 4 views
    assert_eq!(enc.keys.len(), 8);
    assert!(enc
        .keys
        .iter()
        .all(|k: &KeySpec| k.width == 8 || k.width == 6));
}

const HEAD: &str = "img_name;model;flip;gray;class_conf;representations\n";

/// A tiny data set written into `dir`; returns the argument list of `eval`.
fn tiny(dir: &Path, enc: &str, gallery: &str, test: &str) -> Vec<String> {
    let e = write(dir, "enc.csv", enc.as_bytes());
    let g = write(dir, "gallery.csv", gallery.as_bytes());
    let t = write(dir, "test.csv", test.as_bytes());
    let s = write(
        dir,
        "synd.tsv",
        b"syndrome_id\tsyndrome_name\tOMIM\n1\tA\t100\n2\tB\t\n3\tC\t300\n",
    );
    [
        "eval",
        "--encodings",
        &e.display().to_string(),
        "--gallery-images",
        &g.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        "--test-images".into(),
        t.display().to_string(),
        "--syndromes".into(),
        s.display().to_string(),
    ])
    .collect()
}

const TINY_ENC: &str = "1_x.jpg;m;0;0;[0];[1,0]\n2_x.jpg;m;0;0;[0];[1,0]\n3_x.jpg;m;0;0;[0];[0,1]\n\
                        7_x.jpg;m;0;0;[0];[1,0]\n8_x.jpg;m;0;0;[0];[0,1]\n9_x.jpg;m;0;0;[0];[0.6,0.8]\n";

#[test]
fn hand_computed_ties_and_a_single_image_syndrome() {
    // Gallery: 1 (A) and 2 (B) are identical, 3 (C). Test 7 (B) ties A and B: A is listed
    // first, so B is second (top-1 miss, top-5 hit). Test 8 and 9 (C) are nearest to C.
    // top-1 = mean(B 0/1, C 2/2) = 50 %, top-5 = 100 %.
    let dir = tempdir();
    let mut args = tiny(
        dir.path(),
        &format!("{HEAD}{TINY_ENC}"),
        "image_id,subject,label\n1,p1,1\n2,p2,2\n3,p3,3\n",
        "image_id,subject,label\n7,p7,2\n8,p8,3\n9,p9,3\n",
    );
    args.push("--json".into());
    let (code, out, err) = parts(&run(&args));
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["top_k_mean_accuracy"]["1"].as_f64(), Some(50.0), "{out}");
    assert_eq!(v["top_k_mean_accuracy"]["5"].as_f64(), Some(100.0), "{out}");
    assert_eq!(v["gallery_images"].as_u64(), Some(3));
    assert_eq!(v["test_images"].as_u64(), Some(3));
    assert_eq!(v["splits"][0]["test_syndromes"].as_u64(), Some(2));

    // table output names the setting and the numbers
    args.pop();
    let (code, out, _) = parts(&run(&args));
    assert_eq!(code, 0);
    assert!(
        out.contains("top-30") && out.contains("50.00") && out.contains("100.00"),
        "{out}"
    );
}

#[test]
fn an_empty_split_is_refused_without_output() {
    let dir = tempdir();
    let plot = dir.path().join("curves.png");
    let mut args = tiny(
        dir.path(),
        &format!("{HEAD}{TINY_ENC}"),
        "image_id,subject,label,split\n1,p1,1,0\n2,p2,2,1\n3,p3,3,0\n3,p3,3,1\n",
        "image_id,subject,label,split\n7,p7,2,1\n",
    );
    args.extend(["--plot".into(), plot.display().to_string()]);
    let o = run(&args);
    expect_failure(&o, 6, &["test.csv", "split 0", "no test image"]);
    assert!(o.stdout.is_empty(), "partial output");
    assert!(!plot.exists(), "plot written despite the error");
}

#[test]
fn bad_input_names_file_and_line() {
    let g = "image_id,subject,label\n1,p1,1\n2,p2,2\n3,p3,3\n";
    let t = "image_id,subject,label\n7,p7,2\n8,p8,3\n9,p9,3\n";
    let enc = format!("{HEAD}{TINY_ENC}");
    let cases: Vec<(String, &str, &str, Vec<&str>)> = vec![
        // missing column in a list
        (
            enc.clone(),
            "image_id,label\n1,1\n",
            t,
            vec!["gallery.csv", "line 1", "subject"],
        ),
        // unknown label
        (
            enc.clone(),
            g,
            "image_id,subject,label\n7,p7,2\n8,p8,99\n",
            vec!["test.csv", "line 3", "label 99"],
        ),
        // listed image missing from the encodings
        (
            enc.clone(),
            g,
            "image_id,subject,label\n7,p7,2\n5,p5,3\n",
            vec!["test.csv", "line 3", "image 5"],
        ),
        // NaN representation
        (
            enc.replace("[0.6,0.8]", "[NaN,0.8]"),
            g,
            t,
            vec!["enc.csv", "line 7", "NaN"],
        ),
        // wrong length
        (
            enc.replace("[0.6,0.8]", "[0.6,0.8,0.1]"),
            g,
            t,
            vec!["enc.csv", "line 7", "3 values"],
        ),
        // missing encodings column
        (
            TINY_ENC.to_string(),
            g,
            t,
            vec!["enc.csv", "line 1", "img_name"],
        ),
        // a test image that is also in the gallery
        (
            enc.clone(),
            g,
            "image_id,subject,label\n2,p2,2\n",
            vec!["test.csv", "line 2", "held out"],
        ),
    ];
    for (e, gl, tl, frags) in cases {
        let dir = tempdir();
        let o = run(tiny(dir.path(), &e, gl, tl));
        expect_failure(&o, 6, &frags);
        assert!(o.stdout.is_empty(), "partial output for {frags:?}");
    }
    // usage: neither encodings nor a bundle
    let o = run([
        "eval",
        "--gallery-images",
        "a.csv",
        "--test-images",
        "b.csv",
        "--syndromes",
        "c.tsv",
    ]);
    expect_failure(&o, 2, &["--encodings"]);
}

fn demo_lists(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let g = write(
        dir,
        "gallery.csv",
        b"image_id,subject,label\nperson_a_1,a,1\nperson_b_1,b,2\nimpostor_1,c,3\nimpostor_2,d,4\n",
    );
    let t = write(
        dir,
        "test.csv",
        b"image_id,subject,label\nperson_a_2,a,1\nperson_b_2,b,2\n",
    );
    let s = write(
        dir,
        "synd.tsv",
        b"1\tDemo A\t\n2\tDemo B\t\n3\tDemo C\t\n4\tDemo D\t\n",
    );
    (g, t, s)
}

#[test]
fn photos_end_to_end_on_the_demo_bundle() {
    let bundle = demo_bundle();
    let dir = tempdir();
    let (g, t, s) = demo_lists(dir.path());
    let saved = dir.path().join("enc.csv");
    let plot = dir.path().join("curves.png");
    let o = run([
        "eval".as_ref(),
        "--bundle".as_ref(),
        bundle.as_os_str(),
        "--photos".as_ref(),
        root().join("models/demo/photos").as_os_str(),
        "--gallery-images".as_ref(),
        g.as_os_str(),
        "--test-images".as_ref(),
        t.as_os_str(),
        "--syndromes".as_ref(),
        s.as_os_str(),
        "--save-encodings".as_ref(),
        saved.as_os_str(),
        "--plot".as_ref(),
        plot.as_os_str(),
        "--json".as_ref(),
    ]);
    let (code, out, err) = parts(&o);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    // SFace recognises both people again: both test photos rank their identity first
    assert_eq!(v["top_k_mean_accuracy"]["1"].as_f64(), Some(100.0), "{out}");
    assert_eq!(v["source"], "photos");
    let png = image::open(&plot).expect("plot is a PNG");
    assert_eq!((png.width(), png.height()), (640, 400));

    // the saved encodings are a reference encodings file: same numbers from it
    let table = EncodingTable::read(&saved).unwrap();
    assert_eq!(table.images.len(), 6);
    assert_eq!(table.keys.len(), 4);
    assert!(table.keys.iter().all(|k| k.width == 128));
    let o = run([
        "eval".as_ref(),
        "--encodings".as_ref(),
        saved.as_os_str(),
        "--gallery-images".as_ref(),
        g.as_os_str(),
        "--test-images".as_ref(),
        t.as_os_str(),
        "--syndromes".as_ref(),
        s.as_os_str(),
        "--json".as_ref(),
    ]);
    let (code, out2, err) = parts(&o);
    assert_eq!(code, 0, "{err}");
    let v2: Value = serde_json::from_str(&out2).unwrap();
    assert_eq!(v["top_k_mean_accuracy"], v2["top_k_mean_accuracy"]);

    // a listed photo that is not in the folder: exit 4, the list file and line named
    let t2 = write(
        dir.path(),
        "test2.csv",
        b"image_id,subject,label\nperson_a_2,a,1\nnobody,x,2\n",
    );
    let o = run([
        "eval".as_ref(),
        "--bundle".as_ref(),
        bundle.as_os_str(),
        "--photos".as_ref(),
        root().join("models/demo/photos").as_os_str(),
        "--gallery-images".as_ref(),
        g.as_os_str(),
        "--test-images".as_ref(),
        t2.as_os_str(),
        "--syndromes".as_ref(),
        s.as_os_str(),
    ]);
    expect_failure(&o, 4, &["nobody", "line 3", "test2.csv"]);
    assert!(o.stdout.is_empty());
}

#[test]
fn verification_on_the_demo_photos() {
    let bundle = demo_bundle();
    let o = run([
        "eval".as_ref(),
        "--pairs".as_ref(),
        golden("demo_pairs.csv").as_os_str(),
        "--bundle".as_ref(),
        bundle.as_os_str(),
        "--photos".as_ref(),
        root().join("models/demo/photos").as_os_str(),
        "--json".as_ref(),
    ]);
    let (code, out, err) = parts(&o);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["pairs"].as_u64(), Some(15));
    assert_eq!(v["positives"].as_u64(), Some(2));
    assert_eq!(v["roc_auc"].as_f64(), Some(1.0), "{out}");
    assert_eq!(v["accuracy_at_best_threshold"].as_f64(), Some(100.0));
    // same-person similarity 0.5-0.8, different people below 0.3 (the demo models' documented behaviour)
    for s in v["scores"].as_array().unwrap() {
        let sim = s["similarity"].as_f64().unwrap();
        if s["same"].as_bool().unwrap() {
            assert!(sim > 0.5, "{s}");
        } else {
            assert!(sim < 0.3, "{s}");
        }
    }
}
