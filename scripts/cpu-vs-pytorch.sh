#!/usr/bin/env bash
# Burn's CPU backend against PyTorch on this machine, side by side, alternating the two
# programs round by round so that both see the same machine state.
#
#   scripts/cpu-vs-pytorch.sh            # training steps and inference, 3 rounds
#   scripts/cpu-vs-pytorch.sh ops        # the operation-level profile, 2 rounds, joined
#   scripts/cpu-vs-pytorch.sh quick      # the quick profile's model: steps and inference
#   scripts/cpu-vs-pytorch.sh quick-ops  # the quick profile's operation profile, joined
#
# Steps (default): PyTorch's `train_bnneck` step and `cargo xtask bench --measures
# backbone_train_step,scal_train_step --batch 16`, then inference at batch 16 and 64
# (`backbone_inference`, PyTorch `inference`), ROUNDS times (default 3). Prints the mean of
# each measure over the rounds, the ratios (Burn img/s over PyTorch img/s: above 1 Burn is
# faster), the SCAL step's cost over the BN-neck step, and each side's peak RSS.
#
# quick: the same for the quick profile's model (`cargo xtask train`'s default: ResNet-18 of
# base width 32, 128 x 64, batch 16 x 4, 100 classes, its Adam): PyTorch's `--model quick`
# `train_bnneck`, `train_scal` and `inference` against `cargo xtask bench --profile quick
# --measures backbone_train_step,scal_train_step` and `backbone_inference`, all at batch 64,
# ROUNDS times (default 3); prints the means, the ratios, the SCAL step's cost over the
# BN-neck step on each side, the peak RSS, and checks that both sides' models have the same
# number of parameters (exit 1 if not). quick-ops: the operation profile of the quick model's
# BN-neck step (`--profile quick --measures ops`, `--model quick ops`), batch 64, 2 rounds.
#
# Environment: PYTHON (default python3; needs torch, and torchvision or not), XTASK (default
# target/release/xtask, built with `cargo build --release -p xtask` if absent), ROUNDS,
# THREADS (default: all cores, for both), OUT (folder for the raw JSON lines; default a new
# temporary folder). Run it with nothing else busy: PyTorch's OpenMP threads suffer far more
# from a busy core than rayon does, and a ratio measured under load is wrong.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-steps}
case "$mode" in steps|ops|quick|quick-ops) ;; *) echo "usage: $0 [steps|ops|quick|quick-ops]" >&2; exit 2 ;; esac
PYTHON=${PYTHON:-python3}
XTASK=${XTASK:-target/release/xtask}
THREADS=${THREADS:-$(nproc)}
OUT=${OUT:-$(mktemp -d)}
case "$mode" in ops|quick-ops) ROUNDS=${ROUNDS:-2} ;; *) ROUNDS=${ROUNDS:-3} ;; esac
mkdir -p "$OUT"
bench=crates/scal-backbone/benches/pytorch_resnet50.py

if ! "$PYTHON" -c "import torch" 2>/dev/null; then
  echo "error: $PYTHON cannot import torch (install it: pip install torch; or set PYTHON)" >&2
  exit 1
fi
if [ ! -x "$XTASK" ]; then
  echo "== building $XTASK (cargo build --release -p xtask)"
  cargo build --release -p xtask
fi

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || echo unknown)
avx512=$(grep -qm1 avx512f /proc/cpuinfo && echo yes || echo no)
echo "== $mode: $ROUNDS rounds, $THREADS threads, CPU: $cpu (AVX-512: $avx512), $(date -u +%FT%TZ)"
echo "== raw rows in $OUT"

