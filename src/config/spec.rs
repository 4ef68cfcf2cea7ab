//! What the user writes: the serde `*Spec` types of an experiment file.
//!
//! Every struct denies unknown fields so a typo is an error, never a silently
//! ignored key. Defaults are the ones a Keras user expects; each one is listed
//! in `docs/config.md`. Cross-field checks and shape inference live in
//! [`crate::plan`], not here.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::tagged;

/// One experiment file after `extends` and overrides are applied.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSpec {
    /// Parent file this one extends. Consumed while loading; a resolved
    /// config never carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extends: Option<String>,
    pub experiment: MetaSpec,
    #[serde(default)]
    pub runtime: RuntimeSpec,
    pub data: DataSpec,
    #[serde(default)]
    pub augment: AugmentSpec,
    pub model: ModelSpec,
    #[serde(default)]
    pub optimizer: OptimizerSpec,
    #[serde(default)]
    pub train: TrainSpec,
    #[serde(default)]
    pub callbacks: CallbacksSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<SweepSpec>,
}

/// The names of the top-level tables, for environment-variable filtering.
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "extends",
    "experiment",
    "runtime",
    "data",
    "augment",
    "model",
    "optimizer",
    "train",
    "callbacks",
    "sweep",
];

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetaSpec {
    /// Names the folder under `runs/`; letters, digits, `-`, `_` and `.`.
    pub name: String,
    #[serde(default = "default_seed")]
    pub seed: u64,
    #[serde(default)]
    pub description: String,
}

fn default_seed() -> u64 {
    42
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSpec {
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    #[serde(default = "default_device")]
    pub device: String,
    /// CPU threads for compute and data loading; 0 means all cores.
    #[serde(default)]
    pub threads: usize,
    /// Where run folders are created.
    #[serde(default = "default_runs_dir")]
    pub runs_dir: PathBuf,
}

impl Default for RuntimeSpec {
    fn default() -> Self {
        Self {
            device: default_device(),
            threads: 0,
            runs_dir: default_runs_dir(),
        }
    }
}

fn default_device() -> String {
    "auto".into()
}

fn default_runs_dir() -> PathBuf {
    PathBuf::from("runs")
}

// ---------------------------------------------------------------- data

/// Where the images come from. `source` picks the variant.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum DataSpec {
    /// One sub-folder per class (Keras `flow_from_directory`).
    ImageFolder(ImageFolderSpec),
    /// The Food-101 layout: `images/<class>/<id>.jpg` and `meta/{train,test}.json`.
    Food101(Food101Spec),
    /// MNIST-format IDX files, gzip or plain (Fashion-MNIST).
    Idx(IdxSpec),
    /// A built-in, seeded set of drawn shapes; needs no files.
    Synthetic(SyntheticSpec),
}

