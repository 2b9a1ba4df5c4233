//! Inference engines beside the tract-onnx one in `bundle`: today the native engine on
//! tract-linalg kernels.

pub mod native;
