//! `cargo xtask serve`: this machine's devices for training driven from another machine
//! (`cargo xtask train --backend remote --hosts ws://THIS_MACHINE:PORT`), through Burn's
//! remote backend over WebSocket.

use anyhow::{Result, bail};
use scal_train::Backend;

/// Serve this machine's devices to `--backend remote` clients until Ctrl-C or SIGTERM.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The backend of the served devices: flex, wgpu or cuda.
    #[arg(long, default_value = "flex")]
    pub backend: Backend,
    /// Which of the backend's devices to serve (as `cargo xtask devices` lists them); a
    /// client's index i is the i-th of these. Default: all of them.
    #[arg(long, value_delimiter = ',', value_name = "I,J,...")]
    pub devices: Option<Vec<usize>>,
    /// TCP port to listen on (0: any free port, printed on start).
    #[arg(long, default_value_t = 3000)]
    pub port: u16,
    /// Address to listen on (0.0.0.0: every interface; 127.0.0.1: this machine only).
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: String,
}

/// Runs `cargo xtask serve`; returns when the process is asked to stop.
pub fn run(args: &ServeArgs) -> Result<()> {
    if args.backend == Backend::Remote {
        bail!("--backend remote: a server serves its own devices: flex, wgpu or cuda");
    }
    let devices = match &args.devices {
        Some(indices) => crate::backend::devices(args.backend, &[], indices)?,
        None => crate::backend::all_devices(args.backend, &[])?,
    };
    if devices.is_empty() {
        bail!("--devices: name at least one device");
    }
    serve(args, devices)
}

#[cfg(feature = "remote")]
fn serve(args: &ServeArgs, devices: Vec<burn::tensor::Device>) -> Result<()> {
    use crate::backend::TOKEN_VAR;
    use anyhow::Context;
    use burn::server::{RemoteServer, TokenAuthorizer, WebSocketTransport};

    let listener = std::net::TcpListener::bind((args.bind.as_str(), args.port))
        .with_context(|| format!("--bind {} --port {}: cannot listen", args.bind, args.port))?;
    let address = listener.local_addr()?;
    let mut server = RemoteServer::new(devices.iter().cloned());
    let token = std::env::var(TOKEN_VAR).ok().filter(|t| !t.is_empty());
    if let Some(token) = &token {
        server = server.with_authorizer(
            TokenAuthorizer::new(token.as_str())
                .map_err(|e| anyhow::anyhow!("{TOKEN_VAR}: {e}"))?,
        );
    }
    for (i, d) in devices.iter().enumerate() {
        println!(
            "device {i}: {}",
            crate::bench::measures::device_name(args.backend, d)
        );
    }
    println!(
        "serving {} {} device(s) on ws://{address} ({}); clients: cargo xtask train --backend remote --hosts ws://THIS_HOST:{}",
        devices.len(),
        args.backend,
        if token.is_some() {
            format!("clients must set {TOKEN_VAR} to the same token")
        } else {
            format!("any client is admitted: set {TOKEN_VAR} on both sides to require a token")
        },
        address.port()
    );
    server
        .serve(WebSocketTransport::from_listener(listener))
        .map_err(|e| anyhow::anyhow!("serving on ws://{address}: {e}"))
}

#[cfg(not(feature = "remote"))]
fn serve(_args: &ServeArgs, _devices: Vec<burn::tensor::Device>) -> Result<()> {
    bail!(
        "this binary was built without the `remote` feature: rebuild with \
         `cargo run --release -p xtask --features remote -- serve …` (or `cargo xtask-remote serve …`)"
    )
}
