//! The training side of a plan: optimizer, loop, callbacks and learning-rate
//! schedule, with every default resolved and every monitor's direction
//! decided. The trainer reads these, never the specs they came from.

use std::collections::BTreeMap;

use super::Checker;
use crate::config::spec::{
    CallbacksSpec, CheckpointSpec, ClassWeightSpec, EarlyStoppingSpec, LrScheduleSpec, Mode,
    OptimizerSpec, ReduceLrSpec, TrainSpec,
};
use crate::config::KeyPath;

/// The metric a callback or sweep watches, with its direction resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Monitor {
    pub metric: String,
    /// True when larger is better.
    pub maximize: bool,
}

impl Monitor {
    pub fn new(metric: &str, mode: Mode) -> Monitor {
        let maximize = match mode {
            Mode::Max => true,
            Mode::Min => false,
            // Keras: "max" for accuracy-like metrics, "min" otherwise.
            Mode::Auto => metric.contains("acc"),
        };
        Monitor {
            metric: metric.to_string(),
            maximize,
        }
    }

    /// Larger is better.
    pub fn max(metric: &str) -> Monitor {
        Monitor::new(metric, Mode::Max)
    }

    /// Smaller is better.
    pub fn min(metric: &str) -> Monitor {
        Monitor::new(metric, Mode::Min)
    }

    /// Whether `value` beats `best` by more than `min_delta`.
    pub fn improves(&self, value: f64, best: f64, min_delta: f64) -> bool {
        if self.maximize {
            value - min_delta.abs() > best
        } else {
            value + min_delta.abs() < best
        }
    }
}

/// An optimizer: its algorithm, learning rate, weight decay and clipping.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizerPlan {
    pub algorithm: Algorithm,
    pub learning_rate: f64,
    /// L2 penalty (decoupled for AdamW); 0 is none.
    pub weight_decay: f64,
    pub clipping: Option<Clipping>,
}

/// An optimizer's algorithm and the settings only it has.
#[derive(Debug, Clone, PartialEq)]
pub enum Algorithm {
    Rmsprop {
        rho: f64,
        momentum: f64,
        epsilon: f64,
        centered: bool,
    },
    Adam {
        beta_1: f64,
        beta_2: f64,
        epsilon: f64,
    },
    AdamW {
        beta_1: f64,
        beta_2: f64,
        epsilon: f64,
    },
    Sgd {
        momentum: f64,
        nesterov: bool,
    },
}

/// Gradient clipping, by global norm or per value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Clipping {
    Norm(f64),
    Value(f64),
}

impl OptimizerPlan {
    pub fn resolve(spec: &OptimizerSpec) -> OptimizerPlan {
        let (algorithm, learning_rate, weight_decay, clip_norm, clip_value) = match spec {
            OptimizerSpec::Rmsprop(s) => (
                Algorithm::Rmsprop {
                    rho: s.rho,
                    momentum: s.momentum,
                    epsilon: s.epsilon,
                    centered: s.centered,
                },
                s.learning_rate,
                s.weight_decay,
                s.clip_norm,
                s.clip_value,
            ),
            OptimizerSpec::Adam(s) => (
                Algorithm::Adam {
                    beta_1: s.beta_1,
                    beta_2: s.beta_2,
                    epsilon: s.epsilon,
                },
                s.learning_rate,
                s.weight_decay,
                s.clip_norm,
                s.clip_value,
            ),
            OptimizerSpec::Adamw(s) => (
                Algorithm::AdamW {
                    beta_1: s.beta_1,
                    beta_2: s.beta_2,
                    epsilon: s.epsilon,
                },
                s.learning_rate,
                s.weight_decay,
                s.clip_norm,
                s.clip_value,
            ),
            OptimizerSpec::Sgd(s) => (
                Algorithm::Sgd {
                    momentum: s.momentum,
                    nesterov: s.nesterov,
                },
                s.learning_rate,
                s.weight_decay,
                s.clip_norm,
                s.clip_value,
            ),
        };
        // The plan refuses both at once; the norm would win.
        let clipping = match (clip_norm, clip_value) {
            (Some(n), _) => Some(Clipping::Norm(n)),
            (None, Some(v)) => Some(Clipping::Value(v)),
            (None, None) => None,
        };
        OptimizerPlan {
            algorithm,
            learning_rate,
            weight_decay,
            clipping,
        }
    }

