//! Indexed gallery search against the flat scan: on the real demo gallery with real photo
//! embeddings, on a structured synthetic gallery read back from a gallery file (the index is
//! derived at load, so files of every format version the reader accepts get one), and through
//! `gestalt-edge bench`.

use crate::util;

use gestalt_edge::bundle::{Bundle, LoadOptions};
use gestalt_edge::capture::{load_image, Limits};
use gestalt_edge::embed::{Embeddings, Key};
use gestalt_edge::gallery::{Case, Gallery, KeySpec, Storage};
use gestalt_edge::rank::search::IndexParams;
use gestalt_edge::rank::synthetic::{Model, Rng};
use gestalt_edge::rank::{rank, rank_indexed, GalleryIndex, RankOptions, SearchPath};
use util::{demo_bundle, demo_gallery, demo_photo};

fn params() -> IndexParams {
    IndexParams {
        dims: 64,
        sample: 2048,
        iterations: 3,
        seed: 1,
        threads: 2,
    }
}

#[test]
fn demo_gallery_indexed_equals_flat_on_real_photos() {
    let gallery = Gallery::read(demo_gallery()).expect("demo gallery reads");
    let index = GalleryIndex::build(&gallery, &params());
    let bundle = Bundle::load(&demo_bundle(), LoadOptions::default()).expect("demo bundle");
    for photo in ["person_a_2.jpg", "person_b_2.jpg", "impostor_1.jpg"] {
        let frame = load_image(&demo_photo(photo), &Limits::default()).expect("decode");
        let a =
            gestalt_edge::pipeline::analyse(&bundle, &frame, &Default::default()).expect("a face");
        for threshold in [None, Some(0.4)] {
            let opts = RankOptions {
                top: 5,
                patients: 5,
                same_patient_threshold: threshold,
            };
            let flat = rank(&a.embeddings, &gallery, &opts).expect("flat");
            let (fast, report) =
                rank_indexed(&a.embeddings, &gallery, Some(&index), &opts, 2, None)
                    .expect("indexed");
            assert_eq!(report.path, SearchPath::Indexed);
            assert!(report.stats.certified, "{photo}");
            assert_eq!(fast, flat, "{photo} threshold {threshold:?}");
        }
    }
}

fn paper_like_keys(width: u32) -> Vec<KeySpec> {
    (0..12)
        .map(|s| KeySpec {
            key: Key {
                model: format!("m{}", s / 4),
                flip: s % 2 == 1,
                gray: s % 4 >= 2,
            },
            width,
        })
        .collect()
}

fn embeddings(keys: &[KeySpec], vectors: Vec<Vec<f32>>) -> Embeddings {
    Embeddings {
        entries: keys.iter().map(|k| k.key.clone()).zip(vectors).collect(),
    }
}

#[test]
fn structured_gallery_file_indexed_equals_flat() {
    let keys = paper_like_keys(96);
    let slots: Vec<(usize, usize)> = (0..12).map(|s| (s / 4, 96)).collect();
    let model = Model::new(&slots, 80, 5);
    let mut rng = Rng::new(6);
    let mut g = Gallery::new("b", "v", keys.clone(), Storage::I8).expect("keys");
    for i in 0..4000usize {
        let case = Case {
            image_id: format!("img{i}"),
            subject: Some(format!("p{}", i / 2)),
            syndrome: format!("S{}", i % 80),
            omim: Some(100_000 + (i % 80) as u32),
            genes: vec![(format!("G{}", i % 80 / 4), None)],
        };
        let v = model.image(i % 80, (i / 2) as u64 + 1000, &mut rng);
        g.add(&case, &embeddings(&keys, v)).expect("add");
    }
    let dir = util::tempdir();
    let path = dir.path().join("structured.gallery");
    g.write_atomic(&path).expect("write");
    let g = Gallery::read(&path).expect("read back");
    let index = GalleryIndex::build(&g, &params());
    for q in 0..6u64 {
        // even queries: new patients; odd: a patient already in the gallery (same-patient
        // filter at work)
        let subject = if q % 2 == 0 { 1 << 40 } else { 1000 + q * 7 };
        let syndrome = if q % 2 == 0 {
            q as usize * 11
        } else {
            (q * 7 * 2) as usize
        };
        let query = embeddings(&keys, model.image(syndrome % 80, subject, &mut rng));
        let threshold = if q % 2 == 0 { None } else { Some(0.3) };
        let opts = RankOptions {
            top: 5,
            patients: 5,
            same_patient_threshold: threshold,
        };
        let flat = rank(&query, &g, &opts).expect("flat");
        let (fast, report) =
            rank_indexed(&query, &g, Some(&index), &opts, 2, None).expect("indexed");
        assert!(report.stats.certified);
        assert_eq!(fast, flat, "query {q}");
        let top: Vec<f32> = flat.syndromes.iter().map(|s| s.distance).collect();
        assert!(
            top.len() == 5 && (0.2..0.6).contains(&top[0]) && top[4] > 0.6,
            "query {q}: realistic distances {top:?}"
        );
        // the proven search may score every image (its bounds are loose on realistic
        // embeddings); it never scores more than the gallery holds
        assert!(report.stats.exact_scored <= g.len());
    }
}

