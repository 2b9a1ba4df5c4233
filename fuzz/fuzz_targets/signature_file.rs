//! Fuzz target `signature_file`: see `replay::signature_file` (fuzz/replay.rs).
#![no_main]

#[path = "../replay.rs"]
mod replay;

libfuzzer_sys::fuzz_target!(|data: &[u8]| replay::signature_file(data));
