//! The training loop: the configured optimizer and a numerically stable
//! cross-entropy (a final softmax is folded into it), loss and accuracy (and
//! optional top-k) on training and validation data every epoch, Keras-style
//! callbacks reading exactly the numbers that are logged, checkpoints after
//! every epoch, and resume from the last one.

pub mod callbacks;
pub mod checkpoint;
pub mod events;
pub mod loss;
pub mod optim;
pub mod progress;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::data::{Batch, BatchOptions, DataError, Dataset, Split};
use crate::logging::csv::EpochRow;
use crate::model::layer::Weight;
use crate::model::{ConvOps, Net};
use crate::plan::ExperimentPlan;
use crate::signals::{Signals, StopCause};
use callbacks::{
    scheduled_lr, CheckpointTracker, Decision, EarlyStopping, Logs, ReduceLrOnPlateau,
};
use checkpoint::{CheckpointError, Checkpoints, BEST, FINAL, LAST, RESTORE};
use loss::{Loss, LossError};
use optim::Optim;
use progress::Progress;

#[derive(Debug, Error)]
pub enum TrainError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Loss(#[from] LossError),
    #[error("cannot resume: {0}")]
    Resume(String),
    #[error("cannot save the optimizer state: {0}")]
    OptimizerState(String),
    #[error("cannot write {what}: {message}")]
    Output { what: String, message: String },
}

/// Everything the loop carries from one epoch to the next; saved with every
/// resumable checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    /// Epochs finished so far (the next epoch's index, counting from 0).
    pub epochs_done: usize,
    /// Optimizer steps so far (the step of per-batch scalars).
    pub global_step: u64,
    pub history: Vec<EpochRow>,
    pub early_stopping: Option<EarlyStopping>,
    pub plateau: Option<ReduceLrOnPlateau>,
    pub checkpoint: CheckpointTracker,
    /// Optimizer type, so a resume with a different optimizer is refused.
    pub optimizer: String,
}

/// How training ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// Ran all `train.epochs`.
    Completed,
    /// Early stopping fired after `epoch` (from 0); `restored` is the epoch
    /// whose weights were restored, if any.
    EarlyStopped {
        epoch: usize,
        restored: Option<usize>,
    },
    /// A signal (or the process itself) asked to stop; the run can be
    /// resumed.
    Interrupted { cause: StopCause },
    /// Reached the `until` epoch count it was given (a sweep trial paused
    /// at a rung); the run can be resumed.
    Paused { epochs: usize },
    /// The loss became NaN or infinite (`terminate_on_nan`).
    Diverged {
        epoch: usize,
        batch: usize,
        loss: f64,
    },
}

/// Hooks for the outputs of each epoch (CSV, TensorBoard, meta.json).
/// They run after the epoch's checkpoint is safely on disk.
pub trait EpochEvents {
    fn on_batch(
        &mut self,
        _global_step: u64,
        _loss: f64,
        _accuracy: f64,
    ) -> Result<(), TrainError> {
        Ok(())
    }
    fn on_epoch_end(&mut self, state: &TrainState) -> Result<(), TrainError>;
    /// The weights at the end of `epoch` (from 0), as `layer/weight` paths,
    /// on the epochs `callbacks.tensorboard.histogram_every` names. No
    /// default: a wrapper of another's events must pass them on.
    fn on_weights(&mut self, epoch: usize, weights: &[(String, Weight)]) -> Result<(), TrainError>;
}

pub struct Fit<B: AutodiffBackend> {
    pub model: Net<B>,
    pub state: TrainState,
    pub ending: Ending,
}

/// Inputs of one training session.
pub struct Session<'a> {
    pub plan: &'a ExperimentPlan,
    pub data: &'a Dataset,
    pub checkpoints: Checkpoints,
    pub signals: &'a Signals,
    /// Continue from the `last` checkpoint (which must exist).
    pub resume: bool,
    /// Stop after this many completed epochs (fewer than `train.epochs`),
    /// resumable: a sweep trial pausing at a rung.
    pub until: Option<usize>,
    pub execution: Execution,
}

/// Loss, accuracy and counts accumulated over batches.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    loss_sum: f64,
    correct: u64,
    top_k: u64,
    seen: u64,
}

impl Tally {
    fn loss(&self) -> f64 {
        self.loss_sum / self.seen.max(1) as f64
    }
    fn accuracy(&self) -> f64 {
        self.correct as f64 / self.seen.max(1) as f64
    }
    fn top_k(&self) -> f64 {
        self.top_k as f64 / self.seen.max(1) as f64
    }
}

/// A per-epoch seed mixed from the experiment seed, so dropout masks and
/// other backend randomness are the same whether or not a run was resumed.
fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    let mut z = seed
        ^ (epoch as u64)
            .wrapping_add(1)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// How a session runs on its device, beside what the plan says.
#[derive(Debug, Clone, Default)]
pub struct Execution {
    /// Pad short training batches to `train.batch_size` rows, masked out of
    /// the loss and the counts, so every step has one shape (on a GPU each
    /// new shape means compiling and tuning kernels). Off where rows
    /// interact (batch norm's batch statistics would see the padding).
    pub pad_train: bool,
    /// The same for evaluation and prediction (exact in every model).
    pub pad_eval: bool,
    /// Read a training step's loss and counts back from the device at most
    /// every this many steps (0 or 1: every step). Each read waits for the
    /// device to finish; the progress bar also reads when it refreshes.
    pub read_every: usize,
    /// Say how long the first step took, and why, where kernels are compiled
    /// at run time (the kernel cache's description).
    pub warmup_note: Option<String>,
}

impl Execution {
    /// Every batch as it comes, every result read at once: the CPU.
    pub fn cpu() -> Execution {
        Execution::default()
    }

