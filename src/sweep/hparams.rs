//! The sweep in TensorBoard's HParams tab: one experiment summary at the
//! sweep root with every swept key's domain, written before any trial
//! starts, and a session start and end in each trial's folder. With early
//! stopping, the metric "pruned at epoch" (see [`PRUNED_TAG`]) shows which
//! trials were pruned and where.

use std::collections::BTreeMap;
use std::path::Path;

use super::journal::{Journal, TrialState};
use super::Trial;
use crate::logging::hparams::{self as tb, Domain, HValue, HparamInfo, MetricInfo, SessionStatus};
use crate::logging::{now_secs, LogError};
use crate::plan::{Distribution, ExperimentPlan, SweepPlan};

/// The metric that marks pruned trials in the HParams table, declared when
/// the sweep stops trials early: the scalar `pruned_at_epoch` (the epochs a
/// pruned trial had at its rung, at step 0) in its run `<trial>/sweep`.
/// TensorBoard has no "pruned" session status.
pub(crate) const PRUNED_GROUP: &str = "sweep";
/// See [`PRUNED_GROUP`].
pub(crate) const PRUNED_TAG: &str = "pruned_at_epoch";

/// Values of one discrete axis, all of one kind for TensorBoard.
fn discrete(values: &[toml::Value]) -> Option<Domain> {
    let vals: Vec<HValue> = values.iter().map(HValue::from).collect();
    let same_kind = vals
        .windows(2)
        .all(|w| std::mem::discriminant(&w[0]) == std::mem::discriminant(&w[1]));
    same_kind.then_some(Domain::Discrete(vals))
}

/// The domain of one distribution.
fn distribution_domain(d: &Distribution) -> Option<Domain> {
    match d {
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
    }
}

/// Two domains as one: intervals span both, value lists are joined; a
/// mix has none.
fn union(a: Option<Domain>, b: Option<Domain>) -> Option<Domain> {
    match (a, b) {
        (None, b) => b,
        (
            Some(Domain::Interval { min, max }),
            Some(Domain::Interval {
                min: min2,
                max: max2,
            }),
        ) => Some(Domain::Interval {
            min: min.min(min2),
            max: max.max(max2),
        }),
        (Some(Domain::Discrete(mut a)), Some(Domain::Discrete(b))) => {
            for v in b {
                if !a.contains(&v) {
                    a.push(v);
                }
            }
            Some(Domain::Discrete(a))
        }
        _ => None,
    }
}

/// The one complete HParams experiment summary at the sweep root: every
/// swept key with its domain, and the metrics, before any trial starts.
pub(super) fn write_experiment(
    root: &Path,
    sweep: &SweepPlan,
    plan: &ExperimentPlan,
) -> Result<(), LogError> {
    let mut infos = Vec::new();
    let lists = sweep
        .grid
        .iter()
        .map(|a| (&a.key, &a.values))
        .chain(&sweep.zip);
    for (k, v) in lists {
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
    for axis in &sweep.random {
        // The cases of a conditional axis: the union of their ranges, or of
        // their values.
        let mut domain: Option<Domain> = None;
        for case in &axis.cases {
            domain = union(domain, distribution_domain(&case.distribution));
        }
        infos.push(HparamInfo {
            name: axis.key.clone(),
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
    if sweep.early_stop.is_some() {
        metrics.push(MetricInfo {
            group: PRUNED_GROUP.into(),
            tag: PRUNED_TAG.into(),
            display_name: "pruned at epoch".into(),
        });
    }
    tb::write_experiment(root, &infos, &metrics)
}

/// A trial's session start, unless the journal says it ran before (a
/// `running` line of its own; a rung decision's line, which a Slurm trial
/// may write before any follower has seen it run, does not count).
pub(super) fn session_start(trial: &Trial, sweep_root: &Path, journal: &Journal) {
    let started_before = journal
        .entries()
        .iter()
        .any(|e| e.trial == trial.index && e.state == TrialState::Running && e.rung.is_none());
    if started_before {
        return;
    }
    let hp: BTreeMap<String, HValue> = trial
        .params
        .iter()
        .map(|(k, v)| (k.clone(), HValue::from(v)))
        .collect();
    let _ = tb::write_session_start(&trial.dir(sweep_root), &hp, now_secs());
}

/// A trial's session end, when it is done, failed or pruned; a pruned
/// trial's `pruned_at` (the epochs at its rung) also goes in as the metric
/// "pruned at epoch".
pub(super) fn session_end(
    trial: &Trial,
    sweep_root: &Path,
    state: TrialState,
    pruned_at: Option<usize>,
) {
    let status = match state {
        TrialState::Done => SessionStatus::Success,
        TrialState::Failed => SessionStatus::Failure,
        // TensorBoard has no "pruned" status: the metric says it.
        TrialState::Pruned => SessionStatus::Aborted,
        _ => return,
    };
    let dir = trial.dir(sweep_root);
    if let (TrialState::Pruned, Some(epoch)) = (state, pruned_at) {
        let _ = tb::write_session_metric(&dir, PRUNED_GROUP, PRUNED_TAG, 0, epoch as f64);
    }
    let _ = tb::write_session_end(&dir, status, now_secs());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_pruned_trial_gets_the_pruned_at_epoch_run() {
        let root = tempfile::tempdir().unwrap();
        let trial = |index| Trial {
            index,
            id: format!("t{index}"),
            params: BTreeMap::new(),
        };
        session_end(&trial(0), root.path(), TrialState::Done, Some(3));
        session_end(&trial(1), root.path(), TrialState::Pruned, Some(3));
        let runs = |t: Trial| -> usize {
            std::fs::read_dir(t.dir(root.path()).join(PRUNED_GROUP))
                .map(|d| d.count())
                .unwrap_or(0)
        };
        assert_eq!(runs(trial(0)), 0);
        assert_eq!(runs(trial(1)), 1);
        // Both sessions ended: one event file each in the trial folder.
        for i in [0, 1] {
            let files = std::fs::read_dir(trial(i).dir(root.path())).unwrap();
            assert_eq!(
                files
                    .filter(|f| f.as_ref().unwrap().path().is_file())
                    .count(),
                1
            );
        }
    }
}
