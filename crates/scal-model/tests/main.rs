//! scal-model's integration tests, in one binary (each test binary links its dependencies).

mod model;
mod routing;
mod self_critical;
