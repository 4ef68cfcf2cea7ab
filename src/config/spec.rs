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
pub use crate::vocab::{
    Activation, BadImagePolicy, ClassSelect, FillMode, HalvingVariant, InitializerKind,
    Interpolation, Mode, Padding, Strategy,
};

/// One experiment file after `extends` and overrides are applied.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSpec {
    /// Parent file this one extends, relative to this one. Consumed while
    /// loading; a resolved config never carries it. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extends: Option<String>,
    /// `[experiment]`: the run's name, seed and description. Required.
    pub experiment: MetaSpec,
    /// `[runtime]`: device, threads and where runs go. Default: every key's default.
    #[serde(default)]
    pub runtime: RuntimeSpec,
    /// `[data]`: where the images come from. Required.
    pub data: DataSpec,
    /// `[augment]`: preprocessing and training-time augmentation. Default: none of either.
    #[serde(default)]
    pub augment: AugmentSpec,
    /// `[model]`: the input shape and the layer stack. Required.
    pub model: ModelSpec,
    /// `[optimizer]`: the optimizer and its settings. Default: RMSprop with Keras's defaults.
    #[serde(default)]
    pub optimizer: OptimizerSpec,
    /// `[train]`: epochs, batch size and what an epoch covers. Default: every key's default.
    #[serde(default)]
    pub train: TrainSpec,
    /// `[callbacks]`: early stopping, checkpoints, rate schedules, TensorBoard.
    /// Default: every key's default.
    #[serde(default)]
    pub callbacks: CallbacksSpec,
    /// `[sweep]`: the trials `runner sweep` runs; ignored by `runner run`. Default: none.
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

/// `[experiment]`: what the run is called and how it is seeded.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetaSpec {
    /// Names the folder under `runs/`; letters, digits, `-`, `_` and `.`. Required.
    pub name: String,
    /// Seeds weight initialisation, dropout, shuffling, augmentation and data
    /// splits. Default: `42`.
    #[serde(default = "default_experiment_seed")]
    pub seed: u64,
    /// Free text, kept in the run folder. Default: `""`.
    #[serde(default)]
    pub description: String,
}

fn default_experiment_seed() -> u64 {
    42
}

/// `[runtime]`: where and how the run computes; not part of the model.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSpec {
    /// `auto`, `cpu`, `cuda`, `cuda:N` or `wgpu`; `--device` overrides it.
    /// Default: `"auto"`.
    #[serde(default = "default_runtime_device")]
    pub device: String,
    /// CPU threads for compute and data loading; 0 means all cores. Default: `0`.
    #[serde(default)]
    pub threads: usize,
    /// Where run folders are created, relative to the working directory.
    /// Default: `"runs"`.
    #[serde(default = "default_runtime_runs_dir")]
    pub runs_dir: PathBuf,
}

impl Default for RuntimeSpec {
    fn default() -> Self {
        Self {
            device: default_runtime_device(),
            threads: 0,
            runs_dir: default_runtime_runs_dir(),
        }
    }
}

fn default_runtime_device() -> String {
    "auto".into()
}

fn default_runtime_runs_dir() -> PathBuf {
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

/// `source = "image_folder"`: one sub-folder per class.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImageFolderSpec {
    /// Training folder: one sub-folder per class, class names sorted, images
    /// found recursively. Required.
    pub path: PathBuf,
    /// A list of class names, or N for the first N classes in sorted order.
    /// Default: all classes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<ClassSelect>,
    /// Fraction in (0, 1) held out for validation, stratified and seeded.
    /// Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_split: Option<f64>,
    /// A separate validation folder instead of a split. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_path: Option<PathBuf>,
    /// A test folder for the final evaluation. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_path: Option<PathBuf>,
    /// Resize filter. Default: `"nearest"`.
    #[serde(default)]
    pub interpolation: Interpolation,
    /// What to do with a file that cannot be decoded. Default: `"fail"`.
    #[serde(default)]
    pub on_bad_image: BadImagePolicy,
    /// Keep decoded images in memory after the first epoch. Default: `false`.
    #[serde(default)]
    pub cache: bool,
    /// Batches prepared ahead of the trainer, 1 to 1024. Default: `4`.
    #[serde(default = "default_data_prefetch")]
    pub prefetch: usize,
}

/// `source = "food101"`: the Food-101 layout, read in place.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Food101Spec {
    /// The dataset root, holding `images/` and `meta/`. Required.
    pub path: PathBuf,
    /// A list of class names, or N for the first N classes in sorted order.
    /// Default: all classes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<ClassSelect>,
    /// Fraction of the training list held out for validation. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_split: Option<f64>,
    /// Resize filter. Default: `"nearest"`.
    #[serde(default)]
    pub interpolation: Interpolation,
    /// What to do with a file that cannot be decoded. Default: `"fail"`.
    #[serde(default)]
    pub on_bad_image: BadImagePolicy,
    /// Keep decoded images in memory after the first epoch. Default: `false`.
    #[serde(default)]
    pub cache: bool,
    /// Batches prepared ahead of the trainer, 1 to 1024. Default: `4`.
    #[serde(default = "default_data_prefetch")]
    pub prefetch: usize,
}

