#!/usr/bin/env python3
"""Approximate nearest-neighbour peers on a gallery (issue 39): faiss-cpu's HNSW and IVF and
hnswlib, the engines a user would reach for, measured the same way on the same features.

Reads a features folder as `scripts/msmt17-size-features.py` writes it (query.npy [Q, D] and
gallery.npy [G, D] float32; q_pids.npy, g_pids.npy int64). For each engine, in a fresh
subprocess of this script:

- build: the index over the whole gallery with --threads threads (default: all cores), L2
  metric; build_s is its wall time (for IVF: the k-means training plus the adds).
  faiss-hnsw is IndexHNSWFlat and hnswlib is Index('l2'), both M=32, efConstruction=200;
  faiss-ivf is IndexIVFFlat with nlist = 4*sqrt(G) rounded to a power of two, trained on a
  seeded random 10% of the gallery.
- memory_mb: the growth of the process's peak resident set (VmHWM of /proc/self/status) over
  the build, read after the features are loaded and the library imported; it counts the
  index's own copy of the vectors.
- index_bytes: the size of the index written to a temporary file (faiss.write_index,
  hnswlib's save_index).
- search: each query alone (a batch of 1, as one user's query), top-10, timed with
  time.perf_counter around the library call; p50_ms and p99_ms over the queries (after 10
  untimed warm-up queries), for a sweep of the search parameter: efSearch / ef 64, 128, 256,
  512 (HNSW), nprobe 8, 16, 32, 64, 128 (IVF).
- recall_at_10: mean over queries of |approximate top-10 & exact top-10| / 10. The exact
  top-10 is computed here with numpy (squared L2 as |q|^2 + |g|^2 - 2 q.g in chunks of
  queries, the 20 best of each row re-scored directly) and cached in DIR/exact-top10.npy
  (int64 [Q, 10]), so it is computed once. The exact search is also a row of the table
  (engine "exact", numpy's batched search, its time per query as p50_ms), with its Rank-1
  (the share of queries whose nearest gallery image has the query's pid, no filtering): how
  hard the data is.

Each (engine, parameter) is one JSON line in --json OUT.jsonl (engine, version, params, n,
dim, threads, build_s, memory_mb, index_bytes, recall_at_10, p50_ms, p99_ms, queries), written
as each engine finishes; a markdown table is printed at the end. numpy, faiss-cpu and hnswlib
only (pip install faiss-cpu hnswlib).

    python3 scripts/msmt17-size-features.py /tmp/ann-100k --dim 512 --queries 1000 \\
        --gallery 100000 --ids 20000 --cameras 15
    python3 scripts/ann-peers.py /tmp/ann-100k --engines faiss-hnsw,faiss-ivf,hnswlib \\
        --json /tmp/ann-100k.jsonl [--threads 2] [--queries 1000]
"""
import argparse
import importlib.metadata
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ENGINES = ("faiss-hnsw", "faiss-ivf", "hnswlib")
K = 10
WARMUP = 10
EXACT_CHUNK = 256
EXACT_FILE = "exact-top10.npy"


class InputError(Exception):
    """Bad or missing input, reported with the file it concerns."""


