//! Fuzz target `image_to_top5`: see `replay::image_to_top5` (fuzz/replay.rs).
#![no_main]

#[path = "../replay.rs"]
mod replay;

libfuzzer_sys::fuzz_target!(|data: &[u8]| replay::image_to_top5(data));