    /// Fixed shapes and rare reads: a GPU. `batch_norm` says whether the
    /// model has a layer whose rows interact in training.
    pub fn gpu(batch_norm: bool, kernel_cache: String) -> Execution {
        Execution {
            pad_train: !batch_norm,
            pad_eval: true,
            read_every: 32,
            warmup_note: Some(kernel_cache),
        }
    }
}

/// Reads of results from the device (each waits for it), in this process.
static READBACKS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// The same count on this thread (tests run side by side).
    static THREAD_READBACKS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many times this process read results back from the device.
pub fn readbacks() -> u64 {
    READBACKS.load(Ordering::Relaxed)
}

/// How many times this thread read results back from the device.
pub fn thread_readbacks() -> u64 {
    THREAD_READBACKS.with(|c| c.get())
}

/// A batch on the device: images, labels and, where padded, a weight per
/// row (1 for the `real` rows, 0 for the padding after them).
struct Input<B: Backend> {
    x: Tensor<B, 4>,
    y: Tensor<B, 1, Int>,
    weights: Option<Tensor<B, 1>>,
    real: usize,
}

/// With `pad_to`, a short batch gets zero rows up to that size, and every
/// batch (full ones too, so that all steps run the same kernels) a weight
/// per row.
fn to_input<B: Backend>(mut batch: Batch, pad_to: Option<usize>, device: &B::Device) -> Input<B> {
    let [n, c, h, w] = batch.shape;
    let rows = pad_to.map_or(n, |p| p.max(n));
    let weights = pad_to.map(|_| {
        batch.images.resize(rows * c * h * w, 0.0);
        batch.labels.resize(rows, 0);
        let mut w = vec![1.0f32; n];
        w.resize(rows, 0.0);
        Tensor::<B, 1>::from_data(TensorData::new(w, [rows]), device)
    });
    let x = Tensor::<B, 4>::from_data(TensorData::new(batch.images, [rows, c, h, w]), device);
    let y = Tensor::<B, 1, Int>::from_data(TensorData::new(batch.labels, [rows]), device);
    Input {
        x,
        y,
        weights,
        real: n,
    }
}

/// The batch's loss over its real rows (the padding's rows weighted 0).
fn batch_loss<B: Backend>(loss: &Loss<B>, logits: Tensor<B, 2>, input: &Input<B>) -> Tensor<B, 1> {
    loss.forward(logits, input.y.clone(), input.weights.as_ref(), input.real)
}

/// `[loss, correct, top-k hits]` of a batch, on the device: the real rows'
/// correct predictions, and those whose true class is among the `k` highest
/// scores (fewer than `k` classes score higher).
fn step_stats<B: Backend>(
    loss: Tensor<B, 1>,
    logits: Tensor<B, 2>,
    labels: Tensor<B, 1, Int>,
    weights: Option<Tensor<B, 1>>,
    k: Option<usize>,
) -> Tensor<B, 1> {
    let [n, classes] = logits.dims();
    let count = |hit: Tensor<B, 1>| match &weights {
        Some(w) => (hit * w.clone()).sum(),
        None => hit.sum(),
    };
    let pred = logits.clone().argmax(1).reshape([n]);
    let correct = count(pred.equal(labels.clone()).float());
    let top = match k {
        Some(k) => {
            let truth = logits
                .clone()
                .gather(1, labels.reshape([n, 1]))
                .repeat_dim(1, classes);
            let higher = logits.greater(truth).int().sum_dim(1).reshape([n]);
            count(higher.lower_elem(k as i64).float())
        }
        None => correct.zeros_like(),
    };
    Tensor::cat(vec![loss.reshape([1]), correct, top], 0)
}

/// Read rows back from the device in one transfer.
fn read_rows<B: Backend>(rows: Vec<Tensor<B, 1>>) -> Vec<Vec<f32>> {
    if rows.is_empty() {
        return Vec::new();
    }
    let lengths: Vec<usize> = rows.iter().map(|r| r.dims()[0]).collect();
    READBACKS.fetch_add(1, Ordering::Relaxed);
    THREAD_READBACKS.with(|c| c.set(c.get() + 1));
    let flat: Vec<f32> = Tensor::cat(rows, 0)
        .into_data()
        .convert::<f32>()
        .to_vec()
        .unwrap_or_default();
    let mut out = Vec::with_capacity(lengths.len());
    let mut at = 0;
    for len in lengths {
        let end = (at + len).min(flat.len());
        out.push(flat[at.min(end)..end].to_vec());
        at = end;
    }
    out
}

/// Training steps whose results are still on the device: `(stats, real rows)`.
struct Pending<B: Backend> {
    steps: Vec<(Tensor<B, 1>, usize)>,
}

impl<B: Backend> Pending<B> {
    fn new() -> Self {
        Pending { steps: Vec::new() }
    }

    fn len(&self) -> usize {
        self.steps.len()
    }

    /// `(loss, correct, top-k, real rows)` per step, oldest first.
    fn read(&mut self) -> Vec<(f64, u64, u64, usize)> {
        let (stats, sizes): (Vec<_>, Vec<_>) = std::mem::take(&mut self.steps).into_iter().unzip();
        read_rows(stats)
            .into_iter()
            .zip(sizes)
            .map(|(r, n)| {
                let at = |i: usize| r.get(i).copied().unwrap_or(f32::NAN);
                (at(0) as f64, at(1).round() as u64, at(2).round() as u64, n)
            })
            .collect()
    }
}

