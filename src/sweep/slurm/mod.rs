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

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{Read, Write as _};
use std::ops::ControlFlow;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::spec::SlurmSpec;

/// Slurm's default `MaxArraySize`: array task ids must stay below it.
pub const DEFAULT_MAX_ARRAY_SIZE: usize = 1001;

/// The variable, passed with `sbatch --export`, that the batch script adds to
/// `SLURM_ARRAY_TASK_ID` to get the trial index (arrays split into chunks).
pub const OFFSET_VAR: &str = "RUNNER_TRIAL_OFFSET";

/// At most this much of a command's stderr is kept in an error.
const STDERR_TAIL_CHARS: usize = 800;

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

// ---------------------------------------------------------------------------
// Files under <sweep>/slurm
// ---------------------------------------------------------------------------

/// Where the Slurm launcher keeps its files inside a sweep folder.
#[derive(Debug, Clone)]
pub struct SlurmPaths {
    dir: PathBuf,
}

impl SlurmPaths {
    pub fn new(sweep_dir: &Path) -> SlurmPaths {
        SlurmPaths {
            dir: sweep_dir.join("slurm"),
        }
    }
    /// `<sweep>/slurm`
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The batch script, `<sweep>/slurm/sweep.sbatch`.
    pub fn script(&self) -> PathBuf {
        self.dir.join("sweep.sbatch")
    }
    /// Line N (counted from 0) is trial N's absolute folder.
    pub fn trials_file(&self) -> PathBuf {
        self.dir.join("trials.txt")
    }
    /// Every submission so far ([`read_jobs`]).
    pub fn jobs_file(&self) -> PathBuf {
        self.dir.join("jobs.json")
    }
    /// Per-task stdout and stderr, `%A_%a.out` / `%A_%a.err`.
    pub fn logs_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }
    /// The stdout and stderr files of array task `task_id` of job `job_id`.
    pub fn task_logs(&self, job_id: &str, task_id: usize) -> (PathBuf, PathBuf) {
        let logs = self.logs_dir();
        (
            logs.join(format!("{job_id}_{task_id}.out")),
            logs.join(format!("{job_id}_{task_id}.err")),
        )
    }
}

/// Write `<sweep>/slurm/trials.txt`: line N = `trial_dirs[N]`, which must be
/// absolute (batch jobs may start anywhere) and free of line breaks.
pub fn write_trials_file(sweep_dir: &Path, trial_dirs: &[PathBuf]) -> Result<PathBuf, SlurmError> {
    let mut text = String::new();
    for dir in trial_dirs {
        let Some(s) = dir.to_str() else {
            return Err(SlurmError::TrialPath {
                path: dir.clone(),
                reason: "not valid UTF-8",
            });
        };
        if !dir.is_absolute() {
            return Err(SlurmError::TrialPath {
                path: dir.clone(),
                reason: "not an absolute path",
            });
        }
        if s.contains(['\n', '\r']) {
            return Err(SlurmError::TrialPath {
                path: dir.clone(),
                reason: "it contains a line break",
            });
        }
        text.push_str(s);
        text.push('\n');
    }
    let path = SlurmPaths::new(sweep_dir).trials_file();
    write_atomic(&path, text.as_bytes())?;
    Ok(path)
}

/// Render the batch script ([`render_script`]) and write it to
/// `<sweep>/slurm/sweep.sbatch`, creating `slurm/logs/` (Slurm does not create
/// the folder of `--output`, and a task whose log folder is missing fails
/// without a trace).
pub fn write_script(
    spec: &SlurmSpec,
    sweep_dir: &Path,
    runner_bin: &Path,
    job_name: &str,
) -> Result<PathBuf, SlurmError> {
    let paths = SlurmPaths::new(sweep_dir);
    let logs = paths.logs_dir();
    std::fs::create_dir_all(&logs).map_err(|source| SlurmError::Io { path: logs, source })?;
    let path = paths.script();
    write_atomic(
        &path,
        render_script(spec, sweep_dir, runner_bin, job_name).as_bytes(),
    )?;
    Ok(path)
}

/// Write `bytes` to `path` through a temporary file in the same folder and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SlurmError> {
    let io = |source| SlurmError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

// ---------------------------------------------------------------------------
// The batch script
// ---------------------------------------------------------------------------

