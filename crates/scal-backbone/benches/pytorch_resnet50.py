#!/usr/bin/env python3
"""The PyTorch side of `benches/resnet50.rs` and of `cargo xtask bench`: torchvision
ResNet-50 with last stride 1 at 256 x 128, or with `--model quick` the quick profile's model
(`cargo xtask bench --profile quick`).

Measures:
  inference     pooled features, eval mode, no_grad (batch 64 by default)
  train         forward, cross-entropy over 751 classes on a linear head, backward, Adam
                (batch 16 by default; the CPU comparison of benches/resnet50.rs)
  train_bnneck  the BN-neck baseline step of `cargo xtask bench`'s backbone_train_step:
                pooled f -> batch-hard triplet (margin 0.3, Euclidean) ; f -> BN neck (shift
                frozen) -> bias-free classifier (751) -> label-smoothed CE (0.1) ; one
                backward ; Adam lr 3.5e-4 (batch 64 by default, P x 4)
  ops           the operation-level profile of `cargo xtask bench --measures ops`: every
                distinct operation of the train_bnneck step (convolution forward, data and
                weight gradient; batch norm training forward and backward; max pooling;
                ReLU; the residual and gradient additions; one Adam step), each timed alone
                with ATen's own kernels, then the whole step (batch 16 by default). One JSON
                line per operation with the same `op` and `input` strings as Burn's rows.

    python crates/scal-backbone/benches/pytorch_resnet50.py --threads 2 inference
    python crates/scal-backbone/benches/pytorch_resnet50.py --threads 2 train
    python crates/scal-backbone/benches/pytorch_resnet50.py --device cuda --batch 64 train_bnneck
    python crates/scal-backbone/benches/pytorch_resnet50.py --device cuda --no-tf32 train_bnneck
    python crates/scal-backbone/benches/pytorch_resnet50.py --threads 2 --batch 16 ops

`--model quick` measures the quick profile's network instead (`cargo xtask train`'s default,
crates/scal-run/src/config.rs): a ResNet-18 of base width 32 (not torchvision's, which has no
width setting: the same layout, inline), last stride 1, 128 x 64 inputs, 100 classes (the
synthetic dataset's training identities), Adam at lr 1e-3 with weight decay 5e-4 (none on the
critics), epsilon 1e-8; every batch defaults to 64 (16 identities x 4).

  inference     the backbone's pooled features, as above
  train_bnneck  the BN-neck step, as above, with the profile's optimizer
  train_scal    the SCAL step of `cargo xtask bench`'s scal_train_step (scal_model::objective::
                scal_loss): five channel agents (SE blocks, hidden width 8, no biases) after the
                stem and layer1..4, gating X <- X * A; five critics V = fc2(relu(fc1([GAP(X),
                A]))) (hidden width 64 for quick, 256 for resnet50) on detached X and A; a
                second, no-gradient forward pass without attention (batch statistics, running
                statistics untouched); R = R_c + R_a; J_tri + J_cls + lambda J_cri + J_mse with
                J_cri on maps recomputed from the detached stage inputs through frozen critics
                (it reaches the agents only) and J_mse on the detached pass (the critics
                only); one backward, Adam. Also with the default ResNet-50 model.
  ops           the operation profile of the quick model's BN-neck step (the list of
                `cargo xtask bench --profile quick --measures ops`)

    python crates/scal-backbone/benches/pytorch_resnet50.py --model quick --iters 1 train_scal

Each measure runs in its own process so that its peak memory is its own. Prints one JSON
line: {"measure", "device", "batch", "img_per_s", "s_per_iter", "peak_rss_mib",
"cuda_peak_reserved_mib", "tf32", "torch"}; with a model other than resnet50, also "model",
"input" (HxW) and "params" (the parameters of the model measured, the BN neck's frozen shift
included, running statistics not, as `cargo xtask bench --profile` counts them). On CUDA, PyTorch's
default lets cuDNN convolutions use TF32; `--no-tf32` turns that off (full FP32, like Burn's
kernels).
"""
import argparse
import contextlib
import json
import resource
import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class ModelSpec:
    """A model measured and how it trains (the values of `cargo xtask bench`'s side)."""
    name: str  # --model
    arch: str  # resnet18 or resnet50
    base_width: int
    last_stride: int
    height: int
    width: int
    classes: int
    lr: float
    weight_decay: float  # Adam's L2 on every parameter but the critics'
    critic_weight_decay: float
    critic_hidden: int
    channel_hidden: int = 8
    eps: float = 1e-8
    lam: float = 1.0  # lambda of J_cri
    smoothing: float = 0.1
    margin: float = 0.3

    @property
    def label(self):
        """The model's name in the ops profile's Adam row (xtask/src/bench/ops.rs)."""
        return self.arch if self.base_width == 64 else "%sw%d" % (self.arch, self.base_width)


