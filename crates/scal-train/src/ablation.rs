//! The ablation set: each variant a typed edit of a [`TrainingConfig`], and the paired
//! statistics that compare a variant with the no-attention baseline seed by seed (a seed
//! fixes the data order and the initialisation, so the two runs of a seed form a pair).

use scal_attention::AttentionKind;
use scal_losses::TripletDistance;
use scal_model::{CriticKind, CriticScaling};
use scal_rewards::RewardKind;
use scal_run::step::{CriticScore, CriticTarget, UpdateOrder};
use serde::Serialize;

use crate::{TrainError, TrainingConfig};

/// One ablation variant: a name, what it is, and the edit it makes to a configuration.
#[derive(Debug, Clone, Copy)]
pub struct Variant {
    /// Name used in tables and run folders.
    pub name: &'static str,
    /// What it is.
    pub description: &'static str,
    edit: fn(&mut TrainingConfig),
}

impl Variant {
    /// `config` as this variant trains it, checked ([`TrainingConfig::validate`]).
    pub fn configure(&self, mut config: TrainingConfig) -> Result<TrainingConfig, TrainError> {
        (self.edit)(&mut config);
        config.validate()?;
        Ok(config)
    }
}

/// SCAL's critic on, with reward `reward`, on `attention`.
fn scal(config: &mut TrainingConfig, attention: AttentionKind, reward: RewardKind) {
    config.model.attention = attention;
    config.step.critic = true;
    config.step.reward = reward;
}

/// `attention` trained by the ReID losses alone.
fn no_critic(config: &mut TrainingConfig, attention: AttentionKind) {
    config.model.attention = attention;
    config.step.critic = false;
}

/// Channel attention with compatible critics learning the change of `score` under the
/// exploration of [`EXPLORATION`] (the reward `both` only sets the log's rates).
fn compatible(config: &mut TrainingConfig, score: CriticScore) {
    scal(config, AttentionKind::Channel, RewardKind::Both);
    config.model.critic_kind = CriticKind::Compatible;
    config.step.exploration = EXPLORATION;
    config.step.critic_score = score;
}

/// Channel attention whose agents learn from the self-critical estimator (no learned
/// critic): [`SELF_CRITICAL_PAIRS`] antithetic pairs at the exploration of [`EXPLORATION`],
/// scoring `score`.
fn self_critical(config: &mut TrainingConfig, score: CriticScore) {
    scal(config, AttentionKind::Channel, RewardKind::Both);
    config.step.exploration = EXPLORATION;
    config.step.self_critical_pairs = SELF_CRITICAL_PAIRS;
    config.step.critic_score = score;
}

/// The antithetic pairs `M` of the `channel-scst` variants. Chosen before any run, for
/// cost, not tuned: each pair is two forward passes without gradient, so two pairs about
/// double the quick profile's step, as far as the compatible critics' exploration goes with
/// its one.
pub const SELF_CRITICAL_PAIRS: usize = 2;

/// The exploration of the `channel-explore` variant: the standard deviation of the noise on
/// the attention logits. Chosen before any run, not tuned: 0.5 moves a map value of 0.5 by
/// about ±0.12 (one standard deviation), a change the classifier's logits can feel without
/// drowning the agents' own maps.
pub const EXPLORATION: f64 = 0.5;

