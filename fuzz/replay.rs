//! The checks the fuzz targets run, shared with the regression test that replays the
//! committed seeds and every saved crash (tests/it/corpus.rs includes this file). Each function
//! takes arbitrary bytes and may only return: a panic is a bug.
//!
//! `image_to_top5` input layout: two bytes (little-endian u16) give the length of the photo
//! bytes that follow; the rest fills the YuNet output tensors (a 160x160 detector input,
//! strides 8, 16, 32), so detections land anywhere, including off the photo. The embedder is
//! replaced by a fixed, deterministic function of the aligned crop (16 band means per TTA
//! view), ranked against a small synthetic gallery: running the real demo models is ~1 s per
//! input, too slow to fuzz, and every other stage is exactly the product's code.
#![allow(dead_code)]

use std::path::Path;
use std::sync::OnceLock;

use gestalt_edge::bundle::{
    bundle_id, confine, input, ChannelOrder, InputSpec, Manifest, Precision,
};
use gestalt_edge::capture::{self, Limits};
use gestalt_edge::detect::{self, yunet, FaceChoice};
use gestalt_edge::embed::{self, Embeddings, Key};
use gestalt_edge::engine::native::compiled;
use gestalt_edge::gallery::{Case, Gallery, KeySpec, Storage};
use gestalt_edge::gmdb::reference::EncodingTable;
use gestalt_edge::rank::{self, RankOptions};
use gestalt_edge::sign::{self, Role, SecretKey};

/// The gallery file decoder: any bytes give a gallery or an error, and a decoded gallery
/// survives a write/read round trip unchanged. The bytes are tried as given and with their
/// last four bytes replaced by the right CRC-32, so mutations reach the body decoder and the
/// table checks instead of stopping at the checksum.
pub fn gallery_from_bytes(data: &[u8]) {
    gallery_round_trip(data);
    if data.len() > 4 {
        let mut fixed = data.to_vec();
        let n = fixed.len() - 4;
        let crc = crc32fast::hash(&fixed[..n]);
        fixed[n..].copy_from_slice(&crc.to_le_bytes());
        gallery_round_trip(&fixed);
    }
}

fn gallery_round_trip(data: &[u8]) {
    if let Ok(g) = Gallery::from_bytes(data, Path::new("fuzz.gallery")) {
        // what decoded passed the bounded pre-pass, within its memory budget (the version
        // is one varint byte in what this build writes)
        if data[8] == 1 {
            let body = &data[9..data.len() - 4];
            let s = gestalt_edge::gallery::skim::skim(body, data.len() as u64)
                .expect("a decoded gallery passes the pre-pass");
            assert_eq!(s.counts[4], g.len() as u64);
        }
        let bytes = g.to_bytes();
        let again = Gallery::from_bytes(&bytes, Path::new("again.gallery"))
            .expect("a gallery this build wrote must read back");
        assert_eq!(again.to_bytes(), bytes);
        let _ = g.summary();
    }
}

/// The native engine's compiled-model decoder: any bytes give a model or a typed error,
/// within its memory budget (counts sized from the bytes that remain), and a decoded model
/// written again reads back to the same bytes. The expected source identity is taken from
/// the bytes' own header, and the bytes are tried as given and with their body length and
/// CRC-32 made right, so mutations reach the body decoder and the consistency checks
/// instead of stopping at the header or the checksum.
pub fn compiled_model(data: &[u8]) {
    compiled_round_trip(data);
    // magic 8, version 4, source 32 + 4 + 4, body length 8
    const HEADER: usize = 60;
    if data.len() >= HEADER + 4 {
        let mut fixed = data.to_vec();
        let n = fixed.len() - 4;
        fixed[52..HEADER].copy_from_slice(&((n - HEADER) as u64).to_le_bytes());
        let crc = crc32fast::hash(&fixed[HEADER..n]);
        fixed[n..].copy_from_slice(&crc.to_le_bytes());
        compiled_round_trip(&fixed);
    }
}

