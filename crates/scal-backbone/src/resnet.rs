//! The ResNet module, its residual blocks and its configuration.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use crate::arch::{BlockKind, ResNetArch};

/// How to build a [`ResNet`].
#[derive(Config, Debug)]
pub struct ResNetConfig {
    /// Depth and block type.
    pub arch: ResNetArch,
    /// Stride of the first block of `layer4`: 2 in torchvision, 1 in ReID models (the last
    /// feature map is twice as tall and wide: 16 × 8 for a 256 × 128 input).
    #[config(default = 2)]
    pub last_stride: usize,
    /// Apply the ReLU after the stem's batch norm (torchvision: yes). Some ReID code bases
    /// leave it out; see `docs/scal-method.md`.
    #[config(default = true)]
    pub stem_relu: bool,
    /// Channels of the stem; every stage scales from it (64 in torchvision). Smaller values
    /// give tiny models for tests.
    #[config(default = 64)]
    pub base_width: usize,
    /// The stem's max pooling as FastReID's ResNet has it: no padding, output size rounded
    /// up (`ceil_mode`). Off: torchvision's (padding 1, rounded down); the two give maps of
    /// the same size at even input sizes but windows one pixel apart.
    #[config(default = false)]
    pub stem_pool_ceil: bool,
}

impl ResNetConfig {
    /// Builds the network with torchvision's initialisation (Kaiming-normal, fan-out, for the
    /// convolutions; unit scale and zero shift for the batch norms).
    ///
    /// # Panics
    ///
    /// If `last_stride` is not 1 or 2, or `base_width` is 0.
    pub fn init(&self, device: &Device) -> ResNet {
        assert!(
            self.last_stride == 1 || self.last_stride == 2,
            "ResNetConfig.last_stride must be 1 or 2, got {}",
            self.last_stride
        );
        assert!(self.base_width > 0, "ResNetConfig.base_width must be > 0");
        let kind = self.arch.block_kind();
        let w = self.base_width;
        let blocks = self.arch.blocks_per_stage();
        let mut in_channels = w;
        let mut make_stage = |stage: usize, stride: usize| {
            let planes = w << stage;
            let out = planes * kind.expansion();
            let mut layer = Vec::with_capacity(blocks[stage]);
            for index in 0..blocks[stage] {
                let s = if index == 0 { stride } else { 1 };
                layer.push(ResidualBlock::new(kind, in_channels, planes, s, device));
                in_channels = out;
            }
            layer
        };
        let layer1 = make_stage(0, 1);
        let layer2 = make_stage(1, 2);
        let layer3 = make_stage(2, 2);
        let layer4 = make_stage(3, self.last_stride);
        ResNet {
            conv1: conv(3, w, 7, 2, 3, device),
            bn1: BatchNormConfig::new(w).init(device),
            maxpool: if self.stem_pool_ceil {
                MaxPool2dConfig::new([3, 3])
                    .with_strides([2, 2])
                    .with_ceil_mode(true)
                    .init()
            } else {
                MaxPool2dConfig::new([3, 3])
                    .with_strides([2, 2])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .init()
            },
            layer1,
            layer2,
            layer3,
            layer4,
            stem_relu: self.stem_relu,
            arch: self.arch,
            base_width: self.base_width,
        }
    }
}

fn conv(
    c_in: usize,
    c_out: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    device: &Device,
) -> Conv2d {
    Conv2dConfig::new([c_in, c_out], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(
            padding, padding, padding, padding,
        ))
        .with_bias(false)
        .with_initializer(Initializer::KaimingNormal {
            gain: std::f64::consts::SQRT_2,
            fan_out_only: true,
        })
        .init(device)
}

/// The 1×1 convolution and batch norm that match a block's shortcut to its output
/// (torchvision's `downsample.0` and `downsample.1`).
#[derive(Module, Debug)]
pub struct Downsample {
    /// torchvision `downsample.0`.
    pub conv: Conv2d,
    /// torchvision `downsample.1`.
    pub bn: BatchNorm,
}

