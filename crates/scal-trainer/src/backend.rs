//! Choosing the compute backend at run time among those compiled in.

use burn::tensor::Device;

use crate::TrainError;

/// A backend named on the command line (`--backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Pure-Rust CPU backend (cargo feature `flex`, on by default).
    Flex,
    /// Any GPU through wgpu: Vulkan, Metal or DX12 (cargo feature `wgpu`).
    Wgpu,
    /// NVIDIA GPUs through CUDA (cargo feature `cuda`).
    Cuda,
    /// Devices served by other processes or machines (`cargo xtask serve`), reached over
    /// WebSocket at `--hosts` (cargo feature `remote`). The servers pick the real backend.
    Remote,
}

impl Backend {
    /// The cargo feature that compiles this backend in.
    pub fn feature(self) -> &'static str {
        match self {
            Backend::Flex => "flex",
            Backend::Wgpu => "wgpu",
            Backend::Cuda => "cuda",
            Backend::Remote => "remote",
        }
    }

    /// Whether this binary was built with the backend.
    pub fn compiled(self) -> bool {
        match self {
            Backend::Flex => cfg!(feature = "flex"),
            Backend::Wgpu => cfg!(feature = "wgpu"),
            Backend::Cuda => cfg!(feature = "cuda"),
            Backend::Remote => cfg!(feature = "remote"),
        }
    }

    /// Backends compiled into this binary.
    pub fn available() -> Vec<Backend> {
        [Backend::Flex, Backend::Wgpu, Backend::Cuda, Backend::Remote]
            .into_iter()
            .filter(|b| b.compiled())
            .collect()
    }
}

/// The device for `backend`, checked to exist. Never `Device::default()`, which picks by
/// compile-time priority. A remote backend needs its hosts: use [`device_on`].
pub fn device(backend: Backend) -> Result<Device, TrainError> {
    device_on(backend, &[])
}

/// The first device of `backend`; for [`Backend::Remote`], device 0 of the first of `hosts`.
pub fn device_on(backend: Backend, hosts: &[String]) -> Result<Device, TrainError> {
    if backend == Backend::Remote {
        let first = &hosts[..hosts.len().min(1)];
        return all_devices(backend, first)?
            .into_iter()
            .next()
            .ok_or_else(|| TrainError::Backend(format!("--hosts {}: serves no device", first[0])));
    }
    ensure_compiled(backend)?;
    local_device(backend)
}

const NO_HOSTS: &str = "--backend remote needs --hosts ws://HOST:PORT[,ws://HOST:PORT…]: the \
     servers started with `cargo xtask serve` on each machine";

fn ensure_compiled(backend: Backend) -> Result<(), TrainError> {
    if !backend.compiled() {
        let names: Vec<&str> = Backend::available().iter().map(|b| b.feature()).collect();
        return Err(TrainError::Backend(format!(
            "--backend {0}: this binary was built without the `{0}` feature (compiled in: {1}). \
             Rebuild with `cargo run --release -p xtask --features {0} -- …` \
             (or `cargo xtask-{0} …`).",
            backend.feature(),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        )));
    }
    Ok(())
}

fn local_device(backend: Backend) -> Result<Device, TrainError> {
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
        _ => unreachable!("checked by Backend::compiled"),
    }
}

/// The devices of `backend` at `indices` (data-parallel training), in that order. Flex has
/// one device, index 0. Repeated indices give the same device again. For
/// [`Backend::Remote`], the indices run over every device of every host, in the order of
/// `hosts` (as `cargo xtask devices --backend remote --hosts …` lists them).
pub fn devices(
    backend: Backend,
    hosts: &[String],
    indices: &[usize],
) -> Result<Vec<Device>, TrainError> {
    let all = all_devices(backend, hosts)?;
    indices
        .iter()
        .map(|&i| {
            all.get(i).cloned().ok_or_else(|| {
                TrainError::Backend(format!(
                    "--devices: {backend} has no device {i}; it has {} (indices 0..{}){}",
                    all.len(),
                    all.len(),
                    match backend {
                        Backend::Flex => " (flex is one CPU device; it uses every core)",
                        Backend::Remote => " over all its --hosts",
                        _ => "",
                    }
                ))
            })
        })
        .collect()
}

