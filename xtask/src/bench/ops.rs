//! `cargo xtask bench --measures ops`: the operation-level profile of the BN-neck training
//! step on Burn's CPU backend (flex).
//!
//! Every distinct operation of ResNet-50 (last stride 1), or of the `--profile`'s backbone
//! (`quick`: ResNet-18 of base width 32), at the benchmark's input size and training batch,
//! with how often one training step runs it: convolution forward, data
//! gradient and weight gradient; batch normalization's training forward and backward; max
//! pooling forward and backward; ReLU forward and backward; the residual addition and the
//! gradient addition where a block's input branches; one Adam step over every parameter.
//! Each is timed alone on the flex backend (`burn_flex::Flex`, called through Burn's
//! backend traits, as the autodiff graph calls it), then the whole step is timed, so the
//! sum of the rows (time × count) can be set against it.
//!
//! `crates/scal-backbone/benches/pytorch_resnet50.py ops` (`--model quick ops` for the quick
//! profile) times the same list in PyTorch with the same `op` and `input` strings;
//! `scripts/ops-vs-pytorch.py` joins the two. The profile covers the BN-neck step's
//! operations: the SCAL step's attention agents, critics and second pass are not in it.

use std::time::Instant;

use anyhow::{Result, bail};
use burn::module::{ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, Tensor};
use burn_backend::ops::{ActivationOps, ConvOptions, FloatTensorOps, ModuleOps};
use burn_backend::{Distribution as BackendDistribution, FloatDType, TensorMetadata};
use burn_flex::{Flex, FlexDevice, FlexTensor};
use burn_std::{IntDType, Shape};
use scal_backbone::BlockKind;
use scal_model::{AttentionKind, ScalConfig};

use super::{BenchOptions, BenchRow, Measure, TrainStep, network, optimizer, peak_rss_mib};
use crate::backend::Backend;
use crate::backend::device_name;

/// One operation of the step: what it is, its operands, how often a step runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct OpSpec {
    /// `conv_forward`, `conv_data_grad`, `conv_weight_grad`, `bn_train_forward`,
    /// `bn_train_backward`, `maxpool_forward`, `maxpool_backward`, `relu_forward`,
    /// `relu_backward`, `residual_add`, `grad_add` or `adam_step`.
    pub op: &'static str,
    /// The operands, e.g. `x[16,64,64,32] w[64,64,3,3] s1 p1`.
    pub input: String,
    /// Calls per training step.
    pub count: usize,
    kind: OpKind,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum OpKind {
    Conv(ConvShape, ConvPass),
    BatchNorm([usize; 4], bool),
    MaxPool([usize; 4], bool),
    Relu([usize; 4], bool),
    Add([usize; 4]),
    Adam,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ConvPass {
    Forward,
    DataGrad,
    WeightGrad,
}

/// A convolution: input `[n, c_in, h, w]`, a square kernel `k`, stride, padding, `c_out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ConvShape {
    n: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
}

impl ConvShape {
    fn out_hw(&self) -> (usize, usize) {
        let out = |size: usize| (size + 2 * self.pad - self.k) / self.stride + 1;
        (out(self.h), out(self.w))
    }

    fn label(&self) -> String {
        format!(
            "x[{},{},{},{}] w[{},{},{},{}] s{} p{}",
            self.n,
            self.c_in,
            self.h,
            self.w,
            self.c_out,
            self.c_in,
            self.k,
            self.k,
            self.stride,
            self.pad
        )
    }
}

fn dims_label(d: [usize; 4]) -> String {
    format!("x[{},{},{},{}]", d[0], d[1], d[2], d[3])
}

/// Counts each distinct (op, operands) in order of first appearance.
#[derive(Default)]
struct OpList(Vec<OpSpec>);

impl OpList {
    fn add(&mut self, op: &'static str, kind: OpKind, input: String) {
        match self.0.iter_mut().find(|s| s.op == op && s.input == input) {
            Some(s) => s.count += 1,
            None => self.0.push(OpSpec {
                op,
                input,
                count: 1,
                kind,
            }),
        }
    }

    /// A convolution with its two gradients (no data gradient for the network's input);
    /// returns the output's height and width.
    fn conv(&mut self, c: ConvShape, data_grad: bool) -> (usize, usize) {
        self.add(
            "conv_forward",
            OpKind::Conv(c, ConvPass::Forward),
            c.label(),
        );
        if data_grad {
            self.add(
                "conv_data_grad",
                OpKind::Conv(c, ConvPass::DataGrad),
                c.label(),
            );
        }
        self.add(
            "conv_weight_grad",
            OpKind::Conv(c, ConvPass::WeightGrad),
            c.label(),
        );
        c.out_hw()
    }

