//! `runner sweep`: start a sweep, resume it, follow it, cancel it.
//!
//! The sweep folder (`runs/<experiment>/sweeps/sNNNN/`) holds everything:
//! `sweep.toml` (the resolved experiment with its `[sweep]`), `sweep.json`,
//! the append-only `journal.jsonl`, `summary.csv`, `summary.png`, the
//! TensorBoard HParams experiment, and one run folder per trial. The work
//! is done in [`crate::sweep`]; this file picks the action.

use std::path::PathBuf;

use super::ExperimentArgs;
use crate::error::{Error, Result};
use crate::sweep::{self, NewSweep, SweepOptions};

pub struct SweepArgs {
    pub exp: Option<ExperimentArgs>,
    pub dry_run: bool,
    pub parallel: Option<usize>,
    pub fail_fast: bool,
    pub launcher: Option<String>,
    pub runs_dir: Option<PathBuf>,
    pub resume: Option<PathBuf>,
    /// `--set` flags given with `--resume`: the sweep's new budget.
    pub resume_set: Vec<String>,
    pub retry_failed: bool,
    pub status: Option<PathBuf>,
    pub wait: bool,
    pub cancel: Option<PathBuf>,
    /// Seconds between Slurm polls.
    pub poll_seconds: f64,
}

impl SweepArgs {
    fn options(&self) -> SweepOptions {
        SweepOptions {
            parallel: self.parallel,
            fail_fast: self.fail_fast,
            launcher: self.launcher.clone(),
            retry_failed: self.retry_failed,
            wait: self.wait,
            poll_seconds: self.poll_seconds,
        }
    }
}

pub fn sweep(args: &SweepArgs) -> Result<()> {
    if let Some(dir) = &args.status {
        return Ok(sweep::status(dir, args.wait, args.poll_seconds)?);
    }
    if let Some(dir) = &args.cancel {
        return Ok(sweep::cancel(dir, args.wait, args.poll_seconds)?);
    }
    if let Some(dir) = &args.resume {
        return Ok(sweep::resume(dir, &args.resume_set, &args.options())?);
    }
    let Some(exp) = &args.exp else {
        return Err(Error::Usage(
            "give an experiment file, or --resume / --status / --cancel SWEEP_DIR".into(),
        ));
    };
    let (loaded, mut plan) = super::load_plan(exp)?;
    if let Some(d) = &args.runs_dir {
        plan.runs_dir = d.clone();
    }
    let new = NewSweep {
        file: &exp.file,
        set: &exp.set,
        loaded: &loaded,
        plan,
    };
    if args.dry_run {
        return Ok(sweep::dry_run(&new, &args.options())?);
    }
    Ok(sweep::start(new, &args.options())?)
}
