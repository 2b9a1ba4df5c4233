//! Hand-computed rankings.
//!
//! Gallery keys A = m/flip=0, B = m/flip=1 (width 2). Query A = (1,0), B = (0,1), given in
//! the order [B, A]. Per-image distances (A, B) -> mean:
//!
//! ```text
//! img0 A (1,0)  0   B (1,0)  1   -> 0.5   S1 (OMIM 100)  p1  [G1]
//! img1 A (0,1)  1   B (0,1)  0   -> 0.5   S2             p2  [G2, G1]
//! img2 A (1,0)  0   B (0,1)  0   -> 0.0   S2             p3  [G3]
//! img3 A (-1,0) 2   B (0,-1) 2   -> 2.0   S3             p1  [G1, G4]
//! img4 A (3,4)  .4  B (4,3)  .4  -> 0.4   S1             p4  []
//! ```
//!
//! Ranked: img2, img4, img0, img1 (tie with img0, later index), img3.

use super::*;
use crate::embed::Key;
use crate::gallery::tests::{case, key, spec};
use crate::gallery::{Case, Storage};
use crate::Error;

fn ka() -> Key {
    key("m", false, false)
}

fn kb() -> Key {
    key("m", true, false)
}

fn emb(a: [f32; 2], b: [f32; 2]) -> Embeddings {
    Embeddings {
        entries: vec![(kb(), b.to_vec()), (ka(), a.to_vec())],
    }
}

fn with(c: Case, subject: &str, genes: &[&str]) -> Case {
    Case {
        subject: Some(subject.into()),
        genes: genes.iter().map(|g| (g.to_string(), None)).collect(),
        ..c
    }
}

fn gallery() -> Gallery {
    let keys = vec![spec("m", false, 2), spec("m", true, 2)];
    let mut g = Gallery::new("b", "v", keys, Storage::F16).unwrap();
    let rows = [
        ("img0", "S1", "p1", &["G1"][..], [1.0, 0.0], [1.0, 0.0]),
        (
            "img1",
            "S2",
            "p2",
            &["G2", "G1"][..],
            [0.0, 1.0],
            [0.0, 1.0],
        ),
        ("img2", "S2", "p3", &["G3"][..], [1.0, 0.0], [0.0, 1.0]),
        (
            "img3",
            "S3",
            "p1",
            &["G1", "G4"][..],
            [-1.0, 0.0],
            [0.0, -1.0],
        ),
        ("img4", "S1", "p4", &[][..], [3.0, 4.0], [4.0, 3.0]),
    ];
    for (id, syn, subject, genes, a, b) in rows {
        let omim = (syn == "S1").then_some(100);
        g.add(&with(case(id, syn, omim), subject, genes), &emb(a, b))
            .unwrap();
    }
    g
}

fn query() -> Embeddings {
    emb([1.0, 0.0], [0.0, 1.0])
}

fn opts(top: usize, threshold: Option<f32>) -> RankOptions {
    RankOptions {
        top,
        patients: top,
        same_patient_threshold: threshold,
    }
}

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() < 1e-6
}

#[test]
fn distances_pair_by_key_and_average() {
    let d = distances(&query(), &gallery()).unwrap();
    let want = [0.5, 0.5, 0.0, 2.0, 0.4];
    assert!(d.iter().zip(want).all(|(a, b)| close(*a, b)), "{d:?}");
}

#[test]
fn full_ranking_by_hand() {
    let r = rank(&query(), &gallery(), &opts(10, None)).unwrap();
    assert_eq!(r.images_compared, 5);

    let syn: Vec<_> = r
        .syndromes
        .iter()
        .map(|s| {
            (
                s.syndrome_name.as_str(),
                s.image_id.as_str(),
                s.subject_id.as_str(),
            )
        })
        .collect();
    assert_eq!(
        syn,
        [
            ("S2", "img2", "p3"),
            ("S1", "img4", "p4"),
            ("S3", "img3", "p1")
        ]
    );
    let sd: Vec<f32> = r.syndromes.iter().map(|s| s.distance).collect();
    assert!(
        close(sd[0], 0.0) && close(sd[1], 0.4) && close(sd[2], 2.0),
        "{sd:?}"
    );
    assert_eq!(r.syndromes[1].omim_id, Some(100));
    assert_eq!(r.syndromes[0].omim_id, None);
    assert!(close(r.syndromes[1].gestalt_score, 0.9));

    let genes: Vec<_> = r
        .genes
        .iter()
        .map(|g| {
            (
                g.gene_name.as_str(),
                g.syndrome_name.as_str(),
                g.image_id.as_str(),
            )
        })
        .collect();
    assert_eq!(
        genes,
        [
            ("G3", "S2", "img2"),
            ("G1", "S1", "img0"),
            ("G2", "S2", "img1"),
            ("G4", "S3", "img3")
        ]
    );
    assert!(close(r.genes[1].distance, 0.5) && close(r.genes[3].gestalt_score, -0.7));
    assert_eq!(r.genes[2].subject_id, "p2");

    let patients: Vec<_> = r
        .patients
        .iter()
        .map(|p| {
            (
                p.subject_id.as_str(),
                p.image_id.as_str(),
                p.syndrome_name.as_str(),
                p.omim_id,
            )
        })
        .collect();
    assert_eq!(
        patients,
        [
            ("p3", "img2", "S2", None),
            ("p4", "img4", "S1", Some(100)),
            ("p1", "img0", "S1", Some(100)),
            ("p2", "img1", "S2", None)
        ]
    );
}

