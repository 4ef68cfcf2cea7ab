//! One burn module per layer of the plan.

use burn::module::{Initializer, Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{
    AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, AvgPool2d, AvgPool2dConfig, MaxPool2d,
    MaxPool2dConfig,
};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d,
};
use burn::tensor::activation;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::plan::{LayerKind, LayerPlan};
use crate::vocab::{Activation, InitializerKind, Padding};

/// An activation function applied inside a layer. Not a parameter.
#[derive(Module, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Act {
    pub kind: ActKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActKind {
    Linear,
    Relu,
    Sigmoid,
    Tanh,
    Softmax,
    Gelu,
    LeakyRelu,
}

impl From<Activation> for Act {
    fn from(a: Activation) -> Act {
        let kind = match a {
            Activation::Linear => ActKind::Linear,
            Activation::Relu => ActKind::Relu,
            Activation::Sigmoid => ActKind::Sigmoid,
            Activation::Tanh => ActKind::Tanh,
            Activation::Softmax => ActKind::Softmax,
            Activation::Gelu => ActKind::Gelu,
            Activation::LeakyRelu => ActKind::LeakyRelu,
        };
        Act { kind }
    }
}

impl Act {
    /// Apply to a tensor whose dimension 1 holds the channels or features
    /// (softmax runs over that dimension, as Keras's over the last axis).
    pub fn apply<B: Backend, const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self.kind {
            ActKind::Linear => x,
            ActKind::Relu => activation::relu(x),
            ActKind::Sigmoid => activation::sigmoid(x),
            ActKind::Tanh => activation::tanh(x),
            ActKind::Softmax => activation::softmax(x, 1),
            ActKind::Gelu => activation::gelu(x),
            ActKind::LeakyRelu => activation::leaky_relu(x, 0.2),
        }
    }
}

/// Conv2D with its activation.
#[derive(Module, Debug)]
pub struct ConvLayer<B: Backend> {
    pub conv: Conv2d<B>,
    pub act: Act,
}

/// Dense with its activation.
#[derive(Module, Debug)]
pub struct DenseLayer<B: Backend> {
    pub linear: Linear<B>,
    pub act: Act,
}

/// One weight tensor of a layer, read back to the host: its Keras name
/// (`kernel`, `bias`, `gamma`, ...), its dims in burn's layout (a conv kernel
/// is `[out, in, kh, kw]`, a dense kernel `[in, out]`) and its values in that
/// order.
#[derive(Debug, Clone, PartialEq)]
pub struct Weight {
    pub name: &'static str,
    pub dims: Vec<usize>,
    pub values: Vec<f32>,
}

impl Weight {
    /// Its Keras path in a layer named `layer`: `conv2d/kernel`.
    pub fn path(&self, layer: &str) -> String {
        format!("{layer}/{}", self.name)
    }

    fn of<B: Backend, const D: usize>(name: &'static str, t: Tensor<B, D>) -> Weight {
        let dims = t.dims().to_vec();
        let values = t.into_data().convert::<f32>().to_vec::<f32>();
        Weight {
            name,
            dims,
            // Converted to f32 just above, so the read cannot fail.
            values: values.unwrap_or_default(),
        }
    }
}

fn kernel_and_bias<B: Backend, const D: usize>(
    kernel: Tensor<B, D>,
    bias: Option<&Param<Tensor<B, 1>>>,
) -> Vec<Weight> {
    let mut weights = vec![Weight::of("kernel", kernel)];
    weights.extend(bias.map(|b| Weight::of("bias", b.val())));
    weights
}

/// A layer with no state that reshapes a feature map into a vector.
#[derive(Module, Debug, Clone, Copy, Default)]
pub struct Flatten;

#[derive(Module, Debug)]
pub enum Layer<B: Backend> {
    Conv(ConvLayer<B>),
    MaxPool(MaxPool2d),
    AvgPool(AvgPool2d),
    GlobalAvgPool(AdaptiveAvgPool2d),
    Dropout(Dropout),
    Flatten(Flatten),
    Dense(DenseLayer<B>),
    BatchNorm(BatchNorm<B>),
    Activation(Act),
}

fn initializer(kind: InitializerKind) -> Initializer {
    match kind {
        InitializerKind::GlorotUniform => Initializer::XavierUniform { gain: 1.0 },
        InitializerKind::GlorotNormal => Initializer::XavierNormal { gain: 1.0 },
        InitializerKind::HeUniform => Initializer::KaimingUniform {
            gain: std::f64::consts::SQRT_2,
            fan_out_only: false,
        },
        InitializerKind::HeNormal => Initializer::KaimingNormal {
            gain: std::f64::consts::SQRT_2,
            fan_out_only: false,
        },
    }
}

