#!/usr/bin/env python3
"""Issue 28's verdict, summarised from the archive `scripts/verdict.sh` writes
(docs/verdict-synth-hard/<variant>-seed<N>/): per variant and module, what `critic-grad`
measured on each seed's final model (critic-grad.json), and what the critic probe found
(critic-probe.json, where the run has one).

    python scripts/verdict-summary.py [ARCHIVE]

Per variant and module: the seeds measured; the mean over seeds of the mean cosine between
∂V/∂A and ∂log p_k/∂A, with the smallest and largest seed's; how many seeds have a 95 %
interval above 0 (and how many above 0 with a mean over 0.2, the issue's goal); the mean
correlation of V(A) − V(1) with the realised gain; how much the samples' directions agree
for ∂V/∂A and for ∂log p_k/∂A (mean over the seeds that have them, "(k/n)" when not all do);
the median over seeds of ‖λ∇J_cri‖ / ‖∇(J_tri + J_cls)‖ on the agent.

critic-probe.json: `scripts/critic-probe.py --json` of `critic-data --batches 80` on the run's
final model (a folder of one run); per variant and module, the mean over
seeds (with how many seeds, where fewer have it) of the critic's own R² on its target, the linear probe's R² on R from the critic's
inputs, and the linear probe's AUC for R_a and R_a^l; the same R² and R_a^l AUC from the
pooled inputs where they were probed. Standard library only.
"""
import argparse
import json
import os
import re
import statistics
from collections import defaultdict


def runs_of(archive, file):
    """(variant, seed, path) of every archived run with this file."""
    found = []
    for name in sorted(os.listdir(archive)):
        m = re.fullmatch(r"(.+)-seed(\d+)", name)
        path = os.path.join(archive, name, file)
        if m and os.path.isfile(path):
            found.append((m.group(1), int(m.group(2)), path))
    return found


def critic_grad_table(archive):
    by = defaultdict(list)  # (variant, module) -> [(seed, row)]
    for variant, seed, path in runs_of(archive, "critic-grad.json"):
        for row in json.load(open(path)):
            by[(variant, row["module"])].append((seed, row))
    print("| variant | module | seeds | mean cosine (seeds' min, max) | seeds with interval > 0 (and mean > 0.2) "
          "| corr(V(A) − V(1), gain) | coherence of ∂V/∂A | coherence of ∂log p_k/∂A "
          "| ‖λ∇J_cri‖ / ‖∇ReID‖ (median) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (variant, module), rows in sorted(by.items()):
        cos = [r["cosine"]["mean"] for _, r in rows]
        above = sum(r["cosine"]["low"] > 0 for _, r in rows)
        goal = sum(r["cosine"]["low"] > 0 and r["cosine"]["mean"] > 0.2 for _, r in rows)
        corr = [r["value_gain_correlation"] for _, r in rows if r["value_gain_correlation"] is not None]
        ratio = [r["critic_gradient_norm"] / r["reid_gradient_norm"] for _, r in rows if r["reid_gradient_norm"] > 0]
        corr_text = f"{statistics.mean(corr):+.3f}" if corr else "–"

        def coherence(key):
            have = [r[key] for _, r in rows if key in r]
            if not have:
                return "–"
            return f"{statistics.mean(have):.3f}" + ("" if len(have) == len(rows) else f" ({len(have)}/{len(rows)})")
        print(f"| {variant} | {module} | {len(rows)} | {statistics.mean(cos):+.3f} ({min(cos):+.3f}, {max(cos):+.3f}) "
              f"| {above} ({goal}) | {corr_text} "
              f"| {coherence('value_gradient_coherence')} | {coherence('class_gradient_coherence')} | "
              f"{statistics.median(ratio) if ratio else float('nan'):.3g} |")


def probe_table(archive):
    by = defaultdict(lambda: defaultdict(list))  # (variant, module) -> measure -> values
    seeds = defaultdict(set)
    for variant, seed, path in runs_of(archive, "critic-probe.json"):
        own_target = "R_c + R_a^l" if "per-module" in variant else "R"
        for folder in json.load(open(path)).values():
            for row in folder["rows"]:
                key = (variant, row["module"])
                seeds[key].add(seed)
                inputs, target, value = row["inputs"], row["target"], row.get("linear")
                if value is None:
                    continue
                if inputs.startswith("critic's") and target == own_target:
                    by[key]["own R²"].append(value)
                elif inputs.startswith("critic (") and target in ("R", "R_a", "R_a^l"):
                    by[key][f"probe {target}"].append(value)
                elif inputs.startswith("pooled (") and target in ("R", "R_a^l"):
                    by[key][f"pooled {target}"].append(value)
    print("| variant | module | seeds | critic's own R² | probe R² on R | probe AUC R_a | probe AUC R_a^l "
          "| pooled R² on R | pooled AUC R_a^l |")
    print("|---|---|---|---|---|---|---|---|---|")
    names = ("own R²", "probe R", "probe R_a", "probe R_a^l", "pooled R", "pooled R_a^l")
    for key in sorted(by):
        cells = [by[key].get(k) for k in names]
        text = ["–" if not c else f"{statistics.mean(c):.3f}" + ("" if len(c) == len(seeds[key]) else f" ({len(c)})")
                for c in cells]
        print(f"| {key[0]} | {key[1]} | {len(seeds[key])} | " + " | ".join(text) + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("archive", nargs="?", default="docs/verdict-synth-hard")
    args = parser.parse_args()
    critic_grad_table(args.archive)
    print()
    probe_table(args.archive)


if __name__ == "__main__":
    main()
