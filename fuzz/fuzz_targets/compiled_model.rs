//! Fuzz target `compiled_model`: see `replay::compiled_model` (fuzz/replay.rs).
#![no_main]

#[path = "../replay.rs"]
mod replay;

libfuzzer_sys::fuzz_target!(|data: &[u8]| replay::compiled_model(data));