/// A residual block: torchvision's `BasicBlock` when `conv3` is absent, its `Bottleneck`
/// when it is present. Field names are torchvision's.
#[derive(Module, Debug)]
pub struct ResidualBlock {
    /// 3×3 (basic, carries the stride) or 1×1 (bottleneck).
    pub conv1: Conv2d,
    /// Batch norm after `conv1`.
    pub bn1: BatchNorm,
    /// 3×3 (carries the stride in a bottleneck).
    pub conv2: Conv2d,
    /// Batch norm after `conv2`.
    pub bn2: BatchNorm,
    /// 1×1 expansion, bottleneck only.
    pub conv3: Option<Conv2d>,
    /// Batch norm after `conv3`, bottleneck only.
    pub bn3: Option<BatchNorm>,
    /// Projection shortcut where the shape changes.
    pub downsample: Option<Downsample>,
}

impl ResidualBlock {
    fn new(
        kind: BlockKind,
        in_channels: usize,
        planes: usize,
        stride: usize,
        device: &Device,
    ) -> Self {
        let out = planes * kind.expansion();
        let downsample = (stride != 1 || in_channels != out).then(|| Downsample {
            conv: conv(in_channels, out, 1, stride, 0, device),
            bn: BatchNormConfig::new(out).init(device),
        });
        match kind {
            BlockKind::Basic => ResidualBlock {
                conv1: conv(in_channels, planes, 3, stride, 1, device),
                bn1: BatchNormConfig::new(planes).init(device),
                conv2: conv(planes, planes, 3, 1, 1, device),
                bn2: BatchNormConfig::new(planes).init(device),
                conv3: None,
                bn3: None,
                downsample,
            },
            BlockKind::Bottleneck => ResidualBlock {
                conv1: conv(in_channels, planes, 1, 1, 0, device),
                bn1: BatchNormConfig::new(planes).init(device),
                conv2: conv(planes, planes, 3, stride, 1, device),
                bn2: BatchNormConfig::new(planes).init(device),
                conv3: Some(conv(planes, out, 1, 1, 0, device)),
                bn3: Some(BatchNormConfig::new(out).init(device)),
                downsample,
            },
        }
    }

    /// # Shapes
    /// - `x`: `[N, C_in, H, W]`
    /// - output: `[N, C_out, H / stride, W / stride]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = match &self.downsample {
            Some(d) => d.bn.forward(d.conv.forward(x.clone())),
            None => x.clone(),
        };
        let out = relu(self.bn1.forward(self.conv1.forward(x)));
        let mut out = self.bn2.forward(self.conv2.forward(out));
        if let (Some(conv3), Some(bn3)) = (&self.conv3, &self.bn3) {
            out = bn3.forward(conv3.forward(relu(out)));
        }
        relu(out + identity)
    }
}

/// A torchvision-layout ResNet without its classifier (`fc`).
///
/// Parameter names are torchvision's state-dict keys (`layer3.5.bn2.running_var`), except
/// the shortcut's `downsample.conv`/`downsample.bn` for torchvision's `downsample.0/1` and
/// Burn's `gamma`/`beta` for batch-norm `weight`/`bias`; the importer maps both.
///
/// The forward pass is available stage by stage ([`ResNet::stem`], [`ResNet::stage`]) so
/// that other modules (attention) can sit between the stages.
#[derive(Module, Debug)]
pub struct ResNet {
    /// 7×7 stride-2 stem convolution.
    pub conv1: Conv2d,
    /// Stem batch norm.
    pub bn1: BatchNorm,
    /// 3×3 stride-2 max pooling.
    pub maxpool: MaxPool2d,
    /// Stage 1 (stride 1).
    pub layer1: Vec<ResidualBlock>,
    /// Stage 2 (stride 2).
    pub layer2: Vec<ResidualBlock>,
    /// Stage 3 (stride 2).
    pub layer3: Vec<ResidualBlock>,
    /// Stage 4 (stride `last_stride`).
    pub layer4: Vec<ResidualBlock>,
    /// Whether the stem applies ReLU after `bn1`.
    pub stem_relu: bool,
    #[module(skip)]
    arch: ResNetArch,
    #[module(skip)]
    base_width: usize,
}