/// The batch script for a sweep: `#SBATCH` resources from `spec`, then a body
/// that maps `SLURM_ARRAY_TASK_ID + $RUNNER_TRIAL_OFFSET` to a line of
/// `<sweep>/slurm/trials.txt` and whose last line `exec`s
/// `<runner_bin> run --trial "$TRIAL_DIR"` (so `--signal=B:USR1@N`, sent to the
/// batch shell, reaches `runner` itself).
///
/// The `--array` range is not in the script: [`Slurm::submit`] passes it on
/// the `sbatch` command line, so a resubmission can name any subset of trials.
pub fn render_script(
    spec: &SlurmSpec,
    sweep_dir: &Path,
    runner_bin: &Path,
    job_name: &str,
) -> String {
    let paths = SlurmPaths::new(sweep_dir);
    let logs = paths.logs_dir();
    let mut s = String::new();
    let mut line = |text: String| {
        s.push_str(&text);
        s.push('\n');
    };
    line("#!/bin/bash".into());
    line(format!(
        "# Written by runner for the sweep {}: one array task per trial.",
        one_line(&sweep_dir.display().to_string())
    ));
    line(format!(
        "# sbatch gets --array=<trials> and --export=ALL,{OFFSET_VAR}=<first trial> on its command line."
    ));
    let mut opt =
        |name: &str, value: &str| line(format!("#SBATCH --{name}={}", sbatch_value(value)));
    opt("job-name", &job_name_of(job_name));
    opt("output", &format!("{}/%A_%a.out", logs.display()));
    opt("error", &format!("{}/%A_%a.err", logs.display()));
    if let Some(cpus) = spec.cpus_per_task {
        opt("cpus-per-task", &cpus.to_string());
    }
    if let Some(mem) = &spec.mem {
        opt("mem", mem);
    }
    if let Some(time) = &spec.time {
        opt("time", time);
    }
    if let Some(partition) = &spec.partition {
        opt("partition", partition);
    }
    if let Some(gres) = &spec.gres {
        opt("gres", gres);
    }
    if let Some(account) = &spec.account {
        opt("account", account);
    }
    opt("signal", &format!("B:USR1@{}", spec.signal_seconds));
    for extra in &spec.extra {
        let extra = one_line(extra);
        let extra = extra.trim();
        if extra.starts_with("#SBATCH") {
            line(extra.to_string());
        } else {
            line(format!("#SBATCH {extra}"));
        }
    }
    let trials_file = shell_quote(&paths.trials_file().display().to_string());
    let runner = shell_quote(&runner_bin.display().to_string());
    // Writing into a String cannot fail.
    let _ = write!(
        s,
        r#"
set -euo pipefail
trials_file={trials_file}
task_id=${{SLURM_ARRAY_TASK_ID:?not started as a Slurm array task}}
trial_index=$(( task_id + ${{{OFFSET_VAR}:-0}} ))
TRIAL_DIR=$(sed -n "$(( trial_index + 1 ))p" "$trials_file")
if [ -z "$TRIAL_DIR" ]; then
    echo "runner: no trial $trial_index in $trials_file" >&2
    exit 2
fi
echo "runner: job ${{SLURM_ARRAY_JOB_ID:-?}}_$task_id on ${{SLURMD_NODENAME:-?}} runs trial $trial_index: $TRIAL_DIR"
cd "${{SLURM_SUBMIT_DIR:-$PWD}}"
exec {runner} run --trial "$TRIAL_DIR"
"#
    );
    s
}

/// Control characters (a line break would end an `#SBATCH` line) become spaces.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Slurm job names: no whitespace or quotes (they show in `squeue` columns).
fn job_name_of(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() || c == '"' || c == '\'' {
                '-'
            } else {
                c
            }
        })
        .collect();
    if cleaned.is_empty() {
        "runner".into()
    } else {
        cleaned
    }
}

/// An `#SBATCH` value: double-quoted (which sbatch strips) when it has spaces.
fn sbatch_value(value: &str) -> String {
    let value = one_line(value);
    if value.contains(char::is_whitespace) {
        format!("\"{}\"", value.replace('"', ""))
    } else {
        value
    }
}

/// Single-quote `text` for bash.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

// ---------------------------------------------------------------------------
// Array ranges
// ---------------------------------------------------------------------------

/// `0-3,7,9-10` for `[0,1,2,3,7,9,10]` (sorted and deduplicated first).
pub fn compact_ranges(indices: &[usize]) -> String {
    let mut sorted = indices.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if end == start {
            let _ = write!(out, "{start}");
        } else {
            let _ = write!(out, "{start}-{end}");
        }
        i += 1;
    }
    out
}

/// The task ids of an array spec as Slurm prints it: `4`, `5-9%2`,
/// `[1,3-4]`, `0-15:4`. `None` when it is not one.
pub fn parse_array_spec(spec: &str) -> Option<Vec<usize>> {
    let spec = spec.trim().trim_start_matches('[').trim_end_matches(']');
    let spec = spec.split('%').next()?;
    let mut out = Vec::new();
    for part in spec.split(',') {
        let (range, step) = match part.split_once(':') {
            Some((r, s)) => (r, s.parse::<usize>().ok().filter(|&s| s > 0)?),
            None => (part, 1),
        };
        match range.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (a.parse::<usize>().ok()?, b.parse::<usize>().ok()?);
                if b < a {
                    return None;
                }
                out.extend((a..=b).step_by(step));
            }
            None => out.push(range.parse().ok()?),
        }
    }
    Some(out)
}

/// One `sbatch` of a split array: array task `t` runs trial `offset + t`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub offset: usize,
    pub trials: Vec<usize>,
}

impl Chunk {
    pub fn task_ids(&self) -> Vec<usize> {
        self.trials.iter().map(|t| t - self.offset).collect()
    }
}