#[test]
fn top_truncates_every_list() {
    let r = rank(&query(), &gallery(), &opts(2, None)).unwrap();
    assert_eq!(
        (r.syndromes.len(), r.genes.len(), r.patients.len()),
        (2, 2, 2)
    );
    assert_eq!(r.genes[1].gene_name, "G1");
    let r = rank(&query(), &gallery(), &opts(0, None)).unwrap();
    assert!(r.syndromes.is_empty() && r.genes.is_empty() && r.patients.is_empty());
}

#[test]
fn patients_are_sized_apart_from_top() {
    let o = RankOptions {
        top: 1,
        patients: 3,
        same_patient_threshold: None,
    };
    let r = rank(&query(), &gallery(), &o).unwrap();
    assert_eq!((r.syndromes.len(), r.genes.len()), (1, 1));
    let p: Vec<_> = r.patients.iter().map(|p| p.subject_id.as_str()).collect();
    assert_eq!(p, ["p3", "p4", "p1"]);
    // the gene of the patient's image: its first gene entry, none for img4
    assert_eq!(r.patients[0].gene_name.as_deref(), Some("G3"));
    assert_eq!(r.patients[1].gene_name, None);
    assert_eq!(r.patients[2].gene_name.as_deref(), Some("G1"));
}

#[test]
fn pp4_levels_follow_the_gallery_thresholds() {
    use crate::rank::pp4::Pp4Thresholds;
    // S1's nearest image is img4 at distance 0.4: gestalt score 0.9
    let mut g = gallery();
    let at = |vs: f32| Pp4Thresholds::new([Some(vs), Some(0.85), None, Some(0.3)]).unwrap();
    for (vs, level) in [(0.9, "very_strong"), (0.9001, "strong")] {
        g.set_pp4("S1", at(vs)).unwrap();
        let r = rank(&query(), &g, &opts(10, None)).unwrap();
        let s1 = r
            .syndromes
            .iter()
            .find(|s| s.syndrome_name == "S1")
            .unwrap();
        assert!(close(s1.gestalt_score, 0.9));
        assert_eq!(
            (s1.acmg_pp4.as_str(), s1.acmg_pp4_support.as_str()),
            (level, "Yes")
        );
        let s2 = r
            .syndromes
            .iter()
            .find(|s| s.syndrome_name == "S2")
            .unwrap();
        assert_eq!(
            (s2.acmg_pp4.as_str(), s2.acmg_pp4_support.as_str()),
            ("", "Not available yet")
        );
    }
    // S3 at distance 2.0 (score -0.7) reaches no level but has thresholds
    g.set_pp4("S3", at(1.0)).unwrap();
    let r = rank(&query(), &g, &opts(10, None)).unwrap();
    let mut s3 = r
        .syndromes
        .iter()
        .find(|s| s.syndrome_name == "S3")
        .unwrap()
        .clone();
    assert_eq!(
        (s3.acmg_pp4.as_str(), s3.acmg_pp4_support.as_str()),
        ("", "Yes")
    );
    s3.withhold_pp4("why");
    assert_eq!(s3.acmg_pp4_support, "why");
}

#[test]
fn explanation_gives_the_distance_per_view_of_the_nearest_image() {
    let g = gallery();
    let r = rank(&query(), &g, &opts(10, None)).unwrap();
    let e = explain::explain(&query(), &g, &r.syndromes, 2);
    assert_eq!(e.len(), 2);
    // S1's nearest image is img4: A (3,4) against (1,0) -> 0.4, B (4,3) against (0,1) -> 0.4
    assert_eq!(
        (e[1].syndrome_name.as_str(), e[1].image_id.as_str()),
        ("S1", "img4")
    );
    let views: Vec<(bool, f32)> = e[1].per_view.iter().map(|v| (v.flip, v.distance)).collect();
    assert!(
        close(views[0].1, 0.4) && close(views[1].1, 0.4),
        "{views:?}"
    );
    assert_eq!((views[0].0, views[1].0), (false, true));
    // S3 via img3 (distance 2 on both views); one model, mean 2
    let e = explain::explain(&query(), &g, &r.syndromes, 5);
    assert_eq!(e.len(), 3);
    assert_eq!(e[2].per_model.len(), 1);
    assert!(close(e[2].per_model[0].distance, 2.0) && close(e[2].distance, 2.0));
    // img1 (S2's second image) would be 1 on A and 0 on B: explanations use the ranked image
    assert!(e[0].per_view.iter().all(|v| close(v.distance, 0.0)));
}