impl ResNet {
    /// The architecture this network was built as.
    pub fn arch(&self) -> ResNetArch {
        self.arch
    }

    /// Channels after the stem and after each stage (`[64, 256, 512, 1024, 2048]` for
    /// ResNet-50).
    pub fn stage_channels(&self) -> [usize; 5] {
        self.arch.stage_channels(self.base_width)
    }

    /// Width of [`ResNet::forward_pooled`]'s output.
    pub fn feature_dim(&self) -> usize {
        self.stage_channels()[4]
    }

    /// The stride of `layer4`'s first block (1 or 2).
    pub fn last_stride(&self) -> usize {
        let block = &self.layer4[0];
        let conv = if block.conv3.is_some() {
            &block.conv2
        } else {
            &block.conv1
        };
        conv.stride[0]
    }

    /// `[height, width]` of the stem's and each stage's output for an input of
    /// `height × width` (`[[64, 32], [64, 32], [32, 16], [16, 8], [16, 8]]` for 256 × 128 at
    /// last stride 1).
    pub fn stage_sizes(&self, height: usize, width: usize) -> [[usize; 2]; 5] {
        // k x k convolution or pooling with stride s and padding p: (x + 2p - k) / s + 1.
        let down = |x: usize, k: usize, s: usize, p: usize| (x + 2 * p - k) / s + 1;
        let pool = |x: usize| {
            if self.maxpool.ceil_mode {
                // No padding, rounded up: PyTorch's ceil_mode (a window starts inside the input).
                x.saturating_sub(3).div_ceil(2) + 1
            } else {
                down(x, 3, 2, 1)
            }
        };
        let stem = |x: usize| pool(down(x, 7, 2, 3));
        let half = |x: usize| down(x, 3, 2, 1);
        let last = |x: usize| if self.last_stride() == 2 { half(x) } else { x };
        let (h0, w0) = (stem(height), stem(width));
        let (h2, w2) = (half(h0), half(w0));
        let (h3, w3) = (half(h2), half(w2));
        [[h0, w0], [h0, w0], [h2, w2], [h3, w3], [last(h3), last(w3)]]
    }

    /// Every batch norm, stem first.
    pub fn batch_norms(&self) -> Vec<&BatchNorm> {
        let mut out = vec![&self.bn1];
        for block in self.blocks() {
            out.push(&block.bn1);
            out.push(&block.bn2);
            out.extend(block.bn3.as_ref());
            out.extend(block.downsample.as_ref().map(|d| &d.bn));
        }
        out
    }

    fn blocks(&self) -> impl Iterator<Item = &ResidualBlock> {
        self.layer1
            .iter()
            .chain(&self.layer2)
            .chain(&self.layer3)
            .chain(&self.layer4)
    }

    /// Sets the momentum of every batch norm. Momentum 0 makes a training-mode pass leave
    /// the running statistics as they are (SCAL's second, no-attention pass).
    pub fn set_batch_norm_momentum(&mut self, momentum: f64) {
        self.bn1.momentum = momentum;
        for block in self
            .layer1
            .iter_mut()
            .chain(&mut self.layer2)
            .chain(&mut self.layer3)
            .chain(&mut self.layer4)
        {
            block.bn1.momentum = momentum;
            block.bn2.momentum = momentum;
            if let Some(bn3) = &mut block.bn3 {
                bn3.momentum = momentum;
            }
            if let Some(d) = &mut block.downsample {
                d.bn.momentum = momentum;
            }
        }
    }

