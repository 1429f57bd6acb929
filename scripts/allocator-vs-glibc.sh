#!/usr/bin/env bash
# The BN-neck training step (batch 16, 256 × 128) of xtask under glibc's malloc, jemalloc and
# mimalloc (LD_PRELOAD of Debian's libjemalloc2 and libmimalloc2.0: `apt-get install
# libjemalloc2 libmimalloc2.0`), and PyTorch's under glibc and jemalloc, alternating program by
# program, ROUNDS rounds (default 2). Prints each program's mean images/s, its rounds and its
# peak RSS. Run it with nothing else busy (docs/benchmarks.md, "A faster allocator").
#
# Environment: PYTHON (needs torch; default python3), XTASK (default target/release/xtask),
# ROUNDS, OUT (folder for the raw rows; default a new temporary folder).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
XTASK=${XTASK:-target/release/xtask}
OUT=${OUT:-$(mktemp -d)}
bench=crates/scal-backbone/benches/pytorch_resnet50.py
lib=/usr/lib/x86_64-linux-gnu
jemalloc=$lib/libjemalloc.so.2 mimalloc=$lib/libmimalloc.so.2
for f in "$jemalloc" "$mimalloc" "$XTASK"; do
  [ -e "$f" ] || { echo "error: $f is missing (see the header of $0)" >&2; exit 1; }
done
threads=$(nproc)

# measure NAME PRELOAD COMMAND…: appends the command's JSON rows, tagged with NAME and the
# peak RSS that /usr/bin/time reports, to $OUT/rows.jsonl.
measure() {
  local name=$1 preload=$2
  shift 2
  env ${preload:+LD_PRELOAD=$preload} /usr/bin/time -f "maxrss_kb %M" "$@" >"$OUT/stdout" 2>"$OUT/stderr"
  local rss
  rss=$(awk '/^maxrss_kb/ {print $2}' "$OUT/stderr")
  grep '^{' "$OUT/stdout" | sed "s/^{/{\"program\":\"$name\",\"rss_kb\":$rss,/" >>"$OUT/rows.jsonl"
}

torch=("$PYTHON" "$bench" --threads "$threads" --batch 16 --iters 5 train_bnneck)
burn=("$XTASK" bench --json --measures backbone_train_step --batch 16 --warmup 1 --iterations 3)
echo "== CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(date -u +%FT%TZ); rows in $OUT"
for round in $(seq 1 "${ROUNDS:-2}"); do
  echo "-- round $round"
  measure pytorch "" "${torch[@]}"
  measure burn-glibc "" "${burn[@]}"
  measure burn-jemalloc "$jemalloc" "${burn[@]}"
  measure burn-mimalloc "$mimalloc" "${burn[@]}"
  measure pytorch-jemalloc "$jemalloc" "${torch[@]}"
done
"$PYTHON" - "$OUT/rows.jsonl" <<'PY'
import collections, json, statistics, sys
by = collections.defaultdict(list)
for line in open(sys.argv[1]):
    r = json.loads(line)
    by[r["program"]].append((r.get("throughput") or r.get("img_per_s"), r["rss_kb"] / 1024))
for program, rows in by.items():
    rates = [rate for rate, _ in rows]
    print(f"{program:17s} {statistics.mean(rates):6.3f} img/s  rounds {[round(r, 2) for r in rates]}"
          f"  peak RSS {max(m for _, m in rows):,.0f} MiB")
PY
