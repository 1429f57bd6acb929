//! scal-data's integration tests, in one binary (each test binary links its dependencies).

mod corrupt;
mod datasets;
#[cfg(feature = "download")]
mod download;
mod loader;
mod sampler;
mod torchvision_transform;
