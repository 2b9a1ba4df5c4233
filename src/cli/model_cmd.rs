//! `gestalt-edge model ...` (being built).

use gestalt_edge::{Error, Result};

/// Model tools.
#[derive(Debug, clap::Subcommand)]
pub enum ModelCommand {
    /// Write an architecture-exact ONNX graph with seeded weights.
    Synth,
}

pub fn run(_c: ModelCommand) -> Result<i32> {
    Err(Error::Usage(
        "`gestalt-edge model` is not available in this build yet".into(),
    ))
}
