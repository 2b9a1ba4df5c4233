//! The bad-input corpus: every kind of photo a clinic device may be handed, generated here from
//! the demo photos (plus one committed seed, tests/corpus/cmyk_person_b_2.jpg, that the image
//! crate cannot encode). Each case asserts the exit code and the message, and that nothing
//! panicked. Exit codes: 0 ok, 3 no face, 4 unreadable image.

use crate::util;

#[path = "../../fuzz/replay.rs"]
mod replay;

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageFormat, RgbImage};
use serde_json::Value;
use util::*;

/// `predict --json` on `images` with extra flags; returns the exit code, the JSON array and
/// stderr (asserted panic-free).
fn predict(images: &[&Path], extra: &[&str]) -> (i32, Vec<Value>, String) {
    let o = cmd()
        .args(["predict", "--json", "--bundle"])
        .arg(demo_bundle())
        .arg("--gallery")
        .arg(demo_gallery())
        .args(extra)
        .args(images)
        .output()
        .unwrap();
    let (code, out, err) = parts(&o);
    assert!(!err.contains("panicked"), "panic: {err}");
    let v: Vec<Value> = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {out}\nstderr: {err}"));
    assert_eq!(v.len(), images.len());
    (code, v, err)
}

/// Asserts one JSON entry is a failure with `code` whose message holds every fragment.
fn failed(v: &Value, code: i64, fragments: &[&str]) {
    assert_eq!(v["exit_code"], code, "{v}");
    let msg = v["error"].as_str().unwrap_or_default();
    for f in fragments {
        assert!(msg.contains(f), "message lacks {f:?}: {msg}");
    }
}

/// Asserts one JSON entry is a result whose top syndrome is `top`; returns the face box.
fn succeeded(v: &Value, top: &str) -> [f64; 4] {
    assert!(v.get("error").is_none(), "{v}");
    assert_eq!(
        v["suggested_syndromes_list"][0]["syndrome_name"], top,
        "{v}"
    );
    assert!(v["faces_found"].as_u64().unwrap() >= 1);
    let b = &v["face"]["bbox_px"];
    [0, 1, 2, 3].map(|i| b[i].as_f64().unwrap())
}

fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), format).unwrap();
    out
}

fn photo(name: &str) -> RgbImage {
    image::open(demo_photo(name)).unwrap().to_rgb8()
}

fn save(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    write(dir, name, bytes)
}

fn close(a: [f64; 4], b: [f64; 4], tol: f64) -> bool {
    a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
}

/// Intersection over union of two `[x1, y1, x2, y2]` boxes.
fn iou(a: [f64; 4], b: [f64; 4]) -> f64 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let area = |r: [f64; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    w * h / (area(a) + area(b) - w * h)
}

