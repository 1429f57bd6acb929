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
//! Plain functions of detached tensors: no gradient flows through a reward.

#![warn(missing_docs)]

use burn::tensor::activation::softmax;
use burn::tensor::{Int, Tensor};
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

/// Computes the rewards.
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
        RewardKind::Both => correct.clone() + amelioration.clone(),
    };
    Rewards {
        correct,
        amelioration,
        total,
    }
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
    #[should_panic(expected = "logit rows")]
    fn label_count_must_match() {
        let dev = Device::flex();
        let logits = Tensor::<2>::zeros([2, 3], &dev);
        let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64], [1]), &dev);
        rewards(logits.clone(), logits, labels, RewardKind::Both);
    }
}
