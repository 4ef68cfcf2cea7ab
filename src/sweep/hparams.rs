//! The sweep in TensorBoard's HParams tab: one experiment summary at the
//! sweep root with every swept key's domain, written before any trial
//! starts, and a session start and end in each trial's folder.

use std::collections::BTreeMap;
use std::path::Path;

use super::journal::{Journal, TrialState};
use super::Trial;
use crate::logging::hparams::{self as tb, Domain, HValue, HparamInfo, MetricInfo, SessionStatus};
use crate::logging::LogError;
use crate::plan::{Distribution, ExperimentPlan, SweepPlan};

fn hvalue(v: &toml::Value) -> HValue {
    match v {
        toml::Value::Float(f) => HValue::Number(*f),
        toml::Value::Integer(i) => HValue::Number(*i as f64),
        toml::Value::Boolean(b) => HValue::Bool(*b),
        toml::Value::String(s) => HValue::Text(s.clone()),
        other => HValue::Text(other.to_string()),
    }
}

/// Values of one discrete axis, all of one kind for TensorBoard.
fn discrete(values: &[toml::Value]) -> Option<Domain> {
    let vals: Vec<HValue> = values.iter().map(hvalue).collect();
    let same_kind = vals
        .windows(2)
        .all(|w| std::mem::discriminant(&w[0]) == std::mem::discriminant(&w[1]));
    same_kind.then_some(Domain::Discrete(vals))
}

/// The one complete HParams experiment summary at the sweep root: every
/// swept key with its domain, and the metrics, before any trial starts.
pub(super) fn write_experiment(
    root: &Path,
    sweep: &SweepPlan,
    plan: &ExperimentPlan,
) -> Result<(), LogError> {
    let mut infos = Vec::new();
    for (k, v) in sweep.grid.iter().chain(&sweep.zip) {
        let mut uniq: Vec<toml::Value> = Vec::new();
        for x in v {
            if !uniq.contains(x) {
                uniq.push(x.clone());
            }
        }
        infos.push(HparamInfo {
            name: k.clone(),
            domain: discrete(&uniq),
        });
    }
    for (k, d) in &sweep.random {
        let domain = match d {
            Distribution::Uniform { low, high } | Distribution::LogUniform { low, high } => {
                Some(Domain::Interval {
                    min: *low,
                    max: *high,
                })
            }
            Distribution::Int { low, high } => Some(Domain::Interval {
                min: *low as f64,
                max: *high as f64,
            }),
            Distribution::Choice(values) => discrete(values),
        };
        infos.push(HparamInfo {
            name: k.clone(),
            domain,
        });
    }
    let has_val = plan.metrics.iter().any(|m| m.starts_with("val_"));
    let mut metrics = Vec::new();
    for (group, on) in [("validation", has_val), ("train", true)] {
        if !on {
            continue;
        }
        for tag in ["epoch_accuracy", "epoch_loss"] {
            metrics.push(MetricInfo {
                group: group.into(),
                tag: tag.into(),
                display_name: format!(
                    "{} {}",
                    if group == "train" { "train" } else { "val" },
                    &tag[6..]
                ),
            });
        }
    }
    tb::write_experiment(root, &infos, &metrics)
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A trial's session start, unless the journal says it ran before.
pub(super) fn session_start(trial: &Trial, sweep_root: &Path, journal: &Journal) {
    let started_before = journal
        .entries()
        .iter()
        .any(|e| e.trial == trial.index && e.state == TrialState::Running);
    if started_before {
        return;
    }
    let hp: BTreeMap<String, HValue> = trial
        .params
        .iter()
        .map(|(k, v)| (k.clone(), hvalue(v)))
        .collect();
    let _ = tb::write_session_start(&trial.dir(sweep_root), &hp, now_secs());
}

/// A trial's session end, when it is done or failed.
pub(super) fn session_end(trial: &Trial, sweep_root: &Path, state: TrialState) {
    let status = match state {
        TrialState::Done => SessionStatus::Success,
        TrialState::Failed => SessionStatus::Failure,
        _ => return,
    };
    let _ = tb::write_session_end(&trial.dir(sweep_root), status, now_secs());
}
