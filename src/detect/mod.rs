//! Face detection: model-independent decoding of detector outputs into [`Detection`]s.
//!
//! Consumes raw output tensors (plain `f32` slices) and produces boxes, scores and 5 landmarks
//! in the pixel coordinates of the detector input. Two decoders: [`retinaface`] (priors +
//! variances, as the reference) and [`yunet`] (anchor-free, the demo detector); [`nms`] is
//! shared. `runner.rs` runs the bundle's detector network and decodes its outputs
//! ([`crate::bundle::Bundle::detect`]); [`choose`] picks the face to analyse.

pub mod nms;
pub mod retinaface;
mod runner;
pub mod yunet;

/// Why raw detector outputs could not be decoded: tensors whose lengths do not fit the
/// priors or grid, or a decoder configuration that cannot work. The detector runner turns
/// this into an [`Error::Decode`](crate::Error::Decode) for the model file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// An output tensor holds the wrong number of values.
    #[error("detector output `{tensor}` has {got} values, expected {expected}")]
    Length {
        /// Which output (for example `loc`, `conf`, `cls_8`).
        tensor: String,
        /// Values implied by the priors or the grid.
        expected: usize,
        /// Values actually received.
        got: usize,
    },
    /// The decoder configuration or the input size is unusable (zero size, zero stride...).
    #[error("detector configuration: {0}")]
    Config(String),
}

/// One face: box, confidence and the five landmarks, all in pixels.
///
/// Landmark order: image-left eye, image-right eye, nose tip, left mouth corner, right mouth
/// corner (the RetinaFace / ArcFace order).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// Box as `[x1, y1, x2, y2]` in pixels.
    pub bbox_px: [f32; 4],
    /// Detector confidence in `0..=1`.
    pub score: f32,
    /// Five landmarks `[x, y]` in pixels.
    pub landmarks_px: [[f32; 2]; 5],
}

impl Detection {
    /// Box area in square pixels (plain convention, no "+1").
    pub fn area(&self) -> f32 {
        let [x1, y1, x2, y2] = self.bbox_px;
        (x2 - x1).max(0.0) * (y2 - y1).max(0.0)
    }

    /// True when the box and every landmark are finite numbers.
    pub fn is_finite(&self) -> bool {
        self.bbox_px
            .iter()
            .chain(self.landmarks_px.iter().flatten())
            .all(|v| v.is_finite())
    }

    /// The same detection with every coordinate multiplied by `sx` (x) and `sy` (y).
    pub fn scaled(&self, sx: f32, sy: f32) -> Detection {
        let mut d = *self;
        d.bbox_px = [
            d.bbox_px[0] * sx,
            d.bbox_px[1] * sy,
            d.bbox_px[2] * sx,
            d.bbox_px[3] * sy,
        ];
        for p in d.landmarks_px.iter_mut() {
            p[0] *= sx;
            p[1] *= sy;
        }
        d
    }
}

/// Which face to analyse when a photo holds several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FaceChoice {
    /// The highest detector score (the reference behaviour).
    #[default]
    HighestScore,
    /// The largest box.
    Largest,
}

/// Picks one face out of `faces` by `choice`; ties keep the earlier detection.
pub fn choose(faces: &[Detection], choice: FaceChoice) -> Option<Detection> {
    let mut best: Option<&Detection> = None;
    for f in faces {
        let better = match (best, choice) {
            (None, _) => true,
            (Some(b), FaceChoice::HighestScore) => f.score > b.score,
            (Some(b), FaceChoice::Largest) => f.area() > b.area(),
        };
        if better {
            best = Some(f);
        }
    }
    best.copied()
}

/// Assertions shared by the decoders' unit tests.
#[cfg(test)]
pub(crate) mod test_util {
    use super::Detection;

    /// Element-wise `|got - want| <= tol`, same lengths.
    pub fn assert_close(got: &[f32], want: &[f32], tol: f32) {
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() <= tol, "{got:?} vs {want:?}");
        }
    }

    /// A frontal face: the ArcFace template scaled into a 100 px box at (50, 40), score 0.9.
    pub fn template_face() -> Detection {
        let s = 100.0 / 112.0;
        Detection {
            bbox_px: [50.0, 40.0, 150.0, 152.0],
            score: 0.9,
            landmarks_px: crate::align::ARCFACE_TEMPLATE_112
                .map(|[x, y]| [50.0 + x * s, 40.0 + y * s]),
        }
    }

    /// Box then landmarks as one list.
    pub fn flat(d: &Detection) -> Vec<f32> {
        let mut v = d.bbox_px.to_vec();
        v.extend(d.landmarks_px.iter().flatten());
        v
    }
}
