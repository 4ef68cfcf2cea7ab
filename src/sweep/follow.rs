//! Following a sweep from any shell: `--status` (with `--wait` for a Slurm
//! sweep, until nothing is pending or running) and `--cancel`. A Slurm
//! sweep's trial states come from the trial folders and what Slurm says
//! about their tasks; every change is recorded as a local run records it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use super::asha::EarlyStop;
use super::error::SweepError;
use super::folder::{journaled_trials, open, unchosen, Sweep};
use super::hparams;
use super::journal::{self, Entry, TrialState};
use super::outcome::{conclude, finish_trial, out_of_time_line, print_message};
use super::prune::Pruner;
use super::scheduler::{self, Finished, LocalEnd};
use super::slurm::{self, Slurm, TaskState};
use super::{axis_names, propose, summary, trials_text};
use crate::rundir;
use crate::signals::Signals;
use crate::vocab::{HalvingVariant, Strategy};

/// A trial's state from its folder and what Slurm says about its task.
/// `log` is the task's Slurm error file: when the trial failed, its tail is
/// quoted (if the trial left no message) and its path given.
fn slurm_state(
    dir: &Path,
    task: Option<&TaskState>,
    journal_state: TrialState,
    log: Option<&Path>,
) -> (TrialState, Option<String>) {
    let meta = rundir::RunDir::at_existing(dir).read_meta().ok();
    let meta_status = meta.as_ref().map(|m| m.status);
    if meta_status == Some(rundir::Status::Completed) {
        return (TrialState::Done, None);
    }
    let tail = || log.map(|l| scheduler::log_tail(l, 8)).unwrap_or_default();
    match task {
        Some(TaskState::Pending) => (TrialState::Pending, None),
        Some(TaskState::Running) => (TrialState::Running, None),
        // Its task chose not to start it (the sweep's max_hours had run
        // out): it has not failed.
        Some(TaskState::Completed) if meta.is_none() => (
            TrialState::Pending,
            Some("its task ended without starting it".into()),
        ),
        // Ended by Slurm before runner ever started it (`runner sweep
        // --cancel` on a pending task, a preemption, a node failure): it
        // has not failed, and `--resume` must run it.
        Some(t @ (TaskState::Cancelled | TaskState::Preempted | TaskState::NodeFail))
            if meta.is_none() =>
        {
            (
                TrialState::Stopped,
                Some(format!("{} before it started", t.explain())),
            )
        }
        Some(t) => match meta_status {
            // runner stopped itself on a signal it caught (exit code 130, so
            // Slurm says FAILED): its own message says which and how to go on.
            // Where Slurm stopped it (scancel, a preemption, a time limit),
            // Slurm's word says why.
            Some(rundir::Status::Stopped) => {
                let own = matches!(
                    t,
                    TaskState::Failed { .. } | TaskState::Completed | TaskState::Gone
                );
                let why = match meta.and_then(|m| m.message) {
                    Some(m) if own => m,
                    _ => t.explain(),
                };
                (TrialState::Stopped, Some(why))
            }
            _ => {
                let why = t.explain();
                let detail = meta.and_then(|m| m.message).unwrap_or_else(tail);
                let log = match log.filter(|l| l.is_file()) {
                    Some(l) => format!(" (log: {})", l.display()),
                    None => String::new(),
                };
                (
                    TrialState::Failed,
                    Some(if detail.is_empty() {
                        format!("{why}{log}")
                    } else {
                        format!("{why}: {detail}{log}")
                    }),
                )
            }
        },
        None => (journal_state, None),
    }
}

