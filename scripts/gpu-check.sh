#!/usr/bin/env bash
# GPU check on a machine with a GPU and a prebuilt binary (no Rust toolchain or network needed):
# for each GPU backend compiled into the binary and present on the machine, the parity of the
# SCAL model against flex (forward pass and one training step) and the training-throughput
# benchmark; first, if PyTorch with CUDA is installed, PyTorch's eager reference on the same
# card. Prints one JSON line per result on stdout (progress and logs go to stderr).
#
#   cargo xtask setup-cuda                                          # once, on the build machine
#   cargo build --profile dist -p xtask --features wgpu,cuda        # stripped binary
#   xz -T0 -9 -k target/dist/xtask                                  # ~1/4 the size, to carry
#   scripts/gpu-check.sh [path/to/xtask or xtask.xz] > gpu-check.jsonl
#
# After the parity checks and the step throughputs, a `paper`-shaped run (ResNet-50, 256 x 128,
# P x K = 16 x 4, channel attention and critics, data loading included) trains on the
# synthetic dataset for PAPER_EPOCHS epochs and reports its images/s from metrics.jsonl.
#
# Environment: BATCH (training batch, default 64), ITERS (timed iterations, default 10),
# HEIGHT and WIDTH of the Rust measures (default 256 x 128),
# BACKENDS (default "wgpu cuda"), PYTHON (default python3), SKIP_PYTORCH=1,
# PAPER_EPOCHS (default 4; 0 skips the run), PAPER_EXTRA (more `train` flags, e.g. a smaller
# model for a dry run on the CPU with BACKENDS=flex).
# Exit status: 0 everything passed; 1 a parity check or a measure failed; 2 no binary; 3 no
# GPU backend could be measured (skipped ones are reported as {"status":"skipped"} lines).
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/xtask}
BATCH=${BATCH:-64}
ITERS=${ITERS:-10}
HEIGHT=${HEIGHT:-256}
WIDTH=${WIDTH:-128}
BACKENDS=${BACKENDS:-wgpu cuda}
PYTHON=${PYTHON:-python3}
PAPER_EPOCHS=${PAPER_EPOCHS:-4}
status=0
measured=0

skip() { # backend reason
  printf '{"check":"backend","backend":"%s","status":"skipped","reason":%s}\n' "$1" \
    "$("$PYTHON" -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$2" 2>/dev/null || echo '"see stderr"')"
}

if [[ "$BIN" == *.xz ]] && [ -f "$BIN" ]; then
  unpacked=$(mktemp "${TMPDIR:-/tmp}/xtask.XXXXXX")
  xz -dc "$BIN" > "$unpacked" && chmod +x "$unpacked" || { echo "gpu-check: cannot decompress $BIN" >&2; exit 2; }
  BIN=$unpacked
fi

if [ ! -x "$BIN" ]; then
  echo "gpu-check: no executable binary at $BIN (build it with cargo build --release -p xtask --features wgpu)" >&2
  exit 2
fi

if [ "${SKIP_PYTORCH:-0}" != 1 ] && "$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  for flag in "" "--no-tf32"; do
    for measure in inference train_bnneck; do
      echo "== PyTorch eager $measure $flag" >&2
      "$PYTHON" crates/scal-backbone/benches/pytorch_resnet50.py --device cuda --batch "$BATCH" \
        --iters "$ITERS" --warmup 3 $flag "$measure" || status=1
    done
  done
else
  echo "== PyTorch with CUDA not found: no reference numbers" >&2
fi

for backend in $BACKENDS; do
  echo "== $backend: parity against flex" >&2
  out=$("$BIN" parity --backend "$backend" --json 2>/tmp/gpu-check-$backend.err)
  rc=$?
  err=$(cat /tmp/gpu-check-$backend.err)
  if [ $rc -ne 0 ] && { grep -q "built without" <<<"$err" || grep -q "no GPU adapter\|no CUDA device\|probing for devices failed" <<<"$err"; }; then
    echo "$err" >&2
    skip "$backend" "$(tail -n 1 <<<"$err")"
    continue
  fi
  measured=$((measured + 1))
  [ -n "$out" ] && echo "$out"
  if [ $rc -ne 0 ]; then
    echo "$err" >&2
    status=1
  fi
  echo "== $backend: training throughput (batch $BATCH) and inference" >&2
  "$BIN" bench --backend "$backend" --json --batch "$BATCH" --inference-batch "$BATCH" \
    --iterations "$ITERS" --height "$HEIGHT" --width "$WIDTH" \
    --measures backbone_inference,backbone_train_step,scal_train_step \
    || status=1
done

# A paper-shaped run on synthetic data: end-to-end images/s with data loading, per backend.
paper_run() { # backend
  local work
  work=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check-run.XXXXXX")
  "$BIN" synth --out "$work/synth" >&2 || return 1
  "$BIN" train --backend "$1" --profile paper --root "$work/synth" --dataset market1501 \
    --set model.pretrained=null --set data.cache=true --set data.prefetch=4 \
    --set optim.warmup_epochs=1 --set "optim.milestones=[]" --set eval.every_epochs=0 \
    --set eval.rerank=false --epochs "$PAPER_EPOCHS" --runs "$work/runs" --name paper \
    --no-progress ${PAPER_EXTRA:-} >&2 || return 1
  "$PYTHON" - "$work/runs/paper/metrics.jsonl" "$1" <<'EOF'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
train = [l for l in lines if l["kind"] == "train"]
steady = [l["images_per_s"] for l in train[len(train) // 10:]] or [0.0]
last = [l for l in lines if l["kind"] == "eval"][-1]
print(json.dumps({"check": "paper_run", "backend": sys.argv[2], "iterations": len(train),
                  "first_iteration_images_per_s": train[0]["images_per_s"],
                  "steady_images_per_s": sum(steady) / len(steady),
                  "final_map": last["plain"]["mAP"]}))
EOF
}

if [ "$PAPER_EPOCHS" -gt 0 ]; then
  for backend in $BACKENDS; do
    if "$BIN" devices --backend "$backend" >/dev/null 2>&1; then
      echo "== $backend: paper-shaped run, $PAPER_EPOCHS epochs on synthetic 256x128 data" >&2
      paper_run "$backend" || status=1
    fi
  done
fi

if [ "$measured" -eq 0 ]; then
  echo "gpu-check: no GPU backend could be measured (none compiled into $BIN, or no device)" >&2
  exit 3
fi
exit $status