/// `source = "idx"`: MNIST-format IDX files.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IdxSpec {
    /// Folder with the IDX files, gzip or plain. Required.
    pub path: PathBuf,
    /// Training images file, in `path`. Default: `"train-images-idx3-ubyte.gz"`.
    #[serde(default = "default_idx_train_images")]
    pub train_images: String,
    /// Training labels file, in `path`. Default: `"train-labels-idx1-ubyte.gz"`.
    #[serde(default = "default_idx_train_labels")]
    pub train_labels: String,
    /// Test images file, in `path`. Default: `"t10k-images-idx3-ubyte.gz"`.
    #[serde(default = "default_idx_test_images")]
    pub test_images: String,
    /// Test labels file, in `path`. Default: `"t10k-labels-idx1-ubyte.gz"`.
    #[serde(default = "default_idx_test_labels")]
    pub test_labels: String,
    /// Names for the labels, in label order. Default: none (the labels are
    /// named `0`, `1`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_names: Option<Vec<String>>,
    /// Fraction of the training set held out (stratified, seeded). Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_split: Option<f64>,
    /// Validate on the test files every epoch (Keras's
    /// `validation_data=(x_test, y_test)`), instead of a held-out split.
    /// Default: `false`.
    #[serde(default)]
    pub validate_on_test: bool,
    /// Batches prepared ahead of the trainer, 1 to 1024. Default: `4`.
    #[serde(default = "default_data_prefetch")]
    pub prefetch: usize,
}

/// `source = "synthetic"`: drawn shapes, no files.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticSpec {
    /// Number of shape classes, 2 to 12. Default: `10`.
    #[serde(default = "default_synthetic_classes")]
    pub classes: usize,
    /// Training images. Default: `2000`.
    #[serde(default = "default_synthetic_train_size")]
    pub train_size: usize,
    /// Validation images; 0 for no validation data. Default: `500`.
    #[serde(default = "default_synthetic_validation_size")]
    pub validation_size: usize,
    /// Test images. Default: `500`.
    #[serde(default = "default_synthetic_test_size")]
    pub test_size: usize,
    /// Standard deviation of the background noise, in [0, 1] units. Default: `0.1`.
    #[serde(default = "default_synthetic_noise")]
    pub noise: f64,
    /// Batches prepared ahead of the trainer, 1 to 1024. Default: `4`.
    #[serde(default = "default_data_prefetch")]
    pub prefetch: usize,
}

/// Shared by every data source.
fn default_data_prefetch() -> usize {
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
fn default_synthetic_train_size() -> usize {
    2000
}
fn default_synthetic_validation_size() -> usize {
    500
}
fn default_synthetic_test_size() -> usize {
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

// ---------------------------------------------------------------- augment

/// Preprocessing for every split (`rescale`, `normalize`) and random
/// augmentation for training batches only, with Keras `ImageDataGenerator`
/// meanings.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AugmentSpec {
    /// Multiply pixel values (0-255) by this; a number or a fraction like
    /// `"1/255"`. Default: none (the values are kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rescale: Option<Number>,
    /// Per-channel `(x - mean) / std`, applied after `rescale`. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalize: Option<NormalizeSpec>,
    /// Degrees; a rotation is drawn uniformly from [-r, r]. Default: `0`.
    #[serde(default)]
    pub rotation_range: f64,
    /// Fraction of the width; a shift is drawn uniformly from [-w, w]. Default: `0`.
    #[serde(default)]
    pub width_shift_range: f64,
    /// Fraction of the height; a shift is drawn uniformly from [-h, h]. Default: `0`.
    #[serde(default)]
    pub height_shift_range: f64,
    /// `[lo, hi]`: a brightness factor drawn uniformly from this range. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brightness_range: Option<[f64; 2]>,
    /// `z` means `[1 - z, 1 + z]`; a pair is used as given. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zoom_range: Option<ZoomRange>,
    /// Shear angle in degrees, drawn from [-s, s]. Default: `0`.
    #[serde(default)]
    pub shear_range: f64,
    /// Flip left-right with probability 0.5. Default: `false`.
    #[serde(default)]
    pub horizontal_flip: bool,
    /// Flip top-bottom with probability 0.5. Default: `false`.
    #[serde(default)]
    pub vertical_flip: bool,
    /// How pixels outside the image are filled after a transform. Default: `"nearest"`.
    #[serde(default)]
    pub fill_mode: FillMode,
    /// Fill value for `fill_mode = "constant"`, in 0-255 pixel units. Default: `0`.
    #[serde(default)]
    pub cval: f64,
}

/// `augment.normalize`: `(x - mean) / std` per channel.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NormalizeSpec {
    /// One mean per channel. Required.
    pub mean: Vec<f64>,
    /// One standard deviation per channel. Required.
    pub std: Vec<f64>,
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

/// `zoom_range`: a number or a pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ZoomRange {
    /// `z`, meaning `[1 - z, 1 + z]`.
    Symmetric(f64),
    /// `[lo, hi]`, used as given.
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

/// `[model]`: the network, as a Keras `Sequential` stack.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// `[height, width, channels]`, as Keras's `input_shape`; channels 1 or 3. Required.
    pub input_shape: [usize; 3],
    /// Rate for every `dropout` layer that does not set its own. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropout: Option<f64>,
    /// Weight initializer for conv and dense kernels (biases start at zero).
    /// Default: `"glorot_uniform"`.
    #[serde(default)]
    pub initializer: InitializerKind,
    /// The ordered layer list, `{ type = "...", ... }` each. Required.
    pub layers: Vec<LayerSpec>,
    /// Start from another run's weights: a run folder (its `final`
    /// checkpoint), `runs/<name>/latest`, or a checkpoint folder holding
    /// `model.mpk`. Layers are matched by name; a resumed run ignores it.
    /// Default: none (fresh weights).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_from: Option<PathBuf>,
}

