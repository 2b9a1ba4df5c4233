//! Tests of gallery curation (remove, relabel), PP4 thresholds and the version-1 reader.

use super::super::tests::{case, random_emb, spec, Rng};
use super::super::{Case, Gallery, Storage};
use crate::rank::pp4::Pp4Thresholds;

/// Six images: subjects p1 (2 images, Kabuki), p2 (1, Kabuki), p3 (2, Noonan),
/// p4 (1, Williams, the only image of its syndrome, gene ELN).
fn gallery() -> Gallery {
    let mut g = Gallery::new("b", "v", vec![spec("m", false, 8)], Storage::F16).unwrap();
    let mut rng = Rng::new(11);
    let rows = [
        (
            "img-a1",
            "p1",
            "Kabuki syndrome",
            Some(147920),
            Some("KMT2D"),
        ),
        (
            "img-a2",
            "p1",
            "Kabuki syndrome",
            Some(147920),
            Some("KMT2D"),
        ),
        (
            "img-b1",
            "p2",
            "Kabuki syndrome",
            Some(147920),
            Some("KMT2D"),
        ),
        (
            "img-c1",
            "p3",
            "Noonan syndrome",
            Some(163950),
            Some("PTPN11"),
        ),
        ("img-c2", "p3", "Noonan syndrome", Some(163950), None),
        (
            "img-d1",
            "p4",
            "Williams syndrome",
            Some(194050),
            Some("ELN"),
        ),
    ];
    for (id, subj, syn, omim, gene) in rows {
        let c = Case {
            subject: Some(subj.into()),
            genes: gene
                .map(|g| vec![(g.to_string(), None)])
                .unwrap_or_default(),
            ..case(id, syn, omim)
        };
        g.add(&c, &random_emb(&g, &mut rng)).unwrap();
    }
    g
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn removing_a_subject_leaves_no_trace_in_the_file() {
    let mut g = gallery();
    let before = g.to_bytes();
    let kept = g.embeddings(3).unwrap(); // img-c1
                                         // the removed subject's vector bytes, as stored
    let victim = g.embeddings(5).unwrap();
    assert!(contains(&before, "p4") && contains(&before, "img-d1"));
    let r = g.remove_subject("p4").unwrap();
    assert_eq!(r.images, 1);
    assert_eq!(r.subjects, 1);
    assert_eq!(r.syndromes, vec!["Williams syndrome".to_string()]);
    assert_eq!(r.genes, 1);
    let bytes = g.to_bytes();
    for s in ["p4", "img-d1", "Williams syndrome", "ELN"] {
        assert!(!contains(&bytes, s), "'{s}' is still in the file");
    }
    let back = Gallery::from_bytes(&bytes, "x.gal").unwrap();
    assert_eq!(back.len(), 5);
    assert_eq!(back.subjects().len(), 3);
    // the others keep their vectors; the removed vector is gone
    assert_eq!(back.embeddings(3).unwrap(), kept);
    for i in 0..back.len() {
        assert_ne!(back.embeddings(i).unwrap(), victim);
    }
    assert_eq!(back.inv_norms(0).unwrap().len(), 5);
    let mut n = 0;
    back.scan(|_, _, v| {
        n += 1;
        assert_eq!(v.len(), 8);
    });
    assert_eq!(n, 5 * back.keys().len());
}

#[test]
fn removing_images_renumbers_the_tables() {
    let mut g = gallery();
    g.remove_image("img-b1").unwrap();
    // p2 had only that image: the subject goes, Kabuki stays (p1 still has it)
    assert_eq!(g.subjects(), ["p1", "p3", "p4"]);
    assert_eq!(g.syndromes().len(), 3);
    g.remove_subject("p1").unwrap();
    assert_eq!(g.syndromes()[0].name, "Noonan syndrome");
    assert_eq!(g.images()[0].image_id, "img-c1");
    assert_eq!(g.images()[0].syndrome, 0);
    assert_eq!(g.images()[0].subject, 0);
    assert_eq!(g.genes()[g.images()[0].genes[0] as usize].name, "PTPN11");
    let back = Gallery::from_bytes(&g.to_bytes(), "x.gal").unwrap();
    assert_eq!(back.len(), 3);
    // an image id can be enrolled again after its removal
    let mut rng = Rng::new(3);
    let e = random_emb(&g, &mut rng);
    g.add(&case("img-b1", "Kabuki syndrome", Some(147920)), &e)
        .unwrap();
}

#[test]
fn unknown_names_are_usage_errors_naming_them() {
    let mut g = gallery();
    let e = g.remove_subject("nobody").unwrap_err();
    assert!(matches!(e, crate::Error::Usage(_)), "{e:?}");
    assert!(e.to_string().contains("'nobody'"), "{e}");
    let e = g.remove_image("img-zz").unwrap_err();
    assert!(e.to_string().contains("'img-zz'"), "{e}");
    let e = g.relabel("ghost", "X", None, None).unwrap_err();
    assert!(e.to_string().contains("'ghost'"), "{e}");
    assert_eq!(g.len(), 6);
}

#[test]
fn relabel_moves_a_subject_and_refuses_conflicting_omim() {
    let mut g = gallery();
    let before = g.to_bytes();
    let e = g
        .relabel("p4", "Noonan syndrome", Some(999), None)
        .unwrap_err();
    assert!(matches!(e, crate::Error::Usage(_)), "{e:?}");
    assert!(e.to_string().contains("163950"), "{e}");
    assert_eq!(g.to_bytes(), before, "a refused edit changes nothing");

    // to an existing label (OMIM taken from the gallery): Williams loses its only image
    let r = g.relabel("p4", "Noonan syndrome", None, None).unwrap();
    assert_eq!(r.syndromes, vec!["Williams syndrome".to_string()]);
    let s = g.subject_summaries();
    let p4 = s.iter().find(|s| s.subject_id == "p4").unwrap();
    assert_eq!(p4.labels, vec!["Noonan syndrome".to_string()]);
    assert_eq!(p4.omim_ids, vec![Some(163950)]);

    // to a new label with a gene
    g.relabel(
        "p1",
        "Kleefstra syndrome",
        Some(610253),
        Some(("EHMT1", Some(79813))),
    )
    .unwrap();
    let back = Gallery::from_bytes(&g.to_bytes(), "x.gal").unwrap();
    let s = back.subject_summaries();
    let p1 = s.iter().find(|s| s.subject_id == "p1").unwrap();
    assert_eq!(
        (p1.labels.clone(), p1.images),
        (vec!["Kleefstra syndrome".into()], 2)
    );
    let im = &back.images()[0];
    assert_eq!(back.syndromes()[im.syndrome as usize].omim, Some(610253));
    assert_eq!(back.genes()[im.genes[0] as usize].entrez, Some(79813));
    // a known gene with another Entrez id
    assert!(g
        .relabel("p2", "Kabuki syndrome", None, Some(("EHMT1", Some(1))))
        .is_err());
}

#[test]
fn pp4_thresholds_survive_the_file_and_removal() {
    let mut g = gallery();
    let t = Pp4Thresholds::new([Some(0.9), Some(0.8), None, Some(0.5)]).unwrap();
    g.set_pp4("Noonan syndrome", t).unwrap();
    assert!(g.set_pp4("Unknown", t).is_err());
    g.remove_subject("p1").unwrap();
    g.remove_subject("p2").unwrap(); // Kabuki goes: Noonan moves to index 0
    let back = Gallery::from_bytes(&g.to_bytes(), "x.gal").unwrap();
    assert_eq!(back.syndromes()[0].name, "Noonan syndrome");
    assert_eq!(back.pp4(0), Some(&t));
    assert_eq!(back.pp4(1), None);
}

#[test]
fn version_1_files_still_read() {
    for name in ["synthetic_f16", "synthetic_i8"] {
        let path = format!(
            "{}/fuzz/seeds/gallery_from_bytes/{name}.gallery",
            env!("CARGO_MANIFEST_DIR")
        );
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[8..9], &[1], "{name} is a version-1 file");
        let g = Gallery::from_bytes(&bytes, &path).unwrap();
        assert!(!g.is_empty());
        assert!((0..g.syndromes().len()).all(|i| g.pp4(i).is_none()));
        // written back as version 2, same content
        let again = Gallery::from_bytes(&g.to_bytes(), "x.gal").unwrap();
        assert_eq!(again.data, g.data);
        assert_eq!(g.to_bytes()[8], 2);
    }
}