/// Evaluate `model` on a split: mean loss (by `loss`), accuracy and top-k
/// accuracy. With `pad`, the last batch is padded to `batch_size` rows
/// (masked out). Results are read back once, at the end.
#[allow(clippy::too_many_arguments)]
pub fn evaluate<B: ConvOps>(
    model: &Net<B>,
    split: &Split,
    batch_size: usize,
    max_batches: Option<usize>,
    top_k: Option<usize>,
    pad: bool,
    loss_fn: &Loss<B>,
    device: &B::Device,
) -> Result<(f64, f64, f64), TrainError> {
    let opts = BatchOptions {
        batch_size,
        epoch: 0,
        seed: 0,
        shuffle: false,
        augment: false,
        max_batches,
    };
    let mut pending = Pending::<B>::new();
    for batch in split.batches(&opts) {
        let input = to_input::<B>(batch?, pad.then_some(batch_size.min(split.len())), device);
        let logits = model.forward(input.x.clone());
        let loss = batch_loss(loss_fn, logits.clone(), &input);
        let stats = step_stats(loss, logits, input.y, input.weights, top_k);
        pending.steps.push((stats, input.real));
    }
    let mut t = Tally::default();
    for (loss, correct, top, n) in pending.read() {
        t.loss_sum += loss * n as f64;
        t.correct += correct;
        t.top_k += top;
        t.seen += n as u64;
    }
    Ok((t.loss(), t.accuracy(), t.top_k()))
}

/// Class predictions for every example of a split, in order. With `pad`,
/// the last batch is padded to `batch_size` rows (dropped from the result).
/// Results are read back once, at the end.
pub fn predict<B: ConvOps>(
    model: &Net<B>,
    split: &Split,
    batch_size: usize,
    pad: bool,
    device: &B::Device,
) -> Result<crate::report::eval::Predictions, TrainError> {
    let opts = BatchOptions {
        batch_size,
        epoch: 0,
        seed: 0,
        shuffle: false,
        augment: false,
        max_batches: None,
    };
    let mut out = crate::report::eval::Predictions::default();
    let mut rows = Vec::new();
    let mut real = Vec::new();
    for batch in split.batches(&opts) {
        let batch = batch?;
        out.indices.extend(&batch.indices);
        out.truth.extend(batch.labels.iter().map(|&l| l as usize));
        let input = to_input::<B>(batch, pad.then_some(batch_size.min(split.len())), device);
        let n = input.real;
        let probs = model.predict(input.x);
        let rows_in = probs.dims()[0];
        let (best, idx) = probs.max_dim_with_indices(1);
        let row = Tensor::cat(
            vec![best.reshape([rows_in]), idx.float().reshape([rows_in])],
            0,
        );
        rows.push(row);
        real.push(n);
    }
    for (values, n) in read_rows(rows).into_iter().zip(real) {
        // [best of each row..., class of each row...], padding included.
        let (best, class) = values.split_at(values.len() / 2);
        out.confidence.extend(best.iter().take(n).copied());
        out.predicted
            .extend(class.iter().take(n).map(|&i| i.max(0.0) as usize));
    }
    Ok(out)
}

/// Take the results of the steps in `pending` (the last of them batch
/// `steps - 1` of the epoch) into the tally, the step counter and the
/// per-batch events, oldest first. With `stop_on_nan`, stops at the first
/// non-finite loss and returns its batch and value.
fn drain<B: Backend>(
    pending: &mut Pending<B>,
    steps: usize,
    stop_on_nan: bool,
    t: &mut Tally,
    state: &mut TrainState,
    events: &mut dyn EpochEvents,
) -> Result<Option<(usize, f64)>, TrainError> {
    let first = steps.saturating_sub(pending.len());
    for (i, (loss, correct, top, n)) in pending.read().into_iter().enumerate() {
        if stop_on_nan && !loss.is_finite() {
            return Ok(Some((first + i, loss)));
        }
        t.loss_sum += loss * n as f64;
        t.correct += correct;
        t.top_k += top;
        t.seen += n as u64;
        state.global_step += 1;
        events.on_batch(state.global_step, loss, correct as f64 / n.max(1) as f64)?;
    }
    Ok(None)
}