/// One entry of `model.layers`; `type` picks the variant.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LayerSpec {
    /// `conv2d`: a 2-D convolution (Keras `Conv2D`).
    Conv2d(Conv2dSpec),
    /// `max_pool2d`: max pooling (Keras `MaxPooling2D`).
    MaxPool2d(PoolSpec),
    /// `avg_pool2d`: average pooling; padding is not counted (Keras `AveragePooling2D`).
    AvgPool2d(PoolSpec),
    /// `global_avg_pool2d`: the mean of each channel (Keras `GlobalAveragePooling2D`).
    GlobalAvgPool2d(NamedSpec),
    /// `dropout`: drops inputs with probability `rate` while training.
    Dropout(DropoutSpec),
    /// `flatten`: a feature map to a vector.
    Flatten(NamedSpec),
    /// `dense`: a fully connected layer (Keras `Dense`).
    Dense(DenseSpec),
    /// `batch_norm`: batch normalisation over channels or features.
    BatchNorm(BatchNormSpec),
    /// `activation`: an activation function on its own.
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

/// `type = "conv2d"`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Conv2dSpec {
    /// Output channels. Required.
    pub filters: usize,
    /// Kernel size: `3` or `[3, 5]`. Required.
    pub kernel: Pair,
    /// Stride: `k` or `[h, w]`. Default: `1`.
    #[serde(default = "default_conv2d_stride")]
    pub stride: Pair,
    /// `valid` or `same` (TensorFlow's rule). Default: `"valid"`.
    #[serde(default)]
    pub padding: Padding,
    /// Applied to the output. Default: `"linear"` (none).
    #[serde(default)]
    pub activation: Activation,
    /// Add a bias per filter. Default: `true`.
    #[serde(default = "default_true")]
    pub use_bias: bool,
    /// Whether the layer's weights learn; `false` freezes them (a frozen
    /// batch_norm also keeps its moving statistics). Default: `true`.
    #[serde(default = "default_true")]
    pub trainable: bool,
    /// The layer's name. Default: none (Keras's `conv2d`, `conv2d_1`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `type = "max_pool2d"` and `type = "avg_pool2d"`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    /// Pool size: `k` or `[h, w]`. Default: `2`.
    #[serde(default = "default_pool2d_pool")]
    pub pool: Pair,
    /// Stride: `k` or `[h, w]`. Default: none (the pool size, as in Keras).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stride: Option<Pair>,
    /// `valid` or `same`. Default: `"valid"`.
    #[serde(default)]
    pub padding: Padding,
    /// The layer's name. Default: none (Keras's naming).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A layer whose only option is its name (flatten, global_avg_pool2d).
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NamedSpec {
    /// The layer's name. Default: none (Keras's naming).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `type = "dropout"`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DropoutSpec {
    /// Probability of dropping an input. Default: none (`model.dropout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// The layer's name. Default: none (Keras's naming).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `type = "dense"`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DenseSpec {
    /// Output features. Required.
    pub units: usize,
    /// Applied to the output. Default: `"linear"` (none).
    #[serde(default)]
    pub activation: Activation,
    /// Add a bias per unit. Default: `true`.
    #[serde(default = "default_true")]
    pub use_bias: bool,
    /// Whether the layer's weights learn; `false` freezes them (a frozen
    /// batch_norm also keeps its moving statistics). Default: `true`.
    #[serde(default = "default_true")]
    pub trainable: bool,
    /// The layer's name. Default: none (Keras's naming).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `type = "batch_norm"`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BatchNormSpec {
    /// Keras meaning: moving = momentum * moving + (1 - momentum) * batch.
    /// Default: `0.99`.
    #[serde(default = "default_batch_norm_momentum")]
    pub momentum: f64,
    /// Added to the variance before the square root. Default: `1e-3`.
    #[serde(default = "default_batch_norm_epsilon")]
    pub epsilon: f64,
    /// Whether the layer's weights learn; `false` freezes them (a frozen
    /// batch_norm also keeps its moving statistics). Default: `true`.
    #[serde(default = "default_true")]
    pub trainable: bool,
    /// The layer's name. Default: none (Keras's naming).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `type = "activation"`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ActivationSpec {
    /// The function to apply. Required.
    pub activation: Activation,
    /// The layer's name. Default: none (Keras's naming).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Shared by every boolean key whose default is `true`.
fn default_true() -> bool {
    true
}
fn default_conv2d_stride() -> Pair {
    Pair([1, 1])
}
/// Shared by `max_pool2d` and `avg_pool2d`.
fn default_pool2d_pool() -> Pair {
    Pair([2, 2])
}
fn default_batch_norm_momentum() -> f64 {
    0.99
}
fn default_batch_norm_epsilon() -> f64 {
    1e-3
}

impl LayerSpec {
    /// The layer's `trainable` (always `true` for a layer without weights).
    pub fn trainable(&self) -> bool {
        match self {
            LayerSpec::Conv2d(Conv2dSpec { trainable, .. })
            | LayerSpec::Dense(DenseSpec { trainable, .. })
            | LayerSpec::BatchNorm(BatchNormSpec { trainable, .. }) => *trainable,
            _ => true,
        }
    }

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

/// Keras's base name for layers of type `layer_type`, from which an unnamed
/// layer gets its name (`max_pool2d` layers are `max_pooling2d`,
/// `max_pooling2d_1`, ...); the type itself for any other.
pub fn keras_base_name(layer_type: &str) -> &str {
    match layer_type {
        "max_pool2d" => "max_pooling2d",
        "avg_pool2d" => "average_pooling2d",
        "global_avg_pool2d" => "global_average_pooling2d",
        "batch_norm" => "batch_normalization",
        other => other,
    }
}

/// The layers' names, given each layer's (`type`, `name`): its own `name`,
/// else Keras's scheme, its type's [`keras_base_name`] numbered from the
/// second layer of that type on (`conv2d`, `conv2d_1`, ...). A layer with
/// its own name still takes a number of its type.
pub fn layer_names<'a>(
    layers: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> Vec<String> {
    let mut counters = BTreeMap::<&str, usize>::new();
    layers
        .into_iter()
        .map(|(layer_type, name)| {
            let base = keras_base_name(layer_type);
            let n = counters.entry(base).or_insert(0);
            let auto = match *n {
                0 => base.to_string(),
                n => format!("{base}_{n}"),
            };
            *n += 1;
            name.map_or(auto, str::to_string)
        })
        .collect()
}

/// An integer `k` (meaning `[k, k]`) or a pair `[h, w]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair(
    /// `[height, width]`.
    pub [usize; 2],
);

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

// ---------------------------------------------------------------- optimizer

/// The optimizer; `type` picks the variant. Defaults are Keras's.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OptimizerSpec {
    /// `rmsprop`: Keras's `RMSprop`. The default.
    Rmsprop(RmspropSpec),
    /// `adam`: Keras's `Adam`, with weight decay as an L2 term.
    Adam(AdamSpec),
    /// `adamw`: Keras's `AdamW`, with decoupled weight decay.
    Adamw(AdamWSpec),
    /// `sgd`: Keras's `SGD`, with optional (Nesterov) momentum.
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
            learning_rate: default_optimizer_learning_rate(),
            rho: default_rmsprop_rho(),
            momentum: 0.0,
            epsilon: default_optimizer_epsilon(),
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

/// `type = "rmsprop"`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RmspropSpec {
    /// The base learning rate. Default: `0.001`.
    #[serde(default = "default_optimizer_learning_rate")]
    pub learning_rate: f64,
    /// Decay of the moving average of squared gradients. Default: `0.9`.
    #[serde(default = "default_rmsprop_rho")]
    pub rho: f64,
    /// Momentum. Default: `0`.
    #[serde(default)]
    pub momentum: f64,
    /// Added to the denominator for numerical stability. Default: `1e-7`.
    #[serde(default = "default_optimizer_epsilon")]
    pub epsilon: f64,
    /// Divide by the gradient's estimated variance rather than its second
    /// moment. Default: `false`.
    #[serde(default)]
    pub centered: bool,
    /// L2 penalty added to the gradient. Default: `0`.
    #[serde(default)]
    pub weight_decay: f64,
    /// Clip each gradient's norm to this. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_norm: Option<f64>,
    /// Clip each gradient element to [-v, v]. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_value: Option<f64>,
}