/// Split `trials` into submissions whose task ids stay below
/// `max_array_size`. Trials that all fit keep offset 0 (task id = trial index);
/// later chunks start at their first trial.
pub fn plan_chunks(trials: &[usize], max_array_size: usize) -> Vec<Chunk> {
    let mut sorted = trials.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let max = max_array_size.max(1);
    let mut chunks: Vec<Chunk> = Vec::new();
    for t in sorted {
        if let Some(last) = chunks.last_mut() {
            if t - last.offset < max {
                last.trials.push(t);
                continue;
            }
        }
        let offset = if chunks.is_empty() && t < max { 0 } else { t };
        chunks.push(Chunk {
            offset,
            trials: vec![t],
        });
    }
    chunks
}

// ---------------------------------------------------------------------------
// Submissions and task states
// ---------------------------------------------------------------------------

/// One `sbatch` call: array task `t` of `job_id` runs trial `offset + t`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmittedJob {
    pub job_id: String,
    pub offset: usize,
    pub trials: Vec<usize>,
    /// Set when `sbatch --parsable` named a cluster (`jobid;cluster`, as with
    /// `--clusters`); later commands then pass `-M cluster`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
}

impl SubmittedJob {
    /// The array task id that runs `trial`, if this job runs it.
    pub fn task_id(&self, trial: usize) -> Option<usize> {
        self.trials.contains(&trial).then(|| trial - self.offset)
    }

    /// The stdout and stderr files of the task that runs `trial`.
    pub fn log_files(&self, sweep_dir: &Path, trial: usize) -> Option<(PathBuf, PathBuf)> {
        let task = self.task_id(trial)?;
        Some(SlurmPaths::new(sweep_dir).task_logs(&self.job_id, task))
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct JobsFile {
    jobs: Vec<SubmittedJob>,
}

/// Every submission recorded in `<sweep>/slurm/jobs.json`, oldest first
/// (empty when nothing was submitted).
pub fn read_jobs(sweep_dir: &Path) -> Result<Vec<SubmittedJob>, SlurmError> {
    let path = SlurmPaths::new(sweep_dir).jobs_file();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(SlurmError::Io { path, source }),
    };
    let file: JobsFile =
        serde_json::from_str(&text).map_err(|source| SlurmError::Json { path, source })?;
    Ok(file.jobs)
}

fn append_job(sweep_dir: &Path, job: &SubmittedJob) -> Result<(), SlurmError> {
    let mut jobs = read_jobs(sweep_dir)?;
    jobs.push(job.clone());
    let path = SlurmPaths::new(sweep_dir).jobs_file();
    let text =
        serde_json::to_string_pretty(&JobsFile { jobs }).map_err(|source| SlurmError::Json {
            path: path.clone(),
            source,
        })?;
    write_atomic(&path, format!("{text}\n").as_bytes())
}

/// The latest submission that ran each trial (a resubmission replaces an earlier one).
pub fn latest_job_per_trial(jobs: &[SubmittedJob]) -> BTreeMap<usize, &SubmittedJob> {
    let mut out = BTreeMap::new();
    for job in jobs {
        for &t in &job.trials {
            out.insert(t, job);
        }
    }
    out
}

/// What Slurm says about one array task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TaskState {
    Pending,
    Running,
    Completed,
    /// A non-zero exit; killed by signal N reads as 128 + N; -1 when unknown.
    Failed {
        exit_code: i32,
    },
    Timeout,
    OutOfMemory,
    NodeFail,
    Cancelled,
    Preempted,
    /// Slurm no longer knows the task (aged out of squeue and scontrol, no
    /// accounting): the trial's meta.json is the only word.
    Gone,
}

impl TaskState {
    /// From a Slurm state name (`RUNNING`, `CANCELLED by 0`, `OUT_OF_MEMORY`...)
    /// and, for failures, the exit code.
    pub fn from_slurm(state: &str, exit_code: Option<i32>) -> TaskState {
        let name = state
            .split_whitespace()
            .next()
            .unwrap_or("")
            .trim_end_matches('+');
        match name.to_ascii_uppercase().as_str() {
            "PENDING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "RESV_DEL_HOLD"
            | "CONFIGURING" => TaskState::Pending,
            "RUNNING" | "COMPLETING" | "SUSPENDED" | "STOPPED" | "SIGNALING" | "STAGE_OUT"
            | "RESIZING" | "POWER_UP_NODE" | "UPDATE_DB" => TaskState::Running,
            "COMPLETED" => TaskState::Completed,
            "FAILED" | "SPECIAL_EXIT" => TaskState::Failed {
                exit_code: exit_code.unwrap_or(-1),
            },
            "TIMEOUT" | "DEADLINE" => TaskState::Timeout,
            "OUT_OF_MEMORY" => TaskState::OutOfMemory,
            "NODE_FAIL" | "BOOT_FAIL" => TaskState::NodeFail,
            "CANCELLED" | "REVOKED" => TaskState::Cancelled,
            "PREEMPTED" => TaskState::Preempted,
            // A state this code does not know yet: keep watching; once it ages
            // out the trial's meta.json decides.
            _ => TaskState::Pending,
        }
    }

    /// Pending or running: Slurm may still change it.
    pub fn is_active(&self) -> bool {
        matches!(self, TaskState::Pending | TaskState::Running)
    }

