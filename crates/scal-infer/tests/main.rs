//! scal-infer's integration tests, in one binary (each test binary links its dependencies).

mod embed;
#[cfg(feature = "onnx")]
mod onnx;
