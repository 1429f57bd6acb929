#!/usr/bin/env python3
"""Is SCAL's reward predictable from what each critic reads, or could read? An offline probe.

    cargo xtask critic-data runs/<name> --out /tmp/critic --batches 80
    python scripts/critic-probe.py /tmp/critic [/tmp/critic-of-another-run ...] [--json out.json]

For each module l and each input set, fits each target with a linear model (ridge, or a
logistic regression for the binary ones) and, on the critic's inputs (`--mlp`), a small MLP
(one hidden layer of 256), scored on held-out samples (5-fold cross-validation). Input sets:

- `critic`: what V_l reads (`inputs_l.npy`: the feature summary and the attention map);
- `pooled`: what a critic could read instead (`pooled_l.npy`: X_l and X_l * A_l averaged on a
  4 x 2 grid), keeping where things are in the picture (`--inputs critic` skips them: they
  take most of the time).

Targets: the reward R = R_c + R_a (R^2), R_c and R_a (AUC), the module's own amelioration
R_a^l (`amelioration_l.npy`, AUC: did module l raise the true class's probability) and its
realised gain (`gain_l.npy`, R^2: that probability with module l against without it). The
critic itself is scored on R and on its module's own reward R_c + R_a^l (`values_l.npy`, V_l
on the same samples). R^2 is 1 - mean squared error / variance: 0 is what predicting the
mean gives. An AUC of 0.5 is chance.

If the probes find signal the critic misses, the critic's training is at fault; if they find
none either, the target carries no signal a critic could learn from those inputs. With
several folders (the runs of several seeds), each is probed apart and the table gives the
mean and the range over them. Needs numpy and scikit-learn.
"""
import argparse
import json
import os

import numpy as np
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def r2(pred, y):
    return 1.0 - np.mean((pred - y) ** 2) / np.var(y) if np.var(y) > 0 else float("nan")


def held_out_r2(x, y, folds, seed, mlp_too):
    if np.var(y) == 0:
        return float("nan"), float("nan")
    ridge = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13)))
    mlp = make_pipeline(
        StandardScaler(),
        MLPRegressor(hidden_layer_sizes=(256,), alpha=1e-2, early_stopping=True, max_iter=500,
                     random_state=seed),
    )
    linear = r2(cross_val_predict(ridge, x, y, cv=folds), y)
    return linear, r2(cross_val_predict(mlp, x, y, cv=folds), y) if mlp_too else float("nan")


def held_out_auc(x, y, folds, seed, mlp_too):
    if y.min() == y.max() or min((y == 0).sum(), (y == 1).sum()) < folds.n_splits:
        return float("nan"), float("nan")
    linear = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    mlp = make_pipeline(
        StandardScaler(),
        MLPClassifier(hidden_layer_sizes=(256,), alpha=1e-2, early_stopping=True, max_iter=500,
                      random_state=seed),
    )
    score = lambda m: roc_auc_score(y, cross_val_predict(m, x, y, cv=folds,
                                                         method="predict_proba")[:, 1])
    return score(linear), score(mlp) if mlp_too else float("nan")


