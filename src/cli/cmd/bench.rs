//! `gestalt-edge bench`: times every stage of the pipeline on one bundle and prints the
//! numbers (a JSON object with `--json`).
//!
//! Cold start = load, verify and optimise every model + read a synthetic gallery file of
//! `--gallery-size` images; then `--repeat` full photos (decode, two-pass detection,
//! alignment, every embedding, ranking), reporting the median of each stage. With
//! `--compare`, the embedding stage is also run on 1 thread and as one batch per model.

use crate::cli::out::outln;
use std::path::PathBuf;
use std::time::Instant;

use gestalt_edge::bundle::{self, input, Bundle, LoadOptions};
use gestalt_edge::capture::{self, Frame, Limits};
use gestalt_edge::engine::Engine;
use gestalt_edge::gallery::{Gallery, KeySpec, Storage};
use gestalt_edge::pipeline::{self, PipelineOptions};
use gestalt_edge::rank::{self, RankOptions};
use gestalt_edge::tools::gallery::synthetic_gallery;
use gestalt_edge::{Error, Result};

use crate::cli::args::{BenchArgs, BenchEngineArg, EngineArg};
use crate::cli::report;
use crate::cli::resolve::{self, BenchSettings};

/// Medians of the timed photos, in milliseconds, plus the cost model.
#[derive(Debug, Default, serde::Serialize)]
struct Report {
    bundle: String,
    backend: &'static str,
    /// onnxruntime's threading mode (absent on tract).
    #[serde(skip_serializing_if = "Option::is_none")]
    ort_threading: Option<&'static str>,
    threads: usize,
    gallery_size: usize,
    repeat: usize,
    face_found: bool,
    cold_start_ms: f64,
    /// The model cache during the cold start: "off" (no cache folder), "cold" (no model
    /// came from the cache), "warm" (every model did) or "partial".
    cold_start_cache: &'static str,
    /// Models loaded side by side during the cold start.
    load_threads: usize,
    /// Per model (detector, then embedders): hit, written, rebuilt, disabled, not_written.
    model_cache: Vec<gestalt_edge::engine::cache::CacheStatus>,
    model_load_ms: f64,
    gallery_load_ms: f64,
    detect_ms: f64,
    align_ms: f64,
    embed_ms: f64,
    embed_passes: usize,
    rank_ms: f64,
    full_photo_ms: f64,
    gmac_per_photo: f64,
    gmac_per_s: f64,
    peak_rss_mb: f64,
    /// Resident memory right after the cold start (models, gallery, index), MB, once the
    /// memory freed while loading is handed back (`bundle::release_freed_memory`).
    rss_after_load_mb: f64,
    /// What that hand-back released, MB (same process, just before).
    rss_released_at_load_mb: f64,
    /// Resident memory after the timed photos, MB: the steady state of a device.
    rss_steady_mb: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    compare: Option<Compare>,
    /// Gallery search on the synthetic gallery: flat scan against the index (new-patient
    /// queries from the gallery's generative model).
    #[serde(skip_serializing_if = "Option::is_none")]
    gallery_search: Option<gestalt_edge::tools::gallery::SearchBench>,
    /// Per model (detector, then embedders): the engine that ran it, its kernels, one
    /// timed pass and its GMAC/s.
    models: Vec<super::bench_engines::ModelRow>,
    /// The machine's load average (1, 5, 15 min) when the timings ended.
    load_average: [f64; 3],
}

