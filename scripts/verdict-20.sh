#!/usr/bin/env bash
# Issue 38, stage 5: the verdict on the yardstick of stage 0 (docs/reproduction.md, "A
# yardstick that can see 2 mAP points"): the quick profile trained on synth-hard by the
# ablation's own variants, each run scored on datasets/synth-hard-wide (all 500 test
# identities) from its last checkpoint, paired by seed. Seed by seed (every variant's seed 0,
# then seed 1, ...), so that a stopped verdict already holds complete pairs. After each run:
# its wide-set score (`scripts/yardstick.py score`), `critic-grad` where the run has a learned
# critic, and its record archived in ARCHIVE/<variant>-seed<N>/ (config.json, metrics.jsonl.xz,
# score.json, critic-grad.json, machine.txt). A later machine restores the archive into RUNS
# first, so a finished run is read back instead of trained again; an interrupted run resumes
# from its checkpoint. A variant whose interval against the first baseline lies wholly under
# +1 point after 10 seeds is stopped early (written to ARCHIVE/stopped.txt and said in the
# table).
#
# The variants, fixed before any verdict run: channel-nocritic (the attention without a
# critic every verdict is read against), channel (the paper's critic), channel-scst (the
# self-critical reference of stage 3: stage 1 did not pass for the compatible critic, +0.19
# against the 0.3 asked, so no stage-2 critic enters), channel-cal (stage 4's control).
#
# usage: nice -n 19 scripts/verdict-20.sh          # resumable; prints the table at the end
#        scripts/verdict-20.sh table               # only the table of what is archived
# Environment: XTASK (target/release/xtask), PYTHON (python3 with numpy), RUNS
# (runs/verdict-synth-hard-20), WORK (runs/verdict-features), ARCHIVE
# (docs/verdict-synth-hard-20), VARIANTS, SEEDS (20), BATCHES (critic-grad's, 10), IMPORT (a
# folder of finished runs of the same configuration, e.g. runs/yardstick, whose
# channel-nocritic runs are copied in instead of trained again).
set -euo pipefail
cd "$(dirname "$0")/.."
XTASK=${XTASK:-target/release/xtask}
PYTHON=${PYTHON:-python3}
RUNS=${RUNS:-runs/verdict-synth-hard-20}
WORK=${WORK:-runs/verdict-features}
ARCHIVE=${ARCHIVE:-docs/verdict-synth-hard-20}
VARIANTS=${VARIANTS:-channel-nocritic,channel,channel-scst,channel-cal}
SEEDS=${SEEDS:-20}
BATCHES=${BATCHES:-10}
IMPORT=${IMPORT:-}
WIDE=datasets/synth-hard-wide
BASELINES=channel-nocritic,channel
mkdir -p "$RUNS" "$WORK" "$ARCHIVE"

table() {
  "$PYTHON" scripts/yardstick.py verdict --archive "$ARCHIVE" --baselines "$BASELINES" \
    --stop-below 1.0 --stop-after 10 --stopped-out "$ARCHIVE/stopped.txt" \
    --json "$ARCHIVE/verdict.json" | tee "$ARCHIVE/verdict.md"
}
if [ "${1:-}" = table ]; then table; exit 0; fi

[ -d datasets/synth-hard ] || "$XTASK" synth --preset hard
[ -d "$WIDE" ] || "$XTASK" synth --preset hard --test-ids 500 --out "$WIDE"
diff -rq datasets/synth-hard/bounding_box_train "$WIDE/bounding_box_train" >/dev/null \
  || { echo "error: $WIDE/bounding_box_train differs from synth-hard's" >&2; exit 1; }

finished() { grep -q "\"kind\":\"eval\",\"epoch\":36," "$1/metrics.jsonl" 2>/dev/null; }

restore() { # archived runs back into RUNS (their log and config: `ablate` reads them back)
  for saved in "$ARCHIVE"/*-seed*/; do
    [ -f "$saved/metrics.jsonl.xz" ] || continue
    run="$RUNS/$(basename "$saved")"
    finished "$run" && continue
    rm -rf "$run"; mkdir -p "$run"
    cp "$saved/config.json" "$run/config.json"
    xz -dc "$saved/metrics.jsonl.xz" >"$run/metrics.jsonl"
    echo "restored $run from $saved"
  done
}

