#!/usr/bin/env python3
"""Where the spread of a paired ablation comes from (issue 38, stage 0): evaluation noise
(one checkpoint scored on several disjoint test splits drawn by the same generator) against
training noise (seeds).

The test splits are cut from one wide test set (`cargo xtask synth --preset hard --test-ids
500 --out datasets/synth-hard-wide`): its training split is the one of `synth-hard` (the
generator draws the training identities first, from the same streams), its test identities
101-200 are the ones of `synth-hard` (same images), and identities 201-600 are drawn by the same
generator. Subset k holds the test identities 100k+101 .. 100k+200 and every fifth distractor
(pid 0) in file-name order, starting at the k-th: five splits of `synth-hard`'s size.

    # features of each checkpoint on the wide test set (cached in WORK; needs the xtask binary)
    python scripts/yardstick.py features --root datasets/synth-hard-wide --work WORK CK...
    # the decomposition for a variant against a baseline over seeds (runs in RUNS named
    # VARIANT-seedS; --checkpoints: `last` is RUNS/RUN/last, `epoch-E/last` a copy in
    # SNAPSHOTS/RUN/epoch-E/last made by scripts/snapshot-checkpoints.sh)
    python scripts/yardstick.py decompose --root datasets/synth-hard-wide --work WORK \
        --runs RUNS --snapshots SNAPSHOTS --baseline none --variant channel-nocritic \
        --seeds 6 --checkpoints last,epoch-35/last [--json OUT.json]

    # one run's yardstick score (its last checkpoint on the whole wide set, and on the five
    # splits) written as JSON: what scripts/verdict-20.sh archives per run
    python scripts/yardstick.py score --root datasets/synth-hard-wide --work WORK CK --json OUT
    # the verdict's paired table from an archive of such scores (ARCHIVE/VARIANT-seedS/score.json)
    python scripts/yardstick.py verdict --archive docs/verdict-synth-hard-20 \
        --baselines channel-nocritic,channel [--stop-below 1.0 --stop-after 10] [--json OUT]

A checkpoint is a model folder (`RUN/last`, or a snapshot `SNAP/epoch-E/last`); WORK/<key>/
holds its query.npy, gallery.npy and names, where key is the folder's path with `/` as `__`.
With several --checkpoints, a run's score is their mean (the mean of the last few
evaluations). Scores are mAP in points, evaluated as torchreid does (the numpy reference of
crates/scal-eval/tests/fixtures/reference.py), Euclidean distances as `evaluate` uses.
"""
import argparse
import json
import os
import re
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "crates", "scal-eval", "tests", "fixtures"))
from reference import eval_market1501  # noqa: E402

NAME = re.compile(r"^(-?\d+)_c(\d)s\d_(\d+)_(\d+)\.jpg$")
SUBSETS = 5
IDS_PER_SUBSET = 100


def key_of(checkpoint):
    return os.path.normpath(checkpoint).strip("/").replace("/", "__")