    /// conv1 → bn1 → (ReLU) → maxpool.
    ///
    /// # Shapes
    /// - `images`: `[N, 3, H, W]`
    /// - output: `[N, base_width, ⌈H/4⌉, ⌈W/4⌉]`
    ///
    /// # Panics
    /// If `images` does not have 3 channels.
    pub fn stem(&self, images: Tensor<4>) -> Tensor<4> {
        let [_, c, _, _] = images.dims();
        assert_eq!(
            c, 3,
            "ResNet::stem expects [N, 3, H, W] images, got {c} channels"
        );
        let mut x = self.bn1.forward(self.conv1.forward(images));
        if self.stem_relu {
            x = relu(x);
        }
        self.maxpool.forward(x)
    }

    /// Runs `layer{stage}` (stage 1..=4).
    ///
    /// # Shapes
    /// - `x`: `[N, stage_channels()[stage - 1], H, W]`
    /// - output: `[N, stage_channels()[stage], H', W']`
    ///
    /// # Panics
    /// If `stage` is not in 1..=4.
    pub fn stage(&self, stage: usize, x: Tensor<4>) -> Tensor<4> {
        let blocks = match stage {
            1 => &self.layer1,
            2 => &self.layer2,
            3 => &self.layer3,
            4 => &self.layer4,
            _ => panic!("ResNet::stage: stage must be 1..=4, got {stage}"),
        };
        blocks.iter().fold(x, |x, block| block.forward(x))
    }

    /// Runs the stem and the four stages, passing the output of each of the five through
    /// `between(index, x)` (index 0 = stem, 1..=4 = `layer1..layer4`) before the next one;
    /// the attention modules of SCAL sit there. Returns the last feature map.
    ///
    /// # Shapes
    /// - `images`: `[N, 3, H, W]`
    /// - output: `[N, feature_dim(), H/16 or H/32, W/16 or W/32]`
    pub fn forward_staged(
        &self,
        images: Tensor<4>,
        mut between: impl FnMut(usize, Tensor<4>) -> Tensor<4>,
    ) -> Tensor<4> {
        let mut x = between(0, self.stem(images));
        for stage in 1..=4 {
            x = between(stage, self.stage(stage, x));
        }
        x
    }

    /// The last stage's feature map.
    ///
    /// # Shapes
    /// - `images`: `[N, 3, H, W]`
    /// - output: `[N, feature_dim(), H', W']` (16 × 8 for 256 × 128 at last stride 1)
    pub fn forward_features(&self, images: Tensor<4>) -> Tensor<4> {
        self.forward_staged(images, |_, x| x)
    }

    /// Globally average-pooled last stage: torchvision's output before `fc`.
    ///
    /// # Shapes
    /// - `images`: `[N, 3, H, W]`
    /// - output: `[N, feature_dim()]`
    pub fn forward_pooled(&self, images: Tensor<4>) -> Tensor<2> {
        global_average_pool(self.forward_features(images))
    }
}

