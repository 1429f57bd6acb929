//! Which backend a run computes on, by name (the `backend` field of a training
//! configuration). Turning the name into devices is the caller's job: this crate has no
//! backend compiled in and never picks one.

use crate::TrainError;

/// A compute backend, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Pure-Rust CPU backend.
    Flex,
    /// Any GPU through wgpu: Vulkan, Metal, DX12 or OpenGL.
    Wgpu,
    /// NVIDIA GPUs through CUDA.
    Cuda,
    /// Devices served by other processes or machines, reached over WebSocket at the
    /// configuration's `hosts`. The servers pick the real backend.
    Remote,
}

impl Backend {
    /// Every backend, in the order they are listed.
    pub const ALL: [Backend; 4] = [Backend::Flex, Backend::Wgpu, Backend::Cuda, Backend::Remote];

    /// The lowercase name (`flex`, `wgpu`, `cuda`, `remote`).
    pub fn name(self) -> &'static str {
        match self {
            Backend::Flex => "flex",
            Backend::Wgpu => "wgpu",
            Backend::Cuda => "cuda",
            Backend::Remote => "remote",
        }
    }
}

impl std::str::FromStr for Backend {
    type Err = TrainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        Backend::ALL
            .into_iter()
            .find(|b| b.name() == lower)
            .ok_or_else(|| TrainError::UnknownName {
                what: "backend",
                name: s.to_string(),
                expected: "flex, wgpu, cuda or remote",
            })
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A `hosts` entry as a WebSocket URL: `HOST:PORT` gains `ws://`; other schemes are refused.
pub fn host_url(host: &str) -> Result<String, TrainError> {
    let host = host.trim();
    let refuse = |problem: &str| TrainError::BadHost {
        host: host.to_string(),
        problem: problem.to_string(),
    };
    if host.starts_with("ws://") {
        Ok(host.to_string())
    } else if host.contains("://") {
        Err(refuse(
            "expected ws://HOST:PORT (the servers speak unencrypted WebSocket; use them on a \
             trusted network or through an SSH tunnel)",
        ))
    } else if host.is_empty() {
        Err(refuse("an empty host"))
    } else {
        Ok(format!("ws://{host}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_are_named() {
        for b in Backend::ALL {
            assert_eq!(b.name().parse::<Backend>().unwrap(), b);
            assert_eq!(b.to_string(), b.name());
        }
        assert_eq!("WGPU".parse::<Backend>().unwrap(), Backend::Wgpu);
        let err = "metal".parse::<Backend>().unwrap_err().to_string();
        assert!(
            err.contains("`metal`") && err.contains("flex, wgpu"),
            "{err}"
        );
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
}
