//! How a run ended, into its meta.json and an exit status.

use super::execute::Outcome;
use crate::error::{Error, Result};
use crate::rundir::{self, Meta, RunDir, Status};
use crate::train::Ending;

/// Record the outcome in `meta` and on disk, print it, and turn it into
/// the command's result (an interrupted or diverged run is an error).
/// `pruned`: the rung that pruned this sweep trial, if one did: its stop
/// is then the sweep's doing, not an interruption, and exits 0. `sweep`:
/// the folder of the sweep this run is a trial of, which resumes it.
pub(super) fn finish(
    run: &RunDir,
    meta: &mut Meta,
    outcome: std::result::Result<Outcome, Error>,
    pruned: Option<usize>,
    sweep: Option<&std::path::Path>,
) -> Result<()> {
    meta.end_time = Some(rundir::now_rfc3339());
    let result = match outcome {
        Ok(o) => {
            meta.epochs_completed = o.state.epochs_done;
            meta.best_epoch = o.state.checkpoint.best_epoch;
            meta.best_value = o.state.checkpoint.best;
            meta.test_accuracy = o.test_accuracy;
            match o.ending {
                Ending::Completed => {
                    meta.status = Status::Completed;
                    Ok(())
                }
                Ending::EarlyStopped { epoch, restored } => {
                    meta.status = Status::Completed;
                    meta.message = Some(match restored {
                        Some(b) => format!(
                            "early stopping after epoch {}; restored the weights of epoch {}",
                            epoch + 1,
                            b + 1
                        ),
                        None => format!("early stopping after epoch {}", epoch + 1),
                    });
                    Ok(())
                }
                Ending::Interrupted { .. } if pruned.is_some() => {
                    meta.status = Status::Stopped;
                    meta.message = Some(format!(
                        "pruned at epoch {} by the sweep's early stopping (after {} epoch(s)); a pruned trial is not resumed",
                        pruned.unwrap_or_default(),
                        o.state.epochs_done
                    ));
                    Ok(())
                }
                Ending::Interrupted { cause } => {
                    meta.status = Status::Stopped;
                    // A trial goes on with its sweep, whose journal and
                    // summary a standalone resume would leave behind.
                    let resume = match sweep {
                        Some(dir) => format!("runner sweep --resume {}", dir.display()),
                        None => format!("runner run --resume {}", run.root().display()),
                    };
                    let reason = cause.describe(sweep.is_some());
                    let msg = format!(
                        "stopped by {reason} after {} epoch(s); continue with `{resume}`",
                        o.state.epochs_done
                    );
                    meta.message = Some(msg.clone());
                    Err(Error::Interrupted(msg))
                }
                Ending::Paused { epochs } => {
                    meta.status = Status::Stopped;
                    meta.message = Some(format!(
                        "paused after {epochs} epoch(s), at a rung of the sweep's promotion-based early stopping; the sweep resumes it if it is promoted"
                    ));
                    Ok(())
                }
                Ending::Diverged { epoch, batch, loss } => {
                    meta.status = Status::Failed;
                    let msg = format!(
                        "the loss became {loss} at batch {batch} of epoch {} (terminate_on_nan); try a lower learning rate",
                        epoch + 1
                    );
                    meta.message = Some(msg.clone());
                    Err(Error::RunFailed(msg))
                }
            }
        }
        Err(e) => {
            meta.status = Status::Failed;
            meta.message = Some(e.to_string());
            Err(e)
        }
    };
    run.write_meta(meta)?;
    // An error's message is printed once, by the command line's error report.
    if let (Some(m), true) = (&meta.message, result.is_ok()) {
        crate::outln!("{m}");
    }
    crate::outln!("Status: {}", meta.status.as_str());
    result
}
