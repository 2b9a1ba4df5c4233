//! Tests of the gallery tables, storage and file format, plus small builders the rank tests
//! share.

use super::*;
use crate::embed::Key;

/// Deterministic pseudo-random numbers in -1..1 (xorshift64*).
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(crate) fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
        x as f32 / (1u64 << 23) as f32 - 1.0
    }

    pub(crate) fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next()).collect()
    }
}

pub(crate) fn key(model: &str, flip: bool, gray: bool) -> Key {
    Key {
        model: model.into(),
        flip,
        gray,
    }
}

pub(crate) fn spec(model: &str, flip: bool, width: u32) -> KeySpec {
    KeySpec {
        key: key(model, flip, false),
        width,
    }
}

pub(crate) fn case(id: &str, syndrome: &str, omim: Option<u32>) -> Case {
    Case {
        image_id: id.into(),
        syndrome: syndrome.into(),
        omim,
        ..Case::default()
    }
}

/// Random embeddings for every key of `g`, in reversed key order (pairing must be by key).
pub(crate) fn random_emb(g: &Gallery, rng: &mut Rng) -> Embeddings {
    let mut entries: Vec<_> = g
        .keys()
        .iter()
        .map(|s| (s.key.clone(), rng.vec(s.width as usize)))
        .collect();
    entries.reverse();
    Embeddings { entries }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn three_key_gallery(storage: Storage) -> Gallery {
    let keys = vec![
        spec("m0", false, 512),
        spec("m0", true, 512),
        spec("sface", false, 128),
    ];
    Gallery::new("demo-bundle", "v1.0.3", keys, storage).unwrap()
}

/// [`small_gallery`] for the lock's tests.
pub(crate) fn small_gallery_for_locks() -> Gallery {
    small_gallery()
}

fn small_gallery() -> Gallery {
    let mut g = Gallery::new("b", "v", vec![spec("m", false, 4)], Storage::I8).unwrap();
    let mut rng = Rng::new(7);
    let mut c = case("img1", "Kabuki syndrome", Some(147920));
    c.genes = vec![("KMT2D".into(), Some(8085))];
    g.add(&c, &random_emb(&g, &mut rng)).unwrap();
    g.add(
        &case("img2", "Noonan syndrome", None),
        &random_emb(&g, &mut rng),
    )
    .unwrap();
    g
}

fn gallery_err(r: Result<Gallery>) -> String {
    match r {
        Err(e @ Error::Gallery { .. }) => e.to_string(),
        Err(e) => panic!("expected a gallery error, got {e:?}"),
        Ok(_) => panic!("expected a gallery error, got a gallery"),
    }
}

#[test]
fn roundtrip_keeps_tables_and_vectors() {
    for (storage, min_cos) in [(Storage::F16, 0.9999), (Storage::I8, 0.999)] {
        let mut g = three_key_gallery(storage);
        let mut rng = Rng::new(42);
        let mut originals = Vec::new();
        for i in 0..20 {
            let mut c = case(
                &format!("img{i}"),
                &format!("syn{}", i % 3),
                Some(100 + i % 3),
            );
            c.subject = Some(format!("pat{}", i / 2));
            c.genes = vec![(format!("G{}", i % 4), None), ("COMMON".into(), Some(1))];
            let e = random_emb(&g, &mut rng);
            g.add(&c, &e).unwrap();
            originals.push(e);
        }
        g.set_revision(3);
        let bytes = g.to_bytes();
        let back = Gallery::from_bytes(&bytes, "mem.gal").unwrap();
        assert_eq!(back.data, g.data, "{storage}");
        assert_eq!(
            back.inv_norm, g.inv_norm,
            "factors come from the stored values"
        );
        // the owned reader keeps the vectors in the file's buffer: the same gallery
        let owned = Gallery::from_vec(bytes.clone(), "mem.gal").unwrap();
        assert_eq!(owned.data, back.data);
        assert_eq!(owned.inv_norm, back.inv_norm);
        assert_eq!(back.source(), Path::new("mem.gal"));
        assert_eq!((back.revision(), back.len()), (3, 20));
        assert_eq!(back.syndromes().len(), 3);
        assert_eq!(back.subjects().len(), 10);
        assert_eq!(back.genes().len(), 5);
        for (i, orig) in originals.iter().enumerate() {
            let got = back.embeddings(i).unwrap();
            assert_eq!(got.entries.len(), 3);
            for (k, v) in &orig.entries {
                let c = cosine(v, got.get(k).unwrap());
                assert!(c >= min_cos, "{storage} image {i} key {k}: cosine {c}");
            }
        }
        assert!(back.embeddings(20).is_none());
        let s = back.summary();
        assert_eq!((s.images, s.subjects, s.syndromes, s.genes), (20, 10, 3, 5));
        assert_eq!(s.file_size_bytes, bytes.len() as u64);
        assert_eq!((s.format_version, s.storage), (2, storage));
        // f16: 2 bytes per value; i8: 1 byte + 4 bytes of scale per vector
        let per_image = match storage {
            Storage::F16 => 2 * 1152,
            Storage::I8 => 1152 + 12,
        };
        assert_eq!(g.data.embeddings.len(), 20 * per_image);
    }
}

#[test]
fn search_vectors_are_unit_length_and_read_from_the_stored_ones() {
    let mut g = Gallery::new("b", "v", vec![spec("m", false, 2)], Storage::F16).unwrap();
    let e = |v: Vec<f32>| Embeddings {
        entries: vec![(key("m", false, false), v)],
    };
    g.add(&case("a", "s", None), &e(vec![3.0, 4.0])).unwrap();
    g.add(&case("b", "s", None), &e(vec![0.0, 0.0])).unwrap();
    let mut buf = Vec::new();
    assert_eq!(g.search_vector(0, 0, &mut buf).unwrap(), &[0.6, 0.8]);
    assert_eq!(g.search_vector(1, 0, &mut buf).unwrap(), &[0.0, 0.0]);
    assert!(g.search_vector(2, 0, &mut buf).is_none());
    assert!(g.search_vector(0, 1, &mut buf).is_none());
    let mut seen = Vec::new();
    g.scan(|i, slot, v| seen.push((i, slot, v.to_vec())));
    assert_eq!(seen, [(0, 0, vec![0.6, 0.8]), (1, 0, vec![0.0, 0.0])]);
}

#[test]
fn every_flipped_byte_is_detected() {
    let bytes = small_gallery().to_bytes();
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x5A;
        let msg = gallery_err(Gallery::from_bytes(&b, "g.gal"));
        if i > format::MAGIC.len() {
            assert!(msg.contains("checksum mismatch"), "byte {i}: {msg}");
        }
    }
}