MODELS = {
    # `cargo xtask bench` without --profile: ScalConfig::new(751), Adam at 3.5e-4 (PyTorch's
    # default epsilon, as this script always had).
    "resnet50": ModelSpec("resnet50", "resnet50", 64, 1, 256, 128, 751, 3.5e-4, 0.0, 0.0, 256),
    # The quick profile (TrainingConfig::profile(Profile::Quick) in crates/scal-run/src/config.rs,
    # and SynthConfig::default().train_ids for the classes).
    "quick": ModelSpec("quick", "resnet18", 32, 1, 128, 64, 100, 1e-3, 5e-4, 0.0, 64),
}
BLOCKS = {"resnet18": ("basic", [2, 2, 2, 2]), "resnet50": ("bottleneck", [3, 4, 6, 3])}


class BasicBlock(nn.Module):
    """torchvision's BasicBlock (two 3 x 3 convolutions, the stride on the first)."""
    expansion = 1

    def __init__(self, cin, planes, stride, downsample):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += idt
        return self.relu(out)


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (1 x 1, 3 x 3 with the stride, 1 x 1 expansion 4)."""
    expansion = 4

    def __init__(self, cin, width, stride, downsample):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += idt
        return self.relu(out)


class ResNet(nn.Module):
    """torchvision's ResNet layout at any base width (scal-backbone's ResNetConfig): a
    projection shortcut where a block changes the shape, `last_stride` on layer4."""

    def __init__(self, block, layers, base_width=64, last_stride=2, classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, base_width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(base_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin, stages = base_width, []
        for stage, (blocks, stride) in enumerate(zip(layers, [1, 2, 2, last_stride])):
            planes = base_width << stage
            out = planes * block.expansion
            down = None
            if stride != 1 or cin != out:
                down = nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False), nn.BatchNorm2d(out))
            seq = [block(cin, planes, stride, down)]
            cin = out
            seq += [block(cin, planes, 1, None) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*seq))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


try:
    import torchvision

    def resnet50():
        return torchvision.models.resnet50()
except ImportError:  # a machine with PyTorch but no torchvision: the same network, inline
    def resnet50():
        return ResNet(Bottleneck, [3, 4, 6, 3])


def model_last_stride_1(classes):
    model = resnet50()
    model.layer4[0].conv2.stride = (1, 1)
    model.layer4[0].downsample[0].stride = (1, 1)
    model.fc = nn.Linear(2048, classes)
    return model


def backbone(spec):
    """The spec's ResNet with its classifier `fc` (torchvision's ResNet-50 for resnet50)."""
    if spec.name == "resnet50":
        return model_last_stride_1(spec.classes)
    kind, layers = BLOCKS[spec.arch]
    block = BasicBlock if kind == "basic" else Bottleneck
    return ResNet(block, layers, spec.base_width, spec.last_stride, spec.classes)


def stage_channels(spec):
    """Channels after the stem and after layer1..4 (ResNetArch::stage_channels)."""
    e = 1 if BLOCKS[spec.arch][0] == "basic" else 4
    w = spec.base_width
    return [w, w * e, w * 2 * e, w * 4 * e, w * 8 * e]


class ChannelAgent(nn.Module):
    """scal-attention's ChannelAttention: A = sigmoid(W2 relu(W1 GAP(X))), no biases."""

    def __init__(self, channels, hidden):
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, channels, bias=False)

    def forward(self, x):
        n, c = x.shape[:2]
        return torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3)))))).view(n, c, 1, 1)


