#!/usr/bin/env python3
"""Summarises `scripts/cpu-vs-pytorch.sh quick`: Burn against PyTorch on the quick profile's
model, from the JSON rows of both sides.

    python scripts/quick-vs-pytorch.py burn.jsonl torch.jsonl

burn.jsonl holds rows of `cargo xtask bench --json --profile quick` (backbone_train_step,
scal_train_step, backbone_inference), torch.jsonl rows of `pytorch_resnet50.py --model quick`
(train_bnneck, train_scal, inference), one row per measure and round. Prints a Markdown table
of the means over the rounds (range in brackets), Burn img/s over PyTorch img/s (above 1 Burn
is faster) and each side's peak RSS; then the SCAL step's cost over the BN-neck step on each
side; then the parameter counts of each side's models, which must agree (exit 1 if they do
not, or if a measure has no rows). No third-party modules.
"""
import json
import statistics
import sys

# (name, Burn measure, PyTorch measure)
PAIRS = [("BN-neck training step", "backbone_train_step", "train_bnneck"),
         ("SCAL training step", "scal_train_step", "train_scal"),
         ("inference (backbone)", "backbone_inference", "inference")]


def read_rows(path):
    """The JSON objects of a file, one per line (other lines skipped)."""
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except OSError as e:
        sys.exit(f"error: {path}: {e}")
    return [json.loads(line) for line in lines if line.startswith("{")]


def spread(values):
    return f"{min(values):.2f}-{max(values):.2f}"


def table(burn, torch):
    """Prints the table; returns the (Burn, PyTorch) rows of each pair, None where missing."""
    print("| measure | batch | Burn img/s | PyTorch img/s | Burn / PyTorch | Burn peak RSS MiB "
          "| PyTorch peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    found = {}
    for name, bm, tm in PAIRS:
        b = [r for r in burn if r["measure"] == bm]
        t = [r for r in torch if r["measure"] == tm]
        if not b or not t:
            print(f"| {name} | | {len(b)} rows | {len(t)} rows | missing | | |")
            found[bm] = None
            continue
        bi = statistics.mean(r["throughput"] for r in b)
        ti = statistics.mean(r["img_per_s"] for r in t)
        print(f"| {name} | {b[0]['batch']} | {bi:.2f} ({spread([r['throughput'] for r in b])}) "
              f"| {ti:.2f} ({spread([r['img_per_s'] for r in t])}) | **{bi / ti:.2f}×** "
              f"| {max(r['peak_rss_mib'] or 0 for r in b):.0f} "
              f"| {max(r['peak_rss_mib'] for r in t):.0f} |")
        found[bm] = (b, t)
    return found


def scal_over_bnneck(found):
    """The SCAL step's seconds over the BN-neck step's, on each side."""
    base, scal = found.get("backbone_train_step"), found.get("scal_train_step")
    if not base or not scal:
        return
    b0 = statistics.mean(r["seconds_per_iteration"] for r in base[0])
    b1 = statistics.mean(r["seconds_per_iteration"] for r in scal[0])
    t0 = statistics.mean(r["s_per_iter"] for r in base[1])
    t1 = statistics.mean(r["s_per_iter"] for r in scal[1])
    print(f"\nSCAL step over BN-neck step: Burn {b1:.3f} s / {b0:.3f} s = **{b1 / b0:.2f}×**; "
          f"PyTorch {t1:.3f} s / {t0:.3f} s = **{t1 / t0:.2f}×**")


def parameters_agree(found):
    """Prints each model's parameter count on both sides; whether they all agree."""
    ok = True
    print()
    for name, bm, _ in PAIRS:
        pair = found.get(bm)
        if not pair:
            ok = False
            continue
        counts_b = {r.get("params") for r in pair[0]}
        counts_t = {r.get("params") for r in pair[1]}
        agree = len(counts_b) == 1 and counts_b == counts_t and None not in counts_b
        ok &= agree
        print(f"parameters, {name}: Burn {sorted(counts_b, key=str)}, PyTorch "
              f"{sorted(counts_t, key=str)}: {'agree' if agree else 'DIFFER'}")
    return ok


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    burn, torch = read_rows(sys.argv[1]), read_rows(sys.argv[2])
    found = table(burn, torch)
    scal_over_bnneck(found)
    if not parameters_agree(found):
        sys.exit("error: the two sides do not measure the same models (or a measure is missing)")


if __name__ == "__main__":
    main()
