//! A Slurm array task of a promotion sweep, as one of the workers of the
//! ASHA paper's Algorithm 1 (see [`super::promotion`]).
//!
//! Locally one process decides every promotion and launches every trial.
//! On Slurm each array task is given a trial (`runner run --trial DIR
//! --worker`) and does this instead:
//!
//! 1. It trains its trial to its next rung, where the trial pauses (its
//!    value is journaled) unless the trial is already paused, pruned or
//!    done (a requeued or resubmitted task).
//! 2. Then, while it has work, it asks the sweep's records what a free
//!    worker runs: a paused trial in the top `1/eta` of its rung is
//!    promoted and this task trains it to its next rung (or to the end);
//!    when a new trial would be next, the task ends, for the new trials
//!    are the array's tasks still to start. When nothing is running, no
//!    trial is left to start and nothing can be promoted, the sweep is
//!    over and this task prunes every trial still paused.
//!
//! Every decision is taken under the sweep's rungs lock, reading the
//! journal afresh, so tasks on any node decide as one process would on
//! the records they have. Trials run as child processes (`runner run
//! --trial DIR --until N`), as a local sweep runs them, so a Slurm signal
//! to the task (`--signal=B:USR1@N`) stops the trial it trains, cleanly.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::error::SweepError;
use super::folder::{journaled_trials, open, Sweep};
use super::hparams;
use super::journal::{Entry, Journal, TrialState};
use super::outcome::finish_trial;
use super::promotion::Next;
use super::prune::Promoter;
use super::scheduler::{run_local, Driver, Finished, Launch, LocalEnd, LocalOptions};
use super::{axis_names, Trial};
use crate::rundir;
use crate::signals::Signals;
use crate::vocab::{HalvingVariant, Strategy};

/// How the task's trials run.
pub struct WorkerOptions {
    pub threads: Option<usize>,
    pub device: Option<String>,
}

/// Run the trial in `dir` (a folder its TPE task has claimed already) and
/// then the promotions of its sweep, as a worker of a promotion sweep on
/// Slurm. `Ok(false)`: the trial's sweep has no promotion, and the caller
/// runs the trial as it would without `--worker`.
pub fn work(dir: &Path, opts: &WorkerOptions) -> Result<bool, SweepError> {
    let Some(sweep_dir) = dir.parent() else {
        return Ok(false);
    };
    let mut s = open(sweep_dir)?;
    if s.sweep.early_stop.map(|e| e.variant) != Some(HalvingVariant::Promotion) {
        return Ok(false);
    }
    let name = dir.file_name().and_then(|n| n.to_str());
    let Some(own) = s
        .trials
        .iter()
        .find(|t| Some(t.folder_name().as_str()) == name)
        .cloned()
    else {
        return Ok(false);
    };
    let runner_bin = std::env::current_exe().map_err(SweepError::RunnerBinary)?;
    let local = LocalOptions {
        parallel: 1,
        threads: opts.threads,
        fail_fast: false,
        runner_bin,
        devices: opts.device.iter().cloned().collect(),
    };
    let signals = Signals::install();
    let journal = s.dir.journal();
    let axes = axis_names(&s.sweep);
    let root = s.dir.root.clone();
    let mut worker = Worker {
        s: &mut s,
        journal,
        axes,
        own: Some(own),
        ran: 0,
        failures: 0,
    };
    let end = run_local(&root, &mut worker, &local, &signals);
    let (ran, failures) = (worker.ran, worker.failures);
    if end == LocalEnd::Interrupted {
        return Err(SweepError::Stopped(root));
    }
    if failures > 0 {
        return Err(SweepError::TrialsFailed {
            failed: failures,
            total: ran,
            dir: root,
        });
    }
    crate::outln!("Worker done: {ran} launch(es) of trials; nothing left for this task to run");
    Ok(true)
}

/// What the worker knows between launches; everything else is read from
/// the sweep's folder at each decision.
struct Worker<'a> {
    s: &'a mut Sweep,
    journal: Journal,
    axes: Vec<String>,
    /// The task's own trial, until its launch has been decided.
    own: Option<Trial>,
    ran: usize,
    failures: usize,
}

