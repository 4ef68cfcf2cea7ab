//! Spec -> Plan: every cross-field check, shape inference, resolved
//! defaults. Everything downstream (model, data, trainer, sweeps) takes a
//! plan and never re-checks user input.

use std::path::{Path, PathBuf};

use crate::config::diagnostic::{did_you_mean, ConfigError};
use crate::config::spec::{
    Activation, BatchNormSpec, CallbacksSpec, Conv2dSpec, DataSpec, DenseSpec, DropoutSpec,
    ExperimentSpec, InitializerKind, LayerSpec, LrScheduleSpec, OptimizerSpec, Padding, Pair,
    PoolSpec,
};
use crate::config::{spec, KeyPath};
use crate::config::{Loaded, Sources};
use crate::device::DeviceRequest;

mod data;
mod init_from;
mod shape;
mod sweep;
mod train;

pub use data::{AugmentPlan, DataPlan, Holdout, Normalize, SourcePlan, SYNTHETIC_MAX_CLASSES};
pub use init_from::InitFromPlan;
pub use shape::{LayerShape, ParamCount, Shape, ShapeError};

pub use sweep::{
    all_hold, Condition, Distribution, EarlyStopPlan, GridAxis, LauncherError, LauncherPlan,
    RandomAxis, RandomCase, SlurmPlan, SweepPlan, TpePlan,
};
pub use train::{
    Algorithm, CallbacksPlan, CheckpointPlan, ClassWeights, Clipping, EarlyStoppingPlan, Monitor,
    OptimizerPlan, ReduceLrPlan, SchedulePlan, ScheduleShape, TensorboardPlan, TrainPlan,
};

/// A validated experiment.
#[derive(Debug, Clone)]
pub struct ExperimentPlan {
    pub name: String,
    pub seed: u64,
    pub description: String,
    pub device: DeviceRequest,
    pub threads: usize,
    pub runs_dir: PathBuf,
    /// Data source with every relative path made absolute.
    pub data: DataPlan,
    pub augment: AugmentPlan,
    pub model: ModelPlan,
    /// `model.init_from`: the weights a new run starts from.
    pub init_from: Option<InitFromPlan>,
    pub optimizer: OptimizerPlan,
    pub train: TrainPlan,
    pub callbacks: CallbacksPlan,
    pub sweep: Option<SweepPlan>,
    /// Metrics this experiment logs every epoch, e.g. `loss`, `val_accuracy`.
    pub metrics: Vec<String>,
    /// The resolved spec, as it will be written to `config.resolved.toml`.
    pub spec: ExperimentSpec,
}

/// The layer stack with names, shapes and parameter counts resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelPlan {
    /// Height, width, channels.
    pub input: [usize; 3],
    pub layers: Vec<LayerPlan>,
    pub num_classes: usize,
    /// The last layer's softmax is folded into the cross-entropy: the
    /// network outputs logits and probabilities come from a softmax at
    /// prediction time.
    pub folded_softmax: bool,
    pub initializer: InitializerKind,
}

impl ModelPlan {
    /// The key that sets how many classes the model scores: the last dense
    /// layer's `units` (`model.layers[7].units`).
    pub fn classes_key(&self) -> KeyPath {
        match self
            .layers
            .iter()
            .rposition(|l| matches!(l.kind, LayerKind::Dense { .. }))
        {
            Some(i) => KeyPath::parse("model.layers").index(i).key("units"),
            None => KeyPath::parse("model.layers"),
        }
    }

    /// Whether rows of a training batch interact (batch norm's statistics),
    /// so padding a short batch would change the result.
    pub fn mixes_rows(&self) -> bool {
        self.layers
            .iter()
            .any(|l| matches!(l.kind, LayerKind::BatchNorm { .. }))
    }