    fn bn(&mut self, d: [usize; 4]) {
        self.add(
            "bn_train_forward",
            OpKind::BatchNorm(d, true),
            dims_label(d),
        );
        self.add(
            "bn_train_backward",
            OpKind::BatchNorm(d, false),
            dims_label(d),
        );
    }

    fn relu(&mut self, d: [usize; 4]) {
        self.add("relu_forward", OpKind::Relu(d, true), dims_label(d));
        self.add("relu_backward", OpKind::Relu(d, false), dims_label(d));
    }
}

/// The model's name in the Adam row: the depth, and the base width where it is not
/// torchvision's 64 (`resnet50`, `resnet18w32`).
fn model_label(network: &ScalConfig) -> String {
    match network.base_width {
        64 => network.arch.name().to_string(),
        width => format!("{}w{width}", network.arch.name()),
    }
}

/// One residual block's operations (basic or bottleneck, torchvision's layout: the stride
/// on the first 3 × 3 convolution, a projection shortcut where the shape changes) on a
/// `[n, c_in, h, w]` input; returns the output's channels, height and width.
fn block_ops(
    list: &mut OpList,
    kind: BlockKind,
    [n, c_in, h, w]: [usize; 4],
    planes: usize,
    s: usize,
) -> (usize, usize, usize) {
    let conv = |c_in, h, w, c_out, k, stride, pad| ConvShape {
        n,
        c_in,
        h,
        w,
        c_out,
        k,
        stride,
        pad,
    };
    let out_c = planes * kind.expansion();
    let (oh, ow) = match kind {
        BlockKind::Bottleneck => {
            list.conv(conv(c_in, h, w, planes, 1, 1, 0), true);
            list.bn([n, planes, h, w]);
            list.relu([n, planes, h, w]);
            let (oh, ow) = list.conv(conv(planes, h, w, planes, 3, s, 1), true);
            list.bn([n, planes, oh, ow]);
            list.relu([n, planes, oh, ow]);
            list.conv(conv(planes, oh, ow, out_c, 1, 1, 0), true);
            (oh, ow)
        }
        BlockKind::Basic => {
            let (oh, ow) = list.conv(conv(c_in, h, w, planes, 3, s, 1), true);
            list.bn([n, planes, oh, ow]);
            list.relu([n, planes, oh, ow]);
            list.conv(conv(planes, oh, ow, out_c, 3, 1, 1), true);
            (oh, ow)
        }
    };
    list.bn([n, out_c, oh, ow]);
    if s != 1 || c_in != out_c {
        list.conv(conv(c_in, h, w, out_c, 1, s, 0), true);
        list.bn([n, out_c, oh, ow]);
    }
    let out = [n, out_c, oh, ow];
    list.add("residual_add", OpKind::Add(out), dims_label(out));
    list.relu(out);
    // The block's input feeds two branches: their gradients are added.
    let input = [n, c_in, h, w];
    list.add("grad_add", OpKind::Add(input), dims_label(input));
    (out_c, oh, ow)
}

/// The operations of one BN-neck training step of `network`'s backbone (torchvision's
/// layout at its depth, base width, last stride and stem) on `[n, 3, height, width]`
/// images, with their counts; the last row is one Adam step over the model's parameters.
pub fn step_ops(network: &ScalConfig, n: usize) -> Vec<OpSpec> {
    let mut list = OpList::default();
    let width = network.base_width;
    let stem = ConvShape {
        n,
        c_in: 3,
        h: network.height,
        w: network.width,
        c_out: width,
        k: 7,
        stride: 2,
        pad: 3,
    };
    let (mut h, mut w) = list.conv(stem, false);
    list.bn([n, width, h, w]);
    if network.stem_relu {
        list.relu([n, width, h, w]);
    }
    let pooled = [n, width, h, w];
    list.add(
        "maxpool_forward",
        OpKind::MaxPool(pooled, true),
        dims_label(pooled),
    );
    list.add(
        "maxpool_backward",
        OpKind::MaxPool(pooled, false),
        dims_label(pooled),
    );
    (h, w) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
    let mut c_in = width;
    let kind = network.arch.block_kind();
    let strides = [1, 2, 2, network.last_stride];
    for (stage, blocks) in network.arch.blocks_per_stage().into_iter().enumerate() {
        for block in 0..blocks {
            let s = if block == 0 { strides[stage] } else { 1 };
            (c_in, h, w) = block_ops(&mut list, kind, [n, c_in, h, w], width << stage, s);
        }
    }
    let mut ops = list.0;
    ops.push(OpSpec {
        op: "adam_step",
        input: format!(
            "{}+bnneck+classifier({})",
            model_label(network),
            network.num_classes
        ),
        count: 1,
        kind: OpKind::Adam,
    });
    ops
}

