#!/usr/bin/env python3
"""Chance level of a Market-1501-layout dataset: mAP and Rank-1 of random distances.

    python scripts/chance-level.py datasets/synth-hard [--draws 20] [--group-size 4]

Reads the query/ and bounding_box_test/ names as the Market reader does (torchreid's
pattern `([-\\d]+)_c(\\d)`, junk `-1` dropped), draws uniform random distance matrices and
evaluates them with torchreid's protocol through the `scal_eval` module (the project's
Python wheel: `crates/scal-eval-py`). Prints the mean over the draws.

With --group-size G (synth-hard: 4), also the level of a model that knows each test
identity's group (consecutive identities from the smallest test pid, G at a time) and nothing
else: distance 0 within the query's group, random otherwise, ties broken at random;
distractors (`0000`) count as outside every group, which flatters this level.
"""
import argparse
import os
import re

import numpy as np
import scal_eval

PATTERN = re.compile(r"([-\d]+)_c(\d)")


def read(folder):
    pids, cams = [], []
    for name in sorted(os.listdir(folder)):
        if not name.lower().endswith((".jpg", ".jpeg", ".png")):
            continue
        pid, cam = map(int, PATTERN.search(name).groups())
        if pid == -1:
            continue
        pids.append(pid)
        cams.append(cam - 1)
    return np.array(pids, dtype=np.int64), np.array(cams, dtype=np.int64)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--group-size", type=int, default=0)
    args = parser.parse_args()
    q_pids, q_cams = read(os.path.join(args.root, "query"))
    g_pids, g_cams = read(os.path.join(args.root, "bounding_box_test"))
    rng = np.random.default_rng(args.seed)
    maps, rank1s = [], []
    for _ in range(args.draws):
        distmat = rng.random((len(q_pids), len(g_pids)), dtype=np.float32)
        cmc, mean_ap = scal_eval.evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams)
        maps.append(mean_ap)
        rank1s.append(cmc[0])
    print(
        f"{args.root}: {len(q_pids)} queries, {len(g_pids)} gallery images; "
        f"chance over {args.draws} draws: mAP {100 * np.mean(maps):.2f} %, "
        f"Rank-1 {100 * np.mean(rank1s):.2f} %"
    )
    if args.group_size > 0:
        first = q_pids.min()
        q_group = (q_pids - first) // args.group_size
        g_group = np.where(g_pids > 0, (g_pids - first) // args.group_size, -1)
        same = (q_group[:, None] == g_group[None, :]) & (g_group[None, :] >= 0)
        maps, rank1s = [], []
        for _ in range(args.draws):
            noise = rng.random(same.shape, dtype=np.float32)
            distmat = np.where(same, 0.0, 1.0).astype(np.float32) + noise * 0.5
            cmc, mean_ap = scal_eval.evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams)
            maps.append(mean_ap)
            rank1s.append(cmc[0])
        print(
            f"group only (groups of {args.group_size}): mAP {100 * np.mean(maps):.2f} %, "
            f"Rank-1 {100 * np.mean(rank1s):.2f} %"
        )


if __name__ == "__main__":
    main()
