//! # scal-rewards
//!
//! ```
//! # use burn::tensor::{Device, Int, Tensor};
//! use scal_rewards::{RewardKind, rewards};
//! # let device = Device::flex();
//! # let with_attention = Tensor::<2>::from_floats([[2.0, 0.0], [0.0, 1.0]], &device);
//! # let without = Tensor::<2>::from_floats([[1.0, 0.0], [0.0, 2.0]], &device);
//! # let labels = Tensor::<1, Int>::from_ints([0, 1], &device);
//! let r = rewards(with_attention, without, labels, RewardKind::Both); // logits [N, K], labels [N]
//! // r.correct (R_c), r.amelioration (R_a), r.total (R): [N] each
//! # assert_eq!(r.total.into_data().try_to_vec::<f32>().unwrap(), vec![2.0, 1.0]);
//! ```
//!
//! The rewards of SCAL (`docs/scal-method.md`), per sample, from the classifier's logits:
//!
//! - `R_c = 1` if the prediction with attention is the true label, else 0;
//! - `R_a = 1` if attention raised the true class's softmax probability
//!   (`p_k(A, X) > p_k(X)`, the second from the pass with every attention map replaced by
//!   ones), else 0;
//! - `R = R_c + R_a ∈ {0, 1, 2}`, or only one of them ([`RewardKind`]).
//!
//! Beyond the paper, a positive control of the actor-critic loop ([`planted_reward`]): a
//! reward that is a known function of one module's attention map,
//! `R = 2·1[⟨w, A_l⟩ > c]` for a fixed seeded unit vector `w` ([`planted_direction`]), each
//! reward flipped to `2 − R` with a given probability in its noisy form. A critic that reads
//! `A_l` can learn it exactly, and agents that follow the critic's gradient can raise it.
//!
//! Plain functions of detached tensors: no gradient flows through a reward.

#![warn(missing_docs)]

use burn::config::Config;
use burn::tensor::activation::softmax;
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// Which rewards make up `R` (an ablation of the paper; `rc`, `ra`, `both` in configs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RewardKind {
    /// `R = R_c`.
    #[serde(rename = "rc")]
    Correct,
    /// `R = R_a`.
    #[serde(rename = "ra")]
    Amelioration,
    /// `R = R_c + R_a` (the paper's).
    #[serde(rename = "both")]
    Both,
    /// The positive control: `R = 2·1[⟨w, A_l⟩ > c]` ([`planted_reward`], configured by
    /// [`PlantedRewardConfig`]), not a reward of the method.
    #[serde(rename = "planted")]
    Planted,
    /// The positive control with each reward flipped to `2 − R` with probability
    /// [`PlantedRewardConfig::flip_probability`].
    #[serde(rename = "planted-noisy")]
    PlantedNoisy,
    /// The per-sample positive control: `R = 2·1[⟨w_y, A_l⟩ > c]` with one direction `w_y`
    /// per training identity `y` ([`planted_identity_direction`]), so that the direction
    /// that raises the reward differs between samples (as the method's does), unlike
    /// [`RewardKind::Planted`]'s one shared `w`.
    #[serde(rename = "planted-per-identity")]
    PlantedPerIdentity,
}

impl RewardKind {
    /// Whether `R` is a planted reward of the positive control rather than the method's.
    pub fn is_planted(self) -> bool {
        matches!(
            self,
            RewardKind::Planted | RewardKind::PlantedNoisy | RewardKind::PlantedPerIdentity
        )
    }
}

/// The positive control's reward `R = 2·1[⟨w, A_l⟩ > c]` (with [`RewardKind::Planted`] and
/// [`RewardKind::PlantedNoisy`]).
#[derive(Config, Debug, PartialEq)]
pub struct PlantedRewardConfig {
    /// The attention module `l` whose map the reward reads (0: after the stem).
    #[config(default = 0)]
    pub module: usize,
    /// Seed of the direction `w` ([`planted_direction`]).
    #[config(default = 0)]
    pub seed: u64,
    /// The threshold `c`; `None`: the median of `⟨w, A_l⟩` over the run's first batch, so
    /// that about half of it earns `R = 2` (the trainer records it in its checkpoints).
    #[config(default = "None")]
    pub threshold: Option<f64>,
    /// With [`RewardKind::PlantedNoisy`]: the probability that a reward is flipped to
    /// `2 − R` (0.34 leaves about a tenth of R's variance predictable from `A_l`, like the
    /// method's reward from the critics' inputs).
    #[config(default = 0.34)]
    pub flip_probability: f64,
}

