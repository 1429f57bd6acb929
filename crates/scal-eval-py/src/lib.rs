//! # scal_eval (Python)
//!
//! The `scal_eval` Python module: torchreid's evaluation and re-ranking functions, with
//! torchreid's signatures, computed by the `scal-eval` crate.
//!
//! - `evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50,
//!   use_metric_cuhk03=False, use_cython=True, *, return_minp=False)` → `(cmc, mAP)` or
//!   `(cmc, mAP, mINP)` (`use_cython` is accepted and ignored, so that torchreid's calls,
//!   positional ones included, run unchanged);
//! - `re_ranking(q_g_dist, q_q_dist, g_g_dist, k1=20, k2=6, lambda_value=0.3)` → float32
//!   `[Q, G]`;
//! - `pairwise_distance(query, gallery, metric="euclidean")` → float32 `[Q, G]`
//!   (`"euclidean"` is torchreid's squared Euclidean distance, `"l2"` the plain one,
//!   `"cosine"` is 1 − cosine similarity);
//! - `re_ranking_features(query_features, gallery_features, k1=20, k2=6, lambda_value=0.3,
//!   *, metric="euclidean")` → float32 `[Q, G]`: `re_ranking` of the three
//!   `pairwise_distance` matrices of the features, computed without the `Q × Q` and
//!   `G × G` ones (galleries of MSMT17's size).
//!
//! Arrays are read in place (C-contiguous numpy arrays; distances float32 or float64, ids
//! int32 or int64) and the GIL is released while Rust computes. A wrong shape, dtype or
//! layout, a NaN or infinite value, or a parameter out of range raises `ValueError` or
//! `TypeError` naming the argument.

#![warn(missing_docs)]

use ndarray::{Array2, ArrayView2};
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray2, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::IntoPyObjectExt;
use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use scal_eval_core::{Distance, DistanceMetric, EvalError, Metrics, ReRankParams};

/// Seed of the CUHK03 single-gallery-shot sampling (torchreid draws it unseeded).
const CUHK03_SEED: u64 = 0;

/// A 2-D float argument, borrowed from Python (read-only while it is held).
enum Floats<'py> {
    F32(PyReadonlyArray2<'py, f32>),
    F64(PyReadonlyArray2<'py, f64>),
}

/// A view of a [`Floats`]: what crosses into the code that runs without the GIL.
#[derive(Clone, Copy)]
enum View<'a> {
    F32(ArrayView2<'a, f32>),
    F64(ArrayView2<'a, f64>),
}

impl Floats<'_> {
    fn view(&self) -> View<'_> {
        match self {
            Floats::F32(a) => View::F32(a.as_array()),
            Floats::F64(a) => View::F64(a.as_array()),
        }
    }
}

/// `obj` as a numpy array of `ndim` dimensions in C order, or the exception naming `name`.
fn array<'a, 'py>(
    name: &str,
    obj: &'a Bound<'py, PyAny>,
    ndim: usize,
) -> PyResult<&'a Bound<'py, PyUntypedArray>> {
    let array = obj.cast::<PyUntypedArray>().map_err(|_| {
        let kind = obj
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".into());
        PyTypeError::new_err(format!("{name}: expected a numpy array, got {kind}"))
    })?;
    if array.ndim() != ndim {
        return Err(PyValueError::new_err(format!(
            "{name}: expected a {ndim}-D array, got shape {:?}",
            array.shape()
        )));
    }
    if !array.is_c_contiguous() {
        return Err(PyValueError::new_err(format!(
            "{name}: the array is not C-contiguous; pass np.ascontiguousarray({name})"
        )));
    }
    Ok(array)
}

/// A float32 or float64 matrix argument.
fn floats<'py>(name: &str, obj: &Bound<'py, PyAny>) -> PyResult<Floats<'py>> {
    let untyped = array(name, obj, 2)?;
    let busy = |_| PyValueError::new_err(format!("{name}: the array is being written to"));
    if let Ok(a) = obj.cast::<PyArray2<f32>>() {
        return Ok(Floats::F32(a.try_readonly().map_err(busy)?));
    }
    if let Ok(a) = obj.cast::<PyArray2<f64>>() {
        return Ok(Floats::F64(a.try_readonly().map_err(busy)?));
    }
    Err(PyTypeError::new_err(format!(
        "{name}: dtype {} is not supported; expected float32 or float64",
        untyped.dtype()
    )))
}

