#!/usr/bin/env python3
"""Is SCAL's reward predictable from what each critic reads? An offline probe.

    cargo xtask critic-data runs/<name> --out /tmp/critic --batches 80
    python scripts/critic-probe.py /tmp/critic

For each module l, fits the reward R = R_c + R_a from the critic's own inputs
(`inputs_l.npy`, what V_l reads: the feature summary and the attention map) with a linear
model (ridge) and a small MLP (one hidden layer of 256), scored on held-out samples (5-fold
cross-validation), and compares them with the critic itself (`values_l.npy`, V_l on the same
samples). R^2 is 1 - mean squared error / variance of R: 0 is what predicting the mean
gives, 1 a perfect prediction. Also the AUC of a logistic probe for R_c and R_a apart.

If the probes find signal the critic misses, the critic's training is at fault; if they find
none either, the reward carries no signal the critic could learn from its inputs.
Needs numpy and scikit-learn.
"""
import argparse
import os

import numpy as np
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.neural_network import MLPRegressor
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def r2(pred, y):
    return 1.0 - np.mean((pred - y) ** 2) / np.var(y)


def auc(x, y, folds):
    if y.min() == y.max():
        return float("nan")
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    p = cross_val_predict(model, x, y, cv=folds, method="predict_proba")[:, 1]
    return roc_auc_score(y, p)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    load = lambda name: np.load(os.path.join(args.dir, name))
    rc, ra = load("correct.npy"), load("amelioration.npy")
    r = rc + ra
    n = len(r)
    counts = [int((r == k).sum()) for k in range(3)]
    print(f"{n} samples; R = 0/1/2: {counts}; R_c rate {rc.mean():.3f}, R_a rate {ra.mean():.3f}, "
          f"var(R) {np.var(r):.3f}")
    folds = KFold(5, shuffle=True, random_state=args.seed)
    print("| module | inputs | critic R^2 | critic mean V at R=0/1/2 | ridge R^2 | MLP R^2 | AUC R_c | AUC R_a |")
    print("|---|---|---|---|---|---|---|---|")
    l = 0
    while os.path.exists(os.path.join(args.dir, f"inputs_{l}.npy")):
        x = load(f"inputs_{l}.npy").astype(np.float64)
        v = load(f"values_{l}.npy").astype(np.float64)
        means = "/".join(f"{v[r == k].mean():.2f}" if (r == k).any() else "–" for k in range(3))
        ridge = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13)))
        mlp = make_pipeline(
            StandardScaler(),
            MLPRegressor(hidden_layer_sizes=(256,), alpha=1e-2, early_stopping=True, max_iter=500,
                         random_state=args.seed),
        )
        ridge_r2 = r2(cross_val_predict(ridge, x, r, cv=folds), r)
        mlp_r2 = r2(cross_val_predict(mlp, x, r, cv=folds), r)
        print(f"| {l} | {x.shape[1]} | {r2(v, r):+.3f} | {means} | {ridge_r2:+.3f} | {mlp_r2:+.3f} "
              f"| {auc(x, rc, folds):.3f} | {auc(x, ra, folds):.3f} |")
        l += 1


if __name__ == "__main__":
    main()