/// Poll Slurm and the trial folders, record changes; with `wait`, until no
/// trial is pending or running.
///
/// With `[sweep.early_stop]`, trials decide their own rungs; the follower
/// decides them too at every poll (whichever comes first decides), and a
/// pruned trial still running (one that could not judge itself) gets
/// SIGUSR1 through `scancel --batch` (it stops at the next batch).
///
/// A TPE sweep's trials past the first are chosen by their own tasks as
/// they start: the follower reads them from the journal at every poll, and
/// a task that has not chosen its trial yet counts as pending.
pub(super) fn follow(s: &mut Sweep, wait: bool, poll_seconds: f64) -> Result<(), SweepError> {
    let axes = axis_names(&s.sweep);
    let journal = s.dir.journal();
    let client = Slurm::new(&s.dir.root);
    let signals = Signals::install();
    let mut pruner = Pruner::new(&s.sweep, &journal);
    let promotion = s
        .sweep
        .early_stop
        .is_some_and(|e| e.variant == HalvingVariant::Promotion);
    let mut signalled: BTreeSet<usize> = BTreeSet::new();
    let mut first = true;
    loop {
        let jobs = slurm::read_jobs(&s.dir.root)?;
        let tasks = if jobs.is_empty() {
            BTreeMap::new()
        } else {
            match client.poll(&jobs) {
                Ok(t) => t,
                Err(e) if e.is_transient() => {
                    crate::errln!("slurm is not answering ({e}); trying again");
                    std::thread::sleep(Duration::from_secs_f64(poll_seconds));
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        };
        if s.sweep.strategy == Strategy::Tpe {
            s.trials = journaled_trials(&journal);
        }
        let entries = journal.entries();
        // Trials with a `running` line: a rung decision's line (which a
        // Slurm trial writes itself) is not one.
        let started: BTreeSet<usize> = entries
            .iter()
            .filter(|e| e.state == TrialState::Running && e.rung.is_none())
            .map(|e| e.trial)
            .collect();
        // A promotion sweep's tasks are workers: once a trial has reached a
        // rung, the workers record its states (a paused trial's task may
        // have ended, or run another trial).
        let workers = promotion.then(|| {
            entries
                .iter()
                .filter(|e| e.rung.is_some())
                .map(|e| e.trial)
                .collect::<BTreeSet<usize>>()
        });
        let tasks_active = tasks.values().any(|x| x.is_active());
        let latest = journal::latest_of(entries);
        let by_trial = slurm::latest_job_per_trial(&jobs);
        // Tasks still to choose their trial.
        let mut active = unchosen(s)
            .into_iter()
            .filter(|i| tasks.get(i).is_some_and(|x| x.is_active()))
            .count();
        for t in &s.trials {
            let old = latest
                .get(&t.index)
                .map(|e| e.state)
                .unwrap_or(TrialState::Pending);
            if old == TrialState::Pruned {
                continue;
            }
            if workers.as_ref().is_some_and(|w| w.contains(&t.index)) {
                // What a worker last recorded running ran in a task that
                // has ended with no word of it (a node failure, a time
                // limit): it is stopped, and `--resume` runs it.
                if old == TrialState::Running && !tasks_active {
                    let f = Finished {
                        trial: t.clone(),
                        state: TrialState::Stopped,
                        exit_code: None,
                        message: Some("the Slurm task that ran it ended before it did".into()),
                        seconds: 0.0,
                        epoch: None,
                    };
                    finish_trial(s, &journal, &f, &axes);
                }
                continue;
            }
            let log = by_trial
                .get(&t.index)
                .and_then(|j| j.log_files(&s.dir.root, t.index))
                .map(|(_, err)| err);
            let (state, message) = slurm_state(
                &t.dir(&s.dir.root),
                tasks.get(&t.index),
                old,
                log.as_deref(),
            );
            if matches!(state, TrialState::Pending | TrialState::Running)
                && tasks.get(&t.index).is_some_and(|x| x.is_active())
            {
                active += 1;
            }
            if state == TrialState::Running && !signalled.contains(&t.index) {
                let pruned = pruner
                    .as_mut()
                    .and_then(|p| p.check(&s.dir.root, &journal, t));
                if let (Some(_), Some(job)) = (pruned, by_trial.get(&t.index)) {
                    match client.signal(job, t.index, "USR1") {
                        Ok(()) => {
                            signalled.insert(t.index);
                        }
                        Err(e) => crate::errln!(
                            "cannot stop pruned trial {}: {e}; trying again",
                            t.folder_name()
                        ),
                    }
                }
            }
            // Running (or it ran, seen only now that it has ended) with no
            // `running` line yet: its HParams session starts, and the line
            // is written.
            let ran = state == TrialState::Running
                || (state != old
                    && state != TrialState::Pending
                    && rundir::RunDir::at_existing(&t.dir(&s.dir.root))
                        .read_meta()
                        .is_ok());
            if ran && !started.contains(&t.index) {
                hparams::session_start(t, &s.dir.root, &journal);
                let _ = journal.append(&Entry::new(t.index, &t.id, TrialState::Running));
                if state == TrialState::Running {
                    crate::outln!("       {} running", t.folder_name());
                    continue;
                }
            }
            if state != old {
                let mut f = Finished {
                    trial: t.clone(),
                    state,
                    exit_code: match tasks.get(&t.index) {
                        Some(TaskState::Failed { exit_code }) => Some(*exit_code),
                        _ => None,
                    },
                    message,
                    // Slurm ran it: its own meta.json has its wall time.
                    seconds: rundir::RunDir::at_existing(&t.dir(&s.dir.root))
                        .read_meta()
                        .ok()
                        .as_ref()
                        .and_then(summary::wall_seconds)
                        .unwrap_or(0.0),
                    epoch: None,
                };
                if matches!(state, TrialState::Pending | TrialState::Running) {
                    let _ = journal.append(&Entry::new(t.index, &t.id, state));
                    crate::outln!("       {} {}", t.folder_name(), state.as_str());
                } else {
                    if let Some(p) = pruner.as_mut() {
                        p.check(&s.dir.root, &journal, t);
                        p.ended(&mut f);
                    }
                    finish_trial(s, &journal, &f, &axes);
                    // On a cluster a trial stops by itself (a time limit, a
                    // preemption, scancel): the line says which.
                    if let (TrialState::Stopped, Some(m)) = (f.state, &f.message) {
                        print_message(m);
                    }
                }
            }
        }
        if promotion && tasks_active {
            // Any task may be training a promoted trial.
            active = active.max(1);
        }
        let root = s.dir.root.display().to_string();
        let live = tasks.values().filter(|x| x.is_active()).count().max(1);
        if !wait || active == 0 || signals.stop_requested() {
            let latest = journal.latest();
            print_status(s, &latest, &tasks);
            if active == 0 {
                let failures = latest
                    .values()
                    .filter(|e| e.state == TrialState::Failed)
                    .count();
                let end = conclude(
                    s,
                    &axes,
                    LocalEnd::Finished,
                    failures,
                    ended_by(s).as_deref(),
                );
                let left = resumable(s, &latest);
                if left > 0 {
                    crate::outln!(
                        "No task of this sweep is pending or running in Slurm; `runner sweep --resume {root}` submits the {left} trial(s) not finished."
                    );
                }
                return end;
            }
            if signals.stop_requested() {
                crate::outln!(
                    "Stopped following; the sweep's Slurm jobs go on (`runner sweep --cancel {root}` stops them)."
                );
            } else {
                crate::outln!(
                    "{live} task(s) pending or running in Slurm; `runner sweep --status {root} --wait` follows them to the end."
                );
            }
            return Ok(());
        }
        if first {
            // Where it stands now, before the changes that follow.
            print_status(s, &journal.latest(), &tasks);
            crate::outln!(
                "Following {live} task(s) every {poll_seconds} s until none is pending or running; Ctrl-C stops following, not the jobs."
            );
            first = false;
        }
        std::thread::sleep(Duration::from_secs_f64(poll_seconds));
    }
}

fn print_status(s: &Sweep, latest: &BTreeMap<usize, Entry>, tasks: &BTreeMap<usize, TaskState>) {
    let unchosen = unchosen(s);
    crate::outln!(
        "Sweep {} ({}{})",
        s.dir.root.display(),
        trials_text(s.meta.trials),
        state_counts(s, latest, unchosen.len())
    );
    let hyperband = EarlyStop::hyperband(&s.sweep);
    for t in &s.trials {
        let state = latest
            .get(&t.index)
            .map(|e| e.state.as_str())
            .unwrap_or("pending");
        let values = summary::read_metric(
            &rundir::RunDir::at_existing(&t.dir(&s.dir.root)).metrics_csv(),
            &s.sweep.monitor.metric,
        );
        let slurm = tasks
            .get(&t.index)
            .map(|x| match x {
                TaskState::Failed { exit_code } if *exit_code >= 0 => {
                    format!("  slurm {} (exit {exit_code})", x.label())
                }
                _ => format!("  slurm {}", x.label()),
            })
            .unwrap_or_default();
        crate::outln!(
            "  {}  {:<8} epochs {:>3}{slurm}  {}{}",
            t.folder_name(),
            state,
            values.len(),
            EarlyStop::bracket_label(hyperband.as_ref(), t.index),
            t.params_text()
        );
        // Why a trial failed or stopped: what to retry or resume.
        if let Some(e) = latest
            .get(&t.index)
            .filter(|e| matches!(e.state, TrialState::Failed | TrialState::Stopped))
        {
            if let Some(m) = &e.message {
                print_message(m);
            }
        }
    }
    for line in unchosen_lines(&unchosen, tasks, s.out_of_time().is_some()) {
        crate::outln!("{line}");
    }
}

/// The trials that `runner sweep --resume` would run again: those not done,
/// pruned or failed (TPE's still to choose too); once `max_hours` has run
/// out, only the ones that stopped part way.
fn resumable(s: &Sweep, latest: &BTreeMap<usize, Entry>) -> usize {
    let state = |i: usize| latest.get(&i).map(|e| e.state);
    if s.out_of_time().is_some() {
        return s
            .trials
            .iter()
            .filter(|t| state(t.index) == Some(TrialState::Stopped))
            .count();
    }
    not_ended(s, latest)
}

/// The sweep's trials not done, pruned or failed (TPE's to come too).
fn not_ended(s: &Sweep, latest: &BTreeMap<usize, Entry>) -> usize {
    let ended = s
        .trials
        .iter()
        .filter(|t| latest.get(&t.index).is_some_and(|e| e.state.is_ended()))
        .count();
    super::total_trials(&s.sweep, s.trials.len()).saturating_sub(ended)
}

/// After a submission that nothing follows: how to follow or cancel it.
pub(super) fn print_follow_hint(root: &Path) {
    crate::outln!(
        "Follow it with `runner sweep --status {0} [--wait]`; cancel with `runner sweep --cancel {0}`.",
        root.display()
    );
}

/// Why trials were left unstarted, as a local sweep says it: `max_hours`
/// ran out before their tasks started.
fn ended_by(s: &Sweep) -> Option<String> {
    let hours = s.out_of_time()?;
    let latest = s.dir.journal().latest();
    let unstarted = s
        .trials
        .iter()
        .filter(|t| {
            latest
                .get(&t.index)
                .is_none_or(|e| e.state == TrialState::Pending)
        })
        .count()
        + unchosen(s).len();
    (unstarted > 0).then(|| out_of_time_line(hours, unstarted))
}

/// How many trials are in each state, for the status line's header:
/// `: 3 done, 1 running, 4 pending`, in the order a sweep moves through
/// them; TPE's trials not chosen yet count as pending.
fn state_counts(s: &Sweep, latest: &BTreeMap<usize, Entry>, unchosen: usize) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for t in &s.trials {
        let state = latest
            .get(&t.index)
            .map_or(TrialState::Pending, |e| e.state);
        *counts.entry(state.as_str()).or_default() += 1;
    }
    *counts.entry(TrialState::Pending.as_str()).or_default() += unchosen;
    let order = [
        TrialState::Done,
        TrialState::Running,
        TrialState::Paused,
        TrialState::Pending,
        TrialState::Stopped,
        TrialState::Pruned,
        TrialState::Failed,
    ];
    let parts: Vec<String> = order
        .iter()
        .filter_map(|st| {
            let n = counts.get(st.as_str()).copied().filter(|n| *n > 0)?;
            Some(format!("{n} {}", st.as_str()))
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(": {}", parts.join(", "))
    }
}

/// One line per run of consecutive TPE trials not chosen yet whose tasks
/// Slurm reports alike: `trial-008 to trial-499  not chosen yet (492)
/// slurm pending`, so a large sweep's status stays short. `out_of_time`:
/// the sweep's `max_hours` have run out, so a task that ended without
/// choosing will not be submitted again.
fn unchosen_lines(
    indices: &[usize],
    tasks: &BTreeMap<usize, TaskState>,
    out_of_time: bool,
) -> Vec<String> {
    let label = |i: &usize| tasks.get(i).map(|x| x.label());
    let mut lines = Vec::new();
    let mut rest = indices;
    while let Some(first) = rest.first() {
        let run = rest
            .iter()
            .enumerate()
            .take_while(|(k, i)| **i == first + k && label(i) == label(first))
            .count();
        let last = rest[run - 1];
        let slurm = label(first)
            .map(|l| format!("  slurm {l}"))
            .unwrap_or_default();
        // A task that ended without choosing (cancelled, a node failure)
        // has no trial until `--resume` submits it again.
        let ended = tasks.get(first).is_some_and(|x| !x.is_active());
        let why = match (ended, run) {
            (true, 1) if out_of_time => {
                "its task ended before choosing, and max_hours has run out: it is not submitted again"
            }
            (true, _) if out_of_time => {
                "their tasks ended before choosing, and max_hours has run out: they are not submitted again"
            }
            (true, 1) => "its task ended before choosing; `runner sweep --resume` submits it again",
            (true, _) => {
                "their tasks ended before choosing; `runner sweep --resume` submits them again"
            }
            (false, 1) => "TPE chooses it when it starts",
            (false, _) => "TPE chooses each when it starts",
        };
        lines.push(if run == 1 {
            format!(
                "  {}         not chosen yet{slurm}  ({why})",
                propose::unchosen_name(*first)
            )
        } else {
            format!(
                "  {} to {}  not chosen yet ({run}){slurm}  ({why})",
                propose::unchosen_name(*first),
                propose::unchosen_name(last)
            )
        });
        rest = &rest[run..];
    }
    lines
}

/// `runner sweep --status DIR [--wait]`: each trial's state and the ranked
/// table; a Slurm sweep is polled first (and with `wait`, followed).
pub fn status(dir: &Path, wait: bool, poll_seconds: f64) -> Result<(), SweepError> {
    let mut s = open(dir)?;
    if s.meta.launcher == "slurm" {
        return follow(&mut s, wait, poll_seconds);
    }
    // A local sweep runs while its runner process holds the sweep's lock
    // (None: the lock cannot be probed, and the journal is shown as it is).
    let mut live = rundir::is_locked(&s.dir.lock());
    if live == Some(true) && wait {
        crate::outln!(
            "Waiting for the runner process that runs {} to end",
            s.dir.root.display()
        );
        let signals = Signals::install();
        while live == Some(true) && !signals.stop_requested() {
            std::thread::sleep(Duration::from_secs_f64(poll_seconds));
            live = rundir::is_locked(&s.dir.lock());
        }
    }
    let mut latest = s.dir.journal().latest();
    if live == Some(false) {
        // What the journal last saw running was stopped with its process.
        for e in latest
            .values_mut()
            .filter(|e| e.state == TrialState::Running)
        {
            e.state = TrialState::Stopped;
        }
    }
    let monitor = &s.sweep.monitor;
    print_status(&s, &latest, &BTreeMap::new());
    let axes = axis_names(&s.sweep);
    let results = summary::collect(&s.dir.root, &s.trials, &latest, &s.sweep);
    crate::outln!("\n{}", summary::ranked_table(&axes, monitor, &results));
    let unfinished = not_ended(&s, &latest);
    if live == Some(true) {
        let who = rundir::lock_holder(&s.dir.lock())
            .map(|(pid, host)| format!(" (pid {pid} on {host})"))
            .unwrap_or_default();
        crate::outln!(
            "A runner process{who} is running this sweep; `--wait` waits for it to end, `--cancel` stops it."
        );
    } else if live == Some(false) && unfinished > 0 {
        crate::outln!(
            "No runner process is running this sweep; `runner sweep --resume {}` runs the {unfinished} trial(s) not finished.",
            s.dir.root.display()
        );
    }
    Ok(())
}

/// `runner sweep --cancel DIR [--wait]`: cancel a Slurm sweep's jobs, or
/// stop the runner process of a local one, then show where it stands
/// (with `wait`, once every trial or the process has ended).
pub fn cancel(dir: &Path, wait: bool, poll_seconds: f64) -> Result<(), SweepError> {
    let mut s = open(dir)?;
    if s.meta.launcher != "slurm" {
        let signalled = cancel_local(&s)?;
        return if signalled && wait {
            status(dir, true, poll_seconds)
        } else {
            Ok(())
        };
    }
    let jobs = slurm::read_jobs(&s.dir.root)?;
    Slurm::new(&s.dir.root).cancel(&jobs)?;
    crate::outln!(
        "Cancelled job(s) {}",
        jobs.iter()
            .map(|j| j.job_id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    follow(&mut s, wait, poll_seconds)
}

/// `runner sweep --cancel DIR` of a local sweep: SIGTERM to the runner
/// process that holds the sweep's lock, as Ctrl-C in its terminal would
/// stop it (its trials finish their epoch; the sweep stays resumable).
/// Whether a process was signalled.
fn cancel_local(s: &Sweep) -> Result<bool, SweepError> {
    let lock = s.dir.lock();
    match rundir::is_locked(&lock) {
        Some(false) => {
            crate::outln!(
                "No runner process is running {}; nothing to cancel",
                s.dir.root.display()
            );
            return Ok(false);
        }
        None => return Err(SweepError::RunsLocally(s.dir.root.clone())),
        Some(true) => {}
    }
    let Some((pid, host)) = rundir::lock_holder(&lock) else {
        return Err(SweepError::RunsLocally(s.dir.root.clone()));
    };
    if host != rundir::hostname() {
        return Err(SweepError::RunsOnAnotherHost {
            dir: s.dir.root.clone(),
            host,
            pid,
        });
    }
    let Ok(pid_t) = libc::pid_t::try_from(pid) else {
        return Err(SweepError::RunsLocally(s.dir.root.clone()));
    };
    // SAFETY: kill(2) with a pid read from the lock file that its holder
    // wrote; the lock is held, so the process is alive.
    if unsafe { libc::kill(pid_t, libc::SIGTERM) } != 0 {
        return Err(SweepError::CannotSignal {
            pid,
            source: std::io::Error::last_os_error(),
        });
    }
    crate::outln!(
        "Asked runner process {pid} to stop the sweep (SIGTERM): its trials stop at the end of their epoch, and `runner sweep --resume {0}` continues it. `runner sweep --status {0} --wait` waits until it has stopped.",
        s.dir.root.display()
    );
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta_with(dir: &Path, status: &str) {
        meta_saying(dir, status, None);
    }

    fn meta_saying(dir: &Path, status: &str, message: Option<&str>) {
        let message = message
            .map(|m| format!(r#","message":"{m}""#))
            .unwrap_or_default();
        std::fs::write(
            dir.join("meta.json"),
            format!(
                r#"{{"experiment":"t","runner_version":"0","backend":"flex","device":"cpu","threads":1,"seed":1,"dataset":null,"command":[],"cwd":"/","hostname":"h","pid":1,"start_time":"x","status":"{status}"{message}}}"#
            ),
        )
        .unwrap();
    }

    #[test]
    fn a_trial_that_stopped_itself_says_why_in_its_own_words() {
        let dir = tempfile::tempdir().unwrap();
        let own = "stopped by SIGUSR1 (a time limit approaching) after 3 epoch(s)";
        meta_saying(dir.path(), "stopped", Some(own));
        // runner exits 130 when it stops on a signal: Slurm says FAILED,
        // which is no reason; runner's own message is.
        let exited = TaskState::Failed { exit_code: 130 };
        let (state, why) = slurm_state(dir.path(), Some(&exited), TrialState::Running, None);
        assert_eq!((state, why.as_deref()), (TrialState::Stopped, Some(own)));
        // Where Slurm stopped it, Slurm's word says why.
        let (state, why) = slurm_state(
            dir.path(),
            Some(&TaskState::Cancelled),
            TrialState::Running,
            None,
        );
        assert_eq!(state, TrialState::Stopped);
        assert_eq!(why, Some(TaskState::Cancelled.explain()));
    }

    #[test]
    fn a_failed_trial_names_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("7_0.err");
        std::fs::write(&log, "\nError: out of disk\n\n").unwrap();
        let failed = TaskState::Failed { exit_code: 1 };
        meta_with(dir.path(), "running");
        let (state, why) = slurm_state(dir.path(), Some(&failed), TrialState::Running, Some(&log));
        assert_eq!(state, TrialState::Failed);
        assert_eq!(
            why.unwrap(),
            format!(
                "the Slurm task failed with exit code 1: Error: out of disk (log: {})",
                log.display()
            )
        );
        // The trial's own message comes before the log's tail; a log that
        // is not there is not named.
        meta_saying(dir.path(), "failed", Some("the loss became NaN"));
        let gone = dir.path().join("8_0.err");
        let (_, why) = slurm_state(dir.path(), Some(&failed), TrialState::Running, Some(&gone));
        assert_eq!(
            why.as_deref(),
            Some("the Slurm task failed with exit code 1: the loss became NaN")
        );
    }

    #[test]
    fn unchosen_trials_are_listed_in_runs_of_the_same_slurm_state() {
        let mut tasks = BTreeMap::new();
        for i in [2, 3, 4, 7, 8] {
            tasks.insert(i, TaskState::Pending);
        }
        tasks.insert(5, TaskState::Running);
        tasks.insert(11, TaskState::NodeFail);
        tasks.insert(13, TaskState::Cancelled);
        tasks.insert(14, TaskState::Cancelled);
        let lines = unchosen_lines(&[2, 3, 4, 5, 7, 8, 10, 11, 13, 14], &tasks, false);
        assert_eq!(
            lines,
            [
                "  trial-002 to trial-004  not chosen yet (3)  slurm pending  (TPE chooses each when it starts)",
                "  trial-005         not chosen yet  slurm running  (TPE chooses it when it starts)",
                "  trial-007 to trial-008  not chosen yet (2)  slurm pending  (TPE chooses each when it starts)",
                "  trial-010         not chosen yet  (TPE chooses it when it starts)",
                "  trial-011         not chosen yet  slurm node_fail  (its task ended before choosing; `runner sweep --resume` submits it again)",
                "  trial-013 to trial-014  not chosen yet (2)  slurm cancelled  (their tasks ended before choosing; `runner sweep --resume` submits them again)",
            ]
        );
        assert!(unchosen_lines(&[], &tasks, false).is_empty());
        // Past max_hours, a task that ended without choosing is not
        // submitted again; one still to start says as before.
        assert_eq!(
            unchosen_lines(&[10, 11], &tasks, true),
            [
                "  trial-010         not chosen yet  (TPE chooses it when it starts)",
                "  trial-011         not chosen yet  slurm node_fail  (its task ended before choosing, and max_hours has run out: it is not submitted again)",
            ]
        );
    }

    #[test]
    fn a_task_cancelled_before_it_started_is_stopped_not_failed() {
        let dir = tempfile::tempdir().unwrap();
        for task in [
            TaskState::Cancelled,
            TaskState::Preempted,
            TaskState::NodeFail,
        ] {
            let (state, why) = slurm_state(dir.path(), Some(&task), TrialState::Pending, None);
            assert_eq!(state, TrialState::Stopped, "{task:?}");
            assert!(why.unwrap().ends_with("before it started"));
        }
        // A task that failed by itself before writing anything did fail.
        let failed = TaskState::Failed { exit_code: 2 };
        let (state, _) = slurm_state(dir.path(), Some(&failed), TrialState::Pending, None);
        assert_eq!(state, TrialState::Failed);
        // One that chose not to start it (max_hours had run out) exited 0
        // and wrote nothing: still to start, not failed.
        let (state, why) = slurm_state(
            dir.path(),
            Some(&TaskState::Completed),
            TrialState::Pending,
            None,
        );
        assert_eq!(state, TrialState::Pending);
        assert_eq!(why.as_deref(), Some("its task ended without starting it"));
        // Once it has run, a completed task's trial is what its folder says.
        meta_with(dir.path(), "stopped");
        let (state, _) = slurm_state(
            dir.path(),
            Some(&TaskState::Completed),
            TrialState::Running,
            None,
        );
        assert_eq!(state, TrialState::Stopped);
    }

    #[test]
    fn a_started_trial_keeps_what_its_folder_says() {
        let dir = tempfile::tempdir().unwrap();
        meta_with(dir.path(), "stopped");
        let (state, _) = slurm_state(
            dir.path(),
            Some(&TaskState::Cancelled),
            TrialState::Running,
            None,
        );
        assert_eq!(state, TrialState::Stopped);
        meta_with(dir.path(), "running");
        let (state, _) = slurm_state(
            dir.path(),
            Some(&TaskState::Cancelled),
            TrialState::Running,
            None,
        );
        assert_eq!(
            state,
            TrialState::Failed,
            "killed without stopping: its run crashed"
        );
        meta_with(dir.path(), "completed");
        let (state, _) = slurm_state(
            dir.path(),
            Some(&TaskState::Cancelled),
            TrialState::Running,
            None,
        );
        assert_eq!(state, TrialState::Done);
    }
}