class Critic(nn.Module):
    """scal-critic's channel Critic: V = fc2(relu(fc1([GAP(X), A]))), with biases; `frozen`
    reads detached weights (the frozen copy of scal_model::objective)."""

    def __init__(self, channels, hidden):
        super().__init__()
        self.fc1 = nn.Linear(2 * channels, hidden)
        self.fc2 = nn.Linear(hidden, 1)

    def forward(self, x, a, frozen=False):
        inp = torch.cat([x.mean((2, 3)), a.flatten(1)], 1)
        w1, b1, w2, b2 = self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias
        if frozen:
            w1, b1, w2, b2 = w1.detach(), b1.detach(), w2.detach(), b2.detach()
        return F.linear(F.relu(F.linear(inp, w1, b1)), w2, b2).view(-1)


class ScalNet(nn.Module):
    """scal-model's ScalModel: the backbone with, when `attention`, a channel agent after
    each of its five stages (X <- X * A) and one critic per agent; GAP, the BN neck with its
    shift frozen, the bias-free classifier (normal init, std 0.001). Without attention: the
    BN-neck model of the baseline step."""

    def __init__(self, spec, attention):
        super().__init__()
        self.backbone = backbone(spec)
        dim = self.backbone.fc.in_features
        self.backbone.fc = nn.Identity()
        channels = stage_channels(spec) if attention else []
        self.agents = nn.ModuleList([ChannelAgent(c, spec.channel_hidden) for c in channels])
        self.critics = nn.ModuleList([Critic(c, spec.critic_hidden) for c in channels])
        self.neck = nn.BatchNorm1d(dim)
        self.neck.bias.requires_grad_(False)
        self.classifier = nn.Linear(dim, spec.classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, x, gate=True):
        """(f, logits, maps, stage inputs); the maps only with attention and `gate`."""
        b = self.backbone
        stages = [lambda x: b.maxpool(b.relu(b.bn1(b.conv1(x)))), b.layer1, b.layer2, b.layer3,
                  b.layer4]
        maps, inputs = [], []
        for stage, run in enumerate(stages):
            x = run(x)
            if gate and len(self.agents) > 0:
                a = self.agents[stage](x)
                maps.append(a)
                inputs.append(x)
                x = x * a
        f = torch.flatten(b.avgpool(x), 1)
        return f, self.classifier(self.neck(f)), maps, inputs


def adam(model, spec):
    """Adam as the trainer builds it (scal_train::run::optimizer): every trainable parameter
    but the critics' with `weight_decay`, the critics' with `critic_weight_decay`."""
    critics = list(model.critics.parameters())
    ids = {id(p) for p in critics}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    groups = [{"params": rest, "weight_decay": spec.weight_decay}]
    if critics:
        groups.append({"params": critics, "weight_decay": spec.critic_weight_decay})
    return torch.optim.Adam(groups, lr=spec.lr, eps=spec.eps)


