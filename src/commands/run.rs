//! `runner run`: train an experiment into a new run folder, resume one, or
//! run one sweep trial in its own folder. The work is [`crate::run`].

use std::path::PathBuf;

use super::ExperimentArgs;
use crate::error::Result;
use crate::run;
use crate::sweep::{self, WorkerOptions};

pub use crate::run::RunOptions;

/// What `runner run` was asked to do.
pub enum RunTarget {
    /// A new run of an experiment file.
    New(ExperimentArgs),
    /// Continue an interrupted run in its folder, or train one on to more
    /// epochs (`set`: `--set train.epochs=N`).
    Resume { dir: PathBuf, set: Vec<String> },
    /// A sweep trial: start it, or resume it if it has a checkpoint.
    /// `worker`: a Slurm task of a promotion sweep, which then runs the
    /// sweep's promotions ([`crate::sweep::work`]).
    Trial { dir: PathBuf, worker: bool },
}

pub fn run(target: RunTarget, opts: &RunOptions) -> Result<()> {
    if let RunTarget::Trial { dir, .. } = &target {
        // A Slurm task that starts after its sweep's max_hours runs nothing.
        if let Some(why) = sweep::out_of_time(dir) {
            crate::outln!("{why}");
            return Ok(());
        }
    }
    let target = match target {
        RunTarget::New(exp) => run::RunTarget::New(Box::new(super::load_plan(&exp)?)),
        RunTarget::Resume { dir, set } => run::RunTarget::Resume { dir, set },
        RunTarget::Trial { dir, worker: false } => run::RunTarget::Trial(dir),
        RunTarget::Trial { dir, worker: true } => {
            // A TPE task chooses its trial first.
            let dir = sweep::claim(&dir)?;
            let worker = WorkerOptions {
                threads: opts.threads,
                device: opts.device.clone(),
            };
            if sweep::work(&dir, &worker)? {
                return Ok(());
            }
            run::RunTarget::Trial(dir)
        }
    };
    run::run(target, opts)
}