def parse_list(text, flag):
    try:
        values = [int(v) for v in text.split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{flag}: expected comma-separated integers, got {text!r}")
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{flag}: expected positive integers, got {text!r}")
    return values


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", help="features folder (query.npy, gallery.npy, *_pids.npy)")
    parser.add_argument("--table", metavar="RESULTS.jsonl",
                        help="only print the markdown table of a JSON-lines file (this script's and "
                             "tools/ann-engines' rows) and exit")
    parser.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated, of {', '.join(ENGINES)}")
    parser.add_argument("--json", dest="out", help="JSON-lines output, one line per (engine, parameter)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="build threads (default: all cores)")
    parser.add_argument("--queries", type=int, help="use the first N queries (default: all)")
    parser.add_argument("--m", type=int, default=32, help="HNSW M (default 32)")
    parser.add_argument("--ef-construction", type=int, default=200, help="HNSW efConstruction (default 200)")
    parser.add_argument("--ef", type=lambda t: parse_list(t, "--ef"), default=[64, 128, 256, 512],
                        help="HNSW efSearch / ef sweep (default 64,128,256,512)")
    parser.add_argument("--nprobe", type=lambda t: parse_list(t, "--nprobe"), default=[8, 16, 32, 64, 128],
                        help="IVF nprobe sweep (default 8,16,32,64,128)")
    parser.add_argument("--seed", type=int, default=39, help="seed of the IVF training sample (default 39)")
    parser.add_argument("--worker", choices=ENGINES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.table is None and args.folder is None:
        parser.error("a features folder is needed (or --table RESULTS.jsonl)")
    args.engines = [e for e in args.engines.split(",") if e]
    unknown = [e for e in args.engines if e not in ENGINES]
    if unknown or not args.engines:
        parser.error(f"--engines: unknown {unknown}; choose from {', '.join(ENGINES)}")
    if args.threads < 1 or (args.queries is not None and args.queries < 1):
        parser.error("--threads and --queries must be at least 1")
    return args


def load(folder, name, dtype, ndim):
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        raise InputError(f"{path}: missing")
    try:
        array = np.load(path)
    except (ValueError, OSError) as err:
        raise InputError(f"{path}: not a .npy array ({err})")
    if array.dtype != dtype or array.ndim != ndim:
        raise InputError(f"{path}: expected {np.dtype(dtype)} with {ndim} dimensions, got {array.dtype} {array.shape}")
    return np.ascontiguousarray(array)


def load_features(folder, limit):
    """(queries [N, D], gallery [G, D]) float32, the first `limit` queries."""
    queries = load(folder, "query.npy", np.float32, 2)
    gallery = load(folder, "gallery.npy", np.float32, 2)
    if queries.shape[1] != gallery.shape[1]:
        raise InputError(f"{folder}: query.npy is {queries.shape[1]}-d but gallery.npy is {gallery.shape[1]}-d")
    if gallery.shape[0] < K:
        raise InputError(f"{folder}/gallery.npy: {gallery.shape[0]} images, fewer than k = {K}")
    if limit is not None:
        queries = queries[:limit]
    return queries, gallery


def exact_chunk(queries, gallery, g_norms):
    """Exact top-K of a chunk of queries, nearest first.

    # Shapes
    queries [B, D], gallery [G, D], g_norms [G] -> [B, K] int64
    """
    dist = g_norms[None, :] - 2.0 * (queries @ gallery.T)  # |q|^2 is constant per row
    wide = min(2 * K, gallery.shape[0])
    cand = np.argpartition(dist, wide - 1, axis=1)[:, :wide]
    diff = gallery[cand] - queries[:, None, :]  # [B, wide, D], re-scored directly
    rescored = np.einsum("bwd,bwd->bw", diff, diff)
    order = np.argsort(rescored, axis=1, kind="stable")[:, :K]
    return np.take_along_axis(cand, order, axis=1).astype(np.int64)


def exact_top10(queries, gallery):
    """(top-K [Q, K] int64, seconds per query of the batched search)."""
    g_norms = np.einsum("gd,gd->g", gallery, gallery)
    out = np.empty((queries.shape[0], K), dtype=np.int64)
    start = time.perf_counter()
    for lo in range(0, queries.shape[0], EXACT_CHUNK):
        out[lo:lo + EXACT_CHUNK] = exact_chunk(queries[lo:lo + EXACT_CHUNK], gallery, g_norms)
    return out, (time.perf_counter() - start) / max(queries.shape[0], 1)


def exact_reference(folder, queries_all, gallery):
    """The cached exact top-K of every query (computed and saved if absent), and the batched
    search's seconds per query (timed on one chunk when the cache already exists)."""
    path = os.path.join(folder, EXACT_FILE)
    if os.path.isfile(path):
        top = np.load(path)
        if top.shape == (queries_all.shape[0], K) and top.dtype == np.int64 and top.max() < gallery.shape[0]:
            _, per_query = exact_top10(queries_all[:EXACT_CHUNK], gallery)
            return top, per_query
        print(f"{path}: stale (shape {top.shape}), recomputing", file=sys.stderr)
    top, per_query = exact_top10(queries_all, gallery)
    tmp = path + ".tmp.npy"
    np.save(tmp, top)
    os.replace(tmp, path)
    return top, per_query


def vm_hwm_kib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("/proc/self/status has no VmHWM")


def nlist_for(n):
    """4 * sqrt(n) rounded to the nearest power of two."""
    return 2 ** max(0, round(math.log2(4 * math.sqrt(n))))


def build_faiss_hnsw(faiss, gallery, args):
    index = faiss.IndexHNSWFlat(gallery.shape[1], args.m, faiss.METRIC_L2)
    index.hnsw.efConstruction = args.ef_construction
    index.add(gallery)
    return index, {"M": args.m, "efConstruction": args.ef_construction}


def build_faiss_ivf(faiss, gallery, args):
    n, dim = gallery.shape
    nlist = nlist_for(n)
    sample = np.random.default_rng(args.seed).choice(n, size=max(nlist, n // 10), replace=False)
    quantizer = faiss.IndexFlatL2(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_L2)
    index.train(np.ascontiguousarray(gallery[np.sort(sample)]))
    index.add(gallery)
    return index, {"nlist": nlist, "train": int(sample.size)}


def build_hnswlib(hnswlib, gallery, args):
    index = hnswlib.Index(space="l2", dim=gallery.shape[1])
    index.init_index(max_elements=gallery.shape[0], ef_construction=args.ef_construction, M=args.m, random_seed=100)
    index.set_num_threads(args.threads)
    index.add_items(gallery, np.arange(gallery.shape[0]))
    return index, {"M": args.m, "efConstruction": args.ef_construction}


def engine_parts(name, args):
    """(library module, version, build function, [(param name, value)], set-param, search, save)."""
    if name.startswith("faiss"):
        import faiss

        faiss.omp_set_num_threads(args.threads)
        build = build_faiss_hnsw if name == "faiss-hnsw" else build_faiss_ivf
        if name == "faiss-hnsw":
            sweep = [("efSearch", v) for v in args.ef]
            setter = lambda index, v: setattr(index.hnsw, "efSearch", v)  # noqa: E731
        else:
            sweep = [("nprobe", v) for v in args.nprobe]
            setter = lambda index, v: setattr(index, "nprobe", v)  # noqa: E731
        search = lambda index, q: index.search(q, K)[1][0]  # noqa: E731
        save = lambda index, path: faiss.write_index(index, path)  # noqa: E731
        return faiss, faiss.__version__, build, sweep, setter, search, save
    import hnswlib

    sweep = [("ef", v) for v in args.ef]
    setter = lambda index, v: index.set_ef(v)  # noqa: E731
    search = lambda index, q: index.knn_query(q, k=K)[0][0]  # noqa: E731
    save = lambda index, path: index.save_index(path)  # noqa: E731
    return hnswlib, importlib.metadata.version("hnswlib"), build_hnswlib, sweep, setter, search, save


def time_queries(index, queries, exact, search):
    """(recall@K, p50 ms, p99 ms) of searching each query alone."""
    for i in range(min(WARMUP, queries.shape[0])):
        search(index, queries[i:i + 1])
    times = np.empty(queries.shape[0])
    hits = 0
    for i in range(queries.shape[0]):
        q = queries[i:i + 1]
        start = time.perf_counter()
        found = search(index, q)
        times[i] = time.perf_counter() - start
        hits += len(set(found.tolist()) & set(exact[i].tolist()))
    ms = times * 1e3
    return hits / (K * queries.shape[0]), float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def run_worker(args):
    """One engine: build, measure, sweep; JSON lines on stdout."""
    queries, gallery = load_features(args.folder, args.queries)
    exact = np.load(os.path.join(args.folder, EXACT_FILE))[: queries.shape[0]]
    lib, version, build, sweep, setter, search, save = engine_parts(args.worker, args)
    before = vm_hwm_kib()
    start = time.perf_counter()
    index, params = build(lib, gallery, args)
    build_s = time.perf_counter() - start
    memory_mb = (vm_hwm_kib() - before) / 1024
    print(f"{args.worker}: built in {build_s:.1f} s, peak RSS +{memory_mb:.0f} MB", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="ann-peers-") as tmp:
        path = os.path.join(tmp, "index.bin")
        save(index, path)
        index_bytes = os.path.getsize(path)
    for name, value in sweep:
        setter(index, value)
        recall, p50, p99 = time_queries(index, queries, exact, search)
        row = {
            "engine": args.worker, "version": version, "params": {**params, name: value},
            "n": int(gallery.shape[0]), "dim": int(gallery.shape[1]), "threads": args.threads,
            "build_s": round(build_s, 3), "memory_mb": round(memory_mb, 1), "index_bytes": index_bytes,
            "recall_at_10": round(recall, 4), "p50_ms": round(p50, 4), "p99_ms": round(p99, 4),
            "queries": int(queries.shape[0]),
        }
        print(json.dumps(row), flush=True)
        print(f"  {name}={value}: recall@10 {recall:.3f}, p50 {p50:.3f} ms, p99 {p99:.3f} ms",
              file=sys.stderr, flush=True)


def exact_row(args, queries, gallery, exact, per_query_s):
    """The exact search's row, with its Rank-1 (top-1 shares the query's pid)."""
    q_pids = load(args.folder, "q_pids.npy", np.int64, 1)[: queries.shape[0]]
    g_pids = load(args.folder, "g_pids.npy", np.int64, 1)
    if q_pids.shape[0] != queries.shape[0] or g_pids.shape[0] != gallery.shape[0]:
        raise InputError(f"{args.folder}: q_pids.npy/g_pids.npy lengths differ from query.npy/gallery.npy")
    rank1 = float(np.mean(g_pids[exact[:, 0]] == q_pids))
    return {
        "engine": "exact", "version": f"numpy {np.__version__}", "params": {"batch": EXACT_CHUNK},
        "n": int(gallery.shape[0]), "dim": int(gallery.shape[1]), "threads": args.threads,
        "build_s": 0.0, "memory_mb": None, "index_bytes": int(gallery.nbytes),
        "recall_at_10": 1.0, "p50_ms": round(per_query_s * 1e3, 4), "p99_ms": None,
        "queries": int(queries.shape[0]), "rank1": round(rank1, 4),
    }


def run_engine(args, engine):
    """The rows of one engine, from a fresh subprocess (so its peak RSS is its own)."""
    cmd = [sys.executable, os.path.abspath(__file__), args.folder, "--worker", engine,
           "--threads", str(args.threads), "--m", str(args.m), "--ef-construction", str(args.ef_construction),
           "--ef", ",".join(map(str, args.ef)), "--nprobe", ",".join(map(str, args.nprobe)),
           "--seed", str(args.seed)]
    if args.queries is not None:
        cmd += ["--queries", str(args.queries)]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0:
        print(f"{engine}: worker failed (exit {done.returncode}); its rows so far are kept", file=sys.stderr)
    return rows, done.returncode


def fmt(value, spec):
    return "-" if value is None else format(value, spec)


def read_rows(path):
    """The JSON lines of a results file, each checked for the table's fields."""
    try:
        with open(path) as f:
            lines = [(n, line) for n, line in enumerate(f, 1) if line.strip()]
    except OSError as err:
        raise InputError(f"{path}: {err}")
    rows = []
    for n, line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{path}:{n}: not JSON ({err})")
        missing = [k for k in TABLE_FIELDS if not isinstance(row, dict) or k not in row]
        if missing:
            raise InputError(f"{path}:{n}: missing {', '.join(missing)}")
        rows.append(row)
    return rows


TABLE_FIELDS = ("engine", "version", "params", "build_s", "memory_mb", "index_bytes", "recall_at_10",
                "p50_ms", "p99_ms")


def print_table(rows):
    print("| engine | params | build s | memory MB | index MB | recall@10 | p50 ms | p99 ms |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        params = ", ".join(f"{k} {v}" for k, v in r["params"].items())
        print(f"| {r['engine']} {r['version']} | {params} | {fmt(r['build_s'], '.1f')} | "
              f"{fmt(r['memory_mb'], '.0f')} | {r['index_bytes'] / 2**20:.0f} | {r['recall_at_10']:.3f} | "
              f"{fmt(r['p50_ms'], '.3f')} | {fmt(r['p99_ms'], '.3f')} |")


def run_main(args):
    queries_all, gallery = load_features(args.folder, None)
    exact_all, per_query_s = exact_reference(args.folder, queries_all, gallery)
    queries = queries_all[: args.queries]
    row = exact_row(args, queries, gallery, exact_all[: queries.shape[0]], per_query_s)
    print(f"exact: Rank-1 {row['rank1']:.3f} (top-1 shares the query's pid), "
          f"batched search {row['p50_ms']:.3f} ms per query", file=sys.stderr, flush=True)
    del gallery, queries, queries_all
    rows, failed = [row], False
    out = open(args.out, "w") if args.out else None
    try:
        if out:
            out.write(json.dumps(row) + "\n")
            out.flush()
        for engine in args.engines:
            new, code = run_engine(args, engine)
            failed |= code != 0
            rows += new
            if out:
                out.writelines(json.dumps(r) + "\n" for r in new)
                out.flush()
    finally:
        if out:
            out.close()
    print_table(rows)
    return 1 if failed else 0


def main(argv=None):
    args = parse_args(argv)
    try:
        if args.worker:
            run_worker(args)
            return 0
        if args.table:
            print_table(read_rows(args.table))
            return 0
        return run_main(args)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ImportError as err:
        print(f"error: {err} (pip install faiss-cpu hnswlib)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
