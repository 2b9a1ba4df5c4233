//! `gestalt-edge model quantize --bundle IN --calib DIR --out OUT`: post-training int8.
//!
//! Calibration data is what the runtime itself makes from the photos in DIR: the detector's
//! letterboxed inputs, and for each face the float bundle finds, the aligned crop under every
//! TTA view. Every model of the bundle (detector included) is rewritten by
//! `bundle::quantize`; the new bundle is written next to OUT through a temporary folder, loaded
//! and compared with the float bundle, and only then moved into place (manifest last).

use std::path::{Path, PathBuf};

use gestalt_edge::bundle::{self, input, quantize, Bundle, LoadOptions, Net};
use gestalt_edge::capture::{self, Limits};
use gestalt_edge::embed::Embeddings;
use gestalt_edge::pipeline::{self, PipelineOptions};
use gestalt_edge::rank::cosine_distance;
use gestalt_edge::{Error, Result};

/// Arguments of `model quantize`.
#[derive(Debug, clap::Args)]
pub struct QuantizeArgs {
    /// Float model-bundle manifest to quantize.
    #[arg(long, value_name = "MANIFEST")]
    pub bundle: PathBuf,
    /// Folder of calibration photos (JPEG/PNG) showing faces.
    #[arg(long, value_name = "DIR")]
    pub calib: PathBuf,
    /// Manifest of the int8 bundle to write; its model files go next to it.
    #[arg(long, value_name = "MANIFEST")]
    pub out: PathBuf,
    /// Keep the first and the last quantizable layer of every model in float.
    #[arg(long)]
    pub keep_float_ends: bool,
    /// Activations as symmetric i8 (zero point 0) instead of u8 with a zero point: tract then
    /// needs no zero-point correction around the integer products.
    #[arg(long)]
    pub symmetric: bool,
    /// Keep fully connected (Gemm) layers in float: tract re-sums and re-packs integer
    /// Gemm weights on every run.
    #[arg(long)]
    pub float_fc: bool,
    /// Keep depthwise convolutions in float (tract's float depthwise kernel beats its int8
    /// im2col path).
    #[arg(long)]
    pub float_depthwise: bool,
    /// Fraction of each calibration tensor's values left outside its int8 range, per tail
    /// (0 = min/max).
    #[arg(long, value_name = "FRACTION", default_value_t = 3e-5)]
    pub clip: f64,
    /// Worker threads for the embedding passes [default: all cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

fn photos(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir)
        .map_err(|e| Error::bundle(dir, format!("cannot read the calibration folder: {e}")))?;
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
        })
        .collect();
    v.sort();
    if v.is_empty() {
        return Err(Error::bundle(
            dir,
            "the calibration folder holds no JPEG or PNG photos",
        ));
    }
    Ok(v)
}

/// Calibrates and quantizes one model file.
fn quantize_model(
    path: &Path,
    w: u32,
    h: u32,
    inputs: &[Vec<f32>],
    options: &quantize::QuantOptions,
    clip: f64,
) -> Result<(Vec<u8>, quantize::QuantStats)> {
    let bytes = std::fs::read(path).map_err(|e| Error::bundle(path, e.to_string()))?;
    let (calib, names) = quantize::calibration_model(&bytes, path)?;
    let net = Net::load(path, &calib, w, h, &[])?;
    let ranges = quantize::observe(&net, &names, &input_name(&bytes, path)?, inputs, clip)?;
    drop(net);
    quantize::quantize_with(&bytes, path, &ranges, options)
}

fn input_name(bytes: &[u8], path: &Path) -> Result<String> {
    use prost::Message;
    let m = tract_onnx::pb::ModelProto::decode(bytes)
        .map_err(|e| Error::bundle(path, format!("not an ONNX model: {e}")))?;
    let g = m.graph.unwrap_or_default();
    let inits: std::collections::HashSet<String> =
        g.initializer.iter().map(|t| t.name.clone()).collect();
    g.input
        .iter()
        .map(|i| i.name.clone())
        .find(|n| !inits.contains(n))
        .ok_or_else(|| Error::bundle(path, "the model has no input"))
}