/// An int32 or int64 vector argument, as `i64`s.
fn ids(name: &str, obj: &Bound<'_, PyAny>) -> PyResult<Vec<i64>> {
    let untyped = array(name, obj, 1)?;
    let busy = |_| PyValueError::new_err(format!("{name}: the array is being written to"));
    if let Ok(a) = obj.cast::<PyArray1<i64>>() {
        return Ok(a.try_readonly().map_err(busy)?.as_array().to_vec());
    }
    if let Ok(a) = obj.cast::<PyArray1<i32>>() {
        let a = a.try_readonly().map_err(busy)?;
        return Ok(a.as_array().iter().map(|&v| i64::from(v)).collect());
    }
    Err(PyTypeError::new_err(format!(
        "{name}: dtype {} is not supported; expected int32 or int64",
        untyped.dtype()
    )))
}

/// A count argument (`max_rank`, `k1`, `k2`) that must be at least 1; `None` (the argument
/// left out) is `default`. A Python int beyond 64 bits is an `OverflowError` naming the
/// argument (PyO3's own says only "Python int too large to convert to C long").
fn positive(name: &str, value: Option<&Bound<'_, PyAny>>, default: usize) -> PyResult<usize> {
    let Some(value) = value else {
        return Ok(default);
    };
    let value: i64 = value.extract().map_err(|e: PyErr| {
        if e.is_instance_of::<PyOverflowError>(value.py()) {
            PyOverflowError::new_err(format!("{name}: {value} does not fit in 64 bits"))
        } else {
            PyTypeError::new_err(format!("{name}: expected an int, got {value}"))
        }
    })?;
    usize::try_from(value)
        .ok()
        .filter(|&v| v > 0)
        .ok_or_else(|| PyValueError::new_err(format!("{name}: must be at least 1, got {value}")))
}

/// A `scal-eval` error as the Python exception users expect.
fn value_error(error: EvalError) -> PyErr {
    PyValueError::new_err(error.to_string())
}

/// The five arrays of an evaluation, as the code without the GIL reads them.
struct Ranking<'a> {
    distmat: View<'a>,
    q_pids: Vec<i64>,
    g_pids: Vec<i64>,
    q_camids: Vec<i64>,
    g_camids: Vec<i64>,
}

impl Ranking<'_> {
    /// The Market-1501 metrics, or the CUHK03 single-gallery-shot ones.
    fn metrics(&self, max_rank: usize, cuhk03: bool) -> Result<Metrics, EvalError> {
        match self.distmat {
            View::F32(d) => self.metrics_of(d, max_rank, cuhk03),
            View::F64(d) => self.metrics_of(d, max_rank, cuhk03),
        }
    }

    fn metrics_of<T: Distance>(
        &self,
        distmat: ArrayView2<'_, T>,
        max_rank: usize,
        cuhk03: bool,
    ) -> Result<Metrics, EvalError> {
        let (q_pids, g_pids) = (&self.q_pids, &self.g_pids);
        let (q_camids, g_camids) = (&self.q_camids, &self.g_camids);
        if cuhk03 {
            scal_eval_core::evaluate_cuhk03_classic(
                distmat,
                q_pids,
                g_pids,
                q_camids,
                g_camids,
                max_rank,
                CUHK03_SEED,
            )
        } else {
            scal_eval_core::evaluate_market1501(
                distmat, q_pids, g_pids, q_camids, g_camids, max_rank,
            )
        }
    }
}

