//! Running a sweep's trials on this machine: how many at once, on which
//! devices, with how many threads, and recording each as it starts and ends.

use super::error::SweepError;
use super::folder::Sweep;
use super::hparams;
use super::journal::{Entry, TrialState};
use super::outcome::{conclude, finish_trial};
use super::scheduler::{self, Event, LocalOptions};
use super::{axis_names, SweepOptions, Trial};
use crate::device::{self, Device};
use crate::rundir;
use crate::signals::Signals;

/// Default parallelism: one trial per GPU, or on CPU as many trials as
/// cores (up to the number of trials), each with an equal share of threads.
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
        .unwrap_or(if gpus > 0 {
            gpus
        } else {
            cores.min(todo.max(1))
        })
        .max(1);
    let devices = if gpus > 0 {
        (0..parallel)
            .map(|i| match device {
                Device::Wgpu => "wgpu".to_string(),
                _ => format!("cuda:{}", i % gpus),
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(LocalOptions {
        parallel,
        threads: (cores / parallel).max(1),
        fail_fast: opts.fail_fast,
        runner_bin,
        devices,
    })
}

/// Run `todo` as child processes under the sweep's lock, recording each
/// trial as it starts and ends, then conclude.
pub(super) fn run_locally(
    s: &Sweep,
    todo: &[Trial],
    opts: &SweepOptions,
) -> Result<(), SweepError> {
    let Some(_lock) = rundir::try_lock(&s.dir.lock())? else {
        return Err(SweepError::Locked(s.dir.root.clone()));
    };
    let local = local_options(s, todo.len(), opts)?;
    crate::outln!(
        "Running {} trial(s), {} at a time, {} thread(s) each",
        todo.len(),
        local.parallel,
        local.threads
    );
    let axes = axis_names(&s.sweep);
    let journal = s.dir.journal();
    let total = s.trials.len();
    let signals = Signals::install();
    let mut failures = 0usize;
    let mut record = |event: Event| match event {
        Event::Started(t) => {
            hparams::session_start(t, &s.dir.root, &journal);
            let _ = journal.append(&Entry::new(t.index, &t.id, TrialState::Running));
            crate::outln!(
                "[{}/{total}] {} started  {}",
                t.index + 1,
                t.folder_name(),
                t.params_text()
            );
        }
        Event::Finished(f) => {
            if f.state == TrialState::Failed {
                failures += 1;
            }
            finish_trial(s, &journal, f, &axes);
        }
    };
    let end = scheduler::run_local(&s.dir.root, todo, &local, &signals, &mut record);
    conclude(s, &axes, end, failures)
}
