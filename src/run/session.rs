//! A run in TensorBoard's HParams tab, as a Lightning or Keras run logs its
//! hyperparameters: a session whose start holds every key of the resolved
//! config that says what was trained, and whose end says how the run ended.
//! `tensorboard --logdir runs` then lists each run with its values and its
//! last metrics. A sweep's trials are the sweep's sessions (its own
//! experiment summary says which keys it varies), not these.

use std::collections::BTreeMap;

use crate::config;
use crate::logging::hparams::{self as tb, HValue, SessionStatus};
use crate::logging::{now_secs, LogError};
use crate::plan::ExperimentPlan;
use crate::rundir::{Meta, RunDir, Status};

/// Keys that say what a run is called, where and how it ran, or what it
/// records, not what it trained: not hyperparameters.
const NOT_HPARAMS: [&str; 9] = [
    "experiment.name",
    "experiment.description",
    "runtime",
    "sweep",
    "data.prefetch",
    "data.cache",
    "callbacks.checkpoint",
    "callbacks.tensorboard",
    "callbacks.terminate_on_nan",
];

/// The run's hyperparameters: every value of its resolved config but
/// [`NOT_HPARAMS`], named by its key path as `--set`, sweeps and `runner
/// compare` name keys (`optimizer.learning_rate`, `model.layers.3.rate`).
/// Lists of values (`model.input_shape`) are one value, their TOML text.
pub(super) fn hparams(plan: &ExperimentPlan) -> BTreeMap<String, HValue> {
    config::flatten(&config::to_table(&plan.spec))
        .into_iter()
        .filter(|(k, _)| !NOT_HPARAMS.iter().any(|n| config::under(k, n)))
        .map(|(k, v)| (k, HValue::from(&v)))
        .collect()
}

/// The session starts, or starts again: its start holds the plan's values
/// (after `--set train.epochs=N` on a resume, the new N) and the run's
/// first start time, and an end from an earlier stop is taken back.
pub(super) fn start(run: &RunDir, plan: &ExperimentPlan, meta: &Meta) {
    let started = unix_seconds(&meta.start_time);
    let written = tb::write_session_start(run.root(), &hparams(plan), started)
        .and_then(|()| tb::clear_session_end(run.root()));
    warn(written);
}

/// The session ends as the run did: completed, failed, or stopped (an
/// interruption that `--resume` continues shows as unknown, as TensorBoard
/// has no "stopped").
pub(super) fn end(run: &RunDir, meta: &Meta) {
    let status = match meta.status {
        Status::Completed => SessionStatus::Success,
        Status::Failed => SessionStatus::Failure,
        Status::Stopped => SessionStatus::Aborted,
        Status::Running => return,
    };
    let ended = meta.end_time.as_deref().map_or_else(now_secs, unix_seconds);
    warn(tb::write_session_end(run.root(), status, ended));
}

/// The HParams tab is a view of the run, not the run: a write that fails
/// is reported, and training goes on.
fn warn(result: Result<(), LogError>) {
    if let Err(e) = result {
        crate::errln!("warning: the run's TensorBoard HParams entry is not written: {e}");
    }
}

fn unix_seconds(rfc3339: &str) -> f64 {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp_nanos() as f64 / 1e9)
        .unwrap_or_else(|_| now_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(text: &str) -> ExperimentPlan {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.toml");
        std::fs::write(&path, text).unwrap();
        let loaded = config::load(&path, &config::LoadOptions::default()).unwrap();
        crate::plan::plan(&loaded).unwrap()
    }

    #[test]
    fn hparams_are_the_resolved_keys_that_say_what_was_trained() {
        let plan = plan_of(include_str!("../../experiments/quickstart.toml"));
        let hp = hparams(&plan);
        assert_eq!(
            hp["optimizer.learning_rate"],
            HValue::Number(2e-3),
            "{hp:?}"
        );
        assert_eq!(hp["optimizer.type"], HValue::Text("adam".into()));
        assert_eq!(hp["train.batch_size"], HValue::Number(32.0));
        assert_eq!(hp["augment.horizontal_flip"], HValue::Bool(true));
        assert_eq!(hp["experiment.seed"], HValue::Number(7.0));
        assert_eq!(hp["model.input_shape"], HValue::Text("[32, 32, 3]".into()));
        // Layers by index, as `--set` names them; defaults resolved.
        assert_eq!(hp["model.layers.0.filters"], HValue::Number(16.0));
        assert_eq!(hp["model.layers.0.stride"], HValue::Number(1.0));
        assert_eq!(hp["model.layers.6.type"], HValue::Text("dropout".into()));
        assert_eq!(hp["callbacks.early_stopping.patience"], HValue::Number(3.0));
        // Its name, where and how it ran, what it records and its sweep
        // are not hparams.
        for k in hp.keys() {
            assert!(!NOT_HPARAMS.iter().any(|n| config::under(k, n)), "{k}");
        }
        for k in [
            "experiment.name",
            "data.prefetch",
            "runtime.threads",
            "sweep.strategy",
        ] {
            assert!(!hp.contains_key(k), "{k}");
        }
        assert!(hp.keys().all(|k| !k.starts_with("callbacks.checkpoint")));
    }
}
