//! Post-training int8 of a whole bundle: calibration data from photos, every model rewritten by
//! [`super::quantize`], the new bundle written atomically and checked against the float one.
//!
//! Consumes a loaded float [`Bundle`], the photos of a calibration folder and [`QuantOptions`];
//! produces the int8 bundle's files next to the output manifest and an [`Agreement`] report.
//! Calibration data is what the runtime itself makes from the photos: the detector's
//! letterboxed inputs, and for each face the float bundle finds, the aligned crop under every
//! TTA view. The files are staged in a temporary folder beside the output, the staged bundle
//! must load and embed, and only then are they moved into place (manifest last): a failure
//! leaves nothing half-written.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use image::RgbImage;

use super::quantize::{self, QuantOptions, QuantStats};
use crate::bundle::{input, Bundle, LoadOptions};
use crate::capture::{self, Limits};
use crate::embed::Embeddings;
use crate::engine::Net;
use crate::pipeline::{self, PipelineOptions};
use crate::rank::cosine_distance;
use crate::{Error, Result};

/// The JPEG/PNG photos of a calibration folder, sorted; an error when there are none.
pub fn calibration_photos(dir: &Path) -> Result<Vec<PathBuf>> {
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

/// Why a calibration photo was not used (fully or for the embedders).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skipped {
    /// Not a readable photo: used for nothing.
    Unreadable(PathBuf),
    /// No face found: used for the detector only.
    NoFace(PathBuf),
}

/// What the float bundle made of the calibration photos.
#[derive(Debug, Clone)]
pub struct Calibration {
    /// Detector inputs (letterboxed, normalised), one per readable photo.
    pub detector_inputs: Vec<Vec<f32>>,
    /// Aligned faces (photo, 112x112 crop), one per photo with a face.
    pub faces: Vec<(PathBuf, RgbImage)>,
    /// The float bundle's embeddings of those faces.
    pub float_embeddings: Vec<Embeddings>,
    /// Photos not used, and why.
    pub skipped: Vec<Skipped>,
    /// The calibration folder (named in errors).
    pub source: PathBuf,
}

impl Calibration {
    /// An error unless some photo showed a face the float bundle detects: the embedders
    /// cannot be calibrated without one.
    pub fn require_faces(&self) -> Result<()> {
        if !self.faces.is_empty() {
            return Ok(());
        }
        let unreadable = self
            .skipped
            .iter()
            .filter(|s| matches!(s, Skipped::Unreadable(_)))
            .count();
        Err(Error::bundle(
            &self.source,
            format!(
                "none of the {} calibration photos shows a face the float bundle detects",
                self.detector_inputs.len() + unreadable
            ),
        ))
    }
}

/// Runs the float bundle over `photos` (from the folder `source`). Photos it cannot read or
/// finds no face in are listed in [`Calibration::skipped`]; [`quantize_bundle`] refuses a
/// calibration without faces ([`Calibration::require_faces`]).
pub fn calibrate(float: &Bundle, photos: &[PathBuf], source: &Path) -> Result<Calibration> {
    let opts = PipelineOptions::default();
    let det = &float.manifest.detector;
    let mut c = Calibration {
        detector_inputs: Vec::new(),
        faces: Vec::new(),
        float_embeddings: Vec::new(),
        skipped: Vec::new(),
        source: source.to_path_buf(),
    };
    for p in photos {
        let Ok(frame) = capture::load_image(p, &Limits::default()) else {
            c.skipped.push(Skipped::Unreadable(p.clone()));
            continue;
        };
        let lb = input::letterbox(&frame.rgb, det.input.width, det.input.height);
        c.detector_inputs
            .push(input::to_nchw(&lb.image, &det.input));
        match pipeline::analyse(float, &frame, &opts) {
            Ok(fa) => {
                c.faces.push((p.clone(), fa.aligned.rgb));
                c.float_embeddings.push(fa.embeddings);
            }
            Err(Error::NoFace { .. }) => c.skipped.push(Skipped::NoFace(p.clone())),
            Err(e) => return Err(e),
        }
    }
    Ok(c)
}

/// How one model was rewritten.
#[derive(Debug, Clone)]
pub struct ModelReport {
    /// `detector` or the embedder's name.
    pub name: String,
    /// What the rewrite did.
    pub stats: QuantStats,
}