impl Session<'_> {
    fn fresh_state(&self) -> TrainState {
        let cb = &self.plan.callbacks;
        TrainState {
            epochs_done: 0,
            global_step: 0,
            history: Vec::new(),
            early_stopping: cb.early_stopping.as_ref().map(EarlyStopping::new),
            plateau: cb.reduce_lr_on_plateau.as_ref().map(ReduceLrOnPlateau::new),
            checkpoint: CheckpointTracker::new(cb.checkpoint.monitor.clone()),
            optimizer: self.plan.optimizer.name().to_string(),
        }
    }

    /// Reattach the callbacks' configuration to counters read from disk.
    fn restored_state(&self, saved: TrainState) -> Result<TrainState, TrainError> {
        let cb = &self.plan.callbacks;
        if saved.optimizer != self.plan.optimizer.name() {
            return Err(TrainError::Resume(format!(
                "the checkpoint was made with optimizer `{}` but the config now says `{}`",
                saved.optimizer,
                self.plan.optimizer.name()
            )));
        }
        Ok(TrainState {
            early_stopping: match (&cb.early_stopping, &saved.early_stopping) {
                (Some(spec), Some(s)) => Some(EarlyStopping::restore(spec, s)),
                (Some(spec), None) => Some(EarlyStopping::new(spec)),
                (None, _) => None,
            },
            plateau: match (&cb.reduce_lr_on_plateau, &saved.plateau) {
                (Some(spec), Some(s)) => Some(ReduceLrOnPlateau::restore(spec, s)),
                (Some(spec), None) => Some(ReduceLrOnPlateau::new(spec)),
                (None, _) => None,
            },
            checkpoint: CheckpointTracker::restore(
                cb.checkpoint.monitor.clone(),
                &saved.checkpoint,
            ),
            ..saved
        })
    }

    /// Model, optimizer and loop state from the checkpoint of `epoch`.
    #[allow(clippy::type_complexity)]
    fn restore<B: AutodiffBackend<InnerBackend: ConvOps> + ConvOps>(
        &self,
        epoch: usize,
        device: &B::Device,
    ) -> Result<(Net<B>, Optim<B>, TrainState), TrainError> {
        let (saved, optim_bytes) = self.checkpoints.load_resume_state::<TrainState>(epoch)?;
        let state = self.restored_state(saved)?;
        let model = Net::<B>::init(&self.plan.model, device);
        let model = self.checkpoints.load_model(epoch, model, device)?;
        let optim = Optim::<B>::new(&self.plan.optimizer)
            .load_bytes(optim_bytes, device)
            .map_err(|e| CheckpointError::Decode {
                path: self.checkpoints.epoch_dir(epoch).join("optimizer.mpk"),
                message: e.to_string(),
            })?;
        Ok((model, optim, state))
    }

    /// The end of an epoch for the run's outputs: its logs, then, on the
    /// epochs the plan asks for, its weights.
    fn log_epoch<B: Backend>(
        &self,
        events: &mut dyn EpochEvents,
        state: &TrainState,
        model: &Net<B>,
    ) -> Result<(), TrainError> {
        events.on_epoch_end(state)?;
        let Some(epoch) = state.epochs_done.checked_sub(1) else {
            return Ok(());
        };
        if self.plan.callbacks.tensorboard.histograms_after(epoch) {
            events.on_weights(epoch, &model.named_weights(&self.plan.model))?;
        }
        Ok(())
    }

    /// Train according to the plan. Returns the final model (with best
    /// weights restored when early stopping says so) and how it ended.
    pub fn fit<B: AutodiffBackend<InnerBackend: ConvOps> + ConvOps>(
        &self,
        device: &B::Device,
        events: &mut dyn EpochEvents,
        progress: &mut Progress,
    ) -> Result<Fit<B>, TrainError> {
        let plan = self.plan;
        let train = &plan.train;
        B::seed(device, plan.seed);
        let mut model = Net::<B>::init(&plan.model, device);
        let mut optim = Optim::<B>::new(&plan.optimizer);
        let mut state = self.fresh_state();

        if self.resume {
            // `last` first; if a crash tore it, the newest whole one before.
            let candidates = self.checkpoints.resume_candidates();
            if candidates.is_empty() {
                return Err(TrainError::Resume(format!(
                    "{} has no `last` checkpoint (was `callbacks.checkpoint.save_last` off?)",
                    self.checkpoints.dir().display()
                )));
            }
            let mut failed: Vec<(usize, TrainError)> = Vec::new();
            let mut restored = None;
            for &epoch in &candidates {
                match self.restore::<B>(epoch, device) {
                    Ok(r) => {
                        restored = Some((epoch, r));
                        break;
                    }
                    // A torn or missing file: an older checkpoint may do.
                    Err(e @ TrainError::Checkpoint(_)) => failed.push((epoch, e)),
                    // A config that no longer fits the run: none will.
                    Err(e) => return Err(e),
                }
            }
            let Some((epoch, (m, o, s))) = restored else {
                let (epoch, first) = failed.swap_remove(0);
                return Err(TrainError::Resume(format!(
                    "the checkpoint of epoch {epoch} does not load ({first}), and no older one does"
                )));
            };
            if let Some((torn, why)) = failed.first() {
                progress.note(&format!(
                    "The checkpoint of epoch {torn} does not load ({why}); falling back to epoch {epoch}"
                ));
                self.checkpoints.link(LAST, epoch)?;
            }
            (model, optim, state) = (m, o, s);
            progress.note(&format!(
                "Resuming after epoch {} of {}",
                state.epochs_done, train.epochs
            ));
            // Rebuild the outputs from the checkpointed history: the CSV never
            // shows a row twice, and the last epoch's logs are written again
            // (same values, same step) in case the process died just before.
            self.log_epoch(events, &state, &model)?;
        }
        // Weights from another run (a resumed run has its own).
        if let (false, Some(init)) = (self.resume, &plan.init_from) {
            let source = Net::<B>::init(&init.source, device);
            let source = checkpoint::load_model_file(&init.model_file, source, device)?;
            model = model.copy_layers(&plan.model, &source, &init.source, &init.copied);
            progress.note(&format!(
                "Starting from {} ({} layer(s) copied)",
                init.path.display(),
                init.copied.len()
            ));
            for note in &init.notes {
                progress.note(note);
            }
            let head = plan.model.layers.last().map(|l| l.name.as_str());
            if let Some(note) = head.and_then(|h| init.head_note(h, &self.data.classes)) {
                progress.note(&note);
            }
        }
        model = model.freeze(&plan.model);

        // Class weights weigh the training loss only; smoothing both (Keras).
        let class_weights = loss::class_weights(
            train.class_weight.as_ref(),
            &self.data.classes,
            self.data.train.labels(),
        )?;
        let loss_fn = Loss::<B>::new(train.label_smoothing, class_weights.as_deref(), device);
        let val_loss_fn = Loss::<B::InnerBackend>::new(train.label_smoothing, None, device);
        let base_lr = plan.optimizer.learning_rate;
        let schedule = plan.callbacks.lr_schedule.as_ref();
        let batches_per_epoch = {
            let n = self.data.train.len().div_ceil(train.batch_size);
            Some(train.steps_per_epoch.map_or(n, |s| s.min(n)))
        };

        let mut ending = Ending::Completed;
        // The first step of this process compiles (and tunes) GPU kernels.
        let mut warmup = self.execution.warmup_note.clone();
        while state.epochs_done < train.epochs {
            let epoch = state.epochs_done;
            if self.until.is_some_and(|u| epoch >= u) {
                progress.note(&format!(
                    "Paused after {epoch} epoch(s), as asked (--until)"
                ));
                ending = Ending::Paused { epochs: epoch };
                break;
            }
            if self.signals.stop_requested() {
                ending = Ending::Interrupted {
                    cause: self.signals.cause(),
                };
                break;
            }
            B::seed(device, epoch_seed(plan.seed, epoch));
            let factor = state.plateau.as_ref().map_or(1.0, |p| p.factor);
            let lr = scheduled_lr(schedule, base_lr, epoch, train.epochs) * factor;

            // ---- train
            let started = Instant::now();
            progress.start_epoch(epoch, train.epochs, batches_per_epoch);
            let opts = BatchOptions {
                batch_size: train.batch_size,
                epoch,
                seed: plan.seed,
                shuffle: train.shuffle,
                augment: true,
                max_batches: train.steps_per_epoch,
            };
            let mut t = Tally::default();
            let mut interrupted = false;
            let mut pending = Pending::<B::InnerBackend>::new();
            // Never more rows than the split has (a batch size above it).
            let pad_to = self
                .execution
                .pad_train
                .then_some(train.batch_size.min(self.data.train.len()));
            let stop_on_nan = plan.callbacks.terminate_on_nan;
            let mut steps = 0;
            let mut diverged = None;
            for (b, batch) in self.data.train.batches(&opts).enumerate() {
                if self.signals.urgent() {
                    interrupted = true;
                    break;
                }
                let batch = batch?;
                let first_step = warmup.take();
                if let Some(cache) = &first_step {
                    progress.warmup_start(cache);
                }
                let step_started = Instant::now();
                let input = to_input::<B>(batch, pad_to, device);
                let real = input.real;
                let logits = model.forward(input.x.clone());
                let loss = batch_loss(&loss_fn, logits.clone(), &input);
                let stats = step_stats(
                    loss.clone().inner(),
                    logits.inner(),
                    input.y.inner(),
                    input.weights.map(|w| w.inner()),
                    train.top_k,
                );
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = optim.step(lr, model, grads);
                pending.steps.push((stats, real));
                steps = b + 1;
                let due = pending.len() >= self.execution.read_every.max(1)
                    || first_step.is_some()
                    || progress.wants_refresh();
                if !due {
                    continue;
                }
                if let Some(nan) =
                    drain(&mut pending, steps, stop_on_nan, &mut t, &mut state, events)?
                {
                    diverged = Some(nan);
                    break;
                }
                if first_step.is_some() {
                    progress.warmup_end(step_started.elapsed().as_secs_f64());
                }
                progress.batch(steps, t.loss(), t.accuracy(), t.seen as usize);
            }
            if diverged.is_none() && !interrupted {
                diverged = drain(&mut pending, steps, stop_on_nan, &mut t, &mut state, events)?;
            }
            if let Some((batch, loss)) = diverged {
                progress.note(&format!(
                    "Batch {batch}: invalid loss {loss}, terminating training"
                ));
                return Ok(Fit {
                    model,
                    state,
                    ending: Ending::Diverged { epoch, batch, loss },
                });
            }
            if interrupted {
                ending = Ending::Interrupted {
                    cause: self.signals.cause(),
                };
                break;
            }
            let train_secs = started.elapsed().as_secs_f64();

            // ---- validate
            let val = match &self.data.validation {
                Some(split) => Some(evaluate(
                    &model.valid(),
                    split,
                    train.batch_size,
                    train.validation_steps,
                    train.top_k,
                    self.execution.pad_eval,
                    &val_loss_fn,
                    device,
                )?),
                None => None,
            };
            let row = EpochRow {
                epoch,
                train_loss: t.loss(),
                train_accuracy: t.accuracy(),
                train_top_k_accuracy: train.top_k.map(|_| t.top_k()),
                val_loss: val.map(|v| v.0),
                val_accuracy: val.map(|v| v.1),
                val_top_k_accuracy: val.and_then(|v| train.top_k.map(|_| v.2)),
                lr,
                epoch_seconds: started.elapsed().as_secs_f64(),
                images_per_second: t.seen as f64 / train_secs.max(1e-9),
            };
            let logs = logs_of(&row, train.top_k);

            // ---- callbacks, on exactly the logged numbers
            let decision = match state.early_stopping.as_mut() {
                Some(es) => es.on_epoch_end(epoch, &logs),
                None => Decision::Continue,
            };
            if let Some(p) = state.plateau.as_mut() {
                if let Some(f) = p.on_epoch_end(&logs, lr) {
                    progress.note(&format!(
                        "Epoch {}: ReduceLROnPlateau reducing learning rate to {:.3e}",
                        epoch + 1,
                        scheduled_lr(schedule, base_lr, epoch + 1, train.epochs) * f
                    ));
                }
            }
            let improved = state.checkpoint.on_epoch_end(epoch, &logs);
            state.history.push(row.clone());
            state.epochs_done = epoch + 1;

            // ---- checkpoint first, then the logs that point at it
            self.save_epoch(&model, &optim, &state, improved)?;
            progress.end_epoch(train.epochs, &row);
            self.log_epoch(events, &state, &model)?;

            if let Decision::Stop { restore } = decision {
                let restored = match restore {
                    Some(best) => {
                        progress.note(&format!(
                            "Epoch {}: early stopping; restoring model weights from the end of the best epoch ({})",
                            epoch + 1,
                            best + 1
                        ));
                        model = self.checkpoints.load_model(best + 1, model, device)?;
                        Some(best)
                    }
                    None => {
                        progress.note(&format!("Epoch {}: early stopping", epoch + 1));
                        None
                    }
                };
                ending = Ending::EarlyStopped { epoch, restored };
                break;
            }
            if self.signals.stop_requested() && state.epochs_done < train.epochs {
                ending = Ending::Interrupted {
                    cause: self.signals.cause(),
                };
                break;
            }
        }
        // Keep the weights the run ends with as `final`, for `runner eval`.
        if matches!(ending, Ending::Completed | Ending::EarlyStopped { .. })
            && state.epochs_done > 0
        {
            let epoch = match &ending {
                Ending::EarlyStopped {
                    restored: Some(best),
                    ..
                } => best + 1,
                _ => state.epochs_done,
            };
            if !self.checkpoints.has_model(epoch) {
                self.checkpoints.save_model(epoch, &model)?;
            }
            self.checkpoints.link(FINAL, epoch)?;
        }
        self.checkpoints.unlink(RESTORE);
        self.prune();
        Ok(Fit {
            model,
            state,
            ending,
        })
    }

    /// Save the epoch's checkpoint and move the links.
    fn save_epoch<B: AutodiffBackend>(
        &self,
        model: &Net<B>,
        optim: &Optim<B>,
        state: &TrainState,
        improved: bool,
    ) -> Result<(), TrainError> {
        let cp = &self.plan.callbacks.checkpoint;
        let done = state.epochs_done;
        let ck = &self.checkpoints;
        let restore_epoch = state
            .early_stopping
            .as_ref()
            .filter(|_| {
                self.plan
                    .callbacks
                    .early_stopping
                    .as_ref()
                    .is_some_and(|s| s.restore_best_weights)
            })
            .and_then(|es| es.best_epoch);
        let needed =
            cp.save_last || !cp.save_best_only || improved || restore_epoch == Some(done - 1);
        if !needed {
            return Ok(());
        }
        ck.save_model(done, model)?;
        if cp.save_last {
            let bytes = optim
                .to_bytes()
                .map_err(|e| TrainError::OptimizerState(e.to_string()))?;
            ck.save_resume_state(done, &bytes, state)?;
            ck.link(LAST, done)?;
        }
        if improved {
            ck.link(BEST, done)?;
        }
        if let Some(e) = restore_epoch {
            ck.link(RESTORE, e + 1)?;
        }
        self.prune();
        Ok(())
    }

    /// Keep linked checkpoints, plus the last `keep_last_n` epochs (all when
    /// unset) unless `save_best_only`.
    fn prune(&self) {
        let cp = &self.plan.callbacks.checkpoint;
        let saved = self.checkpoints.saved_epochs();
        let keep: BTreeSet<usize> = if cp.save_best_only {
            BTreeSet::new()
        } else {
            let n = cp.keep_last_n.unwrap_or(usize::MAX);
            saved.iter().rev().take(n).copied().collect()
        };
        self.checkpoints.prune(&keep);
    }
}