/// `type = "adam"`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdamSpec {
    /// The base learning rate. Default: `0.001`.
    #[serde(default = "default_optimizer_learning_rate")]
    pub learning_rate: f64,
    /// Decay of the first-moment estimate. Default: `0.9`.
    #[serde(default = "default_adam_beta_1")]
    pub beta_1: f64,
    /// Decay of the second-moment estimate. Default: `0.999`.
    #[serde(default = "default_adam_beta_2")]
    pub beta_2: f64,
    /// Added to the denominator for numerical stability. Default: `1e-7`.
    #[serde(default = "default_optimizer_epsilon")]
    pub epsilon: f64,
    /// L2 penalty added to the gradient. Default: `0`.
    #[serde(default)]
    pub weight_decay: f64,
    /// Clip each gradient's norm to this. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_norm: Option<f64>,
    /// Clip each gradient element to [-v, v]. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_value: Option<f64>,
}

/// `type = "adamw"`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdamWSpec {
    /// The base learning rate. Default: `0.001`.
    #[serde(default = "default_optimizer_learning_rate")]
    pub learning_rate: f64,
    /// Decay of the first-moment estimate. Default: `0.9`.
    #[serde(default = "default_adam_beta_1")]
    pub beta_1: f64,
    /// Decay of the second-moment estimate. Default: `0.999`.
    #[serde(default = "default_adam_beta_2")]
    pub beta_2: f64,
    /// Added to the denominator for numerical stability. Default: `1e-7`.
    #[serde(default = "default_optimizer_epsilon")]
    pub epsilon: f64,
    /// Decoupled weight decay. Default: `0.004`.
    #[serde(default = "default_adamw_weight_decay")]
    pub weight_decay: f64,
    /// Clip each gradient's norm to this. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_norm: Option<f64>,
    /// Clip each gradient element to [-v, v]. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_value: Option<f64>,
}

