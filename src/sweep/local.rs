//! Running a sweep's trials on this machine: how many at once, on which
//! devices, with how many threads, and recording each as it starts and ends.

use std::collections::{BTreeSet, VecDeque};

use super::error::SweepError;
use super::folder::Sweep;
use super::hparams;
use super::journal::{Entry, Journal, TrialState};
use super::outcome::{conclude, finish_trial, out_of_time_line};
use super::promotion::Next;
use super::prune::{Promoter, Pruner};
use super::scheduler::{self, Driver, Finished, Launch, LocalOptions};
use super::{axis_names, propose, SweepOptions, Trial};
use crate::device::{self, Device};
use crate::rundir;
use crate::signals::Signals;
use crate::vocab::Strategy;

/// Default parallelism: `trials_per_gpu` trials per GPU (1 unless set), or
/// on CPU as many trials as cores (up to the number of trials), each with
/// an equal share of threads. Slot `i` runs on GPU `i % gpus`, so the
/// trials spread evenly over the GPUs.
fn local_options(s: &Sweep, todo: usize, opts: &SweepOptions) -> Result<LocalOptions, SweepError> {
    let runner_bin = std::env::current_exe().map_err(SweepError::RunnerBinary)?;
    let cores = device::cpu_threads(0);
    let device = device::resolve(s.plan.device)?;
    let gpus = match device {
        Device::Cuda(_) => device::cuda_device_count().unwrap_or(1).max(1),
        Device::Wgpu => 1,
        Device::Cpu => 0,
    };
    let parallel = opts
        .parallel
        .or(s.sweep.parallel)
        .unwrap_or_else(|| default_parallel(gpus, s.sweep.trials_per_gpu, cores, todo))
        .max(1);
    let devices = slot_devices(device, gpus, parallel);
    Ok(LocalOptions {
        parallel,
        threads: Some((cores / parallel).max(1)),
        fail_fast: opts.fail_fast,
        runner_bin,
        devices,
    })
}

/// Trials at once when neither `--parallel` nor `sweep.parallel` says:
/// `trials_per_gpu` per GPU, else one per core (at most `todo`).
fn default_parallel(gpus: usize, trials_per_gpu: usize, cores: usize, todo: usize) -> usize {
    if gpus > 0 {
        gpus * trials_per_gpu.max(1)
    } else {
        cores.min(todo.max(1))
    }
}

/// The device of each slot: GPU `slot % gpus`, so trials spread evenly and
/// each GPU holds `parallel / gpus` of them; none on a CPU.
fn slot_devices(device: Device, gpus: usize, parallel: usize) -> Vec<String> {
    if gpus == 0 {
        return Vec::new();
    }
    (0..parallel)
        .map(|i| match device {
            Device::Wgpu => "wgpu".to_string(),
            _ => format!("cuda:{}", i % gpus),
        })
        .collect()
}

/// Run `todo` (and, for TPE, the trials it proposes next) as child
/// processes under the sweep's lock, recording each trial as it starts and
/// ends and stopping those early stopping prunes, then conclude.
pub(super) fn run_locally(
    s: &mut Sweep,
    todo: Vec<Trial>,
    opts: &SweepOptions,
) -> Result<(), SweepError> {
    let Some(lock) = rundir::try_lock(&s.dir.lock())? else {
        return Err(SweepError::Locked(s.dir.root.clone()));
    };
    // For `--status` and `--cancel` from another terminal.
    rundir::record_holder(&lock);
    let limit = super::total_trials(&s.sweep, s.trials.len());
    let local = local_options(s, limit.max(todo.len()), opts)?;
    let threads = local
        .threads
        .map_or("as configured".into(), |n| n.to_string());
    crate::outln!(
        "Running {} trial(s), {} at a time, {} thread(s) each",
        if s.sweep.strategy == Strategy::Tpe {
            todo.len() + limit.saturating_sub(s.trials.len())
        } else {
            todo.len()
        },
        local.parallel,
        threads
    );
    let journal = s.dir.journal();
    let started_before = journal
        .entries()
        .iter()
        .filter(|e| e.state == TrialState::Running)
        .map(|e| e.trial)
        .collect();
    let mut driver = LocalDriver {
        started_before,
        axes: axis_names(&s.sweep),
        pruner: Pruner::new(&s.sweep, &journal),
        promoter: Promoter::new(&s.sweep, &journal),
        no_more: false,
        journal,
        queue: todo.into(),
        limit,
        running: BTreeSet::new(),
        failures: 0,
        ended_by: None,
        s,
    };
    let signals = Signals::install();
    let end = scheduler::run_local(&driver.s.dir.root.clone(), &mut driver, &local, &signals);
    let LocalDriver {
        s,
        axes,
        failures,
        ended_by,
        ..
    } = driver;
    conclude(s, &axes, end, failures, ended_by.as_deref())
}

