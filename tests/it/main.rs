//! The integration tests: one binary (the crate and tract are linked once), a module per
//! area, and one command builder ([`util`]) that runs the `gestalt-edge` binary in a clean,
//! hermetic environment. Most modules run on the real demo bundle (`scripts/setup.sh`);
//! golden files come with the scripts that made them (`tests/golden/`).
//!
//! Run one area with a filter: `cargo test --test it corpus::`.

mod craft;
mod util;

mod align_golden;
mod bad_input;
mod bounded_reads;
mod cli;
mod clinical;
mod corpus;
mod detector_input;
mod device;
mod device_screens;
mod eval;
mod gallery_locks;
mod gallery_search;
mod import;
mod killtest;
mod model_cache;
mod native_engine;
mod no_network;
mod ort_backend;
mod outputs;
mod parity;
mod perf_models;
mod reference_export;
mod sign;
mod tampered_inputs;
mod trust;