/// The direction `w` of the planted reward: a unit vector of `dim` elements, independent
/// standard normal draws (ChaCha8 from `seed`, Box–Muller) divided by their norm.
///
/// # Panics
/// If `dim` is 0.
pub fn planted_direction(dim: usize, seed: u64) -> Vec<f32> {
    use rand::{RngExt, SeedableRng};
    assert!(dim > 0, "planted_direction: dim must be > 0");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let draws: Vec<f64> = (0..dim)
        .map(|_| {
            let u: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
            let v: f64 = rng.random::<f64>();
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        })
        .collect();
    let norm = draws.iter().map(|x| x * x).sum::<f64>().sqrt();
    draws.iter().map(|x| (x / norm) as f32).collect()
}

/// The direction `w_y` of identity `y` for [`RewardKind::PlantedPerIdentity`]: a unit
/// vector of `dim` elements drawn as [`planted_direction`] from a seed mixed from `seed` and
/// `y` (SplitMix64), independent between identities.
///
/// # Panics
/// If `dim` is 0.
pub fn planted_identity_direction(dim: usize, seed: u64, identity: u64) -> Vec<f32> {
    let mix = |mut z: u64| {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    planted_direction(dim, mix(seed ^ mix(identity.wrapping_add(1))))
}

/// The planted directions of a batch, sample by sample, as `[N, dim]` row-major values:
/// `w_{y_i}` of each sample's identity with [`RewardKind::PlantedPerIdentity`], otherwise
/// the one direction `w` in every row.
///
/// # Panics
/// If `dim` is 0, or a label is negative.
pub fn planted_directions(kind: RewardKind, dim: usize, seed: u64, labels: &[i64]) -> Vec<f32> {
    if kind != RewardKind::PlantedPerIdentity {
        let w = planted_direction(dim, seed);
        return w.iter().copied().cycle().take(dim * labels.len()).collect();
    }
    let mut cache: std::collections::HashMap<i64, Vec<f32>> = std::collections::HashMap::new();
    let mut out = Vec::with_capacity(dim * labels.len());
    for &y in labels {
        let identity = u64::try_from(y).expect("labels are identity indices >= 0");
        let w = cache
            .entry(y)
            .or_insert_with(|| planted_identity_direction(dim, seed, identity));
        out.extend_from_slice(w);
    }
    out
}

/// `⟨w_i, A_i⟩` per sample against one direction per sample (rows of
/// [`planted_directions`]).
///
/// # Shapes
/// - `map`: `[N, C, H, W]`, `directions`: `N · C·H·W` values (row `i` for sample `i`)
/// - output: `[N]`
///
/// # Panics
/// If the sizes differ.
pub fn planted_row_scores(map: Tensor<4>, directions: &[f32]) -> Tensor<1> {
    let [n, c, h, w] = map.dims();
    let d = c * h * w;
    assert_eq!(
        n * d,
        directions.len(),
        "planted_row_scores: a [{n}, {c}, {h}, {w}] map against {} direction values",
        directions.len()
    );
    let device = map.device();
    let rows = Tensor::<2>::from_data(TensorData::new(directions.to_vec(), [n, d]), &device);
    (map.detach().reshape([n, d]) * rows)
        .sum_dim(1)
        .reshape([n])
}

/// `⟨w, A⟩` per sample: the map flattened (channels, or positions row by row) against the
/// direction.
///
/// # Shapes
/// - `map`: `[N, C, H, W]` (a channel map `[N, C, 1, 1]` or a spatial one `[N, 1, H, W]`),
///   with `C·H·W` = `direction.len()`
/// - output: `[N]`
///
/// # Panics
/// If the map's size differs from the direction's.
pub fn planted_score(map: Tensor<4>, direction: &[f32]) -> Tensor<1> {
    let [n, c, h, w] = map.dims();
    let d = c * h * w;
    assert_eq!(
        d,
        direction.len(),
        "planted_score: a [{n}, {c}, {h}, {w}] map against a direction of {} elements",
        direction.len()
    );
    let device = map.device();
    let w = Tensor::<2>::from_data(TensorData::new(direction.to_vec(), [d, 1]), &device);
    map.detach().reshape([n, d]).matmul(w).reshape([n])
}

/// The planted reward: `2·1[score > threshold]`, turned into `2 − R` where `flips` is 1.
///
/// # Shapes
/// - `score`, `flips`: `[N]` (`flips` in {0, 1}); output: `[N]`, values in {0, 2}
pub fn planted_reward(score: Tensor<1>, threshold: f64, flips: Option<Tensor<1>>) -> Tensor<1> {
    let reward = score
        .detach()
        .greater_elem(threshold)
        .float()
        .mul_scalar(2.0);
    match flips {
        // R + f·(2 − 2R): R where f = 0, 2 − R where f = 1.
        Some(f) => reward.clone() + f * reward.mul_scalar(-2.0).add_scalar(2.0),
        None => reward,
    }
}

/// The median of `scores` (the mean of the middle two for an even count): the planted
/// reward's threshold frozen from a first batch.
///
/// # Panics
/// If `scores` is empty or holds a NaN.
pub fn median(scores: &[f32]) -> f64 {
    assert!(!scores.is_empty(), "median of no scores");
    let mut sorted = scores.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).expect("scores without NaN"));
    let m = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[m] as f64
    } else {
        (sorted[m - 1] as f64 + sorted[m] as f64) / 2.0
    }
}