def labels(batch, spec, dev):
    """P x 4 labels, as `cargo xtask bench` draws them."""
    return (torch.arange(batch) // 4 * 7 % spec.classes).to(dev)


def batch_hard_triplet(f, y, margin=0.3):
    d = torch.cdist(f, f).clamp_min(1e-12)
    same = y[:, None] == y[None, :]
    hardest_pos = (d * same).max(1).values
    hardest_neg = (d + same * 1e6).min(1).values
    return F.relu(hardest_pos - hardest_neg + margin).mean()


@contextlib.contextmanager
def running_stats_frozen(model):
    """Batch norms in training mode that leave their running statistics as they are
    (momentum 0: ScalModel::no_attention_copy)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum


def rewards(logits, plain, y):
    """R = R_c + R_a (scal_rewards::rewards, RewardKind::Both), no gradient."""
    correct = (logits.argmax(1) == y).float()
    index = y[:, None]
    raised = F.softmax(logits, 1).gather(1, index) > F.softmax(plain, 1).gather(1, index)
    return correct + raised.view(-1).float()


def scal_loss(model, x, y, spec):
    """scal_model::objective::scal_loss with the quick profile's StepConfig (shared critic
    target, joint update, no exploration): J_tri + J_cls + lambda J_cri + J_mse."""
    f, logits, maps, inputs = model(x)
    loss = batch_hard_triplet(f, y, spec.margin) + F.cross_entropy(
        logits, y, label_smoothing=spec.smoothing)
    if len(model.agents) == 0:
        return loss
    # V_l on detached X_l and A_l: J_mse reaches the critics only.
    values = [c(xl.detach(), a.detach()) for c, xl, a in zip(model.critics, inputs, maps)]
    with torch.no_grad(), running_stats_frozen(model):
        plain = model(x, gate=False)[1]
    r = rewards(logits.detach(), plain, y)
    # J_cri: the maps recomputed from the detached stage inputs, the critics frozen: it
    # reaches the agents only.
    detached = [xl.detach() for xl in inputs]
    j_cri = -sum(c(xl, agent(xl), frozen=True).mean()
                 for c, agent, xl in zip(model.critics, model.agents, detached))
    j_mse = sum(((v - r) ** 2).mean() for v in values)
    return loss + spec.lam * j_cri + j_mse


def train_step(spec, attention, batch, dev):
    """A function running one training step (BN-neck without attention, SCAL with it) of
    the spec's model on one random P x 4 batch, and the model."""
    model = ScalNet(spec, attention).train().to(dev)
    opt = adam(model, spec)
    x = torch.randn(batch, 3, spec.height, spec.width, device=dev)
    y = labels(batch, spec, dev)

    def step():
        opt.zero_grad(set_to_none=True)
        scal_loss(model, x, y, spec).backward()
        opt.step()

    return step, model