fn int8_name(file: &str) -> String {
    let stem = file.strip_suffix(".onnx").unwrap_or(file);
    format!("{stem}-int8.onnx")
}

pub fn run(a: QuantizeArgs) -> Result<i32> {
    let threads = match a.threads {
        Some(0) => return Err(Error::Usage("--threads must be at least 1".into())),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    if !(0.0..0.5).contains(&a.clip) {
        return Err(Error::Usage("--clip must be in [0, 0.5)".into()));
    }
    let list = photos(&a.calib)?;
    let float = Bundle::load(
        &a.bundle,
        LoadOptions {
            threads,
            ..Default::default()
        },
    )?;
    let opts = PipelineOptions::default();
    let det = &float.manifest.detector;
    let mut det_inputs = Vec::new();
    let mut faces = Vec::new();
    let mut float_emb = Vec::new();
    for p in &list {
        let Ok(frame) = capture::load_image(p, &Limits::default()) else {
            eprintln!("note: {}: not a readable photo, skipped", p.display());
            continue;
        };
        let lb = input::letterbox(&frame.rgb, det.input.width, det.input.height);
        det_inputs.push(input::to_nchw(&lb.image, &det.input));
        match pipeline::analyse(&float, &frame, &opts) {
            Ok(fa) => {
                faces.push((p.clone(), fa.aligned.rgb));
                float_emb.push(fa.embeddings);
            }
            Err(Error::NoFace { .. }) => {
                eprintln!(
                    "note: {}: no face found, not used for the embedders",
                    p.display()
                )
            }
            Err(e) => return Err(e),
        }
    }
    if faces.is_empty() {
        return Err(Error::bundle(
            &a.calib,
            format!(
                "none of the {} calibration photos shows a face the float bundle detects",
                list.len()
            ),
        ));
    }
    eprintln!(
        "calibrating on {} photos ({} faces x TTA views)",
        det_inputs.len(),
        faces.len()
    );
    let dir = a.bundle.parent().unwrap_or(Path::new("."));
    let out_dir = match a.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&out_dir).map_err(|e| Error::io(&out_dir, e))?;
    let staging = tempfile::Builder::new()
        .prefix(".gestalt-edge-quantize-")
        .tempdir_in(&out_dir)
        .map_err(|e| Error::io(&out_dir, e))?;
    let mut manifest = float.manifest.clone();
    manifest.bundle.name = format!("{}-int8", manifest.bundle.name);
    manifest.bundle.description = format!(
        "{} (int8: per-channel weights, activation ranges from {} calibration faces)",
        manifest.bundle.description,
        faces.len()
    );
    let options = quantize::QuantOptions {
        keep_float_ends: a.keep_float_ends,
        symmetric_activations: a.symmetric,
        float_gemm: a.float_fc,
        float_depthwise: a.float_depthwise,
    };
    let mut written = Vec::new();
    let (q, st) = quantize_model(
        &dir.join(&det.file),
        det.input.width,
        det.input.height,
        &det_inputs,
        &options,
        a.clip,
    )?;
    eprintln!(
        "detector: {} QLinearConv, {} MatMulInteger, {} kept float",
        st.convs, st.gemms, st.kept_float
    );
    manifest.detector.file = int8_name(&det.file);
    manifest.detector.sha256 = bundle::sha256_hex(&q);
    written.push((manifest.detector.file.clone(), q));
    for (i, e) in float.manifest.embedders.iter().enumerate() {
        let mut inputs = Vec::new();
        for (_, face) in &faces {
            for v in &e.views {
                let view = gestalt_edge::embed::view(face, v[0], v[1]);
                inputs.push(input::to_nchw(&view, &e.input));
            }
        }
        let (q, st) = quantize_model(
            &dir.join(&e.file),
            e.input.width,
            e.input.height,
            &inputs,
            &options,
            a.clip,
        )?;
        eprintln!(
            "{}: {} QLinearConv, {} MatMulInteger, {} kept float",
            e.name, st.convs, st.gemms, st.kept_float
        );
        manifest.embedders[i].file = int8_name(&e.file);
        manifest.embedders[i].sha256 = bundle::sha256_hex(&q);
        written.push((manifest.embedders[i].file.clone(), q));
    }
    for (name, bytes) in &written {
        bundle::synth::write_atomic(&staging.path().join(name), bytes)?;
    }
    drop(written);
    let text = toml::to_string(&manifest)
        .map_err(|e| Error::bundle(&a.out, format!("cannot write the manifest: {e}")))?;
    let out_name = a
        .out
        .file_name()
        .ok_or_else(|| Error::Usage(format!("{}: not a file path", a.out.display())))?;
    let staged_manifest = staging.path().join(out_name);
    bundle::synth::write_atomic(&staged_manifest, text.as_bytes())?;
    // the int8 bundle must load (every op supported, shapes as the manifest says)
    let int8 = Bundle::load(
        &staged_manifest,
        LoadOptions {
            threads,
            ..Default::default()
        },
    )?;
    let mut int8_emb = Vec::new();
    for (_, face) in &faces {
        int8_emb.push(int8.embed(face)?);
    }
    report(&float, &faces, &float_emb, &int8_emb);
    // move the models, then the manifest
    let mut files: Vec<String> = std::iter::once(manifest.detector.file.clone())
        .chain(manifest.embedders.iter().map(|e| e.file.clone()))
        .collect();
    files.push(out_name.to_string_lossy().into_owned());
    for f in files {
        let to = out_dir.join(&f);
        std::fs::rename(staging.path().join(&f), &to).map_err(|e| Error::io(&to, e))?;
    }
    println!("{}: int8 bundle written", a.out.display());
    Ok(0)
}