/// The rewards of a batch, each `[N]` with values 0 or 1 (`total` 0, 1 or 2).
#[derive(Debug, Clone)]
pub struct Rewards {
    /// `R_c`: the attention-based prediction is correct.
    pub correct: Tensor<1>,
    /// `R_a`: attention raised the true class's probability.
    pub amelioration: Tensor<1>,
    /// `R` for the chosen [`RewardKind`].
    pub total: Tensor<1>,
}

/// Computes the rewards. With a planted kind, `total` is `R_c + R_a` here: the planted
/// reward needs the attention map ([`planted_reward`]), and its caller replaces `total`.
///
/// # Shapes
/// - `logits_attention`, `logits_plain`: `[N, K]`
/// - `labels`: `[N]`, in `0..K`
/// - outputs: `[N]`
///
/// # Panics
/// If the shapes disagree.
pub fn rewards(
    logits_attention: Tensor<2>,
    logits_plain: Tensor<2>,
    labels: Tensor<1, Int>,
    kind: RewardKind,
) -> Rewards {
    let [n, k] = logits_attention.dims();
    assert_eq!(
        logits_plain.dims(),
        [n, k],
        "rewards: logits with attention are [{n}, {k}], without attention {:?}",
        logits_plain.dims()
    );
    assert_eq!(
        labels.dims(),
        [n],
        "rewards: {n} logit rows but {:?} labels",
        labels.dims()
    );
    let logits_attention = logits_attention.detach();
    let logits_plain = logits_plain.detach();
    let index = labels.clone().reshape([n, 1]);

    let predicted = logits_attention.clone().argmax(1).reshape([n]);
    let correct = predicted.equal(labels).float();

    let p_attention = softmax(logits_attention, 1)
        .gather(1, index.clone())
        .reshape([n]);
    let p_plain = softmax(logits_plain, 1).gather(1, index).reshape([n]);
    let amelioration = p_attention.greater(p_plain).float();

    let total = match kind {
        RewardKind::Correct => correct.clone(),
        RewardKind::Amelioration => amelioration.clone(),
        RewardKind::Both
        | RewardKind::Planted
        | RewardKind::PlantedNoisy
        | RewardKind::PlantedPerIdentity => correct.clone() + amelioration.clone(),
    };
    Rewards {
        correct,
        amelioration,
        total,
    }
}

