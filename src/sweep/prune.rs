//! Early stopping of a sweep's running trials, however they run: each
//! trial's metric read from its folder's `metrics.csv`, the rung rule of
//! [`super::asha`] applied, and every decision journaled before it is
//! acted on. The records are restored from the journal, so a resumed sweep
//! (or another shell following a Slurm sweep) decides as the first one
//! would have.

use std::collections::BTreeMap;
use std::path::Path;

use super::asha::{Asha, Decision, EarlyStop, EarlyStopKind, RungRecord};
use super::journal::{Entry, Journal, TrialState};
use super::scheduler::Finished;
use super::summary::read_metric;
use super::Trial;
use crate::plan::{EarlyStopPlan, SweepPlan};
use crate::rundir::RunDir;

/// The rung rule of `[sweep.early_stop]`.
pub fn rule(e: &EarlyStopPlan) -> EarlyStop {
    EarlyStop {
        kind: if e.hyperband {
            EarlyStopKind::Hyperband
        } else {
            EarlyStopKind::Asha
        },
        min_epochs: e.min_epochs,
        reduction_factor: e.reduction_factor,
        max_epochs: e.max_epochs,
    }
}

/// The rung records of a sweep with `[sweep.early_stop]`.
pub struct Pruner {
    asha: Asha,
    metric: String,
    /// Size of each trial's metrics.csv when last read: unchanged files
    /// are not read again.
    seen: BTreeMap<usize, u64>,
}

impl Pruner {
    /// The pruner of a sweep, with the decisions its journal holds; `None`
    /// without `[sweep.early_stop]`.
    pub fn new(sweep: &SweepPlan, journal: &Journal) -> Option<Pruner> {
        let plan = rule(&sweep.early_stop?);
        Some(Pruner {
            asha: Asha::restore(plan, sweep.monitor.maximize, journal.rungs()),
            metric: sweep.monitor.metric.clone(),
            seen: BTreeMap::new(),
        })
    }

    /// Decide the rungs `trial` has reached since it was last checked,
    /// journal each decision and print it; the epochs of its rung when it is
    /// to stop (now or at an earlier check).
    pub fn check(&mut self, sweep_dir: &Path, journal: &Journal, trial: &Trial) -> Option<usize> {
        if let Some(epoch) = self.asha.pruned_at(trial.index) {
            return Some(epoch);
        }
        let csv = RunDir::at_existing(&trial.dir(sweep_dir)).metrics_csv();
        let size = std::fs::metadata(&csv).map_or(0, |m| m.len());
        if self.seen.insert(trial.index, size) == Some(size) {
            return None;
        }
        let values = read_metric(&csv, &self.metric);
        for r in self.asha.observe(trial.index, &values) {
            let mut e = Entry::new(trial.index, &trial.id, TrialState::Running);
            crate::outln!(
                "       {} rung {} (epoch {}): {} {:.4}, {}",
                trial.folder_name(),
                self.rung_number(&r),
                r.epoch,
                self.metric,
                r.value,
                match r.decision {
                    Decision::Continue => "continues",
                    Decision::Prune => "pruned",
                    Decision::Pause => "paused",
                }
            );
            e.rung = Some(r);
            let _ = journal.append(&e);
        }
        self.asha.pruned_at(trial.index)
    }

    /// 1 for a bracket's first rung.
    fn rung_number(&self, r: &RungRecord) -> usize {
        self.asha
            .plan()
            .rungs(r.bracket)
            .iter()
            .position(|&e| e == r.epoch)
            .map_or(0, |i| i + 1)
    }

    /// The rung a trial was pruned at, if it was.
    pub fn pruned_at(&self, trial: usize) -> Option<usize> {
        self.asha.pruned_at(trial)
    }

    /// A trial that ended after a rung pruned it is `pruned` (unless it
    /// completed first), with the epoch of that rung.
    pub fn ended(&self, f: &mut Finished) {
        let Some(epoch) = self.pruned_at(f.trial.index) else {
            return;
        };
        if f.state == TrialState::Done {
            return;
        }
        f.state = TrialState::Pruned;
        f.epoch = Some(epoch);
        f.message = Some(format!(
            "pruned at epoch {epoch}: its {} was not in the top 1/{} of the trials at that rung",
            self.metric,
            self.asha.plan().reduction_factor
        ));
        f.exit_code = None;
    }
}