#[test]
fn same_patient_filter_drops_near_duplicates() {
    let r = rank(&query(), &gallery(), &opts(10, Some(0.1))).unwrap();
    assert_eq!(r.images_compared, 5);
    let syn: Vec<_> = r.syndromes.iter().map(|s| s.image_id.as_str()).collect();
    assert_eq!(syn, ["img4", "img1", "img3"]);
    let genes: Vec<_> = r.genes.iter().map(|g| g.gene_name.as_str()).collect();
    assert_eq!(genes, ["G1", "G2", "G4"]);
    let patients: Vec<_> = r.patients.iter().map(|p| p.subject_id.as_str()).collect();
    assert_eq!(patients, ["p4", "p1", "p2"]);
    // exactly at the threshold is kept: img0 and img1 are at 0.5
    let r = rank(&query(), &gallery(), &opts(10, Some(0.5))).unwrap();
    let syn: Vec<_> = r.syndromes.iter().map(|s| s.image_id.as_str()).collect();
    assert_eq!(syn, ["img0", "img1", "img3"]);
}

#[test]
fn ties_break_by_gallery_index() {
    let keys = vec![spec("m", false, 2), spec("m", true, 2)];
    let mut g = Gallery::new("b", "v", keys, Storage::I8).unwrap();
    for (i, id) in ["z", "b", "y", "a"].iter().enumerate() {
        let c = with(case(id, &format!("S{id}"), None), id, &[]);
        // every image at the same distance from the query, inserted out of name order
        let v = if i % 2 == 0 { [1.0, 1.0] } else { [2.0, 2.0] };
        g.add(&c, &emb(v, v)).unwrap();
    }
    for _ in 0..3 {
        let r = rank(&query(), &g, &opts(10, None)).unwrap();
        let ids: Vec<_> = r.patients.iter().map(|p| p.image_id.as_str()).collect();
        assert_eq!(ids, ["z", "b", "y", "a"]);
    }
}

#[test]
fn missing_key_or_width_is_a_gallery_error() {
    let g = gallery();
    let mut q = query();
    q.entries.retain(|(k, _)| k != &kb());
    let err = rank(&q, &g, &opts(5, None)).unwrap_err();
    assert!(matches!(err, Error::Gallery { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("m/flip=1/gray=0") && msg.contains("another bundle"),
        "{msg}"
    );

    let mut q = query();
    q.entries[0].1.push(0.0);
    let msg = distances(&q, &g).unwrap_err().to_string();
    assert!(
        msg.contains("3 values") && msg.contains("stores 2"),
        "{msg}"
    );

    let mut q = query();
    q.entries[1].1[0] = f32::INFINITY;
    assert!(matches!(distances(&q, &g), Err(Error::Usage(_))));
}

#[test]
fn json_field_names_are_the_contract() {
    let r = rank(&query(), &gallery(), &opts(1, None)).unwrap();
    let v = serde_json::to_value(&r).unwrap();
    let names = |x: &serde_json::Value| {
        let mut k: Vec<String> = x.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        names(&v),
        ["genes", "images_compared", "patients", "syndromes"]
    );
    assert_eq!(
        names(&v["syndromes"][0]),
        [
            "ACMG_PP4",
            "ACMG_PP4_support",
            "ci_lower",
            "ci_upper",
            "distance",
            "gestalt_score",
            "image_id",
            "omim_id",
            "probability",
            "subject_id",
            "syndrome_name"
        ]
    );
    for k in ["probability", "ci_lower", "ci_upper"] {
        assert_eq!(v["syndromes"][0][k], serde_json::Value::Null, "{k}");
    }
    assert_eq!(v["syndromes"][0]["ACMG_PP4_support"], "Not available yet");
    assert_eq!(
        names(&v["genes"][0]),
        [
            "distance",
            "gene_entrez_id",
            "gene_name",
            "gestalt_score",
            "image_id",
            "subject_id",
            "syndrome_name"
        ]
    );
    assert_eq!(
        names(&v["patients"][0]),
        [
            "distance",
            "gene_entrez_id",
            "gene_name",
            "gestalt_score",
            "image_id",
            "omim_id",
            "subject_id",
            "syndrome_name"
        ]
    );
    // p3's nearest image img2 has gene G3 first
    assert_eq!(v["patients"][0]["gene_name"], "G3");
    assert_eq!(v["syndromes"][0]["omim_id"], serde_json::Value::Null);
}

#[test]
fn empty_gallery_ranks_nothing() {
    let g = Gallery::new("b", "v", vec![spec("m", false, 2)], Storage::F16).unwrap();
    let r = rank(&query(), &g, &opts(5, None)).unwrap();
    assert_eq!(r, Ranking::default());
}
