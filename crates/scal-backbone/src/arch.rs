//! The four torchvision ResNet depths and what each one is made of.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Which residual block a ResNet stacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// Two 3×3 convolutions (ResNet-18/34), expansion 1.
    Basic,
    /// 1×1 → 3×3 → 1×1 convolutions (ResNet-50/101), expansion 4, stride on the 3×3 (torchvision "v1.5").
    Bottleneck,
}

impl BlockKind {
    /// Output channels of a block divided by its `planes`.
    pub fn expansion(self) -> usize {
        match self {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }
}

/// A torchvision ResNet architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResNetArch {
    /// `torchvision.models.resnet18`
    ResNet18,
    /// `torchvision.models.resnet34`
    ResNet34,
    /// `torchvision.models.resnet50`
    ResNet50,
    /// `torchvision.models.resnet101`
    ResNet101,
}

impl ResNetArch {
    /// Every supported architecture, shallowest first.
    pub const ALL: [ResNetArch; 4] = [
        ResNetArch::ResNet18,
        ResNetArch::ResNet34,
        ResNetArch::ResNet50,
        ResNetArch::ResNet101,
    ];

    /// The block type this depth stacks.
    pub fn block_kind(self) -> BlockKind {
        match self {
            ResNetArch::ResNet18 | ResNetArch::ResNet34 => BlockKind::Basic,
            ResNetArch::ResNet50 | ResNetArch::ResNet101 => BlockKind::Bottleneck,
        }
    }

    /// Number of blocks in `layer1..layer4`.
    pub fn blocks_per_stage(self) -> [usize; 4] {
        match self {
            ResNetArch::ResNet18 => [2, 2, 2, 2],
            ResNetArch::ResNet34 => [3, 4, 6, 3],
            ResNetArch::ResNet50 => [3, 4, 6, 3],
            ResNetArch::ResNet101 => [3, 4, 23, 3],
        }
    }

    /// Channels after the stem and after each of `layer1..layer4`, for a given base width
    /// (64 in torchvision).
    pub fn stage_channels(self, base_width: usize) -> [usize; 5] {
        let e = self.block_kind().expansion();
        [
            base_width,
            base_width * e,
            base_width * 2 * e,
            base_width * 4 * e,
            base_width * 8 * e,
        ]
    }

    /// Width of the globally pooled feature (2048 for ResNet-50 at base width 64).
    pub fn feature_dim(self, base_width: usize) -> usize {
        self.stage_channels(base_width)[4]
    }

    /// The name used on the command line and in configs: `resnet50`.
    pub fn name(self) -> &'static str {
        match self {
            ResNetArch::ResNet18 => "resnet18",
            ResNetArch::ResNet34 => "resnet34",
            ResNetArch::ResNet50 => "resnet50",
            ResNetArch::ResNet101 => "resnet101",
        }
    }

    /// Recognises the architecture of a torchvision-layout state dict from its key names
    /// (the block type from `conv3`, the depth from the number of blocks in each stage).
    /// Returns `None` when the keys do not look like a torchvision ResNet.
    pub fn detect_from_keys<'a>(keys: impl IntoIterator<Item = &'a str>) -> Option<ResNetArch> {
        let mut blocks = [0usize; 4];
        let mut bottleneck = false;
        for key in keys {
            let mut parts = key.split('.');
            let (Some(layer), Some(index), Some(field)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Some(stage) = layer
                .strip_prefix("layer")
                .and_then(|s| s.parse::<usize>().ok())
                .filter(|s| (1..=4).contains(s))
            else {
                continue;
            };
            let Ok(index) = index.parse::<usize>() else {
                continue;
            };
            blocks[stage - 1] = blocks[stage - 1].max(index + 1);
            bottleneck |= field == "conv3";
        }
        let kind = if bottleneck {
            BlockKind::Bottleneck
        } else {
            BlockKind::Basic
        };
        ResNetArch::ALL
            .into_iter()
            .find(|arch| arch.block_kind() == kind && arch.blocks_per_stage() == blocks)
    }
}

impl fmt::Display for ResNetArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parsing a name that is not one of `resnet18|resnet34|resnet50|resnet101`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown architecture `{0}`: expected one of resnet18, resnet34, resnet50, resnet101")]
pub struct UnknownArch(pub String);

impl FromStr for ResNetArch {
    type Err = UnknownArch;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase().replace(['-', '_'], "");
        ResNetArch::ALL
            .into_iter()
            .find(|arch| arch.name() == lower)
            .ok_or_else(|| UnknownArch(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_accept_common_spellings() {
        for arch in ResNetArch::ALL {
            assert_eq!(arch.name().parse::<ResNetArch>().unwrap(), arch);
        }
        assert_eq!(
            "ResNet-50".parse::<ResNetArch>().unwrap(),
            ResNetArch::ResNet50
        );
        assert_eq!(
            "resnet_101".parse::<ResNetArch>().unwrap(),
            ResNetArch::ResNet101
        );
        let err = "resnet152".parse::<ResNetArch>().unwrap_err();
        assert!(err.to_string().contains("resnet152"));
    }

    #[test]
    fn feature_dims_match_torchvision() {
        assert_eq!(ResNetArch::ResNet18.feature_dim(64), 512);
        assert_eq!(ResNetArch::ResNet34.feature_dim(64), 512);
        assert_eq!(ResNetArch::ResNet50.feature_dim(64), 2048);
        assert_eq!(ResNetArch::ResNet101.feature_dim(64), 2048);
        assert_eq!(
            ResNetArch::ResNet50.stage_channels(64),
            [64, 256, 512, 1024, 2048]
        );
    }

    #[test]
    fn detects_architecture_from_keys() {
        let keys = |arch: ResNetArch| {
            let mut keys = vec!["conv1.weight".to_string(), "fc.weight".to_string()];
            for (stage, n) in arch.blocks_per_stage().iter().enumerate() {
                for b in 0..*n {
                    keys.push(format!("layer{}.{b}.conv1.weight", stage + 1));
                    keys.push(format!("layer{}.{b}.bn2.running_mean", stage + 1));
                    if arch.block_kind() == BlockKind::Bottleneck {
                        keys.push(format!("layer{}.{b}.conv3.weight", stage + 1));
                    }
                }
            }
            keys
        };
        for arch in ResNetArch::ALL {
            let k = keys(arch);
            assert_eq!(
                ResNetArch::detect_from_keys(k.iter().map(String::as_str)),
                Some(arch)
            );
        }
        assert_eq!(
            ResNetArch::detect_from_keys(["encoder.weight", "decoder.bias"]),
            None
        );
    }
}
