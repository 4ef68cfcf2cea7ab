//! Sweep trials as Slurm job arrays: the batch script, and `sbatch`, `squeue`,
//! `scontrol`, `sacct` and `scancel` run as child processes (no libslurm
//! bindings, which tie a build to one Slurm version).
//!
//! Slurm only explains: a trial is done when its own `meta.json` says
//! `completed`. A [`TaskState`] shows progress and says why a trial failed.
//!
//! Every command runs under a timeout (with the controller down clients take
//! about 9 s to fail; a `SLURM_CONF` naming a missing file hangs them 60 s),
//! and transient failures are retried with backoff. `sbatch` is retried only
//! when the controller clearly never got the request, so a slow answer never
//! queues an array twice.
//!
//! Layout under the sweep folder:
//!
//! ```text
//! slurm/sweep.sbatch      the batch script (render_script)
//! slurm/trials.txt        line N = trial N's absolute folder
//! slurm/jobs.json         every submission: job id, offset, trials
//! slurm/logs/%A_%a.out    per array task stdout (and .err)
//! ```
//!
//! One file per concern, each using only those listed before it (and the
//! error and constants here):
//!
//! ```text
//! files.rs   SlurmPaths, trials.txt, atomic writes
//! script.rs  the batch script (render_script, write_script)
//! array.rs   --array ranges and chunks below MaxArraySize
//! jobs.rs    jobs.json: SubmittedJob, read_jobs
//! state.rs   TaskState and the squeue/scontrol/sacct/sbatch parsers
//! client.rs  Slurm: commands under timeouts and retries; submit, poll, cancel
//! poll.rs    Poller: polling rounds that ride out transient trouble
//! ```

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

mod array;
mod client;
mod files;
mod jobs;
mod poll;
mod script;
mod state;

pub use array::{array_spec, compact_ranges, parse_array_spec, plan_chunks, Chunk};
pub use client::{Slurm, SlurmOptions};
pub use files::{write_trials_file, SlurmPaths};
pub use jobs::{latest_job_per_trial, read_jobs, SubmittedJob};
pub use poll::{PollEvent, Poller};
pub use script::{job_name, render_script, sbatch_lines, write_script};
pub use state::{
    parse_parsable, parse_sacct, parse_scontrol_jobs, parse_squeue, TaskState, TaskStates,
};

/// Slurm's default `MaxArraySize`: array task ids must stay below it.
pub const DEFAULT_MAX_ARRAY_SIZE: usize = 1001;

/// The variable, passed with `sbatch --export`, that the batch script adds to
/// `SLURM_ARRAY_TASK_ID` to get the trial index (arrays split into chunks).
pub const OFFSET_VAR: &str = "RUNNER_TRIAL_OFFSET";

#[derive(Debug, Error)]
pub enum SlurmError {
    #[error("could not run `{command}`: {source} (is Slurm installed and on PATH?)")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "`{command}` gave no answer within {}s; is the Slurm controller up (`scontrol ping`)? \
         A SLURM_CONF that names a missing file also makes every Slurm command hang{}",
        timeout.as_secs_f64(),
        stderr_suffix(stderr)
    )]
    Timeout {
        command: String,
        timeout: Duration,
        stderr: String,
    },

    #[error(
        "`{command}` {reason}: the array may or may not have been queued. \
         Check `squeue --me` before submitting again"
    )]
    SubmitUncertain { command: String, reason: String },

    #[error("`{command}` failed ({status}){}", stderr_suffix(stderr))]
    Failed {
        command: String,
        status: String,
        stderr: String,
        /// A controller that could not be reached or was busy: worth retrying.
        transient: bool,
    },

    #[error("unexpected output from `{command}`: {detail}: {output:?}")]
    Parse {
        command: String,
        detail: String,
        output: String,
    },

    #[error("this cluster disables job arrays (MaxArraySize=0); Slurm sweeps need them")]
    ArraysDisabled,

    #[error("trial folder {path:?} cannot be listed in trials.txt: {reason}")]
    TrialPath { path: PathBuf, reason: &'static str },

    /// An atomic write (`trials.txt`, the batch script, the job list).
    #[error(transparent)]
    Write(#[from] crate::rundir::RunDirError),

    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{}: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("gave up polling Slurm after {count} failed rounds in a row; last error: {last}")]
    GaveUp {
        count: u32,
        #[source]
        last: Box<SlurmError>,
    },
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", stderr.trim())
    }
}

impl SlurmError {
    /// Whether trying again later may succeed: a timeout or an unreachable or
    /// busy controller (an uncertain submission is not: it needs a look first).
    pub fn is_transient(&self) -> bool {
        match self {
            SlurmError::Timeout { .. } => true,
            SlurmError::Failed { transient, .. } => *transient,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests;
