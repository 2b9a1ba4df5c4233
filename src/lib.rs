//! gestalt-edge: offline facial-phenotype matching for clinic devices.
//!
//! The pipeline of GestaltMatcher-Arc, one stage per module, plain data in and out:
//!
//! ```text
//! capture  -> Frame            (decoded RGB photo + where it came from)
//! detect   -> Detection        (box, score, 5 landmarks in frame pixels)
//! align    -> AlignedFace      (112x112 RGB crop on the ArcFace template)
//! embed    -> Embeddings       (one vector per (model, flip, gray) key)
//! rank     -> Ranking          (syndromes, genes, patients by cosine distance)
//! ```
//!
//! `bundle` is what a bundle is (manifest, sha256 checks, bundle id, loading); `engine` runs
//! its networks (tract, or onnxruntime with the `ort` feature); `gallery` is the on-device
//! file of diagnosed cases; `pipeline` composes the stages (`fuse` merges several photos of
//! one patient into one query); `sign` checks detached ed25519 signatures over manifests and
//! galleries; `rollback` keeps the highest signed revision seen per bundle and gallery;
//! `fsio` writes files atomically under one
//! permission rule. `gmdb` reads the GestaltMatcher reference files, `eval` runs the paper's
//! protocol, `board` and `display` drive a device, and `tools` is the workstation toolchain
//! (model synth, quantize, calibrate, profile, synthetic galleries). The library never
//! prints and never reads the environment; the `gestalt-edge` binary is a thin layer on top.

pub mod align;
pub mod board;
pub mod bundle;
pub mod capture;
pub mod detect;
pub mod display;
pub mod embed;
pub mod engine;
pub mod error;
pub mod eval;
pub mod fsio;
pub mod fuse;
pub mod gallery;
pub mod gmdb;
pub mod pipeline;
pub mod rank;
pub mod rollback;
pub mod sign;
pub mod tools;

pub use error::{Error, Result};