/// CMC and mAP under the Market-1501 protocol (same identity in the same camera removed,
/// queries without a valid match skipped), as `torchreid.metrics.evaluate_rank`.
///
/// # Shapes
/// - `distmat`: `[Q, G]`; `q_pids`, `q_camids`: `[Q]`; `g_pids`, `g_camids`: `[G]`
/// - returned `cmc`: float32 `[min(max_rank, G)]`
///
/// `use_metric_cuhk03=True` gives the old CUHK03 single-gallery-shot CMC (seeded, where
/// torchreid draws unseeded). `use_cython`, torchreid's eighth parameter, is accepted
/// (any value) and ignored. `return_minp=True` (keyword only) adds mINP as a third value.
#[pyfunction]
#[pyo3(signature = (distmat, q_pids, g_pids, q_camids, g_camids, max_rank=None, use_metric_cuhk03=false, use_cython=None, *, return_minp=false))]
#[pyo3(
    text_signature = "(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50, use_metric_cuhk03=False, use_cython=True, *, return_minp=False)"
)]
#[allow(clippy::too_many_arguments)] // torchreid's signature
fn evaluate_rank<'py>(
    py: Python<'py>,
    distmat: &Bound<'py, PyAny>,
    q_pids: &Bound<'py, PyAny>,
    g_pids: &Bound<'py, PyAny>,
    q_camids: &Bound<'py, PyAny>,
    g_camids: &Bound<'py, PyAny>,
    max_rank: Option<&Bound<'py, PyAny>>,
    use_metric_cuhk03: bool,
    use_cython: Option<&Bound<'py, PyAny>>,
    return_minp: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let _ = use_cython; // torchreid's switch between its Cython and Python code: nothing to switch here
    let max_rank = positive("max_rank", max_rank, 50)?;
    let distmat = floats("distmat", distmat)?;
    let ranking = Ranking {
        distmat: distmat.view(),
        q_pids: ids("q_pids", q_pids)?,
        g_pids: ids("g_pids", g_pids)?,
        q_camids: ids("q_camids", q_camids)?,
        g_camids: ids("g_camids", g_camids)?,
    };
    let metrics = py
        .detach(move || ranking.metrics(max_rank, use_metric_cuhk03))
        .map_err(value_error)?;
    let cmc: Vec<f32> = metrics.cmc.iter().map(|&v| v as f32).collect();
    let cmc = cmc.into_pyarray(py);
    if return_minp {
        (cmc, metrics.map, metrics.minp).into_bound_py_any(py)
    } else {
        (cmc, metrics.map).into_bound_py_any(py)
    }
}

/// A float matrix as `f64`s (copied), for inputs whose dtypes differ.
fn as_f64(m: View<'_>) -> Array2<f64> {
    match m {
        View::F32(a) => a.mapv(f64::from),
        View::F64(a) => a.to_owned(),
    }
}

/// k-reciprocal re-ranking (Zhong et al., CVPR 2017), as `torchreid.utils.re_ranking`.
///
/// # Shapes
/// - `q_g_dist`: `[Q, G]`, `q_q_dist`: `[Q, Q]`, `g_g_dist`: `[G, G]`
/// - returned: float32 `[Q, G]`
#[pyfunction]
#[pyo3(signature = (q_g_dist, q_q_dist, g_g_dist, k1=None, k2=None, lambda_value=0.3))]
#[pyo3(text_signature = "(q_g_dist, q_q_dist, g_g_dist, k1=20, k2=6, lambda_value=0.3)")]
fn re_ranking<'py>(
    py: Python<'py>,
    q_g_dist: &Bound<'py, PyAny>,
    q_q_dist: &Bound<'py, PyAny>,
    g_g_dist: &Bound<'py, PyAny>,
    k1: Option<&Bound<'py, PyAny>>,
    k2: Option<&Bound<'py, PyAny>>,
    lambda_value: f64,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let params = ReRankParams {
        k1: positive("k1", k1, 20)?,
        k2: positive("k2", k2, 6)?,
        lambda: lambda_value,
    };
    let (q_g, q_q, g_g) = (
        floats("q_g_dist", q_g_dist)?,
        floats("q_q_dist", q_q_dist)?,
        floats("g_g_dist", g_g_dist)?,
    );
    let views = (q_g.view(), q_q.view(), g_g.view());
    let result = py.detach(move || match views {
        (View::F32(a), View::F32(b), View::F32(c)) => scal_eval_core::re_rank(a, b, c, params),
        (View::F64(a), View::F64(b), View::F64(c)) => scal_eval_core::re_rank(a, b, c, params),
        (a, b, c) => {
            let (a, b, c) = (as_f64(a), as_f64(b), as_f64(c));
            scal_eval_core::re_rank(a.view(), b.view(), c.view(), params)
        }
    });
    Ok(result.map_err(value_error)?.into_pyarray(py))
}

