#!/usr/bin/env bash
# Issue 39: every approximate nearest-neighbour engine on one features folder, in one run, one
# after another (never two at once): the exact reference and the peers a user would reach for
# (scripts/ann-peers.py: faiss-cpu HNSW and IVF, hnswlib), then the embeddable Rust engines
# (tools/ann-engines: usearch f32/f16/i8, hnsw_rs, qdrant-edge). All rows go to one JSON-lines
# file; its markdown table is printed at the end, after the machine's CPU and the date.
# Run it on a quiet machine: pause anything in the background first (a busy core moves
# faiss's and hnswlib's OpenMP threads far more than the Rust engines').
#
# usage: scripts/ann-side-by-side.sh DIR OUT.jsonl
# Environment: PYTHON (python3 with numpy, faiss-cpu, hnswlib), ANN_ENGINES (the built
# tools/ann-engines binary; default /work/ann-target/release/ann-engines or
# tools/ann-engines/target/release/ann-engines), THREADS (2), EF (32,64,128,256,512,1024),
# NPROBE (8,16,32,64,128,256), RUST_ENGINES (usearch,usearch-f16,usearch-i8,hnsw_rs,qdrant-edge),
# PEERS (faiss-hnsw,faiss-ivf,hnswlib).
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 DIR OUT.jsonl" >&2; exit 2; }
dir=$1 out=$2
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
THREADS=${THREADS:-2}
EF=${EF:-32,64,128,256,512,1024}
NPROBE=${NPROBE:-8,16,32,64,128,256}
PEERS=${PEERS:-faiss-hnsw,faiss-ivf,hnswlib}
RUST_ENGINES=${RUST_ENGINES:-usearch,usearch-f16,usearch-i8,hnsw_rs,qdrant-edge}
if [ -z "${ANN_ENGINES:-}" ]; then
  for candidate in /work/ann-target/release/ann-engines tools/ann-engines/target/release/ann-engines; do
    [ -x "$candidate" ] && ANN_ENGINES=$candidate && break
  done
fi
[ -x "${ANN_ENGINES:-}" ] || { echo "error: build tools/ann-engines first (cargo build --release there) or set ANN_ENGINES" >&2; exit 2; }
[ -f "$dir/gallery.npy" ] || { echo "error: $dir/gallery.npy: missing" >&2; exit 2; }

field() { grep -m1 "^$1[[:space:]]*:" /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'; }
avx512=no; grep -qw avx512f /proc/cpuinfo && avx512=yes
echo "machine: $(field 'model name') (family $(field 'cpu family') model $(field model), AVX-512 $avx512), $(nproc) cores; $(date -u +%F)"
"$PYTHON" scripts/ann-peers.py "$dir" --engines "$PEERS" --json "$out" --threads "$THREADS" \
  --ef "$EF" --nprobe "$NPROBE" >/dev/null
IFS=, read -ra engines <<< "$RUST_ENGINES"
for engine in "${engines[@]}"; do
  "$ANN_ENGINES" "$dir" --engine "$engine" --json "$out" --threads "$THREADS" --ef "$EF" >/dev/null \
    || echo "$engine: failed (exit $?); the other rows are kept" >&2
done
"$PYTHON" scripts/ann-peers.py --table "$out"
