"""The installed `scal_eval` wheel against torchreid 0.2.5's own evaluation and re-ranking
(its Python code, loaded from the sdist: `TORCHREID_SRC` names the unpacked folder) and
against the numpy reference fixtures the Rust crate is tested on.

    pip download torchreid==0.2.5 --no-deps && tar xzf torchreid-0.2.5.tar.gz
    TORCHREID_SRC=torchreid-0.2.5 pytest crates/scal-eval-py/python/tests
"""
import importlib.util
import json
import os

import numpy as np
import pytest

import scal_eval

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "..", "..", "scal-eval", "tests", "fixtures")
CASES = sorted(d for d in os.listdir(FIXTURES) if d.startswith("case_"))
# On tied distances torchreid's result depends on numpy's unstable argsort: those cases are
# compared with the stable-order reference (the fixtures) only.
TIED = {c for c in CASES if c.startswith("case_ties")}


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def torchreid():
    src = os.environ.get("TORCHREID_SRC")
    if not src:
        pytest.fail("TORCHREID_SRC must name the unpacked torchreid-0.2.5 sdist")
    root = os.path.join(src, "torchreid", "reid")
    rank = _load(os.path.join(root, "metrics", "rank.py"), "torchreid_rank")
    rerank = _load(os.path.join(root, "utils", "rerank.py"), "torchreid_rerank")
    return rank, rerank


def _case(name):
    folder = os.path.join(FIXTURES, name)
    arrays = {n[:-4]: np.load(os.path.join(folder, n)) for n in os.listdir(folder) if n.endswith(".npy")}
    with open(os.path.join(folder, "expected.json")) as f:
        return arrays, json.load(f)


def _ids(a):
    return a["q_pids"], a["g_pids"], a["q_camids"], a["g_camids"]


@pytest.mark.parametrize("name", CASES)
def test_fixtures_match_the_reference(name):
    a, expected = _case(name)
    cmc, mAP, mINP = scal_eval.evaluate_rank(a["distmat"], *_ids(a), max_rank=50, return_minp=True)
    want = expected["market1501"]
    assert cmc.dtype == np.float32
    np.testing.assert_allclose(cmc, want["cmc"], rtol=0, atol=1e-6)
    assert abs(mAP - want["mAP"]) < 1e-9 and abs(mINP - want["mINP"]) < 1e-9
    cuhk = scal_eval.evaluate_rank(a["distmat"], *_ids(a), max_rank=50, use_metric_cuhk03=True)
    np.testing.assert_allclose(cuhk[0], expected["cuhk03_seed0"]["cmc"], rtol=0, atol=1e-6)
    rr = scal_eval.re_ranking(a["distmat"], a["distmat_qq"], a["distmat_gg"])
    assert rr.dtype == np.float32 and rr.shape == a["distmat"].shape
    np.testing.assert_allclose(rr, a["rerank_distmat"], rtol=0, atol=1e-6)
    rr2 = scal_eval.re_ranking(a["distmat"], a["distmat_qq"], a["distmat_gg"], k1=7, k2=1, lambda_value=0.5)
    np.testing.assert_allclose(rr2, a["rerank_k7_k1_l05_distmat"], rtol=0, atol=1e-6)
    if "query" in a:
        for metric, rust_name in (("euclidean", "l2"), ("cosine", "cosine")):
            d = scal_eval.pairwise_distance(a["query"], a["gallery"], metric=rust_name)
            _, m = scal_eval.evaluate_rank(d, *_ids(a))
            assert abs(m - expected[f"features_{metric}_market1501"]["mAP"]) < 1e-5