def probe_folder(folder, seed, mlp_on, input_sets=("critic", "pooled")):
    """Rows {module, inputs, target, measure, linear, mlp[, mean_v]} of one critic-data folder;
    the critic's rows also give its mean V at targets 0 / 1 / 2 (`mean_v`)."""
    load = lambda name: np.load(os.path.join(folder, name))
    rc, ra = load("correct.npy").astype(np.float64), load("amelioration.npy").astype(np.float64)
    r = rc + ra
    folds = KFold(5, shuffle=True, random_state=seed)
    rows = []
    l = 0
    while os.path.exists(os.path.join(folder, f"inputs_{l}.npy")):
        v = load(f"values_{l}.npy").astype(np.float64)
        mean_v = lambda t: [float(v[t == k].mean()) if (t == k).any() else float("nan")
                            for k in range(3)]
        rows.append(dict(module=l, inputs="critic's V_l", target="R", measure="R^2",
                         linear=r2(v, r), mlp=float("nan"), mean_v=mean_v(r)))
        targets = [("R", "R^2", r), ("R_c", "AUC", rc), ("R_a", "AUC", ra)]
        if os.path.exists(os.path.join(folder, f"gain_{l}.npy")):
            gain = load(f"gain_{l}.npy").astype(np.float64)
            targets += [("R_a^l", "AUC", (gain > 0).astype(np.float64)),
                        ("gain_l", "R^2", gain)]
            # What a per-module critic (step.critic_target = per-module) is taught.
            own = rc + (gain > 0)
            rows.append(dict(module=l, inputs="critic's V_l", target="R_c + R_a^l",
                             measure="R^2", linear=r2(v, own), mlp=float("nan"),
                             mean_v=mean_v(own)))
        for inputs in input_sets:
            path = os.path.join(folder, f"{'inputs' if inputs == 'critic' else 'pooled'}_{l}.npy")
            if not os.path.exists(path):
                continue
            x = np.load(path).astype(np.float64)
            for name, measure, y in targets:
                fit = held_out_r2 if measure == "R^2" else held_out_auc
                linear, mlp = fit(x, y, folds, seed, mlp_on in ("all", inputs))
                rows.append(dict(module=l, inputs=f"{inputs} ({x.shape[1]})", target=name,
                                 measure=measure, linear=linear, mlp=mlp))
        l += 1
    summary = dict(samples=len(r), rewards=[int((r == k).sum()) for k in range(3)],
                   rc_rate=rc.mean(), ra_rate=ra.mean())
    return summary, rows


def cell(values):
    values = [v for v in values if not np.isnan(v)]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:+.3f}"
    return f"{np.mean(values):+.3f} [{min(values):+.3f}, {max(values):+.3f}]"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", help="critic-data output folders (one per run)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write every folder's rows to this file")
    parser.add_argument("--mlp", choices=["critic", "pooled", "all", "none"], default="critic",
                        help="which input sets the MLP probes too (default: the critic's; on "
                             "the pooled inputs, thousands of features wide, it takes hours)")
    parser.add_argument("--inputs", choices=["critic", "pooled", "all"], default="all",
                        help="which input sets to probe (default: both; the pooled ones take "
                             "most of the time)")
    args = parser.parse_args()
    input_sets = ("critic", "pooled") if args.inputs == "all" else (args.inputs,)
    results = {}
    for folder in args.dirs:
        summary, rows = probe_folder(folder, args.seed, args.mlp, input_sets)
        results[folder] = dict(summary=summary, rows=rows)
        print(f"{folder}: {summary['samples']} samples; R = 0/1/2: {summary['rewards']}; "
              f"R_c rate {summary['rc_rate']:.3f}, R_a rate {summary['ra_rate']:.3f}")
    keys = []
    for folder in args.dirs:
        for row in results[folder]["rows"]:
            key = (row["module"], row["inputs"], row["target"], row["measure"])
            if key not in keys:
                keys.append(key)
    runs = f" (mean [min, max] over {len(args.dirs)} runs)" if len(args.dirs) > 1 else ""
    print(f"\nheld-out scores{runs}; R^2: 0 = the mean's, AUC: 0.5 = chance\n")
    print("| module | inputs | target | measure | linear | MLP | critic's mean V at target 0 / 1 / 2 |")
    print("|---|---|---|---|---|---|---|")
    for key in keys:
        found = [row for folder in args.dirs for row in results[folder]["rows"]
                 if (row["module"], row["inputs"], row["target"], row["measure"]) == key]
        means = ""
        if all("mean_v" in f for f in found):
            levels = np.nanmean([f["mean_v"] for f in found], axis=0) if found else []
            means = " / ".join("–" if np.isnan(m) else f"{m:.2f}" for m in levels)
        print(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {cell([f['linear'] for f in found])} "
              f"| {cell([f['mlp'] for f in found])} | {means} |")
    if args.json:
        with open(args.json, "w") as f:
            # NaN (a target with one class) is written as null: JSON has no NaN.
            clean = lambda v: None if isinstance(v, float) and np.isnan(v) else v
            tidy = lambda x: [clean(m) for m in x] if isinstance(x, list) else clean(x)
            rows = {k: dict(summary=r["summary"], rows=[{c: tidy(x) for c, x in row.items()}
                                                          for row in r["rows"]])
                    for k, r in results.items()}
            json.dump(rows, f, indent=1, default=float)


if __name__ == "__main__":
    main()
