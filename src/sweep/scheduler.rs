//! Running trials as local child processes, `parallel` at a time.
//!
//! Each trial is `runner run --trial DIR [--threads N]`, its output going to
//! `DIR/run.log`. Children die with the sweep (PR_SET_PDEATHSIG), so a
//! killed sweep never leaves orphans writing into trial folders. A
//! [`Driver`] decides which trial starts next, is asked about each running
//! trial about once a second (early stopping), and records each trial as it
//! starts and ends (journal, summary) before the next decision: like
//! hyperfine, results are exported after every run.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::rundir::{RunDir, Status};
use crate::signals::Signals;

use super::journal::TrialState;
use super::Trial;

pub struct LocalOptions {
    pub parallel: usize,
    /// CPU threads per trial; `None`: as each trial's config says.
    pub threads: Option<usize>,
    pub fail_fast: bool,
    pub runner_bin: PathBuf,
    /// One device per slot (e.g. `cuda:0`, `cuda:1`), or none to let each
    /// trial use its config's device.
    pub devices: Vec<String>,
}

/// How a trial's process ended, judged by its run folder.
#[derive(Debug, Clone)]
pub struct Finished {
    pub trial: Trial,
    pub state: TrialState,
    pub exit_code: Option<i32>,
    pub message: Option<String>,
    pub seconds: f64,
    /// For a pruned trial: the epochs it had completed at its rung.
    pub epoch: Option<usize>,
}

/// A trial to run, and how far.
#[derive(Debug, Clone)]
pub struct Launch {
    pub trial: Trial,
    /// Stop, resumable, after this many completed epochs (`runner run
    /// --until`): a trial pausing at a rung. `None`: to the end.
    pub until: Option<usize>,
}

/// What the scheduler asks of the sweep as it runs.
pub trait Driver {
    /// The next trial to launch, or `None` when none should start now
    /// (none left, a budget is spent, or promotions wait for running
    /// trials). Called when a slot is free, again after every check.
    fn next(&mut self) -> Option<Launch>;
    /// A trial is about to start.
    fn started(&mut self, trial: &Trial);
    /// About ten times a second for each running trial: `true` stops it
    /// (with SIGUSR1: it stops at the next batch, its last finished epoch
    /// checkpointed), as early stopping does.
    fn check(&mut self, trial: &Trial) -> bool;
    /// A trial ended.
    fn finished(&mut self, finished: &Finished);
}

struct Running {
    trial: Trial,
    child: Child,
    slot: usize,
    started: Instant,
    /// Asked to stop by the driver.
    stopping: bool,
}

/// How often running trials are checked (reading a file that changed).
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// The last `n` lines of a trial's log, for failure reports.
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Exit code, or 128 + signal for a process killed by a signal.
fn exit_code(status: &ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.code().or_else(|| status.signal().map(|s| 128 + s))
}

/// Decide a trial's state from its folder: only a `completed` meta.json is
/// success; `stopped` is resumable; anything else failed.
pub fn judge(trial: &Trial, dir: &Path, status: Option<&ExitStatus>, seconds: f64) -> Finished {
    let meta = RunDir::at_existing(dir).read_meta().ok();
    let code = status.and_then(exit_code);
    let (state, message) = match meta.as_ref().map(|m| m.status) {
        Some(Status::Completed) => (
            TrialState::Done,
            meta.as_ref().and_then(|m| m.message.clone()),
        ),
        Some(Status::Stopped) => (
            TrialState::Stopped,
            Some(
                meta.as_ref()
                    .and_then(|m| m.message.clone())
                    .unwrap_or_else(|| "stopped".into()),
            ),
        ),
        _ => {
            let why = meta.as_ref().and_then(|m| m.message.clone());
            let tail = log_tail(&dir.join("run.log"), 12);
            let head = match (code, why) {
                (Some(c), Some(w)) => format!("exit status {c}: {w}"),
                (Some(c), None) => format!("exit status {c}"),
                (None, Some(w)) => w,
                (None, None) => "ended without completing".into(),
            };
            (
                TrialState::Failed,
                Some(if tail.is_empty() {
                    head
                } else {
                    format!("{head}\n{tail}")
                }),
            )
        }
    };
    Finished {
        trial: trial.clone(),
        state,
        exit_code: code,
        message,
        seconds,
        epoch: None,
    }
}

