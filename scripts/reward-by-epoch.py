#!/usr/bin/env python3
"""The rewards and the critics' separation over a run's training, epoch by epoch, from its
metrics.jsonl: the share of samples with R = 2 (for `planted-noisy`, also the share the
unflipped reward would have: (share − p) / (1 − 2p), p the flip probability; an estimate,
which sampling noise can push past 1) and, per module,
the mean V at R = 2 minus the mean V at R = 0 (weighted by the steps' reward counts; "–"
once one of the two rewards no longer occurs).

    python scripts/reward-by-epoch.py runs/planted-raw [runs/... ...] [--epochs 1,4,7,10,36]

Epochs are counted from 1 (the log's `epoch` + 1). Standard library only.
"""
import argparse
import json
from pathlib import Path


def by_epoch(records, modules):
    """epoch -> (reward counts, per module [sum V at R=2, n, sum V at R=0, n])"""
    epochs = {}
    for r in records:
        if r.get("kind") != "train" or not r.get("reward_counts"):
            continue
        counts, sums = epochs.setdefault(r["epoch"] + 1, ([0, 0, 0], [[0.0, 0, 0.0, 0] for _ in range(modules)]))
        c = r["reward_counts"]
        for k in range(3):
            counts[k] += c[k]
        for l, levels in enumerate(r["value_by_reward"]):
            for k, at in ((2, 0), (0, 2)):
                if levels[k] is not None:
                    sums[l][at] += levels[k] * c[k]
                    sums[l][at + 1] += c[k]
    return epochs


def report(run, wanted):
    records = [json.loads(line) for line in open(run / "metrics.jsonl")]
    config = json.load(open(run / "config.json"))
    step = config["step"]
    flip = step["planted"]["flip_probability"] if step["reward"] == "planted-noisy" else None
    train = [r for r in records if r.get("kind") == "train" and r.get("value_by_reward")]
    if not train:
        print(f"{run}: no critic in this run's log")
        return
    epochs = by_epoch(records, len(train[0]["value_by_reward"]))
    evals = [r for r in records if r.get("kind") == "eval"]
    final = f", final mAP {100 * evals[-1]['plain']['mAP']:.2f} %" if evals else ""
    print(f"{run} (reward {step['reward']}{final})")
    print("| epoch | share of R = 2 |" + (" unflipped |" if flip is not None else "")
          + " V(R = 2) − V(R = 0) per module |")
    print("|---|---|" + ("---|" if flip is not None else "") + "---|")
    for epoch in sorted(epochs):
        if wanted and epoch not in wanted:
            continue
        counts, sums = epochs[epoch]
        share = counts[2] / sum(counts)
        gaps = " ".join("–" if s[1] == 0 or s[3] == 0 else f"{s[0] / s[1] - s[2] / s[3]:+.2f}" for s in sums)
        unflipped = f" {(share - flip) / (1 - 2 * flip):.2f} |" if flip is not None else ""
        print(f"| {epoch} | {share:.2f} |{unflipped} {gaps} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--epochs", help="only these epochs (comma-separated, from 1)")
    args = parser.parse_args()
    wanted = {int(e) for e in args.epochs.split(",")} if args.epochs else set()
    for run in args.runs:
        if not (run / "metrics.jsonl").is_file():
            raise SystemExit(f"{run}/metrics.jsonl: no such file (is {run} a run folder?)")
        report(run, wanted)


if __name__ == "__main__":
    main()
