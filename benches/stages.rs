//! divan benchmarks: gallery search at 10k / 100k / 1M images (synthetic galleries read
//! through the real file reader) and the pipeline stages on the demo bundle.
//!
//! `cargo bench --bench stages` (the demo bundle must be prepared: scripts/setup.sh).

#[allow(dead_code)]
use std::path::PathBuf;
use std::sync::OnceLock;

use gestalt_edge::bundle::{Bundle, LoadOptions};
use gestalt_edge::capture::{self, Frame, Limits};
use gestalt_edge::embed::Embeddings;
use gestalt_edge::embed::Key;
use gestalt_edge::gallery::{Gallery, KeySpec, Storage};
use gestalt_edge::rank::{self, RankOptions};

fn main() {
    divan::main();
}

/// The paper's keys: 3 models x 4 views x 512 values.
fn paper_keys() -> Vec<KeySpec> {
    keys(&["m0", "m1", "m2"], 512)
}

/// The demo bundle's keys: 1 model x 4 views x 128 values.
fn demo_keys() -> Vec<KeySpec> {
    keys(&["sface"], 128)
}

fn keys(models: &[&str], width: u32) -> Vec<KeySpec> {
    models
        .iter()
        .flat_map(|m| {
            gestalt_edge::embed::TTA_VIEWS
                .iter()
                .map(move |&(flip, gray)| KeySpec {
                    key: Key {
                        model: m.to_string(),
                        flip,
                        gray,
                    },
                    width,
                })
        })
        .collect()
}

fn gallery(keys: &[KeySpec], n: usize) -> Gallery {
    let bytes = gestalt_edge::tools::gallery::synthetic_gallery("bench", keys, n, Storage::I8, 1);
    Gallery::from_bytes(&bytes, "synthetic").expect("synthetic gallery reads")
}

fn query(keys: &[KeySpec]) -> Embeddings {
    let mut rng = gestalt_edge::tools::synth::Rng::new(99);
    Embeddings {
        entries: keys
            .iter()
            .map(|k| {
                let v = (0..k.width)
                    .map(|_| (rng.uniform() * 2.0 - 1.0) as f32)
                    .collect();
                (k.key.clone(), v)
            })
            .collect(),
    }
}

const TOP5: RankOptions = RankOptions {
    top: 5,
    patients: 5,
    same_patient_threshold: None,
};

#[divan::bench(sample_count = 20, sample_size = 1)]
fn search_10k_paper_keys(bencher: divan::Bencher) {
    let keys = paper_keys();
    let g = gallery(&keys, 10_000);
    let q = query(&keys);
    bencher.bench_local(|| rank::rank(&q, &g, &TOP5).expect("rank"));
}

#[divan::bench(sample_count = 5, sample_size = 1)]
fn search_100k_paper_keys(bencher: divan::Bencher) {
    let keys = paper_keys();
    let g = gallery(&keys, 100_000);
    let q = query(&keys);
    bencher.bench_local(|| rank::rank(&q, &g, &TOP5).expect("rank"));
}

/// 1M images with the paper's 12 x 512 keys would need a 24.6 GB f32 search index; the
/// demo shape (4 x 128) is the largest that fits this machine at 1M images.
#[divan::bench(sample_count = 5, sample_size = 1)]
fn search_1m_demo_keys(bencher: divan::Bencher) {
    let keys = demo_keys();
    let g = gallery(&keys, 1_000_000);
    let q = query(&keys);
    bencher.bench_local(|| rank::rank(&q, &g, &TOP5).expect("rank"));
}

struct Demo {
    bundle: Bundle,
    frame: Frame,
}

fn demo() -> &'static Demo {
    static DEMO: OnceLock<Demo> = OnceLock::new();
    DEMO.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let manifest = root.join("models/demo/bundle.toml");
        let photo = root.join("models/demo/photos/person_a_1.jpg");
        assert!(
            photo.exists(),
            "the demo bundle is not prepared: run scripts/setup.sh first (README)"
        );
        Demo {
            bundle: Bundle::load(
                &manifest,
                LoadOptions {
                    threads: 2,
                    ..Default::default()
                },
            )
            .expect("demo bundle"),
            frame: capture::load_image(&photo, &Limits::default()).expect("demo photo"),
        }
    })
}

#[divan::bench(sample_count = 10, sample_size = 1)]
fn demo_detect(bencher: divan::Bencher) {
    let d = demo();
    bencher.bench_local(|| d.bundle.detect(&d.frame.rgb).expect("detect"));
}

#[divan::bench(sample_count = 10, sample_size = 1)]
fn demo_align(bencher: divan::Bencher) {
    let d = demo();
    let faces = d.bundle.detect(&d.frame.rgb).expect("detect");
    let lm = faces
        .first()
        .expect("a face in the demo photo")
        .landmarks_px;
    bencher.bench_local(|| gestalt_edge::align::align(&d.frame.rgb, &lm).expect("align"));
}

#[divan::bench(sample_count = 10, sample_size = 1)]
fn demo_embed_all_views(bencher: divan::Bencher) {
    let d = demo();
    let faces = d.bundle.detect(&d.frame.rgb).expect("detect");
    let lm = faces
        .first()
        .expect("a face in the demo photo")
        .landmarks_px;
    let face = gestalt_edge::align::align(&d.frame.rgb, &lm).expect("align");
    bencher.bench_local(|| d.bundle.embed(&face.rgb).expect("embed"));
}

#[divan::bench(sample_count = 5, sample_size = 1)]
fn demo_full_photo(bencher: divan::Bencher) {
    let d = demo();
    bencher.bench_local(|| {
        gestalt_edge::pipeline::analyse(&d.bundle, &d.frame, &Default::default()).expect("analyse")
    });
}