    /// The `optimizer.type` this plan came from (`rmsprop`, `adam`, ...).
    pub fn name(&self) -> &'static str {
        match self.algorithm {
            Algorithm::Rmsprop { .. } => "rmsprop",
            Algorithm::Adam { .. } => "adam",
            Algorithm::AdamW { .. } => "adamw",
            Algorithm::Sgd { .. } => "sgd",
        }
    }
}

/// The training loop's sizes and switches.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainPlan {
    pub epochs: usize,
    pub batch_size: usize,
    /// Batches per training epoch; `None` is the whole training set.
    pub steps_per_epoch: Option<usize>,
    /// Batches per validation; `None` is the whole validation set.
    pub validation_steps: Option<usize>,
    /// Also report top-k accuracy for this k.
    pub top_k: Option<usize>,
    /// Reshuffle the training set every epoch.
    pub shuffle: bool,
    /// Label smoothing ε in [0, 1) of the training and validation loss; 0
    /// is none.
    pub label_smoothing: f64,
    /// Per-class weights of the training loss; `None` weighs every class 1.
    pub class_weight: Option<ClassWeights>,
}

/// `train.class_weight`, its syntax checked. The names are checked against
/// the data's classes once it is opened (a folder's classes are found then).
#[derive(Debug, Clone, PartialEq)]
pub enum ClassWeights {
    /// n_samples / (n_classes * count_c) for each class c of the training split.
    Balanced,
    /// The named classes' weights (positive, finite); every other class weighs 1.
    ByName(BTreeMap<String, f64>),
}

impl TrainPlan {
    pub fn resolve(spec: &TrainSpec) -> TrainPlan {
        TrainPlan {
            epochs: spec.epochs,
            batch_size: spec.batch_size,
            steps_per_epoch: spec.steps_per_epoch,
            validation_steps: spec.validation_steps,
            top_k: spec.top_k,
            shuffle: spec.shuffle,
            label_smoothing: spec.label_smoothing,
            class_weight: spec.class_weight.as_ref().map(|c| match c {
                ClassWeightSpec::Balanced => ClassWeights::Balanced,
                ClassWeightSpec::ByName(w) => ClassWeights::ByName(w.clone()),
            }),
        }
    }
}

/// `train.label_smoothing` in [0, 1); `train.class_weight` a table of
/// positive finite weights that names at least one class.
pub(super) fn check_loss(ck: &mut Checker, t: &TrainSpec) {
    ck.range("train.label_smoothing", t.label_smoothing, 0.0, 1.0, true);
    if let Some(ClassWeightSpec::ByName(weights)) = &t.class_weight {
        if weights.is_empty() {
            ck.fail(
                "train.class_weight",
                "the table names no class",
                Some("write `class = weight` pairs, e.g. `{ cat = 1.0, dog = 3.0 }`, or `\"balanced\"`".into()),
            );
        }
        for (class, weight) in weights {
            if !(weight.is_finite() && *weight > 0.0) {
                ck.fail_at(
                    KeyPath::parse("train.class_weight").key(class.clone()),
                    format!("{weight} is out of range: a class weight must be greater than 0"),
                    None,
                );
            }
        }
    }
}

/// Every callback of a run; the checkpoint callback is always on.
#[derive(Debug, Clone, PartialEq)]
pub struct CallbacksPlan {
    pub early_stopping: Option<EarlyStoppingPlan>,
    pub checkpoint: CheckpointPlan,
    pub reduce_lr_on_plateau: Option<ReduceLrPlan>,
    /// Fail the run at the first NaN or infinite loss.
    pub terminate_on_nan: bool,
    pub lr_schedule: Option<SchedulePlan>,
    pub tensorboard: TensorboardPlan,
}

/// Keras's `EarlyStopping`.
#[derive(Debug, Clone, PartialEq)]
pub struct EarlyStoppingPlan {
    pub monitor: Monitor,
    pub patience: usize,
    pub min_delta: f64,
    pub baseline: Option<f64>,
    pub start_from_epoch: usize,
    pub restore_best_weights: bool,
}

