//! `runner sweep --resume DIR`: run (or resubmit) what has not finished,
//! after making sure the sweep still means what it meant at the start.

use std::collections::BTreeMap;
use std::path::Path;

use super::error::SweepError;
use super::extend::{extend, resume_may_change, RESUME_KEYS};
use super::folder::{differing_keys, open, unchosen, Sweep};
use super::follow::{follow, print_follow_hint};
use super::hparams;
use super::journal::{Entry, TrialState};
use super::local::run_locally;
use super::prune::{Promoter, Pruner};
use super::scheduler::judge;
use super::slurm::{self, Slurm};
use super::submit::submit;
use super::{SweepOptions, Trial};
use crate::config::{self, LoadOptions};
use crate::plan::{self, LauncherPlan};
use crate::rundir;

/// Resume the sweep in `dir`: locally, the trials not done (and, with
/// `retry_failed`, the failed ones), then for TPE the trials it has yet to
/// propose; on Slurm, those of them that no live task still runs. A
/// pruned trial is never resumed, and neither is one that a journaled rung
/// decision pruned before the sweep stopped recording it. `set`: `--set`
/// flags that raise the sweep's budget first ([`extend`]).
pub fn resume(dir: &Path, set: &[String], opts: &SweepOptions) -> Result<(), SweepError> {
    let mut s = open(dir)?;
    let journal = s.dir.journal();
    check_trials(&s)?;
    check_source(&s, set)?;
    extend(&mut s, set)?;
    record_pruned(&s);
    let latest = journal.latest();
    let launcher = match s.meta.launcher.as_str() {
        "slurm" => s.sweep.launcher_with(Some("slurm"), opts.parallel)?,
        _ => s
            .sweep
            .launcher_with(opts.launcher.as_deref(), opts.parallel)?,
    };
    // With promotion, a trial paused at a rung runs again only when the
    // sweep promotes it.
    let promoter = Promoter::new(&s.sweep, &journal);
    let unfinished = |t: &&Trial| match latest.get(&t.index).map(|e| e.state) {
        _ if promoter.as_ref().is_some_and(|p| p.held(t.index)) => false,
        Some(TrialState::Done | TrialState::Pruned) => false,
        Some(TrialState::Failed) => opts.retry_failed,
        _ => true,
    };
    match launcher {
        LauncherPlan::Local => {
            let todo: Vec<Trial> = s.trials.iter().filter(unfinished).cloned().collect();
            let skipped = s.trials.len() - todo.len();
            // TPE's trials still to come.
            let to_choose =
                super::total_trials(&s.sweep, s.trials.len()).saturating_sub(s.trials.len());
            crate::outln!(
                "Resuming {}: {} trial(s) to run{}, {skipped} already finished{}",
                s.dir.root.display(),
                todo.len(),
                if to_choose > 0 {
                    format!(" and {to_choose} for TPE to choose")
                } else {
                    String::new()
                },
                if opts.retry_failed {
                    ""
                } else {
                    " or failed (use --retry-failed to run failed ones again)"
                }
            );
            run_locally(&mut s, todo, opts)
        }
        LauncherPlan::Slurm(settings) => {
            // What still runs must be known before anything is resubmitted:
            // an unreadable jobs.json or a Slurm that does not answer stops
            // the resume rather than running a trial twice.
            let client = Slurm::new(&s.dir.root);
            let jobs = slurm::read_jobs(&s.dir.root)?;
            let live = if jobs.is_empty() {
                BTreeMap::new()
            } else {
                client.poll(&jobs).map_err(SweepError::SlurmUnknown)?
            };
            let idle = |i: &usize| !live.get(i).is_some_and(|st| st.is_active());
            // A promotion sweep's tasks run promoted trials too: while any
            // task runs, a trial recorded running may be in it.
            let any_live = live.values().any(|st| st.is_active());
            let elsewhere = |t: &&Trial| {
                promoter.is_some()
                    && any_live
                    && latest.get(&t.index).map(|e| e.state) == Some(TrialState::Running)
            };
            let mut todo: Vec<usize> = s
                .trials
                .iter()
                .filter(|t| idle(&t.index))
                .filter(unfinished)
                .filter(|t| !elsewhere(t))
                .filter(|t| !trial_completed(&t.dir(&s.dir.root)))
                .map(|t| t.index)
                .collect();
            // TPE trials that no task has chosen yet (their tasks were
            // cancelled or never ran).
            todo.extend(unchosen(&s).into_iter().filter(idle));
            todo.sort_unstable();
            // Past max_hours, as locally, only a trial that ran before goes on.
            if let Some(hours) = s.out_of_time() {
                let ran = |i: &usize| {
                    s.trials
                        .iter()
                        .find(|t| t.index == *i)
                        .is_some_and(|t| t.has_run(&s.dir.root))
                };
                let before = todo.len();
                todo.retain(ran);
                if todo.len() < before {
                    crate::outln!(
                        "max_hours = {hours} has run out: {} trial(s) that never started are not submitted (`--set sweep.max_hours=H` gives the sweep more time)",
                        before - todo.len()
                    );
                }
            }
            // Trials paused at rungs with no task left to promote them (the
            // last one ended before the sweep did): one task runs the
            // promotions, and prunes what is still paused at the end.
            let paused = s
                .trials
                .iter()
                .find(|t| promoter.as_ref().is_some_and(|p| p.paused(t.index)));
            if let (true, false, Some(t)) = (todo.is_empty(), any_live, paused) {
                crate::outln!(
                    "Trials wait at rungs of early stopping with no task to promote them: the task of {} runs the sweep's promotions",
                    t.folder_name()
                );
                todo.push(t.index);
            }
            if todo.is_empty() {
                crate::outln!("Nothing to resubmit in {}", s.dir.root.display());
            } else {
                submit(&s, &settings, &todo)?;
            }
            if opts.wait {
                follow(&mut s, true, opts.poll_seconds)
            } else {
                if !todo.is_empty() {
                    print_follow_hint(&s.dir.root);
                }
                Ok(())
            }
        }
    }
}