/// The sweep as the scheduler runs it.
struct LocalDriver<'a> {
    s: &'a mut Sweep,
    journal: Journal,
    axes: Vec<String>,
    /// Trials to start, in order.
    queue: VecDeque<Trial>,
    /// TPE: trials in all (`trials`, at most `max_trials`).
    limit: usize,
    pruner: Option<Pruner>,
    /// Promotion-based early stopping: which trial runs next, how far.
    promoter: Option<Promoter>,
    /// No new trial can start (none was given when one was asked for).
    no_more: bool,
    running: BTreeSet<usize>,
    /// Trials that ran before this process (a resume): they may finish
    /// after `max_hours`.
    started_before: BTreeSet<usize>,
    failures: usize,
    /// Why no more trials were started before the end of the list.
    ended_by: Option<String>,
}

impl LocalDriver<'_> {
    /// Trials left to start: queued, and for TPE, not yet proposed.
    fn left(&self) -> usize {
        let proposed = if self.s.sweep.strategy == Strategy::Tpe {
            self.limit.saturating_sub(self.s.trials.len())
        } else {
            0
        };
        self.queue.len() + proposed
    }

    fn out_of_time(&mut self) -> bool {
        let Some(hours) = self.s.out_of_time() else {
            return false;
        };
        if self.ended_by.is_none() && self.left() > 0 {
            self.ended_by = Some(out_of_time_line(hours, self.left()));
        }
        true
    }

    /// TPE's next trial, its folder written; trials whose config does not
    /// plan are recorded as failed and the next one is proposed. Pending:
    /// the trials running now.
    fn propose(&mut self) -> Option<Trial> {
        while self.s.trials.len() < self.limit {
            let index = self.s.trials.len();
            let latest = self.journal.latest();
            let history = propose::history(self.s, &self.journal, &latest, |r| {
                self.running.contains(&r.trial.index)
            });
            let (t, written) = propose::propose(self.s, &self.journal, index, &history);
            match written {
                Ok(()) => return Some(t),
                Err(why) => {
                    let f = Finished {
                        trial: t,
                        state: TrialState::Failed,
                        exit_code: None,
                        message: Some(why),
                        seconds: 0.0,
                        epoch: None,
                    };
                    self.finished(&f);
                }
            }
        }
        None
    }
}

