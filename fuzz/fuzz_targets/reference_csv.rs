//! Fuzz target `reference_csv`: see `replay::reference_csv` (fuzz/replay.rs).
#![no_main]

#[path = "../replay.rs"]
mod replay;

libfuzzer_sys::fuzz_target!(|data: &[u8]| replay::reference_csv(data));