    pub fn params(&self) -> ParamCount {
        self.layers
            .iter()
            .fold(ParamCount::default(), |acc, l| ParamCount {
                trainable: acc.trainable + l.shape.params.trainable,
                non_trainable: acc.non_trainable + l.shape.params.non_trainable,
            })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LayerPlan {
    /// Keras-style name: `conv2d`, `conv2d_1`, ..., or the user's `name`.
    pub name: String,
    pub kind: LayerKind,
    /// Counts of a frozen layer (`trainable = false`) are all non-trainable.
    pub shape: LayerShape,
    /// `false`: the layer's parameters get no gradient and no optimizer state.
    pub trainable: bool,
}

/// One layer with every option resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum LayerKind {
    Conv2d {
        in_channels: usize,
        filters: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: Padding,
        activation: Activation,
        use_bias: bool,
    },
    MaxPool2d {
        pool: [usize; 2],
        stride: [usize; 2],
        padding: Padding,
    },
    AvgPool2d {
        pool: [usize; 2],
        stride: [usize; 2],
        padding: Padding,
    },
    GlobalAvgPool2d,
    Dropout {
        rate: f64,
    },
    Flatten,
    Dense {
        in_features: usize,
        units: usize,
        activation: Activation,
        use_bias: bool,
    },
    BatchNorm {
        features: usize,
        momentum: f64,
        epsilon: f64,
    },
    Activation(Activation),
}

impl LayerKind {
    /// The layer's options by the names of Keras's layer arguments
    /// (`filters`, `kernel_size`, `strides`, ...), as text: what TensorBoard's
    /// graph shows of a layer.
    pub fn options(&self) -> Vec<(&'static str, String)> {
        let pair = |[a, b]: [usize; 2]| format!("({a}, {b})");
        match self {
            LayerKind::Conv2d {
                filters,
                kernel,
                stride,
                padding,
                activation,
                use_bias,
                ..
            } => vec![
                ("filters", filters.to_string()),
                ("kernel_size", pair(*kernel)),
                ("strides", pair(*stride)),
                ("padding", padding.as_str().to_string()),
                ("activation", activation.as_str().to_string()),
                ("use_bias", use_bias.to_string()),
            ],
            LayerKind::MaxPool2d {
                pool,
                stride,
                padding,
            }
            | LayerKind::AvgPool2d {
                pool,
                stride,
                padding,
            } => vec![
                ("pool_size", pair(*pool)),
                ("strides", pair(*stride)),
                ("padding", padding.as_str().to_string()),
            ],
            LayerKind::Dropout { rate } => vec![("rate", rate.to_string())],
            LayerKind::Dense {
                units,
                activation,
                use_bias,
                ..
            } => vec![
                ("units", units.to_string()),
                ("activation", activation.as_str().to_string()),
                ("use_bias", use_bias.to_string()),
            ],
            LayerKind::BatchNorm {
                momentum, epsilon, ..
            } => vec![
                ("momentum", momentum.to_string()),
                ("epsilon", epsilon.to_string()),
            ],
            LayerKind::Activation(a) => vec![("activation", a.as_str().to_string())],
            LayerKind::GlobalAvgPool2d | LayerKind::Flatten => Vec::new(),
        }
    }

    /// Keras's class name, for the summary table.
    pub fn keras_class(&self) -> &'static str {
        match self {
            LayerKind::Conv2d { .. } => "Conv2D",
            LayerKind::MaxPool2d { .. } => "MaxPooling2D",
            LayerKind::AvgPool2d { .. } => "AveragePooling2D",
            LayerKind::GlobalAvgPool2d => "GlobalAveragePooling2D",
            LayerKind::Dropout { .. } => "Dropout",
            LayerKind::Flatten => "Flatten",
            LayerKind::Dense { .. } => "Dense",
            LayerKind::BatchNorm { .. } => "BatchNormalization",
            LayerKind::Activation(_) => "Activation",
        }
    }
}

/// Problems found while validating; all are reported at once.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{} problem(s) in {}", errors.len(), file.display())]
pub struct PlanErrors {
    pub file: PathBuf,
    #[related]
    pub errors: Vec<ConfigError>,
}

