//! Training and evaluation of one run on the backend the device picks:
//! the TensorBoard log, the fit, then the evaluation report.

use burn::module::AutodiffModule;

use crate::backend::{TrainBackend, WithBackend};
use crate::config;
use crate::data::Dataset;
use crate::error::Error;
use crate::logging::tensorboard::{Stream, TensorboardLog};
use crate::model::layer::Weight;
use crate::model::summary::graph_nodes;
use crate::plan::ExperimentPlan;
use crate::report;
use crate::rundir::RunDir;
use crate::signals::Signals;
use crate::sweep::TrialJudge;
use crate::train::checkpoint::Checkpoints;
use crate::train::events::RunLog;
use crate::train::progress::Progress;
use crate::train::{self, Ending, EpochEvents, Execution, Session, TrainError, TrainState};

/// Result of training plus evaluation.
pub(super) struct Outcome {
    pub(super) state: TrainState,
    pub(super) ending: Ending,
    pub(super) test_accuracy: Option<f64>,
}

/// Training and evaluation of one run, on whichever backend
/// [`backend::with_device`] picks.
pub(super) struct Execute<'a> {
    pub(super) plan: &'a ExperimentPlan,
    pub(super) data: &'a Dataset,
    pub(super) run: &'a RunDir,
    pub(super) signals: &'a Signals,
    pub(super) resume: bool,
    pub(super) until: Option<usize>,
    pub(super) execution: Execution,
    /// A Slurm sweep trial's own rung decisions, after each epoch.
    pub(super) judge: Option<&'a TrialJudge>,
}

impl WithBackend for Execute<'_> {
    type Output = std::result::Result<Outcome, Error>;

    fn run<B: TrainBackend>(self, device: B::Device) -> Self::Output {
        execute::<B>(self, &device)
    }
}

/// The run's per-epoch outputs, then a Slurm sweep trial's own rung
/// decisions: a trial its rung prunes stops there, as on SIGUSR1 from a
/// process following the sweep.
struct Judged<'a, 'b> {
    log: &'b mut RunLog<'a>,
    judge: &'b TrialJudge,
    signals: &'b Signals,
}

impl EpochEvents for Judged<'_, '_> {
    fn on_batch(&mut self, step: u64, loss: f64, accuracy: f64) -> Result<(), TrainError> {
        self.log.on_batch(step, loss, accuracy)
    }

    fn on_weights(&mut self, epoch: usize, weights: &[(String, Weight)]) -> Result<(), TrainError> {
        self.log.on_weights(epoch, weights)
    }

    fn on_epoch_end(&mut self, state: &TrainState) -> Result<(), TrainError> {
        self.log.on_epoch_end(state)?;
        match self.judge.judge() {
            Ok(Some(_)) => self
                .signals
                .request_stop("the sweep's early stopping (pruned at a rung)"),
            Ok(None) => {}
            Err(e) => crate::errln!(
                "cannot decide this trial's rungs ({e}); a process following the sweep can"
            ),
        }
        Ok(())
    }
}

fn execute<B: TrainBackend>(
    job: Execute<'_>,
    device: &B::Device,
) -> std::result::Result<Outcome, Error> {
    let Execute {
        plan,
        data,
        run,
        signals,
        resume,
        until,
        execution,
        judge,
    } = job;
    let pad_eval = execution.pad_eval;
    let session = Session {
        plan,
        data,
        checkpoints: Checkpoints::new(run.checkpoints()),
        signals,
        resume,
        until,
        execution,
    };
    let tb = if plan.callbacks.tensorboard.enabled {
        let mut log =
            TensorboardLog::open(run.root()).map_err(|e| Error::RunFailed(e.to_string()))?;
        if !resume {
            let config = format!("```toml\n{}\n```", config::to_toml(&plan.spec));
            log.text(Stream::Train, "config", 0, &config)
                .map_err(|e| Error::RunFailed(e.to_string()))?;
            if plan.callbacks.tensorboard.graph {
                log.graph(Stream::Train, &graph_nodes(&plan.model))
                    .map_err(|e| Error::RunFailed(e.to_string()))?;
            }
        }
        Some(log)
    } else {
        None
    };
    let mut events = RunLog {
        run,
        plan,
        has_validation: data.validation.is_some(),
        tb,
    };
    let mut progress = Progress::new();
    let fit = match judge {
        Some(judge) => {
            let mut judged = Judged {
                log: &mut events,
                judge,
                signals,
            };
            session.fit::<B>(device, &mut judged, &mut progress)
        }
        None => session.fit::<B>(device, &mut events, &mut progress),
    }
    .map_err(Error::Train)?;

    let evaluate = matches!(fit.ending, Ending::Completed | Ending::EarlyStopped { .. });
    let mut test_accuracy = None;
    if evaluate {
        let model = fit.model.valid();
        let (split_name, split) = match (&data.test, &data.validation) {
            (Some(t), _) => ("test", t),
            (None, Some(v)) => ("validation", v),
            (None, None) => ("train", &data.train),
        };
        let preds = train::predict(&model, split, plan.train.batch_size, pad_eval, device)
            .map_err(Error::Train)?;
        let evaluation = report::eval::Evaluation::compute(split_name, &data.classes, &preds);
        crate::out!("\n{}", evaluation.render_table());
        let grid = report::prediction_grid(split, &preds, &data.classes, plan.seed)?;
        let pictures = report::write(
            &run.report_dir(),
            &evaluation,
            &preds,
            &fit.state.history,
            grid,
        )?;
        if let Some(tb) = events.tb.as_mut() {
            let step = fit.state.epochs_done.saturating_sub(1) as i64;
            for p in &pictures {
                tb.image_png(
                    Stream::Validation,
                    &format!("evaluation/{}", p.name),
                    step,
                    &p.png,
                    p.width,
                    p.height,
                )
                .map_err(|e| Error::RunFailed(e.to_string()))?;
            }
            tb.text(
                Stream::Validation,
                "evaluation/report",
                step,
                &format!("```\n{}```", evaluation.render_table()),
            )
            .map_err(|e| Error::RunFailed(e.to_string()))?;
            tb.flush().map_err(|e| Error::RunFailed(e.to_string()))?;
        }
        crate::outln!("Report: {}", run.report_dir().display());
        test_accuracy = Some(evaluation.accuracy);
    }
    Ok(Outcome {
        state: fit.state,
        ending: fit.ending,
        test_accuracy,
    })
}