/// Keras's names for the numbers of an epoch, as callbacks see them.
pub fn logs_of(row: &EpochRow, top_k: Option<usize>) -> Logs {
    let mut logs = Logs::new();
    logs.insert("loss".into(), row.train_loss);
    logs.insert("accuracy".into(), row.train_accuracy);
    if let (Some(k), Some(v)) = (top_k, row.train_top_k_accuracy) {
        logs.insert(format!("top{k}_accuracy"), v);
    }
    if let Some(v) = row.val_loss {
        logs.insert("val_loss".into(), v);
    }
    if let Some(v) = row.val_accuracy {
        logs.insert("val_accuracy".into(), v);
    }
    if let (Some(k), Some(v)) = (top_k, row.val_top_k_accuracy) {
        logs.insert(format!("val_top{k}_accuracy"), v);
    }
    logs.insert("lr".into(), row.lr);
    logs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_seeds_differ_and_repeat() {
        assert_eq!(epoch_seed(42, 3), epoch_seed(42, 3));
        assert_ne!(epoch_seed(42, 3), epoch_seed(42, 4));
        assert_ne!(epoch_seed(42, 3), epoch_seed(43, 3));
    }
}

#[cfg(test)]
mod baseline_tests {
    use super::*;
    use crate::config::{self, LoadOptions};
    use burn::backend::{Autodiff, Flex};
    use burn::nn::loss::CrossEntropyLossConfig;
    use burn::tensor::ElementConversion;

