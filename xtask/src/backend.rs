//! Choosing the compute backend at run time among those compiled in (this crate's cargo
//! features `flex`, `wgpu`, `cuda`, `remote`), and turning a configuration's backend, hosts
//! and device indices into devices.

use anyhow::{Result, anyhow, bail};
use burn::tensor::Device;
pub use scal_run::Backend;

/// Whether this binary was built with `backend` (its cargo feature has the backend's name).
pub fn compiled(backend: Backend) -> bool {
    match backend {
        Backend::Flex => cfg!(feature = "flex"),
        Backend::Wgpu => cfg!(feature = "wgpu"),
        Backend::Cuda => cfg!(feature = "cuda"),
        Backend::Remote => cfg!(feature = "remote"),
    }
}

/// Backends compiled into this binary.
pub fn available() -> Vec<Backend> {
    Backend::ALL.into_iter().filter(|b| compiled(*b)).collect()
}

/// The device for `backend`, checked to exist. Never `Device::default()`, which picks by
/// compile-time priority. A remote backend needs its hosts: use [`device_on`].
pub fn device(backend: Backend) -> Result<Device> {
    device_on(backend, &[])
}

/// The first device of `backend`; for [`Backend::Remote`], device 0 of the first of `hosts`.
pub fn device_on(backend: Backend, hosts: &[String]) -> Result<Device> {
    if backend == Backend::Remote {
        let first = &hosts[..hosts.len().min(1)];
        return all_devices(backend, first)?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("--hosts {}: serves no device", first[0]));
    }
    ensure_compiled(backend)?;
    local_device(backend)
}

const NO_HOSTS: &str = "--backend remote needs --hosts ws://HOST:PORT[,ws://HOST:PORT…]: the \
     servers started with `cargo xtask serve` on each machine";

fn ensure_compiled(backend: Backend) -> Result<()> {
    if !compiled(backend) {
        let names: Vec<&str> = available().iter().map(|b| b.name()).collect();
        bail!(
            "--backend {0}: this binary was built without the `{0}` feature (compiled in: {1}). \
             Rebuild with `cargo run --release -p xtask --features {0} -- …` \
             (or `cargo xtask-{0} …`).",
            backend.name(),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        );
    }
    Ok(())
}

fn local_device(backend: Backend) -> Result<Device> {
    match backend {
        #[cfg(feature = "flex")]
        Backend::Flex => Ok(Device::flex()),
        #[cfg(feature = "wgpu")]
        Backend::Wgpu => first_device(
            burn::tensor::DeviceType::Wgpu,
            "wgpu",
            "no GPU adapter was found (wgpu needs a Vulkan, Metal, DX12 or OpenGL/EGL driver: on Linux the GPU vendor's Vulkan driver, or Mesa's `mesa-vulkan-drivers`/`libegl-mesa0` for a software one)",
        ),
        #[cfg(feature = "cuda")]
        Backend::Cuda => first_device(
            burn::tensor::DeviceType::Cuda,
            "cuda",
            "no CUDA device was found (is the NVIDIA driver installed and a GPU visible?)",
        ),
        #[allow(unreachable_patterns)]
        _ => unreachable!("checked by compiled()"),
    }
}

/// The devices of `backend` at `indices` (data-parallel training), in that order. Flex has
/// one device, index 0. Repeated indices give the same device again. For
/// [`Backend::Remote`], the indices run over every device of every host, in the order of
/// `hosts` (as `cargo xtask devices --backend remote --hosts …` lists them).
pub fn devices(backend: Backend, hosts: &[String], indices: &[usize]) -> Result<Vec<Device>> {
    let all = all_devices(backend, hosts)?;
    indices
        .iter()
        .map(|&i| {
            all.get(i).cloned().ok_or_else(|| {
                anyhow!(
                    "--devices: {backend} has no device {i}; it has {} (indices 0..{}){}",
                    all.len(),
                    all.len(),
                    match backend {
                        Backend::Flex => " (flex is one CPU device; it uses every core)",
                        Backend::Remote => " over all its --hosts",
                        _ => "",
                    }
                )
            })
        })
        .collect()
}

/// Every device of `backend`, in index order (`hosts`: only read for [`Backend::Remote`]).
pub fn all_devices(backend: Backend, hosts: &[String]) -> Result<Vec<Device>> {
    if backend == Backend::Remote {
        ensure_compiled(backend)?;
        if hosts.is_empty() {
            bail!(NO_HOSTS);
        }
        let mut all = Vec::new();
        for host in hosts {
            all.extend(remote_devices(host)?);
        }
        return Ok(all);
    }
    let first = device(backend)?;
    Ok(match backend {
        #[cfg(feature = "wgpu")]
        Backend::Wgpu => enumerated(burn::tensor::DeviceType::Wgpu, first),
        #[cfg(feature = "cuda")]
        Backend::Cuda => enumerated(burn::tensor::DeviceType::Cuda, first),
        _ => vec![first],
    })
}