def step_ops(spec, n):
    """The operations of one BN-neck training step of the spec's backbone (torchvision's
    layout, last stride as the spec sets it) on [n, 3, height, width] images, with their
    counts, in the order and with the labels of xtask/src/bench/ops.rs (step_ops)."""
    ops = {}

    def add(op, spec, label):
        key = (op, label)
        if key in ops:
            ops[key]["count"] += 1
        else:
            ops[key] = {"op": op, "input": label, "count": 1, "spec": spec}

    def dims(d):
        return "x[%d,%d,%d,%d]" % tuple(d)

    def conv(c_in, h, w, c_out, k, s, p, data_grad=True):
        label = "x[%d,%d,%d,%d] w[%d,%d,%d,%d] s%d p%d" % (n, c_in, h, w, c_out, c_in, k, k, s, p)
        spec = (n, c_in, h, w, c_out, k, s, p)
        add("conv_forward", spec, label)
        if data_grad:
            add("conv_data_grad", spec, label)
        add("conv_weight_grad", spec, label)
        return (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1

    def bn(d):
        add("bn_train_forward", d, dims(d))
        add("bn_train_backward", d, dims(d))

    def relu(d):
        add("relu_forward", d, dims(d))
        add("relu_backward", d, dims(d))

    def block(c_in, h, w, planes, s):
        if kind == "bottleneck":
            conv(c_in, h, w, planes, 1, 1, 0)
            bn([n, planes, h, w])
            relu([n, planes, h, w])
            oh, ow = conv(planes, h, w, planes, 3, s, 1)
            bn([n, planes, oh, ow])
            relu([n, planes, oh, ow])
            out_c = planes * 4
            conv(planes, oh, ow, out_c, 1, 1, 0)
        else:
            oh, ow = conv(c_in, h, w, planes, 3, s, 1)
            bn([n, planes, oh, ow])
            relu([n, planes, oh, ow])
            out_c = planes
            conv(planes, oh, ow, out_c, 3, 1, 1)
        bn([n, out_c, oh, ow])
        if s != 1 or c_in != out_c:
            conv(c_in, h, w, out_c, 1, s, 0)
            bn([n, out_c, oh, ow])
        out = [n, out_c, oh, ow]
        add("residual_add", out, dims(out))
        relu(out)
        add("grad_add", [n, c_in, h, w], dims([n, c_in, h, w]))
        return out_c, oh, ow

    kind, layers = BLOCKS[spec.arch]
    width = spec.base_width
    h, w = conv(3, spec.height, spec.width, width, 7, 2, 3, data_grad=False)
    bn([n, width, h, w])
    relu([n, width, h, w])
    add("maxpool_forward", [n, width, h, w], dims([n, width, h, w]))
    add("maxpool_backward", [n, width, h, w], dims([n, width, h, w]))
    h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    c_in = width
    for stage, (blocks, stride) in enumerate(zip(layers, [1, 2, 2, spec.last_stride])):
        for index in range(blocks):
            c_in, h, w = block(c_in, h, w, width << stage, stride if index == 0 else 1)
    rows = list(ops.values())
    rows.append({"op": "adam_step", "input": "%s+bnneck+classifier(%d)" % (spec.label, spec.classes),
                 "count": 1, "spec": None})
    return rows


def op_call(op, spec):
    """A no-argument function running one operation on random operands of its shape."""
    aten = torch.ops.aten
    if op.startswith("conv"):
        n, c_in, h, w, c_out, k, s, p = spec
        x, wt = torch.randn(n, c_in, h, w), torch.randn(c_out, c_in, k, k)
        y = F.conv2d(x, wt, None, s, p)
        dy = torch.randn_like(y)
        if op == "conv_forward":
            return lambda: F.conv2d(x, wt, None, s, p)
        mask = [op == "conv_data_grad", op == "conv_weight_grad", False]
        return lambda: aten.convolution_backward(dy, x, wt, None, [s, s], [p, p], [1, 1], False, [0, 0], 1, mask)
    x = torch.randn(*spec)
    if op.startswith("bn"):
        c = spec[1]
        g, b, rm, rv = torch.randn(c), torch.randn(c), torch.zeros(c), torch.ones(c)
        out, mean, invstd = aten.native_batch_norm(x, g, b, rm, rv, True, 0.1, 1e-5)
        dy = torch.randn_like(x)
        if op == "bn_train_forward":
            return lambda: aten.native_batch_norm(x, g, b, rm, rv, True, 0.1, 1e-5)
        return lambda: aten.native_batch_norm_backward(dy, x, g, rm, rv, mean, invstd, True, 1e-5, [True, True, True])
    if op.startswith("maxpool"):
        out, idx = aten.max_pool2d_with_indices(x, [3, 3], [2, 2], [1, 1], [1, 1], False)
        dy = torch.randn_like(out)
        if op == "maxpool_forward":
            return lambda: aten.max_pool2d_with_indices(x, [3, 3], [2, 2], [1, 1], [1, 1], False)
        return lambda: aten.max_pool2d_with_indices_backward(dy, x, [3, 3], [2, 2], [1, 1], [1, 1], False, idx)
    if op == "relu_forward":  # torchvision's ReLU(inplace=True)
        return lambda: torch.relu_(x)
    if op == "relu_backward":
        out, dy = torch.relu(x), torch.randn_like(x)
        return lambda: aten.threshold_backward(dy, out, 0)
    other = torch.randn_like(x)
    if op == "residual_add":  # torchvision's `out += identity`
        return lambda: x.add_(other)
    if op == "grad_add":  # autograd's sum of two branch gradients
        return lambda: x + other
    raise ValueError(op)


def ops_profile(args, spec):
    """Prints one JSON line per operation of step_ops, then the whole step's."""
    batch = args.batch or default_batch("ops", spec)
    common = {"framework": "pytorch", "measure": "ops", "batch": batch, "threads": args.threads,
              "torch": torch.__version__}
    total = 0.0
    for row in step_ops(spec, batch):
        op = row["op"]
        if op == "adam_step":
            model = ScalNet(spec, attention=False).train()
            opt = adam(model, spec)
            for p in model.parameters():
                if p.requires_grad:
                    p.grad = torch.randn_like(p) * 1e-3
            call = opt.step
        else:
            call = op_call(op, row["spec"])
        with torch.no_grad():
            for _ in range(args.warmup):
                call()
            t0 = time.perf_counter()
            for _ in range(args.iters):
                call()
            s = (time.perf_counter() - t0) / args.iters
        total += s * row["count"]
        print(json.dumps({**common, "op": op, "input": row["input"], "count": row["count"],
                          "ms": round(s * 1000, 3), "step_ms": round(s * 1000 * row["count"], 3)}),
              flush=True)
    step_s = bnneck_step_seconds(batch, args, spec)
    print(json.dumps({**common, "op": "step",
                      "input": "bnneck step, [%d,3,%d,%d]" % (batch, spec.height, spec.width),
                      "count": 1, "ms": round(step_s * 1000, 3), "step_ms": round(total * 1000, 3),
                      "explained": round(total / step_s, 4)}), flush=True)


def bnneck_step_seconds(batch, args, spec):
    step, _ = train_step(spec, False, batch, torch.device("cpu"))
    for _ in range(max(args.warmup, 1)):
        step()
    t0 = time.perf_counter()
    for _ in range(args.iters):
        step()
    return (time.perf_counter() - t0) / args.iters


def default_batch(measure, spec):
    """64 (the quick profile's P x K and evaluation batch; ResNet-50's inference and BN-neck
    batch), 16 for ResNet-50's `train` and `ops`."""
    if spec.name == "resnet50" and measure in ("train", "ops"):
        return 16
    return 64


def measured_step(args, spec, dev):
    """The measure's batch, a function running one iteration, and the model it runs."""
    batch = args.batch or default_batch(args.measure, spec)
    x = torch.randn(batch, 3, spec.height, spec.width, device=dev)
    if args.measure == "inference":
        model = backbone(spec).eval().to(dev)
        model.fc = nn.Identity()

        def step():
            with torch.no_grad():
                model(x)
        return batch, step, model
    if args.measure == "train":
        model = model_last_stride_1(751).train().to(dev)
        opt = torch.optim.Adam(model.parameters(), lr=3.5e-4)
        loss_fn = nn.CrossEntropyLoss()
        y = (torch.arange(batch) * 7 % 751).to(dev)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
        return batch, step, model
    assert batch % 4 == 0, "batch must be P x 4"
    step, model = train_step(spec, args.measure == "train_scal", batch, dev)
    return batch, step, model


def parse_args():
    parser = argparse.ArgumentParser()
    parser.add_argument("measure", choices=["inference", "train", "train_bnneck", "train_scal", "ops"])
    parser.add_argument("--model", choices=sorted(MODELS), default="resnet50",
                        help="resnet50 (default) or quick (the quick profile's model)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--no-tf32", action="store_true")
    args = parser.parse_args()
    if args.measure == "train" and args.model != "resnet50":
        parser.error("`train` (cross-entropy on a linear head) is ResNet-50's measure; the quick "
                     "model has train_bnneck and train_scal")
    return args


def main():
    args = parse_args()
    spec = MODELS[args.model]
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    if cuda and args.no_tf32:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    if args.measure == "ops":
        assert not cuda, "the ops profile is for the CPU"
        ops_profile(args, spec)
        return
    batch, step, model = measured_step(args, spec, dev)

    def sync():
        if cuda:
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        step()
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.iters):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    s = statistics.mean(times)
    row = {
        "framework": "pytorch",
        "measure": args.measure,
        "device": torch.cuda.get_device_name(dev) if cuda else "cpu",
        "batch": batch,
        "img_per_s": round(batch / s, 2),
        "s_per_iter": round(s, 4),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "cuda_peak_reserved_mib": round(torch.cuda.max_memory_reserved(dev) / 2**20) if cuda else None,
        "tf32": bool(cuda and torch.backends.cudnn.allow_tf32),
        "threads": args.threads,
        "torch": torch.__version__,
    }
    if spec.name != "resnet50":
        row.update(model=spec.name, input="%dx%d" % (spec.height, spec.width),
                   params=sum(p.numel() for p in model.parameters()))
    print(json.dumps(row))


if __name__ == "__main__":
    main()