/// Mean key-paired cosine distance between two embedding sets.
fn distance(a: &Embeddings, b: &Embeddings) -> f32 {
    let d: Vec<f32> = a
        .entries
        .iter()
        .filter_map(|(k, v)| b.get(k).map(|w| cosine_distance(v, w)))
        .collect();
    d.iter().sum::<f32>() / d.len().max(1) as f32
}

/// Photos ranked by distance to photo `i` (leave-one-out), nearest first.
fn ranked(emb: &[Embeddings], i: usize) -> Vec<usize> {
    let mut v: Vec<(f32, usize)> = (0..emb.len())
        .filter(|&j| j != i)
        .map(|j| (distance(&emb[i], &emb[j]), j))
        .collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    v.into_iter().map(|(_, j)| j).collect()
}

fn report(
    float: &Bundle,
    faces: &[(PathBuf, image::RgbImage)],
    f: &[Embeddings],
    q: &[Embeddings],
) {
    println!(
        "agreement with the float bundle on {} calibration faces:",
        faces.len()
    );
    let mut all = Vec::new();
    for e in &float.manifest.embedders {
        let cos: Vec<f32> = f
            .iter()
            .zip(q)
            .flat_map(|(a, b)| {
                a.entries
                    .iter()
                    .filter(|(k, _)| k.model == e.name)
                    .filter_map(|(k, v)| b.get(k).map(|w| 1.0 - cosine_distance(v, w)))
                    .collect::<Vec<_>>()
            })
            .collect();
        let mean = cos.iter().sum::<f32>() / cos.len().max(1) as f32;
        let min = cos.iter().copied().fold(f32::INFINITY, f32::min);
        println!(
            "  {:<12} cosine mean {mean:.5}  min {min:.5}  ({} embeddings)",
            e.name,
            cos.len()
        );
        all.extend(cos);
    }
    let mean = all.iter().sum::<f32>() / all.len().max(1) as f32;
    println!("  {:<12} cosine mean {mean:.5}", "all");
    if faces.len() >= 2 {
        let (mut top1, mut top5) = (0usize, 0.0f64);
        for i in 0..faces.len() {
            let (rf, rq) = (ranked(f, i), ranked(q, i));
            top1 += usize::from(rf.first() == rq.first());
            let k = rf.len().min(5);
            let a: std::collections::HashSet<_> = rf[..k].iter().collect();
            top5 += rq[..k].iter().filter(|j| a.contains(j)).count() as f64 / k.max(1) as f64;
        }
        let n = faces.len() as f64;
        println!(
            "  leave-one-out ranking among the calibration faces: same top-1 {}/{}, top-5 overlap {:.1}%",
            top1,
            faces.len(),
            100.0 * top5 / n
        );
    }
}