fn random(dims: &[usize]) -> FlexTensor {
    Flex::float_random(
        Shape::from(dims.to_vec()),
        BackendDistribution::Normal(0.0, 1.0),
        &FlexDevice,
        FloatDType::F32,
    )
}

/// Mean seconds of `iterations` calls after `warmup` calls.
fn time_calls(warmup: usize, iterations: usize, mut call: impl FnMut()) -> f64 {
    time_with(warmup, iterations, || (), |()| call())
}

/// Mean seconds of `iterations` calls of `call` after `warmup` calls, each on operands that
/// `setup` makes beforehand (untimed): how an operation that the step runs on operands it
/// owns alone (and so may overwrite) is timed.
fn time_with<I>(
    warmup: usize,
    iterations: usize,
    mut setup: impl FnMut() -> I,
    mut call: impl FnMut(I),
) -> f64 {
    for _ in 0..warmup {
        call(setup());
    }
    let mut seconds = 0.0;
    for _ in 0..iterations.max(1) {
        let operands = setup();
        let start = Instant::now();
        call(operands);
        seconds += start.elapsed().as_secs_f64();
    }
    seconds / iterations.max(1) as f64
}

fn time_conv(c: ConvShape, pass: ConvPass, o: &BenchOptions) -> f64 {
    let x = random(&[c.n, c.c_in, c.h, c.w]);
    let weight = random(&[c.c_out, c.c_in, c.k, c.k]);
    let options = ConvOptions::new([c.stride; 2], [c.pad; 2], [1, 1], 1);
    let (oh, ow) = c.out_hw();
    let dy = random(&[c.n, c.c_out, oh, ow]);
    time_calls(o.warmup, o.iterations, || {
        let (x, weight, dy, options) = (x.clone(), weight.clone(), dy.clone(), options.clone());
        let _ = match pass {
            ConvPass::Forward => Flex::conv2d(x, weight, None, options),
            ConvPass::DataGrad => Flex::conv2d_x_backward(x, weight, dy, options),
            ConvPass::WeightGrad => Flex::conv2d_weight_backward(x, weight, dy, options),
        };
    })
}

fn time_batch_norm(d: [usize; 4], forward: bool, o: &BenchOptions) -> f64 {
    let x = random(&d);
    let gamma = random(&[d[1]]);
    let beta = random(&[d[1]]);
    let stats = Flex::batch_norm_train(x.clone(), gamma.clone(), beta.clone(), 1e-5);
    if forward {
        return time_calls(o.warmup, o.iterations, || {
            let _ = Flex::batch_norm_train(x.clone(), gamma.clone(), beta.clone(), 1e-5);
        });
    }
    time_with(
        o.warmup,
        o.iterations,
        || random(&d),
        |dy| {
            let _ = Flex::batch_norm_train_backward(
                x.clone(),
                gamma.clone(),
                stats.mean.clone(),
                stats.variance.clone(),
                1e-5,
                dy,
            );
        },
    )
}

/// Max pooling 3 × 3, stride 2, padding 1 on the stem's output `d`.
fn time_max_pool(d: [usize; 4], forward: bool, o: &BenchOptions) -> f64 {
    let x = random(&d);
    let pool = |x: FlexTensor| {
        Flex::max_pool2d_with_indices(x, [3, 3], [2, 2], [1, 1], [1, 1], false, IntDType::I64)
    };
    let pooled = pool(x.clone());
    let dy = Flex::float_random(
        pooled.output.shape(),
        BackendDistribution::Normal(0.0, 1.0),
        &FlexDevice,
        FloatDType::F32,
    );
    time_calls(o.warmup, o.iterations, || {
        if forward {
            let _ = pool(x.clone());
        } else {
            let _ = Flex::max_pool2d_with_indices_backward(
                x.clone(),
                [3, 3],
                [2, 2],
                [1, 1],
                [1, 1],
                false,
                dy.clone(),
                pooled.indices.clone(),
            );
        }
    })
}

