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
use crate::rundir::{write_atomic, BEST_TRIAL};

/// Record one finished trial: journal, HParams end, summary.csv, a line.
pub(super) fn finish_trial(s: &Sweep, journal: &Journal, f: &Finished, axes: &[String]) {
    let monitor = &s.sweep.monitor;
    let mut e = Entry::new(f.trial.index, &f.trial.id, f.state);
    e.exit_code = f.exit_code;
    e.message = f.message.clone();
    e.epoch = f.epoch;
    let _ = journal.append(&e);
    hparams::session_end(&f.trial, &s.dir.root, f.state, f.epoch);
    let results = summary::collect(&s.dir.root, &s.trials, &journal.latest(), &s.sweep);
    let _ = summary::write_csv(&s.dir.summary_csv(), axes, &monitor.metric, &results);
    let _ = write_best(s, &results);
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
    // A done trial's message says how it ended: early stopping, or a
    // prune that came too late to stop it.
    if matches!(
        f.state,
        TrialState::Failed | TrialState::Pruned | TrialState::Done
    ) {
        if let Some(m) = &f.message {
            print_message(m);
        }
    }
}

/// A trial's message under its line, each of its lines marked `|`.
pub(super) fn print_message(message: &str) {
    for line in message.lines() {
        crate::outln!("         | {line}");
    }
}

/// Name the best finished trial in the sweep folder's one-line file `best`
/// (`runner export runs/x/sweeps/latest/best`), as `latest` names the
/// newest run; with no finished trial there is no such file.
fn write_best(s: &Sweep, results: &[summary::TrialResult]) -> Result<(), SweepError> {
    let path = s.dir.root.join(BEST_TRIAL);
    match summary::best_done(results, &s.sweep.monitor) {
        Some(r) => write_atomic(&path, format!("{}\n", r.trial.folder_name()).as_bytes())?,
        None => {
            if path.is_file() {
                std::fs::remove_file(&path).map_err(|source| {
                    crate::rundir::RunDirError::Write {
                        path: path.clone(),
                        source,
                    }
                })?;
            }
        }
    }
    Ok(())
}

/// Why a sweep ended early, as its end says after "The sweep ended
/// early: ": `max_hours` ran out with `unstarted` trials not started.
pub(super) fn out_of_time_line(hours: f64, unstarted: usize) -> String {
    format!("max_hours = {hours} reached; {unstarted} trial(s) not started")
}

/// What early stopping saved: the epochs trained, against the epochs the
/// same trials would have trained without it (each to the last rung's end,
/// `max_epochs`).
fn early_stop_line(
    results: &[summary::TrialResult],
    pruned: usize,
    plan: Option<&crate::plan::EarlyStopPlan>,
) -> String {
    let epochs: usize = results.iter().map(|r| r.epochs).sum();
    let mut line = format!(
        "Early stopping pruned {pruned} of {} trial(s); {epochs} epoch(s) trained in all",
        results.len()
    );
    let started = results
        .iter()
        .filter(|r| r.state != TrialState::Pending)
        .count();
    if let Some(p) = plan {
        let full = started * p.max_epochs;
        if full > 0 {
            let share = 100.0 * epochs as f64 / full as f64;
            line.push_str(&format!(
                ", {share:.0}% of the {full} that {started} full trial(s) ({} epochs each) would take",
                p.max_epochs
            ));
        }
    }
    line
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
    let results = summary::collect(&s.dir.root, &s.trials, &latest, &s.sweep);
    summary::write_csv(&s.dir.summary_csv(), axes, &monitor.metric, &results)?;
    write_best(s, &results)?;
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
        crate::outln!(
            "{}",
            early_stop_line(&results, pruned, s.sweep.early_stop.as_ref())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::EarlyStopPlan;
    use crate::vocab::HalvingVariant;

    fn result(index: usize, state: TrialState, epochs: usize) -> summary::TrialResult {
        let mut r = summary::tests::result(index, 0.1, None, state);
        r.epochs = epochs;
        r
    }

    /// 9 + 3 + 1 + 1 epochs of 4 started trials, to epoch 9: 14 of 36.
    #[test]
    fn the_early_stop_line_compares_with_every_started_trial_trained_to_the_end() {
        let results = vec![
            result(0, TrialState::Done, 9),
            result(1, TrialState::Pruned, 3),
            result(2, TrialState::Pruned, 1),
            result(3, TrialState::Failed, 1),
            result(4, TrialState::Pending, 0),
        ];
        let plan = EarlyStopPlan {
            hyperband: false,
            min_epochs: 1,
            reduction_factor: 3,
            max_epochs: 9,
            variant: HalvingVariant::Stopping,
        };
        assert_eq!(
            early_stop_line(&results, 2, Some(&plan)),
            "Early stopping pruned 2 of 5 trial(s); 14 epoch(s) trained in all, \
             39% of the 36 that 4 full trial(s) (9 epochs each) would take"
        );
        assert_eq!(
            early_stop_line(&results, 2, None),
            "Early stopping pruned 2 of 5 trial(s); 14 epoch(s) trained in all"
        );
    }
}
