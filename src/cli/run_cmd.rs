//! `gestalt-edge run` (being built).

use gestalt_edge::{Error, Result};

/// Arguments of `run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {}

pub fn run(_a: RunArgs) -> Result<i32> {
    Err(Error::Usage(
        "`gestalt-edge run` is not available in this build yet".into(),
    ))
}
