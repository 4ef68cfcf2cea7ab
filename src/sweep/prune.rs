//! Early stopping of a sweep's trials, however they run: each trial's
//! metric read from its folder's `metrics.csv`, the rung rule of
//! [`super::asha`] ([`Pruner`], the stopping variant) or of
//! [`super::promotion`] ([`Promoter`], the promotion variant) applied,
//! and every decision journaled before it is acted on. The records are
//! restored from the journal, so a resumed sweep (or another shell
//! following a Slurm sweep) decides as the first one would have.

use std::collections::BTreeMap;
use std::path::Path;

use super::asha::{Asha, Decision, EarlyStop, RungRecord};
use super::journal::{Entry, Journal, TrialState};
use super::promotion::{Next, Promotions};
use super::scheduler::Finished;
use super::summary::read_metric;
use super::Trial;
use crate::plan::SweepPlan;
use crate::rundir::{self, RunDir};
use crate::vocab::HalvingVariant;

/// The rung records of a sweep with `[sweep.early_stop]`.
pub struct Pruner {
    asha: Asha,
    metric: String,
    /// Size of each trial's metrics.csv when last read: unchanged files
    /// are not read again.
    seen: BTreeMap<usize, u64>,
    /// Size of the journal when the records were last read from it.
    journal_bytes: u64,
}

impl Pruner {
    /// The pruner of a sweep, with the decisions its journal holds; `None`
    /// without `[sweep.early_stop]`.
    pub fn new(sweep: &SweepPlan, journal: &Journal) -> Option<Pruner> {
        let e = sweep.early_stop?;
        if e.variant != HalvingVariant::Stopping {
            return None;
        }
        let plan = EarlyStop::of(&e);
        Some(Pruner {
            journal_bytes: journal.bytes(),
            asha: Asha::restore(plan, sweep.monitor.maximize, journal.rungs()),
            metric: sweep.monitor.metric.clone(),
            seen: BTreeMap::new(),
        })
    }

