//! The features folder: `query.npy` and `gallery.npy` (float32, C order) and the exact top-10
//! reference `exact-top10.npy` (int64 `[Q, 10]`), read from the folder's cache when it is there
//! and computed (then cached) otherwise.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use npyz::WriterBuilder;
use rayon::prelude::*;

/// Neighbours per query in the reference and in the recall.
pub const K: usize = 10;
/// File name of the exact top-10 cache inside the features folder (shared with the Python side).
pub const EXACT_FILE: &str = "exact-top10.npy";
/// Queries scored together against each gallery row while computing the reference: their rows
/// (32 x 2 KiB at 512-d) stay in the core's cache while the gallery streams past once per block.
const QUERY_BLOCK: usize = 32;

/// A row-major float32 matrix `[rows, dim]`.
pub struct Matrix {
    pub rows: usize,
    pub dim: usize,
    pub data: Vec<f32>,
}

impl Matrix {
    /// Row `i`, `dim` values.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

/// Reads a header and checks it: 2-d, C order, dtype `want` (numpy's descr, e.g. `'<f4'`).
fn open_2d(path: &Path, want: &str) -> Result<(npyz::NpyFile<BufReader<File>>, usize, usize)> {
    let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let npy = npyz::NpyFile::new(BufReader::new(file))
        .with_context(|| format!("{}: not a .npy file", path.display()))?;
    if npy.order() != npyz::Order::C {
        bail!(
            "{}: fortran_order is true; only C order (fortran_order false) is read",
            path.display()
        );
    }
    let descr = npy.dtype().descr();
    ensure!(
        descr == want,
        "{}: dtype {descr}, expected {want}",
        path.display()
    );
    let shape = npy.shape().to_vec();
    ensure!(
        shape.len() == 2,
        "{}: shape {shape:?}, expected 2 dimensions",
        path.display()
    );
    Ok((npy, shape[0] as usize, shape[1] as usize))
}

/// Loads a float32 `[rows, dim]` matrix from a `.npy` file.
pub fn load_matrix(path: &Path) -> Result<Matrix> {
    let (npy, rows, dim) = open_2d(path, "'<f4'")?;
    ensure!(
        rows > 0 && dim > 0,
        "{}: empty array [{rows}, {dim}]",
        path.display()
    );
    let data = npy
        .into_vec::<f32>()
        .with_context(|| format!("{}: cannot read the float32 data", path.display()))?;
    ensure!(
        data.len() == rows * dim,
        "{}: truncated data",
        path.display()
    );
    Ok(Matrix { rows, dim, data })
}

/// Squared L2 distance, in 16 independent lanes so that the compiler vectorizes it.
pub fn l2sq(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            let d = x[i] - y[i];
            acc[i] += d * d;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The `K` smallest (distance, row) pairs seen so far, nearest first; on ties the earlier row
/// (rows arrive in increasing order) stays first.
#[derive(Clone)]
struct TopK {
    items: Vec<(f32, u32)>,
}

impl TopK {
    fn push(&mut self, distance: f32, row: u32) {
        if self.items.len() == K && distance >= self.items[K - 1].0 {
            return;
        }
        let at = self.items.partition_point(|&(d, _)| d <= distance);
        if self.items.len() == K {
            self.items.pop();
        }
        self.items.insert(at, (distance, row));
    }
}

/// Exact top-`K` gallery rows by squared L2 of a block of query rows (`queries.len() / dim`).
fn block_top(queries: &[f32], gallery: &Matrix) -> Vec<[i64; K]> {
    let dim = gallery.dim;
    let mut tops = vec![
        TopK {
            items: Vec::with_capacity(K + 1)
        };
        queries.len() / dim
    ];
    for g in 0..gallery.rows {
        let row = gallery.row(g);
        for (top, query) in tops.iter_mut().zip(queries.chunks_exact(dim)) {
            top.push(l2sq(query, row), g as u32);
        }
    }
    let as_row = |top: TopK| {
        let mut out = [-1i64; K];
        for (slot, (_, row)) in out.iter_mut().zip(top.items) {
            *slot = i64::from(row);
        }
        out
    };
    tops.into_iter().map(as_row).collect()
}

/// Exact top-`K` gallery rows of every query, blocks of queries spread over rayon's threads.
pub fn exact_top(query: &Matrix, gallery: &Matrix) -> Vec<[i64; K]> {
    query
        .data
        .par_chunks(QUERY_BLOCK * query.dim)
        .flat_map_iter(|block| block_top(block, gallery))
        .collect()
}

/// Reads `DIR/exact-top10.npy` if it exists (checking shape `[Q, 10]` and row range), otherwise
/// computes it and writes it (through a temporary file renamed into place).
pub fn load_or_compute_exact(
    dir: &Path,
    query: &Matrix,
    gallery: &Matrix,
) -> Result<Vec<[i64; K]>> {
    let path = dir.join(EXACT_FILE);
    if path.exists() {
        let (npy, rows, cols) = open_2d(&path, "'<i8'")?;
        ensure!(
            rows == query.rows && cols == K,
            "{}: shape [{rows}, {cols}], expected [{}, {K}] (queries in query.npy)",
            path.display(),
            query.rows
        );
        let flat = npy
            .into_vec::<i64>()
            .with_context(|| format!("{}: cannot read", path.display()))?;
        ensure!(flat.len() == rows * K, "{}: truncated data", path.display());
        let bad = flat.iter().find(|&&r| r < 0 || r as usize >= gallery.rows);
        ensure!(
            bad.is_none(),
            "{}: row {} outside the gallery",
            path.display(),
            bad.unwrap_or(&0)
        );
        eprintln!("exact top-{K}: read {}", path.display());
        return Ok(flat
            .chunks_exact(K)
            .map(|c| c.try_into().expect("K values"))
            .collect());
    }
    let started = std::time::Instant::now();
    let exact = exact_top(query, gallery);
    eprintln!(
        "exact top-{K}: computed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    write_exact(&path, &exact)?;
    Ok(exact)
}

/// Writes the reference as int64 `[Q, K]` to `path`, whole (scal-fs's staged write).
fn write_exact(path: &Path, exact: &[[i64; K]]) -> Result<()> {
    scal_fs::write_atomically(path, |tmp| {
        let write = || -> std::io::Result<()> {
            let file = BufWriter::new(File::create(tmp)?);
            let mut writer = npyz::WriteOptions::new()
                .default_dtype()
                .shape(&[exact.len() as u64, K as u64])
                .writer(file)
                .begin_nd()?;
            writer.extend(exact.iter().flatten().copied())?;
            writer.finish()
        };
        write().map_err(|e| e.to_string())
    })
    .with_context(|| format!("{}: cannot write the exact top-{K}", path.display()))?;
    eprintln!("exact top-{K}: wrote {}", path.display());
    Ok(())
}