#[test]
fn truncated_files_are_rejected() {
    let bytes = small_gallery().to_bytes();
    for n in 0..bytes.len() {
        let msg = gallery_err(Gallery::from_bytes(&bytes[..n], "g.gal"));
        if n < format::MIN_LEN {
            assert!(msg.contains("truncated"), "{n}: {msg}");
        } else {
            assert!(msg.contains("checksum mismatch"), "{n}: {msg}");
        }
    }
}

/// Bytes with a valid CRC around an arbitrary header + body.
fn with_crc(mut content: Vec<u8>) -> Vec<u8> {
    let crc = crc32fast::hash(&content);
    content.extend_from_slice(&crc.to_le_bytes());
    content
}

#[test]
fn wrong_magic_and_future_version() {
    let mut bytes = small_gallery().to_bytes();
    bytes[..8].copy_from_slice(b"PK\x03\x04xxxx");
    let msg = gallery_err(Gallery::from_bytes(&bytes, "photo.zip"));
    assert!(msg.contains("not a gestalt-edge gallery"), "{msg}");
    assert!(msg.starts_with("gallery photo.zip:"), "{msg}");
    let msg = gallery_err(Gallery::from_bytes(b"hello", "x"));
    assert!(msg.contains("wrong magic"), "{msg}");

    let mut future = b"GESTALTG".to_vec();
    future.push(3);
    future.extend_from_slice(&[1, 2, 3, 4]);
    let msg = gallery_err(Gallery::from_bytes(&with_crc(future), "g.gal"));
    assert!(msg.contains("format version 3 is not supported"), "{msg}");
    assert!(msg.contains("newer"), "{msg}");
}

#[test]
fn undecodable_body_and_trailing_bytes() {
    let mut garbage = b"GESTALTG\x01".to_vec();
    garbage.extend_from_slice(&[7, 0xFF, 0xFF]);
    let msg = gallery_err(Gallery::from_bytes(&with_crc(garbage), "g.gal"));
    assert!(msg.contains("cannot decode the gallery body"), "{msg}");

    let good = small_gallery().to_bytes();
    let mut extra = good[..good.len() - 4].to_vec();
    extra.push(0);
    let msg = gallery_err(Gallery::from_bytes(&with_crc(extra), "g.gal"));
    assert!(msg.contains("unexpected bytes"), "{msg}");

    // a version-2 header over a version-1 body (variant 0) is refused, not misread
    let mut mixed = good[..good.len() - 4].to_vec();
    mixed[9] = 0;
    let msg = gallery_err(Gallery::from_bytes(&with_crc(mixed), "g.gal"));
    assert!(
        msg.contains("cannot decode") || msg.contains("not that of"),
        "{msg}"
    );
}