#[test]
fn unreadable_files_are_exit_4_with_their_reason() {
    let d = tempdir();
    let jpeg = std::fs::read(demo_photo("person_b_2.jpg")).unwrap();
    let png = encode(
        &DynamicImage::ImageRgb8(photo("person_a_1.jpg")),
        ImageFormat::Png,
    );

    let empty = save(d.path(), "empty.jpg", b"");
    let trunc_jpeg = save(d.path(), "truncated.jpg", &jpeg[..jpeg.len() * 2 / 3]);
    let trunc_png = save(d.path(), "truncated.png", &png[..png.len() / 2]);
    // the JPEG header cut inside its quantisation tables
    let header_only = save(d.path(), "header_only.jpg", &jpeg[..40]);
    // PNG with one flipped byte inside the compressed pixel data (its chunk CRC fails)
    let mut bad = png.clone();
    let at = bad.len() / 2;
    bad[at] ^= 0x55;
    let corrupt_png = save(d.path(), "corrupt.png", &bad);
    // JPEG whose frame header (SOF0) declares 0 components
    let mut bad = jpeg.clone();
    let sof = bad
        .windows(2)
        .position(|w| w == [0xFF, 0xC0] || w == [0xFF, 0xC2])
        .expect("SOF marker");
    bad[sof + 9] = 0;
    let corrupt_jpeg = save(d.path(), "corrupt_sof.jpg", &bad);
    let text = save(d.path(), "notes.jpg", b"patient notes, not a photo\n");
    let gif = save(d.path(), "anim.jpg", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;");

    let files = [
        &empty,
        &trunc_jpeg,
        &trunc_png,
        &header_only,
        &corrupt_png,
        &corrupt_jpeg,
        &text,
        &gif,
    ];
    let (code, v, err) = predict(&files.map(|p| p.as_path()), &[]);
    assert_eq!(code, 4, "{err}");
    failed(&v[0], 4, &["empty.jpg", "empty (0 bytes)"]);
    failed(&v[1], 4, &["truncated.jpg", "corrupt or truncated"]);
    failed(&v[2], 4, &["truncated.png", "corrupt or truncated"]);
    failed(&v[3], 4, &["header_only.jpg", "corrupt or truncated"]);
    failed(&v[4], 4, &["corrupt.png", "corrupt or truncated"]);
    failed(&v[5], 4, &["corrupt_sof.jpg", "corrupt or truncated"]);
    failed(&v[6], 4, &["notes.jpg", "not an image"]);
    failed(&v[7], 4, &["anim.jpg", "Gif images are not supported"]);
    // every failure is also on stderr, one line each
    assert_eq!(err.matches("error: ").count(), files.len(), "{err}");
}

#[test]
fn pixel_formats_decode_to_the_same_face() {
    let d = tempdir();
    let rgb = photo("person_b_2.jpg");
    let dy = DynamicImage::ImageRgb8(rgb.clone());
    let reference = save(d.path(), "rgb8.png", &encode(&dy, ImageFormat::Png));
    let rgb16 = save(
        d.path(),
        "rgb16.png",
        &encode(&DynamicImage::ImageRgb16(dy.to_rgb16()), ImageFormat::Png),
    );
    // alpha: opaque face, a fully transparent band at the bottom
    let mut rgba = dy.to_rgba8();
    let h = rgba.height();
    for (_, y, p) in rgba.enumerate_pixels_mut() {
        if y > h * 9 / 10 {
            p.0[3] = 0;
        }
    }
    let alpha = save(
        d.path(),
        "alpha.png",
        &encode(&DynamicImage::ImageRgba8(rgba), ImageFormat::Png),
    );
    let gray_png = save(
        d.path(),
        "gray.png",
        &encode(&DynamicImage::ImageLuma8(dy.to_luma8()), ImageFormat::Png),
    );
    let gray16_png = save(
        d.path(),
        "gray16.png",
        &encode(&DynamicImage::ImageLuma16(dy.to_luma16()), ImageFormat::Png),
    );
    let gray_jpg = save(
        d.path(),
        "gray.jpg",
        &encode(&DynamicImage::ImageLuma8(dy.to_luma8()), ImageFormat::Jpeg),
    );
    let cmyk = root().join("tests/corpus/cmyk_person_b_2.jpg");
    let files = [
        &reference,
        &rgb16,
        &alpha,
        &gray_png,
        &gray16_png,
        &gray_jpg,
        &cmyk,
    ];
    let (code, v, err) = predict(&files.map(|p| p.as_path()), &[]);
    assert_eq!(code, 0, "{err}");
    let want = succeeded(&v[0], "Demo identity B");
    // 16-bit and alpha keep the same pixels after conversion to 8-bit RGB: the same box
    assert_eq!(succeeded(&v[1], "Demo identity B"), want, "16-bit PNG");
    assert_eq!(succeeded(&v[2], "Demo identity B"), want, "PNG with alpha");
    // grayscale loses colour: the same face, a box that overlaps the colour one closely
    for (i, what) in [(3, "gray PNG"), (4, "gray 16-bit PNG"), (5, "gray JPEG")] {
        let b = succeeded(&v[i], "Demo identity B");
        assert!(iou(b, want) > 0.85, "{what}: {b:?} vs {want:?}");
    }
    // CMYK (Adobe, inverted) at 184x240 of the 689x900 photo: the same face, scaled
    let s = 184.0 / 689.0;
    let b = succeeded(&v[6], "Demo identity B");
    let scaled = want.map(|x| x * s);
    assert!(close(b, scaled, 6.0), "CMYK: {b:?} vs {scaled:?}");
}

/// `jpeg` with an EXIF block (APP1, big-endian TIFF, one IFD entry) declaring `orientation`
/// inserted after the start-of-image marker.
fn with_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
    let mut app1 = vec![0xFF, 0xE1, 0, 34];
    app1.extend_from_slice(b"Exif\0\0MM\0\x2A\0\0\0\x08");
    app1.extend_from_slice(&[0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1]);
    app1.extend_from_slice(&orientation.to_be_bytes());
    app1.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    assert_eq!(app1.len(), 2 + 34);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn exif_orientation_is_honoured() {
    // an off-centre face (the crop keeps the right and bottom), so a mirrored or rotated
    // photo that is not turned upright puts the face box somewhere else
    let full = photo("person_b_2.jpg");
    let crop = image::imageops::crop_imm(&full, 0, 0, 620, 820).to_image();
    let upright = DynamicImage::ImageRgb8(crop);
    let d = tempdir();
    let plain = save(
        d.path(),
        "upright.jpg",
        &encode(&upright, ImageFormat::Jpeg),
    );
    // stored pixels = the inverse of what each orientation does on display
    let cases: [(u16, DynamicImage); 4] = [
        (2, upright.fliph()),
        (3, upright.rotate180()),
        (6, upright.rotate270()),
        (8, upright.rotate90()),
    ];
    let mut files = vec![plain.clone()];
    let mut unturned = vec![];
    for (o, stored) in &cases {
        let bytes = encode(stored, ImageFormat::Jpeg);
        files.push(save(
            d.path(),
            &format!("exif_{o}.jpg"),
            &with_orientation(&bytes, *o),
        ));
        unturned.push(save(d.path(), &format!("stored_{o}.jpg"), &bytes));
    }
    let paths: Vec<&Path> = files.iter().chain(&unturned).map(|p| p.as_path()).collect();
    let (_, v, err) = predict(&paths, &[]);
    let want = succeeded(&v[0], "Demo identity B");
    eprintln!("upright box {want:?}");
    for (i, (o, _)) in cases.iter().enumerate() {
        let b = succeeded(&v[1 + i], "Demo identity B");
        assert!(
            close(b, want, 4.0),
            "orientation {o}: {b:?} vs {want:?}\n{err}"
        );
        // the same pixels without the tag: the face is elsewhere, or not found at all
        let raw = &v[1 + cases.len() + i];
        if raw.get("error").is_none() {
            let b: Vec<f64> = (0..4)
                .map(|k| raw["face"]["bbox_px"][k].as_f64().unwrap())
                .collect();
            assert!(
                !close([b[0], b[1], b[2], b[3]], want, 40.0),
                "orientation {o} without the tag lands on the same box {b:?}"
            );
        } else {
            failed(raw, 3, &["no face found"]);
        }
    }
}

#[test]
fn no_face_tiny_face_and_one_pixel_are_exit_3() {
    let d = tempdir();
    let one = save(
        d.path(),
        "one_pixel.png",
        &encode(
            &DynamicImage::ImageRgb8(RgbImage::from_pixel(1, 1, image::Rgb([200, 150, 120]))),
            ImageFormat::Png,
        ),
    );
    // seeded noise (an LCG): texture everywhere, no face
    let mut s: u32 = 12345;
    let noise = RgbImage::from_fn(640, 480, |_, _| {
        let mut c = [0u8; 3];
        for v in c.iter_mut() {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            *v = (s >> 24) as u8;
        }
        image::Rgb(c)
    });
    let noise = save(
        d.path(),
        "noise.png",
        &encode(&DynamicImage::ImageRgb8(noise), ImageFormat::Png),
    );
    // the portrait shrunk to 12x16 on a 640x640 background: a face of a few pixels
    let tiny = tiny_face(12, 16);
    let tiny = save(d.path(), "tiny_face.png", &tiny);
    let (code, v, err) = predict(&[&one, &noise, &tiny], &[]);
    assert_eq!(code, 3, "{err}");
    failed(&v[0], 3, &["one_pixel.png", "no face found"]);
    failed(&v[1], 3, &["noise.png", "no face found"]);
    failed(&v[2], 3, &["tiny_face.png", "no face found"]);
}

/// person_b_2 shrunk to `w` x `h` and pasted at (300, 300) on a gray 640x640 canvas (PNG).
fn tiny_face(w: u32, h: u32) -> Vec<u8> {
    let small = image::imageops::resize(
        &photo("person_b_2.jpg"),
        w,
        h,
        image::imageops::FilterType::Triangle,
    );
    let mut canvas = RgbImage::from_pixel(640, 640, image::Rgb([90, 90, 90]));
    image::imageops::overlay(&mut canvas, &small, 300, 300);
    encode(&DynamicImage::ImageRgb8(canvas), ImageFormat::Png)
}

#[test]
fn a_small_face_is_still_found_where_it_is() {
    // 40x52 portrait: a face box of about 17x24 pixels, found and ranked
    let d = tempdir();
    let p = save(d.path(), "small_face.png", &tiny_face(40, 52));
    let (code, v, err) = predict(&[&p], &[]);
    assert_eq!(code, 0, "{err}");
    let b = succeeded(&v[0], "Demo identity B");
    assert!(
        b[0] > 300.0 && b[1] > 300.0 && b[2] < 340.0 && b[3] < 352.0,
        "{b:?}"
    );
    assert!(b[2] - b[0] < 25.0, "{b:?}");
}

/// A PNG whose header (IHDR) declares `w` x `h` pixels, followed by a few bytes of data.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut c = kind.to_vec();
        c.extend_from_slice(data);
        out.extend_from_slice(&c);
        out.extend_from_slice(&crc32fast::hash(&c).to_be_bytes());
    };
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00]);
    chunk(b"IEND", &[]);
    out
}

