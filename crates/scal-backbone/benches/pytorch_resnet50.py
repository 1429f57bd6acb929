#!/usr/bin/env python3
"""The PyTorch side of `benches/resnet50.rs` and of `cargo xtask bench`: torchvision
ResNet-50 with last stride 1 at 256 x 128.

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

Each measure runs in its own process so that its peak memory is its own. Prints one JSON
line: {"measure", "device", "batch", "img_per_s", "s_per_iter", "peak_rss_mib",
"cuda_peak_reserved_mib", "tf32", "torch"}. On CUDA, PyTorch's default lets cuDNN
convolutions use TF32; `--no-tf32` turns that off (full FP32, like Burn's kernels).
"""
import argparse
import json
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

try:
    import torchvision

    def resnet50():
        return torchvision.models.resnet50()
except ImportError:  # a machine with PyTorch but no torchvision: the same network, inline
    class Bottleneck(nn.Module):
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
            x = self.relu(self.bn1(self.conv1(x)))
            x = self.relu(self.bn2(self.conv2(x)))
            return self.relu(self.bn3(self.conv3(x)) + idt)

    class ResNet50(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            cin, layers = 64, []
            for width, blocks, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
                down = nn.Sequential(nn.Conv2d(cin, width * 4, 1, stride, bias=False),
                                     nn.BatchNorm2d(width * 4))
                seq = [Bottleneck(cin, width, stride, down)]
                cin = width * 4
                seq += [Bottleneck(cin, width, 1, None) for _ in range(blocks - 1)]
                layers.append(nn.Sequential(*seq))
            self.layer1, self.layer2, self.layer3, self.layer4 = layers
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(2048, 1000)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    def resnet50():
        return ResNet50()


def model_last_stride_1(classes):
    model = resnet50()
    model.layer4[0].conv2.stride = (1, 1)
    model.layer4[0].downsample[0].stride = (1, 1)
    model.fc = nn.Linear(2048, classes)
    return model


class BNNeck(nn.Module):
    def __init__(self, classes):
        super().__init__()
        self.backbone = model_last_stride_1(classes)
        self.backbone.fc = nn.Identity()
        self.neck = nn.BatchNorm1d(2048)
        self.neck.bias.requires_grad_(False)
        self.classifier = nn.Linear(2048, classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, x):
        f = self.backbone(x)
        return f, self.classifier(self.neck(f))


def batch_hard_triplet(f, y, margin=0.3):
    d = torch.cdist(f, f).clamp_min(1e-12)
    same = y[:, None] == y[None, :]
    hardest_pos = (d * same).max(1).values
    hardest_neg = (d + same * 1e6).min(1).values
    return F.relu(hardest_pos - hardest_neg + margin).mean()


def step_ops(n, h, w):
    """The operations of one BN-neck training step of ResNet-50 (last stride 1) on
    [n, 3, h, w] images, with their counts, in the order and with the labels of
    xtask/src/bench/ops.rs (resnet50_step_ops)."""
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

    h, w = conv(3, h, w, 64, 7, 2, 3, data_grad=False)
    bn([n, 64, h, w])
    relu([n, 64, h, w])
    add("maxpool_forward", [n, 64, h, w], dims([n, 64, h, w]))
    add("maxpool_backward", [n, 64, h, w], dims([n, 64, h, w]))
    h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    c_in = 64
    for width, blocks, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 1)]:
        for block in range(blocks):
            s = stride if block == 0 else 1
            conv(c_in, h, w, width, 1, 1, 0)
            bn([n, width, h, w])
            relu([n, width, h, w])
            oh, ow = conv(width, h, w, width, 3, s, 1)
            bn([n, width, oh, ow])
            relu([n, width, oh, ow])
            conv(width, oh, ow, width * 4, 1, 1, 0)
            bn([n, width * 4, oh, ow])
            if block == 0:
                conv(c_in, h, w, width * 4, 1, s, 0)
                bn([n, width * 4, oh, ow])
            out = [n, width * 4, oh, ow]
            add("residual_add", out, dims(out))
            relu(out)
            add("grad_add", [n, c_in, h, w], dims([n, c_in, h, w]))
            h, w, c_in = oh, ow, width * 4
    rows = list(ops.values())
    rows.append({"op": "adam_step", "input": "resnet50+bnneck+classifier(751)", "count": 1, "spec": None})
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


def ops_profile(args):
    """Prints one JSON line per operation of step_ops, then the whole step's."""
    batch = args.batch or 16
    common = {"framework": "pytorch", "measure": "ops", "batch": batch, "threads": args.threads,
              "torch": torch.__version__}
    total = 0.0
    for row in step_ops(batch, 256, 128):
        op = row["op"]
        if op == "adam_step":
            model = BNNeck(751).train()
            params = [p for p in model.parameters() if p.requires_grad]
            opt = torch.optim.Adam(params, lr=3.5e-4)
            for p in params:
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
    step_s = bnneck_step_seconds(batch, args)
    print(json.dumps({**common, "op": "step", "input": "bnneck step, [%d,3,256,128]" % batch, "count": 1,
                      "ms": round(step_s * 1000, 3), "step_ms": round(total * 1000, 3),
                      "explained": round(total / step_s, 4)}), flush=True)


def bnneck_step_seconds(batch, args):
    model = BNNeck(751).train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3.5e-4)
    ce = nn.CrossEntropyLoss(label_smoothing=0.1)
    x = torch.randn(batch, 3, 256, 128)
    y = torch.arange(batch) // 4 * 7 % 751

    def step():
        opt.zero_grad(set_to_none=True)
        f, logits = model(x)
        (batch_hard_triplet(f, y) + ce(logits, y)).backward()
        opt.step()

    for _ in range(max(args.warmup, 1)):
        step()
    t0 = time.perf_counter()
    for _ in range(args.iters):
        step()
    return (time.perf_counter() - t0) / args.iters


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("measure", choices=["inference", "train", "train_bnneck", "ops"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--no-tf32", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    if cuda and args.no_tf32:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    if args.measure == "ops":
        assert not cuda, "the ops profile is for the CPU"
        ops_profile(args)
        return

    if args.measure == "inference":
        batch = args.batch or 64
        model = model_last_stride_1(751).eval().to(dev)
        model.fc = nn.Identity()
        x = torch.randn(batch, 3, 256, 128, device=dev)

        def step():
            with torch.no_grad():
                model(x)
    elif args.measure == "train":
        batch = args.batch or 16
        model = model_last_stride_1(751).train().to(dev)
        opt = torch.optim.Adam(model.parameters(), lr=3.5e-4)
        loss_fn = nn.CrossEntropyLoss()
        x = torch.randn(batch, 3, 256, 128, device=dev)
        y = (torch.arange(batch) * 7 % 751).to(dev)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
    else:
        batch = args.batch or 64
        assert batch % 4 == 0, "batch must be P x 4"
        model = BNNeck(751).train().to(dev)
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3.5e-4)
        ce = nn.CrossEntropyLoss(label_smoothing=0.1)
        x = torch.randn(batch, 3, 256, 128, device=dev)
        y = (torch.arange(batch) // 4 * 7 % 751).to(dev)

        def step():
            opt.zero_grad(set_to_none=True)
            f, logits = model(x)
            loss = batch_hard_triplet(f, y) + ce(logits, y)
            loss.backward()
            opt.step()

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
    print(json.dumps({
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
    }))


if __name__ == "__main__":
    main()