/// `type = "sgd"`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SgdSpec {
    /// The base learning rate. Default: `0.01`.
    #[serde(default = "default_sgd_learning_rate")]
    pub learning_rate: f64,
    /// Momentum, without dampening. Default: `0`.
    #[serde(default)]
    pub momentum: f64,
    /// Nesterov momentum. Default: `false`.
    #[serde(default)]
    pub nesterov: bool,
    /// L2 penalty added to the gradient. Default: `0`.
    #[serde(default)]
    pub weight_decay: f64,
    /// Clip each gradient's norm to this. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_norm: Option<f64>,
    /// Clip each gradient element to [-v, v]. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_value: Option<f64>,
}

/// Shared by `rmsprop`, `adam` and `adamw` (Keras's default rate).
fn default_optimizer_learning_rate() -> f64 {
    1e-3
}
/// Shared by `rmsprop`, `adam` and `adamw`.
fn default_optimizer_epsilon() -> f64 {
    1e-7
}
fn default_rmsprop_rho() -> f64 {
    0.9
}
/// Shared by `adam` and `adamw`.
fn default_adam_beta_1() -> f64 {
    0.9
}
/// Shared by `adam` and `adamw`.
fn default_adam_beta_2() -> f64 {
    0.999
}
fn default_adamw_weight_decay() -> f64 {
    0.004
}
fn default_sgd_learning_rate() -> f64 {
    1e-2
}

// ---------------------------------------------------------------- train

/// `[train]`: the training loop.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSpec {
    /// Epochs to train, 1 to 1,000,000. Default: `10`.
    #[serde(default = "default_train_epochs")]
    pub epochs: usize,
    /// Images per batch, 1 to 1,048,576; the last batch may be smaller. Default: `32`.
    #[serde(default = "default_train_batch_size")]
    pub batch_size: usize,
    /// Cap on training batches per epoch (Keras `steps_per_epoch`). Default: none (all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps_per_epoch: Option<usize>,
    /// Cap on validation batches per epoch. Default: none (all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_steps: Option<usize>,
    /// Also track top-k accuracy (`top{k}_accuracy`) when set. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    /// Reshuffle the training set every epoch. Default: `true`.
    #[serde(default = "default_true")]
    pub shuffle: bool,
    /// Label smoothing ε in [0, 1): the cross-entropy's target becomes
    /// (1 - ε)·onehot + ε/K for K classes (Keras's `label_smoothing`), in the
    /// training and the validation loss. Default: `0`.
    #[serde(default)]
    pub label_smoothing: f64,
    /// Per-class weights of the training loss (Keras's `fit(class_weight=...)`):
    /// `"balanced"` or a table of class name to positive weight, unlisted
    /// classes weighing 1. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_weight: Option<ClassWeightSpec>,
}

impl Default for TrainSpec {
    fn default() -> Self {
        Self {
            epochs: default_train_epochs(),
            batch_size: default_train_batch_size(),
            steps_per_epoch: None,
            validation_steps: None,
            top_k: None,
            shuffle: default_true(),
            label_smoothing: 0.0,
            class_weight: None,
        }
    }
}

/// `train.class_weight`: the string `"balanced"` or a table of class names.
#[derive(Debug, Clone, PartialEq)]
pub enum ClassWeightSpec {
    /// `"balanced"`: n_samples / (n_classes * count) per class, over the
    /// training split (scikit-learn's `compute_class_weight`).
    Balanced,
    /// `{ cat = 1.0, dog = 3.0 }`: these classes' weights; others weigh 1.
    ByName(BTreeMap<String, f64>),
}

impl Serialize for ClassWeightSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ClassWeightSpec::Balanced => s.serialize_str("balanced"),
            ClassWeightSpec::ByName(weights) => weights.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for ClassWeightSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ClassWeightSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"balanced\" or a table of class names to weights")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                if v == "balanced" {
                    Ok(ClassWeightSpec::Balanced)
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(v), &self))
                }
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut weights = BTreeMap::new();
                while let Some((name, weight)) = map.next_entry::<String, f64>()? {
                    weights.insert(name, weight);
                }
                Ok(ClassWeightSpec::ByName(weights))
            }
        }
        d.deserialize_any(V)
    }
}

fn default_train_epochs() -> usize {
    10
}
fn default_train_batch_size() -> usize {
    32
}

// ---------------------------------------------------------------- callbacks

/// `[callbacks]`: what runs around each epoch.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CallbacksSpec {
    /// `[callbacks.early_stopping]`: stop when a metric stops improving.
    /// Default: none (off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<EarlyStoppingSpec>,
    /// `[callbacks.checkpoint]`: which checkpoints are kept. Default: always
    /// on, with every key's default.
    #[serde(default)]
    pub checkpoint: CheckpointSpec,
    /// `[callbacks.reduce_lr_on_plateau]`: cut the rate when a metric stalls.
    /// Default: none (off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reduce_lr_on_plateau: Option<ReduceLrSpec>,
    /// Stop as soon as a training batch's loss is NaN or infinite. Default: `true`.
    #[serde(default = "default_true")]
    pub terminate_on_nan: bool,
    /// `[callbacks.lr_schedule]`: the rate as a function of the epoch.
    /// Default: none (the optimizer's rate throughout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr_schedule: Option<LrScheduleSpec>,
    /// `[callbacks.tensorboard]`: TensorBoard event files. Default: on.
    #[serde(default)]
    pub tensorboard: TensorboardSpec,
}

impl Default for CallbacksSpec {
    fn default() -> Self {
        Self {
            early_stopping: None,
            checkpoint: CheckpointSpec::default(),
            reduce_lr_on_plateau: None,
            terminate_on_nan: default_true(),
            lr_schedule: None,
            tensorboard: TensorboardSpec::default(),
        }
    }
}

