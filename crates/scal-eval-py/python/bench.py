"""Times scal_eval against torchreid 0.2.5's evaluate_rank (its Python path: the PyPI sdist
ships no Cython source) and re_ranking on the same Market-1501-sized arrays, in one process.
A benchmark, not a test: prints one JSON line per measure.

    crates/scal-eval-py/ci.sh      # builds and installs the wheel in target/python/test-env
    TORCHREID_SRC=target/python/torchreid-0.2.5 target/python/test-env/bin/python \
        crates/scal-eval-py/python/bench.py [--queries 3368 --gallery 15913]

Peak memory is the process's peak resident set after each step (scal_eval runs first, so
its numbers are not inflated by torchreid's).
"""
import argparse
import importlib.util
import json
import os
import resource
import time

import numpy as np

import scal_eval


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(label, implementation, f):
    start = time.perf_counter()
    out = f()
    seconds = time.perf_counter() - start
    print(json.dumps({"measure": label, "implementation": implementation, "seconds": round(seconds, 3),
                      "peak_rss_mib": round(peak_mib())}), flush=True)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=3368)
    parser.add_argument("--gallery", type=int, default=15913)
    parser.add_argument("--ids", type=int, default=750)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--skip-torchreid-rerank", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(args.ids + 1, args.dim)).astype(np.float32)
    q_pids = rng.integers(1, args.ids + 1, size=args.queries)
    g_pids = rng.integers(0, args.ids + 1, size=args.gallery)
    q_cams, g_cams = rng.integers(0, 6, size=args.queries), rng.integers(0, 6, size=args.gallery)
    qf = centres[q_pids] + rng.normal(scale=1.0, size=(args.queries, args.dim)).astype(np.float32)
    gf = centres[g_pids] + rng.normal(scale=1.0, size=(args.gallery, args.dim)).astype(np.float32)
    ids = (q_pids, g_pids, q_cams, g_cams)

    root = os.path.join(os.environ["TORCHREID_SRC"], "torchreid", "reid")
    rank = load(os.path.join(root, "metrics", "rank.py"), "torchreid_rank")
    rerank = load(os.path.join(root, "utils", "rerank.py"), "torchreid_rerank")

    qg = timed("distance q x g (squared Euclidean)", "scal_eval", lambda: scal_eval.pairwise_distance(qf, gf))
    qq = scal_eval.pairwise_distance(qf, qf)
    gg = scal_eval.pairwise_distance(gf, gf)
    ours = timed("evaluate_rank", "scal_eval", lambda: scal_eval.evaluate_rank(qg, *ids))
    ours_rr = timed("re_ranking", "scal_eval", lambda: scal_eval.re_ranking(qg, qq, gg))
    theirs = timed("evaluate_rank", "torchreid 0.2.5 (Python)",
                   lambda: rank.evaluate_rank(qg, *ids, max_rank=50, use_cython=False))
    print(json.dumps({"check": "evaluate_rank", "mAP_scal_eval": ours[1], "mAP_torchreid": float(theirs[1]),
                      "max_cmc_difference": float(np.max(np.abs(ours[0] - theirs[0])))}), flush=True)
    if not args.skip_torchreid_rerank:
        theirs_rr = timed("re_ranking", "torchreid 0.2.5", lambda: rerank.re_ranking(qg, qq, gg, k1=20, k2=6, lambda_value=0.3))
        print(json.dumps({"check": "re_ranking", "max_abs_difference": float(np.max(np.abs(ours_rr - theirs_rr)))}), flush=True)


if __name__ == "__main__":
    main()