struct Checker<'a> {
    sources: &'a Sources,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    fn fail(&mut self, path: &str, message: impl Into<String>, help: Option<String>) {
        self.fail_at(KeyPath::parse(path), message, help);
    }

    fn fail_at(&mut self, path: KeyPath, message: impl Into<String>, help: Option<String>) {
        let message = format!("`{path}`: {}", message.into());
        self.errors.push(self.sources.error_at(path, message, help));
    }

    /// `lo <= value <= hi` (or `< hi` when `hi_open`).
    fn range(&mut self, path: &str, value: f64, lo: f64, hi: f64, hi_open: bool) {
        let ok = value.is_finite() && value >= lo && if hi_open { value < hi } else { value <= hi };
        if !ok {
            let upper = if hi.is_infinite() {
                String::new()
            } else if hi_open {
                format!(" and below {hi}")
            } else {
                format!(" and at most {hi}")
            };
            self.fail(
                path,
                format!("{value} is out of range: it must be at least {lo}{upper}"),
                None,
            );
        }
    }

    /// A count that memory or time cannot go beyond: `value <= max`.
    fn at_most(&mut self, path: &str, value: usize, max: usize, why: &str) {
        if value > max {
            self.fail(
                path,
                format!("{value} is out of range: it must be at most {max} ({why})"),
                None,
            );
        }
    }

    fn positive(&mut self, path: &str, value: f64) {
        if !(value.is_finite() && value > 0.0) {
            self.fail(
                path,
                format!("{value} is out of range: it must be greater than 0"),
                None,
            );
        }
    }
}

/// Validate a loaded experiment and infer its shapes.
pub fn plan(loaded: &Loaded) -> Result<ExperimentPlan, PlanErrors> {
    plan_with(loaded, true)
}

/// The plan of an existing run's `config.resolved.toml` (to resume,
/// evaluate, predict or export): its weights are in its own checkpoints, so
/// `model.init_from`, whose source may be gone, is kept as written but not
/// checked again (the plan's `init_from` is `None`).
pub fn plan_saved(loaded: &Loaded) -> Result<ExperimentPlan, PlanErrors> {
    plan_with(loaded, false)
}

