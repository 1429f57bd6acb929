//! `cargo xtask devices`: the devices of a backend with their indices, as `train
//! --devices` and `--hosts` name them.

use anyhow::Result;
use scal_run::Backend;

/// Lists the devices of a backend with their indices (for `--devices`).
#[derive(Debug, clap::Args)]
pub struct DevicesArgs {
    /// Compute backend among those compiled in: flex, wgpu, cuda or remote.
    #[arg(long, default_value = "flex")]
    pub backend: Backend,
    /// With --backend remote: the servers, in the order `train --hosts` will name them.
    #[arg(long, value_delimiter = ',', value_name = "ws://HOST:PORT,...")]
    pub hosts: Vec<String>,
}

impl DevicesArgs {
    /// Runs `cargo xtask devices`.
    pub fn run(self) -> Result<()> {
        for (i, d) in crate::backend::all_devices(self.backend, &self.hosts)?
            .iter()
            .enumerate()
        {
            println!("{i}: {}", crate::backend::device_name(self.backend, d));
        }
        Ok(())
    }
}
