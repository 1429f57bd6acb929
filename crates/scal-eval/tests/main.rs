//! scal-eval's integration tests, in one binary (each test binary links its dependencies).

mod npy;
mod per_query;
mod properties;
mod reference;
mod rerank_features;