/// Every variant, the baseline `none` first.
pub const VARIANTS: &[Variant] = &[
    Variant {
        name: "none",
        description: "no attention (the BN-neck baseline)",
        edit: |c| no_critic(c, AttentionKind::None),
    },
    Variant {
        name: "channel-nocritic",
        description: "channel attention trained by the ReID losses only",
        edit: |c| no_critic(c, AttentionKind::Channel),
    },
    Variant {
        name: "channel",
        description: "SCAL: channel attention with the critic, reward R_c + R_a",
        edit: |c| scal(c, AttentionKind::Channel, RewardKind::Both),
    },
    Variant {
        name: "channel-critic-first",
        description: "SCAL channel, the critics updated before the agents in each step",
        edit: |c| {
            scal(c, AttentionKind::Channel, RewardKind::Both);
            c.step.update_order = UpdateOrder::CriticFirst;
        },
    },
    Variant {
        name: "channel-explore",
        description: "SCAL channel with exploration: R and the critics' inputs from maps with \
                      N(0, 0.5²) noise on their logits, the agents' J_cri at their own maps",
        edit: |c| {
            scal(c, AttentionKind::Channel, RewardKind::Both);
            c.step.exploration = EXPLORATION;
        },
    },
    Variant {
        name: "channel-standardized",
        description: "SCAL channel, the critics' inputs standardised over the batch",
        edit: |c| {
            scal(c, AttentionKind::Channel, RewardKind::Both);
            c.model.critic_scaling = CriticScaling::BatchStandardized;
        },
    },
    Variant {
        name: "channel-standardized-explore",
        description: "SCAL channel, the critics' inputs standardised over the batch, with \
                      exploration (as channel-explore)",
        edit: |c| {
            scal(c, AttentionKind::Channel, RewardKind::Both);
            c.model.critic_scaling = CriticScaling::BatchStandardized;
            c.step.exploration = EXPLORATION;
        },
    },
    Variant {
        name: "channel-per-module",
        description: "SCAL channel, each critic taught its own module's reward R_c + R_a^l \
                      (the module's map against ones) instead of the shared R",
        edit: |c| {
            scal(c, AttentionKind::Channel, RewardKind::Both);
            c.step.critic_target = CriticTarget::PerModule;
        },
    },
    Variant {
        name: "channel-per-module-standardized",
        description: "SCAL channel, each critic taught its own module's reward (as \
                      channel-per-module), the critics' inputs standardised over the batch",
        edit: |c| {
            scal(c, AttentionKind::Channel, RewardKind::Both);
            c.step.critic_target = CriticTarget::PerModule;
            c.model.critic_scaling = CriticScaling::BatchStandardized;
        },
    },
    Variant {
        name: "channel-compatible",
        description: "channel attention with compatible critics Q = <A' - A, G(X, y)> + b \
                      learning the change of log p_y under exploration (as channel-explore), \
                      their push on each agent bounded by the ReID losses'",
        edit: |c| compatible(c, CriticScore::LogProb),
    },
    Variant {
        name: "channel-compatible-ap",
        description: "channel-compatible with the batch's average precision as the score \
                      (ReID's own metric) instead of log p_y",
        edit: |c| compatible(c, CriticScore::BatchAp),
    },
    Variant {
        name: "channel-scst",
        description: "channel attention without a learned critic: the agents follow the \
                      self-critical estimate (S(z+se) - S(z-se)) e / 2s of d log p_y / dz \
                      from antithetic pairs on their logits, bounded by the ReID losses' push",
        edit: |c| self_critical(c, CriticScore::LogProb),
    },
    Variant {
        name: "channel-scst-ap",
        description: "channel-scst with the batch's average precision as the score",
        edit: |c| self_critical(c, CriticScore::BatchAp),
    },
    Variant {
        name: "channel-cal",
        description: "channel attention without a critic, with counterfactual attention \
                      learning's effect loss CE(Y(A) - Y(uniform maps), y) (no learned judge)",
        edit: |c| {
            no_critic(c, AttentionKind::Channel);
            c.step.counterfactual = true;
        },
    },
    Variant {
        name: "channel-rc",
        description: "SCAL channel, reward R_c only",
        edit: |c| scal(c, AttentionKind::Channel, RewardKind::Correct),
    },
    Variant {
        name: "channel-ra",
        description: "SCAL channel, reward R_a only",
        edit: |c| scal(c, AttentionKind::Channel, RewardKind::Amelioration),
    },
    Variant {
        name: "channel-squared",
        description: "SCAL channel with the paper's squared Euclidean triplet distance",
        edit: |c| {
            scal(c, AttentionKind::Channel, RewardKind::Both);
            c.step.triplet.distance = TripletDistance::Squared;
        },
    },
    Variant {
        name: "spatial-nocritic",
        description: "spatial attention trained by the ReID losses only",
        edit: |c| no_critic(c, AttentionKind::Spatial),
    },
    Variant {
        name: "spatial",
        description: "SCAL: spatial attention with the critic, reward R_c + R_a",
        edit: |c| scal(c, AttentionKind::Spatial, RewardKind::Both),
    },
];

/// The baseline every other variant is paired with.
pub const BASELINE: &str = "none";

/// The variant named `name`.
///
/// # Errors
/// [`TrainError::UnknownName`] listing the known variants.
pub fn variant(name: &str) -> Result<&'static Variant, TrainError> {
    VARIANTS
        .iter()
        .find(|v| v.name == name.trim())
        .ok_or_else(|| TrainError::UnknownName {
            what: "variant",
            name: name.to_string(),
            expected: "none, channel-nocritic, channel, channel-critic-first, channel-explore, \
                       channel-standardized, channel-standardized-explore, channel-per-module, \
                       channel-per-module-standardized, channel-compatible, channel-compatible-ap, \
                       channel-scst, channel-scst-ap, channel-cal, channel-rc, channel-ra, \
                       channel-squared, spatial-nocritic, spatial",
        })
}

/// Mean and sample standard deviation (0 for one value).
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// Per-seed differences (variant − baseline, fractions), their mean and the 95 % confidence
/// interval of the mean (Student's t, n − 1 degrees of freedom; none with one pair).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairedMeasure {
    /// One difference per seed.
    pub differences: Vec<f64>,
    /// Their mean.
    pub mean: f64,
    /// The 95 % confidence interval of the mean, with two pairs or more.
    pub ci95: Option<[f64; 2]>,
}

