//! The small closed sets of values that mean the same in an experiment
//! file and in its plan: activations, padding, initializers, resize filters,
//! fill modes, the bad-image policy, class selection, monitor modes and sweep
//! strategies. The file's specs ([`crate::config::spec`]) and the validated
//! plans ([`crate::plan`]) share them, so the code below the plan names them
//! from here and never imports a spec.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Which classes to use: an explicit list, or the first N in sorted order.
#[derive(Debug, Clone, PartialEq)]
pub enum ClassSelect {
    /// A number N: the first N classes in sorted order.
    First(usize),
    /// The listed classes.
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

/// What to do with an image file that cannot be read (`on_bad_image`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BadImagePolicy {
    /// `fail`: stop, naming the file. The default.
    #[default]
    Fail,
    /// `skip`: leave the file out and count it.
    Skip,
}

/// Resize filter. Keras's `flow_from_directory` uses nearest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Interpolation {
    /// `nearest`, Keras's default. The default.
    #[default]
    Nearest,
    /// `bilinear`.
    Bilinear,
    /// `bicubic`.
    Bicubic,
    /// `lanczos` (Lanczos3).
    Lanczos,
}

/// How pixels outside the image are filled after a transform (`fill_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FillMode {
    /// `nearest`: the closest edge pixel. The default.
    #[default]
    Nearest,
    /// `constant`: the value `cval`.
    Constant,
    /// `reflect`: mirrored at the edge (`dcba|abcd|dcba`).
    Reflect,
    /// `wrap`: the image repeated (`abcd|abcd|abcd`).
    Wrap,
}

/// Kernel initializer (`model.initializer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InitializerKind {
    /// `glorot_uniform`: Keras's default for Conv2D and Dense. The default.
    #[default]
    GlorotUniform,
    /// `glorot_normal`.
    GlorotNormal,
    /// `he_uniform`.
    HeUniform,
    /// `he_normal`.
    HeNormal,
}

/// Padding of conv and pooling layers (`padding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Padding {
    /// `valid`: no padding. The default.
    #[default]
    Valid,
    /// `same`: pad so the output is `ceil(input / stride)`; the extra row or
    /// column goes at the bottom or right, as in TensorFlow.
    Same,
}

impl Padding {
    pub fn as_str(&self) -> &'static str {
        match self {
            Padding::Valid => "valid",
            Padding::Same => "same",
        }
    }
}

/// An activation function (`activation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `linear`: no activation (Keras `None` / `"linear"`). The default.
    #[default]
    Linear,
    /// `relu`.
    Relu,
    /// `sigmoid`.
    Sigmoid,
    /// `tanh`.
    Tanh,
    /// `softmax`, over channels or features.
    Softmax,
    /// `gelu`.
    Gelu,
    /// `leaky_relu`: negative slope 0.2, as Keras's `activations.leaky_relu`.
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

/// Whether a monitored metric improves by going down or up (`mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// `auto`: `max` for accuracy-like metrics, `min` otherwise. The default.
    #[default]
    Auto,
    /// `min`: lower is better.
    Min,
    /// `max`: higher is better.
    Max,
}

/// What successive halving does with a trial at a rung
/// (`sweep.early_stop.variant`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HalvingVariant {
    /// `stopping`: the trial is judged against those that reached the rung
    /// before it and goes on or is stopped for good, as Ray Tune's ASHA and
    /// Optuna's pruners do. The default.
    #[default]
    Stopping,
    /// `promotion`: the trial pauses at the rung and is resumed from its
    /// checkpoint once it ranks in the top 1/reduction_factor there (the
    /// ASHA paper's Algorithm 1).
    Promotion,
}

/// How trials are chosen (`sweep.strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// `grid`: every combination of the grid axes. The default.
    #[default]
    Grid,
    /// `random`: `trials` draws from the random axes (and the grid lists).
    Random,
    /// `tpe`: `trials` draws, the first `n_startup` random, the others from
    /// a Tree-structured Parzen Estimator fitted to the trials so far.
    Tpe,
}