/// Keras's `ModelCheckpoint`, as runner keeps its checkpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointPlan {
    pub monitor: Monitor,
    pub save_best_only: bool,
    pub save_last: bool,
    pub keep_last_n: Option<usize>,
}

/// Keras's `ReduceLROnPlateau`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReduceLrPlan {
    pub monitor: Monitor,
    pub factor: f64,
    pub patience: usize,
    pub min_delta: f64,
    pub cooldown: usize,
    pub min_lr: f64,
}

/// A learning-rate schedule: a linear warm-up, then its shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SchedulePlan {
    pub warmup_epochs: usize,
    pub shape: ScheduleShape,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ScheduleShape {
    Constant,
    /// Multiply by `gamma` every `step_size` epochs.
    Step {
        step_size: usize,
        gamma: f64,
    },
    /// Half a cosine from the base rate down to `min_lr` over the epochs
    /// after the warm-up.
    Cosine {
        min_lr: f64,
    },
}

/// TensorBoard event files.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TensorboardPlan {
    pub enabled: bool,
    /// Log the batch loss every this many steps; 0 is never.
    pub batch_every: usize,
    /// Log the weights' histograms every this many epochs; 0 is never.
    pub histogram_every: usize,
    /// Write the layer stack as a graph.
    pub graph: bool,
}

impl TensorboardPlan {
    /// Whether the weights' histograms are written at the end of `epoch`
    /// (counted from 0): every `histogram_every`-th epoch from the first, as
    /// Keras's `histogram_freq`.
    pub fn histograms_after(&self, epoch: usize) -> bool {
        self.enabled && self.histogram_every > 0 && epoch.is_multiple_of(self.histogram_every)
    }
}

impl CallbacksPlan {
    pub fn resolve(spec: &CallbacksSpec) -> CallbacksPlan {
        CallbacksPlan {
            early_stopping: spec.early_stopping.as_ref().map(EarlyStoppingPlan::resolve),
            checkpoint: CheckpointPlan::resolve(&spec.checkpoint),
            reduce_lr_on_plateau: spec
                .reduce_lr_on_plateau
                .as_ref()
                .map(ReduceLrPlan::resolve),
            terminate_on_nan: spec.terminate_on_nan,
            lr_schedule: spec.lr_schedule.as_ref().map(SchedulePlan::resolve),
            tensorboard: TensorboardPlan {
                enabled: spec.tensorboard.enabled,
                batch_every: spec.tensorboard.batch_every,
                histogram_every: spec.tensorboard.histogram_every,
                graph: spec.tensorboard.graph,
            },
        }
    }
}

impl EarlyStoppingPlan {
    fn resolve(s: &EarlyStoppingSpec) -> EarlyStoppingPlan {
        EarlyStoppingPlan {
            monitor: Monitor::new(&s.monitor, s.mode),
            patience: s.patience,
            min_delta: s.min_delta,
            baseline: s.baseline,
            start_from_epoch: s.start_from_epoch,
            restore_best_weights: s.restore_best_weights,
        }
    }
}

impl CheckpointPlan {
    fn resolve(s: &CheckpointSpec) -> CheckpointPlan {
        CheckpointPlan {
            monitor: Monitor::new(&s.monitor, s.mode),
            save_best_only: s.save_best_only,
            save_last: s.save_last,
            keep_last_n: s.keep_last_n,
        }
    }
}

impl ReduceLrPlan {
    fn resolve(s: &ReduceLrSpec) -> ReduceLrPlan {
        ReduceLrPlan {
            monitor: Monitor::new(&s.monitor, s.mode),
            factor: s.factor,
            patience: s.patience,
            min_delta: s.min_delta,
            cooldown: s.cooldown,
            min_lr: s.min_lr,
        }
    }
}

