//! scal-critic's integration tests, in one binary (each test binary links its dependencies).

mod per_sample_credit;