fn compiled_round_trip(data: &[u8]) {
    let word = |at: usize| {
        data.get(at..at + 4)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let mut sha256 = [0u8; 32];
    if let Some(s) = data.get(12..44) {
        sha256.copy_from_slice(s);
    }
    let source = compiled::Source {
        sha256,
        width: word(44),
        height: word(48),
    };
    if let Ok(model) = compiled::read(data, &source) {
        let bytes = compiled::write(&model, &source);
        let again = compiled::read(&bytes, &source).expect("a model this build wrote reads back");
        // compared as bytes: a NaN weight is not equal to itself
        assert_eq!(compiled::write(&again, &source), bytes);
    }
}

/// The bundle manifest parser (TOML + validation) and the bundle id.
pub fn manifest_parse(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(m) = Manifest::parse(text) {
            assert_eq!(bundle_id(&m).len(), 16);
            // every model file is a confined name
            assert!(confine::check_name(&m.detector.file).is_ok());
            assert!(m
                .embedders
                .iter()
                .all(|e| confine::check_name(&e.file).is_ok()));
            // revision and precision stay out of the bundle id
            let mut other = m.clone();
            other.bundle.revision = m.bundle.revision.wrapping_add(1);
            other.bundle.precision = match m.bundle.precision {
                Precision::F32 => Precision::Int8,
                Precision::Int8 => Precision::F32,
            };
            assert_eq!(bundle_id(&other), bundle_id(&m));
        }
    }
}

/// The reference encodings CSV reader (`img_name;model;flip;gray;class_conf;representations`)
/// that `gallery import` and `eval` use.
pub fn reference_csv(data: &[u8]) {
    if let Ok(table) = EncodingTable::from_reader(data, Path::new("fuzz.csv")) {
        let _ = table.find("1");
        let _ = table.find("");
    }
}

/// A detached signature file and the bytes it covers: two bytes (little-endian u16) give the
/// length of the signature text, the rest is the signed file. Verifying under either role and
/// reading the file's role and revision never panic; a signature that verifies states a role
/// and revision that re-signing reproduces exactly.
pub fn signature_file(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let n = u16::from_le_bytes([data[0], data[1]]) as usize;
    let rest = &data[2..];
    let (sig, signed) = rest.split_at(n.min(rest.len()));
    let key = SecretKey::from_seed([7; 32]);
    let text = String::from_utf8_lossy(sig);
    let path = Path::new("fuzz.toml");
    for role in [Role::Manifest, Role::Gallery] {
        if let Ok(revision) = sign::verify(&key.public(), role, signed, &text, path) {
            let again = key.sign(role, revision, signed);
            let fields = |t: &str| -> Vec<String> {
                t.lines().map(|l| l.trim().to_string()).take(5).collect()
            };
            assert_eq!(fields(&again), fields(&text));
        }
    }
    let _ = sign::describe(signed, path);
}

const SIZE: u32 = 160;
const WIDTH: usize = 16;

fn keys() -> Vec<Key> {
    embed::TTA_VIEWS
        .iter()
        .map(|&(flip, gray)| Key {
            model: "fake".into(),
            flip,
            gray,
        })
        .collect()
}

/// 16 band means of an RGB 0..255 NCHW tensor, centred so vectors point in varied directions.
fn fake_embed(face: &image::RgbImage) -> Embeddings {
    let spec = InputSpec {
        width: 112,
        height: 112,
        channel_order: ChannelOrder::Rgb,
        mean: [127.5; 3],
        scale: [1.0 / 127.5; 3],
    };
    let entries = keys()
        .into_iter()
        .map(|k| {
            let t = input::to_nchw(&embed::view(face, k.flip, k.gray), &spec);
            let band = t.len() / WIDTH;
            let v = (0..WIDTH)
                .map(|i| {
                    t[i * band..(i + 1) * band].iter().sum::<f32>() / band as f32 + 0.01 * i as f32
                })
                .collect();
            (k, v)
        })
        .collect();
    Embeddings { entries }
}

