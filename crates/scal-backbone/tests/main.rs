//! scal-backbone's integration tests, in one binary (each test binary links its dependencies).

mod flex_ops;
mod toolkit_checkpoints;
mod torchvision_parity;
