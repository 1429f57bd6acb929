#!/usr/bin/env bash
# Builds the scal_eval wheel, installs it in a fresh virtual environment and runs its pytest
# suite against torchreid 0.2.5's own evaluation code (from its sdist; torch is not needed).
# Run from anywhere; everything goes under target/python.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=target/python
rm -rf "$out/build-env" "$out/test-env" "$out/wheels"
mkdir -p "$out"
python3 -m venv "$out/build-env"
"$out/build-env/bin/pip" install -q "maturin>=1.5,<2"
"$out/build-env/bin/maturin" build --release --locked -m crates/scal-eval-py/Cargo.toml -o "$out/wheels"
python3 -m venv "$out/test-env"
"$out/test-env/bin/pip" install -q "$out"/wheels/scal_eval-*.whl pytest
if [ ! -d "$out/torchreid-0.2.5" ]; then
  "$out/test-env/bin/pip" download -q torchreid==0.2.5 --no-deps --no-binary :all: -d "$out"
  tar xzf "$out/torchreid-0.2.5.tar.gz" -C "$out"
fi
TORCHREID_SRC="$out/torchreid-0.2.5" "$out/test-env/bin/python" -m pytest -q crates/scal-eval-py/python/tests