/// A trial whose pruning was journaled but whose end was not (the sweep
/// was killed in between) is recorded as pruned now. The stopping rule
/// re-judges the trial's folder; promotion pruned it where it paused.
fn record_pruned(s: &Sweep) {
    let journal = s.dir.journal();
    let promoter = Promoter::new(&s.sweep, &journal);
    let pruner = Pruner::new(&s.sweep, &journal);
    let latest = journal.latest();
    for t in &s.trials {
        let state = latest.get(&t.index).map(|e| e.state);
        if matches!(state, Some(TrialState::Done | TrialState::Pruned)) {
            continue;
        }
        let pruned = if let Some(p) = &promoter {
            p.pruned_at(t.index)
                .map(|epoch| (Some(epoch), Some(p.pruned_message(epoch))))
        } else if let Some(p) = pruner.as_ref().filter(|p| p.pruned_at(t.index).is_some()) {
            let mut f = judge(t, &t.dir(&s.dir.root), None, 0.0);
            p.ended(&mut f);
            (f.state == TrialState::Pruned).then_some((f.epoch, f.message))
        } else {
            None
        };
        if let Some((epoch, message)) = pruned {
            let mut e = Entry::new(t.index, &t.id, TrialState::Pruned);
            e.epoch = epoch;
            e.message = message;
            let _ = journal.append(&e);
            hparams::session_end(t, &s.dir.root, TrialState::Pruned, epoch);
        }
    }
}

/// Never renumber: the trials in the journal must be the trials of the plan.
fn check_trials(s: &Sweep) -> Result<(), SweepError> {
    let known: BTreeMap<usize, String> = s
        .dir
        .journal()
        .entries()
        .into_iter()
        .map(|e| (e.trial, e.id))
        .collect();
    for t in &s.trials {
        if let Some(id) = known.get(&t.index) {
            if *id != t.id {
                return Err(SweepError::TrialsChanged {
                    dir: s.dir.root.clone(),
                    index: t.index,
                    was: id.clone(),
                    now: t.id.clone(),
                });
            }
        }
    }
    Ok(())
}

/// The experiment file the sweep came from must still say the same, read
/// as at the start (the same RUNNER_* values and --set flags) and planned
/// as the sweep file was, so that filled-in defaults compare equal. A file
/// that is gone, or no longer reads or plans, is not compared. Its budget
/// may also say what the sweep's is now, after the `--set` flags of
/// earlier resumes and `set`, this resume's; a file that differs only in
/// its budget is answered with the `--set` flags that give the sweep that
/// budget.
fn check_source(s: &Sweep, set: &[String]) -> Result<(), SweepError> {
    if !s.meta.source.is_file() {
        return Ok(());
    }
    let read = |file: &Path, sets: Vec<&String>| -> Result<Option<toml::Table>, SweepError> {
        Ok(config::load(file, &LoadOptions::recorded(sets)?)
            .ok()
            .and_then(|l| plan::plan(&l).ok())
            .map(|p| config::to_table(&p.spec)))
    };
    let sweep_file = s.dir.sweep_file();
    let (Some(now), Some(was), Some(budget)) = (
        read(
            &s.meta.source,
            s.meta.env.iter().chain(&s.meta.set).collect(),
        )?,
        read(&sweep_file, Vec::new())?,
        read(&sweep_file, s.meta.resume_set.iter().chain(set).collect())?,
    ) else {
        return Ok(());
    };
    let mut diff = Vec::new();
    differing_keys(&now, &was, "", &mut diff);
    // The data paths are made absolute in the sweep file.
    diff.retain(|k| !k.starts_with("data.") || !k.ends_with("path"));
    // A budget (or Slurm settings) the sweep was given since it started.
    let value = |t: &toml::Table, k: &str| -> Option<toml::Value> {
        let mut parts = k.split('.');
        let first = t.get(parts.next()?)?;
        parts.try_fold(first, |v, p| v.get(p)).cloned()
    };
    let slurm = s.meta.launcher == "slurm";
    let may = |k: &String| resume_may_change(k, slurm);
    diff.retain(|k| !may(k) || value(&now, k) != value(&budget, k));
    if diff.is_empty() {
        return Ok(());
    }
    if diff.iter().all(may) {
        let sets = diff
            .iter()
            .map(|k| match value(&now, k) {
                Some(v) => format!("--set {k}={v}"),
                None => format!("--set {k}=..."),
            })
            .collect();
        let launcher = diff
            .iter()
            .filter(|k| !RESUME_KEYS.contains(&k.as_str()))
            .count();
        let what = match (launcher, diff.len() - launcher) {
            (0, _) => "another budget",
            (_, 0) => "other Slurm settings",
            _ => "another budget and other Slurm settings",
        };
        return Err(SweepError::BudgetChanged {
            what,
            file: s.meta.source.clone(),
            dir: s.dir.root.clone(),
            keys: diff,
            sets,
        });
    }
    Err(SweepError::SourceChanged {
        file: s.meta.source.clone(),
        dir: s.dir.root.clone(),
        keys: diff,
    })
}

fn trial_completed(dir: &Path) -> bool {
    rundir::RunDir::at_existing(dir)
        .read_meta()
        .is_ok_and(|m| m.status == rundir::Status::Completed)
}
