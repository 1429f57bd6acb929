#!/usr/bin/env bash
# Issue 28's verdict on synth-hard: the ablation's variants trained seed by seed (every
# variant's seed 0, then seed 1, ...), so that a stopped verdict already holds complete
# pairs. After each run, `critic-grad` measures it (variants with a critic) while its
# checkpoint is there, and the run's record is archived in ARCHIVE: config.json,
# metrics.jsonl (xz) and critic-grad.json, a few hundred kilobytes per run. A later machine
# restores the archive into RUNS first, so `ablate` reads those runs back instead of training
# them again (flex is deterministic: the same code retrains the same run). The critic probe
# of a run (`critic-data RUN --out D --batches 80`, then `scripts/critic-probe.py D --inputs
# critic --mlp none --json ARCHIVE/RUN/critic-probe.json`) is archived beside it by hand;
# `scripts/verdict-summary.py` reads both.
#
# usage: scripts/verdict.sh            # train what is missing, archive, print the table
#        scripts/verdict.sh archive    # only archive the finished runs of RUNS
# Environment: XTASK (default target/release/xtask), RUNS (runs/verdict-synth-hard),
# ARCHIVE (docs/verdict-synth-hard), VARIANTS (the order of training within a seed and of the
# table), SEEDS (5), BATCHES (critic-grad's, 10), PAIRED (the paired tables' baselines:
# those of none, channel-nocritic and channel that VARIANTS holds).
# It runs for hours on a CPU: start it under `nice -n 19` beside other work.
set -euo pipefail
cd "$(dirname "$0")/.."
XTASK=${XTASK:-target/release/xtask}
RUNS=${RUNS:-runs/verdict-synth-hard}
ARCHIVE=${ARCHIVE:-docs/verdict-synth-hard}
VARIANTS=${VARIANTS:-channel,channel-nocritic,channel-per-module-standardized,channel-per-module,channel-standardized-explore,none}
SEEDS=${SEEDS:-5}
BATCHES=${BATCHES:-10}
mkdir -p "$RUNS" "$ARCHIVE"

restore() {
  for saved in "$ARCHIVE"/*/; do
    [ -f "$saved/metrics.jsonl.xz" ] || continue
    run="$RUNS/$(basename "$saved")"
    [ -f "$run/metrics.jsonl" ] && continue
    mkdir -p "$run"
    cp "$saved/config.json" "$run/config.json"
    xz -dc "$saved/metrics.jsonl.xz" >"$run/metrics.jsonl"
    echo "restored $run from $saved"
  done
}

# A run is finished when its log's last evaluation is at its last epoch: `ablate` reads the
# run back then. Its checkpoint is measured once, while it exists.
archive() {
  for run in "$RUNS"/*-seed*/; do
    run=${run%/}
    name=$(basename "$run")
    [ -f "$run/metrics.jsonl" ] || continue
    python3 - "$run" <<'EOF' || continue
import json, sys
run = sys.argv[1]
epochs = json.load(open(f"{run}/config.json"))["optim"]["epochs"]
evals = [r for r in map(json.loads, open(f"{run}/metrics.jsonl")) if r.get("kind") == "eval"]
sys.exit(0 if evals and evals[-1]["epoch"] == epochs else 1)
EOF
    out="$ARCHIVE/$name"
    mkdir -p "$out"
    if [ ! -f "$out/metrics.jsonl.xz" ]; then
      cp "$run/config.json" "$out/config.json"
      xz -9 -c "$run/metrics.jsonl" >"$out/metrics.jsonl.xz"
      # flex's results depend on the CPU's vector width (AVX-512 or not): the same seed on
      # another CPU takes another path, so each run says where it ran.
      { grep -m1 "model name" /proc/cpuinfo; grep -m1 "cpu family" /proc/cpuinfo
        if grep -q avx512f /proc/cpuinfo; then echo "avx512: yes"; else echo "avx512: no"; fi
        nproc; date -u +%F; } >"$out/machine.txt"
      echo "archived $run"
    fi
    if [ ! -f "$out/critic-grad.json" ] && [ -d "$run/last" ] && [[ $name != none-* && $name != *nocritic* ]]; then
      "$XTASK" critic-grad "$run" --batches "$BATCHES" --json "$out/critic-grad.json" \
        >"$out/critic-grad.txt" 2>&1 || echo "critic-grad failed on $run: see $out/critic-grad.txt"
    fi
  done
}

if [ "${1:-}" = archive ]; then
  archive
  exit 0
fi
restore
IFS=, read -r -a variants <<<"$VARIANTS"
for seeds in $(seq 1 "$SEEDS"); do
  for variant in "${variants[@]}"; do
    "$XTASK" ablate --dataset synth-hard --variants "$variant" --seeds "$seeds" --runs "$RUNS" --no-progress
    archive
  done
done
if [ -z "${PAIRED+set}" ]; then
  PAIRED=
  for baseline in none channel-nocritic channel; do
    [[ ",$VARIANTS," == *",$baseline,"* ]] && PAIRED=${PAIRED:+$PAIRED,}$baseline
  done
fi
"$XTASK" ablate --dataset synth-hard --variants "$VARIANTS" --seeds "$SEEDS" --runs "$RUNS" --no-progress \
  ${PAIRED:+--paired-against "$PAIRED"}