/// Cosine agreement of one embedder's int8 embeddings with its float ones.
#[derive(Debug, Clone, PartialEq)]
pub struct CosineAgreement {
    /// Embedder name.
    pub model: String,
    /// Mean cosine similarity over every face and view.
    pub mean: f32,
    /// Smallest cosine similarity.
    pub min: f32,
    /// Embeddings compared.
    pub count: usize,
}

/// How the int8 bundle agrees with the float bundle on the calibration faces.
#[derive(Debug, Clone, PartialEq)]
pub struct Agreement {
    /// Faces compared.
    pub faces: usize,
    /// Per embedder.
    pub models: Vec<CosineAgreement>,
    /// Mean cosine similarity over every embedding.
    pub mean: f32,
    /// Leave-one-out ranking among the faces (needs two faces): same nearest face, of how many.
    pub same_top1: Option<(usize, usize)>,
    /// Leave-one-out ranking: mean overlap of the five nearest faces (fraction).
    pub top5_overlap: Option<f64>,
}

/// What [`quantize_bundle`] wrote and measured.
#[derive(Debug, Clone)]
pub struct QuantizeReport {
    /// One entry per model, detector first.
    pub models: Vec<ModelReport>,
    /// Agreement with the float bundle.
    pub agreement: Agreement,
}

/// `file.onnx` -> `file-int8.onnx`.
pub fn int8_name(file: &str) -> String {
    let stem = file.strip_suffix(".onnx").unwrap_or(file);
    format!("{stem}-int8.onnx")
}

/// The name of the graph's first input that is not an initializer.
fn input_name(bytes: &[u8], path: &Path) -> Result<String> {
    use prost::Message;
    let m = tract_onnx::pb::ModelProto::decode(bytes)
        .map_err(|e| Error::bundle(path, format!("not an ONNX model: {e}")))?;
    let g = m.graph.unwrap_or_default();
    let inits: HashSet<String> = g.initializer.iter().map(|t| t.name.clone()).collect();
    g.input
        .iter()
        .map(|i| i.name.clone())
        .find(|n| !inits.contains(n))
        .ok_or_else(|| Error::bundle(path, "the model has no input"))
}

/// Calibrates and quantizes one model file on `inputs` (its own input tensors).
fn quantize_model(
    path: &Path,
    size: (u32, u32),
    inputs: &[Vec<f32>],
    options: &QuantOptions,
    clip: f64,
) -> Result<(Vec<u8>, QuantStats)> {
    let bytes = crate::fsio::read_capped(path, crate::fsio::Cap::MODEL)
        .map_err(|e| Error::bundle(path, e.to_string()))?;
    let (calib, names) = quantize::calibration_model(&bytes, path)?;
    let net = Net::load(path, &calib, size.0, size.1, &[])?;
    let ranges = quantize::observe(&net, &names, &input_name(&bytes, path)?, inputs, clip)?;
    drop(net);
    quantize::quantize_with(&bytes, path, &ranges, options)
}

/// How to quantize a bundle.
#[derive(Debug, Clone, Copy)]
pub struct QuantizeSettings {
    /// Which layers stay float, activation encoding.
    pub options: QuantOptions,
    /// Fraction of each calibration tensor's values left outside its int8 range, per tail
    /// (0 = min/max); in `[0, 0.5)`.
    pub clip: f64,
    /// Worker threads for loading and checking the int8 bundle.
    pub threads: usize,
}