tagged::tagged_enum!(DataSpec, "source", {
    ImageFolder(ImageFolderSpec) = "image_folder",
    Food101(Food101Spec) = "food101",
    Idx(IdxSpec) = "idx",
    Synthetic(SyntheticSpec) = "synthetic",
});

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImageFolderSpec {
    pub path: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<ClassSelect>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_split: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_path: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_path: Option<PathBuf>,
    #[serde(default)]
    pub interpolation: Interpolation,
    #[serde(default)]
    pub on_bad_image: BadImagePolicy,
    #[serde(default)]
    pub cache: bool,
    #[serde(default = "default_prefetch")]
    pub prefetch: usize,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Food101Spec {
    pub path: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<ClassSelect>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_split: Option<f64>,
    #[serde(default)]
    pub interpolation: Interpolation,
    #[serde(default)]
    pub on_bad_image: BadImagePolicy,
    #[serde(default)]
    pub cache: bool,
    #[serde(default = "default_prefetch")]
    pub prefetch: usize,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IdxSpec {
    pub path: PathBuf,
    #[serde(default = "default_idx_train_images")]
    pub train_images: String,
    #[serde(default = "default_idx_train_labels")]
    pub train_labels: String,
    #[serde(default = "default_idx_test_images")]
    pub test_images: String,
    #[serde(default = "default_idx_test_labels")]
    pub test_labels: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_names: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_split: Option<f64>,
    /// Validate on the test files every epoch (Keras's
    /// `validation_data=(x_test, y_test)`), instead of a held-out split.
    #[serde(default)]
    pub validate_on_test: bool,
    #[serde(default = "default_prefetch")]
    pub prefetch: usize,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticSpec {
    #[serde(default = "default_synthetic_classes")]
    pub classes: usize,
    #[serde(default = "default_synthetic_train")]
    pub train_size: usize,
    #[serde(default = "default_synthetic_validation")]
    pub validation_size: usize,
    #[serde(default = "default_synthetic_test")]
    pub test_size: usize,
    /// Standard deviation of the background noise, in [0, 1] units.
    #[serde(default = "default_synthetic_noise")]
    pub noise: f64,
    #[serde(default = "default_prefetch")]
    pub prefetch: usize,
}

fn default_prefetch() -> usize {
    4
}
fn default_idx_train_images() -> String {
    "train-images-idx3-ubyte.gz".into()
}
fn default_idx_train_labels() -> String {
    "train-labels-idx1-ubyte.gz".into()
}
fn default_idx_test_images() -> String {
    "t10k-images-idx3-ubyte.gz".into()
}
fn default_idx_test_labels() -> String {
    "t10k-labels-idx1-ubyte.gz".into()
}
fn default_synthetic_classes() -> usize {
    10
}
fn default_synthetic_train() -> usize {
    2000
}
fn default_synthetic_validation() -> usize {
    500
}
fn default_synthetic_test() -> usize {
    500
}
fn default_synthetic_noise() -> f64 {
    0.1
}

impl DataSpec {
    pub fn source_name(&self) -> &'static str {
        match self {
            DataSpec::ImageFolder(_) => "image_folder",
            DataSpec::Food101(_) => "food101",
            DataSpec::Idx(_) => "idx",
            DataSpec::Synthetic(_) => "synthetic",
        }
    }
}

/// Which classes to use: an explicit list, or the first N in sorted order.
#[derive(Debug, Clone, PartialEq)]
pub enum ClassSelect {
    First(usize),
    Names(Vec<String>),
}

impl Serialize for ClassSelect {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ClassSelect::First(n) => s.serialize_u64(*n as u64),
            ClassSelect::Names(names) => names.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for ClassSelect {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ClassSelect;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number of classes (the first N) or a list of class names")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(ClassSelect::First(v as usize))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                if v < 0 {
                    return Err(E::invalid_value(de::Unexpected::Signed(v), &self));
                }
                Ok(ClassSelect::First(v as usize))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut names = Vec::new();
                while let Some(n) = seq.next_element::<String>()? {
                    names.push(n);
                }
                Ok(ClassSelect::Names(names))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BadImagePolicy {
    #[default]
    Fail,
    Skip,
}

/// Resize filter. Keras's `flow_from_directory` uses nearest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Interpolation {
    #[default]
    Nearest,
    Bilinear,
    Bicubic,
    Lanczos,
}

// ---------------------------------------------------------------- augment

/// Preprocessing for every split (`rescale`, `normalize`) and random
/// augmentation for training batches only, with Keras `ImageDataGenerator`
/// meanings.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AugmentSpec {
    /// Multiply pixel values (0-255) by this; a number or a fraction like `"1/255"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rescale: Option<Number>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalize: Option<NormalizeSpec>,
    /// Degrees; a rotation is drawn uniformly from [-r, r].
    #[serde(default)]
    pub rotation_range: f64,
    /// Fraction of the width; a shift is drawn uniformly from [-w, w].
    #[serde(default)]
    pub width_shift_range: f64,
    #[serde(default)]
    pub height_shift_range: f64,
    /// `[lo, hi]`: a brightness factor drawn uniformly from this range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brightness_range: Option<[f64; 2]>,
    /// `z` means `[1 - z, 1 + z]`; a pair is used as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zoom_range: Option<ZoomRange>,
    /// Shear angle in degrees, drawn from [-s, s].
    #[serde(default)]
    pub shear_range: f64,
    #[serde(default)]
    pub horizontal_flip: bool,
    #[serde(default)]
    pub vertical_flip: bool,
    #[serde(default)]
    pub fill_mode: FillMode,
    /// Fill value for `fill_mode = "constant"`, in 0-255 pixel units.
    #[serde(default)]
    pub cval: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NormalizeSpec {
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FillMode {
    #[default]
    Nearest,
    Constant,
    Reflect,
    Wrap,
}

/// A float, or a fraction written as a string such as `"1/255"`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Number(pub f64);

impl Serialize for Number {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0)
    }
}

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Number;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or a fraction such as \"1/255\"")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Number, E> {
                Ok(Number(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Number, E> {
                Ok(Number(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Number, E> {
                Ok(Number(v as f64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Number, E> {
                parse_fraction(v)
                    .map(Number)
                    .ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }
        d.deserialize_any(V)
    }
}

fn parse_fraction(s: &str) -> Option<f64> {
    match s.split_once('/') {
        Some((a, b)) => {
            let a: f64 = a.trim().parse().ok()?;
            let b: f64 = b.trim().parse().ok()?;
            (b != 0.0).then_some(a / b)
        }
        None => s.trim().parse().ok(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ZoomRange {
    Symmetric(f64),
    Range([f64; 2]),
}

impl ZoomRange {
    /// The `[lo, hi]` interval zoom factors are drawn from.
    pub fn bounds(&self) -> [f64; 2] {
        match *self {
            ZoomRange::Symmetric(z) => [1.0 - z, 1.0 + z],
            ZoomRange::Range(r) => r,
        }
    }
}

impl Serialize for ZoomRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ZoomRange::Symmetric(z) => s.serialize_f64(*z),
            ZoomRange::Range(r) => r.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for ZoomRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ZoomRange;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number z (meaning [1-z, 1+z]) or a pair [lo, hi]")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ZoomRange, E> {
                Ok(ZoomRange::Symmetric(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ZoomRange, E> {
                Ok(ZoomRange::Symmetric(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ZoomRange, E> {
                Ok(ZoomRange::Symmetric(v as f64))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<ZoomRange, A::Error> {
                let pair = <[f64; 2]>::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                Ok(ZoomRange::Range(pair))
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------- model

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// `[height, width, channels]`, as Keras's `input_shape`.
    pub input_shape: [usize; 3],
    /// Rate for every `dropout` layer that does not set its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropout: Option<f64>,
    /// Weight initializer for conv and dense kernels (biases start at zero).
    #[serde(default)]
    pub initializer: InitializerKind,
    pub layers: Vec<LayerSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InitializerKind {
    /// Keras's default for Conv2D and Dense.
    #[default]
    GlorotUniform,
    GlorotNormal,
    HeUniform,
    HeNormal,
}

/// One entry of `model.layers`; `type` picks the variant.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LayerSpec {
    Conv2d(Conv2dSpec),
    MaxPool2d(PoolSpec),
    AvgPool2d(PoolSpec),
    GlobalAvgPool2d(NamedSpec),
    Dropout(DropoutSpec),
    Flatten(NamedSpec),
    Dense(DenseSpec),
    BatchNorm(BatchNormSpec),
    Activation(ActivationSpec),
}

tagged::tagged_enum!(LayerSpec, "type", {
    Conv2d(Conv2dSpec) = "conv2d",
    MaxPool2d(PoolSpec) = "max_pool2d",
    AvgPool2d(PoolSpec) = "avg_pool2d",
    GlobalAvgPool2d(NamedSpec) = "global_avg_pool2d",
    Dropout(DropoutSpec) = "dropout",
    Flatten(NamedSpec) = "flatten",
    Dense(DenseSpec) = "dense",
    BatchNorm(BatchNormSpec) = "batch_norm",
    Activation(ActivationSpec) = "activation",
});

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Conv2dSpec {
    pub filters: usize,
    pub kernel: Pair,
    #[serde(default = "Pair::one")]
    pub stride: Pair,
    #[serde(default)]
    pub padding: Padding,
    #[serde(default)]
    pub activation: Activation,
    #[serde(default = "yes")]
    pub use_bias: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    #[serde(default = "Pair::two")]
    pub pool: Pair,
    /// Defaults to the pool size, as in Keras.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stride: Option<Pair>,
    #[serde(default)]
    pub padding: Padding,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A layer whose only option is its name (flatten, global_avg_pool2d).
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NamedSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DropoutSpec {
    /// Falls back to `model.dropout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DenseSpec {
    pub units: usize,
    #[serde(default)]
    pub activation: Activation,
    #[serde(default = "yes")]
    pub use_bias: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BatchNormSpec {
    /// Keras meaning: moving = momentum * moving + (1 - momentum) * batch.
    #[serde(default = "default_bn_momentum")]
    pub momentum: f64,
    #[serde(default = "default_bn_epsilon")]
    pub epsilon: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ActivationSpec {
    pub activation: Activation,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

fn yes() -> bool {
    true
}
fn default_bn_momentum() -> f64 {
    0.99
}
fn default_bn_epsilon() -> f64 {
    1e-3
}

impl LayerSpec {
    /// The `type` value as written in the file.
    pub fn type_name(&self) -> &'static str {
        match self {
            LayerSpec::Conv2d(_) => "conv2d",
            LayerSpec::MaxPool2d(_) => "max_pool2d",
            LayerSpec::AvgPool2d(_) => "avg_pool2d",
            LayerSpec::GlobalAvgPool2d(_) => "global_avg_pool2d",
            LayerSpec::Dropout(_) => "dropout",
            LayerSpec::Flatten(_) => "flatten",
            LayerSpec::Dense(_) => "dense",
            LayerSpec::BatchNorm(_) => "batch_norm",
            LayerSpec::Activation(_) => "activation",
        }
    }

    pub fn name(&self) -> Option<&str> {
        match self {
            LayerSpec::Conv2d(Conv2dSpec { name, .. })
            | LayerSpec::MaxPool2d(PoolSpec { name, .. })
            | LayerSpec::AvgPool2d(PoolSpec { name, .. })
            | LayerSpec::GlobalAvgPool2d(NamedSpec { name })
            | LayerSpec::Dropout(DropoutSpec { name, .. })
            | LayerSpec::Flatten(NamedSpec { name })
            | LayerSpec::Dense(DenseSpec { name, .. })
            | LayerSpec::BatchNorm(BatchNormSpec { name, .. })
            | LayerSpec::Activation(ActivationSpec { name, .. }) => name.as_deref(),
        }
    }
}

/// An integer `k` (meaning `[k, k]`) or a pair `[h, w]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair(pub [usize; 2]);

impl Pair {
    pub fn one() -> Pair {
        Pair([1, 1])
    }
    pub fn two() -> Pair {
        Pair([2, 2])
    }
}

impl Serialize for Pair {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0[0] == self.0[1] {
            s.serialize_u64(self.0[0] as u64)
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Pair {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Pair;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a positive integer or a pair [height, width]")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Pair, E> {
                Ok(Pair([v as usize, v as usize]))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Pair, E> {
                if v < 0 {
                    return Err(E::invalid_value(de::Unexpected::Signed(v), &self));
                }
                Ok(Pair([v as usize, v as usize]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Pair, A::Error> {
                let h: usize = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let w: usize = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                if seq.next_element::<de::IgnoredAny>()?.is_some() {
                    return Err(de::Error::invalid_length(3, &self));
                }
                Ok(Pair([h, w]))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Padding {
    #[default]
    Valid,
    Same,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// No activation (Keras `None` / `"linear"`).
    #[default]
    Linear,
    Relu,
    Sigmoid,
    Tanh,
    Softmax,
    Gelu,
    /// Negative slope 0.2, as Keras's `activations.leaky_relu`.
    LeakyRelu,
}

impl Activation {
    pub fn as_str(&self) -> &'static str {
        match self {
            Activation::Linear => "linear",
            Activation::Relu => "relu",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Softmax => "softmax",
            Activation::Gelu => "gelu",
            Activation::LeakyRelu => "leaky_relu",
        }
    }
}

// ---------------------------------------------------------------- optimizer

/// The optimizer; `type` picks the variant. Defaults are Keras's.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OptimizerSpec {
    Rmsprop(RmspropSpec),
    Adam(AdamSpec),
    Adamw(AdamWSpec),
    Sgd(SgdSpec),
}

tagged::tagged_enum!(OptimizerSpec, "type", {
    Rmsprop(RmspropSpec) = "rmsprop",
    Adam(AdamSpec) = "adam",
    Adamw(AdamWSpec) = "adamw",
    Sgd(SgdSpec) = "sgd",
});

impl Default for OptimizerSpec {
    /// Keras's `compile()` default: RMSprop at 1e-3.
    fn default() -> Self {
        OptimizerSpec::Rmsprop(RmspropSpec {
            learning_rate: lr_1e3(),
            rho: rho_default(),
            momentum: 0.0,
            epsilon: eps_1e7(),
            centered: false,
            weight_decay: 0.0,
            clip_norm: None,
            clip_value: None,
        })
    }
}

impl OptimizerSpec {
    pub fn type_name(&self) -> &'static str {
        match self {
            OptimizerSpec::Rmsprop(_) => "rmsprop",
            OptimizerSpec::Adam(_) => "adam",
            OptimizerSpec::Adamw(_) => "adamw",
            OptimizerSpec::Sgd(_) => "sgd",
        }
    }

    pub fn learning_rate(&self) -> f64 {
        match self {
            OptimizerSpec::Rmsprop(o) => o.learning_rate,
            OptimizerSpec::Adam(o) => o.learning_rate,
            OptimizerSpec::Adamw(o) => o.learning_rate,
            OptimizerSpec::Sgd(o) => o.learning_rate,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RmspropSpec {
    #[serde(default = "lr_1e3")]
    pub learning_rate: f64,
    #[serde(default = "rho_default")]
    pub rho: f64,
    #[serde(default)]
    pub momentum: f64,
    #[serde(default = "eps_1e7")]
    pub epsilon: f64,
    #[serde(default)]
    pub centered: bool,
    #[serde(default)]
    pub weight_decay: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_norm: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_value: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdamSpec {
    #[serde(default = "lr_1e3")]
    pub learning_rate: f64,
    #[serde(default = "beta1_default")]
    pub beta_1: f64,
    #[serde(default = "beta2_default")]
    pub beta_2: f64,
    #[serde(default = "eps_1e7")]
    pub epsilon: f64,
    /// L2 penalty added to the gradient.
    #[serde(default)]
    pub weight_decay: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_norm: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_value: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdamWSpec {
    #[serde(default = "lr_1e3")]
    pub learning_rate: f64,
    #[serde(default = "beta1_default")]
    pub beta_1: f64,
    #[serde(default = "beta2_default")]
    pub beta_2: f64,
    #[serde(default = "eps_1e7")]
    pub epsilon: f64,
    /// Decoupled weight decay.
    #[serde(default = "adamw_wd")]
    pub weight_decay: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_norm: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_value: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SgdSpec {
    #[serde(default = "lr_1e2")]
    pub learning_rate: f64,
    #[serde(default)]
    pub momentum: f64,
    #[serde(default)]
    pub nesterov: bool,
    #[serde(default)]
    pub weight_decay: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_norm: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_value: Option<f64>,
}

fn lr_1e3() -> f64 {
    1e-3
}
fn lr_1e2() -> f64 {
    1e-2
}
fn rho_default() -> f64 {
    0.9
}
fn eps_1e7() -> f64 {
    1e-7
}
fn beta1_default() -> f64 {
    0.9
}
fn beta2_default() -> f64 {
    0.999
}
fn adamw_wd() -> f64 {
    0.004
}

// ---------------------------------------------------------------- train

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSpec {
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Cap on training batches per epoch (Keras `steps_per_epoch`); all when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps_per_epoch: Option<usize>,
    /// Cap on validation batches per epoch; all when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_steps: Option<usize>,
    /// Also track top-k accuracy (`top{k}_accuracy`) when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    #[serde(default = "yes")]
    pub shuffle: bool,
}

impl Default for TrainSpec {
    fn default() -> Self {
        Self {
            epochs: default_epochs(),
            batch_size: default_batch_size(),
            steps_per_epoch: None,
            validation_steps: None,
            top_k: None,
            shuffle: true,
        }
    }
}

fn default_epochs() -> usize {
    10
}
fn default_batch_size() -> usize {
    32
}

// ---------------------------------------------------------------- callbacks

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CallbacksSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<EarlyStoppingSpec>,
    #[serde(default)]
    pub checkpoint: CheckpointSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reduce_lr_on_plateau: Option<ReduceLrSpec>,
    #[serde(default = "yes")]
    pub terminate_on_nan: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr_schedule: Option<LrScheduleSpec>,
    #[serde(default)]
    pub tensorboard: TensorboardSpec,
}

impl Default for CallbacksSpec {
    fn default() -> Self {
        Self {
            early_stopping: None,
            checkpoint: CheckpointSpec::default(),
            reduce_lr_on_plateau: None,
            terminate_on_nan: true,
            lr_schedule: None,
            tensorboard: TensorboardSpec::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// `max` for accuracy-like metrics, `min` otherwise.
    #[default]
    Auto,
    Min,
    Max,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyStoppingSpec {
    #[serde(default = "default_monitor")]
    pub monitor: String,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub patience: usize,
    #[serde(default)]
    pub min_delta: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    #[serde(default)]
    pub start_from_epoch: usize,
    #[serde(default)]
    pub restore_best_weights: bool,
}

fn default_monitor() -> String {
    "val_loss".into()
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSpec {
    #[serde(default = "default_monitor")]
    pub monitor: String,
    #[serde(default)]
    pub mode: Mode,
    /// `best` is saved whenever the monitored metric improves. Unless this is
    /// true, a checkpoint of every epoch is kept as well (Keras's default).
    #[serde(default)]
    pub save_best_only: bool,
    /// Keep `last` (model, optimizer and loop state) after every epoch; needed for `--resume`.
    #[serde(default = "yes")]
    pub save_last: bool,
    /// How many per-epoch checkpoints to keep; all when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last_n: Option<usize>,
}

impl Default for CheckpointSpec {
    fn default() -> Self {
        Self {
            monitor: default_monitor(),
            mode: Mode::Auto,
            save_best_only: false,
            save_last: true,
            keep_last_n: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReduceLrSpec {
    #[serde(default = "default_monitor")]
    pub monitor: String,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default = "default_factor")]
    pub factor: f64,
    #[serde(default = "default_plateau_patience")]
    pub patience: usize,
    #[serde(default = "default_plateau_delta")]
    pub min_delta: f64,
    #[serde(default)]
    pub cooldown: usize,
    #[serde(default)]
    pub min_lr: f64,
}

fn default_factor() -> f64 {
    0.1
}
fn default_plateau_patience() -> usize {
    10
}
fn default_plateau_delta() -> f64 {
    1e-4
}

/// Learning rate as a function of the epoch; scales the optimizer's rate.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LrScheduleSpec {
    /// The base rate, after an optional linear warm-up.
    Constant(ConstantScheduleSpec),
    /// Multiply by `gamma` every `step_size` epochs.
    Step(StepScheduleSpec),
    /// Cosine decay from the base rate to `min_lr` over the epochs after warm-up.
    Cosine(CosineScheduleSpec),
}

tagged::tagged_enum!(LrScheduleSpec, "type", {
    Constant(ConstantScheduleSpec) = "constant",
    Step(StepScheduleSpec) = "step",
    Cosine(CosineScheduleSpec) = "cosine",
});

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConstantScheduleSpec {
    #[serde(default)]
    pub warmup_epochs: usize,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StepScheduleSpec {
    pub step_size: usize,
    #[serde(default = "default_factor")]
    pub gamma: f64,
    #[serde(default)]
    pub warmup_epochs: usize,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CosineScheduleSpec {
    #[serde(default)]
    pub min_lr: f64,
    #[serde(default)]
    pub warmup_epochs: usize,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TensorboardSpec {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Also write `batch_loss` / `batch_accuracy` every N training batches; 0 turns it off.
    #[serde(default)]
    pub batch_every: usize,
}

impl Default for TensorboardSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            batch_every: 0,
        }
    }
}

// ---------------------------------------------------------------- sweep

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    #[serde(default)]
    pub strategy: Strategy,
    #[serde(default = "default_sweep_metric")]
    pub metric: String,
    #[serde(default)]
    pub mode: Mode,
    /// Trials at once; default follows the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel: Option<usize>,
    /// Number of trials for `strategy = "random"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trials: Option<usize>,
    /// Seed for random sampling; defaults to `experiment.seed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Axes whose values are combined as a cartesian product.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub grid: BTreeMap<String, Vec<toml::Value>>,
    /// Axes that vary together (all lists the same length); one grid axis in all.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub zip: BTreeMap<String, Vec<toml::Value>>,
    /// Axes drawn from distributions (`strategy = "random"`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub random: BTreeMap<String, DistributionSpec>,
    #[serde(default)]
    pub launcher: LauncherSpec,
}

fn default_sweep_metric() -> String {
    "val_accuracy".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    #[default]
    Grid,
    Random,
}

/// How a random-search axis is drawn; `distribution` picks the variant.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "distribution", rename_all = "snake_case")]
pub enum DistributionSpec {
    Uniform(RangeSpec),
    LogUniform(RangeSpec),
    /// Integers from `low` to `high`, both included.
    Int(IntRangeSpec),
    Choice(ChoiceSpec),
}

tagged::tagged_enum!(DistributionSpec, "distribution", {
    Uniform(RangeSpec) = "uniform",
    LogUniform(RangeSpec) = "log_uniform",
    Int(IntRangeSpec) = "int",
    Choice(ChoiceSpec) = "choice",
});

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RangeSpec {
    pub low: f64,
    pub high: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IntRangeSpec {
    pub low: i64,
    pub high: i64,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChoiceSpec {
    pub values: Vec<toml::Value>,
}

/// Where sweep trials run; `type` picks the variant.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LauncherSpec {
    /// Child processes on this machine.
    Local(LocalLauncherSpec),
    /// A Slurm job array.
    Slurm(SlurmSpec),
}

tagged::tagged_enum!(LauncherSpec, "type", {
    Local(LocalLauncherSpec) = "local",
    Slurm(SlurmSpec) = "slurm",
});

impl Default for LauncherSpec {
    fn default() -> Self {
        LauncherSpec::Local(LocalLauncherSpec {})
    }
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LocalLauncherSpec {}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus_per_task: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gres: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<usize>,
    /// Seconds before the time limit at which trials get SIGUSR1 to checkpoint.
    #[serde(default = "default_signal_seconds")]
    pub signal_seconds: u64,
    /// Extra `#SBATCH` lines, passed through verbatim.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<String>,
}

fn default_signal_seconds() -> u64 {
    120
}

impl Default for SlurmSpec {
    fn default() -> Self {
        SlurmSpec {
            partition: None,
            time: None,
            cpus_per_task: None,
            mem: None,
            gres: None,
            account: None,
            max_parallel: None,
            signal_seconds: default_signal_seconds(),
            extra: Vec::new(),
        }
    }
}