    /// A short lowercase label for tables: `pending`, `failed`, `out_of_memory`...
    pub fn label(&self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Running => "running",
            TaskState::Completed => "completed",
            TaskState::Failed { .. } => "failed",
            TaskState::Timeout => "timeout",
            TaskState::OutOfMemory => "out_of_memory",
            TaskState::NodeFail => "node_fail",
            TaskState::Cancelled => "cancelled",
            TaskState::Preempted => "preempted",
            TaskState::Gone => "gone",
        }
    }

    /// One sentence for the journal and the summary.
    pub fn explain(&self) -> String {
        match self {
            TaskState::Pending => "waiting in the Slurm queue".into(),
            TaskState::Running => "running under Slurm".into(),
            TaskState::Completed => "the Slurm task ended with exit code 0".into(),
            TaskState::Failed { exit_code } if *exit_code < 0 => {
                "the Slurm task failed (exit code unknown); see its .err log".into()
            }
            TaskState::Failed { exit_code } if *exit_code > 128 => format!(
                "the Slurm task failed with exit code {exit_code} (killed by signal {}); see its .err log",
                exit_code - 128
            ),
            TaskState::Failed { exit_code } => {
                format!("the Slurm task failed with exit code {exit_code}; see its .err log")
            }
            TaskState::Timeout => {
                "the Slurm time limit was reached (TIMEOUT); raise [sweep.launcher] time or resume"
                    .into()
            }
            TaskState::OutOfMemory => {
                "killed for using more memory than requested (OUT_OF_MEMORY); raise [sweep.launcher] mem"
                    .into()
            }
            TaskState::NodeFail => "the node running it failed (NODE_FAIL); resume to rerun".into(),
            TaskState::Cancelled => "cancelled (scancel, or by an administrator)".into(),
            TaskState::Preempted => "preempted by a higher-priority job; resume to rerun".into(),
            TaskState::Gone => {
                "no longer known to Slurm (aged out); the trial's meta.json tells".into()
            }
        }
    }
}

/// `3:0` -> 3; `0:9` (killed by signal 9) -> 137.
fn parse_exit_code(text: &str) -> Option<i32> {
    let (code, signal) = match text.split_once(':') {
        Some((c, s)) => (c.trim().parse::<i32>().ok()?, s.trim().parse::<i32>().ok()?),
        None => (text.trim().parse::<i32>().ok()?, 0),
    };
    Some(if code == 0 && signal > 0 {
        128 + signal
    } else {
        code
    })
}

/// Split `jobid_task` / `jobid_[a-b%n]` into the job id and its task ids.
fn split_array_id(id: &str) -> Option<(&str, Vec<usize>)> {
    let (job, tasks) = id.trim().split_once('_')?;
    Some((job, parse_array_spec(tasks)?))
}

/// Task states keyed by (array job id, array task id).
pub type TaskStates = BTreeMap<(String, usize), TaskState>;

/// `squeue -h -r -t all -o '%i|%K|%T|%r'` lines -> (job id, task id) -> state.
/// `FAILED` here has no exit code yet (squeue does not know it).
pub fn parse_squeue(output: &str) -> TaskStates {
    let mut out = BTreeMap::new();
    for line in output.lines() {
        let mut fields = line.split('|');
        let (Some(id), _, Some(state)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let Some((job, tasks)) = split_array_id(id) else {
            continue;
        };
        let state = TaskState::from_slurm(state, None);
        for task in tasks {
            out.insert((job.to_string(), task), state);
        }
    }
    out
}

/// `scontrol -o show job ID` lines (one per array task or pending range).
pub fn parse_scontrol_jobs(output: &str) -> TaskStates {
    let mut out = BTreeMap::new();
    for line in output.lines() {
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        };
        let (Some(job), Some(tasks), Some(state)) =
            (field("ArrayJobId"), field("ArrayTaskId"), field("JobState"))
        else {
            continue;
        };
        let Some(tasks) = parse_array_spec(tasks) else {
            continue;
        };
        let state = TaskState::from_slurm(state, field("ExitCode").and_then(parse_exit_code));
        for task in tasks {
            out.insert((job.to_string(), task), state);
        }
    }
    out
}

/// `sacct -n -P -X -o JobID,State,ExitCode` lines.
pub fn parse_sacct(output: &str) -> TaskStates {
    let mut out = BTreeMap::new();
    for line in output.lines() {
        let mut fields = line.split('|');
        let (Some(id), Some(state), exit) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let Some((job, tasks)) = split_array_id(id) else {
            continue;
        };
        let state = TaskState::from_slurm(state, exit.and_then(parse_exit_code));
        for task in tasks {
            out.insert((job.to_string(), task), state);
        }
    }
    out
}

/// `sbatch --parsable` prints `jobid` or `jobid;cluster`.
pub fn parse_parsable(stdout: &str) -> Option<(String, Option<String>)> {
    let line = stdout
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())?;
    let (job, cluster) = match line.split_once(';') {
        Some((j, c)) => (j.trim(), Some(c.trim()).filter(|c| !c.is_empty())),
        None => (line, None),
    };
    if job.is_empty() || !job.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((job.to_string(), cluster.map(str::to_string)))
}

