//! `gestalt-edge gallery import` (being built).

use gestalt_edge::{Error, Result};

/// Arguments of `gallery import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {}

pub fn run(_a: ImportArgs) -> Result<i32> {
    Err(Error::Usage(
        "`gestalt-edge gallery import` is not available in this build yet".into(),
    ))
}