/// Embedding-stage variants measured in one run.
#[derive(Debug, Default, serde::Serialize)]
struct Compare {
    /// All passes on one thread, batch 1.
    embed_1_thread_ms: f64,
    /// One OS thread per pass group (`threads` threads), batch 1 each: the default.
    embed_threads_ms: f64,
    /// One batched run per model (all views in one tensor), one after the other.
    embed_batched_ms: f64,
    /// embed_1_thread_ms / embed_threads_ms.
    thread_speedup: f64,
    /// embed_batched_ms / embed_threads_ms.
    batched_over_threads: f64,
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Peak resident set size of this process in MB (`VmHWM`), 0 where /proc is missing.
pub fn peak_rss_mb() -> f64 {
    status_mb("VmHWM:")
}

/// Starts a new peak: the kernel resets `VmHWM` to the current RSS (`clear_refs` 5), so
/// the peak reported covers what follows, not the bench's own set-up (its synthetic
/// gallery). Returns whether the kernel did.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Resident memory now (VmRSS), in MB (0 where /proc is missing).
pub fn rss_mb() -> f64 {
    status_mb("VmRSS:")
}

/// A kB field of /proc/self/status in MB.
fn status_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// One photo's stage times; the embeddings for ranking.
struct PhotoRun {
    face: bool,
    detect_ms: f64,
    align_ms: f64,
    embed_ms: f64,
    embeddings: gestalt_edge::embed::Embeddings,
}

/// The pipeline on one frame; when no face is found (random-weight detectors, synthetic
/// frames), the two detection passes are timed on their own and the frame centre is embedded.
fn run_photo(b: &Bundle, frame: &Frame, opts: &PipelineOptions) -> Result<PhotoRun> {
    match pipeline::analyse(b, frame, opts) {
        Ok(a) => Ok(PhotoRun {
            face: true,
            detect_ms: a.timings.detect_ms,
            align_ms: a.timings.align_ms,
            embed_ms: a.timings.embed_ms,
            embeddings: a.embeddings,
        }),
        Err(Error::NoFace { .. }) => {
            let t = Instant::now();
            b.detect(&frame.rgb)?;
            b.detect(&frame.rgb)?;
            let detect_ms = ms(t);
            let t = Instant::now();
            let (w, h) = frame.rgb.dimensions();
            let side = w.min(h).max(1);
            let crop =
                image::imageops::crop_imm(&frame.rgb, (w - side) / 2, (h - side) / 2, side, side)
                    .to_image();
            let f = 112.0 / side as f64;
            let face = input::resize_bilinear(&crop, 112, 112, f, f);
            let align_ms = ms(t);
            let t = Instant::now();
            let embeddings = b.embed(&face)?;
            Ok(PhotoRun {
                face: false,
                detect_ms,
                align_ms,
                embed_ms: ms(t),
                embeddings,
            })
        }
        Err(e) => Err(e),
    }
}

/// A 640x480 frame with smooth colour gradients (deterministic).
fn synthetic_frame() -> Frame {
    let rgb = image::RgbImage::from_fn(640, 480, |x, y| {
        image::Rgb([(x / 3) as u8, (y / 2) as u8, ((x + y) / 5) as u8])
    });
    Frame {
        rgb,
        source: PathBuf::from("synthetic-640x480"),
    }
}

fn compare_embedding(
    b: &mut Bundle,
    backend: &Engine,
    threads: usize,
    face: &image::RgbImage,
) -> Result<Compare> {
    b.set_threads(1);
    b.embed(face)?;
    let t = Instant::now();
    b.embed(face)?;
    let one = ms(t);
    b.set_threads(threads);
    let t = Instant::now();
    b.embed(face)?;
    let many = ms(t);
    let mut batched = 0.0;
    for spec in &b.manifest.embedders {
        let (path, bytes) = bundle::read_verified(
            &b.path,
            &format!("embedder '{}'", spec.name),
            &spec.file,
            &spec.sha256,
        )?;
        let outputs: Vec<String> = spec.output.iter().cloned().collect();
        let n = spec.views.len();
        let net = gestalt_edge::engine::load_net(
            &backend.embedder_engine(threads, n),
            &path,
            &bytes,
            (spec.input.width, spec.input.height),
            &outputs,
            n,
        )?;
        drop(bytes);
        let mut data = Vec::new();
        for v in &spec.views {
            let view = gestalt_edge::embed::view(face, v[0], v[1]);
            data.extend(input::to_nchw(&view, &spec.input));
        }
        net.run(data.clone())?;
        let t = Instant::now();
        net.run(data)?;
        batched += ms(t);
    }
    Ok(Compare {
        embed_1_thread_ms: one,
        embed_threads_ms: many,
        embed_batched_ms: batched,
        thread_speedup: one / many.max(1e-9),
        batched_over_threads: batched / many.max(1e-9),
    })
}

/// Times every stage on one engine (or each engine in its own process with `--engine both`).
pub fn run(a: BenchArgs) -> Result<i32> {
    let settings = BenchSettings::resolve(&a)?;
    // one engine: the flag, else the manifest's, as every command that loads a bundle
    let kind = match a.engine {
        Some(BenchEngineArg::Both | BenchEngineArg::All) => {
            return super::bench_engines::run_engines(&a, &settings)
        }
        Some(BenchEngineArg::Native) => EngineArg::Native,
        Some(BenchEngineArg::Tract) => EngineArg::Tract,
        Some(BenchEngineArg::Ort) => EngineArg::Ort,
        None => resolve::engine_kind(None, None, &a.bundle),
    };
    let backend = resolve::engine(kind, &a.ort, &a.native)?;
    let threads = settings.threads;
    let frame = match &a.photo {
        Some(p) => capture::load_image(p, &Limits::default())?,
        None => synthetic_frame(),
    };

    // the gallery file is made before the clock starts; reading it is part of the cold start
    let manifest = bundle::read_manifest(&a.bundle)?;
    let id = bundle::bundle_id(&manifest);
    let keys: Vec<KeySpec> = gestalt_edge::embed::manifest_keys(&manifest)
        .into_iter()
        .map(|(key, width)| KeySpec { key, width })
        .collect();
    let dir = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let gpath = dir.path().join("bench.gallery");
    let gbytes = synthetic_gallery(&id, &keys, a.gallery_size, Storage::F16, 1);
    std::fs::write(&gpath, &gbytes).map_err(|e| Error::io(&gpath, e))?;
    if let Some(keep) = &a.save_gallery {
        super::writer::lock(keep, &a.lock)?.write_bytes(&gbytes)?;
    }
    drop(gbytes);
    // the peak RSS is the product's (load, gallery, photos), not the synthetic gallery's
    gestalt_edge::bundle::release_freed_memory();
    reset_peak_rss();

    let t0 = Instant::now();
    let load_threads = settings.load_threads;
    let mut b = Bundle::load(
        &a.bundle,
        LoadOptions {
            threads: load_threads,
            engine: backend.clone(),
            cache_dir: settings.cache_dir.clone(),
        },
    )?;
    let model_load_ms = ms(t0);
    if load_threads != threads {
        b.set_threads(threads);
    }
    report::cache_warnings(&b);
    let t = Instant::now();
    let gallery = Gallery::read(&gpath)?;
    // the product's search path: an index is derived at load for large galleries
    let matcher = rank::Matcher::new(&gallery, threads);
    let gallery_load_ms = ms(t);
    let cold_start_ms = ms(t0);
    let rss_untrimmed = rss_mb();
    gestalt_edge::bundle::release_freed_memory();
    let rss_after_load_mb = rss_mb();

    let opts = PipelineOptions::default();
    let rank_opts = RankOptions {
        top: 5,
        patients: 5,
        same_patient_threshold: None,
    };
    let limits = Limits::default();
    let photo_bytes = match &a.photo {
        Some(p) => Some(
            gestalt_edge::fsio::read_capped(
                p,
                gestalt_edge::fsio::Cap::PHOTO.with_bytes(limits.max_file_bytes),
            )
            .map_err(|e| Error::image(p, e.to_string()))?,
        ),
        None => None,
    };
    let full = |b: &Bundle| -> Result<(PhotoRun, f64, f64)> {
        let t = Instant::now();
        let frame = match (&photo_bytes, &a.photo) {
            (Some(bytes), Some(p)) => capture::decode(bytes, p, &limits)?,
            _ => frame.clone(),
        };
        let r = run_photo(b, &frame, &opts)?;
        let tr = Instant::now();
        matcher.rank(&r.embeddings, &rank_opts)?;
        Ok((r, ms(tr), ms(t)))
    };
    let (warm, _, _) = full(&b)?;
    let mut runs = Vec::new();
    for _ in 0..settings.repeat {
        runs.push(full(&b)?);
    }
    let peak = peak_rss_mb();
    let rss_steady_mb = rss_mb();

    let (det, embs) = b.nets();
    let mut macs = 2 * det.macs();
    for (net, spec) in embs.iter().zip(&b.manifest.embedders) {
        macs += net.macs() * spec.views.len() as u64;
    }
    if let Engine::Ort(_) = backend {
        // onnxruntime has no cost model: count on tract (after the timings and peak RSS)
        macs = super::bench_engines::tract_macs(&b)?;
    }
    let load_average = super::bench_engines::load_average();
    let full_photo_ms = median(runs.iter().map(|r| r.2).collect());
    let gmac = macs as f64 / 1e9;
    let mut report = Report {
        bundle: a.bundle.display().to_string(),
        backend: backend.name(),
        ort_threading: match &backend {
            Engine::Ort(_) => Some(resolve::ort_threading(&a.ort).flag()),
            _ => None,
        },
        threads,
        gallery_size: a.gallery_size,
        repeat: settings.repeat,
        face_found: warm.face,
        cold_start_ms,
        cold_start_cache: report::cache_state(&b),
        load_threads,
        model_cache: b.cache_reports().iter().map(|r| r.status.clone()).collect(),
        model_load_ms,
        gallery_load_ms,
        detect_ms: median(runs.iter().map(|r| r.0.detect_ms).collect()),
        align_ms: median(runs.iter().map(|r| r.0.align_ms).collect()),
        embed_ms: median(runs.iter().map(|r| r.0.embed_ms).collect()),
        embed_passes: warm.embeddings.entries.len(),
        rank_ms: median(runs.iter().map(|r| r.1).collect()),
        full_photo_ms,
        gmac_per_photo: gmac,
        gmac_per_s: gmac / (full_photo_ms / 1000.0).max(1e-9),
        peak_rss_mb: peak,
        rss_after_load_mb,
        rss_released_at_load_mb: rss_untrimmed - rss_after_load_mb,
        rss_steady_mb,
        compare: None,
        gallery_search: None,
        models: super::bench_engines::model_rows(&b)?,
        load_average,
    };
    if settings.compare {
        let face = image::RgbImage::from_fn(112, 112, |x, y| {
            image::Rgb([(x * 2) as u8, (y * 2) as u8, ((x + y) % 256) as u8])
        });
        report.compare = Some(compare_embedding(&mut b, &backend, threads, &face)?);
    }
    report.gallery_search = Some(gestalt_edge::tools::gallery::search_bench(
        &matcher,
        &keys,
        1,
        threads,
        5,
        a.search_cap,
    )?);
    print_report(&report, a.json);
    Ok(0)
}

fn print_report(r: &Report, json: bool) {
    if json {
        outln!("{}", serde_json::to_string_pretty(r).unwrap_or_default());
        return;
    }
    outln!(
        "{} ({} engine, {} threads, gallery {} images, median of {}; load average {:.2})",
        r.bundle,
        r.backend,
        r.threads,
        r.gallery_size,
        r.repeat,
        r.load_average[0]
    );
    if !r.face_found {
        outln!("  no face found: detection timed alone, the frame centre embedded");
    }
    outln!(
        "  model cache {}, {} model(s) loaded side by side",
        r.cold_start_cache,
        r.load_threads
    );
    let rows = [
        ("cold start", r.cold_start_ms),
        ("  models", r.model_load_ms),
        ("  gallery", r.gallery_load_ms),
        ("detect (2 passes)", r.detect_ms),
        ("align", r.align_ms),
        ("embed (all passes)", r.embed_ms),
        ("rank", r.rank_ms),
        ("full photo", r.full_photo_ms),
    ];
    for (name, v) in rows {
        outln!("  {name:<20} {v:>10.1} ms");
    }
    outln!(
        "  {:<20} {:>10.1} GMAC/s ({:.1} GMAC per photo)",
        "compute",
        r.gmac_per_s,
        r.gmac_per_photo
    );
    outln!(
        "  {:<20} {:>10.1} MB (after load {:.1} MB, {:.1} MB of it handed back; steady {:.1} MB)",
        "peak RSS",
        r.peak_rss_mb,
        r.rss_after_load_mb,
        r.rss_released_at_load_mb,
        r.rss_steady_mb
    );
    for m in &r.models {
        outln!(
            "  {:<20} {:>10.1} ms/pass {:>7.1} GMAC/s  {}{}{}",
            m.model,
            m.pass_ms,
            m.gmac_per_s,
            m.engine,
            if m.kernels.is_empty() {
                String::new()
            } else {
                format!(" [{}]", m.kernels.join(", "))
            },
            m.note.as_ref().map_or(String::new(), |n| format!(" ({n})"))
        );
    }
    if let Some(c) = &r.compare {
        outln!(
            "  embed: 1 thread {:.1} ms, {} threads {:.1} ms (x{:.2}), batched per model {:.1} ms (x{:.2} of threaded)",
            c.embed_1_thread_ms,
            r.threads,
            c.embed_threads_ms,
            c.thread_speedup,
            c.embed_batched_ms,
            c.batched_over_threads
        );
    }
    if let Some(g) = &r.gallery_search {
        outln!(
            "  gallery search ({} images, {} path): flat {:.1} ms, indexed {:.1} ms (x{:.1}), \
             {} exact scores, index {} B/image built in {:.0} ms, certified {}, same top-5 {}",
            g.images,
            g.path,
            g.rank_flat_ms,
            g.rank_indexed_ms,
            g.speedup,
            g.exact_scored,
            g.index_bytes_per_image,
            g.index_build_ms,
            g.certified,
            g.same_top5_as_flat
        );
        if let Some(c) = &g.capped {
            outln!(
                "  capped search (at most {} exact scores): {:.1} ms, same top-5 syndromes \
                 {}/{}, certified {}/{}",
                c.max_exact,
                c.rank_ms,
                c.same_top5_syndromes,
                g.queries,
                c.certified,
                g.queries
            );
        }
    }
}
