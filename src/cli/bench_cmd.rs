//! `gestalt-edge bench` (being built).

use gestalt_edge::{Error, Result};

/// Arguments of `bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {}

pub fn run(_a: BenchArgs) -> Result<i32> {
    Err(Error::Usage(
        "`gestalt-edge bench` is not available in this build yet".into(),
    ))
}
