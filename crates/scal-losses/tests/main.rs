//! scal-losses's integration tests, in one binary (each test binary links its dependencies).

mod pytorch_parity;