#[test]
fn inconsistent_tables_are_rejected() {
    let base = small_gallery();
    let broken = |f: &dyn Fn(&mut Data)| {
        let mut g = base.clone();
        f(&mut g.data);
        gallery_err(Gallery::from_bytes(&g.to_bytes(), "g.gal"))
    };
    let msg = broken(&|d| d.images[1].syndrome = 9);
    assert!(
        msg.contains("inconsistent tables") && msg.contains("syndrome 9"),
        "{msg}"
    );
    let msg = broken(&|d| d.images[0].genes.push(5));
    assert!(msg.contains("gene 5"), "{msg}");
    let msg = broken(&|d| d.images[0].subject = u32::MAX);
    assert!(msg.contains("subject"), "{msg}");
    let msg = broken(&|d| {
        d.embeddings.pop();
    });
    assert!(msg.contains("need 16"), "{msg}");
    let msg = broken(&|d| d.keys.push(d.keys[0].clone()));
    assert!(msg.contains("listed twice"), "{msg}");
    let msg = broken(&|d| d.keys[0].width = u32::MAX);
    assert!(msg.contains("inconsistent tables"), "{msg}");
    let msg = broken(&|d| d.syndromes[1].name = d.syndromes[0].name.clone());
    assert!(
        msg.contains("syndrome 'Kabuki syndrome' is listed twice"),
        "{msg}"
    );
    let msg = broken(&|d| d.embeddings[..4].copy_from_slice(&f32::NAN.to_le_bytes()));
    assert!(msg.contains("non-finite"), "{msg}");
}

#[test]
fn conflicting_omim_is_an_error_and_changes_nothing() {
    let mut g = small_gallery();
    let before = g.data.clone();
    let mut rng = Rng::new(1);
    let e = random_emb(&g, &mut rng);
    let err = g
        .add(&case("img3", "Kabuki syndrome", Some(300867)), &e)
        .unwrap_err();
    assert!(matches!(err, Error::Usage(_)), "{err:?}");
    assert!(err.to_string().contains("OMIM 147920"), "{err}");
    let mut c = case("img3", "Kabuki syndrome", Some(147920));
    c.genes = vec![("KMT2D".into(), Some(1))];
    assert!(g.add(&c, &e).unwrap_err().to_string().contains("Entrez"));
    c.genes = vec![("NEW".into(), Some(1)), ("NEW".into(), Some(2))];
    assert!(g.add(&c, &e).is_err());
    assert!(g
        .add(&case("img1", "Kabuki syndrome", Some(147920)), &e)
        .is_err());
    assert_eq!(g.data, before);
    assert_eq!(g.inv_norm[0].len(), g.len());

    // the same syndrome with the same id is shared, and the subject defaults to the image id
    c.genes = vec![("KMT2D".into(), Some(8085)), ("KMT2D".into(), Some(8085))];
    c.subject = None;
    g.add(&c, &e).unwrap();
    assert_eq!(g.syndromes().len(), 2);
    assert_eq!(g.images()[2].syndrome, 0);
    assert_eq!(g.images()[2].genes, vec![0]);
    assert_eq!(g.subjects(), &["img1", "img2", "img3"]);
}

