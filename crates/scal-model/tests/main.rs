//! scal-model's integration tests, in one binary (each test binary links its dependencies).

mod counterfactual;
mod model;
mod routing;
mod self_critical;
