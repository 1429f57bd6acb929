//! `cargo xtask serve`: this machine's devices for training driven from another machine
//! (`cargo xtask train --backend remote --hosts ws://THIS_MACHINE:PORT`), through Burn's
//! remote backend over WebSocket.

use anyhow::{Result, bail};
use scal_run::Backend;

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
    /// Address to listen on: 127.0.0.1 (this machine only) unless told otherwise; 0.0.0.0
    /// listens on every interface, which needs `SCAL_REMOTE_TOKEN` or
    /// `--allow-unauthenticated`.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,
    /// Listen beyond this machine without `SCAL_REMOTE_TOKEN`: any peer that reaches the port
    /// can then drive (or stop) the server. Prints a warning.
    #[arg(long)]
    pub allow_unauthenticated: bool,
}

/// The token clients must present (`SCAL_REMOTE_TOKEN`, when set and not empty).
fn token() -> Option<String> {
    std::env::var(crate::backend::TOKEN_VAR)
        .ok()
        .filter(|t| !t.is_empty())
}

/// Whether listening on `bind` exposes the server beyond this machine without a token: an
/// error when `token_set` and `allow_unauthenticated` are both false, a warning to print
/// when only the latter is true, `None` when the address is a loopback one or a token is set.
/// `bind` is an IP address or a host name (resolved here, port 0).
fn exposure_check(
    bind: &str,
    token_set: bool,
    allow_unauthenticated: bool,
) -> Result<Option<String>> {
    use std::net::ToSocketAddrs;
    let addresses: Vec<std::net::SocketAddr> = (bind, 0u16)
        .to_socket_addrs()
        .map_err(|e| anyhow::anyhow!("--bind {bind}: not an address of this machine ({e})"))?
        .collect();
    if token_set || addresses.iter().all(|a| a.ip().is_loopback()) {
        return Ok(None);
    }
    let risk = format!(
        "--bind {bind} listens beyond this machine without {TOKEN}: anyone who can reach the \
         port can drive the served devices or stop the server",
        TOKEN = crate::backend::TOKEN_VAR
    );
    if !allow_unauthenticated {
        bail!(
            "{risk}. Set {TOKEN} to the same secret here and on the training machine, or pass \
             --allow-unauthenticated on a network you trust",
            TOKEN = crate::backend::TOKEN_VAR
        );
    }
    Ok(Some(format!("warning: {risk} (--allow-unauthenticated)")))
}

impl ServeArgs {
    /// Runs `cargo xtask serve`.
    pub fn run(self) -> Result<()> {
        start(&self)
    }
}

/// Runs `cargo xtask serve`; returns when the process is asked to stop.
fn start(args: &ServeArgs) -> Result<()> {
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
    if let Some(warning) =
        exposure_check(&args.bind, token().is_some(), args.allow_unauthenticated)?
    {
        eprintln!("{warning}");
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
    let token = token();
    if let Some(token) = &token {
        server = server.with_authorizer(
            TokenAuthorizer::new(token.as_str())
                .map_err(|e| anyhow::anyhow!("{TOKEN_VAR}: {e}"))?,
        );
    }
    for (i, d) in devices.iter().enumerate() {
        println!(
            "device {i}: {}",
            crate::backend::device_name(args.backend, d)
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

#[cfg(test)]
mod tests {
    use super::exposure_check;

    #[test]
    fn loopback_is_served_without_a_token() {
        for bind in ["127.0.0.1", "::1", "127.0.0.2", "localhost"] {
            assert_eq!(exposure_check(bind, false, false).unwrap(), None, "{bind}");
        }
    }

    #[test]
    fn every_interface_needs_a_token_or_the_explicit_flag() {
        for bind in ["0.0.0.0", "::", "192.0.2.7"] {
            let err = exposure_check(bind, false, false).unwrap_err().to_string();
            assert!(
                err.contains(bind)
                    && err.contains("SCAL_REMOTE_TOKEN")
                    && err.contains("--allow-unauthenticated"),
                "{err}"
            );
            assert_eq!(exposure_check(bind, true, false).unwrap(), None, "{bind}");
            let warning = exposure_check(bind, false, true).unwrap().unwrap();
            assert!(
                warning.starts_with("warning:") && warning.contains(bind),
                "{warning}"
            );
        }
    }
}
