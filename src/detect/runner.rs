//! The detector stage over a bundle's detector network: the photo fitted to the network's
//! input, one forward pass, and the decoder the manifest names.
//!
//! Consumes a loaded [`Bundle`] and an RGB photo; produces every face above the manifest's
//! score threshold after NMS, best first, in photo pixels ([`Bundle::detect`]). The bundle
//! module loads and verifies networks and knows nothing of detection; the decoders
//! ([`super::yunet`], [`super::retinaface`]) know nothing of networks; this file joins them.
//! Picking one face among several is the pipeline's business ([`super::choose`]).

use image::RgbImage;

use super::{retinaface, yunet, Detection};
use crate::bundle::{input, Bundle, DetectorKind, DetectorSpec, InputSpec};
use crate::engine::Net;
use crate::{Error, Result};

impl Bundle {
    /// Finds faces in `image`. Returns every face above the manifest's score threshold after
    /// NMS, best first, in `image` pixel coordinates (not rounded).
    pub fn detect(&self, image: &RgbImage) -> Result<Vec<Detection>> {
        let spec = &self.manifest.detector;
        check_outputs(&self.detector, spec)?;
        let (lb, outputs, w, h) = match &self.exact {
            None => {
                let lb = input::letterbox(image, spec.input.width, spec.input.height);
                let outputs = self.detector.run(input::to_nchw(&lb.image, &spec.input))?;
                (lb, outputs, spec.input.width, spec.input.height)
            }
            Some(exact) => {
                // the reference: long side to the input's larger side, no padding
                let long = spec.input.width.max(spec.input.height);
                let lb = input::letterbox(image, long, long);
                let (w, h) = lb.image.dimensions();
                let net = exact.plan(self.detector.path(), w, h)?;
                let shaped = InputSpec {
                    width: w,
                    height: h,
                    ..spec.input.clone()
                };
                let outputs = net.run(input::to_nchw(&lb.image, &shaped))?;
                (lb, outputs, w, h)
            }
        };
        let decoded = match spec.kind {
            DetectorKind::Yunet => {
                let params = yunet::YunetParams {
                    score_threshold: spec.score_threshold,
                    nms_iou: spec.nms_iou,
                    ..Default::default()
                };
                yunet::levels_from_outputs(&outputs)
                    .and_then(|levels| yunet::decode(&levels, w, h, &params))
            }
            DetectorKind::Retinaface => {
                let cfg = retinaface::PriorConfig::default();
                let priors = retinaface::priors(&cfg, h, w);
                let params = retinaface::DecodeParams {
                    score_threshold: spec.score_threshold,
                    nms_iou: spec.nms_iou,
                    scores_are_logits: spec.conf_is_logits,
                    ..Default::default()
                };
                retinaface::decode(
                    &outputs[0],
                    &outputs[1],
                    &outputs[2],
                    &priors,
                    w,
                    h,
                    &cfg,
                    &params,
                )
            }
        }
        .map_err(|source| Error::Decode {
            path: self.detector.path().to_path_buf(),
            source,
        })?;
        let inv = (1.0 / lb.scale) as f32;
        Ok(decoded.iter().map(|d| d.scaled(inv, inv)).collect())
    }
}

/// Checks that the detector's outputs have the sizes its decoder needs for the manifest's
/// input size: an [`Error::Bundle`] naming the model file when they do not.
pub fn check_outputs(net: &Net, spec: &DetectorSpec) -> Result<()> {
    let (w, h) = (spec.input.width as usize, spec.input.height as usize);
    let outs = net.outputs();
    match spec.kind {
        DetectorKind::Yunet => {
            for (i, (name, shape)) in outs.iter().enumerate() {
                let stride = yunet::STRIDES[i % 3] as usize;
                let n = (h / stride) * (w / stride);
                let per = [1, 1, 4, 10][i / 3];
                if shape.iter().product::<usize>() != n * per {
                    return Err(Error::bundle(
                        net.path(),
                        format!("YuNet output {name} has shape {shape:?}, expected {n} x {per} for a {w}x{h} input"),
                    ));
                }
            }
        }
        DetectorKind::Retinaface => {
            let n =
                retinaface::priors(&retinaface::PriorConfig::default(), h as u32, w as u32).len();
            if outs.len() < 3 {
                return Err(Error::bundle(
                    net.path(),
                    "RetinaFace needs three outputs: loc, conf, landmarks",
                ));
            }
            for ((name, shape), per) in outs.iter().zip([4usize, 2, 10]) {
                if shape.iter().product::<usize>() != n * per {
                    return Err(Error::bundle(
                        net.path(),
                        format!("RetinaFace output {name} has shape {shape:?}, expected {n} x {per} priors for a {w}x{h} input"),
                    ));
                }
            }
        }
    }
    Ok(())
}
