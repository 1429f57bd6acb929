#!/usr/bin/env python3
"""Checks that `cargo xtask export` writes weights PyTorch loads and computes the same features.

Usage (a run trained with --attention none and a torchvision-width backbone, e.g.
`cargo xtask train --epochs 1 --attention none --set model.base_width=64 --name export-check`):

    cargo xtask export --checkpoint runs/export-check/best --out /tmp/scal.safetensors
    python scripts/check-export-pytorch.py /tmp/scal.safetensors DIR_OF_PNG_IMAGES FEATS.npy --arch resnet18

where FEATS.npy is `cargo xtask extract --checkpoint runs/export-check/best --images DIR --out
FEATS.npy` (no --flip). It loads the file into torchvision's ResNet (last stride 1), adds the BN
neck from `neck.*`, computes the L2-normalised post-BN features of the images and prints the
largest difference to the Rust features. Images must already have the model's input size
(the synthetic dataset's 128 x 64), so that no resize is involved; PNG avoids JPEG decoder
differences.
"""
import argparse
import pathlib

import numpy as np
import safetensors.torch
import torch
import torchvision
from PIL import Image

p = argparse.ArgumentParser()
p.add_argument("weights")
p.add_argument("images")
p.add_argument("features")
p.add_argument("--arch", default="resnet50")
a = p.parse_args()

sd = safetensors.torch.load_file(a.weights)
net = getattr(torchvision.models, a.arch)()
# last stride 1, as the ReID models are trained
block = net.layer4[0]
(block.conv2 if a.arch in ("resnet50", "resnet101") else block.conv1).stride = (1, 1)
if block.downsample is not None:
    block.downsample[0].stride = (1, 1)
result = net.load_state_dict(sd, strict=False)
print("missing:", result.missing_keys)
print("unexpected (not the backbone's):", sorted({k.split(".")[0] for k in result.unexpected_keys}))
assert set(result.missing_keys) <= {"fc.weight", "fc.bias"}, result.missing_keys
neck = torch.nn.BatchNorm1d(sd["neck.weight"].shape[0])
neck.load_state_dict({k[len("neck."):]: v for k, v in sd.items() if k.startswith("neck.")}, strict=False)
net.fc = torch.nn.Identity()
net.eval(), neck.eval()

mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
files = sorted(f for f in pathlib.Path(a.images).iterdir() if f.suffix.lower() in (".png", ".jpg", ".jpeg"))
x = torch.stack([
    (torch.from_numpy(np.asarray(Image.open(f).convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1) - mean) / std
    for f in files
])
with torch.no_grad():
    f = torch.nn.functional.normalize(neck(net(x)), dim=1).numpy()
rust = np.load(a.features)
print(f"{len(files)} images, features {f.shape}; max |PyTorch - Rust| = {np.abs(f - rust).max():.2e}")