/// `scontrol show config` -> `MaxArraySize`, `AccountingStorageType`.
fn parse_config(output: &str) -> ClusterFacts {
    let mut facts = ClusterFacts {
        max_array_size: DEFAULT_MAX_ARRAY_SIZE,
        accounting: None,
    };
    for line in output.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match key.trim() {
            "MaxArraySize" => {
                if let Ok(n) = value.trim().parse() {
                    facts.max_array_size = n;
                }
            }
            "AccountingStorageType" => {
                facts.accounting = Some(!value.trim().ends_with("/none"));
            }
            _ => {}
        }
    }
    facts
}

#[derive(Debug, Clone, Copy)]
struct ClusterFacts {
    max_array_size: usize,
    /// `None`: the config did not say.
    accounting: Option<bool>,
}

// ---------------------------------------------------------------------------
// Running commands
// ---------------------------------------------------------------------------

/// How the client runs Slurm commands.
#[derive(Debug, Clone)]
pub struct SlurmOptions {
    /// Per command (default 30 s).
    pub timeout: Duration,
    /// Extra tries after a transient failure (default 3).
    pub retries: u32,
    /// Wait before the first retry, doubled each time (default 1 s).
    pub backoff: Duration,
    /// `PATH` for the Slurm commands; `None` keeps the process's.
    pub path: Option<OsString>,
    /// Extra environment for the commands, e.g. `SLURM_CONF`.
    pub env: Vec<(OsString, OsString)>,
}

impl Default for SlurmOptions {
    fn default() -> Self {
        SlurmOptions {
            timeout: Duration::from_secs(30),
            retries: 3,
            backoff: Duration::from_secs(1),
            path: None,
            env: Vec::new(),
        }
    }
}

#[derive(Debug)]
struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Whether a failed command may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Queries and cancels: timeouts and unreachable controllers are retried.
    Idempotent,
    /// `sbatch`: retried only when the controller clearly never got it.
    Submit,
}

/// stderr text of a controller that could not be reached or was busy.
fn is_transient_stderr(stderr: &str) -> bool {
    const MARKERS: &[&str] = &[
        "unable to contact slurm controller",
        "socket timed out",
        "connection refused",
        "connection timed out",
        "resource temporarily unavailable",
        "temporarily unable",
        "zero bytes were transmitted",
        "communication connection failure",
        "slurm_receive_msg",
        "transport endpoint",
        "slurmctld is busy",
        "try again",
    ];
    let lower = stderr.to_ascii_lowercase();
    MARKERS.iter().any(|m| lower.contains(m))
}

/// An `sbatch` failure where the controller certainly queued nothing.
fn is_submit_refused(stderr: &str) -> bool {
    let lower = stderr.to_ascii_lowercase();
    lower.contains("unable to contact slurm controller")
        || lower.contains("connection refused")
        || lower.contains("temporarily unable to accept job")
}

/// `squeue`/`scontrol`/`scancel` on a job id that Slurm has forgotten.
fn is_unknown_job(stderr: &str) -> bool {
    stderr.contains("Invalid job id specified")
}

fn tail(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().rev().nth(STDERR_TAIL_CHARS) {
        Some((i, _)) => format!("...{}", &text[i..]),
        None => text.to_string(),
    }
}

/// A Slurm client for one sweep folder.
#[derive(Debug)]
pub struct Slurm {
    sweep_dir: PathBuf,
    options: SlurmOptions,
    facts: OnceLock<ClusterFacts>,
    /// Whether `sacct` works here, once known.
    accounting: Mutex<Option<bool>>,
}

impl Slurm {
    pub fn new(sweep_dir: &Path) -> Slurm {
        Slurm::with_options(sweep_dir, SlurmOptions::default())
    }

    pub fn with_options(sweep_dir: &Path, options: SlurmOptions) -> Slurm {
        Slurm {
            sweep_dir: sweep_dir.to_path_buf(),
            options,
            facts: OnceLock::new(),
            accounting: Mutex::new(None),
        }
    }

    pub fn sweep_dir(&self) -> &Path {
        &self.sweep_dir
    }

    pub fn options(&self) -> &SlurmOptions {
        &self.options
    }

    fn describe(program: &str, args: &[String]) -> String {
        let mut s = program.to_string();
        for a in args {
            s.push(' ');
            s.push_str(a);
        }
        s
    }