    /// The tutorial's 10.6M-parameter model builds from experiments/baseline.toml
    /// and learns end to end: with its own optimizer (RMSprop at 1e-4), the
    /// loss on a small fixed batch of generated 128x128 images goes down.
    #[test]
    fn baseline_model_learns_on_a_fixed_batch() {
        type B = Autodiff<Flex>;
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let loaded = config::load(
            &root.join("experiments/baseline.toml"),
            &LoadOptions::default(),
        )
        .unwrap();
        let plan = crate::plan::plan(&loaded).unwrap();
        assert_eq!(plan.model.params().total(), 10_588_458);
        let device = Default::default();
        B::seed(&device, 1);
        let mut model = Net::<B>::init(&plan.model, &device);
        let mut optim = Optim::<B>::new(&plan.optimizer);
        let n = 4;
        let [h, w, c] = plan.model.input;
        // Each image is one flat colour plus noise: classes 0..3.
        let labels: Vec<i64> = (0..n as i64).collect();
        let mut images = Vec::with_capacity(n * c * h * w);
        let mut state = 12345u64;
        for label in &labels {
            for ch in 0..c {
                for _ in 0..h * w {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let noise = (state >> 40) as f32 / (1u64 << 24) as f32 * 0.2;
                    images.push(((*label as usize * 3 + ch) % 5) as f32 / 5.0 + noise);
                }
            }
        }
        let loss_fn = CrossEntropyLossConfig::new().init(&device);
        let lr = plan.optimizer.learning_rate;
        let mut losses = Vec::new();
        for _ in 0..6 {
            let input = to_input::<B>(
                Batch {
                    images: images.clone(),
                    labels: labels.clone(),
                    indices: (0..n).collect(),
                    shape: [n, c, h, w],
                },
                None,
                &device,
            );
            let loss = loss_fn.forward(model.forward(input.x), input.y);
            losses.push(loss.clone().into_scalar().elem::<f64>());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
        }
        assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
        // Dropout makes single steps noisy: compare the last two with the start.
        let end = (losses[4] + losses[5]) / 2.0;
        assert!(
            end < losses[0] * 0.8,
            "the loss should fall on a fixed batch: {losses:?}"
        );
    }
}