fn padding(p: Padding) -> PaddingConfig2d {
    match p {
        Padding::Valid => PaddingConfig2d::Valid,
        Padding::Same => PaddingConfig2d::Same,
    }
}

/// Keras starts biases at zero.
fn zero_bias<B: Backend>(n: usize, device: &B::Device) -> Param<Tensor<B, 1>> {
    Initializer::Zeros.init([n], device)
}

impl<B: Backend> Layer<B> {
    /// Build one layer with fresh weights.
    pub fn init(plan: &LayerPlan, init: InitializerKind, device: &B::Device) -> Layer<B> {
        match &plan.kind {
            LayerKind::Conv2d {
                in_channels,
                filters,
                kernel,
                stride,
                padding: p,
                activation,
                use_bias,
            } => {
                let mut conv = Conv2dConfig::new([*in_channels, *filters], *kernel)
                    .with_stride(*stride)
                    .with_padding(padding(*p))
                    .with_bias(*use_bias)
                    .with_initializer(initializer(init))
                    .init(device);
                if *use_bias {
                    conv.bias = Some(zero_bias(*filters, device));
                }
                Layer::Conv(ConvLayer {
                    conv,
                    act: (*activation).into(),
                })
            }
            LayerKind::MaxPool2d {
                pool,
                stride,
                padding: p,
            } => Layer::MaxPool(
                MaxPool2dConfig::new(*pool)
                    .with_strides(*stride)
                    .with_padding(padding(*p))
                    .init(),
            ),
            LayerKind::AvgPool2d {
                pool,
                stride,
                padding: p,
            } => Layer::AvgPool(
                AvgPool2dConfig::new(*pool)
                    .with_strides(*stride)
                    .with_padding(padding(*p))
                    .with_count_include_pad(false)
                    .init(),
            ),
            LayerKind::GlobalAvgPool2d => {
                Layer::GlobalAvgPool(AdaptiveAvgPool2dConfig::new([1, 1]).init())
            }
            LayerKind::Dropout { rate } => Layer::Dropout(DropoutConfig::new(*rate).init()),
            LayerKind::Flatten => Layer::Flatten(Flatten),
            LayerKind::Dense {
                in_features,
                units,
                activation,
                use_bias,
            } => {
                let mut linear = LinearConfig::new(*in_features, *units)
                    .with_bias(*use_bias)
                    .with_initializer(initializer(init))
                    .init(device);
                if *use_bias {
                    linear.bias = Some(zero_bias(*units, device));
                }
                Layer::Dense(DenseLayer {
                    linear,
                    act: (*activation).into(),
                })
            }
            LayerKind::BatchNorm {
                features,
                momentum,
                epsilon,
            } => Layer::BatchNorm(
                BatchNormConfig::new(*features)
                    // burn weighs the new batch by `momentum`; Keras weighs the old average.
                    .with_momentum(1.0 - momentum)
                    .with_epsilon(*epsilon)
                    .init(device),
            ),
            LayerKind::Activation(a) => Layer::Activation((*a).into()),
        }
    }

    /// The layer's weights by Keras's names and in Keras's order: `kernel`
    /// and `bias` (conv2d, dense), `gamma`, `beta`, `moving_mean` and
    /// `moving_variance` (batch_normalization); none for the other layers.
    pub fn weights(&self) -> Vec<Weight> {
        match self {
            Layer::Conv(c) => kernel_and_bias(c.conv.weight.val(), c.conv.bias.as_ref()),
            Layer::Dense(d) => kernel_and_bias(d.linear.weight.val(), d.linear.bias.as_ref()),
            Layer::BatchNorm(bn) => vec![
                Weight::of("gamma", bn.gamma.val()),
                Weight::of("beta", bn.beta.val()),
                Weight::of("moving_mean", bn.running_mean.value()),
                Weight::of("moving_variance", bn.running_var.value()),
            ],
            _ => Vec::new(),
        }
    }

    /// Parameters that do not learn (BatchNorm's moving mean and variance).
    pub fn non_trainable_params(&self) -> usize {
        match self {
            Layer::BatchNorm(bn) => {
                bn.running_mean.value().dims()[0] + bn.running_var.value().dims()[0]
            }
            _ => 0,
        }
    }
}
