#!/usr/bin/env python3
"""The PyTorch side of `benches/resnet50.rs`: torchvision ResNet-50 with last stride 1 at
256 x 128, inference at batch 64 and one training step (forward, cross-entropy over 751
classes, backward, Adam) at batch 16, with the same number of threads as cores used by Burn.

    python crates/scal-backbone/benches/pytorch_resnet50.py --threads 2 inference
    python crates/scal-backbone/benches/pytorch_resnet50.py --threads 2 train

Each measure runs in its own process so that its peak RSS (ru_maxrss) is its own. Prints
one JSON line: {"measure", "batch", "img_per_s", "s_per_iter", "peak_rss_mib", "torch"}.
"""
import argparse
import json
import resource
import statistics
import time

import torch
import torch.nn as nn
import torchvision


def model_last_stride_1(classes):
    model = torchvision.models.resnet50()
    model.layer4[0].conv2.stride = (1, 1)
    model.layer4[0].downsample[0].stride = (1, 1)
    model.fc = nn.Linear(2048, classes)
    return model


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("measure", choices=["inference", "train"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    if args.measure == "inference":
        batch = 64
        model = model_last_stride_1(751).eval()
        model.fc = nn.Identity()
        x = torch.randn(batch, 3, 256, 128)

        def step():
            with torch.no_grad():
                model(x)
    else:
        batch = 16
        model = model_last_stride_1(751).train()
        opt = torch.optim.Adam(model.parameters(), lr=3.5e-4)
        loss_fn = nn.CrossEntropyLoss()
        x = torch.randn(batch, 3, 256, 128)
        y = torch.arange(batch) * 7 % 751

        def step():
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()

    step()  # warm-up
    times = []
    for _ in range(args.iters):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    s = statistics.mean(times)
    print(json.dumps({
        "measure": args.measure,
        "batch": batch,
        "img_per_s": round(batch / s, 2),
        "s_per_iter": round(s, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "threads": args.threads,
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