#[test]
fn huge_declared_sizes_are_refused_from_the_header() {
    let d = tempdir();
    let png = save(d.path(), "huge.png", &png_header(20000, 20000));
    // a real JPEG whose frame header is patched to 20000 x 20000
    let mut jpeg = std::fs::read(demo_photo("person_a_1.jpg")).unwrap();
    let sof = jpeg
        .windows(2)
        .position(|w| w == [0xFF, 0xC0] || w == [0xFF, 0xC2])
        .unwrap();
    jpeg[sof + 5..sof + 9].copy_from_slice(&[0x4E, 0x20, 0x4E, 0x20]);
    let jpeg = save(d.path(), "huge.jpg", &jpeg);
    let started = std::time::Instant::now();
    let (code, v, err) = predict(&[&png, &jpeg], &[]);
    assert_eq!(code, 4, "{err}");
    let limit = "20000x20000 pixels is over the limit of 50000000 pixels";
    failed(&v[0], 4, &["huge.png", limit]);
    failed(&v[1], 4, &["huge.jpg", limit]);
    // refused from the header: no 1.2 GB buffer, no decoding time
    assert!(started.elapsed().as_secs() < 60);

    // the limit is a flag: a real 689x900 photo under a 0.5 MP limit
    let (code, v, _) = predict(
        &[&demo_photo("person_b_2.jpg")],
        &["--max-megapixels", "0.5"],
    );
    assert_eq!(code, 4);
    failed(
        &v[0],
        4,
        &["689x900 pixels is over the limit of 500000 pixels"],
    );
    let (code, _, err) = predict(
        &[&demo_photo("person_b_2.jpg")],
        &["--max-megapixels", "0.7"],
    );
    assert_eq!(code, 0, "{err}");
    let o = cmd()
        .args(["predict", "--max-megapixels=-1", "--bundle"])
        .arg(demo_bundle())
        .arg("--gallery")
        .arg(demo_gallery())
        .arg(demo_photo("person_b_2.jpg"))
        .output()
        .unwrap();
    expect_failure(&o, 2, &["--max-megapixels must be a positive number"]);
}

