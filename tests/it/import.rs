//! `gestalt-edge gallery import`: reference encodings into a gallery, models mapped by name,
//! bound to the demo bundle and used by `predict`; bad input with file, line and exit code.

use crate::util;

use std::path::{Path, PathBuf};

use serde_json::Value;
use util::*;

fn golden(name: &str) -> PathBuf {
    let p = root().join("tests/golden/eval").join(name);
    assert!(p.exists(), "missing golden {}", p.display());
    p
}

fn import(args: &[&std::ffi::OsStr]) -> std::process::Output {
    let mut all: Vec<&std::ffi::OsStr> = vec!["gallery".as_ref(), "import".as_ref()];
    all.extend_from_slice(args);
    run(all)
}

fn inspect(path: &Path) -> Value {
    let o = run([
        "gallery".as_ref(),
        "inspect".as_ref(),
        path.as_os_str(),
        "--json".as_ref(),
    ]);
    let (code, out, err) = parts(&o);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn imports_reference_encodings_with_renamed_models() {
    let dir = tempdir();
    let out = dir.path().join("g.gallery");
    let o = import(&[
        "--encodings".as_ref(),
        golden("encodings.csv").as_os_str(),
        "--images".as_ref(),
        golden("frequent_gallery.csv").as_os_str(),
        "--syndromes".as_ref(),
        golden("syndromes.tsv").as_os_str(),
        "--map".as_ref(),
        "m0=r50".as_ref(),
        "--map".as_ref(),
        "m1=r100".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    let (code, stdout, err) = parts(&o);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("25 images"), "{stdout}");
    let s = inspect(&out);
    assert_eq!(s["images"].as_u64(), Some(25));
    assert_eq!(s["syndromes"].as_u64(), Some(6));
    assert_eq!(s["bundle_id"], "unbound");
    let keys: Vec<String> = s["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| format!("{}:{}", k["key"]["model"].as_str().unwrap(), k["width"]))
        .collect();
    assert_eq!(keys.len(), 8);
    assert!(keys[..4].iter().all(|k| k == "r50:8"), "{keys:?}");
    assert!(keys[4..].iter().all(|k| k == "r100:6"), "{keys:?}");
}

#[test]
fn rare_lists_need_a_split_and_bad_mappings_are_refused() {
    let dir = tempdir();
    let out = dir.path().join("g.gallery");
    let base = |images: &str| -> Vec<std::ffi::OsString> {
        vec![
            "--encodings".into(),
            golden("encodings.csv").into(),
            "--images".into(),
            golden(images).into(),
            "--syndromes".into(),
            golden("syndromes.tsv").into(),
            "--out".into(),
            out.clone().into(),
        ]
    };
    fn args(v: &[std::ffi::OsString]) -> Vec<&std::ffi::OsStr> {
        v.iter().map(|s| s.as_os_str()).collect()
    }

    let v = base("rare_gallery.csv");
    expect_failure(&import(&args(&v)), 2, &["--split"]);
    let mut v = base("rare_gallery.csv");
    v.extend(["--split".into(), "1".into()]);
    let (code, stdout, err) = parts(&import(&args(&v)));
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("12 images"), "{stdout}");
    std::fs::remove_file(&out).unwrap();

    let mut v = base("frequent_gallery.csv");
    v.extend(["--map".into(), "m7=x".into()]);
    expect_failure(&import(&args(&v)), 2, &["m7", "m0, m1"]);
    let mut v = base("frequent_gallery.csv");
    v.extend(["--map".into(), "m0".into()]);
    expect_failure(&import(&args(&v)), 2, &["REFMODEL=EMBEDDER"]);
    // the demo bundle's SFace makes 128 values; m0 has 8
    let mut v = base("frequent_gallery.csv");
    v.extend([
        "--map".into(),
        "m0=sface".into(),
        "--bundle".into(),
        demo_bundle().into(),
    ]);
    expect_failure(&import(&args(&v)), 6, &["encodings.csv", "128"]);
    // an image of the list missing from the encodings: the list's file and line
    let list = write(
        dir.path(),
        "list.csv",
        b"image_id,subject,label\n1000,p,101\n4242,q,101\n",
    );
    let mut v = base("frequent_gallery.csv");
    v[3] = list.into();
    expect_failure(&import(&args(&v)), 6, &["list.csv", "line 3", "4242"]);
    assert!(!out.exists(), "a gallery was written despite the errors");
}

/// Encodings made from the demo photos (by `eval --save-encodings`), renamed to a
/// reference-style model name, imported for the demo bundle with `--map m0=sface`, then
/// used by `predict`.
#[test]
fn imported_gallery_serves_predict_on_the_demo_bundle() {
    let bundle = demo_bundle();
    let dir = tempdir();
    let d = dir.path();
    let g = write(
        d,
        "gallery.csv",
        b"image_id,subject,label\nperson_a_1,a,1\nperson_b_1,b,2\nimpostor_1,c,3\nimpostor_2,d,4\n",
    );
    let t = write(d, "test.csv", b"image_id,subject,label\nperson_a_2,a,1\n");
    let s = write(
        d,
        "synd.tsv",
        b"syndrome_id\tsyndrome_name\tOMIM\n1\tDemo A\t100001\n2\tDemo B\t\n3\tDemo C\t\n4\tDemo D\t\n",
    );
    let saved = d.join("sface.csv");
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
    ]);
    let (code, _, err) = parts(&o);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&saved)
        .unwrap()
        .replace(";sface;", ";m0;");
    let enc = write(d, "m0.csv", text.as_bytes());
    let out = d.join("imported.gallery");
    let args = |map: bool| {
        let mut v: Vec<std::ffi::OsString> = vec![
            "--encodings".into(),
            enc.clone().into(),
            "--images".into(),
            g.clone().into(),
            "--syndromes".into(),
            s.clone().into(),
            "--bundle".into(),
            bundle.clone().into(),
            "--out".into(),
            out.clone().into(),
        ];
        if map {
            v.extend(["--map".into(), "m0=sface".into()]);
        }
        v
    };
    // never by position: without the mapping the bundle's embedder is not found
    let v = args(false);
    expect_failure(
        &import(&v.iter().map(|x| x.as_os_str()).collect::<Vec<_>>()),
        6,
        &["map a reference model to it: REFMODEL=sface"],
    );
    let v = args(true);
    let (code, _, err) = parts(&import(
        &v.iter().map(|x| x.as_os_str()).collect::<Vec<_>>(),
    ));
    assert_eq!(code, 0, "{err}");
    assert_eq!(inspect(&out)["images"].as_u64(), Some(4));

    let o = run([
        "predict".as_ref(),
        "--bundle".as_ref(),
        bundle.as_os_str(),
        "--gallery".as_ref(),
        out.as_os_str(),
        "--json".as_ref(),
        demo_photo("person_a_2.jpg").as_os_str(),
    ]);
    let (code, stdout, err) = parts(&o);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    let top = &v[0]["suggested_syndromes_list"][0];
    assert_eq!(top["syndrome_name"], "Demo A", "{stdout}");
    assert_eq!(top["omim_id"].as_u64(), Some(100001));
    assert_eq!(top["subject_id"], "a");
}
