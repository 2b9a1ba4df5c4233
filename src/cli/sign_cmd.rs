//! `gestalt-edge sign` (being built).

use gestalt_edge::{Error, Result};

/// Arguments of `sign`.
#[derive(Debug, clap::Args)]
pub struct SignArgs {}

pub fn run(_a: SignArgs) -> Result<i32> {
    Err(Error::Usage(
        "`gestalt-edge sign` is not available in this build yet".into(),
    ))
}
