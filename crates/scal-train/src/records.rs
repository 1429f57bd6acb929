//! The one place where the trainer's and the evaluator's types become the run files'
//! (`scal-run`'s, which the report and the commands read without this crate): a step's
//! report becomes a log line's [`StepMetrics`], an evaluation its [`Evaluation`], and an
//! evaluation's failure a [`TrainError`]; the other way, `config.json`'s step section becomes
//! the library's [`StepConfig`]. A change to `scal_model::objective::StepReport`, `StepConfig`
//! or `scal_infer::Evaluation` shows here, at compile time, instead of in `metrics.jsonl` or
//! `config.json`.

use scal_infer::InferError;
use scal_model::objective::{self, StepConfig, StepReport};
use scal_run::TrainError;
use scal_run::log::{Evaluation, Scores, StepMetrics};
use scal_run::step::{self as options, StepOptions};

/// `config.json`'s step section as the library's step configuration.
pub fn step_config(step: &StepOptions) -> StepConfig {
    let StepOptions {
        lambda,
        label_smoothing,
        triplet,
        critic,
        reward,
        update_order,
        planted,
        exploration,
        critic_target,
        critic_score,
        self_critical_pairs,
        counterfactual,
    } = step.clone();
    StepConfig {
        lambda,
        label_smoothing,
        triplet,
        critic,
        reward,
        update_order: match update_order {
            options::UpdateOrder::Joint => objective::UpdateOrder::Joint,
            options::UpdateOrder::CriticFirst => objective::UpdateOrder::CriticFirst,
        },
        planted,
        exploration,
        critic_target: match critic_target {
            options::CriticTarget::Shared => objective::CriticTarget::Shared,
            options::CriticTarget::PerModule => objective::CriticTarget::PerModule,
        },
        critic_score: match critic_score {
            options::CriticScore::LogProb => objective::CriticScore::LogProb,
            options::CriticScore::BatchAp => objective::CriticScore::BatchAp,
        },
        self_critical_pairs,
        counterfactual,
    }
}

/// A step's report as the log keeps it.
pub fn step_metrics(report: &StepReport) -> StepMetrics {
    let StepReport {
        loss,
        triplet,
        classification,
        critic_objective,
        critic_mse,
        correct_rate,
        amelioration_rate,
        mean_value,
        critic_error,
        value_by_reward,
        reward_counts,
        critic_fit,
        critic_push_scale,
        counterfactual,
    } = report.clone();
    StepMetrics {
        loss,
        triplet,
        classification,
        critic_objective,
        critic_mse,
        correct_rate,
        amelioration_rate,
        mean_value,
        critic_error,
        value_by_reward,
        reward_counts,
        critic_fit,
        critic_push_scale,
        counterfactual,
    }
}

/// Scores as the log keeps them.
pub fn scores(scores: &scal_infer::Scores) -> Scores {
    let scal_infer::Scores {
        rank1,
        rank5,
        rank10,
        map,
        minp,
    } = *scores;
    Scores {
        rank1,
        rank5,
        rank10,
        map,
        minp,
    }
}

/// An evaluation as the log keeps it.
pub fn evaluation(evaluation: &scal_infer::Evaluation) -> Evaluation {
    let scal_infer::Evaluation {
        plain,
        reranked,
        seconds,
    } = evaluation;
    Evaluation {
        plain: scores(plain),
        reranked: reranked.as_ref().map(scores),
        seconds: *seconds,
    }
}