fn plan_with(loaded: &Loaded, check_init_from: bool) -> Result<ExperimentPlan, PlanErrors> {
    let spec = &loaded.spec;
    let mut ck = Checker {
        sources: &loaded.sources,
        errors: Vec::new(),
    };
    let base = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));

    // experiment
    let name = &spec.experiment.name;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || name.starts_with('.')
    {
        ck.fail(
            "experiment.name",
            format!("`{name}` cannot name a run folder"),
            Some("use letters, digits, `-`, `_` and `.` only".into()),
        );
    }

    // runtime
    let device = match spec.runtime.device.parse::<DeviceRequest>() {
        Ok(d) => d,
        Err(e) => {
            ck.fail("runtime.device", e, None);
            DeviceRequest::Cpu
        }
    };

    // data
    let data = data::check_data(&mut ck, &spec.data, &base);
    let data_plan = DataPlan::resolve(&data);
    let has_validation = data_plan.has_validation();

    // model
    let model = check_model(&mut ck, spec);
    if let (Some(model), DataSpec::Synthetic(synth)) = (&model, &data) {
        let classes = synth.classes;
        if model.num_classes != classes {
            ck.fail(
                "data.classes",
                format!(
                    "the synthetic data has {classes} classes but the model ends in {} outputs",
                    model.num_classes
                ),
                Some("make the last dense layer's `units` equal the number of classes".into()),
            );
        }
    }
    if let Some(m) = &model {
        if let Some(norm) = &spec.augment.normalize {
            let c = m.input[2];
            if norm.mean.len() != c || norm.std.len() != c {
                ck.fail(
                    "augment.normalize",
                    format!(
                        "mean and std need one value per channel ({c}), found {} and {}",
                        norm.mean.len(),
                        norm.std.len()
                    ),
                    None,
                );
            }
        }
    }

    // model.init_from
    let init_from = match (&spec.model.init_from, &model) {
        (Some(path), Some(m)) if check_init_from => init_from::check(&mut ck, path, &base, m),
        _ => None,
    };
    let init_from_spec = match &init_from {
        Some(i) => Some(i.path.clone()),
        None => spec.model.init_from.clone(),
    };

    // augment
    let augment = data::check_augment(&mut ck, &spec.augment);

    // optimizer
    check_optimizer(&mut ck, &spec.optimizer);

    // train
    let t = &spec.train;
    if t.epochs == 0 {
        ck.fail("train.epochs", "must be at least 1", None);
    }
    ck.at_most(
        "train.epochs",
        t.epochs,
        MAX_EPOCHS,
        "a run that never ends",
    );
    if t.batch_size == 0 {
        ck.fail("train.batch_size", "must be at least 1", None);
    }
    ck.at_most(
        "train.batch_size",
        t.batch_size,
        MAX_BATCH_SIZE,
        "each batch is allocated whole",
    );
    if t.steps_per_epoch == Some(0) {
        ck.fail("train.steps_per_epoch", "must be at least 1 when set", None);
    }
    if t.validation_steps == Some(0) {
        ck.fail(
            "train.validation_steps",
            "must be at least 1 when set",
            None,
        );
    }
    train::check_loss(&mut ck, t);
    if let (Some(k), Some(m)) = (t.top_k, &model) {
        if k == 0 || k >= m.num_classes {
            ck.fail(
                "train.top_k",
                format!(
                    "{k} is out of range: it must be between 1 and {} (one less than the classes)",
                    m.num_classes.saturating_sub(1)
                ),
                None,
            );
        }
    }

    // metrics the loop produces, and everything that watches one
    let mut metrics = vec!["loss".to_string(), "accuracy".to_string()];
    if let Some(k) = t.top_k {
        metrics.push(format!("top{k}_accuracy"));
    }
    if has_validation {
        let val: Vec<String> = metrics.iter().map(|m| format!("val_{m}")).collect();
        metrics.extend(val);
    }
    // The checkpoint callback is always on; when its monitor was left at the
    // default and there is no validation data, it watches the training loss.
    let mut callbacks = spec.callbacks.clone();
    let monitor_path = KeyPath::parse("callbacks.checkpoint.monitor");
    if !has_validation && loaded.sources.origin(&monitor_path).is_default() {
        callbacks.checkpoint.monitor = "loss".into();
    }
    check_callbacks(&mut ck, &callbacks, &metrics, has_validation, t.epochs);
    let sweep = spec.sweep.as_ref().map(|s| {
        sweep::check_sweep(
            &mut ck,
            s,
            &metrics,
            has_validation,
            spec.experiment.seed,
            t.epochs,
        )
    });

    match (ck.errors.is_empty(), model) {
        (true, Some(model)) => Ok(ExperimentPlan {
            name: spec.experiment.name.clone(),
            seed: spec.experiment.seed,
            description: spec.experiment.description.clone(),
            device,
            threads: spec.runtime.threads,
            runs_dir: absolute(&base, &spec.runtime.runs_dir),
            data: data_plan,
            augment,
            model,
            init_from: init_from.clone(),
            optimizer: OptimizerPlan::resolve(&spec.optimizer),
            train: TrainPlan::resolve(&spec.train),
            callbacks: CallbacksPlan::resolve(&callbacks),
            sweep,
            metrics,
            spec: ExperimentSpec {
                data,
                callbacks,
                model: crate::config::spec::ModelSpec {
                    init_from: init_from_spec,
                    ..spec.model.clone()
                },
                ..spec.clone()
            },
        }),
        _ => Err(PlanErrors {
            file: loaded.sources.main_file().path.clone(),
            errors: ck.errors,
        }),
    }
}

