#!/usr/bin/env python3
"""R_c / R_a rates and training losses over a run's training, from its metrics.jsonl.

For each run folder: the mean over the first and the last epoch's training iterations of
`correct_rate` (R_c) and `amelioration_rate` (R_a), the last epoch's mean triplet and
cross-entropy losses, and the last evaluation's amelioration diagnostic (all modules, then
per module). Runs without a critic print "-" for the rates.

    python scripts/train-log-rates.py runs/ablate-synth-hard/spatial-seed*
"""
import json
import statistics
import sys
from pathlib import Path


def mean(rows, key):
    values = [r[key] for r in rows if r.get(key) is not None]
    return f"{statistics.mean(values):.3f}" if values else "-"


def summary(run: Path) -> str:
    log = run / "metrics.jsonl"
    if not log.is_file():
        raise SystemExit(f"{log}: no such file (is {run} a run folder?)")
    lines = []
    for number, line in enumerate(log.open(), start=1):
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise SystemExit(f"{log}:{number}: not a JSON line ({err})") from None
    train = [r for r in lines if r.get("kind") == "train"]
    evals = [r for r in lines if r.get("kind") == "eval"]
    if not train:
        raise SystemExit(f"{run}/metrics.jsonl: no training iterations")
    first = [r for r in train if r["epoch"] == train[0]["epoch"]]
    last = [r for r in train if r["epoch"] == train[-1]["epoch"]]
    diagnostic = (evals[-1].get("module_amelioration") or {}) if evals else {}
    per_module = " ".join(f"{x:.2f}" for x in diagnostic.get("per_module", []))
    overall = diagnostic.get("all_modules")
    return (
        f"| {run.name} | {mean(first, 'correct_rate')} → {mean(last, 'correct_rate')} "
        f"| {mean(first, 'amelioration_rate')} → {mean(last, 'amelioration_rate')} "
        f"| {mean(last, 'triplet')} | {mean(last, 'classification')} "
        f"| {'-' if overall is None else f'{overall:.3f}'} {per_module} |"
    )


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    print("| run | R_c rate, first → last epoch | R_a rate, first → last epoch "
          "| triplet, last epoch | cross-entropy, last epoch | amelioration diagnostic, all (per module) |")
    print("|---|---|---|---|---|---|")
    for arg in sys.argv[1:]:
        print(summary(Path(arg)))


if __name__ == "__main__":
    main()