/// The environment variable holding the token shared by `cargo xtask serve` and its
/// clients (unset: servers admit every client; set it on both sides).
pub const TOKEN_VAR: &str = "SCAL_REMOTE_TOKEN";

/// Every device served at `host`, connected with the token of [`TOKEN_VAR`] if set.
#[cfg(feature = "remote")]
fn remote_devices(host: &str) -> Result<Vec<Device>> {
    use burn::remote::{ConnectError, RemoteHost};
    use scal_run::backend::host_url;
    let url = host_url(host).map_err(|e| anyhow!("--hosts {host}: {e}"))?;
    let mut remote = RemoteHost::websocket(&url);
    if let Ok(token) = std::env::var(TOKEN_VAR) {
        remote = remote.with_credential(token);
    }
    let devices = remote.devices().map_err(|e| {
        anyhow!(match e {
            ConnectError::Unauthorized => format!(
                "--hosts {url}: the server refused the token: set {TOKEN_VAR} to the token \
                 `cargo xtask serve` was started with"
            ),
            ConnectError::IncompatibleProtocol { .. } => {
                format!("--hosts {url}: {e}; build the server and this client from the same commit")
            }
            other => format!(
                "--hosts {url}: cannot connect ({other}); is `cargo xtask serve --port …` \
                 running there and the port reachable from this machine?"
            ),
        })
    })?;
    Ok(devices.into_iter().collect())
}

#[cfg(not(feature = "remote"))]
fn remote_devices(host: &str) -> Result<Vec<Device>> {
    let _ = host;
    ensure_compiled(Backend::Remote).map(|()| Vec::new())
}

/// The devices of one GPU runtime, or `first` alone when enumeration finds none.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn enumerated(kind: burn::tensor::DeviceType, first: Device) -> Vec<Device> {
    let all: Vec<Device> = Device::enumerate(kind).into_iter().collect();
    if all.is_empty() { vec![first] } else { all }
}

/// The first device of a GPU backend, or a clear error when there is none. Enumeration
/// runs under `catch_unwind` because a missing driver may panic inside the runtime.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn first_device(kind: burn::tensor::DeviceType, name: &str, hint: &str) -> Result<Device> {
    let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Device::enumerate(kind)));
    match found {
        Ok(devices) => match devices.into_iter().next() {
            Some(device) => Ok(device),
            None => Err(anyhow!("--backend {name}: {hint}")),
        },
        Err(_) => Err(anyhow!(
            "--backend {name}: probing for devices failed: {hint}"
        )),
    }
}

/// The device's name for the output.
pub fn device_name(backend: Backend, device: &Device) -> String {
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    if backend != Backend::Flex
        && let Some(id) = device.identity()
    {
        return format!("{} ({})", id.name, id.fingerprint);
    }
    if backend == Backend::Remote {
        return remote_label(&format!("{device:?}"));
    }
    let _ = (backend, device);
    format!("cpu ({} threads)", rayon::current_num_threads())
}

/// `ws://HOST:PORT device I` from a remote device's debug text (Burn gives remote devices no
/// name); the debug text itself when its shape is not the expected one.
fn remote_label(debug: &str) -> String {
    let after = |key: &str| {
        debug.split_once(key).map(|(_, rest)| {
            rest.trim_start_matches(['"', ' '])
                .split(['"', ')', ',', ' ', '}'])
                .next()
                .unwrap_or("")
                .to_string()
        })
    };
    match (
        after("host: "),
        after("port: Some("),
        after("device_index: "),
    ) {
        (Some(host), Some(port), Some(index)) if !host.is_empty() && !port.is_empty() => {
            format!("remote ws://{host}:{port} device {index}")
        }
        _ => format!("remote {debug}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flex_is_the_default_build() {
        assert!(compiled(Backend::Flex));
        assert!(device(Backend::Flex).is_ok());
    }

    #[test]
    fn a_backend_not_compiled_in_is_a_clear_error() {
        for backend in [Backend::Wgpu, Backend::Cuda, Backend::Remote] {
            if compiled(backend) {
                continue;
            }
            let err = device(backend).unwrap_err().to_string();
            assert!(
                err.contains(&format!("--features {}", backend.name())),
                "{err}"
            );
            assert!(err.contains("compiled in: flex"), "{err}");
        }
    }

    #[test]
    fn remote_without_hosts_says_how_to_give_them() {
        if !compiled(Backend::Remote) {
            return;
        }
        let err = device(Backend::Remote).unwrap_err().to_string();
        assert!(
            err.contains("--hosts") && err.contains("cargo xtask serve"),
            "{err}"
        );
    }

    #[test]
    fn a_remote_device_is_named_by_its_server_and_index() {
        let debug = r#"Device<Remote(RemoteDevice { endpoint: WebSocket { address: Address { scheme: "ws", host: "127.0.0.1", port: Some(3110) }, .. }, device_index: 2, id: 0 })>"#;
        assert_eq!(remote_label(debug), "remote ws://127.0.0.1:3110 device 2");
        assert_eq!(remote_label("Device<Other>"), "remote Device<Other>");
    }
}