#[cfg(test)]
mod execution_tests {
    //! The GPU's way of running a session (padded fixed-shape batches, rare
    //! reads), checked on the CPU backend against the CPU's way.
    use super::*;
    use crate::config::{self, LoadOptions};
    use burn::backend::{Autodiff, Flex};

    type B = Autodiff<Flex>;

    /// The small conv net most tests here train.
    const CONV_LAYERS: &str = r#"
  { type = "conv2d", filters = 4, kernel = 3, activation = "relu" },
  { type = "max_pool2d", pool = 2 },
  { type = "flatten" },
  { type = "dense", units = 3, activation = "softmax" },
"#;

    /// 44 training images in batches of 16 (the last has 12), no dropout:
    /// padding must not change a single number beyond rounding.
    fn plan(dir: &std::path::Path, extra: &str) -> ExperimentPlan {
        plan_with(dir, CONV_LAYERS, extra)
    }

    fn plan_with(dir: &std::path::Path, layers: &str, extra: &str) -> ExperimentPlan {
        let text = format!(
            r#"[experiment]
name = "exec"
seed = 5
[data]
source = "synthetic"
classes = 3
train_size = 44
validation_size = 21
test_size = 9
[augment]
rescale = "1/255"
[model]
input_shape = [10, 10, 3]
layers = [{layers}]
[train]
epochs = 2
batch_size = 16
top_k = 2
{optimizer}
"#,
            optimizer = if extra.contains("[optimizer]") {
                extra.to_string()
            } else {
                format!("[optimizer]\ntype = \"adam\"\nlearning_rate = 0.01\n{extra}")
            }
        );
        let path = dir.join("exec.toml");
        std::fs::write(&path, text).unwrap();
        let loaded = config::load(&path, &LoadOptions::default()).unwrap();
        crate::plan::plan(&loaded).unwrap()
    }

    /// What reached the events: every batch's (step, loss, accuracy), and
    /// the weights with the epoch they were sent after.
    struct Steps(Vec<(u64, f64, f64)>, Vec<(usize, Vec<(String, Weight)>)>);

    impl EpochEvents for Steps {
        fn on_batch(&mut self, step: u64, loss: f64, accuracy: f64) -> Result<(), TrainError> {
            self.0.push((step, loss, accuracy));
            Ok(())
        }
        fn on_epoch_end(&mut self, _state: &TrainState) -> Result<(), TrainError> {
            Ok(())
        }
        fn on_weights(
            &mut self,
            epoch: usize,
            weights: &[(String, Weight)],
        ) -> Result<(), TrainError> {
            self.1.push((epoch, weights.to_vec()));
            Ok(())
        }
    }

    /// Train `plan` with `execution`, its checkpoints in `dir` (resuming
    /// from them where `resume`); the fit, the per-batch events and the
    /// reads this thread made.
    fn fit_in(
        plan: &ExperimentPlan,
        execution: Execution,
        dir: &std::path::Path,
        resume: bool,
    ) -> (Fit<B>, Steps, u64) {
        let data = Dataset::open(plan).unwrap();
        let signals = Signals::none();
        let session = Session {
            plan,
            data: &data,
            checkpoints: Checkpoints::new(dir.join("checkpoints")),
            signals: &signals,
            resume,
            until: None,
            execution,
        };
        let mut steps = Steps(Vec::new(), Vec::new());
        let before = thread_readbacks();
        let fit = session
            .fit::<B>(&Default::default(), &mut steps, &mut Progress::new())
            .unwrap();
        let reads = thread_readbacks() - before;
        (fit, steps, reads)
    }

    fn fit(plan: &ExperimentPlan, execution: Execution) -> (Fit<B>, Steps, u64) {
        let dir = tempfile::tempdir().unwrap();
        fit_in(plan, execution, dir.path(), false)
    }

    #[test]
    fn the_weights_reach_the_events_on_the_epochs_histogram_every_names() {
        let dir = tempfile::tempdir().unwrap();
        let names = ["conv2d/kernel", "conv2d/bias", "dense/kernel", "dense/bias"];
        for (every, epochs) in [(0, vec![]), (1, vec![0, 1]), (2, vec![0])] {
            let extra = format!("[callbacks.tensorboard]\nhistogram_every = {every}\n");
            let plan = plan(dir.path(), &extra);
            let (fit, steps, _) = fit(&plan, Execution::cpu());
            let sent: Vec<usize> = steps.1.iter().map(|(e, _)| *e).collect();
            assert_eq!(sent, epochs, "histogram_every = {every}");
            for (_, weights) in &steps.1 {
                let paths: Vec<&str> = weights.iter().map(|(p, _)| p.as_str()).collect();
                assert_eq!(paths, names);
            }
            if every == 1 {
                // The last epoch's are the weights training ended with, and
                // they moved since the first.
                let last = &steps.1[1].1;
                assert_eq!(last, &fit.model.named_weights(&plan.model));
                assert_ne!(steps.1[0].1[0].1.values, last[0].1.values);
            }
        }
        // Off with the TensorBoard callback, as every TensorBoard output is.
        let extra = "[callbacks.tensorboard]\nenabled = false\nhistogram_every = 1\n";
        let (_, steps, _) = fit(&plan(dir.path(), extra), Execution::cpu());
        assert!(steps.1.is_empty());
    }