/// ReLU as the autodiff graph runs it: the forward pass keeps its input for the backward
/// pass (so it writes a new tensor), and the backward pass gets a gradient of its own.
fn time_relu(d: [usize; 4], forward: bool, o: &BenchOptions) -> f64 {
    let x = random(&d);
    if forward {
        return time_calls(o.warmup, o.iterations, || {
            let _ = Flex::relu(x.clone());
        });
    }
    time_with(
        o.warmup,
        o.iterations,
        || random(&d),
        |dy| {
            let _ = Flex::relu_backward(x.clone(), dy);
        },
    )
}

/// An addition whose left operand the step owns alone (a batch norm's output, or a
/// gradient being accumulated), as the graph runs it.
fn time_add(d: [usize; 4], o: &BenchOptions) -> f64 {
    let b = random(&d);
    time_with(
        o.warmup,
        o.iterations,
        || random(&d),
        |a| {
            let _ = Flex::float_add(a, b.clone());
        },
    )
}

/// The parameters that take gradients, with their shapes.
#[derive(Default)]
struct TrainableShapes(Vec<(ParamId, Vec<usize>)>);

impl ModuleVisitor for TrainableShapes {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if param.is_require_grad() {
            self.0.push((param.id, param.val().dims().to_vec()));
        }
    }
}

/// One Adam step (the training measures' optimizer, [`optimizer`]) over every trainable
/// parameter of the BN-neck model, after one step has created Adam's moments; the
/// gradients are random tensors made before each timed call.
fn time_adam(device: &Device, o: &BenchOptions) -> f64 {
    use burn::module::Module;
    let autodiff = device.clone().autodiff();
    let mut model = network(o, AttentionKind::None).init(&autodiff);
    let mut shapes = TrainableShapes::default();
    model.visit(&mut shapes);
    let (mut optimizer, lr) = optimizer(o);
    let grads = |shapes: &TrainableShapes| {
        let mut grads = GradientsParams::new();
        for (id, dims) in &shapes.0 {
            register_random(&mut grads, *id, dims, device);
        }
        grads
    };
    let mut seconds = 0.0;
    let timed = o.iterations.max(1);
    for i in 0..(o.warmup.max(1) + timed) {
        let g = grads(&shapes);
        let start = Instant::now();
        model = optimizer.step(lr, model, g);
        let _ = device.sync();
        if i >= o.warmup.max(1) {
            seconds += start.elapsed().as_secs_f64();
        }
    }
    seconds / timed as f64
}

fn register_random(grads: &mut GradientsParams, id: ParamId, dims: &[usize], device: &Device) {
    let normal = Distribution::Normal(0.0, 1e-3);
    match dims.len() {
        1 => grads.register(id, Tensor::<1>::random([dims[0]], normal, device)),
        2 => grads.register(id, Tensor::<2>::random([dims[0], dims[1]], normal, device)),
        4 => grads.register(
            id,
            Tensor::<4>::random([dims[0], dims[1], dims[2], dims[3]], normal, device),
        ),
        _ => {}
    }
}

/// The whole BN-neck training step (as `backbone_train_step`), mean seconds.
fn time_step(device: &Device, o: &BenchOptions) -> f64 {
    let mut step = TrainStep::new(o, device, AttentionKind::None);
    time_calls(o.warmup.max(1), o.iterations, || {
        step.run();
        let _ = device.sync();
    })
}

fn op_row(
    backend: Backend,
    device: &Device,
    o: &BenchOptions,
    spec: &OpSpec,
    seconds: f64,
) -> BenchRow {
    BenchRow {
        measure: Measure::Ops.name(),
        backend: backend.to_string(),
        device: device_name(backend, device),
        batch: o.train_batch,
        input: spec.input.clone(),
        throughput: 1.0 / seconds,
        unit: "calls/s",
        seconds_per_iteration: seconds,
        iterations: o.iterations,
        peak_rss_mib: peak_rss_mib(),
        device_memory_mib: None,
        first_iteration_seconds: None,
        date: super::now_utc(),
        op: Some(spec.op.to_string()),
        count: Some(spec.count),
        step_ms: Some(seconds * 1000.0 * spec.count as f64),
        explained: None,
        params: None,
    }
}