/// `[callbacks.early_stopping]`, with Keras 3's rules.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyStoppingSpec {
    /// The metric watched. Default: `"val_loss"`.
    #[serde(default = "default_callback_monitor")]
    pub monitor: String,
    /// Whether lower or higher is better. Default: `"auto"`.
    #[serde(default)]
    pub mode: Mode,
    /// Epochs without improvement before stopping. Default: `0`.
    #[serde(default)]
    pub patience: usize,
    /// An improvement must beat the best by more than this. Default: `0`.
    #[serde(default)]
    pub min_delta: f64,
    /// Until the metric beats this, improvements do not reset the patience
    /// counter. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    /// Epochs before this one are not watched. Default: `0`.
    #[serde(default)]
    pub start_from_epoch: usize,
    /// On stopping, go back to the weights of the best epoch. Default: `false`.
    #[serde(default)]
    pub restore_best_weights: bool,
}

/// Shared by every callback's `monitor`.
fn default_callback_monitor() -> String {
    "val_loss".into()
}

/// `[callbacks.checkpoint]`: always on.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSpec {
    /// The metric that defines `best` (`loss` when there is no validation
    /// data). Default: `"val_loss"`.
    #[serde(default = "default_callback_monitor")]
    pub monitor: String,
    /// Whether lower or higher is better. Default: `"auto"`.
    #[serde(default)]
    pub mode: Mode,
    /// `best` is saved whenever the monitored metric improves. Unless this is
    /// true, a checkpoint of every epoch is kept as well (Keras's default).
    /// Default: `false`.
    #[serde(default)]
    pub save_best_only: bool,
    /// Keep `last` (model, optimizer and loop state) after every epoch; needed
    /// for `--resume`. Default: `true`.
    #[serde(default = "default_true")]
    pub save_last: bool,
    /// How many per-epoch checkpoints to keep. Default: none (all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last_n: Option<usize>,
}

impl Default for CheckpointSpec {
    fn default() -> Self {
        Self {
            monitor: default_callback_monitor(),
            mode: Mode::Auto,
            save_best_only: false,
            save_last: default_true(),
            keep_last_n: None,
        }
    }
}

/// `[callbacks.reduce_lr_on_plateau]`: Keras's `ReduceLROnPlateau`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReduceLrSpec {
    /// The metric watched. Default: `"val_loss"`.
    #[serde(default = "default_callback_monitor")]
    pub monitor: String,
    /// Whether lower or higher is better. Default: `"auto"`.
    #[serde(default)]
    pub mode: Mode,
    /// New rate = rate * factor. Default: `0.1`.
    #[serde(default = "default_reduce_lr_on_plateau_factor")]
    pub factor: f64,
    /// Epochs without an improvement larger than `min_delta` before a
    /// reduction. Default: `10`.
    #[serde(default = "default_reduce_lr_on_plateau_patience")]
    pub patience: usize,
    /// The smallest change that counts as an improvement. Default: `1e-4`.
    #[serde(default = "default_reduce_lr_on_plateau_min_delta")]
    pub min_delta: f64,
    /// Epochs to wait after a reduction before counting again. Default: `0`.
    #[serde(default)]
    pub cooldown: usize,
    /// Lower bound on the rate. Default: `0`.
    #[serde(default)]
    pub min_lr: f64,
}

fn default_reduce_lr_on_plateau_factor() -> f64 {
    0.1
}
fn default_reduce_lr_on_plateau_patience() -> usize {
    10
}
fn default_reduce_lr_on_plateau_min_delta() -> f64 {
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

/// `type = "constant"`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConstantScheduleSpec {
    /// Epochs of linear warm-up up to the base rate. Default: `0`.
    #[serde(default)]
    pub warmup_epochs: usize,
}

/// `type = "step"`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StepScheduleSpec {
    /// Multiply the rate by `gamma` every this many epochs. Required.
    pub step_size: usize,
    /// The factor applied every `step_size` epochs. Default: `0.1`.
    #[serde(default = "default_step_gamma")]
    pub gamma: f64,
    /// Epochs of linear warm-up up to the base rate. Default: `0`.
    #[serde(default)]
    pub warmup_epochs: usize,
}

fn default_step_gamma() -> f64 {
    0.1
}

/// `type = "cosine"`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CosineScheduleSpec {
    /// The rate the decay ends at. Default: `0`.
    #[serde(default)]
    pub min_lr: f64,
    /// Epochs of linear warm-up up to the base rate. Default: `0`.
    #[serde(default)]
    pub warmup_epochs: usize,
}

/// `[callbacks.tensorboard]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TensorboardSpec {
    /// Write TensorBoard event files. Default: `true`.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Also write `batch_loss` / `batch_accuracy` every N training batches; 0
    /// turns it off. Default: `0`.
    #[serde(default)]
    pub batch_every: usize,
    /// Also write a histogram of every weight after every N-th epoch (epochs
    /// 0, N, 2N, ...; Keras's `histogram_freq`); 0 turns it off. Default: `0`.
    #[serde(default)]
    pub histogram_every: usize,
    /// Write the layer stack for TensorBoard's GRAPHS tab (Keras's
    /// `write_graph`). Default: `true`.
    #[serde(default = "default_true")]
    pub graph: bool,
}