def test_torchreid_calls_run_unchanged():
    """torchreid's own calls: `use_cython` by keyword or as the eighth positional argument is
    accepted and ignored; `return_minp` is keyword only, so a ninth positional is refused."""
    a, _ = _case(CASES[0])
    cmc, mAP = scal_eval.evaluate_rank(a["distmat"], *_ids(a), max_rank=50)
    for call in (
        lambda: scal_eval.evaluate_rank(a["distmat"], *_ids(a), max_rank=50, use_cython=False),
        lambda: scal_eval.evaluate_rank(a["distmat"], *_ids(a), 50, False, True),
        lambda: scal_eval.evaluate_rank(a["distmat"], *_ids(a), 50, False, 0),
    ):
        got_cmc, got_map = call()
        np.testing.assert_array_equal(got_cmc, cmc)
        assert got_map == mAP
    with pytest.raises(TypeError):
        scal_eval.evaluate_rank(a["distmat"], *_ids(a), 50, False, True, True)


@pytest.mark.parametrize("name", [c for c in CASES if c not in TIED])
def test_fixtures_match_torchreid(name, torchreid):
    rank, rerank = torchreid
    a, _ = _case(name)
    if a["distmat"].shape[1] - 10 >= 50:  # torchreid needs max_rank kept gallery items
        want_cmc, want_map = rank.evaluate_rank(a["distmat"], *_ids(a), max_rank=50, use_cython=False)
        cmc, mAP = scal_eval.evaluate_rank(a["distmat"], *_ids(a))
        np.testing.assert_allclose(cmc, want_cmc, rtol=0, atol=1e-6)
        assert abs(mAP - want_map) < 1e-9
    want = rerank.re_ranking(a["distmat"], a["distmat_qq"], a["distmat_gg"], k1=20, k2=6, lambda_value=0.3)
    got = scal_eval.re_ranking(a["distmat"], a["distmat_qq"], a["distmat_gg"], k1=20, k2=6, lambda_value=0.3)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def _random_case(seed, q=40, g=300, ids=30, cams=6, dtype=np.float32):
    """Features of `ids` identities in `cams` cameras; gallery with distractors (pid 0),
    junk (pid -1) and queries whose matches are all in their own camera."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(ids + 1, 16))
    q_pids = rng.integers(1, ids + 1, size=q)
    g_pids = np.concatenate([rng.integers(1, ids + 1, size=g - 40), np.zeros(30, int), -np.ones(10, int)])
    q_cams, g_cams = rng.integers(0, cams, size=q), rng.integers(0, cams, size=g)
    q_cams[0] = 0
    g_cams[g_pids == q_pids[0]] = 0  # query 0: no valid match
    qf = centres[np.maximum(q_pids, 0)] + rng.normal(scale=0.8, size=(q, 16))
    gf = centres[np.maximum(g_pids, 0)] + rng.normal(scale=0.8, size=(g, 16))
    d = lambda x, y: ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1).astype(dtype)
    return (d(qf, gf), d(qf, qf), d(gf, gf)), (q_pids, g_pids, q_cams, g_cams), (qf, gf)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_random_cases_match_torchreid(seed, dtype, torchreid):
    rank, rerank = torchreid
    (qg, qq, gg), ids, _ = _random_case(seed, dtype=dtype)
    want_cmc, want_map = rank.evaluate_rank(qg, *ids, max_rank=50, use_cython=False)
    cmc, mAP = scal_eval.evaluate_rank(qg, *(i.astype(np.int64 if seed % 2 else np.int32) for i in ids))
    np.testing.assert_allclose(cmc, want_cmc, rtol=0, atol=1e-6)
    assert abs(mAP - want_map) < 1e-9
    want = rerank.re_ranking(qg, qq, gg, k1=20, k2=6, lambda_value=0.3)
    got = scal_eval.re_ranking(qg, qq, gg)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_pairwise_distance_is_torchreids_squared_euclidean_and_cosine():
    _, _, (qf, gf) = _random_case(0)
    qf, gf = qf.astype(np.float32), gf.astype(np.float32)
    want = ((qf[:, None, :].astype(np.float64) - gf[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(scal_eval.pairwise_distance(qf, gf), want, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(scal_eval.pairwise_distance(qf, gf, "l2"), np.sqrt(want), rtol=1e-4, atol=1e-3)
    qn = qf / np.linalg.norm(qf, axis=1, keepdims=True)
    gn = gf / np.linalg.norm(gf, axis=1, keepdims=True)
    np.testing.assert_allclose(scal_eval.pairwise_distance(qf, gf, "cosine"), 1 - qn @ gn.T, atol=1e-5)


def test_bad_inputs_raise_naming_the_argument():
    (qg, qq, gg), (qp, gp, qc, gc), (qf, gf) = _random_case(1)
    with pytest.raises(ValueError, match="q_pids"):
        scal_eval.evaluate_rank(qg, qp[:-1], gp, qc, gc)
    with pytest.raises(ValueError, match="g_camids"):
        scal_eval.evaluate_rank(qg, qp, gp, qc, gc[:-1])
    bad = qg.copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        scal_eval.evaluate_rank(bad, qp, gp, qc, gc)
    bad[3, 4] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        scal_eval.re_ranking(bad, qq, gg)
    with pytest.raises(ValueError, match="distmat.*C-contiguous"):
        scal_eval.evaluate_rank(np.asfortranarray(qg), qp, gp, qc, gc)
    with pytest.raises(ValueError, match="q_pids.*C-contiguous"):
        scal_eval.evaluate_rank(qg[:, :], np.repeat(qp, 2)[::2], gp, qc, gc)
    with pytest.raises(ValueError, match="distmat.*2-D"):
        scal_eval.evaluate_rank(qg[0], qp, gp, qc, gc)
    with pytest.raises(TypeError, match="distmat.*float32 or float64"):
        scal_eval.evaluate_rank(qg.astype(np.int32), qp, gp, qc, gc)
    with pytest.raises(TypeError, match="g_pids.*int32 or int64"):
        scal_eval.evaluate_rank(qg, qp, gp.astype(np.float32), qc, gc)
    with pytest.raises(TypeError, match="q_pids.*numpy array"):
        scal_eval.evaluate_rank(qg, list(qp), gp, qc, gc)
    with pytest.raises(ValueError, match="max_rank"):
        scal_eval.evaluate_rank(qg, qp, gp, qc, gc, max_rank=0)
    with pytest.raises(OverflowError, match="max_rank"):
        scal_eval.evaluate_rank(qg, qp, gp, qc, gc, max_rank=2**70)
    with pytest.raises(TypeError, match="max_rank"):
        scal_eval.evaluate_rank(qg, qp, gp, qc, gc, max_rank="50")
    with pytest.raises(ValueError, match="k1"):
        scal_eval.re_ranking(qg, qq, gg, k1=0)
    with pytest.raises(OverflowError, match="k2"):
        scal_eval.re_ranking(qg, qq, gg, k2=-(2**70))
    with pytest.raises(ValueError, match="overflow float32"):
        scal_eval.pairwise_distance(qf.astype(np.float64) * 1e30, gf.astype(np.float64))
    with pytest.raises(ValueError, match="lambda"):
        scal_eval.re_ranking(qg, qq, gg, lambda_value=1.5)
    with pytest.raises(ValueError, match="gallery-gallery"):
        scal_eval.re_ranking(qg, qq, np.ascontiguousarray(gg[:-1, :-1]))
    with pytest.raises(ValueError, match="metric"):
        scal_eval.pairwise_distance(qf, gf, metric="manhattan")
    with pytest.raises(ValueError, match="feature width"):
        scal_eval.pairwise_distance(qf, np.ascontiguousarray(gf[:, :-1]))
    nobody = np.full_like(gp, 999)
    with pytest.raises(ValueError, match="no query has a valid match"):
        scal_eval.evaluate_rank(qg, qp, nobody, qc, gc)


def test_mixed_dtypes_re_rank_in_float64():
    (qg, qq, gg), _, _ = _random_case(2, dtype=np.float64)
    same = scal_eval.re_ranking(qg, qq, gg)
    mixed = scal_eval.re_ranking(qg, qq.astype(np.float32), gg)
    np.testing.assert_allclose(mixed, same, atol=1e-5)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("metric", ["euclidean", "l2", "cosine"])
def test_re_ranking_features_is_re_ranking_of_the_three_distance_matrices(seed, metric):
    """The same floats as `re_ranking` of the `pairwise_distance` matrices, the same metrics."""
    _, ids, (qf, gf) = _random_case(seed)
    qf, gf = qf.astype(np.float32), gf.astype(np.float32)
    d = lambda x, y: scal_eval.pairwise_distance(x, y, metric=metric)
    for k1, k2, lam in ((20, 6, 0.3), (7, 1, 0.5), (40, 10, 0.0)):
        want = scal_eval.re_ranking(d(qf, gf), d(qf, qf), d(gf, gf), k1=k1, k2=k2, lambda_value=lam)
        got = scal_eval.re_ranking_features(qf, gf, k1=k1, k2=k2, lambda_value=lam, metric=metric)
        assert got.dtype == np.float32 and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
        got_cmc, got_map = scal_eval.evaluate_rank(got, *ids)
        want_cmc, want_map = scal_eval.evaluate_rank(want, *ids)
        np.testing.assert_array_equal(got_cmc, want_cmc)
        assert got_map == want_map
    # Defaults and positional parameters, as re_ranking takes them; float64 features are
    # rounded to float32 first, as pairwise_distance rounds them.
    default = scal_eval.re_ranking(d(qf, gf), d(qf, qf), d(gf, gf))
    np.testing.assert_array_equal(scal_eval.re_ranking_features(qf, gf, metric=metric), default)
    np.testing.assert_array_equal(
        scal_eval.re_ranking_features(qf.astype(np.float64), gf, 20, 6, 0.3, metric=metric), default
    )


def test_re_ranking_features_matches_torchreid(torchreid):
    """torchreid's engine re-ranks its squared Euclidean distances: metric="euclidean"."""
    _, rerank = torchreid
    _, _, (qf, gf) = _random_case(4)
    qf, gf = qf.astype(np.float32), gf.astype(np.float32)
    d = scal_eval.pairwise_distance
    want = rerank.re_ranking(d(qf, gf), d(qf, qf), d(gf, gf), k1=20, k2=6, lambda_value=0.3)
    np.testing.assert_allclose(scal_eval.re_ranking_features(qf, gf), want, rtol=0, atol=1e-5)


