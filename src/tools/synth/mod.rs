//! Architecture-exact ONNX graphs with seeded weights, for speed, memory and plumbing work
//! on the real shapes when the real weights are not at hand (no registry ships RetinaFace or
//! ArcFace iResNet weights; clinical users bring their own exports).
//!
//! Consumes an [`Arch`] and a seed; produces a [`Synth`]: the ONNX bytes plus the
//! architecture's parameter and multiply-accumulate counts. Same arch + seed = same bytes.
//! [`write_atomic`] stores the bytes (temp file, fsync, rename).

mod graph;
pub mod iresnet;
pub mod retinaface;

pub use graph::Rng;

use std::path::Path;

use crate::Result;

/// A model architecture `model synth` can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// ArcFace iResNet-50, 112x112 -> 512 (43.6 M parameters, 6.3 GMAC).
    Iresnet50,
    /// ArcFace iResNet-100, 112x112 -> 512 (65.2 M parameters, 12.1 GMAC).
    Iresnet100,
    /// RetinaFace with a MobileNetV1 x0.25 backbone, 640x640 input.
    RetinafaceMnet025,
    /// RetinaFace with a ResNet-50 backbone, 640x640 input.
    RetinafaceR50,
}

impl Arch {
    /// Every architecture, in CLI order.
    pub const ALL: [Arch; 4] = [
        Arch::Iresnet50,
        Arch::Iresnet100,
        Arch::RetinafaceMnet025,
        Arch::RetinafaceR50,
    ];

    /// The CLI name (`iresnet50`, `iresnet100`, `retinaface-mnet025`, `retinaface-r50`).
    pub fn name(self) -> &'static str {
        match self {
            Arch::Iresnet50 => "iresnet50",
            Arch::Iresnet100 => "iresnet100",
            Arch::RetinafaceMnet025 => "retinaface-mnet025",
            Arch::RetinafaceR50 => "retinaface-r50",
        }
    }

    /// Parses a CLI name.
    pub fn from_name(name: &str) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// A synthesised model.
#[derive(Debug, Clone)]
pub struct Synth {
    /// The serialised ONNX model.
    pub onnx: Vec<u8>,
    /// Trainable parameters (PyTorch's count: BN running statistics excluded).
    pub params: u64,
    /// Multiply-accumulates of one forward pass at the default input size.
    pub macs: u64,
}

/// Default detector input (square), pixels.
pub const DETECTOR_SIZE: usize = 640;

/// Builds `arch` with weights drawn from `seed`.
pub fn synth(arch: Arch, seed: u64) -> Synth {
    let doc = format!(
        "{}: architecture-exact graph with random weights (seed {seed}); not a trained model",
        arch.name()
    );
    let g = match arch {
        Arch::Iresnet50 => iresnet::build([3, 4, 14, 3], seed),
        Arch::Iresnet100 => iresnet::build([3, 13, 30, 3], seed),
        Arch::RetinafaceMnet025 => retinaface::build(
            retinaface::Backbone::Mobilenet025,
            DETECTOR_SIZE,
            DETECTOR_SIZE,
            seed,
        ),
        Arch::RetinafaceR50 => retinaface::build(
            retinaface::Backbone::Resnet50,
            DETECTOR_SIZE,
            DETECTOR_SIZE,
            seed,
        ),
    };
    let (params, macs) = (g.params, g.macs);
    Synth {
        onnx: g.finish(arch.name(), &doc),
        params,
        macs,
    }
}

/// Writes model bytes to `path` atomically ([`crate::fsio`]), readable by all (0644: model
/// files and manifests are read by an unprivileged service user).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::fsio::write_atomic(path, bytes, crate::fsio::Access::Shared)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn written_models_are_readable_by_all() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.onnx");
        write_atomic(&p, b"abc").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert_eq!(std::fs::read(&p).unwrap(), b"abc");
    }

    #[test]
    fn iresnet_counts_match_the_paper() {
        let r50 = synth(Arch::Iresnet50, 1);
        let r100 = synth(Arch::Iresnet100, 1);
        // the paper's iResNet-50 / -100: 43.6 M / 65.2 M parameters, 6.3 / 12.1 GMAC
        assert_eq!((r50.params as f64 / 1e5).round(), 436.0, "{}", r50.params);
        assert_eq!((r100.params as f64 / 1e5).round(), 652.0, "{}", r100.params);
        assert_eq!((r50.macs as f64 / 1e8).round(), 63.0, "{}", r50.macs);
        assert_eq!((r100.macs as f64 / 1e8).round(), 121.0, "{}", r100.macs);
        // weights dominate the file: 4 bytes per parameter plus BN statistics
        assert!(r100.onnx.len() as u64 > r100.params * 4);
    }

    #[test]
    fn retinaface_counts() {
        let m = synth(Arch::RetinafaceMnet025, 1);
        let r = synth(Arch::RetinafaceR50, 1);
        // Pytorch_Retinaface: mobilenet0.25 ~0.43 M parameters, ResNet-50 ~27.3 M
        assert_eq!((m.params as f64 / 1e4).round(), 43.0, "{}", m.params);
        assert_eq!((r.params as f64 / 1e5).round(), 273.0, "{}", r.params);
    }

    #[test]
    fn seeded_and_deterministic() {
        let a = synth(Arch::RetinafaceMnet025, 7);
        let b = synth(Arch::RetinafaceMnet025, 7);
        let c = synth(Arch::RetinafaceMnet025, 8);
        assert_eq!(a.onnx, b.onnx);
        assert_ne!(a.onnx, c.onnx);
        assert_eq!(a.params, c.params);
    }

    #[test]
    fn names_round_trip() {
        for a in Arch::ALL {
            assert_eq!(Arch::from_name(a.name()), Some(a));
        }
        assert_eq!(Arch::from_name("resnet"), None);
    }
}