impl Default for TensorboardSpec {
    fn default() -> Self {
        Self {
            enabled: default_true(),
            batch_every: 0,
            histogram_every: 0,
            graph: default_true(),
        }
    }
}

// ---------------------------------------------------------------- sweep

/// `[sweep]`: the trials of `runner sweep`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// `grid`, `random` or `tpe`. Default: `"grid"`.
    #[serde(default)]
    pub strategy: Strategy,
    /// The metric that ranks trials (its best value over epochs).
    /// Default: `"val_accuracy"`.
    #[serde(default = "default_sweep_metric")]
    pub metric: String,
    /// Whether lower or higher `metric` is better. Default: `"auto"`.
    #[serde(default)]
    pub mode: Mode,
    /// Trials at once, at most 1024. Default: none (one per GPU, or as many as
    /// CPU cores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel: Option<usize>,
    /// Number of trials for `strategy = "random"` and `"tpe"`, where it is
    /// required. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trials: Option<usize>,
    /// Start no more trials once this many have started. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_trials: Option<usize>,
    /// Start no more trials once this many hours have passed since the
    /// sweep started. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_hours: Option<f64>,
    /// Trials sharing one GPU at once. Default: `1`.
    #[serde(default = "default_one")]
    pub trials_per_gpu: usize,
    /// `[sweep.early_stop]`: stop bad trials at rungs. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stop: Option<EarlyStopSpec>,
    /// `[sweep.tpe]`: settings of `strategy = "tpe"`. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpe: Option<TpeSpec>,
    /// Seed for random sampling. Default: none (`experiment.seed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Axes whose values are combined as a cartesian product, keyed by key
    /// path. Default: none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub grid: BTreeMap<String, GridAxisSpec>,
    /// Axes that vary together (all lists the same length); one grid axis in
    /// all. Default: none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub zip: BTreeMap<String, Vec<toml::Value>>,
    /// Axes drawn from distributions (`strategy = "random"`), keyed by key
    /// path. Default: none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub random: BTreeMap<String, RandomAxisSpec>,
    /// `[sweep.launcher]`: where trials run. Default: `type = "local"`.
    #[serde(default)]
    pub launcher: LauncherSpec,
}

fn default_sweep_metric() -> String {
    "val_accuracy".into()
}

fn default_one() -> usize {
    1
}

/// `when = { "optimizer.type" = "sgd" }`: the axis is swept only in trials
/// whose value of each named axis is the given one (or one of the given
/// list).
pub type WhenSpec = BTreeMap<String, toml::Value>;

/// A `[sweep.grid]` axis: a list of values, or a table with the list and
/// a `when` condition.
#[derive(Debug, Clone)]
pub struct GridAxisSpec {
    /// The values, in order. Required.
    pub values: Vec<toml::Value>,
    /// When the axis applies. Default: none (always).
    pub when: WhenSpec,
    /// Written as a table (`{ values = [...] }`) rather than a list: where
    /// a diagnostic finds the values in the file. Not part of the axis's
    /// meaning, so equality ignores it. Default: `false` (a list).
    pub table: bool,
}

impl PartialEq for GridAxisSpec {
    fn eq(&self, other: &Self) -> bool {
        self.values == other.values && self.when == other.when
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConditionalGridSpec {
    values: Vec<toml::Value>,
    #[serde(default)]
    when: WhenSpec,
}

impl<'de> Deserialize<'de> for GridAxisSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            v @ serde_json::Value::Object(_) => {
                let c: ConditionalGridSpec = tagged::inner(v)?;
                Ok(GridAxisSpec {
                    values: c.values,
                    when: c.when,
                    table: true,
                })
            }
            v => Ok(GridAxisSpec {
                values: tagged::inner(v)?,
                when: WhenSpec::new(),
                table: false,
            }),
        }
    }
}

impl Serialize for GridAxisSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        if self.when.is_empty() {
            return self.values.serialize(s);
        }
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("values", &self.values)?;
        m.serialize_entry("when", &self.when)?;
        m.end()
    }
}

/// One way to draw a `[sweep.random]` axis: a distribution, and when it
/// applies.
#[derive(Debug, Clone, PartialEq)]
pub struct RandomCaseSpec {
    /// How the value is drawn (`distribution = ...` and its keys). Required.
    pub distribution: DistributionSpec,
    /// When this case applies. Default: none (always).
    pub when: WhenSpec,
}

/// A `[sweep.random]` axis: one distribution (a table), or a list of
/// tables, each with its own `when`, for a range that depends on another
/// axis.
#[derive(Debug, Clone, PartialEq)]
pub enum RandomAxisSpec {
    /// One distribution table.
    One(RandomCaseSpec),
    /// A list of distribution tables, each with a `when`; at most one
    /// applies to a trial.
    Cases(Vec<RandomCaseSpec>),
}

impl RandomAxisSpec {
    pub fn cases(&self) -> &[RandomCaseSpec] {
        match self {
            RandomAxisSpec::One(c) => std::slice::from_ref(c),
            RandomAxisSpec::Cases(cs) => cs,
        }
    }
}

impl<'de> Deserialize<'de> for RandomCaseSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        #[derive(Deserialize)]
        struct When {
            when: WhenSpec,
        }
        let when = match map.remove("when") {
            // Read inside a table, so an error names the `when` key.
            Some(w) => tagged::inner::<When, D::Error>(serde_json::json!({ "when": w }))?.when,
            None => WhenSpec::new(),
        };
        let distribution = DistributionSpec::deserialize(serde_json::Value::Object(map))
            .map_err(serde::de::Error::custom)?;
        Ok(RandomCaseSpec { distribution, when })
    }
}