impl PairedMeasure {
    /// The statistics of `differences`.
    pub fn of(differences: Vec<f64>) -> PairedMeasure {
        use statrs::distribution::{ContinuousCDF, StudentsT};
        let (mean, sd) = mean_std(&differences);
        let n = differences.len();
        let ci95 = (n >= 2).then(|| {
            let t = StudentsT::new(0.0, 1.0, (n - 1) as f64)
                .expect("positive degrees of freedom")
                .inverse_cdf(0.975);
            let half = t * sd / (n as f64).sqrt();
            [mean - half, mean + half]
        });
        PairedMeasure {
            differences,
            mean,
            ci95,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Profile;

    #[test]
    fn mean_and_spread() {
        let (m, s) = mean_std(&[0.5, 0.7, 0.9]);
        assert!((m - 0.7).abs() < 1e-12);
        assert!((s - 0.2).abs() < 1e-12);
        assert_eq!(mean_std(&[0.3]), (0.3, 0.0));
    }

    #[test]
    fn paired_interval_matches_scipy() {
        // scipy.stats.t.interval(0.95, 4, loc=mean, scale=sem) for these differences:
        // mean 0.012, interval [-0.00477396, 0.02877396] (sd 0.0135093, t 2.7764451).
        let m = PairedMeasure::of(vec![0.01, 0.03, -0.005, 0.02, 0.005]);
        assert!((m.mean - 0.012).abs() < 1e-12);
        let [lo, hi] = m.ci95.unwrap();
        assert!((lo - -0.004_773_957).abs() < 1e-8, "{lo}");
        assert!((hi - 0.028_773_957).abs() < 1e-8, "{hi}");
        assert!(
            PairedMeasure::of(vec![0.02]).ci95.is_none(),
            "one pair: no interval"
        );
    }

    #[test]
    fn every_variant_edits_what_its_name_says_and_stays_valid() {
        let base = TrainingConfig::profile(Profile::Quick);
        for v in VARIANTS {
            let config = v
                .configure(base.clone())
                .unwrap_or_else(|e| panic!("variant {}: {e}", v.name));
            let attention = match v.name.split('-').next().unwrap() {
                "none" => AttentionKind::None,
                "channel" => AttentionKind::Channel,
                "spatial" => AttentionKind::Spatial,
                other => panic!("variant {} names no attention kind ({other})", v.name),
            };
            assert_eq!(config.model.attention, attention, "{}", v.name);
            let critic =
                v.name != BASELINE && !v.name.ends_with("-nocritic") && !v.name.ends_with("-cal");
            assert_eq!(
                v.name.ends_with("-cal"),
                config.step.counterfactual,
                "{}",
                v.name
            );
            assert_eq!(config.step.critic, critic, "{}", v.name);
            let (reward, squared, first) = (
                config.step.reward,
                config.step.triplet.distance == TripletDistance::Squared,
                config.step.update_order == UpdateOrder::CriticFirst,
            );
            assert_eq!(
                v.name.ends_with("-rc"),
                reward == RewardKind::Correct,
                "{}",
                v.name
            );
            assert_eq!(
                v.name.ends_with("-ra"),
                reward == RewardKind::Amelioration,
                "{}",
                v.name
            );
            assert_eq!(v.name.ends_with("-squared"), squared, "{}", v.name);
            assert_eq!(v.name.ends_with("-critic-first"), first, "{}", v.name);
            assert_eq!(
                v.name.contains("-per-module"),
                config.step.critic_target == CriticTarget::PerModule,
                "{}",
                v.name
            );
            assert_eq!(
                v.name.contains("-compatible"),
                config.model.critic_kind == scal_model::CriticKind::Compatible
                    && config.step.exploration > 0.0,
                "{}",
                v.name
            );
            assert_eq!(
                v.name.ends_with("-ap"),
                config.step.critic_score == CriticScore::BatchAp,
                "{}",
                v.name
            );
            assert_eq!(
                v.name.contains("-scst"),
                config.step.self_critical_pairs > 0 && config.step.exploration > 0.0,
                "{}",
                v.name
            );
            assert_eq!(
                v.name.contains("-standardized"),
                config.model.critic_scaling == CriticScaling::BatchStandardized,
                "{}",
                v.name
            );
        }
        assert_eq!(variant(" channel ").unwrap().name, "channel");
        let names: Vec<&str> = VARIANTS.iter().map(|v| v.name).collect();
        match variant("channel-x") {
            // The error lists every variant, in order: the list cannot drift from VARIANTS.
            Err(TrainError::UnknownName { expected, .. }) => {
                assert_eq!(expected.replace(' ', ""), names.join(","));
            }
            other => panic!("{other:?}"),
        }
    }
}