/// Mean over the spatial dimensions.
///
/// # Shapes
/// - `x`: `[N, C, H, W]`
/// - output: `[N, C]`
pub fn global_average_pool(x: Tensor<4>) -> Tensor<2> {
    let [n, c, h, w] = x.dims();
    // A sum and a division rather than `mean_dim`: the same numbers, and operations the ONNX
    // export can lower (burn-onnx 0.22 has no lowering for a mean over a dimension).
    x.reshape([n, c, h * w])
        .sum_dim(2)
        .div_scalar((h * w) as f64)
        .reshape([n, c])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Device {
        Device::flex()
    }

    #[test]
    fn stage_shapes_follow_the_strides() {
        let dev = device();
        for (last_stride, h4, w4) in [(2, 2, 1), (1, 4, 2)] {
            let model = ResNetConfig::new(ResNetArch::ResNet50)
                .with_base_width(4)
                .with_last_stride(last_stride)
                .init(&dev);
            let images = Tensor::<4>::ones([2, 3, 64, 32], &dev);
            let mut shapes = Vec::new();
            let out = model.forward_staged(images, |i, x| {
                shapes.push((i, x.dims()));
                x
            });
            assert_eq!(
                shapes,
                vec![
                    (0, [2, 4, 16, 8]),
                    (1, [2, 16, 16, 8]),
                    (2, [2, 32, 8, 4]),
                    (3, [2, 64, 4, 2]),
                    (4, [2, 128, h4, w4]),
                ]
            );
            assert_eq!(out.dims(), [2, 128, h4, w4]);
            assert_eq!(model.last_stride(), last_stride);
            let predicted = model.stage_sizes(64, 32);
            for (i, dims) in shapes.iter().map(|(_, d)| d).enumerate() {
                assert_eq!(predicted[i], [dims[2], dims[3]], "stage {i}");
            }
        }
    }

    #[test]
    fn stage_sizes_at_reid_input_sizes() {
        let dev = device();
        let model = ResNetConfig::new(ResNetArch::ResNet18)
            .with_base_width(2)
            .with_last_stride(1)
            .init(&dev);
        assert_eq!(
            model.stage_sizes(256, 128),
            [[64, 32], [64, 32], [32, 16], [16, 8], [16, 8]]
        );
        assert_eq!(
            model.stage_sizes(384, 128),
            [[96, 32], [96, 32], [48, 16], [24, 8], [24, 8]]
        );
        for (h, w) in [(256, 128), (384, 128), (65, 33)] {
            let mut sizes = Vec::new();
            model.forward_staged(Tensor::<4>::zeros([1, 3, h, w], &dev), |_, x| {
                let [_, _, a, b] = x.dims();
                sizes.push([a, b]);
                x
            });
            assert_eq!(sizes, model.stage_sizes(h, w).to_vec(), "{h}x{w}");
        }
    }

    #[test]
    fn basic_and_bottleneck_blocks_have_torchvision_structure() {
        let dev = device();
        let r18 = ResNetConfig::new(ResNetArch::ResNet18)
            .with_base_width(4)
            .init(&dev);
        assert_eq!(r18.layer1.len(), 2);
        assert!(r18.layer1[0].conv3.is_none());
        assert!(r18.layer1[0].downsample.is_none());
        assert!(r18.layer2[0].downsample.is_some());
        assert_eq!(r18.layer2[0].conv1.stride, [2, 2]);
        let r101 = ResNetConfig::new(ResNetArch::ResNet101)
            .with_base_width(2)
            .init(&dev);
        assert_eq!(r101.layer3.len(), 23);
        assert!(r101.layer1[0].downsample.is_some(), "64 -> 256 channels");
        assert_eq!(r101.layer2[0].conv2.stride, [2, 2]);
        assert_eq!(r101.layer2[0].conv1.stride, [1, 1]);
        assert_eq!(r101.feature_dim(), 64);
    }

    #[test]
    fn between_hook_changes_what_the_next_stage_sees() {
        let dev = device();
        let model = ResNetConfig::new(ResNetArch::ResNet18)
            .with_base_width(4)
            .init(&dev);
        let images = Tensor::<4>::random(
            [1, 3, 32, 32],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &dev,
        );
        let plain = model.forward_pooled(images.clone());
        let zeroed = global_average_pool(
            model.forward_staged(images, |i, x| if i == 2 { x.zeros_like() } else { x }),
        );
        let diff: f32 = (plain - zeroed).abs().sum().into_scalar();
        assert!(diff > 0.0, "zeroing stage 2 must change the pooled feature");
    }

    #[test]
    #[should_panic(expected = "expects [N, 3, H, W]")]
    fn stem_rejects_wrong_channel_count() {
        let dev = device();
        let model = ResNetConfig::new(ResNetArch::ResNet18)
            .with_base_width(2)
            .init(&dev);
        model.stem(Tensor::<4>::ones([1, 1, 32, 32], &dev));
    }

    #[test]
    #[should_panic(expected = "last_stride must be 1 or 2")]
    fn rejects_bad_last_stride() {
        ResNetConfig::new(ResNetArch::ResNet18)
            .with_last_stride(3)
            .init(&device());
    }
}
