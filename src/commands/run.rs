//! `runner run`: train an experiment into a new run folder, resume one, or
//! run one sweep trial in its own folder. The work is [`crate::run`].

use std::path::PathBuf;

use super::ExperimentArgs;
use crate::error::Result;
use crate::run;

pub use crate::run::RunOptions;

/// What `runner run` was asked to do.
pub enum RunTarget {
    /// A new run of an experiment file.
    New(ExperimentArgs),
    /// Continue an interrupted run in its folder.
    Resume(PathBuf),
    /// A sweep trial: start it, or resume it if it has a checkpoint.
    Trial(PathBuf),
}

pub fn run(target: RunTarget, opts: &RunOptions) -> Result<()> {
    let target = match target {
        RunTarget::New(exp) => run::RunTarget::New(Box::new(super::load_plan(&exp)?)),
        RunTarget::Resume(dir) => run::RunTarget::Resume(dir),
        RunTarget::Trial(dir) => run::RunTarget::Trial(dir),
    };
    run::run(target, opts)
}