/// Runs the profile: one row per operation, then a `step` row with the whole step's time
/// and the share of it the operation rows explain.
pub fn profile(
    backend: Backend,
    device: &Device,
    o: &BenchOptions,
    on_row: &mut dyn FnMut(&BenchRow),
) -> Result<Vec<BenchRow>> {
    if backend != Backend::Flex {
        bail!("--measures ops profiles Burn's CPU backend: run it with --backend flex");
    }
    let mut rows = Vec::new();
    let mut total = 0.0;
    for spec in step_ops(&network(o, AttentionKind::None), o.train_batch) {
        let seconds = match spec.kind {
            OpKind::Conv(c, pass) => time_conv(c, pass, o),
            OpKind::BatchNorm(d, forward) => time_batch_norm(d, forward, o),
            OpKind::MaxPool(d, forward) => time_max_pool(d, forward, o),
            OpKind::Relu(d, forward) => time_relu(d, forward, o),
            OpKind::Add(d) => time_add(d, o),
            OpKind::Adam => time_adam(device, o),
        };
        total += seconds * spec.count as f64;
        let row = op_row(backend, device, o, &spec, seconds);
        on_row(&row);
        rows.push(row);
    }
    let step = time_step(device, o);
    let spec = OpSpec {
        op: "step",
        input: format!(
            "bnneck step, [{},3,{},{}]",
            o.train_batch, o.height, o.width
        ),
        count: 1,
        kind: OpKind::Adam,
    };
    let mut row = op_row(backend, device, o, &spec, step);
    row.explained = Some(total / step);
    row.step_ms = Some(total * 1000.0);
    on_row(&row);
    rows.push(row);
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ResNet-50 has 53 convolutions (one stem, 16 blocks of three, four downsamples), 53
    /// batch normalizations, 49 ReLUs (one per convolution but the downsamples and the
    /// blocks' third, plus one per block output) and 16 blocks.
    #[test]
    fn the_step_list_counts_resnet50s_layers() {
        let ops = step_ops(&ScalConfig::new(751), 16);
        let count =
            |op: &str| -> usize { ops.iter().filter(|s| s.op == op).map(|s| s.count).sum() };
        assert_eq!(count("conv_forward"), 53);
        assert_eq!(count("conv_weight_grad"), 53);
        assert_eq!(count("conv_data_grad"), 52);
        assert_eq!(count("bn_train_forward"), 53);
        assert_eq!(count("relu_forward"), 49);
        assert_eq!(count("residual_add"), 16);
        assert_eq!(count("grad_add"), 16);
        assert_eq!(count("maxpool_forward"), 1);
        assert_eq!(count("adam_step"), 1);
        // The stem at 256 × 128, layer 4 at 16 × 8 with last stride 1.
        assert!(
            ops.iter()
                .any(|s| s.input == "x[16,3,256,128] w[64,3,7,7] s2 p3")
        );
        assert!(
            ops.iter()
                .any(|s| s.input == "x[16,512,16,8] w[512,512,3,3] s1 p1")
        );
        assert!(
            ops.iter()
                .any(|s| s.input == "x[16,1024,16,8] w[2048,1024,1,1] s1 p0")
        );
        assert!(
            ops.iter()
                .any(|s| s.op == "maxpool_forward" && s.input == "x[16,64,128,64]")
        );
        assert_eq!(ops.last().unwrap().input, "resnet50+bnneck+classifier(751)");
    }

    /// The quick profile's ResNet-18 of base width 32 has 20 convolutions (one stem, 8
    /// blocks of two, three downsamples: layer1 keeps its width), 20 batch normalizations,
    /// 17 ReLUs (the stem, two per block) and 8 blocks; at 128 × 64 its layer 4 runs at
    /// 8 × 4 (last stride 1).
    #[test]
    fn the_step_list_counts_the_quick_profiles_layers() {
        use super::super::BenchProfile;
        let o = BenchOptions::defaults_for(Backend::Flex).with_profile(BenchProfile::Quick);
        let ops = step_ops(&network(&o, AttentionKind::None), o.train_batch);
        let count =
            |op: &str| -> usize { ops.iter().filter(|s| s.op == op).map(|s| s.count).sum() };
        assert_eq!(count("conv_forward"), 20);
        assert_eq!(count("conv_weight_grad"), 20);
        assert_eq!(count("conv_data_grad"), 19);
        assert_eq!(count("bn_train_forward"), 20);
        assert_eq!(count("relu_forward"), 17);
        assert_eq!(count("residual_add"), 8);
        assert_eq!(count("grad_add"), 8);
        assert_eq!(count("maxpool_backward"), 1);
        for input in [
            "x[64,3,128,64] w[32,3,7,7] s2 p3",
            "x[64,32,32,16] w[32,32,3,3] s1 p1",
            "x[64,128,8,4] w[256,128,1,1] s1 p0",
            "x[64,256,8,4] w[256,256,3,3] s1 p1",
            "x[64,32,64,32]",
            "resnet18w32+bnneck+classifier(100)",
        ] {
            assert!(ops.iter().any(|s| s.input == input), "{input}");
        }
    }
}
