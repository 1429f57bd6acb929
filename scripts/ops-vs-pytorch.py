#!/usr/bin/env python3
"""Joins the operation-level profiles of Burn and PyTorch into one table.

    cargo xtask bench --measures ops --json > burn-ops.jsonl
    python crates/scal-backbone/benches/pytorch_resnet50.py --threads 2 --batch 16 ops > torch-ops.jsonl
    python scripts/ops-vs-pytorch.py burn-ops.jsonl torch-ops.jsonl

or `scripts/cpu-vs-pytorch.sh ops`, which runs both alternately. Rows are matched on
(`op`, `input`); several files of one side (rounds) are averaged per row. Prints a
Markdown table: per row Burn ms, PyTorch ms (one call), the speed ratio (PyTorch ms /
Burn ms: above 1 Burn is faster), the count per step and Burn's share of its step; then the
same summed per operation kind, and each side's sum of rows against its whole step.
No third-party modules.
"""
import json
import statistics
import sys
from collections import OrderedDict


def read_rows(paths, framework):
    """(op, input) -> {"ms": [..], "count": n, "step": row or None} from JSON lines."""
    rows = OrderedDict()
    for path in paths:
        try:
            lines = open(path, encoding="utf-8").read().splitlines()
        except OSError as e:
            sys.exit(f"error: {path}: {e}")
        for number, line in enumerate(lines, 1):
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"error: {path}:{number}: not JSON ({e})")
            if r.get("measure") != "ops" or "op" not in r:
                continue
            ms = r["ms"] if framework == "pytorch" else r["seconds_per_iteration"] * 1000
            entry = rows.setdefault((r["op"], r["input"]), {"ms": [], "count": r["count"], "row": r})
            entry["ms"].append(ms)
    if not rows:
        sys.exit(f"error: no `ops` rows in {', '.join(paths)}")
    return rows


def split_args(argv):
    """burn files and torch files: `A.jsonl B.jsonl`, or `--burn A1 A2 --torch B1 B2`."""
    if "--burn" in argv:
        b = argv.index("--burn")
        t = argv.index("--torch")
        return (argv[b + 1:t] if b < t else argv[b + 1:]), (argv[t + 1:b] if t < b else argv[t + 1:])
    if len(argv) != 2:
        sys.exit(__doc__)
    return [argv[0]], [argv[1]]


def main():
    burn_paths, torch_paths = split_args(sys.argv[1:])
    burn, torch = read_rows(burn_paths, "burn"), read_rows(torch_paths, "pytorch")
    step_key = next(k for k in burn if k[0] == "step")
    burn_step = statistics.mean(burn[step_key]["ms"])
    print("| op | input | count | Burn ms | PyTorch ms | speed ratio | Burn share of step |")
    print("|---|---|---|---|---|---|---|")
    kinds = OrderedDict()
    for key, b in burn.items():
        if key[0] == "step":
            continue
        b_ms = statistics.mean(b["ms"])
        t = torch.get(key)
        t_ms = statistics.mean(t["ms"]) if t else float("nan")
        k = kinds.setdefault(key[0], [0.0, 0.0])
        k[0] += b_ms * b["count"]
        k[1] += t_ms * b["count"]
        print(f"| {key[0]} | {key[1]} | {b['count']} | {b_ms:.2f} | {t_ms:.2f} | "
              f"{t_ms / b_ms:.2f}× | {100 * b_ms * b['count'] / burn_step:.1f} % |")
    print()
    print("| op (summed over shapes, × count) | Burn ms | PyTorch ms | speed ratio | Burn share of step |")
    print("|---|---|---|---|---|")
    for op, (b_ms, t_ms) in sorted(kinds.items(), key=lambda kv: -kv[1][0]):
        print(f"| {op} | {b_ms:.1f} | {t_ms:.1f} | {t_ms / b_ms:.2f}× | {100 * b_ms / burn_step:.1f} % |")
    b_total = sum(v[0] for v in kinds.values())
    t_total = sum(v[1] for v in kinds.values())
    torch_step_key = next((k for k in torch if k[0] == "step"), None)
    print()
    print(f"Burn: operation rows {b_total:.0f} ms, whole step {burn_step:.0f} ms "
          f"({100 * b_total / burn_step:.0f} % explained)")
    if torch_step_key:
        torch_step = statistics.mean(torch[torch_step_key]["ms"])
        print(f"PyTorch: operation rows {t_total:.0f} ms, whole step {torch_step:.0f} ms "
              f"({100 * t_total / torch_step:.0f} %); step speed ratio {torch_step / burn_step:.2f}×")


if __name__ == "__main__":
    main()
