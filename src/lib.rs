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
//! `bundle` loads the models a manifest describes (the only tract-aware code), `gallery` is
//! the on-device file of diagnosed cases, `pipeline` composes the stages, and `sign` checks
//! detached ed25519 signatures over manifests and galleries. The library never
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
pub mod gallery;
pub mod pipeline;
pub mod rank;
pub mod sign;

pub use error::{Error, Result};
