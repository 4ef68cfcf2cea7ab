//! TPE's next trial: the history it is fitted to, and the trial it
//! proposes, written to its folder and journaled. A local sweep proposes
//! as its slots free up; on Slurm each array task claims its own trial
//! when it starts ([`claim`]), one task at a time under
//! `<sweep>/.propose.lock`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::asha::Decision;
use super::error::SweepError;
use super::folder::{open, write_trial, Sweep, SweepDir};
use super::journal::{Entry, Journal, TrialState};
use super::outcome::finish_trial;
use super::scheduler::Finished;
use super::summary::{self, TrialResult};
use super::tpe::{Observation, Outcome};
use super::{axis_names, tpe_next, trial_config, trial_id, Trial};
use crate::config;
use crate::rundir::{self, RunDir, Status};
use crate::vocab::Strategy;

/// Every trial of `s` as TPE sees it, by its state in `latest`: finished
/// ones by their best metric, pruned (and paused) ones at the rung that
/// stopped them, and those that `pending` accepts as pending (TPE's
/// constant liar); the rest (failed ones) not at all.
pub(super) fn history(
    s: &Sweep,
    journal: &Journal,
    latest: &BTreeMap<usize, Entry>,
    pending: impl Fn(&TrialResult) -> bool,
) -> Vec<Observation> {
    let monitor = &s.sweep.monitor;
    let sign = if monitor.maximize { -1.0 } else { 1.0 };
    let rungs = journal.rungs();
    summary::collect(&s.dir.root, &s.trials, latest, &s.sweep)
        .into_iter()
        .filter_map(|r| {
            let outcome = match r.state {
                TrialState::Done => Outcome::Complete {
                    loss: sign * r.best?,
                },
                // A paused trial counts at its rung, as a pruned one.
                TrialState::Pruned | TrialState::Paused => {
                    let at = rungs.iter().rev().find(|x| {
                        x.trial == r.trial.index
                            && matches!(x.decision, Decision::Prune | Decision::Pause)
                    })?;
                    Outcome::Pruned {
                        epochs: at.epoch,
                        loss: sign * at.value,
                    }
                }
                _ if pending(&r) => Outcome::Pending,
                _ => return None,
            };
            Some(Observation {
                params: r.trial.params,
                outcome,
            })
        })
        .collect()
}

/// Trial `index`, proposed by TPE from `history` ([`tpe_next`]: never a
/// point the sweep already has while new ones are left) and added to
/// `s.trials`, its folder written and its `pending` line journaled.
/// `Err(why)` when its config does not plan; it is journaled with its
/// values all the same.
pub(super) fn propose(
    s: &mut Sweep,
    journal: &Journal,
    index: usize,
    history: &[Observation],
) -> (Trial, Result<(), String>) {
    let mut seen: BTreeSet<String> = s.trials.iter().map(|t| t.id.clone()).collect();
    let params = tpe_next(&s.sweep, index, history, &mut seen);
    let t = Trial {
        index,
        id: trial_id(&params),
        params,
    };
    s.trials.push(t.clone());
    let text = config::to_toml(&s.plan.spec);
    let written = trial_config(&s.dir.sweep_file(), &text, &t)
        .map_err(|e| format!("{:?}", miette::Report::new(e)))
        .and_then(|(_, plan)| write_trial(&s.dir, &t, &plan).map_err(|e| e.to_string()));
    if written.is_err() {
        let mut e = Entry::new(t.index, &t.id, TrialState::Pending);
        e.params = Some(t.params.clone());
        let _ = journal.append(&e);
    }
    (t, written)
}

/// `trial-NNN`: the line of `slurm/trials.txt` for a trial of a TPE sweep
/// that no array task has chosen yet (its folder name lacks the id that
/// its values will give it).
pub fn unchosen_name(index: usize) -> String {
    format!("trial-{index:03}")
}