/// Why embedding or evaluating failed, as a run's error: data, model and evaluation errors
/// keep their own variants (and the hints the command line gives for them); the rest
/// becomes [`TrainError::Embedding`] with the error's message and its causes.
pub fn train_error(error: InferError) -> TrainError {
    match error {
        InferError::Data(e) => TrainError::Data(e),
        InferError::Eval(e) => TrainError::Eval(e),
        InferError::Model(e) => TrainError::Model(e),
        other => {
            let mut message = other.to_string();
            let mut source = std::error::Error::source(&other);
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            TrainError::Embedding { message }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> StepReport {
        StepReport {
            loss: 10.895_39,
            triplet: 3.170_669,
            classification: 4.603_307_7,
            critic_objective: Some(0.116_545_48),
            critic_mse: None,
            correct_rate: Some(0.015_625),
            amelioration_rate: Some(0.5),
            mean_value: Some(-0.023_309_1),
            critic_error: None,
            value_by_reward: vec![[Some(0.065_534_59), None, Some(0.065_748_334)]],
            reward_counts: vec![32, 31, 1],
            critic_fit: None,
            critic_push_scale: None,
            counterfactual: None,
        }
    }

    /// The log's types carry every field of the library's, under the same names, in the
    /// same order, formatted alike: converted, they serialise as the library's do.
    #[test]
    fn the_logged_step_and_evaluation_serialise_as_the_libraries_types() {
        let compatible = StepReport {
            critic_fit: Some(0.25),
            critic_push_scale: Some(vec![1.0, 0.5]),
            counterfactual: Some(2.75),
            ..report()
        };
        for r in [report(), compatible] {
            assert_eq!(
                serde_json::to_string(&step_metrics(&r)).unwrap(),
                serde_json::to_string(&r).unwrap()
            );
        }
        let s = scal_infer::Scores {
            rank1: 0.5,
            rank5: 0.75,
            rank10: 1.0,
            map: 0.375,
            minp: 0.125,
        };
        for reranked in [None, Some(s)] {
            let e = scal_infer::Evaluation {
                plain: s,
                reranked,
                seconds: 2.5,
            };
            assert_eq!(
                serde_json::to_string(&evaluation(&e)).unwrap(),
                serde_json::to_string(&e).unwrap()
            );
        }
    }

    /// `config.json`'s defaults (what an older file without a field means) are the
    /// library's: the paper's method on both sides.
    #[test]
    fn the_step_sections_defaults_are_the_librarys() {
        assert_eq!(step_config(&StepOptions::new()), StepConfig::new());
    }

    /// Every choice of the step section converts to the library's choice of the same name, so
    /// that a `config.json` means the same to the run's file and to the step.
    #[test]
    fn the_step_sections_choices_convert_to_the_library_choices_of_their_names() {
        use options::{CriticScore, CriticTarget, UpdateOrder};
        for order in [UpdateOrder::Joint, UpdateOrder::CriticFirst] {
            let step = StepOptions::new().with_update_order(order);
            assert_eq!(json(&order), json(&step_config(&step).update_order));
        }
        for target in [CriticTarget::Shared, CriticTarget::PerModule] {
            let step = StepOptions::new().with_critic_target(target);
            assert_eq!(json(&target), json(&step_config(&step).critic_target));
        }
        for score in [CriticScore::LogProb, CriticScore::BatchAp] {
            let step = StepOptions::new().with_critic_score(score);
            assert_eq!(json(&score), json(&step_config(&step).critic_score));
        }
        // And the whole section reads back as the library's configuration.
        let step = StepOptions::new()
            .with_lambda(0.5)
            .with_exploration(0.25)
            .with_update_order(UpdateOrder::CriticFirst)
            .with_critic_score(CriticScore::BatchAp)
            .with_self_critical_pairs(3)
            .with_counterfactual(true);
        let text = serde_json::to_string(&step).unwrap();
        let library: StepConfig = serde_json::from_str(&text).unwrap();
        assert_eq!(library, step_config(&step));
        assert_eq!(serde_json::to_string(&library).unwrap(), text);
    }

    fn json(value: &impl serde::Serialize) -> String {
        serde_json::to_string(value).unwrap()
    }

    #[test]
    fn an_embedding_failure_keeps_its_message_and_data_errors_their_variant() {
        let image = std::path::PathBuf::from("q/0001_c1s1_000151_00.jpg");
        let error = InferError::NonFiniteFeature {
            image: image.clone(),
        };
        let said = error.to_string();
        let TrainError::Embedding { message } = train_error(error) else {
            panic!("an embedding failure")
        };
        assert_eq!(message, said);
        let run_error = TrainError::Embedding { message };
        assert!(
            run_error.to_string().starts_with(
                "evaluating the model: the feature of q/0001_c1s1_000151_00.jpg is not finite"
            ),
            "{run_error}"
        );
        let readback = InferError::Readback {
            problem: "not f32".into(),
        };
        assert!(matches!(
            train_error(readback),
            TrainError::Embedding { message } if message.contains("not f32")
        ));
    }
}
