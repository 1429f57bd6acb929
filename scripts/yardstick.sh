#!/usr/bin/env bash
# Issue 38, stage 0: where the spread of a paired ablation on synth-hard comes from. Trains
# pairs of runs (BASELINE and VARIANT, seed by seed, the ablation's own configurations on
# synth-hard), keeps copies of each run's checkpoints at the last epochs (EPOCHS, with
# scripts/snapshot-checkpoints.sh), embeds every checkpoint's queries and gallery of the wide
# test set (datasets/synth-hard-wide: synth-hard's generator with 500 test identities; its
# training split is synth-hard's, checked below), then splits the spread of the paired
# difference into evaluation noise and training noise (scripts/yardstick.py).
#
# usage: nice -n 19 scripts/yardstick.sh        # resumable: finished runs and features are kept
# Environment: XTASK (default target/release/xtask), PYTHON (default python3; needs numpy), RUNS (runs/yardstick), SNAPS
# (runs/yardstick-snapshots), WORK (runs/yardstick-features), SEEDS (6), BASELINE (none),
# VARIANT (channel-nocritic), EPOCHS ("33 34 35": copies of last/ after those epochs; the
# final checkpoint is the run's last/), OUT (docs/yardstick-synth-hard).
set -euo pipefail
cd "$(dirname "$0")/.."
XTASK=${XTASK:-target/release/xtask}
PYTHON=${PYTHON:-python3}
RUNS=${RUNS:-runs/yardstick}
SNAPS=${SNAPS:-runs/yardstick-snapshots}
WORK=${WORK:-runs/yardstick-features}
SEEDS=${SEEDS:-6}
BASELINE=${BASELINE:-none}
VARIANT=${VARIANT:-channel-nocritic}
EPOCHS=${EPOCHS:-33 34 35}
OUT=${OUT:-docs/yardstick-synth-hard}
WIDE=datasets/synth-hard-wide
mkdir -p "$RUNS" "$SNAPS" "$WORK" "$OUT"

[ -d datasets/synth-hard ] || "$XTASK" synth --preset hard
[ -d "$WIDE" ] || "$XTASK" synth --preset hard --test-ids 500 --out "$WIDE"
# The wide set's training split must be synth-hard's, byte for byte: the runs train on
# synth-hard and are scored on the wide test set.
diff -rq datasets/synth-hard/bounding_box_train "$WIDE/bounding_box_train" >/dev/null \
  || { echo "error: $WIDE/bounding_box_train differs from synth-hard's" >&2; exit 1; }

checkpoints() { # the checkpoint folders of run $1
  echo "$RUNS/$1/last"
  for e in $EPOCHS; do echo "$SNAPS/$1/epoch-$e/last"; done
}

for s in $(seq 0 $((SEEDS - 1))); do
  pids=()
  for v in "$BASELINE" "$VARIANT"; do
    if [ ! -f "$RUNS/$v-seed$s/last/state.json" ] || ! grep -q '"kind":"eval","epoch":36,' "$RUNS/$v-seed$s/metrics.jsonl" 2>/dev/null; then
      EPOCHS="$EPOCHS" scripts/snapshot-checkpoints.sh "$RUNS/$v-seed$s" "$SNAPS/$v-seed$s" &
      pids+=($!)
    fi
  done
  "$XTASK" ablate --dataset synth-hard --runs "$RUNS" --variants "$BASELINE,$VARIANT" \
    --seeds $((s + 1)) --no-progress > "$RUNS/ablate-seed$s.log" 2>&1
  for p in "${pids[@]}"; do wait "$p" || true; done
  for v in "$BASELINE" "$VARIANT"; do
    "$PYTHON" scripts/yardstick.py features --root "$WIDE" --work "$WORK" --xtask "$XTASK" \
      $(checkpoints "$v-seed$s")
  done
  { grep -m1 "model name" /proc/cpuinfo; grep -m1 "cpu family" /proc/cpuinfo
    if grep -q avx512f /proc/cpuinfo; then echo "avx512: yes"; else echo "avx512: no"; fi
    nproc; date -u +%F; } > "$OUT/machine-seed$s.txt"
  echo "seed $s done $(date -u +%T)"
done

ck=last
for e in $EPOCHS; do ck="$ck,epoch-$e/last"; done
"$PYTHON" scripts/yardstick.py decompose --root "$WIDE" --work "$WORK" --runs "$RUNS" \
  --snapshots "$SNAPS" --baseline "$BASELINE" --variant "$VARIANT" --seeds "$SEEDS" \
  --checkpoints last --json "$OUT/decomposition-last.json"
"$PYTHON" scripts/yardstick.py decompose --root "$WIDE" --work "$WORK" --runs "$RUNS" \
  --snapshots "$SNAPS" --baseline "$BASELINE" --variant "$VARIANT" --seeds "$SEEDS" \
  --checkpoints "$ck" --json "$OUT/decomposition-last4.json"
cp "$RUNS/ablation.md" "$OUT/ablation.md" 2>/dev/null || true