/// Every device of `backend`, in index order (`hosts`: only read for [`Backend::Remote`]).
pub fn all_devices(backend: Backend, hosts: &[String]) -> Result<Vec<Device>, TrainError> {
    if backend == Backend::Remote {
        ensure_compiled(backend)?;
        if hosts.is_empty() {
            return Err(TrainError::Backend(NO_HOSTS.into()));
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

/// A `--hosts` entry as a WebSocket URL: `HOST:PORT` gains `ws://`; other schemes are refused.
pub fn host_url(host: &str) -> Result<String, TrainError> {
    let host = host.trim();
    if host.starts_with("ws://") {
        Ok(host.to_string())
    } else if host.contains("://") {
        Err(TrainError::Backend(format!(
            "--hosts {host}: expected ws://HOST:PORT (the servers speak unencrypted WebSocket; \
             use them on a trusted network or through an SSH tunnel)"
        )))
    } else if host.is_empty() {
        Err(TrainError::Backend("--hosts: an empty host".into()))
    } else {
        Ok(format!("ws://{host}"))
    }
}

/// Every device served at `host`, connected with the token of [`TOKEN_VAR`] if set.
#[cfg(feature = "remote")]
fn remote_devices(host: &str) -> Result<Vec<Device>, TrainError> {
    use burn::remote::{ConnectError, RemoteHost};
    let url = host_url(host)?;
    let mut remote = RemoteHost::websocket(&url);
    if let Ok(token) = std::env::var(TOKEN_VAR) {
        remote = remote.with_credential(token);
    }
    let devices = remote.devices().map_err(|e| {
        TrainError::Backend(match e {
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
fn remote_devices(host: &str) -> Result<Vec<Device>, TrainError> {
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
fn first_device(
    kind: burn::tensor::DeviceType,
    name: &str,
    hint: &str,
) -> Result<Device, TrainError> {
    let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Device::enumerate(kind)));
    match found {
        Ok(devices) => match devices.into_iter().next() {
            Some(device) => Ok(device),
            None => Err(TrainError::Backend(format!("--backend {name}: {hint}"))),
        },
        Err(_) => Err(TrainError::Backend(format!(
            "--backend {name}: probing for devices failed: {hint}"
        ))),
    }
}

impl std::str::FromStr for Backend {
    type Err = TrainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "flex" => Ok(Backend::Flex),
            "wgpu" => Ok(Backend::Wgpu),
            "cuda" => Ok(Backend::Cuda),
            "remote" => Ok(Backend::Remote),
            other => Err(TrainError::Backend(format!(
                "unknown backend `{other}`: expected flex, wgpu, cuda or remote"
            ))),
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.feature())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flex_is_the_default_build() {
        assert!(Backend::Flex.compiled());
        assert!(device(Backend::Flex).is_ok());
    }

    #[test]
    fn a_backend_not_compiled_in_is_a_clear_error() {
        for backend in [Backend::Wgpu, Backend::Cuda, Backend::Remote] {
            if backend.compiled() {
                continue;
            }
            let err = device(backend).unwrap_err().to_string();
            assert!(
                err.contains(&format!("--features {}", backend.feature())),
                "{err}"
            );
            assert!(err.contains("compiled in: flex"), "{err}");
        }
    }

    #[test]
    fn hosts_become_websocket_urls_and_other_schemes_are_refused() {
        assert_eq!(host_url("gpu1:3000").unwrap(), "ws://gpu1:3000");
        assert_eq!(
            host_url(" ws://10.0.0.2:3000 ").unwrap(),
            "ws://10.0.0.2:3000"
        );
        let err = host_url("https://gpu1:3000").unwrap_err().to_string();
        assert!(
            err.contains("https://gpu1:3000") && err.contains("ws://"),
            "{err}"
        );
        assert!(host_url("").is_err());
    }

    #[test]
    fn remote_without_hosts_says_how_to_give_them() {
        if !Backend::Remote.compiled() {
            return;
        }
        let err = device(Backend::Remote).unwrap_err().to_string();
        assert!(
            err.contains("--hosts") && err.contains("cargo xtask serve"),
            "{err}"
        );
    }
}
