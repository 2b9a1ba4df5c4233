//! One file per subcommand: each turns resolved settings into library calls and prints the
//! result.

pub mod bench;
mod bench_engines;
pub mod compile;
pub mod curate;
pub mod eval;
mod fuse;
pub mod gallery;
pub mod import;
pub mod model;
pub mod predict;
mod quantize;
pub mod run;
pub mod sign;
mod writer;
