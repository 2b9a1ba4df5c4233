//! Evaluation: the GestaltMatcher-Arc paper's protocol and identity verification.
//!
//! Consumes the reference data files ([`crate::gmdb`]: encodings CSV, image lists, syndromes
//! TSV, gene metadata) or embeddings the bundle computed from photos; produces the paper's
//! top-k mean accuracy ([`metric`]) per split and averaged ([`protocol`]), the verification
//! accuracy and ROC AUC on photo pairs ([`verify`]), a folder's photos found by image id
//! ([`photos`]), and a PNG of the top-k curves
//! ([`plot`]). Ranking goes through [`crate::rank`], so evaluation ranks exactly as
//! `predict` does. Errors in the data files are [`crate::Error::Gallery`] (exit code 6)
//! naming the file and line; photos that cannot be read are [`crate::Error::Image`] (4).

pub mod metric;
pub mod photos;
pub mod plot;
pub mod protocol;
pub mod verify;

pub use metric::{Outcome, PAPER_KS};
pub use protocol::{evaluate, EvalOptions, EvalReport, SplitResult};