#[test]
fn a_collage_of_six_portraits_reports_six_faces_and_analyses_one() {
    let names = [
        "person_a_1.jpg",
        "person_a_2.jpg",
        "person_b_1.jpg",
        "person_b_2.jpg",
        "impostor_1.jpg",
        "impostor_2.jpg",
    ];
    let (tw, th) = (300u32, 380u32);
    let mut canvas = RgbImage::from_pixel(3 * tw, 2 * th, image::Rgb([255, 255, 255]));
    for (i, n) in names.iter().enumerate() {
        let tile =
            image::imageops::resize(&photo(n), tw, th, image::imageops::FilterType::Triangle);
        let (x, y) = ((i as u32 % 3) * tw, (i as u32 / 3) * th);
        image::imageops::replace(&mut canvas, &tile, x as i64, y as i64);
    }
    let d = tempdir();
    let p = save(
        d.path(),
        "collage.png",
        &encode(&DynamicImage::ImageRgb8(canvas), ImageFormat::Png),
    );
    let (code, v, err) = predict(&[&p], &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(v[0]["faces_found"], 6, "{}", v[0]);
    // one face analysed: its box lies inside one tile
    let b: Vec<f64> = (0..4)
        .map(|k| v[0]["face"]["bbox_px"][k].as_f64().unwrap())
        .collect();
    let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
    let tile = (cx as u32 / tw) + 3 * (cy as u32 / th);
    let (x0, y0) = ((tile % 3 * tw) as f64, (tile / 3 * th) as f64);
    assert!(
        b[0] >= x0 - 5.0
            && b[2] <= x0 + tw as f64 + 5.0
            && b[1] >= y0 - 5.0
            && b[3] <= y0 + th as f64 + 5.0,
        "box {b:?} spans tiles"
    );
    eprintln!(
        "collage: analysed tile {tile} ({}), top {}",
        names[tile as usize], v[0]["suggested_syndromes_list"][0]["syndrome_name"]
    );
}

/// A fuzz target's check: any bytes, no panic.
type Check = fn(&[u8]);

/// The fuzz targets and the checks they run (fuzz/replay.rs).
const FUZZ_TARGETS: [(&str, Check); 6] = [
    ("gallery_from_bytes", replay::gallery_from_bytes),
    ("manifest_parse", replay::manifest_parse),
    ("reference_csv", replay::reference_csv),
    ("image_to_top5", replay::image_to_top5),
    ("signature_file", replay::signature_file),
    ("compiled_model", replay::compiled_model),
];

/// Every committed fuzz seed and every saved crash (fuzz/regressions/TARGET/, one file per
/// crash the fuzzers found) replays through the fuzz targets' own checks without a panic.
#[test]
fn fuzz_seeds_and_saved_crashes_replay_without_panics() {
    let mut seeds = 0;
    for (name, check) in FUZZ_TARGETS {
        for kind in ["seeds", "regressions"] {
            let dir = root().join("fuzz").join(kind).join(name);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                assert_eq!(kind, "regressions", "{} is missing", dir.display());
                continue;
            };
            for e in entries {
                let path = e.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                let r = std::panic::catch_unwind(|| check(&data));
                assert!(r.is_ok(), "{name} panics on {}", path.display());
                seeds += (kind == "seeds") as usize;
            }
        }
    }
    assert!(seeds >= 8, "only {seeds} seeds");
}

