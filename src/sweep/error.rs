//! Why a sweep operation (start, resume, running trials, submitting them to
//! Slurm, following, cancelling) stopped, with what it was working on.

use std::path::PathBuf;

use thiserror::Error;

use super::folder::FolderError;
use super::slurm::SlurmError;
use super::TrialError;
use crate::config::ConfigError;
use crate::data::{DataError, LocatedData};
use crate::device::DeviceError;
use crate::logging::LogError;
use crate::plan::LauncherError;
use crate::rundir::RunDirError;

#[derive(Debug, Error)]
pub enum SweepError {
    #[error(
        "{} has no [sweep] table; add one with [sweep.grid] axes such as \"model.dropout\" = [0.1, 0.2]",
        .0.display()
    )]
    NoSweepTable(PathBuf),

    #[error("the sweep has no trials")]
    NoTrials,

    #[error("TPE chose {trial}, whose config does not plan (recorded as failed):\n{why}")]
    ChosenTrialInvalid { trial: String, why: String },

    #[error(transparent)]
    Launcher(#[from] LauncherError),

    #[error("cannot find the runner binary: {0}")]
    RunnerBinary(#[source] std::io::Error),

    #[error(
        "{}: trial {index} was {was} but the sweep file now gives {now}; the sweep's spec changed, so it cannot be resumed. Start a new sweep instead.",
        dir.display()
    )]
    TrialsChanged {
        dir: PathBuf,
        index: usize,
        was: String,
        now: String,
    },

    #[error(
        "{} changed since the sweep in {} started ({}); resuming would mix two experiments. Start a new sweep, or restore the file.",
        file.display(),
        dir.display(),
        keys.join(", ")
    )]
    SourceChanged {
        file: PathBuf,
        dir: PathBuf,
        keys: Vec<String>,
    },

    #[error(
        "{}: the sweep has {had} trial(s), and the new budget allows {now}; a resumed sweep can add trials but never drops them",
        dir.display()
    )]
    FewerTrials {
        dir: PathBuf,
        had: usize,
        now: usize,
    },

    #[error(
        "{} gives {what} ({}) than the sweep in {} has; to run the sweep with it, add `{}` to `runner sweep --resume`, or restore the file",
        file.display(),
        keys.join(", "),
        dir.display(),
        sets.join(" ")
    )]
    BudgetChanged {
        /// "another budget", "other Slurm settings" or both.
        what: &'static str,
        file: PathBuf,
        dir: PathBuf,
        keys: Vec<String>,
        sets: Vec<String>,
    },

    #[error("{} is already being run by another runner process", .0.display())]
    Locked(PathBuf),

    #[error(
        "{} runs locally; stop it with Ctrl-C in its terminal (it stays resumable)",
        .0.display()
    )]
    RunsLocally(PathBuf),

    #[error(
        "{} is run by runner process {pid} on {host}; cancel it there, or stop that process",
        dir.display()
    )]
    RunsOnAnotherHost {
        dir: PathBuf,
        host: String,
        pid: u32,
    },

    #[error("cannot signal runner process {pid}: {source}")]
    CannotSignal {
        pid: u32,
        #[source]
        source: std::io::Error,
    },

    #[error(transparent)]
    Trial(#[from] TrialError),

    #[error(transparent)]
    Folder(#[from] FolderError),

    #[error(transparent)]
    Config(#[from] ConfigError),

    #[error(transparent)]
    Device(#[from] DeviceError),

    /// The data the trials would read is not there (a local sweep checks
    /// it before its folder is made).
    #[error(transparent)]
    Data(#[from] DataError),

    /// [`SweepError::Data`], located at its config key.
    #[error(transparent)]
    DataAt(LocatedData),

    #[error(transparent)]
    RunDir(#[from] RunDirError),

    /// The TensorBoard HParams experiment could not be written.
    #[error(transparent)]
    HParams(#[from] LogError),

    #[error("slurm: {0}")]
    Slurm(#[from] SlurmError),

    #[error(
        "slurm: {source}\n{} trial(s) were not submitted; they wait in {}: `runner sweep --resume {}` submits them (add `--set sweep.launcher.KEY=VALUE` to change a Slurm setting, such as `partition`)",
        count,
        dir.display(),
        dir.display()
    )]
    NotSubmitted {
        #[source]
        source: SlurmError,
        count: usize,
        dir: PathBuf,
    },

    #[error("slurm: cannot tell which trials still run, so nothing was resubmitted: {0}")]
    SlurmUnknown(#[source] SlurmError),

    #[error("sweep stopped; continue it with `runner sweep --resume {}`", .0.display())]
    Stopped(PathBuf),

    #[error("interrupted before anything was submitted")]
    InterruptedBeforeSubmit,

    #[error(
        "interrupted while submitting; job {jobs} was recorded and cancelled; `runner sweep --resume {}` submits its trials again",
        dir.display()
    )]
    InterruptedSubmit { jobs: String, dir: PathBuf },

    #[error(
        "interrupted while submitting; job {jobs} is recorded in {}, but cancelling it failed ({cause}); `runner sweep --cancel {}` cancels it",
        jobs_file.display(),
        dir.display()
    )]
    InterruptedUncancelled {
        jobs: String,
        jobs_file: PathBuf,
        dir: PathBuf,
        cause: SlurmError,
    },

    #[error(
        "{failed} of {total} trial(s) failed (see summary.csv; rerun them with `runner sweep --resume {} --retry-failed`)",
        dir.display()
    )]
    TrialsFailed {
        failed: usize,
        total: usize,
        dir: PathBuf,
    },
}