fn absolute(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Upper bounds of count-like keys: far above any real use, low enough
/// that a typo fails validation instead of allocating or running forever.
pub const MAX_EPOCHS: usize = 1_000_000;
pub const MAX_BATCH_SIZE: usize = 1 << 20;
pub const MAX_PREFETCH: usize = 1024;
pub const MAX_TRIALS: usize = 100_000;
pub const MAX_PARALLEL: usize = 1024;
pub const MAX_SYNTHETIC_IMAGES: usize = 10_000_000;

fn check_optimizer(ck: &mut Checker, o: &OptimizerSpec) {
    let (lr, wd, clip_norm, clip_value) = match o {
        OptimizerSpec::Rmsprop(r) => {
            ck.range("optimizer.rho", r.rho, 0.0, 1.0, true);
            ck.range("optimizer.momentum", r.momentum, 0.0, 1.0, true);
            ck.positive("optimizer.epsilon", r.epsilon);
            (r.learning_rate, r.weight_decay, r.clip_norm, r.clip_value)
        }
        OptimizerSpec::Adam(a) => {
            ck.range("optimizer.beta_1", a.beta_1, 0.0, 1.0, true);
            ck.range("optimizer.beta_2", a.beta_2, 0.0, 1.0, true);
            ck.positive("optimizer.epsilon", a.epsilon);
            (a.learning_rate, a.weight_decay, a.clip_norm, a.clip_value)
        }
        OptimizerSpec::Adamw(a) => {
            ck.range("optimizer.beta_1", a.beta_1, 0.0, 1.0, true);
            ck.range("optimizer.beta_2", a.beta_2, 0.0, 1.0, true);
            ck.positive("optimizer.epsilon", a.epsilon);
            (a.learning_rate, a.weight_decay, a.clip_norm, a.clip_value)
        }
        OptimizerSpec::Sgd(g) => {
            ck.range("optimizer.momentum", g.momentum, 0.0, 1.0, true);
            if g.nesterov && g.momentum == 0.0 {
                ck.fail(
                    "optimizer.nesterov",
                    "Nesterov momentum needs `momentum` > 0",
                    None,
                );
            }
            (g.learning_rate, g.weight_decay, g.clip_norm, g.clip_value)
        }
    };
    ck.positive("optimizer.learning_rate", lr);
    ck.range("optimizer.weight_decay", wd, 0.0, f64::INFINITY, false);
    if let Some(c) = clip_norm {
        ck.positive("optimizer.clip_norm", c);
    }
    if let Some(c) = clip_value {
        ck.positive("optimizer.clip_value", c);
    }
    if clip_norm.is_some() && clip_value.is_some() {
        ck.fail(
            "optimizer.clip_value",
            "set either `clip_norm` or `clip_value`, not both",
            None,
        );
    }
}

fn check_monitor(
    ck: &mut Checker,
    path: &str,
    monitor: &str,
    metrics: &[String],
    has_validation: bool,
) {
    if metrics.iter().any(|m| m == monitor) {
        return;
    }
    let names: Vec<&str> = metrics.iter().map(String::as_str).collect();
    let mut help = did_you_mean(monitor, &names)
        .map(|h| format!("{h} "))
        .unwrap_or_default();
    help.push_str(&format!("this experiment produces: {}", names.join(", ")));
    let why = if monitor.starts_with("val_") && !has_validation {
        "it is a validation metric and this experiment has no validation data (set `data.validation_split`)".to_string()
    } else {
        "this experiment does not produce that metric".to_string()
    };
    ck.fail(
        path,
        format!("cannot monitor `{monitor}`: {why}"),
        Some(help),
    );
}

fn check_callbacks(
    ck: &mut Checker,
    c: &CallbacksSpec,
    metrics: &[String],
    has_validation: bool,
    epochs: usize,
) {
    if let Some(es) = &c.early_stopping {
        check_monitor(
            ck,
            "callbacks.early_stopping.monitor",
            &es.monitor,
            metrics,
            has_validation,
        );
        ck.range(
            "callbacks.early_stopping.min_delta",
            es.min_delta,
            0.0,
            f64::INFINITY,
            false,
        );
    }
    let cp = &c.checkpoint;
    check_monitor(
        ck,
        "callbacks.checkpoint.monitor",
        &cp.monitor,
        metrics,
        has_validation,
    );
    if cp.keep_last_n == Some(0) {
        ck.fail(
            "callbacks.checkpoint.keep_last_n",
            "must be at least 1 when set",
            None,
        );
    }
    if let Some(r) = &c.reduce_lr_on_plateau {
        check_monitor(
            ck,
            "callbacks.reduce_lr_on_plateau.monitor",
            &r.monitor,
            metrics,
            has_validation,
        );
        if !(r.factor > 0.0 && r.factor < 1.0) {
            ck.fail(
                "callbacks.reduce_lr_on_plateau.factor",
                format!(
                    "{} is out of range: it must be between 0 and 1 (exclusive)",
                    r.factor
                ),
                None,
            );
        }
        ck.range(
            "callbacks.reduce_lr_on_plateau.min_lr",
            r.min_lr,
            0.0,
            f64::INFINITY,
            false,
        );
        ck.range(
            "callbacks.reduce_lr_on_plateau.min_delta",
            r.min_delta,
            0.0,
            f64::INFINITY,
            false,
        );
    }
    if let Some(s) = &c.lr_schedule {
        let warmup = match s {
            LrScheduleSpec::Constant(c) => c.warmup_epochs,
            LrScheduleSpec::Step(st) => {
                if st.step_size == 0 {
                    ck.fail(
                        "callbacks.lr_schedule.step_size",
                        "must be at least 1",
                        None,
                    );
                }
                ck.positive("callbacks.lr_schedule.gamma", st.gamma);
                st.warmup_epochs
            }
            LrScheduleSpec::Cosine(c) => {
                ck.range(
                    "callbacks.lr_schedule.min_lr",
                    c.min_lr,
                    0.0,
                    f64::INFINITY,
                    false,
                );
                c.warmup_epochs
            }
        };
        if warmup >= epochs.max(1) {
            ck.fail(
                "callbacks.lr_schedule.warmup_epochs",
                format!("{warmup} warm-up epochs leave none of the {epochs} epochs to train at the full rate"),
                None,
            );
        }
    }
}

/// The help for a PyTorch-ordered `[channels, height, width]` shape.
fn channels_first_help([c, h, w]: [usize; 3]) -> Option<String> {
    matches!(c, 1 | 3).then(|| {
        format!(
            "`input_shape` is [height, width, channels], channels last as in Keras; \
             for PyTorch's [{c}, {h}, {w}] write [{h}, {w}, {c}]"
        )
    })
}

fn check_model(ck: &mut Checker, spec: &ExperimentSpec) -> Option<ModelPlan> {
    let m = &spec.model;
    let mut ok = true;
    for (i, v) in m.input_shape.iter().enumerate() {
        if *v == 0 {
            ck.fail_at(
                KeyPath::parse("model.input_shape").index(i),
                "every input dimension must be at least 1",
                None,
            );
            ok = false;
        }
    }
    if !matches!(m.input_shape[2], 1 | 3) {
        ck.fail(
            "model.input_shape",
            format!(
                "{} channels: images have 1 (grayscale) or 3 (RGB) channels",
                m.input_shape[2]
            ),
            channels_first_help(m.input_shape),
        );
        ok = false;
    }
    if let Some(d) = m.dropout {
        if !(0.0..1.0).contains(&d) {
            ck.fail(
                "model.dropout",
                format!("{d} is out of range: a dropout rate must be in [0, 1)"),
                None,
            );
            ok = false;
        }
    }
    if m.layers.is_empty() {
        ck.fail("model.layers", "the model has no layers", None);
        return None;
    }
    // Option checks per layer, before shapes.
    for (i, layer) in m.layers.iter().enumerate() {
        let at = |k: &str| KeyPath::parse("model.layers").index(i).key(k);
        let what = format!("layer {i} ({})", layer.type_name());
        match layer {
            LayerSpec::Conv2d(Conv2dSpec {
                filters,
                kernel,
                stride,
                ..
            }) => {
                if *filters == 0 {
                    ck.fail_at(
                        at("filters"),
                        format!("{what} needs at least 1 filter"),
                        None,
                    );
                    ok = false;
                }
                if kernel.0.contains(&0) {
                    ck.fail_at(
                        at("kernel"),
                        format!("{what}: a kernel size must be at least 1"),
                        None,
                    );
                    ok = false;
                }
                if stride.0.contains(&0) {
                    ck.fail_at(
                        at("stride"),
                        format!("{what}: a stride must be at least 1"),
                        None,
                    );
                    ok = false;
                }
            }
            LayerSpec::MaxPool2d(PoolSpec { pool, stride, .. })
            | LayerSpec::AvgPool2d(PoolSpec { pool, stride, .. }) => {
                if pool.0.contains(&0) {
                    ck.fail_at(
                        at("pool"),
                        format!("{what}: a pool size must be at least 1"),
                        None,
                    );
                    ok = false;
                }
                if stride.map(|Pair(s)| s.contains(&0)).unwrap_or(false) {
                    ck.fail_at(
                        at("stride"),
                        format!("{what}: a stride must be at least 1"),
                        None,
                    );
                    ok = false;
                }
            }
            LayerSpec::Dropout(d @ DropoutSpec { rate, .. }) => match dropout_rate(d, m.dropout) {
                Some(r) if (0.0..1.0).contains(&r) => {}
                // An inherited bad `model.dropout` was reported above.
                Some(_) if rate.is_none() => {}
                Some(r) => {
                    ck.fail_at(
                        at("rate"),
                        format!("{what}: {r} is out of range: a dropout rate must be in [0, 1)"),
                        None,
                    );
                    ok = false;
                }
                None => {
                    ck.fail_at(
                        KeyPath::parse("model.layers").index(i),
                        format!("{what} has no `rate` and `model.dropout` is not set"),
                        Some(
                            "set `rate` on the layer, or `model.dropout` for every dropout layer"
                                .into(),
                        ),
                    );
                    ok = false;
                }
            },
            LayerSpec::Dense(DenseSpec { units: 0, .. }) => {
                ck.fail_at(at("units"), format!("{what} needs at least 1 unit"), None);
                ok = false;
            }
            LayerSpec::BatchNorm(BatchNormSpec {
                momentum, epsilon, ..
            }) => {
                if !(0.0..1.0).contains(momentum) {
                    ck.fail_at(
                        at("momentum"),
                        format!("{what}: momentum {momentum} must be in [0, 1)"),
                        None,
                    );
                    ok = false;
                }
                if epsilon.is_nan() || *epsilon <= 0.0 {
                    ck.fail_at(
                        at("epsilon"),
                        format!("{what}: epsilon must be greater than 0"),
                        None,
                    );
                    ok = false;
                }
            }
            _ => {}
        }
    }
    if !ok {
        return None;
    }

    let shapes = match shape::infer(m.input_shape, &m.layers) {
        Ok(s) => s,
        Err(e) => {
            let layer_path = KeyPath::parse("model.layers").index(e.index);
            let out = match &m.layers[e.index] {
                LayerSpec::Conv2d(c) if c.padding == Padding::Valid => ", valid padding",
                _ => "",
            };
            ck.fail_at(
                layer_path,
                format!(
                    "layer {} ({}{out}) gets input {}: {}",
                    e.index, e.layer_type, e.input, e.reason
                ),
                e.help,
            );
            return None;
        }
    };

    // Names: Keras's scheme, unless the user names a layer.
    let all_names = spec::layer_names(m.layers.iter().map(|l| (l.type_name(), l.name())));
    let mut names = std::collections::BTreeSet::new();
    let mut layers = Vec::with_capacity(m.layers.len());
    for (i, ((layer, shape), name)) in m.layers.iter().zip(&shapes).zip(all_names).enumerate() {
        let kind = layer_kind(layer, shape, m.dropout);
        if !names.insert(name.clone()) {
            ck.fail_at(
                KeyPath::parse("model.layers").index(i).key("name"),
                format!("layer name `{name}` is used twice"),
                None,
            );
        }
        let trainable = layer.trainable();
        let mut shape = *shape;
        if !trainable {
            shape.params = ParamCount {
                trainable: 0,
                non_trainable: shape.params.total(),
            };
        }
        layers.push(LayerPlan {
            name,
            kind,
            shape,
            trainable,
        });
    }

    // The model must end in class scores.
    let last = shapes.last().map(|s| s.output);
    let Some(Shape::Flat(num_classes)) = last else {
        ck.fail(
            "model.layers",
            format!(
                "the model ends in a feature map {}; a classifier must end in a vector of class scores",
                last.map(|s| s.to_string()).unwrap_or_default()
            ),
            Some("end the stack with flatten (or global_avg_pool2d) and a dense layer with one unit per class".into()),
        );
        return None;
    };
    if num_classes < 2 {
        // At the last dense layer's `units`, where the count is written.
        let at = match m
            .layers
            .iter()
            .rposition(|l| matches!(l, LayerSpec::Dense(_)))
        {
            Some(i) => KeyPath::parse("model.layers").index(i).key("units"),
            None => KeyPath::parse("model.layers"),
        };
        ck.fail_at(
            at,
            format!("the model ends in {num_classes} output; a classifier needs one per class (at least 2)"),
            Some(
                "for two classes, end in { type = \"dense\", units = 2, activation = \"softmax\" }: \
                 the loss is categorical cross-entropy, so Keras's Dense(1, \"sigmoid\") with \
                 binary cross-entropy becomes two outputs"
                    .into(),
            ),
        );
        return None;
    }
    let folded_softmax = match final_activation(&layers) {
        Some(Activation::Softmax) => true,
        Some(Activation::Linear) | None => false,
        Some(other) => {
            let i = layers.len() - 1;
            ck.fail_at(
                KeyPath::parse("model.layers").index(i),
                format!(
                    "the model ends in a `{}` activation; the loss is categorical cross-entropy, which needs class scores",
                    other.as_str()
                ),
                Some("end with a dense layer with activation = \"softmax\" (or none, for logits)".into()),
            );
            return None;
        }
    };
    Some(ModelPlan {
        input: m.input_shape,
        layers,
        num_classes,
        folded_softmax,
        initializer: m.initializer,
    })
}

/// The activation applied by the last layer that has one (dense or activation).
fn final_activation(layers: &[LayerPlan]) -> Option<Activation> {
    match layers.last().map(|l| &l.kind) {
        Some(LayerKind::Dense { activation, .. }) => Some(*activation),
        Some(LayerKind::Activation(a)) => Some(*a),
        _ => None,
    }
}

/// A dropout layer's rate: its own, else the model's `dropout`.
fn dropout_rate(d: &DropoutSpec, model_dropout: Option<f64>) -> Option<f64> {
    d.rate.or(model_dropout)
}

fn layer_kind(layer: &LayerSpec, shape: &LayerShape, default_dropout: Option<f64>) -> LayerKind {
    let channels = |s: &Shape| match *s {
        Shape::Map { c, .. } => c,
        Shape::Flat(n) => n,
    };
    match layer {
        LayerSpec::Conv2d(c) => LayerKind::Conv2d {
            in_channels: channels(&shape.input),
            filters: c.filters,
            kernel: c.kernel.0,
            stride: c.stride.0,
            padding: c.padding,
            activation: c.activation,
            use_bias: c.use_bias,
        },
        LayerSpec::MaxPool2d(p) => LayerKind::MaxPool2d {
            pool: p.pool.0,
            stride: p.stride.unwrap_or(p.pool).0,
            padding: p.padding,
        },
        LayerSpec::AvgPool2d(p) => LayerKind::AvgPool2d {
            pool: p.pool.0,
            stride: p.stride.unwrap_or(p.pool).0,
            padding: p.padding,
        },
        LayerSpec::GlobalAvgPool2d(_) => LayerKind::GlobalAvgPool2d,
        LayerSpec::Dropout(d) => LayerKind::Dropout {
            rate: dropout_rate(d, default_dropout).unwrap_or(0.0),
        },
        LayerSpec::Flatten(_) => LayerKind::Flatten,
        LayerSpec::Dense(d) => LayerKind::Dense {
            in_features: shape.input.elements(),
            units: d.units,
            activation: d.activation,
            use_bias: d.use_bias,
        },
        LayerSpec::BatchNorm(b) => LayerKind::BatchNorm {
            features: channels(&shape.input),
            momentum: b.momentum,
            epsilon: b.epsilon,
        },
        LayerSpec::Activation(a) => LayerKind::Activation(a.activation),
    }
}