#[test]
fn add_pairs_by_key_and_rejects_mismatches() {
    let mut g = three_key_gallery(Storage::F16);
    let mut rng = Rng::new(3);
    let good = random_emb(&g, &mut rng);
    g.add(&case("a", "s", None), &good).unwrap();
    // stored in gallery key order although the entries came reversed
    let back = g.embeddings(0).unwrap();
    assert_eq!(back.entries[0].0, g.keys()[0].key);
    assert!(
        cosine(
            back.get(&g.keys()[2].key).unwrap(),
            good.get(&g.keys()[2].key).unwrap()
        ) > 0.9999
    );

    let mut missing = good.clone();
    missing.entries.remove(0);
    let mut extra = good.clone();
    extra
        .entries
        .push((key("other", false, false), vec![0.0; 4]));
    let mut narrow = good.clone();
    narrow.entries[1].1.truncate(100);
    let mut twice = good.clone();
    twice.entries.push(good.entries[0].clone());
    for (what, e) in [
        ("no embedding for key", missing),
        ("not a key of this gallery", extra),
        ("gallery stores", narrow),
        ("appears twice", twice),
    ] {
        let err = g.add(&case("b", "s", None), &e).unwrap_err();
        assert!(matches!(err, Error::Gallery { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains(what) && msg.contains("another bundle"),
            "{msg}"
        );
    }
    let mut nan = good.clone();
    nan.entries[0].1[3] = f32::NAN;
    assert!(matches!(
        g.add(&case("b", "s", None), &nan),
        Err(Error::Usage(_))
    ));
    let mut huge = good;
    huge.entries[0].1[3] = 1e9;
    assert!(g
        .add(&case("b", "s", None), &huge)
        .unwrap_err()
        .to_string()
        .contains("f16"));
    assert_eq!(g.len(), 1);
}

#[test]
fn new_checks_keys_and_storage_parses() {
    assert!(Gallery::new("b", "v", vec![], Storage::I8).is_err());
    assert!(Gallery::new("b", "v", vec![spec("m", false, 0)], Storage::I8).is_err());
    let dup = vec![spec("m", false, 2), spec("m", false, 3)];
    assert!(matches!(
        Gallery::new("b", "v", dup, Storage::I8),
        Err(Error::Usage(_))
    ));
    assert_eq!("I8".parse::<Storage>().unwrap(), Storage::I8);
    assert_eq!("f16".parse::<Storage>().unwrap().to_string(), "f16");
    assert!("f32".parse::<Storage>().is_err());
}

#[test]
fn atomic_write_replaces_and_leaves_no_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cases.gal");
    let mut g = small_gallery();
    g.write_atomic(&path).unwrap();
    g.set_revision(1);
    g.write_atomic(&path).unwrap();
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("cases.gal")]);
    let back = Gallery::read(&path).unwrap();
    assert_eq!((back.revision(), back.len()), (1, 2));
    assert_eq!(back.source(), path.as_path());

    // a failing write (target is a non-empty directory) leaves the target and no temp file
    let blocked = dir.path().join("blocked");
    std::fs::create_dir(&blocked).unwrap();
    std::fs::write(blocked.join("keep"), b"x").unwrap();
    assert!(matches!(g.write_atomic(&blocked), Err(Error::Io { .. })));
    assert!(blocked.join("keep").exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);

    let missing = gallery_err(Gallery::read(dir.path().join("none.gal")));
    assert!(missing.contains("cannot read"), "{missing}");
}

#[test]
fn lookups_agree_with_tables_after_reading() {
    let g = Gallery::from_bytes(&small_gallery().to_bytes(), "g.gallery").unwrap();
    let mut g2 = g.clone();
    let mut rng = Rng::new(11);
    let emb = random_emb(&g, &mut rng);
    let usage = |r: Result<()>| match r {
        Err(Error::Usage(m)) => m,
        other => panic!("expected a usage error, got {other:?}"),
    };

    // Names read from the file are known: duplicates and conflicting ids are refused.
    let m = usage(g2.add(&case("img2", "Noonan syndrome", None), &emb));
    assert_eq!(m, "image 'img2' is already in the gallery");
    let m = usage(g2.add(&case("img3", "Kabuki syndrome", Some(1)), &emb));
    assert!(
        m.contains("has OMIM 147920 in the gallery but 1 here"),
        "{m}"
    );
    let mut c = case("img3", "Kabuki syndrome", Some(147920));
    c.genes = vec![("KMT2D".into(), Some(1))];
    let m = usage(g2.add(&c, &emb));
    assert!(
        m.contains("gene 'KMT2D' is known with Entrez id 8085"),
        "{m}"
    );
    assert_eq!(g2.images(), g.images());

    // Read syndromes, genes and subjects are reused, new ones appended.
    c.genes = vec![("KMT2D".into(), Some(8085)), ("NEW".into(), None)];
    c.subject = Some("img1".into());
    g2.add(&c, &emb).unwrap();
    g2.add(&case("img4", "Noonan syndrome", None), &emb)
        .unwrap();
    g2.add(&case("img5", "Sotos syndrome", Some(117550)), &emb)
        .unwrap();
    assert_eq!(g2.syndromes().len(), 3);
    assert_eq!(g2.genes().len(), 2);
    assert_eq!(g2.subjects(), ["img1", "img2", "img4", "img5"]);
    let at = |id: &str| g2.images().iter().find(|im| im.image_id == id).unwrap();
    assert_eq!((at("img3").syndrome, at("img3").subject), (0, 0));
    assert_eq!(at("img3").genes, [0, 1]);
    assert_eq!((at("img4").syndrome, at("img4").subject), (1, 2));
    assert_eq!((at("img5").syndrome, at("img5").subject), (2, 3));

    // And the extended gallery reads back to the same tables, its lookups rebuilt.
    let mut g3 = Gallery::from_bytes(&g2.to_bytes(), "g3.gallery").unwrap();
    assert_eq!(g3.images(), g2.images());
    assert_eq!(g3.syndromes(), g2.syndromes());
    let m = usage(g3.add(&case("img5", "Sotos syndrome", Some(117550)), &emb));
    assert_eq!(m, "image 'img5' is already in the gallery");
    g3.add(&case("img6", "Sotos syndrome", Some(117550)), &emb)
        .unwrap();
    assert_eq!(g3.syndromes().len(), 3);
    assert_eq!(g3.images()[5].syndrome, 2);
}

