//! The client: Slurm commands under a timeout, transient failures retried
//! with backoff; submit, poll and cancel.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::array::{array_spec, plan_chunks};
use super::jobs::{append_job, latest_job_per_trial, SubmittedJob};
use super::state::{
    parse_config, parse_parsable, parse_sacct, parse_scontrol_jobs, parse_squeue, ClusterFacts,
    TaskState, TaskStates,
};
use super::{SlurmError, OFFSET_VAR};
use crate::process::{output_within, Finished};

/// At most this much of a command's stderr is kept in an error.
const STDERR_TAIL_CHARS: usize = 800;

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
        cmd.args(args);
        if let Some(path) = &self.options.path {
            cmd.env("PATH", path);
        }
        for (k, v) in &self.options.env {
            cmd.env(k, v);
        }
        match output_within(&mut cmd, self.options.timeout) {
            Ok(Finished::Exited {
                status,
                stdout,
                stderr,
            }) => Ok(Output {
                status,
                stdout: String::from_utf8_lossy(&stdout).into_owned(),
                stderr: String::from_utf8_lossy(&stderr).into_owned(),
            }),
            Ok(Finished::TimedOut { stderr, .. }) => Err(SlurmError::Timeout {
                command,
                timeout: self.options.timeout,
                stderr: tail(&String::from_utf8_lossy(&stderr)),
            }),
            Err(source) => Err(SlurmError::Spawn { command, source }),
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
        let throttled = max_parallel.is_some_and(|n| n > 0);
        let mut submitted: Vec<SubmittedJob> = Vec::new();
        for chunk in plan_chunks(trials, max_array_size) {
            if stop() {
                break;
            }
            let mut args = vec![
                "--parsable".to_string(),
                format!("--array={}", array_spec(&chunk.task_ids(), max_parallel)),
                format!("--export=ALL,{OFFSET_VAR}={}", chunk.offset),
            ];
            if let (Some(previous), true) = (submitted.last(), throttled) {
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
            self.call("scancel", &args, Retry::Idempotent, &gone_or_done)?;
        }
        Ok(())
    }
}

impl Slurm {
    /// Send `signal` (e.g. `TERM`) to the task of `job` that runs `trial`:
    /// `scancel --batch --signal=...`, which reaches the batch script's
    /// process, the `runner run` it execs (USR1: it stops at the next batch).
    /// A task that just finished is no error.
    pub fn signal(&self, job: &SubmittedJob, trial: usize, signal: &str) -> Result<(), SlurmError> {
        let Some(task) = job.task_id(trial) else {
            return Ok(());
        };
        let mut args = Slurm::cluster_args(&job.cluster);
        args.extend([
            "--batch".into(),
            format!("--signal={signal}"),
            format!("{}_{task}", job.job_id),
        ]);
        self.call("scancel", &args, Retry::Idempotent, &gone_or_done)?;
        Ok(())
    }
}

/// `scancel` stderr that is no error: every line says the job is unknown
/// to Slurm (long gone) or already completing.
fn gone_or_done(stderr: &str) -> bool {
    stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .all(|l| is_unknown_job(l) || l.contains("already completing or completed"))
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
