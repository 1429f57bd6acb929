//! The one place where the trainer's and the evaluator's types become the run files'
//! (`scal-run`'s, which the report and the commands read without this crate): a step's
//! report becomes a log line's [`StepMetrics`], an evaluation its [`Evaluation`], and an
//! evaluation's failure a [`TrainError`]. A change to `scal_model::objective::StepReport` or
//! `scal_infer::Evaluation` shows here, at compile time, instead of in `metrics.jsonl`.

use scal_infer::InferError;
use scal_model::objective::StepReport;
use scal_run::TrainError;
use scal_run::log::{Evaluation, Scores, StepMetrics};

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
        }
    }

    /// The log's types carry every field of the library's, under the same names, in the
    /// same order, formatted alike: converted, they serialise as the library's do.
    #[test]
    fn the_logged_step_and_evaluation_serialise_as_the_libraries_types() {
        let compatible = StepReport {
            critic_fit: Some(0.25),
            critic_push_scale: Some(vec![1.0, 0.5]),
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
