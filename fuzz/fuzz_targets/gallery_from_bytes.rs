//! Fuzz target `gallery_from_bytes`: see `replay::gallery_from_bytes` (fuzz/replay.rs).
#![no_main]

#[path = "../replay.rs"]
mod replay;

libfuzzer_sys::fuzz_target!(|data: &[u8]| replay::gallery_from_bytes(data));