    /// A copy of a checkpoint folder, links as links.
    fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let (src, dst) = (entry.path(), to.join(entry.file_name()));
            let kind = entry.file_type().unwrap();
            if kind.is_symlink() {
                std::os::unix::fs::symlink(std::fs::read_link(&src).unwrap(), &dst).unwrap();
            } else if kind.is_dir() {
                copy_tree(&src, &dst);
            } else {
                std::fs::copy(&src, &dst).unwrap();
            }
        }
    }

    fn gpu_like() -> Execution {
        Execution {
            warmup_note: None,
            ..Execution::gpu(false, String::new())
        }
    }

    #[test]
    fn padded_batches_give_the_unpadded_numbers() {
        padded_matches_unpadded(|_| {});
    }

    #[test]
    fn padded_batches_give_the_unpadded_numbers_with_smoothing_and_class_weights() {
        padded_matches_unpadded(|p| {
            p.train.label_smoothing = 0.2;
            p.train.class_weight = Some(crate::plan::ClassWeights::ByName(
                [("disk".to_string(), 0.5), ("square".to_string(), 4.0)].into(),
            ));
        });
    }

    fn padded_matches_unpadded(options: impl Fn(&mut ExperimentPlan)) {
        // One epoch, then the second from that checkpoint both ways: the
        // same weights in, no dropout, so only rounding may differ. (Two
        // fresh fits could start from different weights: the backend's
        // random generator is shared with tests running beside this one.)
        let dir = tempfile::tempdir().unwrap();
        let mut plan = plan(dir.path(), "");
        options(&mut plan);
        plan.train.epochs = 1;
        let first = dir.path().join("first");
        fit_in(&plan, Execution::cpu(), &first, false);
        plan.train.epochs = 2;
        let resumed_with = |plan: &ExperimentPlan, execution, name: &str| {
            let at = dir.path().join(name);
            copy_tree(&first, &at);
            fit_in(plan, execution, &at, true)
        };
        let resumed = |execution, name: &str| resumed_with(&plan, execution, name);
        let (cpu, cpu_steps, _) = resumed(Execution::cpu(), "cpu");
        let (gpu, gpu_steps, _) = resumed(gpu_like(), "gpu");
        if plan.train.label_smoothing != 0.0 || plan.train.class_weight.is_some() {
            // The options change the losses (from the same weights), not the accuracy.
            let mut bare = plan.clone();
            bare.train.label_smoothing = 0.0;
            bare.train.class_weight = None;
            let (b, _, _) = resumed_with(&bare, Execution::cpu(), "bare");
            let (b, c) = (&b.state.history[1], &cpu.state.history[1]);
            assert!((b.train_loss - c.train_loss).abs() > 1e-3, "{b:?}\n{c:?}");
            assert!(
                (b.val_loss.unwrap() - c.val_loss.unwrap()).abs() > 1e-3,
                "{b:?}\n{c:?}"
            );
        }
        assert_eq!(cpu.state.global_step, 6);
        assert_eq!(gpu.state.global_step, 6);
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-4 * a.abs().max(1.0);
        let (c, g) = (&cpu.state.history[1], &gpu.state.history[1]);
        assert!(close(c.train_loss, g.train_loss), "{c:?}\n{g:?}");
        assert_eq!(c.train_accuracy, g.train_accuracy);
        assert_eq!(c.train_top_k_accuracy, g.train_top_k_accuracy);
        assert!(
            close(c.val_loss.unwrap(), g.val_loss.unwrap()),
            "{c:?}\n{g:?}"
        );
        assert_eq!(c.val_accuracy, g.val_accuracy);
        assert_eq!(c.val_top_k_accuracy, g.val_top_k_accuracy);
        // Every step's loss and accuracy reach the events, in order; the
        // short third batch's accuracy is over its 12 real rows only.
        assert_eq!(cpu_steps.0.len(), 3);
        assert_eq!(gpu_steps.0.len(), 3);
        for (c, g) in cpu_steps.0.iter().zip(&gpu_steps.0) {
            assert_eq!(c.0, g.0);
            assert!(close(c.1, g.1), "{c:?} {g:?}");
            assert_eq!(c.2, g.2);
        }
        let third = gpu_steps.0[2].2 * 12.0;
        assert!(
            (third - third.round()).abs() < 1e-9,
            "accuracy of 12 rows: {third}"
        );
    }

    #[test]
    fn gpu_execution_reads_results_back_rarely() {
        let dir = tempfile::tempdir().unwrap();
        let plan = plan(dir.path(), "");
        let (_, _, cpu_reads) = fit(&plan, Execution::cpu());
        let (_, _, gpu_reads) = fit(&plan, gpu_like());
        // CPU: one read per training step (6) and one per validation (2).
        assert_eq!(cpu_reads, 8);
        // GPU: one read per epoch of training and one per validation.
        assert_eq!(gpu_reads, 4);
    }

    #[test]
    fn padding_stays_off_for_batch_norm() {
        assert!(!Execution::gpu(true, String::new()).pad_train);
        assert!(Execution::gpu(true, String::new()).pad_eval);
        assert!(Execution::gpu(false, String::new()).pad_train);
        assert!(!Execution::cpu().pad_train && !Execution::cpu().pad_eval);
    }

    #[test]
    fn a_nan_is_found_at_its_batch_among_deferred_reads() {
        let dir = tempfile::tempdir().unwrap();
        // SGD at an absurd rate overflows after its first step, whatever the
        // initial weights: with no ReLU to die (the conv net's could all go
        // dark after one step, and then the loss only grows, finite, for
        // the few steps here; so it did in one CI run) the step moves every
        // weight by about 1e37, and the next logits exceed f32's range.
        let plan = plan_with(
            dir.path(),
            r#"{ type = "flatten" }, { type = "dense", units = 3, activation = "softmax" }"#,
            "[callbacks]\nterminate_on_nan = true\n[optimizer]\ntype = \"sgd\"\nlearning_rate = 1e38",
        );
        for execution in [Execution::cpu(), gpu_like()] {
            let (fit, steps, _) = fit(&plan, execution);
            // The steps before the bad one were reported, and no step after it.
            match fit.ending {
                Ending::Diverged { epoch, batch, loss } => {
                    assert!(!loss.is_finite());
                    assert_eq!(steps.0.len(), epoch * 3 + batch, "{:?}", steps.0);
                    assert!(steps.0.iter().all(|s| s.1.is_finite()));
                }
                other => panic!("should diverge: {other:?}"),
            }
        }
    }
}
