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
}

impl Backend {
    /// The cargo feature that compiles this backend in.
    pub fn feature(self) -> &'static str {
        match self {
            Backend::Flex => "flex",
            Backend::Wgpu => "wgpu",
            Backend::Cuda => "cuda",
        }
    }

    /// Whether this binary was built with the backend.
    pub fn compiled(self) -> bool {
        match self {
            Backend::Flex => cfg!(feature = "flex"),
            Backend::Wgpu => cfg!(feature = "wgpu"),
            Backend::Cuda => cfg!(feature = "cuda"),
        }
    }

    /// Backends compiled into this binary.
    pub fn available() -> Vec<Backend> {
        [Backend::Flex, Backend::Wgpu, Backend::Cuda]
            .into_iter()
            .filter(|b| b.compiled())
            .collect()
    }
}

/// The device for `backend`, checked to exist. Never `Device::default()`, which picks by
/// compile-time priority.
pub fn device(backend: Backend) -> Result<Device, TrainError> {
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
/// one device, index 0. Repeated indices give the same device again.
pub fn devices(backend: Backend, indices: &[usize]) -> Result<Vec<Device>, TrainError> {
    let first = device(backend)?;
    let all = list(backend, first);
    indices
        .iter()
        .map(|&i| {
            all.get(i).cloned().ok_or_else(|| {
                TrainError::Backend(format!(
                    "--devices: {backend} has no device {i}; it has {} (indices 0..{}){}",
                    all.len(),
                    all.len(),
                    if backend == Backend::Flex {
                        " (flex is one CPU device; it uses every core)"
                    } else {
                        ""
                    }
                ))
            })
        })
        .collect()
}

/// Every device of a backend whose first device is `first`.
pub fn list(backend: Backend, first: Device) -> Vec<Device> {
    match backend {
        #[cfg(feature = "wgpu")]
        Backend::Wgpu => enumerated(burn::tensor::DeviceType::Wgpu, first),
        #[cfg(feature = "cuda")]
        Backend::Cuda => enumerated(burn::tensor::DeviceType::Cuda, first),
        _ => vec![first],
    }
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
    let found = std::panic::catch_unwind(|| Device::enumerate(kind));
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
            other => Err(TrainError::Backend(format!(
                "unknown backend `{other}`: expected flex, wgpu or cuda"
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
        for backend in [Backend::Wgpu, Backend::Cuda] {
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
}
