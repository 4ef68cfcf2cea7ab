//! The top-level error: one variant per module's own error, and the exit
//! code each one maps to (0 ok, 1 a run failed, 2 usage or config error).

use miette::Diagnostic;
use thiserror::Error;

use crate::backend::BackendError;
use crate::config::{ConfigError, Sources};
use crate::data::{DataError, LocatedData};
use crate::device::DeviceError;
use crate::plan::PlanErrors;
use crate::report::ReportError;
use crate::rundir::describe::describe;
use crate::rundir::RunDirError;
use crate::sweep::folder::FolderError;
use crate::sweep::{SweepError, TrialError};
use crate::train::TrainError;

#[derive(Debug, Error, Diagnostic)]
pub enum Error {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Config(#[from] ConfigError),

    #[error(transparent)]
    #[diagnostic(transparent)]
    Plan(PlanErrors),

    #[error(transparent)]
    #[diagnostic(code(runner::device))]
    Device(#[from] DeviceError),

    #[error(transparent)]
    #[diagnostic(code(runner::gpu))]
    Backend(#[from] BackendError),

    /// Bad or missing data found before training (the loader's errors
    /// during a run belong to the run's own failure).
    #[error(transparent)]
    #[diagnostic(transparent)]
    Data(#[from] DataError),

    /// Bad or missing data, located at the config key that names it.
    #[error(transparent)]
    #[diagnostic(transparent)]
    DataAt(LocatedData),

    /// Bad data whose remedy is a flag of the command rather than the
    /// config key [`DataError`]'s help names (`runner predict
    /// --skip-bad-images`).
    #[error("{message}")]
    #[diagnostic(code(runner::data::bad_image))]
    DataHint {
        message: String,
        #[help]
        help: String,
    },

    #[error("{0}")]
    #[diagnostic(code(runner::usage))]
    Usage(String),

    #[error(transparent)]
    #[diagnostic(code(runner::train))]
    Train(TrainError),

    /// Reading or writing a run folder failed (a folder argument that
    /// names no run is [`Error::Usage`], see the `From` below).
    #[error(transparent)]
    #[diagnostic(code(runner::output))]
    RunDir(RunDirError),

    #[error(transparent)]
    #[diagnostic(code(runner::report))]
    Report(#[from] ReportError),

    #[error("run failed: {0}")]
    #[diagnostic(code(runner::failed))]
    RunFailed(String),

    #[error("{0}")]
    #[diagnostic(code(runner::interrupted))]
    Interrupted(String),
}

impl Error {
    /// A data error, located at the config key whose value is at fault
    /// (`data.path`, `data.classes`) where it has one: the file and line
    /// that set it, the `--set` flag or the variable.
    pub fn data(sources: &Sources, e: DataError) -> Error {
        match e.located(sources) {
            Ok(located) => Error::DataAt(located),
            Err(e) => Error::Data(e),
        }
    }
}

impl From<PlanErrors> for Error {
    /// A single problem is shown on its own, without the "N problems" wrapper.
    fn from(mut e: PlanErrors) -> Error {
        if e.errors.len() == 1 {
            Error::Config(e.errors.remove(0))
        } else {
            Error::Plan(e)
        }
    }
}

impl Error {
    /// `e` as [`Error::from`] makes it, with `hint`, what to do instead,
    /// after the reason where the path cannot be written at all (a
    /// teammate's run in a shared `runs/`).
    pub fn unwritable_with(e: RunDirError, hint: impl std::fmt::Display) -> Error {
        if e.is_unwritable_path() {
            Error::Usage(format!("{e}; {hint}"))
        } else {
            e.into()
        }
    }
}

impl From<RunDirError> for Error {
    /// A folder argument that names no run is the command's mistake (2),
    /// as is a path that cannot be written at all (`--csv afile/x.csv`).
    fn from(e: RunDirError) -> Error {
        match e {
            e if e.is_unwritable_path() => Error::Usage(e.to_string()),
            RunDirError::NotARun { path, reason } => Error::Usage(
                RunDirError::NotARun {
                    reason: experiment_file(&path, Wanted::Run).unwrap_or(reason),
                    path,
                }
                .to_string(),
            ),
            other => Error::RunDir(other),
        }
    }
}

/// What a command wanted where it was given an experiment file.
pub enum Wanted {
    Run,
    Sweep,
}

/// Why the experiment file `path` is not the run (or sweep) folder a
/// command wants, naming its newest run (or sweep) from where its runs go:
/// `runner eval experiments/x.toml` is an easy slip. `None` when `path`
/// is not an experiment file.
pub fn experiment_file(path: &std::path::Path, wanted: Wanted) -> Option<String> {
    if !path.is_file() {
        return None;
    }
    let runs = crate::config::runs_of(path)?;
    let found = describe(&runs);
    const SUBJECT: &str = "it is an experiment file";
    Some(match wanted {
        Wanted::Run => found
            .experiment_runs(SUBJECT, &runs)
            .unwrap_or_else(|| format!("{SUBJECT}, with no run in {} yet", runs.display())),
        Wanted::Sweep => found.experiment_sweeps(SUBJECT, &runs),
    })
}

impl From<FolderError> for Error {
    fn from(e: FolderError) -> Error {
        match e {
            FolderError::Config(c) => Error::Config(c),
            FolderError::Plan(p) => p.into(),
            FolderError::NotASweep { dir, reason } => Error::Usage(
                FolderError::NotASweep {
                    reason: experiment_file(&dir, Wanted::Sweep).unwrap_or(reason),
                    dir,
                }
                .to_string(),
            ),
            other => Error::Usage(other.to_string()),
        }
    }
}

impl From<SweepError> for Error {
    /// A config or plan problem in a trial is shown as one; otherwise a
    /// trial failed or Slurm did (1), the user stopped the sweep (130), or
    /// the command asked for what cannot be done (2).
    fn from(e: SweepError) -> Error {
        match e {
            SweepError::Trial(TrialError::Config(c)) | SweepError::Config(c) => Error::Config(c),
            SweepError::Trial(TrialError::Plan(p)) => p.into(),
            SweepError::Folder(f) => f.into(),
            SweepError::Device(d) => Error::Device(d),
            SweepError::Data(d) => Error::Data(d),
            SweepError::DataAt(d) => Error::DataAt(d),
            SweepError::RunDir(r) => r.into(),
            e @ (SweepError::HParams(_)
            | SweepError::Slurm(_)
            | SweepError::NotSubmitted { .. }
            | SweepError::SlurmUnknown(_)
            | SweepError::TrialsFailed { .. }
            | SweepError::ChosenTrialInvalid { .. }
            | SweepError::CannotSignal { .. }) => Error::RunFailed(e.to_string()),
            e @ (SweepError::Stopped(_)
            | SweepError::InterruptedBeforeSubmit
            | SweepError::InterruptedSubmit { .. }
            | SweepError::InterruptedUncancelled { .. }) => Error::Interrupted(e.to_string()),
            e @ (SweepError::NoSweepTable(_)
            | SweepError::NoTrials
            | SweepError::Launcher(_)
            | SweepError::RunnerBinary(_)
            | SweepError::TrialsChanged { .. }
            | SweepError::SourceChanged { .. }
            | SweepError::FewerTrials { .. }
            | SweepError::BudgetChanged { .. }
            | SweepError::Locked(_)
            | SweepError::RunsLocally(_)
            | SweepError::RunsOnAnotherHost { .. }) => Error::Usage(e.to_string()),
        }
    }
}

impl Error {
    /// 2 for anything the user can fix in the command or config; 1 when a
    /// run itself failed.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_)
            | Error::Plan(_)
            | Error::Device(_)
            | Error::Usage(_)
            | Error::Data(_)
            | Error::DataAt(_)
            | Error::DataHint { .. } => 2,
            Error::Train(_) | Error::RunDir(_) | Error::Report(_) | Error::RunFailed(_) => 1,
            Error::Backend(e) if e.is_usage() => 2,
            Error::Backend(_) => 1,
            // The shell's convention for a run stopped by Ctrl-C.
            Error::Interrupted(_) => 130,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