    /// Decide the rungs `trial` has reached since it was last checked,
    /// journal each decision and print it; the epochs of its rung when it is
    /// to stop (now or at an earlier check). Decided under the journal's
    /// [rungs lock](Journal::rungs_lock), after reading the decisions that
    /// other processes (Slurm trials judging themselves) have journaled.
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
        let _lock = rundir::lock(&journal.rungs_lock()).ok();
        let bytes = journal.bytes();
        if bytes != self.journal_bytes {
            self.asha = Asha::restore(
                self.asha.plan().clone(),
                self.asha.maximize(),
                journal.rungs(),
            );
        }
        for r in self.asha.observe(trial.index, &values) {
            print_record(trial, self.asha.plan(), &self.metric, &r);
            journal_rung(journal, trial, r);
        }
        self.journal_bytes = journal.bytes();
        self.asha.pruned_at(trial.index)
    }

    /// The rung a trial was pruned at, if it was.
    pub fn pruned_at(&self, trial: usize) -> Option<usize> {
        self.asha.pruned_at(trial)
    }

    /// A trial that ended after a rung pruned it is `pruned`, with the
    /// epoch of that rung, unless it completed first: then it stays `done`,
    /// and its message says why the prune printed for it did not stop it.
    pub fn ended(&self, f: &mut Finished) {
        let Some(epoch) = self.pruned_at(f.trial.index) else {
            return;
        };
        if f.state == TrialState::Done {
            let how = match &f.message {
                // Early stopping ended it.
                Some(how) => format!("finished ({how})"),
                None => "completed all its epochs".into(),
            };
            f.message = Some(format!(
                "it {how} before its prune at epoch {epoch} took effect"
            ));
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

/// The rung at which the sweep's journal says the trial in `trial_dir` was
/// pruned, if it was, so the trial can tell its stop from an interruption:
/// decided by the trial itself on Slurm ([`TrialJudge`]), by a follower,
/// or by a local sweep, which journals the decision and then stops the
/// trial with SIGUSR1.
pub fn journaled_prune(trial_dir: &Path) -> Option<usize> {
    let (journal, name) = trial_journal(trial_dir)?;
    let index = journal
        .trials()
        .into_iter()
        .find(|(i, (id, _))| super::trial_folder_name(*i, id) == name)?
        .0;
    journal
        .rungs()
        .iter()
        .find(|r| r.trial == index && matches!(r.decision, Decision::Prune))
        .map(|r| r.epoch)
}

/// Whether the trial in `trial_dir` waits at a rung for its sweep to
/// promote it (promotion-based early stopping), as the journal says last.
pub fn journaled_pause(trial_dir: &Path) -> bool {
    trial_journal(trial_dir).is_some_and(|(journal, name)| {
        journal.latest().into_values().any(|e| {
            e.state == TrialState::Paused && super::trial_folder_name(e.trial, &e.id) == name
        })
    })
}

/// The journal of the sweep folder that holds `trial_dir`, if it has one,
/// and the trial folder's name.
fn trial_journal(trial_dir: &Path) -> Option<(Journal, &str)> {
    let name = trial_dir.file_name()?.to_str()?;
    let journal = Journal::new(trial_dir.parent()?);
    journal.exists().then_some((journal, name))
}

/// A trial of a Slurm sweep judging its own rungs at each epoch end, so that
/// pruning needs no process following the sweep (as an Optuna or W&B
/// worker asks whether to prune): under the journal's rungs lock it reads
/// every decision so far, decides the rungs its `metrics.csv` has reached
/// and journals them, exactly as a follower would.
pub struct TrialJudge {
    sweep_dir: std::path::PathBuf,
    trial: Trial,
    plan: EarlyStop,
    maximize: bool,
    metric: String,
}

impl TrialJudge {
    /// The judge of the trial in `trial_dir`, if its sweep runs on Slurm
    /// with stopping early stop (locally the sweep decides, as it runs).
    pub fn for_trial(trial_dir: &Path) -> Result<Option<TrialJudge>, super::folder::FolderError> {
        let Some(sweep_dir) = trial_dir.parent() else {
            return Ok(None);
        };
        // sweep.json first: a local sweep's trial is done here.
        let dir = super::folder::SweepDir {
            root: sweep_dir.to_path_buf(),
        };
        if dir.read_meta()?.launcher != "slurm" {
            return Ok(None);
        }
        let s = super::folder::open(sweep_dir)?;
        let Some(e) = s.sweep.early_stop else {
            return Ok(None);
        };
        if e.variant != HalvingVariant::Stopping {
            return Ok(None);
        }
        let name = trial_dir.file_name().and_then(|n| n.to_str());
        let Some(trial) = s
            .trials
            .iter()
            .find(|t| Some(t.folder_name().as_str()) == name)
        else {
            return Ok(None);
        };
        Ok(Some(TrialJudge {
            sweep_dir: sweep_dir.to_path_buf(),
            trial: trial.clone(),
            plan: EarlyStop::of(&e),
            maximize: s.sweep.monitor.maximize,
            metric: s.sweep.monitor.metric.clone(),
        }))
    }

    /// Decide the rungs the trial's `metrics.csv` has reached (journaled
    /// and printed, once: a rung decided before is not decided again); the
    /// epochs of the rung that pruned it, if one did.
    pub fn judge(&self) -> Result<Option<usize>, crate::rundir::RunDirError> {
        let journal = Journal::new(&self.sweep_dir);
        let _lock = rundir::lock(&journal.rungs_lock())?;
        let mut asha = Asha::restore(self.plan.clone(), self.maximize, journal.rungs());
        let csv = RunDir::at_existing(&self.trial.dir(&self.sweep_dir)).metrics_csv();
        let values = read_metric(&csv, &self.metric);
        for r in asha.observe(self.trial.index, &values) {
            print_record(&self.trial, &self.plan, &self.metric, &r);
            journal_rung(&journal, &self.trial, r);
        }
        Ok(asha.pruned_at(self.trial.index))
    }
}

/// 1 for a bracket's first rung.
fn rung_number(plan: &EarlyStop, r: &RungRecord) -> usize {
    plan.rungs(r.bracket)
        .iter()
        .position(|&e| e == r.epoch)
        .map_or(0, |i| i + 1)
}

/// A rung decision, in the journal (on a `running` line: the trial's state
/// changes only when it ends).
fn journal_rung(journal: &Journal, trial: &Trial, r: RungRecord) {
    let mut e = Entry::new(trial.index, &trial.id, TrialState::Running);
    e.rung = Some(r);
    let _ = journal.append(&e);
}

/// A rung decision, on the sweep's terminal.
fn print_record(trial: &Trial, plan: &EarlyStop, metric: &str, r: &RungRecord) {
    crate::outln!(
        "       {} rung {} (epoch {}): {metric} {:.4}, {}",
        trial.folder_name(),
        rung_number(plan, r),
        r.epoch,
        r.value,
        match r.decision {
            Decision::Continue => "continues",
            Decision::Prune => "pruned",
            Decision::Pause => "paused",
        }
    );
}

/// The promotion records of a sweep with `[sweep.early_stop]`
/// `variant = "promotion"`: trials are launched to their next rung, pause
/// there, and are resumed when [`Promotions`] promotes them.
pub struct Promoter {
    promotions: Promotions,
    metric: String,
}

impl Promoter {
    /// The promoter of a sweep, with the decisions its journal holds;
    /// `None` unless `[sweep.early_stop]` has `variant = "promotion"`.
    pub fn new(sweep: &SweepPlan, journal: &Journal) -> Option<Promoter> {
        let e = sweep.early_stop?;
        if e.variant != HalvingVariant::Promotion {
            return None;
        }
        Some(Promoter {
            promotions: Promotions::restore(
                EarlyStop::of(&e),
                sweep.monitor.maximize,
                journal.rungs(),
            ),
            metric: sweep.monitor.metric.clone(),
        })
    }

    /// The epochs a launch of `trial` trains to: its next rung after its
    /// last decision, or `None` past its last rung (it trains to the end).
    pub fn until(&self, trial: usize) -> Option<usize> {
        let from = self.promotions.decided_epochs(trial);
        let to = self.promotions.target(trial, from);
        (to < self.promotions.plan().max_epochs).then_some(to)
    }

    /// For a trial past its first rung (promoted), where its launch trains
    /// to: `Some(until)`; `None` for a trial not yet at a rung.
    pub fn promoted_to(&self, trial: usize) -> Option<Option<usize>> {
        (self.promotions.decided_epochs(trial) > 0).then(|| self.until(trial))
    }

    /// Whether `trial` waits at a rung or was pruned: it must not be
    /// launched unless promoted.
    pub fn held(&self, trial: usize) -> bool {
        self.promotions.paused_at(trial).is_some() || self.promotions.pruned_at(trial).is_some()
    }

    /// The rung a trial was pruned at, if it was.
    pub fn pruned_at(&self, trial: usize) -> Option<usize> {
        self.promotions.pruned_at(trial)
    }

    /// Whether `trial` waits at a rung for a promotion.
    pub fn paused(&self, trial: usize) -> bool {
        self.promotions.paused_at(trial).is_some()
    }

    /// What a free worker runs next (see [`Promotions::next`]); a promotion
    /// is journaled and printed here, and the promoted trial's launch
    /// trains to [`until`](Self::until). `trials`: the sweep's trials (on
    /// Slurm, a TPE sweep's may have gaps: trials its tasks have yet to
    /// choose).
    pub fn next(
        &mut self,
        journal: &Journal,
        trials: &[Trial],
        starting: bool,
        running: usize,
    ) -> Next {
        let next = self.promotions.next(starting, running);
        match next {
            Next::Promote { trial, from, .. } => {
                let Some(t) = trials.iter().find(|t| t.index == trial) else {
                    return Next::Wait;
                };
                let Some(r) = self.promotions.promote(trial, from) else {
                    return Next::Wait;
                };
                crate::outln!(
                    "       {} promoted from rung {} (epoch {}): {} {:.4} is in the top 1/{} there",
                    t.folder_name(),
                    rung_number(self.promotions.plan(), &r),
                    r.epoch,
                    self.metric,
                    r.value,
                    self.promotions.plan().reduction_factor
                );
                journal_rung(journal, t, r);
                next
            }
            Next::Start | Next::Wait => next,
        }
    }

    /// A launch of a trial ended. One that stopped at the rung it was
    /// launched to has its value there recorded (journaled, printed) and
    /// is `paused` (or `pruned`, for a NaN); other endings are left as they
    /// are.
    pub fn ended(&mut self, sweep_dir: &Path, journal: &Journal, f: &mut Finished) {
        if f.state != TrialState::Stopped {
            return;
        }
        let Some(until) = self.until(f.trial.index) else {
            return;
        };
        let csv = RunDir::at_existing(&f.trial.dir(sweep_dir)).metrics_csv();
        let values = read_metric(&csv, &self.metric);
        if values.len() != until {
            return;
        }
        let Some(r) = self
            .promotions
            .arrive(f.trial.index, until, values[until - 1])
        else {
            return;
        };
        print_record(&f.trial, self.promotions.plan(), &self.metric, &r);
        journal_rung(journal, &f.trial, r.clone());
        f.epoch = Some(until);
        f.exit_code = None;
        if r.decision == Decision::Prune {
            f.state = TrialState::Pruned;
            f.message = Some(format!(
                "pruned at epoch {until}: its {} is NaN",
                self.metric
            ));
        } else {
            f.state = TrialState::Paused;
            f.message = Some(format!(
                "paused at epoch {until}: resumed if its {} ranks in the top 1/{} of the trials at that rung",
                self.metric,
                self.promotions.plan().reduction_factor
            ));
        }
    }

    /// The sweep is over: every trial still paused is pruned at its rung
    /// (the decision journaled); how each ended, for
    /// [`finish_trial`](super::outcome::finish_trial).
    pub fn finish(&mut self, journal: &Journal, trials: &[Trial]) -> Vec<Finished> {
        let mut pruned = Vec::new();
        for r in self.promotions.finish() {
            let Some(t) = trials.iter().find(|t| t.index == r.trial) else {
                continue;
            };
            let mut e = Entry::new(r.trial, &t.id, TrialState::Paused);
            e.epoch = Some(r.epoch);
            e.rung = Some(r.clone());
            let _ = journal.append(&e);
            pruned.push(Finished {
                trial: t.clone(),
                state: TrialState::Pruned,
                exit_code: None,
                message: Some(self.pruned_message(r.epoch)),
                seconds: 0.0,
                epoch: Some(r.epoch),
            });
        }
        pruned
    }

    /// The message of a trial pruned at the end, at rung `epoch`.
    pub fn pruned_message(&self, epoch: usize) -> String {
        format!(
            "pruned at epoch {epoch}: its {} was not in the top 1/{} of the trials at that rung when the sweep ended",
            self.metric,
            self.promotions.plan().reduction_factor
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::asha::EarlyStopKind;

    #[test]
    fn a_pause_is_read_from_the_trials_latest_entry() {
        let tmp = tempfile::tempdir().unwrap();
        let journal = Journal::new(tmp.path());
        let folder = tmp.path().join(super::super::trial_folder_name(0, "abc"));
        let other = tmp.path().join(super::super::trial_folder_name(1, "xyz"));
        assert!(!journaled_pause(&folder), "no journal");
        let mut paused = Entry::new(0, "abc", TrialState::Paused);
        paused.epoch = Some(3);
        for e in [
            Entry::new(0, "abc", TrialState::Running),
            paused,
            Entry::new(1, "xyz", TrialState::Running),
        ] {
            journal.append(&e).unwrap();
        }
        assert!(journaled_pause(&folder));
        assert!(!journaled_pause(&other));
        // Promoted: running again.
        journal
            .append(&Entry::new(0, "abc", TrialState::Running))
            .unwrap();
        assert!(!journaled_pause(&folder));
    }

    fn trial(index: usize) -> Trial {
        Trial {
            index,
            id: format!("{index:06}"),
            params: BTreeMap::new(),
        }
    }

    /// `values` as the trial's metrics.csv (val_loss after each epoch).
    fn curve(sweep: &Path, t: &Trial, values: &[f64]) {
        let dir = t.dir(sweep);
        std::fs::create_dir_all(&dir).unwrap();
        let mut text = String::from("epoch,val_loss\n");
        for (e, v) in values.iter().enumerate() {
            text.push_str(&format!("{},{v}\n", e + 1));
        }
        std::fs::write(dir.join("metrics.csv"), text).unwrap();
    }

    fn decisions(journal: &Journal) -> Vec<(usize, usize, Decision)> {
        journal
            .rungs()
            .iter()
            .map(|r| (r.trial, r.epoch, r.decision))
            .collect()
    }

    /// ASHA with rungs at epochs 1 and 2 (of 4), halving at each.
    fn rungs_1_and_2() -> EarlyStop {
        EarlyStop {
            kind: EarlyStopKind::Asha,
            min_epochs: 1,
            reduction_factor: 2,
            max_epochs: 4,
        }
    }

    /// A local sweep's pruner on [`rungs_1_and_2`]; lower val_loss is better.
    fn val_loss_pruner(journal: &Journal) -> Pruner {
        Pruner {
            asha: Asha::new(rungs_1_and_2(), false),
            metric: "val_loss".into(),
            seen: BTreeMap::new(),
            journal_bytes: journal.bytes(),
        }
    }

    /// On Slurm a trial judges its own rungs while a follower, started
    /// before, may judge them too: each rung is decided once, by whichever
    /// comes first, and the other agrees with it.
    #[test]
    fn a_trial_and_a_follower_decide_each_rung_once() {
        let tmp = tempfile::tempdir().unwrap();
        let sweep = tmp.path();
        let journal = Journal::new(sweep);
        let plan = rungs_1_and_2();
        let mut follower = val_loss_pruner(&journal);
        let judge = |t: &Trial| TrialJudge {
            sweep_dir: sweep.to_path_buf(),
            trial: t.clone(),
            plan: plan.clone(),
            maximize: false,
            metric: "val_loss".into(),
        };
        let (t0, t1) = (trial(0), trial(1));
        // t0 reaches rung 1 first (the follower decides: it continues).
        curve(sweep, &t0, &[1.0]);
        assert_eq!(follower.check(sweep, &journal, &t0), None);
        // t1 reaches it worse and judges itself: pruned (n = 2, k = 1).
        curve(sweep, &t1, &[2.0]);
        assert_eq!(judge(&t1).judge().unwrap(), Some(1));
        // The follower finds that decision and makes none of its own.
        assert_eq!(follower.check(sweep, &journal, &t1), Some(1));
        // t0 judges its rung 2 itself; the follower, later, agrees.
        curve(sweep, &t0, &[1.0, 0.5]);
        assert_eq!(judge(&t0).judge().unwrap(), None);
        assert_eq!(follower.check(sweep, &journal, &t0), None);
        // Judging again decides nothing new.
        assert_eq!(judge(&t1).judge().unwrap(), Some(1));
        assert_eq!(
            decisions(&journal),
            [
                (0, 1, Decision::Continue),
                (1, 1, Decision::Prune),
                (0, 2, Decision::Continue),
            ]
        );
    }

    /// A pruned trial that stopped is `pruned` at its rung; one that
    /// completed before the stop reached it stays `done`, and says so.
    #[test]
    fn a_pruned_trial_that_completed_first_stays_done_and_says_why() {
        let tmp = tempfile::tempdir().unwrap();
        let sweep = tmp.path();
        let journal = Journal::new(sweep);
        let mut pruner = val_loss_pruner(&journal);
        let (t0, t1, t2) = (trial(0), trial(1), trial(2));
        curve(sweep, &t0, &[1.0]);
        assert_eq!(pruner.check(sweep, &journal, &t0), None);
        curve(sweep, &t1, &[2.0]);
        assert_eq!(pruner.check(sweep, &journal, &t1), Some(1));
        curve(sweep, &t2, &[3.0]);
        assert_eq!(pruner.check(sweep, &journal, &t2), Some(1));
        let finished = |t: &Trial, state: TrialState| Finished {
            trial: t.clone(),
            state,
            exit_code: Some(0),
            message: None,
            seconds: 1.0,
            epoch: None,
        };
        // t1 was stopped by the sweep's signal.
        let mut stopped = finished(&t1, TrialState::Failed);
        pruner.ended(&mut stopped);
        assert_eq!(stopped.state, TrialState::Pruned);
        assert_eq!(stopped.epoch, Some(1));
        assert_eq!(stopped.exit_code, None);
        assert!(stopped
            .message
            .unwrap()
            .starts_with("pruned at epoch 1: its val_loss"));
        // t2 finished its 4 epochs before the signal came.
        let mut completed = finished(&t2, TrialState::Done);
        pruner.ended(&mut completed);
        assert_eq!(completed.state, TrialState::Done);
        assert_eq!(completed.epoch, None);
        assert_eq!(completed.exit_code, Some(0));
        assert_eq!(
            completed.message.as_deref(),
            Some("it completed all its epochs before its prune at epoch 1 took effect")
        );
        // Early stopping ended it before the signal came: said too.
        let mut early = finished(&t2, TrialState::Done);
        early.message = Some("early stopping after epoch 2".into());
        pruner.ended(&mut early);
        assert_eq!(
            early.message.as_deref(),
            Some("it finished (early stopping after epoch 2) before its prune at epoch 1 took effect")
        );
        // t0 was not pruned: nothing changes.
        let mut kept = finished(&t0, TrialState::Done);
        pruner.ended(&mut kept);
        assert_eq!((kept.state, kept.message), (TrialState::Done, None));
    }
}