/// A feature matrix as `f32`s, borrowed when it already is.
fn features_f32(m: View<'_>) -> ndarray::CowArray<'_, f32, ndarray::Ix2> {
    match m {
        View::F32(a) => a.into(),
        View::F64(a) => a.mapv(|v| v as f32).into(),
    }
}

/// A `metric` argument: torchreid's names, as `pairwise_distance` takes them.
fn parse_metric(name: &str) -> PyResult<DistanceMetric> {
    match name {
        "euclidean" | "sqeuclidean" => Ok(DistanceMetric::SquaredEuclidean),
        "l2" => Ok(DistanceMetric::Euclidean),
        "cosine" => Ok(DistanceMetric::Cosine),
        other => Err(PyValueError::new_err(format!(
            "metric: unknown metric {other:?}; expected \"euclidean\" (squared, as torchreid), \"l2\" or \"cosine\""
        ))),
    }
}

/// The `[Q, G]` distances between query and gallery features, as
/// `torchreid.metrics.compute_distance_matrix`: `"euclidean"` is the squared Euclidean
/// distance (torchreid's), `"l2"` the Euclidean distance, `"cosine"` 1 − cosine similarity.
///
/// # Shapes
/// - `query`: `[Q, D]`, `gallery`: `[G, D]`; returned: float32 `[Q, G]`
#[pyfunction]
#[pyo3(signature = (query, gallery, metric="euclidean"))]
fn pairwise_distance<'py>(
    py: Python<'py>,
    query: &Bound<'py, PyAny>,
    gallery: &Bound<'py, PyAny>,
    metric: &str,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let metric = parse_metric(metric)?;
    let (query, gallery) = (floats("query", query)?, floats("gallery", gallery)?);
    let views = (query.view(), gallery.view());
    let result = py.detach(move || {
        let (q, g) = (features_f32(views.0), features_f32(views.1));
        scal_eval_core::pairwise_distances(q.view(), g.view(), metric)
    });
    let distances = result.map_err(value_error)?;
    // float64 features far beyond float32's range give infinite distances: refused, as NaN
    // features are, instead of ranking by inf.
    if distances.iter().any(|d| !d.is_finite()) {
        return Err(PyValueError::new_err(
            "query, gallery: the distances overflow float32 (features of magnitude beyond about \
             1e19); scale the features down, e.g. L2-normalise them",
        ));
    }
    Ok(distances.into_pyarray(py))
}

/// k-reciprocal re-ranking from features: what `re_ranking(pairwise_distance(q, g, metric),
/// pairwise_distance(q, q, metric), pairwise_distance(g, g, metric), k1, k2, lambda_value)`
/// returns (the same floats), computed in one blocked pass over the features without the
/// `Q × Q` and `G × G` matrices: memory beyond the inputs is the `[Q, G]` result plus
/// `O(Q + G)` rows of a few dozen values. `metric` as in `pairwise_distance` (`"euclidean"`
/// is torchreid's squared distance, which torchreid's engine passes to `re_ranking`).
///
/// # Shapes
/// - `query_features`: `[Q, D]`, `gallery_features`: `[G, D]` (float32, or float64
///   rounded to float32)
/// - returned: float32 `[Q, G]`
#[pyfunction]
#[pyo3(signature = (query_features, gallery_features, k1=None, k2=None, lambda_value=0.3, *, metric="euclidean"))]
#[pyo3(
    text_signature = "(query_features, gallery_features, k1=20, k2=6, lambda_value=0.3, *, metric=\"euclidean\")"
)]
fn re_ranking_features<'py>(
    py: Python<'py>,
    query_features: &Bound<'py, PyAny>,
    gallery_features: &Bound<'py, PyAny>,
    k1: Option<&Bound<'py, PyAny>>,
    k2: Option<&Bound<'py, PyAny>>,
    lambda_value: f64,
    metric: &str,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let params = ReRankParams {
        k1: positive("k1", k1, 20)?,
        k2: positive("k2", k2, 6)?,
        lambda: lambda_value,
    };
    let metric = parse_metric(metric)?;
    let (query, gallery) = (
        floats("query_features", query_features)?,
        floats("gallery_features", gallery_features)?,
    );
    let views = (query.view(), gallery.view());
    let result = py.detach(move || {
        let (q, g) = (features_f32(views.0), features_f32(views.1));
        scal_eval_core::re_rank_features(q.view(), g.view(), metric, params)
    });
    Ok(result.map_err(value_error)?.into_pyarray(py))
}

/// The `scal_eval` module.
#[pymodule]
#[pyo3(name = "scal_eval")]
fn scal_eval_py(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(evaluate_rank, module)?)?;
    module.add_function(wrap_pyfunction!(re_ranking, module)?)?;
    module.add_function(wrap_pyfunction!(pairwise_distance, module)?)?;
    module.add_function(wrap_pyfunction!(re_ranking_features, module)?)?;
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