/// Writes the int8 bundle of `float` (loaded from `float_manifest`) as manifest `out`, its
/// models next to it, calibrated on `calib`. `progress` hears each model as it is done.
/// Nothing is moved into place before the staged bundle has loaded and embedded every
/// calibration face.
pub fn quantize_bundle(
    float: &Bundle,
    float_manifest: &Path,
    calib: &Calibration,
    settings: &QuantizeSettings,
    out: &Path,
    progress: &mut dyn FnMut(&ModelReport),
) -> Result<QuantizeReport> {
    let QuantizeSettings {
        options,
        clip,
        threads,
    } = *settings;
    let options = &options;
    calib.require_faces()?;
    if !(0.0..0.5).contains(&clip) {
        return Err(Error::Usage("the clip fraction must be in [0, 0.5)".into()));
    }
    let out_name = out
        .file_name()
        .ok_or_else(|| Error::Usage(format!("{}: not a file path", out.display())))?;
    let dir = float_manifest.parent().unwrap_or(Path::new("."));
    let out_dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    crate::fsio::create_dir_all(&out_dir).map_err(|e| Error::io(&out_dir, e))?;
    let staging = tempfile::Builder::new()
        .prefix(".gestalt-edge-quantize-")
        .tempdir_in(&out_dir)
        .map_err(|e| Error::io(&out_dir, e))?;
    let mut manifest = float.manifest.clone();
    manifest.bundle.name = format!("{}-int8", manifest.bundle.name);
    manifest.bundle.precision = crate::bundle::Precision::Int8;
    manifest.bundle.description = format!(
        "{} (int8: per-channel weights, activation ranges from {} calibration faces)",
        manifest.bundle.description,
        calib.faces.len()
    );
    let mut models = Vec::new();
    let det = &float.manifest.detector;
    let (q, stats) = quantize_model(
        &dir.join(&det.file),
        (det.input.width, det.input.height),
        &calib.detector_inputs,
        options,
        clip,
    )?;
    manifest.detector.file = int8_name(&det.file);
    manifest.detector.sha256 = crate::bundle::sha256_hex(&q);
    // a compiled file belongs to the float model: `model compile` makes the int8 one
    manifest.detector.compiled = None;
    super::synth::write_atomic(&staging.path().join(&manifest.detector.file), &q)?;
    drop(q);
    models.push(ModelReport {
        name: "detector".into(),
        stats,
    });
    progress(&models[0]);
    for (i, e) in float.manifest.embedders.iter().enumerate() {
        let mut inputs = Vec::new();
        for (_, face) in &calib.faces {
            for v in &e.views {
                let view = crate::embed::view(face, v[0], v[1]);
                inputs.push(input::to_nchw(&view, &e.input));
            }
        }
        let (q, stats) = quantize_model(
            &dir.join(&e.file),
            (e.input.width, e.input.height),
            &inputs,
            options,
            clip,
        )?;
        manifest.embedders[i].file = int8_name(&e.file);
        manifest.embedders[i].sha256 = crate::bundle::sha256_hex(&q);
        manifest.embedders[i].compiled = None;
        super::synth::write_atomic(&staging.path().join(&manifest.embedders[i].file), &q)?;
        drop(q);
        models.push(ModelReport {
            name: e.name.clone(),
            stats,
        });
        progress(&models[i + 1]);
    }
    let text = toml::to_string(&manifest)
        .map_err(|e| Error::bundle(out, format!("cannot write the manifest: {e}")))?;
    let staged_manifest = staging.path().join(out_name);
    super::synth::write_atomic(&staged_manifest, text.as_bytes())?;
    // the int8 bundle must load (every op supported, shapes as the manifest says) and embed
    let int8 = Bundle::load(
        &staged_manifest,
        LoadOptions {
            threads,
            ..Default::default()
        },
    )?;
    let mut int8_emb = Vec::new();
    for (_, face) in &calib.faces {
        int8_emb.push(int8.embed(face)?);
    }
    let names: Vec<String> = float
        .manifest
        .embedders
        .iter()
        .map(|e| e.name.clone())
        .collect();
    let agreement = agreement(&names, &calib.float_embeddings, &int8_emb);
    // move the models, then the manifest
    let files = std::iter::once(manifest.detector.file.clone())
        .chain(manifest.embedders.iter().map(|e| e.file.clone()))
        .chain(std::iter::once(out_name.to_string_lossy().into_owned()));
    for f in files {
        let to = out_dir.join(&f);
        std::fs::rename(staging.path().join(&f), &to).map_err(|e| Error::io(&to, e))?;
    }
    Ok(QuantizeReport { models, agreement })
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

/// Faces ranked by distance to face `i` (leave-one-out), nearest first.
fn ranked(emb: &[Embeddings], i: usize) -> Vec<usize> {
    let mut v: Vec<(f32, usize)> = (0..emb.len())
        .filter(|&j| j != i)
        .map(|j| (distance(&emb[i], &emb[j]), j))
        .collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    v.into_iter().map(|(_, j)| j).collect()
}

/// Agreement of `q` (int8) with `f` (float), face by face, per embedder in `names`.
pub fn agreement(names: &[String], f: &[Embeddings], q: &[Embeddings]) -> Agreement {
    let mut all = Vec::new();
    let mut models = Vec::new();
    for name in names {
        let cos: Vec<f32> = f
            .iter()
            .zip(q)
            .flat_map(|(a, b)| {
                a.entries
                    .iter()
                    .filter(|(k, _)| &k.model == name)
                    .filter_map(|(k, v)| b.get(k).map(|w| 1.0 - cosine_distance(v, w)))
                    .collect::<Vec<_>>()
            })
            .collect();
        models.push(CosineAgreement {
            model: name.clone(),
            mean: cos.iter().sum::<f32>() / cos.len().max(1) as f32,
            min: cos.iter().copied().fold(f32::INFINITY, f32::min),
            count: cos.len(),
        });
        all.extend(cos);
    }
    let mean = all.iter().sum::<f32>() / all.len().max(1) as f32;
    let n = f.len().min(q.len());
    let (mut same_top1, mut top5_overlap) = (None, None);
    if n >= 2 {
        let (mut top1, mut top5) = (0usize, 0.0f64);
        for i in 0..n {
            let (rf, rq) = (ranked(&f[..n], i), ranked(&q[..n], i));
            top1 += usize::from(rf.first() == rq.first());
            let k = rf.len().min(5);
            let a: HashSet<_> = rf[..k].iter().collect();
            top5 += rq[..k].iter().filter(|j| a.contains(j)).count() as f64 / k.max(1) as f64;
        }
        same_top1 = Some((top1, n));
        top5_overlap = Some(top5 / n as f64);
    }
    Agreement {
        faces: n,
        models,
        mean,
        same_top1,
        top5_overlap,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::Key;

    fn emb(model: &str, v: &[[f32; 2]]) -> Embeddings {
        let entries = v
            .iter()
            .enumerate()
            .map(|(i, x)| {
                let key = Key {
                    model: model.into(),
                    flip: i % 2 == 1,
                    gray: i >= 2,
                };
                (key, x.to_vec())
            })
            .collect();
        Embeddings { entries }
    }

    #[test]
    fn agreement_measures_cosines_and_leave_one_out_ranks() {
        let names = vec!["m".to_string()];
        let f: Vec<_> = [[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]
            .iter()
            .map(|v| emb("m", &[*v, *v]))
            .collect();
        let same = agreement(&names, &f, &f);
        assert!((same.mean - 1.0).abs() < 1e-6 && same.models[0].count == 6);
        assert_eq!(same.same_top1, Some((3, 3)));
        assert_eq!(same.top5_overlap, Some(1.0));
        // face 1 turned towards face 2: its nearest face becomes 2 (was 0); faces 0 and 2
        // keep face 1 as their nearest
        let mut q = f.clone();
        q[1] = emb("m", &[[0.1, 0.9], [0.1, 0.9]]);
        let g = agreement(&names, &f, &q);
        assert!(g.mean < 0.9 && g.models[0].min < 0.3, "{g:?}");
        assert_eq!(g.same_top1, Some((2, 3)));
        // one face: no ranking
        let one = agreement(&names, &f[..1], &f[..1]);
        assert_eq!((one.same_top1, one.top5_overlap), (None, None));
    }

    #[test]
    fn a_calibration_without_faces_is_refused_and_counts_every_photo() {
        let mut c = Calibration {
            detector_inputs: vec![vec![0.0; 3]; 2],
            faces: Vec::new(),
            float_embeddings: Vec::new(),
            skipped: vec![
                Skipped::Unreadable("a.jpg".into()),
                Skipped::NoFace("b.jpg".into()),
                Skipped::NoFace("c.jpg".into()),
            ],
            source: "calib".into(),
        };
        let err = c.require_faces().unwrap_err();
        assert!(matches!(err, Error::Bundle { .. }), "{err}");
        assert!(
            err.to_string().contains("none of the 3 calibration photos"),
            "{err}"
        );
        c.faces.push(("d.jpg".into(), RgbImage::new(112, 112)));
        assert!(c.require_faces().is_ok());
    }

    #[test]
    fn int8_files_sit_beside_their_float_names() {
        assert_eq!(int8_name("sface.onnx"), "sface-int8.onnx");
        assert_eq!(int8_name("model"), "model-int8.onnx");
    }

    #[test]
    fn a_calibration_folder_needs_photos() {
        let dir = tempfile::tempdir().unwrap();
        let err = calibration_photos(dir.path()).unwrap_err();
        assert!(matches!(err, Error::Bundle { .. }), "{err}");
        assert!(err.to_string().contains("no JPEG or PNG"), "{err}");
        std::fs::write(dir.path().join("b.PNG"), b"x").unwrap();
        std::fs::write(dir.path().join("a.jpg"), b"x").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        let got = calibration_photos(dir.path()).unwrap();
        let names: Vec<_> = got.iter().map(|p| p.file_name().unwrap()).collect();
        assert_eq!(names, ["a.jpg", "b.PNG"]);
        assert!(calibration_photos(&dir.path().join("missing")).is_err());
    }
}