impl Serialize for RandomCaseSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut v = serde_json::to_value(&self.distribution).map_err(serde::ser::Error::custom)?;
        if let (serde_json::Value::Object(m), false) = (&mut v, self.when.is_empty()) {
            m.insert(
                "when".into(),
                serde_json::to_value(&self.when).map_err(serde::ser::Error::custom)?,
            );
        }
        v.serialize(s)
    }
}

impl<'de> Deserialize<'de> for RandomAxisSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            v @ serde_json::Value::Array(_) => tagged::inner(v).map(RandomAxisSpec::Cases),
            v => RandomCaseSpec::deserialize(v)
                .map(RandomAxisSpec::One)
                .map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for RandomAxisSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RandomAxisSpec::One(c) => c.serialize(s),
            RandomAxisSpec::Cases(cs) => cs.serialize(s),
        }
    }
}

/// `[sweep.early_stop]`: which early-termination rule; `type` picks it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EarlyStopSpec {
    /// `asha`: asynchronous successive halving, one bracket.
    Asha(RungSpec),
    /// `hyperband`: several ASHA brackets, each starting at a later rung.
    Hyperband(RungSpec),
}

tagged::tagged_enum!(EarlyStopSpec, "type", {
    Asha(RungSpec) = "asha",
    Hyperband(RungSpec) = "hyperband",
});

/// The rungs of `[sweep.early_stop]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RungSpec {
    /// Epochs at the first rung. Default: `1`.
    #[serde(default = "default_one")]
    pub min_epochs: usize,
    /// Keep the best 1/reduction_factor at each rung. Default: `3`.
    #[serde(default = "default_reduction_factor")]
    pub reduction_factor: usize,
    /// A trial's full budget in epochs. Default: none (`train.epochs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_epochs: Option<usize>,
    /// `stopping` or `promotion`. Default: `stopping`.
    #[serde(default)]
    pub variant: HalvingVariant,
}

fn default_reduction_factor() -> usize {
    3
}

/// `[sweep.tpe]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TpeSpec {
    /// Random trials before the estimator takes over. Default: `10`.
    #[serde(default = "default_n_startup")]
    pub n_startup: usize,
    /// Candidates drawn from the good trials' density per new value; the
    /// one most likely good rather than bad is taken. Default: `24`.
    #[serde(default = "default_n_candidates")]
    pub n_candidates: usize,
}

impl Default for TpeSpec {
    fn default() -> Self {
        TpeSpec {
            n_startup: default_n_startup(),
            n_candidates: default_n_candidates(),
        }
    }
}

fn default_n_startup() -> usize {
    10
}

fn default_n_candidates() -> usize {
    24
}

/// How a random-search axis is drawn; `distribution` picks the variant.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "distribution", rename_all = "snake_case")]
pub enum DistributionSpec {
    /// `uniform`: floats from `low` to `high`.
    Uniform(RangeSpec),
    /// `log_uniform`: floats whose logarithm is uniform; `low` > 0.
    LogUniform(RangeSpec),
    /// `int`: integers from `low` to `high`, both included.
    Int(IntRangeSpec),
    /// `choice`: one of `values`, each equally likely.
    Choice(ChoiceSpec),
}

tagged::tagged_enum!(DistributionSpec, "distribution", {
    Uniform(RangeSpec) = "uniform",
    LogUniform(RangeSpec) = "log_uniform",
    Int(IntRangeSpec) = "int",
    Choice(ChoiceSpec) = "choice",
});

/// `distribution = "uniform"` and `distribution = "log_uniform"`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RangeSpec {
    /// Lower bound. Required.
    pub low: f64,
    /// Upper bound. Required.
    pub high: f64,
}

/// `distribution = "int"`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IntRangeSpec {
    /// Smallest value, included. Required.
    pub low: i64,
    /// Largest value, included. Required.
    pub high: i64,
}

/// `distribution = "choice"`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChoiceSpec {
    /// The values to choose from. Required.
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

/// `type = "local"`: no keys.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LocalLauncherSpec {}

/// `type = "slurm"`: the `#SBATCH` settings of the job array (docs/slurm.md).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmSpec {
    /// `#SBATCH --partition`. Default: none (the cluster's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// `#SBATCH --time`, e.g. `"04:00:00"`. Default: none (the partition's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// `#SBATCH --cpus-per-task`. Default: none (Slurm's, 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus_per_task: Option<usize>,
    /// `#SBATCH --mem`, e.g. `"32G"`. Default: none (the partition's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem: Option<String>,
    /// `#SBATCH --gres`, e.g. `"gpu:1"`. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gres: Option<String>,
    /// `#SBATCH --account`. Default: none (your default account).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Array tasks running at once (`--array=...%max_parallel`). Default: none (no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<usize>,
    /// Seconds before the time limit at which trials get SIGUSR1 to
    /// checkpoint. Default: `120`.
    #[serde(default = "default_slurm_signal_seconds")]
    pub signal_seconds: u64,
    /// Extra `#SBATCH` lines, passed through verbatim. Default: `[]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<String>,
}

fn default_slurm_signal_seconds() -> u64 {
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
            signal_seconds: default_slurm_signal_seconds(),
            extra: Vec::new(),
        }
    }
}
