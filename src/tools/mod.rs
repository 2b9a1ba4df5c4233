//! The workstation toolchain: what makes, shrinks and inspects bundles and galleries, as
//! opposed to what runs on a device.
//!
//! Consumes ONNX models, float bundles, calibration photos and gallery keys; produces
//! architecture-exact ONNX graphs with seeded weights ([`synth`]), the native engine's
//! compiled files pinned in the manifest ([`compile`]), int8 models ([`quantize`])
//! and whole int8 bundles checked against the float one ([`calibrate`]), per-operator time
//! profiles ([`profile`]) and synthetic galleries for benchmarks ([`gallery`]). Nothing on the
//! photo path depends on this module; it may use every stage.

pub mod calibrate;
pub mod compile;
pub mod gallery;
pub mod profile;
pub mod quantize;
pub mod synth;