fn gallery() -> &'static Gallery {
    static G: OnceLock<Gallery> = OnceLock::new();
    G.get_or_init(|| {
        let specs = keys()
            .into_iter()
            .map(|key| KeySpec {
                key,
                width: WIDTH as u32,
            })
            .collect();
        let mut g = Gallery::new("fuzz", "1", specs, Storage::I8).expect("gallery");
        for i in 0..8u32 {
            let entries = keys()
                .into_iter()
                .map(|k| {
                    let v = (0..WIDTH as u32)
                        .map(|j| ((i * 7 + j * 3 + k.flip as u32) % 11) as f32 - 5.0)
                        .collect();
                    (k, v)
                })
                .collect();
            let case = Case {
                image_id: format!("img{i}"),
                syndrome: format!("syndrome {}", i % 6),
                genes: vec![(format!("GENE{}", i % 3), Some(i % 3))],
                ..Default::default()
            };
            g.add(&case, &Embeddings { entries }).expect("add");
        }
        g
    })
}

/// Photo bytes to a top-5 list through every model-free stage (see the module docs).
pub fn image_to_top5(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let n = u16::from_le_bytes([data[0], data[1]]) as usize;
    let rest = &data[2..];
    let (photo, tensors) = rest.split_at(n.min(rest.len()));
    let limits = Limits {
        max_pixels: 1 << 20,
        max_file_bytes: 1 << 20,
        max_decode_bytes: 16 << 20,
    };
    let Ok(frame) = capture::decode(photo, Path::new("fuzz.jpg"), &limits) else {
        return;
    };
    let lb = input::letterbox(&frame.rgb, SIZE, SIZE);
    let bgr = InputSpec {
        width: SIZE,
        height: SIZE,
        channel_order: ChannelOrder::Bgr,
        mean: [0.0; 3],
        scale: [1.0; 3],
    };
    let pixels = input::to_nchw(&lb.image, &bgr);
    // detector outputs: fuzz bytes where given, the photo's own pixels after them
    let mut src = tensors
        .iter()
        .map(|&b| b as f32 / 255.0)
        .chain(pixels.iter().map(|p| p / 255.0))
        .cycle();
    let mut outputs: Vec<Vec<f32>> = Vec::new();
    for per in [1usize, 1, 4, 10] {
        for stride in yunet::STRIDES {
            let cells = ((SIZE / stride) * (SIZE / stride)) as usize;
            let scale = if per == 1 { 1.0 } else { 8.0 };
            outputs.push(
                (0..cells * per)
                    .map(|_| {
                        (src.next().unwrap_or(0.0) - 0.5) * scale + if per == 1 { 0.5 } else { 0.0 }
                    })
                    .collect(),
            );
        }
    }
    let Ok(levels) = yunet::levels_from_outputs(&outputs) else {
        return;
    };
    let Ok(found) = yunet::decode(&levels, SIZE, SIZE, &yunet::YunetParams::default()) else {
        return;
    };
    let inv = (1.0 / lb.scale) as f32;
    let faces: Vec<_> = found.iter().map(|d| d.scaled(inv, inv)).collect();
    let Some(face) = detect::choose(&faces, FaceChoice::HighestScore) else {
        return;
    };
    let lm = face.landmarks_px.map(|p| [p[0].trunc(), p[1].trunc()]);
    let angle = gestalt_edge::align::eye_angle_deg(&lm);
    let rotated = gestalt_edge::align::rotate_about(&frame.rgb, lm[2], angle);
    let Ok(aligned) = gestalt_edge::align::align(&rotated, &lm) else {
        return;
    };
    assert_eq!(aligned.rgb.dimensions(), (112, 112));
    let query = fake_embed(&aligned.rgb);
    let opts = RankOptions {
        top: 5,
        patients: 5,
        same_patient_threshold: None,
    };
    let ranking = rank::rank(&query, gallery(), &opts).expect("rank on matching keys");
    assert!(ranking.syndromes.len() <= 5);
    for w in ranking.syndromes.windows(2) {
        assert!(w[0].distance <= w[1].distance || w[1].distance.is_nan());
    }
}