impl Worker<'_> {
    /// The sweep's records as they are now: TPE trials chosen by other
    /// tasks, and every rung decision.
    fn refresh(&mut self) -> Option<Promoter> {
        if self.s.sweep.strategy == Strategy::Tpe {
            self.s.trials = journaled_trials(&self.journal);
        }
        Promoter::new(&self.s.sweep, &self.journal)
    }

    /// The launch of the task's own trial: to its next rung, unless it
    /// waits at a rung, was pruned or is done.
    fn own_launch(&mut self, own: Trial, promoter: &Promoter) -> Option<Launch> {
        let state = self.journal.latest().get(&own.index).map(|e| e.state);
        if promoter.held(own.index) || matches!(state, Some(TrialState::Done | TrialState::Pruned))
        {
            crate::outln!(
                "{} is {}; this task runs the sweep's promotions",
                own.folder_name(),
                state.map_or("held", |s| s.as_str())
            );
            return None;
        }
        let until = promoter.until(own.index);
        Some(Launch { trial: own, until })
    }

    /// A promotion, if one is due; at the end of the sweep, the trials
    /// still paused are pruned.
    fn promotion(&mut self, promoter: &mut Promoter) -> Option<Launch> {
        let latest = self.journal.latest();
        // Trials other tasks run now, and whether any trial has yet to
        // start (its array task is still to come).
        let running = latest
            .values()
            .filter(|e| e.state == TrialState::Running)
            .count();
        // A stopped trial (its task was cancelled or ran out of time) runs
        // again when the sweep is resumed: it is still to start.
        let started: BTreeSet<usize> = latest
            .values()
            .filter(|e| !matches!(e.state, TrialState::Pending | TrialState::Stopped))
            .map(|e| e.trial)
            .collect();
        // After max_hours, as locally, no trial starts and none is promoted.
        let out_of_time = self.s.out_of_time().is_some();
        let starting = !out_of_time && (0..self.s.meta.trials).any(|i| !started.contains(&i));
        let next = if out_of_time {
            Next::Wait
        } else {
            promoter.next(&self.journal, &self.s.trials, starting, running)
        };
        match next {
            Next::Promote { trial, .. } => {
                let until = promoter.until(trial);
                let trial = self.s.trials.iter().find(|t| t.index == trial)?.clone();
                Some(Launch { trial, until })
            }
            Next::Start => None,
            Next::Wait => {
                if running == 0 && !starting {
                    for f in promoter.finish(&self.journal, &self.s.trials) {
                        finish_trial(self.s, &self.journal, &f, &self.axes);
                    }
                }
                None
            }
        }
    }
}

impl Driver for Worker<'_> {
    fn next(&mut self) -> Option<Launch> {
        let _lock = lock(&self.journal);
        let mut promoter = self.refresh()?;
        if let Some(own) = self.own.take() {
            if let Some(launch) = self.own_launch(own, &promoter) {
                return Some(launch);
            }
        }
        self.promotion(&mut promoter)
    }

    fn started(&mut self, t: &Trial) {
        self.ran += 1;
        hparams::session_start(t, &self.s.dir.root, &self.journal);
        let _ = self
            .journal
            .append(&Entry::new(t.index, &t.id, TrialState::Running));
        let to = Promoter::new(&self.s.sweep, &self.journal).and_then(|p| p.promoted_to(t.index));
        match to {
            Some(to) => crate::outln!(
                "{} resumed, to {}",
                t.folder_name(),
                to.map_or("the end".to_string(), |e| format!("epoch {e}"))
            ),
            None => crate::outln!("{} started  {}", t.folder_name(), t.params_text()),
        }
    }

    fn check(&mut self, _trial: &Trial) -> bool {
        false
    }

    fn finished(&mut self, f: &Finished) {
        let _lock = lock(&self.journal);
        let mut f = f.clone();
        if let Some(mut promoter) = self.refresh() {
            promoter.ended(&self.s.dir.root, &self.journal, &mut f);
        }
        if f.state == TrialState::Failed {
            self.failures += 1;
        }
        finish_trial(self.s, &self.journal, &f, &self.axes);
    }
}

/// The sweep's rungs lock; where the filesystem refuses locks, the task
/// says so and decides without it.
fn lock(journal: &Journal) -> Option<std::fs::File> {
    let path: PathBuf = journal.rungs_lock();
    rundir::lock(&path)
        .map_err(|e| {
            crate::errln!(
                "cannot take {} ({e}); deciding without it: tasks that decide at once may promote a trial twice",
                path.display()
            )
        })
        .ok()
}
