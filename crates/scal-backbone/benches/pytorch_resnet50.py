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

    python crates/scal-backbone/benches/pytorch_resnet50.py --threads 2 inference
    python crates/scal-backbone/benches/pytorch_resnet50.py --threads 2 train
    python crates/scal-backbone/benches/pytorch_resnet50.py --device cuda --batch 64 train_bnneck
    python crates/scal-backbone/benches/pytorch_resnet50.py --device cuda --no-tf32 train_bnneck

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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("measure", choices=["inference", "train", "train_bnneck"])
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