impl LocalDriver<'_> {
    /// The next new trial: queued, or proposed by TPE; after `max_hours`
    /// only one that ran before this process.
    fn next_trial(&mut self) -> Option<Trial> {
        if self.out_of_time() {
            // Only a trial that already ran may go on.
            let i = self
                .queue
                .iter()
                .position(|t| self.started_before.contains(&t.index))?;
            return self.queue.remove(i);
        }
        if let Some(t) = self.queue.pop_front() {
            return Some(t);
        }
        if self.s.sweep.strategy == Strategy::Tpe {
            return self.propose();
        }
        None
    }

    /// The next launch of a promotion-based sweep: a promotion, else a new
    /// trial to its first rung; when nothing runs and nothing can be
    /// launched, the sweep is over and the trials still paused are pruned.
    /// After `max_hours`, nothing is promoted.
    fn next_promoted(&mut self) -> Option<Launch> {
        let running = self.running.len();
        loop {
            let out_of_time = self.out_of_time();
            let starting = !self.no_more && self.left() > 0;
            let promoter = self.promoter.as_mut()?;
            let next = if out_of_time {
                if starting {
                    Next::Start
                } else {
                    Next::Wait
                }
            } else {
                promoter.next(&self.journal, &self.s.trials, starting, running)
            };
            match next {
                Next::Promote { trial, .. } => {
                    let until = promoter.until(trial);
                    let trial = self.s.trials.get(trial)?.clone();
                    return Some(Launch { trial, until });
                }
                Next::Start => match self.next_trial() {
                    Some(trial) => {
                        let until = self.promoter.as_ref().and_then(|p| p.until(trial.index));
                        return Some(Launch { trial, until });
                    }
                    // Ask again, with no new trial to start.
                    None => self.no_more = true,
                },
                Next::Wait => {
                    if running == 0 {
                        self.finish_promotions();
                    }
                    return None;
                }
            }
        }
    }

    /// The sweep is over: the trials still paused are pruned.
    fn finish_promotions(&mut self) {
        let Some(promoter) = &mut self.promoter else {
            return;
        };
        for f in promoter.finish(&self.journal, &self.s.trials) {
            finish_trial(self.s, &self.journal, &f, &self.axes);
        }
    }
}

impl Driver for LocalDriver<'_> {
    fn next(&mut self) -> Option<Launch> {
        if self.promoter.is_some() {
            return self.next_promoted();
        }
        let trial = self.next_trial()?;
        Some(Launch { trial, until: None })
    }

    fn started(&mut self, t: &Trial) {
        hparams::session_start(t, &self.s.dir.root, &self.journal);
        let _ = self
            .journal
            .append(&Entry::new(t.index, &t.id, TrialState::Running));
        self.running.insert(t.index);
        let total = if self.s.sweep.strategy == Strategy::Tpe {
            self.limit
        } else {
            self.s.trials.len()
        };
        let promoted = self.promoter.as_ref().and_then(|p| p.promoted_to(t.index));
        match promoted {
            Some(to) => crate::outln!(
                "[{}/{total}] {} resumed, to {}",
                t.index + 1,
                t.folder_name(),
                to.map_or("the end".to_string(), |e| format!("epoch {e}"))
            ),
            None => crate::outln!(
                "[{}/{total}] {} started  {}",
                t.index + 1,
                t.folder_name(),
                t.params_text()
            ),
        }
    }

    fn check(&mut self, t: &Trial) -> bool {
        let root = self.s.dir.root.clone();
        match &mut self.pruner {
            Some(p) => p.check(&root, &self.journal, t).is_some(),
            None => false,
        }
    }

    fn finished(&mut self, f: &Finished) {
        self.running.remove(&f.trial.index);
        let mut f = f.clone();
        let root = self.s.dir.root.clone();
        if let Some(p) = &mut self.pruner {
            // Rungs it passed since the last check: every trial that
            // reaches a rung counts there, however fast it got past it.
            p.check(&root, &self.journal, &f.trial);
            p.ended(&mut f);
        }
        if let Some(p) = &mut self.promoter {
            p.ended(&root, &self.journal, &mut f);
        }
        if f.state == TrialState::Failed {
            self.failures += 1;
        }
        finish_trial(self.s, &self.journal, &f, &self.axes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trials_per_gpu_packs_trials_onto_each_gpu() {
        // Two GPUs, three trials each: six at once, three per GPU.
        assert_eq!(default_parallel(2, 3, 16, 100), 6);
        let devices = slot_devices(Device::Cuda(0), 2, 6);
        assert_eq!(
            devices,
            ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0", "cuda:1"]
        );
        // The default stays one trial per GPU.
        assert_eq!(default_parallel(4, 1, 16, 100), 4);
        // On a CPU: one per core, no more than there are trials.
        assert_eq!(default_parallel(0, 3, 16, 5), 5);
        assert_eq!(default_parallel(0, 3, 2, 5), 2);
        assert!(slot_devices(Device::Cpu, 0, 2).is_empty());
    }
}
