#!/usr/bin/env python3
"""ONNX Runtime on an exported SCAL model against the toolkit's own features.

    python scripts/onnx-check.py scal.onnx INPUTS.npy EXPECTED.npy [--rtol 1e-4]

INPUTS.npy: float32 [N, 3, H, W], the normalised images (RGB / 255, minus ImageNet's mean,
over its std) that produced EXPECTED.npy, float32 [N, D] (`cargo xtask extract --checkpoint`
on the same images). Runs the model with ONNX Runtime's CPU provider (all graph optimisations
on, as a deployment would), and compares row by row: the relative error of a row is
||onnx - expected|| / ||expected||. Prints the worst row and the largest absolute difference;
exits 1 when the worst relative error exceeds --rtol, 2 when the shapes disagree.

Needs `onnxruntime` and `numpy` (PyPI). xtask's test `onnx_export_matches_extract` runs it
for channel, spatial and no-attention models (CI sets SCAL_ONNX_PYTHON to a Python that has
them).
"""
import argparse
import sys

import numpy as np
import onnxruntime as ort


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("inputs")
    parser.add_argument("expected")
    parser.add_argument("--rtol", type=float, default=1e-4)
    args = parser.parse_args()

    images = np.load(args.inputs).astype(np.float32)
    expected = np.load(args.expected).astype(np.float32)
    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    (model_input,) = session.get_inputs()
    (model_output,) = session.get_outputs()
    print(f"{args.model}: input {model_input.name} {model_input.shape}, "
          f"output {model_output.name} {model_output.shape}")
    (features,) = session.run(None, {model_input.name: images})
    if features.shape != expected.shape:
        print(f"shape mismatch: onnx {features.shape}, expected {expected.shape}")
        return 2
    difference = np.linalg.norm(features - expected, axis=1)
    relative = difference / np.maximum(np.linalg.norm(expected, axis=1), 1e-12)
    worst = int(np.argmax(relative))
    print(f"{len(features)} rows of {features.shape[1]}: worst relative error "
          f"{relative[worst]:.3e} (row {worst}), largest absolute difference "
          f"{np.abs(features - expected).max():.3e}, tolerance {args.rtol:.0e}")
    return 0 if relative[worst] <= args.rtol else 1


if __name__ == "__main__":
    sys.exit(main())
