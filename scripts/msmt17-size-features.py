#!/usr/bin/env python3
"""Features with MSMT17's test sizes, for timing re-ranking at that scale.

Writes the folder layout `cargo xtask evaluate --features DIR` reads: query.npy [11659, D]
and gallery.npy [82161, D] (float32), q_pids.npy, g_pids.npy, q_camids.npy, g_camids.npy
(int64). MSMT17's test split has 3,060 identities in 15 cameras; image i of either set
belongs to identity i % 3060 + 1, and its feature is the identity's centre (N(0, s^2) per
dimension) plus N(0, 1) noise, as in scal-eval's `synthetic_split`, with
s = 0.33 * (2048 / D)^(1/4) so that identities are about as separable at every D (the gap
between same- and other-identity squared distances, over their spread, goes as
s^2 * sqrt(D)); cameras are uniform.
numpy only, seeded: the same arguments give the same files. The arrays are written in
chunks (memory-mapped), so generating needs little more than one chunk of memory. Other
sizes through --queries, --gallery, --ids, --cameras (Market-1501: 3368, 15913, 751, 6).

    python3 scripts/msmt17-size-features.py /tmp/msmt17-512 --dim 512
    python3 scripts/msmt17-size-features.py /tmp/msmt17-2048 --dim 2048
    python3 scripts/msmt17-size-features.py /tmp/market-2048 --queries 3368 --gallery 15913 --ids 751 --cameras 6
    cargo run --release -p scal-eval --example rerank_features -- /tmp/msmt17-512
    cargo xtask evaluate --features /tmp/msmt17-512 --rerank
"""
import argparse
import os

import numpy as np

QUERIES = 11659
GALLERY = 82161
IDS = 3060
CAMERAS = 15
CHUNK = 8192


def write_split(folder, name, count, centres, cameras, rng):
    """Features, identities and cameras of one set, the features written chunk by chunk."""
    ids, dim = centres.shape
    path = os.path.join(folder, f"{name}.npy")
    features = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(count, dim))
    pids = np.arange(count, dtype=np.int64) % ids
    for start in range(0, count, CHUNK):
        end = min(start + CHUNK, count)
        noise = rng.standard_normal((end - start, dim), dtype=np.float32)
        features[start:end] = centres[pids[start:end]] + noise
    features.flush()
    del features
    cams = rng.integers(0, cameras, size=count, dtype=np.int64)
    prefix = "q" if name == "query" else "g"
    np.save(os.path.join(folder, f"{prefix}_pids.npy"), pids + 1)
    np.save(os.path.join(folder, f"{prefix}_camids.npy"), cams)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="output folder (created)")
    parser.add_argument("--dim", type=int, default=2048, help="feature dimension (default 2048)")
    parser.add_argument("--seed", type=int, default=17, help="random seed (default 17)")
    parser.add_argument("--queries", type=int, default=QUERIES, help=f"queries (default {QUERIES})")
    parser.add_argument("--gallery", type=int, default=GALLERY, help=f"gallery images (default {GALLERY})")
    parser.add_argument("--ids", type=int, default=IDS, help=f"identities (default {IDS})")
    parser.add_argument("--cameras", type=int, default=CAMERAS, help=f"cameras (default {CAMERAS})")
    args = parser.parse_args()
    for name in ("dim", "queries", "gallery", "ids", "cameras"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    os.makedirs(args.folder, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    scale = 0.33 * (2048 / args.dim) ** 0.25
    centres = (scale * rng.standard_normal((args.ids, args.dim))).astype(np.float32)
    write_split(args.folder, "query", args.queries, centres, args.cameras, rng)
    write_split(args.folder, "gallery", args.gallery, centres, args.cameras, rng)
    print(
        f"{args.folder}: {args.queries} queries, {args.gallery} gallery, {args.dim}-d, "
        f"{args.ids} identities, {args.cameras} cameras"
    )


if __name__ == "__main__":
    main()
