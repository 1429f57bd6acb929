//! The command line's tests, in one binary (each test binary links Burn): the commands run
//! as a user runs them (`CARGO_BIN_EXE_xtask`), and, behind the `remote` and `wgpu` features,
//! several machines on localhost and flex against wgpu.

mod architecture;
mod bench_cli;
mod common;
mod datasets_cli;
mod evaluate_cli;
mod export_cli;
mod extract_cli;
mod index_cli;
mod query_cli;
mod reliability_cli;
mod serve_gate;
mod setup_cuda_cli;
mod train_cli;
mod trial4_cli;

#[cfg(feature = "wgpu")]
mod backend_parity;
#[cfg(all(feature = "remote", feature = "flex"))]
mod remote;
#[cfg(feature = "remote")]
mod remote_cli;
