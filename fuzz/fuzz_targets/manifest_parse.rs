//! Fuzz target `manifest_parse`: see `replay::manifest_parse` (fuzz/replay.rs).
#![no_main]

#[path = "../replay.rs"]
mod replay;

libfuzzer_sys::fuzz_target!(|data: &[u8]| replay::manifest_parse(data));
