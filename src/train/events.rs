//! The run folder's per-epoch outputs, as the training loop reports epochs:
//! metrics.csv, TensorBoard scalars and meta.json progress.

use crate::logging::csv::{self as metrics_csv, EpochRow};
use crate::logging::tensorboard::{self as tb, Stream, TensorboardLog};
use crate::logging::LogError;
use crate::model::layer::Weight;
use crate::plan::ExperimentPlan;
use crate::rundir::RunDir;

use super::{EpochEvents, TrainError, TrainState};

/// Per-epoch outputs: metrics.csv, TensorBoard scalars and meta.json progress.
pub struct RunLog<'a> {
    pub run: &'a RunDir,
    pub plan: &'a ExperimentPlan,
    pub has_validation: bool,
    pub tb: Option<TensorboardLog>,
}

impl RunLog<'_> {
    fn tb_err(e: LogError) -> TrainError {
        TrainError::Output {
            what: "TensorBoard events".into(),
            message: e.to_string(),
        }
    }

    /// Keras's tags: `train/` and `validation/` runs, step = epoch from 0.
    fn epoch_scalars(&mut self, row: &EpochRow) -> Result<(), TrainError> {
        let Some(tb) = self.tb.as_mut() else {
            return Ok(());
        };
        let step = row.epoch as i64;
        let k = self.plan.train.top_k;
        let mut put = |stream, tag: &str, v: Option<f64>| match v {
            Some(v) => tb.scalar(stream, tag, step, v),
            None => Ok(()),
        };
        put(Stream::Train, tb::EPOCH_LOSS, Some(row.train_loss)).map_err(Self::tb_err)?;
        put(Stream::Train, tb::EPOCH_ACCURACY, Some(row.train_accuracy)).map_err(Self::tb_err)?;
        put(Stream::Train, tb::EPOCH_LEARNING_RATE, Some(row.lr)).map_err(Self::tb_err)?;
        put(Stream::Validation, tb::EPOCH_LOSS, row.val_loss).map_err(Self::tb_err)?;
        put(Stream::Validation, tb::EPOCH_ACCURACY, row.val_accuracy).map_err(Self::tb_err)?;
        if let Some(k) = k {
            let tag = format!("epoch_top{k}_accuracy");
            put(Stream::Train, &tag, row.train_top_k_accuracy).map_err(Self::tb_err)?;
            put(Stream::Validation, &tag, row.val_top_k_accuracy).map_err(Self::tb_err)?;
        }
        tb.flush().map_err(Self::tb_err)
    }
}

impl EpochEvents for RunLog<'_> {
    fn on_batch(&mut self, global_step: u64, loss: f64, accuracy: f64) -> Result<(), TrainError> {
        let every = self.plan.callbacks.tensorboard.batch_every as u64;
        if every == 0 || !global_step.is_multiple_of(every) {
            return Ok(());
        }
        if let Some(tb) = self.tb.as_mut() {
            let step = global_step as i64;
            tb.scalar(Stream::Train, tb::BATCH_LOSS, step, loss)
                .map_err(Self::tb_err)?;
            tb.scalar(Stream::Train, tb::BATCH_ACCURACY, step, accuracy)
                .map_err(Self::tb_err)?;
        }
        Ok(())
    }

    /// Keras's `histogram_freq`: one histogram per weight in `train/`, tag
    /// `layer/weight/histogram`, step = epoch.
    fn on_weights(&mut self, epoch: usize, weights: &[(String, Weight)]) -> Result<(), TrainError> {
        let Some(tb) = self.tb.as_mut() else {
            return Ok(());
        };
        for (path, weight) in weights {
            tb.histogram(
                Stream::Train,
                &format!("{path}/histogram"),
                epoch as i64,
                &weight.values,
            )
            .map_err(Self::tb_err)?;
        }
        tb.flush().map_err(Self::tb_err)
    }

    fn on_epoch_end(&mut self, state: &TrainState) -> Result<(), TrainError> {
        metrics_csv::write(
            &self.run.metrics_csv(),
            &state.history,
            self.plan.train.top_k,
            self.has_validation,
        )
        .map_err(|e| TrainError::Output {
            what: "metrics.csv".into(),
            message: e.to_string(),
        })?;
        if let Some(row) = state.history.last() {
            self.epoch_scalars(row)?;
        }
        if let Ok(mut meta) = self.run.read_meta() {
            meta.epochs_completed = state.epochs_done;
            meta.best_epoch = state.checkpoint.best_epoch;
            meta.best_value = state.checkpoint.best;
            let _ = self.run.write_meta(&meta);
        }
        Ok(())
    }
}