def extract(xtask, checkpoint, images, out):
    if os.path.exists(out):
        return
    subprocess.run(
        [xtask, "extract", "--checkpoint", checkpoint, "--images", images, "--out", out,
         "--flip", "--batch", "128"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def features(args):
    for checkpoint in args.checkpoints:
        work = os.path.join(args.work, key_of(checkpoint))
        os.makedirs(work, exist_ok=True)
        for split, folder in (("query", "query"), ("gallery", "bounding_box_test")):
            extract(args.xtask, checkpoint, os.path.join(args.root, folder),
                    os.path.join(work, f"{split}.npy"))
        print(f"features of {checkpoint} in {work}", flush=True)


def labels(names_file):
    pids, cams = [], []
    for line in open(names_file, encoding="utf-8"):
        m = NAME.match(os.path.basename(line.strip()))
        if m is None:
            raise SystemExit(f"{names_file}: {line.strip()!r} is not a Market-style name")
        pids.append(int(m.group(1)))
        cams.append(int(m.group(2)))
    return np.array(pids), np.array(cams)


def distances(q, g):
    d = (q * q).sum(1)[:, None] + (g * g).sum(1)[None, :] - 2.0 * q @ g.T
    return np.sqrt(np.maximum(d, 0.0))


def scores(work, first_test_pid):
    """mAP (points) on the whole wide test set and on each of the SUBSETS splits."""
    q = np.load(os.path.join(work, "query.npy")).astype(np.float64)
    g = np.load(os.path.join(work, "gallery.npy")).astype(np.float64)
    q_pids, q_cams = labels(os.path.join(work, "query.names.txt"))
    g_pids, g_cams = labels(os.path.join(work, "gallery.names.txt"))
    keep = g_pids != -1  # junk: not part of the protocol's gallery
    g, g_pids, g_cams = g[keep], g_pids[keep], g_cams[keep]
    dist = distances(q, g)
    whole = eval_market1501(dist, q_pids, g_pids, q_cams, g_cams)["mAP"] * 100
    distractor_rank = np.cumsum(g_pids == 0) - 1
    out = []
    for k in range(SUBSETS):
        lo = first_test_pid + k * IDS_PER_SUBSET
        in_q = (q_pids >= lo) & (q_pids < lo + IDS_PER_SUBSET)
        in_g = ((g_pids >= lo) & (g_pids < lo + IDS_PER_SUBSET)) | (
            (g_pids == 0) & (distractor_rank % SUBSETS == k))
        sub = dist[np.ix_(in_q, in_g)]
        out.append(eval_market1501(sub, q_pids[in_q], g_pids[in_g], q_cams[in_q],
                                   g_cams[in_g])["mAP"] * 100)
    return whole, out


def run_scores(args, run):
    wholes, subsets = [], []
    for ck in args.checkpoints:
        base = args.runs if ck == "last" else args.snapshots
        path = os.path.join(base, run, ck)
        whole, subs = scores(os.path.join(args.work, key_of(path)), args.first_test_pid)
        wholes.append(whole)
        subsets.append(subs)
    return float(np.mean(wholes)), np.mean(np.array(subsets), axis=0)


def decompose(args):
    rows = []
    for s in range(args.seeds):
        w_v, sub_v = run_scores(args, f"{args.variant}-seed{s}")
        w_b, sub_b = run_scores(args, f"{args.baseline}-seed{s}")
        rows.append({"seed": s, "variant_whole": w_v, "baseline_whole": w_b,
                     "variant_subsets": sub_v.tolist(), "baseline_subsets": sub_b.tolist()})
    d_sub = np.array([np.array(r["variant_subsets"]) - np.array(r["baseline_subsets"])
                      for r in rows])  # [seeds, SUBSETS]
    d_whole = np.array([r["variant_whole"] - r["baseline_whole"] for r in rows])
    # Within a seed, the subsets differ only by the test split: evaluation noise of one
    # 100-identity split. Across seeds, the subset means differ by training plus a fifth of it.
    eval_var = float(np.mean(np.var(d_sub, axis=1, ddof=1)))
    between = float(np.var(d_sub.mean(axis=1), ddof=1))
    train_var = max(between - eval_var / SUBSETS, 0.0)
    single_eval_var = float(np.mean(np.var(
        np.array([r["variant_subsets"] for r in rows]), axis=1, ddof=1)))
    result = {
        "variant": args.variant, "baseline": args.baseline, "seeds": args.seeds,
        "checkpoints": args.checkpoints, "rows": rows,
        "paired_sd_one_split": float(np.sqrt(np.mean(np.var(d_sub, axis=0, ddof=1)))),
        "paired_sd_wide": float(np.std(d_whole, ddof=1)),
        "eval_sd_of_difference_one_split": float(np.sqrt(eval_var)),
        "eval_sd_of_one_score_one_split": float(np.sqrt(single_eval_var)),
        "train_sd_of_difference": float(np.sqrt(train_var)),
        "predicted_paired_sd_wide": float(np.sqrt(train_var + eval_var / SUBSETS)),
        "mean_difference_wide": float(d_whole.mean()),
    }
    print(f"{args.variant} − {args.baseline}, {args.seeds} seeds, checkpoints {args.checkpoints}")
    for r, d in zip(rows, d_sub):
        print(f"  seed {r['seed']}: wide {r['variant_whole']:.2f} − {r['baseline_whole']:.2f}"
              f" = {r['variant_whole'] - r['baseline_whole']:+.2f}; per split "
              + " ".join(f"{x:+.2f}" for x in d))
    for k in ("paired_sd_one_split", "eval_sd_of_difference_one_split",
              "eval_sd_of_one_score_one_split", "train_sd_of_difference", "paired_sd_wide",
              "predicted_paired_sd_wide", "mean_difference_wide"):
        print(f"  {k}: {result[k]:.2f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    return result


def score(args):
    """The yardstick's score of one checkpoint, as JSON (mAP points)."""
    work = os.path.join(args.work, key_of(args.checkpoint))
    whole, subsets = scores(work, args.first_test_pid)
    result = {"checkpoint": args.checkpoint, "root": args.root, "mAP_wide": whole,
              "mAP_splits": subsets}
    print(f"{args.checkpoint}: wide mAP {whole:.2f}; splits " + " ".join(f"{x:.2f}" for x in subsets))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)


# Two-sided 95 % quantiles of Student's t for 1..30 degrees of freedom (then 1.96).
T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
       2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
       2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def interval(diffs):
    """(mean, low, high) of the 95 % t-interval of paired differences (None for < 2)."""
    n = len(diffs)
    if n < 2:
        return None
    mean = float(np.mean(diffs))
    half = (T95[n - 2] if n - 1 <= len(T95) else 1.96) * float(np.std(diffs, ddof=1)) / np.sqrt(n)
    return mean, mean - half, mean + half


def archived_scores(archive):
    """{variant: {seed: wide mAP}} of every archived run with a score.json."""
    found = {}
    for name in sorted(os.listdir(archive)):
        m = re.fullmatch(r"(.+)-seed(\d+)", name)
        path = os.path.join(archive, name, "score.json")
        if m and os.path.isfile(path):
            found.setdefault(m.group(1), {})[int(m.group(2))] = json.load(open(path))["mAP_wide"]
    return found


def verdict(args):
    """Paired differences of the wide-set mAP against each baseline, on common seeds; the
    variants whose interval against the first baseline already lies under --stop-below after
    --stop-after seeds are listed as stopped (issue 38: stop a variant early)."""
    found = archived_scores(args.archive)
    rows, stopped = [], []
    print("| variant | seeds | wide mAP (mean) | " + " | ".join(
        f"Δ vs {b} (95 % interval), n" for b in args.baselines) + " |")
    print("|---|---|---|" + "---|" * len(args.baselines))
    for variant in sorted(found):
        runs = found[variant]
        row = {"variant": variant, "seeds": len(runs), "mean": float(np.mean(list(runs.values())))}
        cells = []
        for b, base in ((b, found.get(b, {})) for b in args.baselines):
            if b == variant:
                cells.append("–")
                continue
            common = sorted(set(runs) & set(base))
            diffs = [runs[s] - base[s] for s in common]
            ci = interval(diffs)
            row[f"vs_{b}"] = {"seeds": common, "differences": diffs,
                              "interval": list(ci) if ci else None}
            cells.append(f"{ci[0]:+.2f} [{ci[1]:+.2f}, {ci[2]:+.2f}], {len(common)}" if ci
                         else f"n = {len(common)}")
            if (b == args.baselines[0] and ci and len(common) >= args.stop_after
                    and ci[2] < args.stop_below):
                stopped.append(variant)
        rows.append(row)
        print(f"| {variant} | {len(runs)} | {row['mean']:.2f} | " + " | ".join(cells) + " |")
    if stopped:
        print("stopped early (interval's upper bound under "
              f"{args.stop_below:+.1f} after {args.stop_after} seeds): " + ", ".join(stopped))
    if args.stopped_out:
        with open(args.stopped_out, "w", encoding="utf-8") as f:
            f.write("".join(v + "\n" for v in stopped))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"baselines": args.baselines, "rows": rows, "stopped": stopped}, f, indent=1)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("features")
    f.add_argument("--root", required=True)
    f.add_argument("--work", required=True)
    f.add_argument("--xtask", default="target/release/xtask")
    f.add_argument("checkpoints", nargs="+")
    d = sub.add_parser("decompose")
    d.add_argument("--root", required=True)
    d.add_argument("--work", required=True)
    d.add_argument("--runs", required=True)
    d.add_argument("--snapshots", default="runs/yardstick-snapshots",
                   help="copies of the runs' checkpoints: SNAPSHOTS/RUN/epoch-E/last")
    d.add_argument("--baseline", required=True)
    d.add_argument("--variant", required=True)
    d.add_argument("--seeds", type=int, required=True)
    d.add_argument("--checkpoints", default="last", type=lambda s: s.split(","))
    d.add_argument("--first-test-pid", type=int, default=101)
    d.add_argument("--json")
    sc = sub.add_parser("score")
    sc.add_argument("--root", required=True)
    sc.add_argument("--work", required=True)
    sc.add_argument("--first-test-pid", type=int, default=101)
    sc.add_argument("--json")
    sc.add_argument("checkpoint")
    v = sub.add_parser("verdict")
    v.add_argument("--archive", required=True)
    v.add_argument("--baselines", default="channel-nocritic,channel", type=lambda s: s.split(","))
    v.add_argument("--stop-below", type=float, default=1.0)
    v.add_argument("--stop-after", type=int, default=10)
    v.add_argument("--stopped-out", help="write the stopped variants' names here, one a line")
    v.add_argument("--json")
    args = p.parse_args()
    {"features": features, "decompose": decompose, "score": score, "verdict": verdict}[args.command](args)


if __name__ == "__main__":
    main()