#[test]
fn bench_reports_the_search_path() {
    let o = util::run([
        "bench".as_ref(),
        "--bundle".as_ref(),
        demo_bundle().as_os_str(),
        "--gallery-size".as_ref(),
        "30000".as_ref(),
        "--search-cap".as_ref(),
        "3000".as_ref(),
        "--repeat".as_ref(),
        "1".as_ref(),
        "--json".as_ref(),
    ]);
    let (code, out, err) = util::parts(&o);
    assert_eq!(code, 0, "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let search = &v["gallery_search"];
    assert_eq!(search["path"], "indexed", "{out}");
    assert_eq!(search["same_top5_as_flat"], true, "{out}");
    assert!(
        search["rank_flat_ms"].as_f64().unwrap_or(0.0) > 0.0,
        "{out}"
    );
    assert!(v["rank_ms"].as_f64().unwrap_or(-1.0) >= 0.0, "{out}");
    let capped = &search["capped"];
    assert_eq!(capped["max_exact"], 3000, "{out}");
    let queries = search["queries"].as_u64().unwrap_or(0);
    let same = capped["same_top5_syndromes"].as_u64().unwrap_or(u64::MAX);
    let certified = capped["certified"].as_u64().unwrap_or(u64::MAX);
    assert!(
        queries >= 1 && same <= queries && certified <= queries,
        "{out}"
    );
    assert!(capped["rank_ms"].as_f64().unwrap_or(-1.0) > 0.0, "{out}");
}

#[test]
fn a_search_cap_needs_an_indexed_gallery() {
    for (size, cap, says) in [
        ("1000", "500", "at least 20000"),
        ("30000", "0", "at least 1"),
    ] {
        let o = util::run([
            "bench".as_ref(),
            "--bundle".as_ref(),
            demo_bundle().as_os_str(),
            "--gallery-size".as_ref(),
            size.as_ref(),
            "--search-cap".as_ref(),
            cap.as_ref(),
        ]);
        let (code, out, err) = util::parts(&o);
        assert_eq!(code, 2, "{out}\n{err}");
        assert!(err.contains("--search-cap") && err.contains(says), "{err}");
    }
}

#[test]
fn bench_saves_its_gallery_for_predict() {
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("synthetic.gallery");
    let o = util::run([
        "bench".as_ref(),
        "--bundle".as_ref(),
        demo_bundle().as_os_str(),
        "--gallery-size".as_ref(),
        "300".as_ref(),
        "--repeat".as_ref(),
        "1".as_ref(),
        "--save-gallery".as_ref(),
        saved.as_os_str(),
    ]);
    let (code, out, err) = util::parts(&o);
    assert_eq!(code, 0, "{out}\n{err}");
    let g = Gallery::read(&saved).expect("the saved gallery reads");
    assert_eq!(g.len(), 300);
    // bound to the bundle: predict ranks a demo photo against it
    let o = util::run([
        "predict".as_ref(),
        "--json".as_ref(),
        "--bundle".as_ref(),
        demo_bundle().as_os_str(),
        "--gallery".as_ref(),
        saved.as_os_str(),
        demo_photo("person_a_2.jpg").as_os_str(),
    ]);
    let (code, out, err) = util::parts(&o);
    assert_eq!(code, 0, "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let list = &v[0]["suggested_syndromes_list"];
    assert_eq!(list.as_array().map(Vec::len), Some(5), "{out}");
}