for round in $(seq 1 "$ROUNDS"); do
  echo "-- round $round"
  if [ "$mode" = quick-ops ]; then
    RAYON_NUM_THREADS=$THREADS "$XTASK" bench --json --profile quick --measures ops \
      > "$OUT/burn-ops-$round.jsonl"
    "$PYTHON" "$bench" --model quick --threads "$THREADS" --iters 3 ops > "$OUT/torch-ops-$round.jsonl"
    continue
  fi
  if [ "$mode" = quick ]; then
    for measure in train_bnneck train_scal; do
      "$PYTHON" "$bench" --model quick --threads "$THREADS" --iters 5 "$measure" >> "$OUT/torch.jsonl"
    done
    RAYON_NUM_THREADS=$THREADS "$XTASK" bench --json --profile quick \
      --measures backbone_train_step,scal_train_step --warmup 1 --iterations 5 >> "$OUT/burn.jsonl"
    "$PYTHON" "$bench" --model quick --threads "$THREADS" --iters 5 inference >> "$OUT/torch.jsonl"
    RAYON_NUM_THREADS=$THREADS "$XTASK" bench --json --profile quick --measures backbone_inference \
      --warmup 1 --iterations 5 >> "$OUT/burn.jsonl"
    continue
  fi
  if [ "$mode" = ops ]; then
    RAYON_NUM_THREADS=$THREADS "$XTASK" bench --json --measures ops --batch 16 \
      > "$OUT/burn-ops-$round.jsonl"
    "$PYTHON" "$bench" --threads "$THREADS" --batch 16 --iters 3 ops > "$OUT/torch-ops-$round.jsonl"
    continue
  fi
  "$PYTHON" "$bench" --threads "$THREADS" --batch 16 --iters 5 train_bnneck >> "$OUT/torch.jsonl"
  RAYON_NUM_THREADS=$THREADS "$XTASK" bench --json --measures backbone_train_step,scal_train_step \
    --batch 16 --warmup 1 --iterations 3 >> "$OUT/burn.jsonl"
  for batch in 16 64; do
    "$PYTHON" "$bench" --threads "$THREADS" --batch "$batch" --iters 5 inference >> "$OUT/torch.jsonl"
    RAYON_NUM_THREADS=$THREADS "$XTASK" bench --json --measures backbone_inference \
      --inference-batch "$batch" --warmup 1 --iterations 3 >> "$OUT/burn.jsonl"
  done
done

if [ "$mode" = ops ] || [ "$mode" = quick-ops ]; then
  "$PYTHON" scripts/ops-vs-pytorch.py --burn "$OUT"/burn-ops-*.jsonl --torch "$OUT"/torch-ops-*.jsonl
  exit 0
fi
if [ "$mode" = quick ]; then
  exec "$PYTHON" scripts/quick-vs-pytorch.py "$OUT/burn.jsonl" "$OUT/torch.jsonl"
fi

"$PYTHON" - "$OUT/burn.jsonl" "$OUT/torch.jsonl" <<'EOF'
import json, statistics, sys
burn = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
torch = [json.loads(l) for l in open(sys.argv[2]) if l.startswith("{")]

def burn_rows(measure, batch):
    return [r for r in burn if r["measure"] == measure and r["batch"] == batch]

def torch_rows(measure, batch):
    return [r for r in torch if r["measure"] == measure and r["batch"] == batch]

def mean(rows, key):
    return statistics.mean(r[key] for r in rows)

def spread(rows, key):
    values = [r[key] for r in rows]
    return f"{min(values):.2f}-{max(values):.2f}"

pairs = [("BN-neck training step", "backbone_train_step", "train_bnneck", 16),
         ("inference", "backbone_inference", "inference", 16),
         ("inference", "backbone_inference", "inference", 64)]
print("| measure | batch | Burn img/s | PyTorch img/s | Burn / PyTorch | Burn peak RSS MiB | PyTorch peak RSS MiB |")
print("|---|---|---|---|---|---|---|")
for name, bm, tm, batch in pairs:
    b, t = burn_rows(bm, batch), torch_rows(tm, batch)
    if not b or not t:
        continue
    bi, ti = mean(b, "throughput"), mean(t, "img_per_s")
    print(f"| {name} | {batch} | {bi:.2f} ({spread(b, 'throughput')}) | {ti:.2f} ({spread(t, 'img_per_s')}) "
          f"| **{bi / ti:.2f}×** | {max(r['peak_rss_mib'] or 0 for r in b):.0f} "
          f"| {max(r['peak_rss_mib'] for r in t):.0f} |")
base, scal = burn_rows("backbone_train_step", 16), burn_rows("scal_train_step", 16)
if base and scal:
    print(f"\nSCAL step {mean(scal, 'seconds_per_iteration'):.3f} s, BN-neck step "
          f"{mean(base, 'seconds_per_iteration'):.3f} s: "
          f"**{mean(scal, 'seconds_per_iteration') / mean(base, 'seconds_per_iteration'):.2f}×** "
          f"(SCAL img/s {mean(scal, 'throughput'):.2f}, {mean(scal, 'throughput') / mean(torch_rows('train_bnneck', 16), 'img_per_s'):.2f}× PyTorch's BN-neck step)")
EOF