/// Seeded byte mutations of every committed fuzz seed (overwrite, insert, erase, invert short
/// runs; 1-6 per input) through the fuzz targets' checks: a deterministic, stable-toolchain
/// cousin of `scripts/fuzz.sh`. Mutations like these found the JPEG decoder assertion kept in
/// fuzz/regressions/image_to_top5/. A failing input is written under target/ for replay.
#[test]
fn seeded_mutations_of_the_fuzz_seeds_never_panic() {
    const PER_SEED: usize = 1500;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut runs = 0;
    for (name, check) in FUZZ_TARGETS {
        let dir = root().join("fuzz/seeds").join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for path in files {
            let seed = std::fs::read(&path).unwrap();
            for it in 0..PER_SEED {
                let mut d = seed.clone();
                for _ in 0..1 + rnd() % 6 {
                    let pos = rnd() as usize % d.len().max(1);
                    let len = 1 + rnd() as usize % 8;
                    let end = (pos + len).min(d.len());
                    match rnd() % 4 {
                        0 => d.get_mut(pos).into_iter().for_each(|b| *b = rnd() as u8),
                        1 => d
                            .splice(pos..pos.min(d.len()), (0..len).map(|_| rnd() as u8))
                            .for_each(drop),
                        2 => d.drain(pos.min(end)..end).for_each(drop),
                        _ => d[pos.min(end)..end].iter_mut().for_each(|b| *b = !*b),
                    }
                }
                if std::panic::catch_unwind(|| check(&d)).is_err() {
                    let out = root()
                        .join("target")
                        .join(format!("mutation-{name}-{it}.bin"));
                    let _ = std::fs::write(&out, &d);
                    panic!(
                        "{name}: mutation {it} of {} panics; input saved as {}",
                        path.display(),
                        out.display()
                    );
                }
                runs += 1;
            }
        }
    }
    assert!(runs >= 8 * PER_SEED, "{runs} runs");
}