/// The average precision of each query among a batch's gallery, ReID's own metric on one
/// P × K batch: query `i` (row `i` of `queries`) ranks every gallery row `j ≠ i` by
/// Euclidean distance (nearest first, ties by index), the rows of its label are the
/// positives, and its AP is the mean over positives of the precision at each positive's
/// rank (0 for a query without positive). The score of the compatible critic's `batch-ap`
/// target: `queries` from one pass, `gallery` from another (or the same).
///
/// # Shapes
/// - `queries`, `gallery`: `N · D` values each (row-major `[N, D]`), `labels`: `N` values
/// - output: `N` values in `[0, 1]`
///
/// # Panics
/// If the sizes disagree.
pub fn batch_average_precision(queries: &[f32], gallery: &[f32], labels: &[i64]) -> Vec<f64> {
    let n = labels.len();
    assert!(
        n > 0 && queries.len() == gallery.len() && queries.len().is_multiple_of(n),
        "batch_average_precision: {} query and {} gallery values for {n} labels",
        queries.len(),
        gallery.len()
    );
    let d = queries.len() / n;
    let row = |t: &[f32], i: usize| -> Vec<f64> {
        t[i * d..(i + 1) * d].iter().map(|v| *v as f64).collect()
    };
    let gallery_rows: Vec<Vec<f64>> = (0..n).map(|j| row(gallery, j)).collect();
    (0..n)
        .map(|i| {
            let q = row(queries, i);
            let mut ranked: Vec<(f64, usize)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| {
                    let distance = q
                        .iter()
                        .zip(&gallery_rows[j])
                        .map(|(a, b)| (a - b).powi(2))
                        .sum::<f64>();
                    (distance, j)
                })
                .collect();
            ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let (mut found, mut sum) = (0usize, 0.0f64);
            for (rank, (_, j)) in ranked.iter().enumerate() {
                if labels[*j] == labels[i] {
                    found += 1;
                    sum += found as f64 / (rank + 1) as f64;
                }
            }
            if found == 0 { 0.0 } else { sum / found as f64 }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn values(t: Tensor<1>) -> Vec<f32> {
        t.into_data().try_into_vec::<f32>().unwrap()
    }

    #[test]
    fn hand_made_logits() {
        let dev = Device::flex();
        // Sample 0: correct with attention (class 1) and attention raised p_1.
        // Sample 1: wrong with attention (argmax 0, label 2), but p_2 rose.
        // Sample 2: correct, but attention lowered p_0.
        // Sample 3: wrong, and p_1 fell.
        let att = Tensor::<2>::from_data(
            TensorData::new(
                vec![
                    0.0f32, 3.0, 0.0, //
                    2.0, 0.0, 1.5, //
                    1.0, 0.0, 0.0, //
                    0.0, 0.0, 2.0,
                ],
                [4, 3],
            ),
            &dev,
        );
        let plain = Tensor::<2>::from_data(
            TensorData::new(
                vec![
                    0.0f32, 1.0, 0.0, //
                    2.0, 0.0, 0.0, //
                    5.0, 0.0, 0.0, //
                    0.0, 1.0, 0.0,
                ],
                [4, 3],
            ),
            &dev,
        );
        let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 2, 0, 1], [4]), &dev);
        let r = rewards(att.clone(), plain.clone(), labels.clone(), RewardKind::Both);
        assert_eq!(values(r.correct), vec![1.0, 0.0, 1.0, 0.0]);
        assert_eq!(values(r.amelioration), vec![1.0, 1.0, 0.0, 0.0]);
        assert_eq!(values(r.total), vec![2.0, 1.0, 1.0, 0.0]);
        let rc = rewards(
            att.clone(),
            plain.clone(),
            labels.clone(),
            RewardKind::Correct,
        );
        assert_eq!(values(rc.total), vec![1.0, 0.0, 1.0, 0.0]);
        let ra = rewards(att, plain, labels, RewardKind::Amelioration);
        assert_eq!(values(ra.total), vec![1.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn equal_probabilities_are_no_amelioration() {
        let dev = Device::flex();
        let logits = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0], [1, 2]), &dev);
        let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64], [1]), &dev);
        let r = rewards(logits.clone(), logits, labels, RewardKind::Both);
        assert_eq!(values(r.amelioration), vec![0.0]);
        assert_eq!(values(r.total), vec![1.0]);
    }

    #[test]
    fn the_planted_reward_is_two_above_the_threshold_and_flips_where_told() {
        let dev = Device::flex();
        let w = planted_direction(3, 7);
        let norm: f32 = w.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-6, "unit length: {norm}");
        assert_eq!(w, planted_direction(3, 7), "the seed fixes it");
        assert_ne!(w, planted_direction(3, 8));
        // Two channel maps [2, 3, 1, 1]: the scores are their dot products with w.
        let maps = [0.2f32, 0.9, 0.4, 0.7, 0.1, 0.5];
        let map = Tensor::<4>::from_data(TensorData::new(maps.to_vec(), [2, 3, 1, 1]), &dev);
        let score = values(planted_score(map, &w));
        for (i, s) in score.iter().enumerate() {
            let expected: f32 = (0..3).map(|j| maps[3 * i + j] * w[j]).sum();
            assert!((s - expected).abs() < 1e-6);
        }
        let score = Tensor::<1>::from_data(TensorData::new(vec![0.1f32, 0.5, 0.3, 0.9], [4]), &dev);
        assert_eq!(
            values(planted_reward(score.clone(), 0.3, None)),
            vec![0.0, 2.0, 0.0, 2.0],
            "strictly above the threshold"
        );
        let flips = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 1.0, 0.0, 0.0], [4]), &dev);
        assert_eq!(
            values(planted_reward(score, 0.3, Some(flips))),
            vec![2.0, 0.0, 0.0, 2.0]
        );
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(RewardKind::PlantedNoisy.is_planted() && !RewardKind::Both.is_planted());
    }

    #[test]
    fn each_identity_has_its_own_planted_direction() {
        let dev = Device::flex();
        let dim = 64;
        let (a, b) = (
            planted_identity_direction(dim, 3, 0),
            planted_identity_direction(dim, 3, 1),
        );
        let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>();
        assert!((dot(&a, &a) - 1.0).abs() < 1e-5, "unit length");
        assert_eq!(
            a,
            planted_identity_direction(dim, 3, 0),
            "the seed fixes it"
        );
        assert!(
            dot(&a, &b).abs() < 0.5,
            "two identities' directions are unrelated"
        );
        assert_ne!(
            a,
            planted_identity_direction(dim, 4, 0),
            "another seed, another w_y"
        );
        // Rows: each sample's identity's direction; the shared kind repeats one w.
        let labels = [1i64, 0, 1];
        let rows = planted_directions(RewardKind::PlantedPerIdentity, dim, 3, &labels);
        assert_eq!(&rows[..dim], &b[..]);
        assert_eq!(&rows[dim..2 * dim], &a[..]);
        assert_eq!(&rows[2 * dim..], &b[..]);
        let shared = planted_directions(RewardKind::Planted, dim, 3, &labels);
        let w = planted_direction(dim, 3);
        assert!(shared.chunks(dim).all(|row| row == &w[..]));
        // The scores are each row's dot product with its sample's map.
        let maps: Vec<f32> = (0..3 * dim).map(|i| (i % 7) as f32 / 7.0).collect();
        let map = Tensor::<4>::from_data(TensorData::new(maps.clone(), [3, dim, 1, 1]), &dev);
        let scores = values(planted_row_scores(map, &rows));
        for (i, score) in scores.iter().enumerate() {
            let expected = dot(&maps[i * dim..(i + 1) * dim], &rows[i * dim..(i + 1) * dim]);
            assert!(
                (score - expected).abs() < 1e-4,
                "sample {i}: {score} {expected}"
            );
        }
        assert!(RewardKind::PlantedPerIdentity.is_planted());
    }

    #[test]
    #[should_panic(expected = "logit rows")]
    fn label_count_must_match() {
        let dev = Device::flex();
        let logits = Tensor::<2>::zeros([2, 3], &dev);
        let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64], [1]), &dev);
        rewards(logits.clone(), logits, labels, RewardKind::Both);
    }

    #[test]
    fn batch_average_precision_ranks_the_other_samples_of_the_batch() {
        // Four samples on a line, labels 0, 0, 1, 1: sample 0 at 0, 1 at 3, 2 at 1, 3 at 2.
        let points = [0.0f32, 3.0, 1.0, 2.0];
        let labels = [0i64, 0, 1, 1];
        let ap = batch_average_precision(&points, &points, &labels);
        // 0: ranks 2 (1), 3 (2), 1 (3): its positive at rank 3 → 1/3.
        // 1: ranks 3 (1), 2 (2), 0 (3) → 1/3. 2: 0 and 3 tie at distance 1, 0 first by
        // index → its positive 3 at rank 2 → 1/2. 3: 1 and 2 tie, 1 first → 1/2.
        let expected = [1.0 / 3.0, 1.0 / 3.0, 0.5, 0.5];
        for (a, e) in ap.iter().zip(expected) {
            assert!((a - e).abs() < 1e-12, "{ap:?}");
        }
        // Queries from another pass against the same gallery: moving sample 0 next to 1
        // puts its positive first.
        let moved = [2.9f32, 3.0, 1.0, 2.0];
        assert!((batch_average_precision(&moved, &points, &labels)[0] - 1.0).abs() < 1e-12);
        // No positive: 0.
        assert_eq!(
            batch_average_precision(&points, &points, &[0, 1, 2, 3]),
            vec![0.0; 4]
        );
    }
}
