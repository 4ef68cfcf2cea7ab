//! `runner sweep --resume DIR`: run (or resubmit) what has not finished,
//! after making sure the sweep still means what it meant at the start.

use std::collections::BTreeMap;
use std::path::Path;

use super::error::SweepError;
use super::folder::{differing_keys, open, unchosen, Sweep};
use super::follow::follow;
use super::hparams;
use super::journal::{Entry, TrialState};
use super::local::run_locally;
use super::prune::{Promoter, Pruner};
use super::scheduler::judge;
use super::slurm::{self, Slurm};
use super::submit::submit;
use super::{SweepOptions, Trial};
use crate::config::{self, LoadOptions, Override};
use crate::plan::{self, LauncherPlan};
use crate::rundir;

/// Resume the sweep in `dir`: locally, the trials not done (and, with
/// `retry_failed`, the failed ones), then for TPE the trials it has yet to
/// propose; on Slurm, those of them that no live task still runs. A
/// pruned trial is never resumed, and neither is one that a journaled rung
/// decision pruned before the sweep stopped recording it.
pub fn resume(dir: &Path, opts: &SweepOptions) -> Result<(), SweepError> {
    let mut s = open(dir)?;
    let journal = s.dir.journal();
    check_trials(&s)?;
    check_source(&s)?;
    record_pruned(&s);
    let latest = journal.latest();
    let launcher = if s.meta.launcher == "slurm" {
        s.sweep.launcher_with(Some("slurm"))?
    } else {
        s.sweep.launcher_with(opts.launcher.as_deref())?
    };
    super::start::refuse_local_only_on_slurm(&s.sweep, &launcher)?;
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
            crate::outln!(
                "Resuming {}: {} trial(s) to run, {skipped} already finished{}",
                s.dir.root.display(),
                todo.len(),
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
            let mut todo: Vec<usize> = s
                .trials
                .iter()
                .filter(|t| idle(&t.index))
                .filter(unfinished)
                .filter(|t| !trial_completed(&t.dir(&s.dir.root)))
                .map(|t| t.index)
                .collect();
            // TPE trials that no task has chosen yet (their tasks were
            // cancelled or never ran).
            todo.extend(unchosen(&s).into_iter().filter(idle));
            todo.sort_unstable();
            if todo.is_empty() {
                crate::outln!("Nothing to resubmit in {}", s.dir.root.display());
            } else {
                submit(&s, &settings, &todo)?;
            }
            if opts.wait {
                follow(&mut s, true, opts.poll_seconds)
            } else {
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
/// as at the start (the same RUNNER_* values and --set flags) and planned as
/// the sweep file was, so that filled-in defaults compare equal. A file that
/// is gone, or no longer reads or plans, is not compared.
fn check_source(s: &Sweep) -> Result<(), SweepError> {
    if !s.meta.source.is_file() {
        return Ok(());
    }
    let opts = LoadOptions {
        overrides: s
            .meta
            .env
            .iter()
            .chain(&s.meta.set)
            .map(|o| Override::parse(o))
            .collect::<Result<_, _>>()?,
        use_env: false,
    };
    let now = config::load(&s.meta.source, &opts)
        .ok()
        .and_then(|now| plan::plan(&now).ok());
    let Some(now) = now else {
        return Ok(());
    };
    let mut diff = Vec::new();
    differing_keys(
        &config::to_table(&now.spec),
        &config::to_table(&s.plan.spec),
        "",
        &mut diff,
    );
    // The data paths are made absolute in the sweep file.
    diff.retain(|k| !k.starts_with("data.") || !k.ends_with("path"));
    if diff.is_empty() {
        return Ok(());
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
