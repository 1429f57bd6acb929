#!/usr/bin/env python3
"""The PIL/torchvision side of benches/pipeline.rs: the same training transform
(Resize(256,128), RandomHorizontalFlip, Pad(10), RandomCrop, ToTensor, Normalize,
RandomErasing with the mean) on the same JPEGs, through a torch DataLoader with as many
worker processes as cores, batch 64.

    SCAL_DATA_BENCH_DIR=/tmp/pipeline-bench cargo bench -p scal-data --bench pipeline
    python crates/scal-data/benches/pil_pipeline.py /tmp/pipeline-bench --workers 2

Prints one JSON line with images/s (after one warm-up pass).
"""
import argparse
import json
import math
import os
import random
import time

import torch
import torchvision.transforms as T
from PIL import Image

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


class RandomErasing:
    """reid-strong-baseline's RandomErasing (fills with the mean values)."""

    def __init__(self, probability=0.5, sl=0.02, sh=0.4, r1=0.3, mean=MEAN):
        self.probability, self.sl, self.sh, self.r1, self.mean = probability, sl, sh, r1, mean

    def __call__(self, img):
        if random.uniform(0, 1) >= self.probability:
            return img
        for _ in range(100):
            area = img.size()[1] * img.size()[2]
            target_area = random.uniform(self.sl, self.sh) * area
            aspect_ratio = random.uniform(self.r1, 1 / self.r1)
            h = int(round(math.sqrt(target_area * aspect_ratio)))
            w = int(round(math.sqrt(target_area / aspect_ratio)))
            if w < img.size()[2] and h < img.size()[1]:
                x1 = random.randint(0, img.size()[1] - h)
                y1 = random.randint(0, img.size()[2] - w)
                for c in range(3):
                    img[c, x1:x1 + h, y1:y1 + w] = self.mean[c]
                return img
        return img


class Folder(torch.utils.data.Dataset):
    def __init__(self, root):
        d = os.path.join(root, "bounding_box_train")
        self.files = sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".jpg"))
        self.t = T.Compose([
            T.Resize((256, 128)), T.RandomHorizontalFlip(0.5), T.Pad(10), T.RandomCrop((256, 128)),
            T.ToTensor(), T.Normalize(MEAN, STD), RandomErasing(),
        ])

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        return self.t(Image.open(self.files[i]).convert("RGB")), 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    loader = torch.utils.data.DataLoader(Folder(args.root), batch_size=64, shuffle=True,
                                         num_workers=args.workers, persistent_workers=args.workers > 0)
    for _ in loader:  # warm-up (workers start, page cache)
        pass
    n, t0 = 0, time.perf_counter()
    for _ in range(3):
        for images, _ in loader:
            n += images.shape[0]
    dt = time.perf_counter() - t0
    print(json.dumps({"images": n, "seconds": round(dt, 2), "img_per_s": round(n / dt), "workers": args.workers,
                      "torch": torch.__version__, "PIL": Image.__version__}))


if __name__ == "__main__":
    main()
