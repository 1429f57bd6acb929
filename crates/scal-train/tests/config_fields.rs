//! Every field of the training configuration against the values a user can mistype (issue
//! 42, item 2): a field set on the command line is either refused with an error that names
//! it, or the configuration is valid and its run's first step does not panic (it may stop
//! with an error: a diverging loss, a missing dataset).

use std::path::Path;

use proptest::prelude::*;
use scal_train::config::Profile;
use scal_train::{Start, TrainingConfig};
use serde_json::Value;

use crate::common::{self, StopAtOnce};

/// The dotted path of every leaf of `v` (a value that is not an object).
fn leaves(v: &Value, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let here = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                leaves(child, &here, out);
            }
        }
        _ => out.push(path.to_string()),
    }
}

/// Every field of the configuration, from the configuration itself (a new field is covered
/// without editing this test).
fn fields() -> Vec<String> {
    let mut out = Vec::new();
    let quick = serde_json::to_value(TrainingConfig::profile(Profile::Quick)).unwrap();
    leaves(&quick, "", &mut out);
    out
}

/// The classes of mistyped values: zero, negative, not a number, infinities, huge, text, a
/// switch, an empty list, nothing, an object.
const VALUES: [&str; 13] = [
    "0",
    "-1",
    "NaN",
    "inf",
    "-inf",
    "1e300",
    "18446744073709551616",
    "1e400",
    "abc",
    "true",
    "[]",
    "null",
    "{}",
];

#[test]
fn every_field_is_found() {
    let fields = fields();
    for expected in [
        "seed",
        "data.root",
        "model.channel_hidden",
        "optim.epsilon",
        "step.triplet.margin",
        "step.planted.threshold",
        "eval.every_epochs",
        "devices",
    ] {
        assert!(
            fields.iter().any(|f| f == expected),
            "{expected}: {fields:?}"
        );
    }
}

/// The first step of `config`, stopped at once (as Ctrl-C stops it), in a new run folder.
fn first_step(config: &TrainingConfig, run: &Path) {
    let _ = scal_train::train(
        config,
        run,
        Start::New,
        &[burn::tensor::Device::flex()],
        &mut StopAtOnce,
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_field_set_to_any_value_is_refused_by_name_or_trains(
        field in proptest::sample::select(fields()),
        value in proptest::sample::select(VALUES.to_vec()),
    ) {
        let root = common::tiny_dataset();
        let mut overrides = common::tiny_overrides(&root, &[("optim.epochs", "1")]);
        overrides.push((field.clone(), value.to_string()));
        match TrainingConfig::resolve(Profile::Quick, None, &overrides) {
            Err(e) => {
                let message = e.to_string();
                let last = field.rsplit('.').next().unwrap();
                prop_assert!(
                    message.contains(&field) || message.contains(last),
                    "{field}={value}: the error does not name the field: {message}"
                );
            }
            Ok(config) => {
                let dir = tempfile::tempdir().unwrap();
                first_step(&config, &dir.path().join("run"));
            }
        }
    }
}

/// The values trial 4 found accepted or panicking (C6, C13, C14), each refused by name.
#[test]
fn zero_widths_negative_margins_and_a_critic_without_attention_are_refused() {
    let root = common::tiny_dataset();
    for (field, value, also) in [
        ("model.channel_hidden", "0", None),
        ("model.critic_hidden", "0", None),
        ("model.base_width", "0", None),
        ("model.spatial_reduction", "0", None),
        ("step.triplet.margin", "-1", None),
        ("optim.epsilon", "0", None),
        ("optim.epochs", "100001", None),
        ("data.padding", "100000", None),
        ("step.critic", "true", Some(("model.attention", "none"))),
    ] {
        let mut overrides = common::tiny_overrides(&root, &[]);
        if let Some((k, v)) = also {
            overrides.push((k.to_string(), v.to_string()));
        }
        overrides.push((field.to_string(), value.to_string()));
        let err = TrainingConfig::resolve(Profile::Quick, None, &overrides)
            .expect_err(field)
            .to_string();
        assert!(err.contains(field), "{field}={value}: {err}");
    }
}
