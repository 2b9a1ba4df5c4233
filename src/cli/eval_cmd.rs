//! `gestalt-edge eval` (being built).

use gestalt_edge::{Error, Result};

/// Arguments of `eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {}

pub fn run(_a: EvalArgs) -> Result<i32> {
    Err(Error::Usage(
        "`gestalt-edge eval` is not available in this build yet".into(),
    ))
}
