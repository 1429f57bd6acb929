//! scal-backbone's integration tests, in one binary (each test binary links its dependencies).

mod torchvision_parity;
