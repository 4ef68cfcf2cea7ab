//! What happens when a trial ends, however it ran: the journal, the HParams
//! session end, `summary.csv` and a line on the terminal; and when the sweep
//! ends: the summary, its plot, the ranked table and the sweep's result.

use super::error::SweepError;
use super::folder::Sweep;
use super::hparams;
use super::journal::{Entry, Journal, TrialState};
use super::scheduler::{Finished, LocalEnd};
use super::summary;
use crate::report::plots;
use crate::rundir::write_atomic;

/// Record one finished trial: journal, HParams end, summary.csv, a line.
pub(super) fn finish_trial(s: &Sweep, journal: &Journal, f: &Finished, axes: &[String]) {
    let monitor = &s.sweep.monitor;
    let mut e = Entry::new(f.trial.index, &f.trial.id, f.state);
    e.exit_code = f.exit_code;
    e.message = f.message.clone();
    e.epoch = f.epoch;
    let _ = journal.append(&e);
    hparams::session_end(&f.trial, &s.dir.root, f.state, f.epoch);
    let results = summary::collect(&s.dir.root, &s.trials, &journal.latest(), monitor);
    let _ = summary::write_csv(&s.dir.summary_csv(), axes, &monitor.metric, &results);
    let best = results
        .iter()
        .find(|r| r.trial.index == f.trial.index)
        .and_then(|r| r.best)
        .map(|v| format!("  best {} {v:.4}", monitor.metric))
        .unwrap_or_default();
    crate::outln!(
        "       {} {} in {:.0}s{best}",
        f.trial.folder_name(),
        f.state.as_str(),
        f.seconds
    );
    if matches!(f.state, TrialState::Failed | TrialState::Pruned) {
        if let Some(m) = &f.message {
            for line in m.lines() {
                crate::outln!("         | {line}");
            }
        }
    }
}

/// Final summary: CSV, plot, ranked table, why trials stopped being
/// started early (`ended_by`, a budget), and the sweep's result: an error
/// when it was interrupted or a trial failed.
pub(super) fn conclude(
    s: &Sweep,
    axes: &[String],
    end: LocalEnd,
    failures: usize,
    ended_by: Option<&str>,
) -> Result<(), SweepError> {
    let monitor = &s.sweep.monitor;
    let latest = s.dir.journal().latest();
    let results = summary::collect(&s.dir.root, &s.trials, &latest, monitor);
    summary::write_csv(&s.dir.summary_csv(), axes, &monitor.metric, &results)?;
    if let Ok(Some(img)) = summary::plot(&s.sweep, &results) {
        if let Ok(png) = plots::encode_png(&img) {
            write_atomic(&s.dir.summary_png(), &png)?;
        }
    }
    crate::outln!("\n{}", summary::ranked_table(axes, monitor, &results));
    crate::outln!("Summary: {}", s.dir.summary_csv().display());
    let pruned = results
        .iter()
        .filter(|r| r.state == TrialState::Pruned)
        .count();
    if pruned > 0 {
        let epochs: usize = results.iter().map(|r| r.epochs).sum();
        crate::outln!(
            "Early stopping pruned {pruned} of {} trial(s); {epochs} epoch(s) trained in all",
            results.len()
        );
    }
    if let Some(why) = ended_by {
        crate::outln!("The sweep ended early: {why}");
    }
    let failed = results
        .iter()
        .filter(|r| r.state == TrialState::Failed)
        .count();
    if end == LocalEnd::Interrupted {
        return Err(SweepError::Stopped(s.dir.root.clone()));
    }
    if failed > 0 || failures > 0 {
        return Err(SweepError::TrialsFailed {
            failed,
            total: results.len(),
            dir: s.dir.root.clone(),
        });
    }
    Ok(())
}