impl SchedulePlan {
    pub fn resolve(s: &LrScheduleSpec) -> SchedulePlan {
        match s {
            LrScheduleSpec::Constant(c) => SchedulePlan {
                warmup_epochs: c.warmup_epochs,
                shape: ScheduleShape::Constant,
            },
            LrScheduleSpec::Step(st) => SchedulePlan {
                warmup_epochs: st.warmup_epochs,
                shape: ScheduleShape::Step {
                    step_size: st.step_size,
                    gamma: st.gamma,
                },
            },
            LrScheduleSpec::Cosine(c) => SchedulePlan {
                warmup_epochs: c.warmup_epochs,
                shape: ScheduleShape::Cosine { min_lr: c.min_lr },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_modes_follow_keras() {
        assert!(Monitor::new("val_accuracy", Mode::Auto).maximize);
        assert!(!Monitor::new("val_loss", Mode::Auto).maximize);
        assert!(Monitor::new("val_loss", Mode::Max).maximize);
        let m = Monitor::new("val_loss", Mode::Min);
        assert!(m.improves(0.5, 0.6, 0.0));
        assert!(!m.improves(0.59, 0.6, 0.02));
        assert!(!m.improves(0.6, 0.6, 0.0));
    }

    /// The plan of a small experiment whose `[train]` table ends in `train`,
    /// or its errors, one message each.
    fn plan_with(train: &str) -> Result<TrainPlan, Vec<String>> {
        let text = format!(
            r#"[experiment]
name = "loss"

[data]
source = "synthetic"
classes = 3

[model]
input_shape = [8, 8, 1]
layers = [{{ type = "flatten" }}, {{ type = "dense", units = 3, activation = "softmax" }}]

[train]
epochs = 1
{train}
"#
        );
        let loaded = crate::config::load_text(
            std::path::Path::new("loss.toml"),
            &text,
            &crate::config::LoadOptions::default(),
        )
        .map_err(|e| vec![e.to_string()])?;
        crate::plan::plan(&loaded)
            .map(|p| p.train)
            .map_err(|e| e.errors.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn loss_options_resolve_with_keras_defaults() {
        let p = plan_with("").unwrap();
        assert_eq!(p.label_smoothing, 0.0);
        assert_eq!(p.class_weight, None);
        let p = plan_with("label_smoothing = 0.1\nclass_weight = \"balanced\"").unwrap();
        assert_eq!(p.label_smoothing, 0.1);
        assert_eq!(p.class_weight, Some(ClassWeights::Balanced));
        let p = plan_with("class_weight = { b = 3, a = 0.5 }").unwrap();
        let want: BTreeMap<String, f64> = [("a".to_string(), 0.5), ("b".to_string(), 3.0)].into();
        assert_eq!(p.class_weight, Some(ClassWeights::ByName(want)));
    }

    #[test]
    fn label_smoothing_outside_zero_to_one_is_rejected_with_its_key() {
        for bad in ["1.0", "-0.1"] {
            let errors = plan_with(&format!("label_smoothing = {bad}")).unwrap_err();
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(
                errors[0].starts_with("loss.toml:14:")
                    && errors[0].contains("`train.label_smoothing`: ")
                    && errors[0].contains("out of range"),
                "{errors:?}"
            );
        }
        assert!(plan_with("label_smoothing = 0.99").is_ok());
    }

    #[test]
    fn class_weights_must_be_positive_and_name_a_class() {
        for bad in ["0", "-2.0", "inf", "nan"] {
            let errors =
                plan_with(&format!("class_weight = {{ a = 1.0, b = {bad} }}")).unwrap_err();
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(
                errors[0].starts_with("loss.toml:14:")
                    && errors[0].contains("`train.class_weight.b`: "),
                "{bad}: {errors:?}"
            );
            // The config layers read NaN and infinity as no value
            // ("expected a number"); the others reach the range check.
            if !matches!(bad, "nan" | "inf") {
                assert!(errors[0].contains("greater than 0"), "{bad}: {errors:?}");
            }
        }
        let errors = plan_with("class_weight = {}").unwrap_err();
        assert!(
            errors[0].contains("`train.class_weight`: the table names no class"),
            "{errors:?}"
        );
        let errors = plan_with("class_weight = \"balance\"").unwrap_err();
        assert!(errors[0].contains("balanced"), "{errors:?}");
    }
}