/// The index of an [`unchosen_name`].
fn unchosen_index(name: &str) -> Option<usize> {
    let digits = name.strip_prefix("trial-")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The folder that `runner run --trial DIR` runs: DIR itself, or for
/// `<sweep>/trial-NNN` of a TPE sweep on Slurm ([`unchosen_name`], the
/// trials.txt line of a trial no task has chosen) the folder of trial NNN.
/// TPE chooses it now, from what the sweep's folders and journal say (a
/// trial whose meta.json says completed counts as done though no follower
/// recorded it, one a rung pruned at that rung, the unfinished ones as
/// pending), unless a task chose it before (a requeued or resubmitted
/// task). Tasks claim one at a time, under `<sweep>/.propose.lock`; where
/// that lock cannot be taken, a task says so and chooses without it.
///
/// When TPE's values do not plan, the trial is recorded as failed and the
/// error says why.
pub fn claim(dir: &Path) -> Result<PathBuf, SweepError> {
    let name = dir.file_name().and_then(|n| n.to_str());
    let (Some(sweep_dir), Some(index)) = (dir.parent(), name.and_then(unchosen_index)) else {
        return Ok(dir.to_path_buf());
    };
    let root = SweepDir {
        root: sweep_dir.to_path_buf(),
    };
    if dir.exists() || !root.meta().is_file() {
        return Ok(dir.to_path_buf());
    }
    let lock_path = sweep_dir.join(".propose.lock");
    // Where the sweep's filesystem refuses locks, the task still chooses
    // (as a trial that cannot lock its rungs still trains).
    let _lock = rundir::lock(&lock_path)
        .map_err(|e| {
            crate::errln!(
                "cannot take {} ({e}); choosing without it: tasks that start together may choose the same point",
                lock_path.display()
            )
        })
        .ok();
    let mut s = open(sweep_dir)?;
    if let Some(t) = s.trials.iter().find(|t| t.index == index) {
        return Ok(t.dir(sweep_dir));
    }
    if s.sweep.strategy != Strategy::Tpe || index >= s.meta.trials {
        return Ok(dir.to_path_buf());
    }
    let journal = s.dir.journal();
    let latest = as_trials_say(&s, &journal);
    let hist = history(&s, &journal, &latest, |r| {
        matches!(
            r.state,
            TrialState::Pending | TrialState::Running | TrialState::Stopped
        )
    });
    let known = |pending: bool| {
        hist.iter()
            .filter(|o| matches!(o.outcome, Outcome::Pending) == pending)
            .count()
    };
    let (t, written) = propose(&mut s, &journal, index, &hist);
    crate::outln!(
        "TPE chose trial {index} from {} finished and {} pending trial(s): {}",
        known(false),
        known(true),
        t.params_text()
    );
    match written {
        Ok(()) => Ok(t.dir(sweep_dir)),
        Err(why) => {
            let f = Finished {
                trial: t.clone(),
                state: TrialState::Failed,
                exit_code: None,
                message: Some(why.clone()),
                seconds: 0.0,
                epoch: None,
            };
            finish_trial(&s, &journal, &f, &axis_names(&s.sweep));
            Err(SweepError::ChosenTrialInvalid {
                trial: t.folder_name(),
                why,
            })
        }
    }
}

/// Each trial's latest journal entry, brought up to date from its folder
/// where the journal has not caught up (on Slurm the journal learns of an
/// ended trial only from a process following the sweep): meta.json
/// completed is done, failed is failed, and a rung's prune decision is
/// pruned.
fn as_trials_say(s: &Sweep, journal: &Journal) -> BTreeMap<usize, Entry> {
    let mut latest = journal.latest();
    let rungs = journal.rungs();
    for t in &s.trials {
        if latest.get(&t.index).is_some_and(|e| e.state.is_ended()) {
            continue;
        }
        let meta = RunDir::at_existing(&t.dir(&s.dir.root)).read_meta().ok();
        let now = match meta.map(|m| m.status) {
            Some(Status::Completed) => TrialState::Done,
            Some(Status::Failed) => TrialState::Failed,
            _ if rungs
                .iter()
                .any(|r| r.trial == t.index && matches!(r.decision, Decision::Prune)) =>
            {
                TrialState::Pruned
            }
            _ => continue,
        };
        latest.insert(t.index, Entry::new(t.index, &t.id, now));
    }
    latest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchosen_names_round_trip_and_chosen_ones_are_not_unchosen() {
        assert_eq!(unchosen_name(7), "trial-007");
        assert_eq!(unchosen_index("trial-007"), Some(7));
        assert_eq!(unchosen_index(&unchosen_name(1234)), Some(1234));
        assert_eq!(unchosen_index("trial-007-3f9a1c"), None);
        assert_eq!(unchosen_index("trial-"), None);
        assert_eq!(unchosen_index("v0001"), None);
    }
}