def test_re_ranking_features_bad_inputs_raise_naming_the_argument():
    _, _, (qf, gf) = _random_case(1)
    qf, gf = qf.astype(np.float32), gf.astype(np.float32)
    bad = qf.copy()
    bad[2, 5] = np.nan
    with pytest.raises(ValueError, match="query features.*non-finite.*row 2, column 5"):
        scal_eval.re_ranking_features(bad, gf)
    with pytest.raises(ValueError, match="feature width"):
        scal_eval.re_ranking_features(qf, np.ascontiguousarray(gf[:, :-1]))
    with pytest.raises(ValueError, match="gallery features is empty"):
        scal_eval.re_ranking_features(qf, gf[:0])
    with pytest.raises(TypeError, match="gallery_features.*float32 or float64"):
        scal_eval.re_ranking_features(qf, gf.astype(np.int32))
    with pytest.raises(ValueError, match="query_features.*2-D"):
        scal_eval.re_ranking_features(qf[0], gf)
    with pytest.raises(ValueError, match="k1"):
        scal_eval.re_ranking_features(qf, gf, k1=0)
    with pytest.raises(ValueError, match="lambda"):
        scal_eval.re_ranking_features(qf, gf, lambda_value=-0.1)
    with pytest.raises(ValueError, match="metric"):
        scal_eval.re_ranking_features(qf, gf, metric="manhattan")
    with pytest.raises(ValueError, match="overflow float32"):
        scal_eval.re_ranking_features(qf.astype(np.float64) * 1e30, gf)
    with pytest.raises(TypeError):
        scal_eval.re_ranking_features(qf, gf, 20, 6, 0.3, "cosine")  # metric is keyword only