import() { # finished runs of IMPORT with a verdict variant's name, copied in whole
  [ -n "$IMPORT" ] || return 0
  for run in "$IMPORT"/*-seed*/; do
    name=$(basename "$run")
    [[ ",$VARIANTS," == *",${name%-seed*},"* ]] || continue
    [ -e "$RUNS/$name" ] || ! finished "$run" || { cp -r "$run" "$RUNS/$name"; echo "$run" >"$RUNS/$name/imported-from"; echo "imported $run"; }
  done
}

machine() {
  grep -m1 "model name" /proc/cpuinfo; grep -m1 "cpu family" /proc/cpuinfo
  if grep -q avx512f /proc/cpuinfo; then echo "avx512: yes"; else echo "avx512: no"; fi
  nproc; date -u +%F; git rev-parse --short HEAD
}

archive() { # $1: a finished run of RUNS
  local run=$1 name out
  name=$(basename "$run"); out="$ARCHIVE/$name"
  mkdir -p "$out"
  if [ ! -f "$out/metrics.jsonl.xz" ]; then
    cp "$run/config.json" "$out/config.json"
    xz -9 -c "$run/metrics.jsonl" >"$out/metrics.jsonl.xz"
    { machine; [ ! -f "$run/imported-from" ] || echo "imported from $(cat "$run/imported-from") (trained earlier on this machine)"; } >"$out/machine.txt"
  fi
  [ -d "$run/last" ] || return 0 # restored from the archive: measured before
  if [ ! -f "$out/score.json" ]; then
    "$PYTHON" scripts/yardstick.py features --root "$WIDE" --work "$WORK" --xtask "$XTASK" "$run/last"
    "$PYTHON" scripts/yardstick.py score --root "$WIDE" --work "$WORK" "$run/last" --json "$out/score.json"
  fi
  # critic-grad measures a learned critic: the runs without one (nocritic, cal) and the
  # self-critical runs (refused by critic-grad) have none.
  if [ ! -f "$out/critic-grad.json" ] && [[ $name != *nocritic* && $name != *-cal-* && $name != *-scst* ]]; then
    "$XTASK" critic-grad "$run" --batches "$BATCHES" --json "$out/critic-grad.json" \
      >"$out/critic-grad.txt" 2>&1 || echo "critic-grad failed on $run: see $out/critic-grad.txt"
  fi
}

restore
import
IFS=, read -r -a variants <<<"$VARIANTS"
for seeds in $(seq 1 "$SEEDS"); do
  for variant in "${variants[@]}"; do
    grep -qx "$variant" "$ARCHIVE/stopped.txt" 2>/dev/null && continue
    run="$RUNS/$variant-seed$((seeds - 1))"
    if ! finished "$run"; then
      "$XTASK" ablate --dataset synth-hard --variants "$variant" --seeds "$seeds" --runs "$RUNS" \
        --no-progress >"$RUNS/ablate-$variant-seed$((seeds - 1)).log" 2>&1 \
        || { echo "$run failed: see $RUNS/ablate-$variant-seed$((seeds - 1)).log"; continue; }
    fi
    archive "$run"
    echo "$variant seed $((seeds - 1)) done $(date -u +%T)"
  done
  table >/dev/null
done
table
# The ablation's own tables (synth-hard's own test split) of the variants that ran all seeds.
kept=; paired=
for variant in "${variants[@]}"; do
  grep -qx "$variant" "$ARCHIVE/stopped.txt" 2>/dev/null && continue
  kept=${kept:+$kept,}$variant
  [[ ",$BASELINES," == *",$variant,"* ]] && paired=${paired:+$paired,}$variant
done
"$XTASK" ablate --dataset synth-hard --variants "$kept" --seeds "$SEEDS" --runs "$RUNS" \
  --no-progress ${paired:+--paired-against "$paired"} >"$ARCHIVE/ablate.log" 2>&1 || true
cp "$RUNS/ablation.md" "$ARCHIVE/ablation-own-split.md" 2>/dev/null || true