fn launch(
    trial: &Trial,
    until: Option<usize>,
    sweep_dir: &Path,
    slot: usize,
    opts: &LocalOptions,
) -> std::io::Result<Child> {
    let dir = trial.dir(sweep_dir);
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("run.log"))?;
    let mut cmd = Command::new(&opts.runner_bin);
    cmd.arg("run")
        .arg("--trial")
        .arg(&dir)
        .env("RUNNER_PLAIN", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if let Some(n) = opts.threads {
        cmd.arg("--threads").arg(n.to_string());
    }
    if let Some(d) = opts.devices.get(slot) {
        cmd.arg("--device").arg(d);
    }
    if let Some(u) = until {
        cmd.arg("--until").arg(u.to_string());
    }
    // SAFETY: prctl is async-signal-safe; the child dies with the sweep.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn()
}

/// What the sweep loop ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalEnd {
    /// Every trial given was run.
    Finished,
    /// Ctrl-C / SIGTERM, or `--fail-fast` after a failure: unstarted trials
    /// stay pending and the sweep can be resumed.
    Interrupted,
}

/// Run the trials `driver` gives, at most `parallel` at once, until it
/// gives no more and none runs.
pub fn run_local(
    sweep_dir: &Path,
    driver: &mut dyn Driver,
    opts: &LocalOptions,
    signals: &Signals,
) -> LocalEnd {
    let parallel = opts.parallel.max(1);
    let mut running: Vec<Running> = Vec::new();
    let mut stopping = false;
    let mut forwarded = false;
    let mut last_check = Instant::now();
    loop {
        if signals.stop_requested() && !forwarded {
            // A terminal's Ctrl-C reached the children too; a SIGTERM sent to
            // the sweep alone is passed on, so they also finish their epoch.
            // SIGUSR1 (Slurm's warning before a time limit) is passed on as
            // it came: they stop at the next batch.
            stopping = true;
            forwarded = true;
            let signal = if signals.urgent() {
                libc::SIGUSR1
            } else {
                libc::SIGTERM
            };
            for r in &running {
                // SAFETY: signalling our own child by pid.
                unsafe { libc::kill(r.child.id() as i32, signal) };
            }
        }
        while !stopping && running.len() < parallel {
            let Some(Launch { trial, until }) = driver.next() else {
                break;
            };
            let slot = (0..parallel)
                .find(|s| !running.iter().any(|r| r.slot == *s))
                .unwrap_or(0);
            driver.started(&trial);
            match launch(&trial, until, sweep_dir, slot, opts) {
                Ok(child) => running.push(Running {
                    trial,
                    child,
                    slot,
                    started: Instant::now(),
                    stopping: false,
                }),
                Err(e) => {
                    let f = Finished {
                        trial,
                        state: TrialState::Failed,
                        exit_code: None,
                        message: Some(format!("cannot start {}: {e}", opts.runner_bin.display())),
                        seconds: 0.0,
                        epoch: None,
                    };
                    driver.finished(&f);
                }
            }
        }
        if running.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        if !stopping && last_check.elapsed() >= CHECK_EVERY {
            last_check = Instant::now();
            for r in running.iter_mut().filter(|r| !r.stopping) {
                if driver.check(&r.trial) {
                    r.stopping = true;
                    // SIGUSR1, not SIGTERM: SIGTERM would finish the epoch
                    // the trial is in, an epoch nobody will use.
                    // SAFETY: signalling our own child by pid.
                    unsafe { libc::kill(r.child.id() as i32, libc::SIGUSR1) };
                }
            }
        }
        let mut i = 0;
        while i < running.len() {
            match running[i].child.try_wait() {
                Ok(Some(status)) => {
                    let r = running.swap_remove(i);
                    let f = judge(
                        &r.trial,
                        &r.trial.dir(sweep_dir),
                        Some(&status),
                        r.started.elapsed().as_secs_f64(),
                    );
                    let failed = f.state == TrialState::Failed;
                    driver.finished(&f);
                    if failed && opts.fail_fast && !stopping {
                        stopping = true;
                        for other in &running {
                            // SIGUSR1: stop at the next batch; the last epoch is checkpointed.
                            // SAFETY: signalling our own child by pid.
                            unsafe { libc::kill(other.child.id() as i32, libc::SIGUSR1) };
                        }
                    }
                }
                Ok(None) => i += 1,
                Err(_) => i += 1,
            }
        }
    }
    if stopping {
        LocalEnd::Interrupted
    } else {
        LocalEnd::Finished
    }
}