/// A format-1 file whose subjects table claims `claimed` empty names and holds `present`
/// bytes of them (every other table empty), with a valid CRC.
pub(crate) fn crafted_names(claimed: u64, present: usize) -> Vec<u8> {
    let mut b = b"GESTALTG\x01".to_vec();
    // tag, bundle id "b", version "v", revision 0, one key "m" (no flip, no gray, width 4), i8
    b.extend_from_slice(&[0, 1, b'b', 1, b'v', 0, 1, 1, b'm', 0, 0, 4, 1]);
    b.extend_from_slice(&[0, 0]); // no syndromes, no genes
    let mut n = claimed;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            b.push(byte);
            break;
        }
        b.push(byte | 0x80);
    }
    b.resize(b.len() + present, 0);
    b.extend_from_slice(&[0, 0]); // no images, an empty blob
    with_crc(b)
}

#[test]
fn crafted_tables_are_refused_before_decoding() {
    // one million empty names: 1 MB on disk, ~100 MB decoded
    let msg = gallery_err(Gallery::from_bytes(
        &crafted_names(1_000_000, 1_000_000),
        "g.gal",
    ));
    assert!(
        msg.contains("inconsistent tables") && msg.contains("1000000 subjects"),
        "{msg}"
    );
    // a count larger than the bytes that remain
    let msg = gallery_err(Gallery::from_bytes(&crafted_names(1 << 40, 10), "g.gal"));
    assert!(
        msg.contains("cannot decode") && msg.contains("claims 1099511627776 entries"),
        "{msg}"
    );
    // a few empty names stay within the budget and reach the decoder's own checks
    let msg = gallery_err(Gallery::from_bytes(&crafted_names(3, 3), "g.gal"));
    assert!(msg.contains("subject '' is listed twice"), "{msg}");
}

#[test]
fn skim_counts_a_real_gallery_within_its_budget() {
    let bytes = small_gallery().to_bytes();
    let body = &bytes[9..bytes.len() - 4];
    let s = skim::skim(body, bytes.len() as u64).unwrap();
    assert_eq!(s.counts, [1, 2, 1, 2, 2]);
    assert_eq!(s.embedding_bytes, 16);
    assert!(s.memory_bytes > 16 && s.memory_bytes < skim::MEMORY_SLACK);
    // every truncation of the body is an error, never a panic
    for n in 0..body.len() {
        assert!(skim::skim(&body[..n], bytes.len() as u64).is_err(), "{n}");
    }
}

#[test]
fn revision_bumps_are_checked() {
    let mut g = small_gallery();
    g.set_revision(u32::MAX - 1);
    assert_eq!(g.bump_revision().unwrap(), u32::MAX);
    let msg = gallery_err(g.bump_revision().map(|_| g.clone()));
    assert!(msg.contains("revision 4294967295 is the last one"), "{msg}");
    // the way out it names is one the rollback check honours, not another version label
    assert!(
        msg.contains("new bundle") && !msg.contains("another gallery version"),
        "{msg}"
    );
    assert_eq!(g.revision(), u32::MAX);
}

#[test]
fn the_revision_is_read_from_the_head_of_the_file() {
    let mut g = small_gallery();
    for r in [0, 1, 300, u32::MAX] {
        g.set_revision(r);
        let bytes = g.to_bytes();
        assert_eq!(format::peek_revision(&bytes), Some(r));
        // the first 64 bytes hold it for a short bundle id and label
        assert_eq!(
            format::peek_revision(&bytes[..64.min(bytes.len())]),
            Some(r)
        );
    }
    assert_eq!(format::peek_revision(b"GESTALTX\x02\x01"), None);
    assert_eq!(format::peek_revision(&g.to_bytes()[..12]), None);
}