    /// Run once under the timeout; the whole process group is killed on expiry.
    fn run_once(&self, program: &str, args: &[String]) -> Result<Output, SlurmError> {
        let command = Slurm::describe(program, args);
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(path) = &self.options.path {
            cmd.env("PATH", path);
        }
        for (k, v) in &self.options.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().map_err(|source| SlurmError::Spawn {
            command: command.clone(),
            source,
        })?;
        let pgid = child.id() as libc::pid_t;
        let (tx, rx) = mpsc::channel::<(bool, Vec<u8>)>();
        let readers = [
            child
                .stdout
                .take()
                .map(|r| Box::new(r) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|r| Box::new(r) as Box<dyn Read + Send>),
        ];
        for (is_err, reader) in readers.into_iter().enumerate() {
            if let Some(mut reader) = reader {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let mut buf = Vec::new();
                    let _ = reader.read_to_end(&mut buf);
                    let _ = tx.send((is_err == 1, buf));
                });
            }
        }
        drop(tx);
        let kill_group = || {
            // SAFETY: killpg only sends a signal; the group is the child's own
            // (process_group(0) above), so nothing else is touched.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        };
        let deadline = Instant::now() + self.options.timeout;
        let mut pause = Duration::from_millis(2);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) => {}
                Err(source) => {
                    kill_group();
                    let _ = child.wait();
                    return Err(SlurmError::Spawn { command, source });
                }
            }
            if Instant::now() >= deadline {
                kill_group();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        };
        // Collect both pipes; a grandchild that keeps one open past the
        // deadline is killed with the group.
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        for _ in 0..2 {
            let got = match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(got) => Some(got),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    kill_group();
                    rx.recv_timeout(Duration::from_secs(2)).ok()
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => None,
            };
            match got {
                Some((true, buf)) => stderr = buf,
                Some((false, buf)) => stdout = buf,
                None => break,
            }
        }
        let stdout = String::from_utf8_lossy(&stdout).into_owned();
        let stderr = String::from_utf8_lossy(&stderr).into_owned();
        match status {
            Some(status) => Ok(Output {
                status,
                stdout,
                stderr,
            }),
            None => Err(SlurmError::Timeout {
                command,
                timeout: self.options.timeout,
                stderr: tail(&stderr),
            }),
        }
    }

    /// Run with retries. A non-zero exit is returned as `Ok` when `accept`
    /// says its stderr is an answer (e.g. "Invalid job id specified").
    fn call(
        &self,
        program: &str,
        args: &[String],
        retry: Retry,
        accept: &dyn Fn(&str) -> bool,
    ) -> Result<Output, SlurmError> {
        let mut attempt = 0;
        loop {
            let err = match self.run_once(program, args) {
                Ok(out) if out.status.success() || accept(&out.stderr) => return Ok(out),
                Ok(out) => SlurmError::Failed {
                    command: Slurm::describe(program, args),
                    status: out.status.to_string(),
                    transient: is_transient_stderr(&out.stderr),
                    stderr: tail(&out.stderr),
                },
                Err(e) => e,
            };
            let retryable = match retry {
                Retry::Idempotent => err.is_transient(),
                // A submission may have reached the controller unless it
                // clearly did not: only then is it safe to repeat.
                Retry::Submit => match &err {
                    SlurmError::Failed { stderr, .. } if is_submit_refused(stderr) => true,
                    SlurmError::Failed {
                        command,
                        stderr,
                        transient: true,
                        ..
                    } => {
                        return Err(SlurmError::SubmitUncertain {
                            command: command.clone(),
                            reason: format!("failed: {stderr}"),
                        })
                    }
                    SlurmError::Timeout {
                        command, timeout, ..
                    } => {
                        return Err(SlurmError::SubmitUncertain {
                            command: command.clone(),
                            reason: format!("gave no answer within {}s", timeout.as_secs_f64()),
                        })
                    }
                    _ => false,
                },
            };
            if !retryable || attempt >= self.options.retries {
                return Err(err);
            }
            std::thread::sleep(self.options.backoff.saturating_mul(1 << attempt.min(16)));
            attempt += 1;
        }
    }

    fn facts(&self) -> Result<ClusterFacts, SlurmError> {
        if let Some(facts) = self.facts.get() {
            return Ok(*facts);
        }
        let out = self.call(
            "scontrol",
            &["show".into(), "config".into()],
            Retry::Idempotent,
            &|_| false,
        )?;
        let facts = parse_config(&out.stdout);
        Ok(*self.facts.get_or_init(|| facts))
    }

    /// The cluster's `MaxArraySize` (read once from `scontrol show config`).
    pub fn max_array_size(&self) -> Result<usize, SlurmError> {
        Ok(self.facts()?.max_array_size)
    }

    /// `-M cluster` for commands about jobs submitted to a named cluster.
    fn cluster_args(cluster: &Option<String>) -> Vec<String> {
        match cluster {
            Some(c) => vec!["-M".into(), c.clone()],
            None => Vec::new(),
        }
    }

    /// Submit `script` as job arrays running `trials` (trial indices), at most
    /// `max_parallel` at once. Arrays that would reach `MaxArraySize` are split
    /// into several submissions, each with its own `RUNNER_TRIAL_OFFSET`; with
    /// `max_parallel`, each waits for the previous (`--dependency=afterany`) so
    /// the limit holds across them. Every submission is appended to
    /// `slurm/jobs.json` as soon as `sbatch` answers.
    pub fn submit(
        &self,
        script: &Path,
        trials: &[usize],
        max_parallel: Option<usize>,
    ) -> Result<Vec<SubmittedJob>, SlurmError> {
        self.submit_until(script, trials, max_parallel, &|| false)
    }

    /// [`Slurm::submit`], stopping before the next `sbatch` once `stop`
    /// says so; what was submitted is recorded and returned.
    pub fn submit_until(
        &self,
        script: &Path,
        trials: &[usize],
        max_parallel: Option<usize>,
        stop: &dyn Fn() -> bool,
    ) -> Result<Vec<SubmittedJob>, SlurmError> {
        if trials.is_empty() {
            return Ok(Vec::new());
        }
        let max_array_size = self.max_array_size()?;
        if max_array_size == 0 {
            return Err(SlurmError::ArraysDisabled);
        }
        let throttle = max_parallel
            .filter(|&n| n > 0)
            .map(|n| format!("%{n}"))
            .unwrap_or_default();
        let mut submitted: Vec<SubmittedJob> = Vec::new();
        for chunk in plan_chunks(trials, max_array_size) {
            if stop() {
                break;
            }
            let mut args = vec![
                "--parsable".to_string(),
                format!("--array={}{throttle}", compact_ranges(&chunk.task_ids())),
                format!("--export=ALL,{OFFSET_VAR}={}", chunk.offset),
            ];
            if let (Some(previous), false) = (submitted.last(), throttle.is_empty()) {
                args.push(format!("--dependency=afterany:{}", previous.job_id));
            }
            args.push(script.display().to_string());
            let out = self.call("sbatch", &args, Retry::Submit, &|_| false)?;
            let (job_id, cluster) =
                parse_parsable(&out.stdout).ok_or_else(|| SlurmError::Parse {
                    command: Slurm::describe("sbatch", &args),
                    detail: "expected `jobid` or `jobid;cluster`".into(),
                    output: tail(&out.stdout),
                })?;
            let job = SubmittedJob {
                job_id,
                offset: chunk.offset,
                trials: chunk.trials,
                cluster,
            };
            append_job(&self.sweep_dir, &job)?;
            submitted.push(job);
        }
        Ok(submitted)
    }

    /// Whether `sacct` is worth asking: not when the config says
    /// `accounting_storage/none` or an earlier `sacct` said "accounting storage
    /// is disabled".
    fn may_have_accounting(&self) -> Result<bool, SlurmError> {
        let known = *self.accounting.lock().unwrap_or_else(|p| p.into_inner());
        match known {
            Some(known) => Ok(known),
            None => Ok(self.facts()?.accounting != Some(false)),
        }
    }

    fn set_accounting(&self, available: bool) {
        *self.accounting.lock().unwrap_or_else(|p| p.into_inner()) = Some(available);
    }

    /// `sacct` for `ids`; `None` when the cluster turns out to keep no accounting.
    fn sacct(
        &self,
        cluster: &Option<String>,
        ids: &[&str],
    ) -> Result<Option<TaskStates>, SlurmError> {
        let mut args = Slurm::cluster_args(cluster);
        args.extend([
            "-n".into(),
            "-X".into(),
            "-P".into(),
            "-o".into(),
            "JobID,State,ExitCode".into(),
            "-j".into(),
            ids.join(","),
        ]);
        match self.call("sacct", &args, Retry::Idempotent, &|_| false) {
            Ok(out) => {
                self.set_accounting(true);
                Ok(Some(parse_sacct(&out.stdout)))
            }
            Err(SlurmError::Failed { stderr, .. })
                if stderr
                    .to_ascii_lowercase()
                    .contains("accounting storage is disabled") =>
            {
                self.set_accounting(false);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The state of every trial in `jobs` (for a trial submitted more than once,
    /// its latest submission). Live tasks come from `squeue`; exit codes and
    /// finished tasks from `sacct` when the cluster keeps accounting, else from
    /// `scontrol show job`; a task none of them knows is [`TaskState::Gone`].
    pub fn poll(&self, jobs: &[SubmittedJob]) -> Result<BTreeMap<usize, TaskState>, SlurmError> {
        let latest = latest_job_per_trial(jobs);
        // Group by cluster: one squeue call per cluster.
        let mut by_cluster: BTreeMap<Option<String>, Vec<&SubmittedJob>> = BTreeMap::new();
        for job in jobs {
            by_cluster.entry(job.cluster.clone()).or_default().push(job);
        }
        let mut known: TaskStates = BTreeMap::new();
        for (cluster, group) in &by_cluster {
            let mut ids: Vec<&str> = group.iter().map(|j| j.job_id.as_str()).collect();
            ids.sort_unstable();
            ids.dedup();
            let mut args = Slurm::cluster_args(cluster);
            args.extend([
                "-h".into(),
                "-r".into(),
                "-t".into(),
                "all".into(),
                "-j".into(),
                ids.join(","),
                "-o".into(),
                "%i|%K|%T|%r".into(),
            ]);
            let out = self.call("squeue", &args, Retry::Idempotent, &is_unknown_job)?;
            known.extend(parse_squeue(&out.stdout));
        }

        // Tasks that need more than squeue said: unknown ones and failures
        // (squeue shows no exit code).
        let needs_detail = |known: &TaskStates, job: &SubmittedJob| {
            job.trials.iter().any(|&t| {
                latest.get(&t).is_some_and(|l| std::ptr::eq(*l, job))
                    && matches!(
                        known.get(&(job.job_id.clone(), t - job.offset)),
                        None | Some(TaskState::Failed { .. })
                    )
            })
        };
        let pending: Vec<&SubmittedJob> = jobs.iter().filter(|j| needs_detail(&known, j)).collect();
        let mut without_accounting: Vec<&SubmittedJob> = Vec::new();
        if !pending.is_empty() && self.may_have_accounting()? {
            for (cluster, group) in &by_cluster {
                let group: Vec<&SubmittedJob> = group
                    .iter()
                    .copied()
                    .filter(|j| pending.iter().any(|p| std::ptr::eq(*p, *j)))
                    .collect();
                let mut ids: Vec<&str> = group.iter().map(|j| j.job_id.as_str()).collect();
                ids.dedup();
                if ids.is_empty() {
                    continue;
                }
                match self.sacct(cluster, &ids)? {
                    Some(detail) => merge_detail(&mut known, detail),
                    None => without_accounting.extend(group),
                }
            }
        } else {
            without_accounting = pending;
        }
        let mut asked: Vec<&str> = Vec::new();
        for job in without_accounting {
            if asked.contains(&job.job_id.as_str()) {
                continue;
            }
            asked.push(&job.job_id);
            let mut args = Slurm::cluster_args(&job.cluster);
            args.extend(["-o".into(), "show".into(), "job".into(), job.job_id.clone()]);
            let out = self.call("scontrol", &args, Retry::Idempotent, &is_unknown_job)?;
            merge_detail(&mut known, parse_scontrol_jobs(&out.stdout));
        }

        Ok(latest
            .into_iter()
            .map(|(trial, job)| {
                let state = known
                    .get(&(job.job_id.clone(), trial - job.offset))
                    .copied()
                    .unwrap_or(TaskState::Gone);
                (trial, state)
            })
            .collect())
    }

    /// Cancel every task of `jobs` (`scancel`); jobs Slurm has already
    /// forgotten or that just finished are no error.
    pub fn cancel(&self, jobs: &[SubmittedJob]) -> Result<(), SlurmError> {
        let mut by_cluster: BTreeMap<Option<String>, Vec<String>> = BTreeMap::new();
        for job in jobs {
            let ids = by_cluster.entry(job.cluster.clone()).or_default();
            if !ids.contains(&job.job_id) {
                ids.push(job.job_id.clone());
            }
        }
        for (cluster, ids) in by_cluster {
            let mut args = Slurm::cluster_args(&cluster);
            args.extend(ids);
            let accept = |stderr: &str| {
                stderr
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .all(|l| is_unknown_job(l) || l.contains("already completing or completed"))
            };
            self.call("scancel", &args, Retry::Idempotent, &accept)?;
        }
        Ok(())
    }
}

/// Detail from sacct/scontrol replaces what squeue said, except that a task
/// squeue still shows as live stays live (the other source may lag).
fn merge_detail(known: &mut TaskStates, detail: TaskStates) {
    for (key, state) in detail {
        match known.get(&key) {
            Some(current) if current.is_active() => {}
            _ => {
                known.insert(key, state);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Polling politely
// ---------------------------------------------------------------------------

/// What [`Poller::run`] reports after each round.
#[derive(Debug)]
pub enum PollEvent<'a> {
    States(&'a BTreeMap<usize, TaskState>),
    /// This round failed; polling goes on at the next interval.
    TransientError {
        error: &'a SlurmError,
        consecutive: u32,
    },
}

/// Polls at a fixed interval, riding out transient controller trouble.
#[derive(Debug, Clone)]
pub struct Poller {
    /// Between rounds (default 5 s; `squeue` costs the controller an RPC).
    pub interval: Duration,
    /// Failed rounds in a row before giving up (default 24: two minutes at 5 s).
    pub max_consecutive_errors: u32,
}

impl Default for Poller {
    fn default() -> Self {
        Poller {
            interval: Duration::from_secs(5),
            max_consecutive_errors: 24,
        }
    }
}

impl Poller {
    /// Poll `jobs` until no task is pending or running, or until `on_event`
    /// breaks. Returns the last states. A non-transient error, or more than
    /// `max_consecutive_errors` failed rounds in a row, ends polling with an error.
    pub fn run(
        &self,
        slurm: &Slurm,
        jobs: &[SubmittedJob],
        mut on_event: impl FnMut(PollEvent<'_>) -> ControlFlow<()>,
    ) -> Result<BTreeMap<usize, TaskState>, SlurmError> {
        let mut consecutive = 0;
        loop {
            match slurm.poll(jobs) {
                Ok(states) => {
                    consecutive = 0;
                    if on_event(PollEvent::States(&states)).is_break()
                        || states.values().all(|s| !s.is_active())
                    {
                        return Ok(states);
                    }
                }
                Err(error) if error.is_transient() => {
                    consecutive += 1;
                    if consecutive > self.max_consecutive_errors {
                        return Err(SlurmError::GaveUp {
                            count: consecutive,
                            last: Box::new(error),
                        });
                    }
                    let flow = on_event(PollEvent::TransientError {
                        error: &error,
                        consecutive,
                    });
                    if flow.is_break() {
                        return Err(error);
                    }
                }
                Err(error) => return Err(error),
            }
            std::thread::sleep(self.interval);
        }
    }
}

#[cfg(test)]
mod tests;
