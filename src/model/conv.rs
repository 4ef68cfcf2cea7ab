//! The convolution every `conv2d` layer runs, with a backward pass chosen
//! per backend.
//!
//! burn 0.21's autodiff computes a convolution's weight gradient as a
//! second convolution over batch-swapped tensors, whose kernel is the whole
//! output-gradient image. On the CPU that path runs 2-6x slower than the
//! forward pass and dominates a training step (bench/FINDINGS.md). This
//! module routes convolutions through [`ConvOps`], a backend extension with
//! burn's own behaviour as the default and faster paths where we have them:
//!
//! - `Flex`: runner's im2col + GEMM kernels for the forward pass and both
//!   gradients ([`super::conv_cpu`]);
//! - `LibTorch` (feature `tch`): PyTorch's own convolution and autograd
//!   (`convolution_backward`), exactly what PyTorch runs;
//! - the cubecl GPU backends (CUDA, wgpu): burn-cubecl's kernels with the
//!   strategy `RUNNER_GPU_CONV` names ([`super::cube`]);
//! - every other backend (ndarray, candle): burn's ops, unchanged.
//!
//! `Autodiff<B>` implements [`ConvOps`] for any `B: ConvOps` by recording a
//! custom backward step, so the training loop stays generic.

use std::fmt::Debug;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::{Autodiff, Flex};
use burn::nn::conv::Conv2d;
use burn::nn::PaddingConfig2d;
use burn::tensor::backend::Backend;
use burn::tensor::ops::{ConvOptions, FloatTensor, ModuleOps};
use burn::tensor::TensorMetadata;
use burn::tensor::{Shape, Tensor, TensorData, TensorPrimitive};

use super::conv_cpu::{self, Geometry};
use super::conv_pool::ConvPoolOps;
use super::pool::PoolOps;

/// Which gradients the backward pass must produce: input, weight, bias.
pub type Needed = [bool; 3];

/// A backend's 2D convolution, forward and backward, optionally followed
/// by a ReLU in the same operation (a `conv2d` layer with `activation =
/// "relu"`; on `flex` the ReLU then runs inside the convolution's own
/// parallel passes instead of as separate serial ones). Only
/// stride, padding and dilation vary here; grouped convolutions go through
/// burn directly. Its supertrait [`PoolOps`] holds the max-pooling
/// counterpart.
pub trait ConvOps: PoolOps + ConvPoolOps {
    /// What the backward pass keeps from the forward pass besides the
    /// inputs: the rectified output where there is a ReLU (LibTorch keeps
    /// its own autograd graph instead).
    type ConvSaved: Clone + Send + Debug + 'static;

    /// Whether the backward pass reads the forward inputs `x` and `weight`.
    const BACKWARD_READS_INPUTS: bool = true;

    /// Forward convolution (then ReLU where `relu`) that will not be differentiated.
    fn runner_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvOptions<2>,
        relu: bool,
    ) -> FloatTensor<Self> {
        rectify::<Self>(Self::conv2d(x, weight, bias, options), relu).0
    }

    /// Forward convolution (then ReLU where `relu`) whose gradients
    /// `needed` will be asked for.
    fn runner_conv2d_tracked(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvOptions<2>,
        relu: bool,
        needed: Needed,
    ) -> (FloatTensor<Self>, Self::ConvSaved);

    /// Gradients with respect to input, weight and bias (`None` where not
    /// `needed`). `x` and `weight` are `None` when
    /// [`BACKWARD_READS_INPUTS`](Self::BACKWARD_READS_INPUTS) is false.
    fn runner_conv2d_backward(
        x: Option<FloatTensor<Self>>,
        weight: Option<FloatTensor<Self>>,
        bias_len: Option<usize>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
        needed: Needed,
        saved: Self::ConvSaved,
    ) -> [Option<FloatTensor<Self>>; 3];
}

/// `out` through a ReLU where `relu`, with the rectified output the backward
/// pass needs (burn's `relu` and `relu_backward`).
pub(crate) fn rectify<B: Backend>(
    out: FloatTensor<B>,
    relu: bool,
) -> (FloatTensor<B>, Option<FloatTensor<B>>) {
    if relu {
        let out = B::relu(out);
        (out.clone(), Some(out))
    } else {
        (out, None)
    }
}

/// The output gradient taken back through [`rectify`]'s ReLU, if there was one.
pub(crate) fn unrectify<B: Backend>(
    grad: FloatTensor<B>,
    rectified: Option<FloatTensor<B>>,
) -> FloatTensor<B> {
    match rectified {
        Some(out) => B::relu_backward(out, grad),
        None => grad,
    }
}

/// burn's own convolution gradients, for backends without a faster path.
pub fn burn_conv2d_backward<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias_len: Option<usize>,
    grad: FloatTensor<B>,
    options: ConvOptions<2>,
    needed: Needed,
) -> [Option<FloatTensor<B>>; 3] {
    let dx = needed[0]
        .then(|| B::conv2d_x_backward(x.clone(), weight.clone(), grad.clone(), options.clone()));
    let db = bias_backward::<B>(&x, &grad, bias_len, needed[2]);
    let dw = needed[1].then(|| B::conv2d_weight_backward(x, weight, grad, options));
    [dx, dw, db]
}

/// The bias gradient of a convolution with `bias_len` biases, if `wanted`.
pub fn bias_backward<B: Backend>(
    x: &FloatTensor<B>,
    grad: &FloatTensor<B>,
    bias_len: Option<usize>,
    wanted: bool,
) -> Option<FloatTensor<B>> {
    let n = bias_len.filter(|_| wanted)?;
    let bias = B::float_zeros(Shape::new([n]), &B::float_device(grad), grad.dtype().into());
    Some(B::conv2d_bias_backward(x.clone(), bias, grad.clone()))
}

/// Implement [`ConvOps`] with burn's own operations, for a type
/// (`burn_conv_ops!(NdArray)`) or a generic one
/// (`burn_conv_ops!(impl<B: FusionBackend> for Fusion<B>)`).
#[allow(unused_macros)]
macro_rules! burn_conv_ops {
    (impl<$($g:ident: $bound:path),*> for $ty:ty) => {
        impl<$($g: $bound),*> $crate::model::pool::PoolOps for $ty {}
        impl<$($g: $bound),*> $crate::model::conv_pool::ConvPoolOps for $ty {}
        impl<$($g: $bound),*> $crate::model::conv::ConvOps for $ty {
            type ConvSaved = Option<burn::tensor::ops::FloatTensor<Self>>;
            fn runner_conv2d_tracked(
                x: burn::tensor::ops::FloatTensor<Self>,
                weight: burn::tensor::ops::FloatTensor<Self>,
                bias: Option<burn::tensor::ops::FloatTensor<Self>>,
                options: burn::tensor::ops::ConvOptions<2>,
                relu: bool,
                _needed: $crate::model::conv::Needed,
            ) -> (burn::tensor::ops::FloatTensor<Self>, Self::ConvSaved) {
                $crate::model::conv::rectify::<Self>(<Self as burn::tensor::ops::ModuleOps<Self>>::conv2d(x, weight, bias, options), relu)
            }
            fn runner_conv2d_backward(
                x: Option<burn::tensor::ops::FloatTensor<Self>>,
                weight: Option<burn::tensor::ops::FloatTensor<Self>>,
                bias_len: Option<usize>,
                grad: burn::tensor::ops::FloatTensor<Self>,
                options: burn::tensor::ops::ConvOptions<2>,
                needed: $crate::model::conv::Needed,
                saved: Self::ConvSaved,
            ) -> [Option<burn::tensor::ops::FloatTensor<Self>>; 3] {
                let grad = $crate::model::conv::unrectify::<Self>(grad, saved);
                match (x, weight) {
                    (Some(x), Some(w)) => {
                        $crate::model::conv::burn_conv2d_backward::<Self>(x, w, bias_len, grad, options, needed)
                    }
                    // BACKWARD_READS_INPUTS is true: the autodiff step always passes both.
                    _ => unreachable!("convolution inputs were checkpointed"),
                }
            }
        }
    };
    ($ty:ty) => {
        burn_conv_ops!(impl<> for $ty);
    };
}

#[allow(unused_imports)]
pub(super) use burn_conv_ops;

#[cfg(feature = "ndarray-blas")]
burn_conv_ops!(burn::backend::NdArray);
#[cfg(feature = "candle")]
#[allow(deprecated)]
mod candle_impl {
    use super::*;
    burn_conv_ops!(burn::backend::Candle);
}

// ---------------------------------------------------------------- flex

/// The CPU kernels' geometry for input dimensions `x` and weight
/// dimensions `w` (`[cout, cin, kh, kw]`): one group, matching channels,
/// any stride/padding/dilation, the kernel inside the padded input.
pub(super) fn dims_geometry(
    x: [usize; 4],
    w: [usize; 4],
    options: &ConvOptions<2>,
) -> Option<Geometry> {
    if options.groups != 1 || x[1] != w[1] {
        return None;
    }
    let g = Geometry {
        batch: x[0],
        cin: x[1],
        h: x[2],
        w: x[3],
        cout: w[0],
        kh: w[2],
        kw: w[3],
        stride: options.stride,
        padding: options.padding,
        dilation: options.dilation,
    };
    // The kernel must fit in the padded input.
    let fits = |size: usize, pad: usize, d: usize, k: usize| size + 2 * pad > d * (k - 1);
    (fits(g.h, g.padding[0], g.dilation[0], g.kh) && fits(g.w, g.padding[1], g.dilation[1], g.kw))
        .then_some(g)
}

/// A 4D tensor's dimensions.
pub(super) fn flex_dims(t: &burn_flex::FlexTensor) -> Option<[usize; 4]> {
    let s = t.layout().shape();
    (s.num_dims() == 4).then(|| [s[0], s[1], s[2], s[3]])
}

/// The CPU kernels handle f32 tensors of [`dims_geometry`].
pub(super) fn flex_geometry(
    x: &burn_flex::FlexTensor,
    w: &burn_flex::FlexTensor,
    options: &ConvOptions<2>,
) -> Option<Geometry> {
    let f32s = x.dtype() == burn::tensor::DType::F32 && w.dtype() == burn::tensor::DType::F32;
    match (flex_dims(x), flex_dims(w)) {
        (Some(xd), Some(wd)) if f32s => dims_geometry(xd, wd, options),
        _ => None,
    }
}

pub(super) fn flex_contiguous(t: &burn_flex::FlexTensor) -> burn_flex::FlexTensor {
    t.to_contiguous()
}

pub(super) fn flex_from(values: Vec<f32>, shape: [usize; 4]) -> burn_flex::FlexTensor {
    burn_flex::FlexTensor::from_data(TensorData::new(values, shape))
}

pub(super) fn flex_slice(t: &burn_flex::FlexTensor) -> &[f32] {
    // `flex_f32` made it contiguous with offset 0, so this is the whole tensor.
    t.as_slice::<f32>().unwrap_or_else(|| t.storage::<f32>())
}

impl ConvOps for Flex {
    /// The rectified output, where the convolution has a ReLU.
    type ConvSaved = Option<burn_flex::FlexTensor>;

    fn runner_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvOptions<2>,
        relu: bool,
    ) -> FloatTensor<Self> {
        let Some(g) = flex_geometry(&x, &weight, &options) else {
            return rectify::<Self>(Self::conv2d(x, weight, bias, options), relu).0;
        };
        let (x, w) = (flex_contiguous(&x), flex_contiguous(&weight));
        let b = bias.as_ref().map(flex_contiguous);
        let out = conv_cpu::forward(
            flex_slice(&x),
            flex_slice(&w),
            b.as_ref().map(flex_slice),
            relu,
            &g,
        );
        flex_from(out, [g.batch, g.cout, g.out_h(), g.out_w()])
    }

    fn runner_conv2d_tracked(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvOptions<2>,
        relu: bool,
        _needed: Needed,
    ) -> (FloatTensor<Self>, Self::ConvSaved) {
        let out = Self::runner_conv2d(x, weight, bias, options, relu);
        let saved = relu.then(|| out.clone());
        (out, saved)
    }

    fn runner_conv2d_backward(
        x: Option<FloatTensor<Self>>,
        weight: Option<FloatTensor<Self>>,
        bias_len: Option<usize>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
        needed: Needed,
        saved: Self::ConvSaved,
    ) -> [Option<FloatTensor<Self>>; 3] {
        let (Some(x), Some(weight)) = (x, weight) else {
            unreachable!("convolution inputs were checkpointed")
        };
        let Some(g) = flex_geometry(&x, &weight, &options) else {
            let grad = unrectify::<Self>(grad, saved);
            return burn_conv2d_backward::<Self>(x, weight, bias_len, grad, options, needed);
        };
        let grad = match saved {
            Some(out) => {
                let (out, grad) = (flex_contiguous(&out), flex_contiguous(&grad));
                let masked = conv_cpu::relu_backward(flex_slice(&out), flex_slice(&grad));
                flex_from(masked, [g.batch, g.cout, g.out_h(), g.out_w()])
            }
            None => flex_contiguous(&grad),
        };
        let dx = needed[0].then(|| {
            let w = flex_contiguous(&weight);
            flex_from(
                conv_cpu::backward_input(flex_slice(&w), flex_slice(&grad), &g),
                [g.batch, g.cin, g.h, g.w],
            )
        });
        let (dw, db) = if needed[1] || needed[2] {
            let x = flex_contiguous(&x);
            let (dw, db) = conv_cpu::backward_weight(flex_slice(&x), flex_slice(&grad), &g);
            let dw = needed[1].then(|| flex_from(dw, [g.cout, g.cin, g.kh, g.kw]));
            let db = (needed[2] && bias_len.is_some())
                .then(|| burn_flex::FlexTensor::from_data(TensorData::new(db, [g.cout])));
            (dw, db)
        } else {
            (None, None)
        };
        [dx, dw, db]
    }
}

// ---------------------------------------------------------------- LibTorch

#[cfg(feature = "tch")]
mod libtorch {
    use super::*;
    use burn::backend::libtorch::TchTensor;
    use burn::backend::LibTorch;

    /// PyTorch's own autograd graph of one convolution: the leaves it was
    /// computed from and its output.
    pub struct TorchGraph {
        leaves: Vec<tch::Tensor>,
        output: tch::Tensor,
    }

    impl Clone for TorchGraph {
        fn clone(&self) -> Self {
            TorchGraph {
                leaves: self.leaves.iter().map(tch::Tensor::shallow_clone).collect(),
                output: self.output.shallow_clone(),
            }
        }
    }

    impl Debug for TorchGraph {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "TorchGraph({:?})", self.output.size())
        }
    }

    fn conv(
        x: &tch::Tensor,
        w: &tch::Tensor,
        b: Option<&tch::Tensor>,
        o: &ConvOptions<2>,
    ) -> tch::Tensor {
        let s = o.stride.map(|v| v as i64);
        let p = o.padding.map(|v| v as i64);
        let d = o.dilation.map(|v| v as i64);
        tch::Tensor::conv2d(x, w, b, s, p, d, o.groups as i64)
    }

    impl crate::model::pool::PoolOps for LibTorch {}
    impl crate::model::conv_pool::ConvPoolOps for LibTorch {}

    impl ConvOps for LibTorch {
        type ConvSaved = Option<TorchGraph>;
        const BACKWARD_READS_INPUTS: bool = false;

        fn runner_conv2d_tracked(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            bias: Option<FloatTensor<Self>>,
            options: ConvOptions<2>,
            relu: bool,
            needed: Needed,
        ) -> (FloatTensor<Self>, Option<TorchGraph>) {
            // Leaves sharing storage with burn's tensors; only those whose
            // gradient is needed are tracked by PyTorch.
            let xl = x.tensor.detach().set_requires_grad(needed[0]);
            let wl = weight.tensor.detach().set_requires_grad(needed[1]);
            let bl = bias
                .as_ref()
                .map(|b| b.tensor.detach().set_requires_grad(needed[2]));
            let out = {
                tch::with_grad(|| {
                    let out = conv(&xl, &wl, bl.as_ref(), &options);
                    if relu {
                        out.relu()
                    } else {
                        out
                    }
                })
            };
            let result = TchTensor::new(out.detach());
            let mut leaves = vec![xl, wl];
            leaves.extend(bl);
            (
                result,
                Some(TorchGraph {
                    leaves,
                    output: out,
                }),
            )
        }

        fn runner_conv2d_backward(
            _x: Option<FloatTensor<Self>>,
            _weight: Option<FloatTensor<Self>>,
            _bias_len: Option<usize>,
            grad: FloatTensor<Self>,
            _options: ConvOptions<2>,
            needed: Needed,
            saved: Option<TorchGraph>,
        ) -> [Option<FloatTensor<Self>>; 3] {
            let Some(graph) = saved else {
                unreachable!("a tracked convolution keeps its graph")
            };
            // d/d(leaves) of <output, grad> is the convolution's backward pass.
            let wanted: Vec<usize> = (0..graph.leaves.len()).filter(|&i| needed[i]).collect();
            let inputs: Vec<&tch::Tensor> = wanted.iter().map(|&i| &graph.leaves[i]).collect();
            let objective =
                tch::with_grad(|| (&graph.output * &grad.tensor).sum(grad.tensor.kind()));
            let grads = tch::Tensor::run_backward(&[objective], &inputs, false, false);
            let mut out: [Option<FloatTensor<Self>>; 3] = [None, None, None];
            for (i, g) in wanted.into_iter().zip(grads) {
                out[i] = Some(TchTensor::new(g));
            }
            out
        }
    }
}

// ---------------------------------------------------------------- autodiff

#[derive(Debug)]
struct ConvBackward<const N: usize>;

/// What the backward step keeps: checkpointed inputs, options, bias length,
/// which gradients are needed and the backend's own saved state.
#[derive(Debug, Clone)]
struct ConvState<S> {
    x: Option<NodeId>,
    weight: Option<NodeId>,
    bias_len: Option<usize>,
    options: ConvOptions<2>,
    needed: Needed,
    saved: S,
}

impl<B: ConvOps, const N: usize> Backward<B, N> for ConvBackward<N> {
    type State = ConvState<B::ConvSaved>;

    fn backward(
        self,
        ops: Ops<Self::State, N>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<B>(&ops.node);
        let s = ops.state;
        let x =
            s.x.map(|id| checkpointer.retrieve_node_output::<FloatTensor<B>>(id));
        let w = s
            .weight
            .map(|id| checkpointer.retrieve_node_output::<FloatTensor<B>>(id));
        let out = B::runner_conv2d_backward(x, w, s.bias_len, grad, s.options, s.needed, s.saved);
        for (parent, g) in ops.parents.iter().zip(out) {
            if let (Some(node), Some(g)) = (parent, g) {
                grads.register::<B>(node.id, g);
            }
        }
    }
}

/// Which of a convolution's input, weight and bias need a gradient.
pub(super) fn needed<B: Backend, C: CheckpointStrategy>(
    x: &FloatTensor<Autodiff<B, C>>,
    weight: &FloatTensor<Autodiff<B, C>>,
    bias: Option<&FloatTensor<Autodiff<B, C>>>,
) -> Needed {
    [
        !x.node.requirement.is_none(),
        !weight.node.requirement.is_none(),
        bias.is_some_and(|b| !b.node.requirement.is_none()),
    ]
}

/// Record one convolution on the autodiff tape. Its `N` parents are the
/// input, the weight and, where `N` is 3, the bias.
fn record<B: ConvOps, C: CheckpointStrategy, const N: usize>(
    x: FloatTensor<Autodiff<B, C>>,
    weight: FloatTensor<Autodiff<B, C>>,
    bias: Option<FloatTensor<Autodiff<B, C>>>,
    options: ConvOptions<2>,
    relu: bool,
) -> FloatTensor<Autodiff<B, C>> {
    let parents: Vec<_> = [Some(&x), Some(&weight), bias.as_ref()]
        .into_iter()
        .flatten()
        .map(|t| t.node.clone())
        .collect();
    let Ok(nodes) = <[_; N]>::try_from(parents) else {
        unreachable!("runner_conv2d passes N = 3 with a bias and 2 without")
    };
    let needed = needed::<B, C>(&x, &weight, bias.as_ref());
    let bias_len = bias.as_ref().map(|b| b.primitive.shape()[0]);
    let bias = bias.map(|b| b.primitive);
    match ConvBackward::<N>
        .prepare::<C>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let (xs, ws) = if B::BACKWARD_READS_INPUTS {
                (Some(prep.checkpoint(&x)), Some(prep.checkpoint(&weight)))
            } else {
                (None, None)
            };
            let (out, saved) = B::runner_conv2d_tracked(
                x.primitive,
                weight.primitive,
                bias,
                options.clone(),
                relu,
                needed,
            );
            let state = ConvState {
                x: xs,
                weight: ws,
                bias_len,
                options,
                needed,
                saved,
            };
            prep.finish(state, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(B::runner_conv2d(
            x.primitive,
            weight.primitive,
            bias,
            options,
            relu,
        )),
    }
}

impl<B: ConvOps, C: CheckpointStrategy> ConvOps for Autodiff<B, C> {
    type ConvSaved = Option<FloatTensor<Self>>;

    fn runner_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvOptions<2>,
        relu: bool,
    ) -> FloatTensor<Self> {
        match bias {
            Some(_) => record::<B, C, 3>(x, weight, bias, options, relu),
            None => record::<B, C, 2>(x, weight, bias, options, relu),
        }
    }

    fn runner_conv2d_tracked(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvOptions<2>,
        relu: bool,
        _needed: Needed,
    ) -> (FloatTensor<Self>, Self::ConvSaved) {
        // Second-order autodiff: the convolution as a tracked op, then burn's ReLU.
        rectify::<Self>(Self::runner_conv2d(x, weight, bias, options, false), relu)
    }

    fn runner_conv2d_backward(
        x: Option<FloatTensor<Self>>,
        weight: Option<FloatTensor<Self>>,
        bias_len: Option<usize>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
        needed: Needed,
        saved: Self::ConvSaved,
    ) -> [Option<FloatTensor<Self>>; 3] {
        let grad = unrectify::<Self>(grad, saved);
        match (x, weight) {
            (Some(x), Some(w)) => {
                burn_conv2d_backward::<Self>(x, w, bias_len, grad, options, needed)
            }
            _ => unreachable!("Autodiff<Autodiff<_>> always passes its inputs"),
        }
    }
}

/// (before, after) padding per spatial dimension, as burn's `Conv2d` computes it.
pub(super) fn padding_pairs(
    p: &PaddingConfig2d,
    size: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
) -> ((usize, usize), (usize, usize)) {
    let same = |k: usize, s: usize, n: usize| {
        let out = n.div_ceil(s);
        let total = if out > 0 {
            ((out - 1) * s + k).saturating_sub(n)
        } else {
            0
        };
        (total / 2, total - total / 2)
    };
    match p {
        PaddingConfig2d::Valid => ((0, 0), (0, 0)),
        PaddingConfig2d::Same => (
            same(kernel[0], stride[0], size[0]),
            same(kernel[1], stride[1], size[1]),
        ),
        PaddingConfig2d::Explicit(top, left, bottom, right) => ((*top, *bottom), (*left, *right)),
    }
}

/// Whether `RUNNER_CONV=burn` asks for burn's own convolution and pooling
/// everywhere (an escape hatch, and the baseline for bench/FINDINGS.md).
pub fn burn_kernels_forced() -> bool {
    static FORCED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FORCED.get_or_init(|| {
        std::env::var("RUNNER_CONV")
            .map(|v| v.eq_ignore_ascii_case("burn"))
            .unwrap_or(false)
    })
}

/// The options of `conv` on `x` for runner's kernels, or `None` where
/// burn's module must run it: `RUNNER_CONV=burn`, asymmetric padding (an
/// even kernel with `same` padding) or a grouped convolution.
pub(super) fn runner_options<B: Backend>(
    conv: &Conv2d<B>,
    x: &Tensor<B, 4>,
) -> Option<ConvOptions<2>> {
    if burn_kernels_forced() {
        return None;
    }
    let [_, _, h, w] = x.dims();
    let ((top, bottom), (left, right)) =
        padding_pairs(&conv.padding, [h, w], conv.kernel_size, conv.stride);
    (top == bottom && left == right && conv.groups == 1)
        .then(|| ConvOptions::new(conv.stride, [top, left], conv.dilation, 1))
}

/// Run `conv` on `x` through [`ConvOps`], followed by a ReLU where `relu`.
/// Asymmetric padding (an even kernel with `same` padding) and grouped
/// convolutions use burn's module and burn's ReLU.
pub fn conv2d<B: ConvOps>(conv: &Conv2d<B>, x: Tensor<B, 4>, relu: bool) -> Tensor<B, 4> {
    let burns = |x| {
        let out = conv.forward(x);
        if relu {
            burn::tensor::activation::relu(out)
        } else {
            out
        }
    };
    let Some(options) = runner_options(conv, &x) else {
        return burns(x);
    };
    let weight = conv.weight.val().into_primitive().tensor();
    let bias = conv
        .bias
        .as_ref()
        .map(|b| b.val().into_primitive().tensor());
    let out = B::runner_conv2d(x.into_primitive().tensor(), weight, bias, options, relu);
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Autodiff;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Distribution, Tolerance};

    type AD = Autodiff<Flex>;

    /// Runner's convolution (with a fused ReLU where `relu`) against burn's
    /// module (then burn's ReLU): values and all three gradients.
    fn check(config: Conv2dConfig, input: [usize; 4]) {
        check_with(config.clone(), input, false);
        check_with(config, input, true);
    }

    fn check_with(config: Conv2dConfig, input: [usize; 4], relu: bool) {
        let device = Default::default();
        let conv: Conv2d<AD> = config.init(&device);
        let x = Tensor::<AD, 4>::random(input, Distribution::Default, &device).require_grad();
        let probe_shape = conv.forward(x.clone()).dims();
        let probe = Tensor::<AD, 4>::random(probe_shape, Distribution::Default, &device);

        // Same scalar objective through burn's convolution and through ours.
        let ours = (conv2d(&conv, x.clone(), relu) * probe.clone()).sum();
        let reference = conv.forward(x.clone());
        let reference = if relu {
            // Some outputs must be rectified, or the ReLU goes untested.
            let negative = reference.clone().lower_elem(0.0).int().sum().into_scalar();
            assert!(negative > 0, "no negative outputs to rectify");
            burn::tensor::activation::relu(reference)
        } else {
            reference
        };
        let theirs = (reference * probe).sum();
        ours.clone()
            .into_data()
            .assert_approx_eq::<f32>(&theirs.clone().into_data(), Tolerance::rel_abs(1e-4, 1e-4));

        let g_ours = ours.backward();
        let g_theirs = theirs.backward();
        let pairs = [
            (
                x.grad(&g_ours).map(|t| t.into_data()),
                x.grad(&g_theirs).map(|t| t.into_data()),
            ),
            (
                conv.weight.val().grad(&g_ours).map(|t| t.into_data()),
                conv.weight.val().grad(&g_theirs).map(|t| t.into_data()),
            ),
        ];
        for (a, b) in pairs {
            let (a, b) = (
                a.expect("gradient from runner's conv"),
                b.expect("gradient from burn's conv"),
            );
            a.assert_approx_eq::<f32>(&b, Tolerance::rel_abs(1e-3, 1e-3));
        }
        if let Some(bias) = &conv.bias {
            let a = bias.val().grad(&g_ours).expect("bias gradient").into_data();
            let b = bias
                .val()
                .grad(&g_theirs)
                .expect("bias gradient")
                .into_data();
            a.assert_approx_eq::<f32>(&b, Tolerance::rel_abs(1e-3, 1e-3));
        }
    }

    #[test]
    fn gradients_match_burns_convolution() {
        check(
            Conv2dConfig::new([3, 4], [3, 3]).with_padding(PaddingConfig2d::Same),
            [2, 3, 6, 5],
        );
        check(Conv2dConfig::new([2, 5], [5, 5]), [3, 2, 9, 9]);
        check(
            Conv2dConfig::new([2, 3], [3, 3])
                .with_stride([2, 2])
                .with_bias(false),
            [2, 2, 7, 8],
        );
        check(
            Conv2dConfig::new([2, 3], [3, 3])
                .with_dilation([2, 2])
                .with_padding(PaddingConfig2d::Explicit(2, 2, 2, 2)),
            [1, 2, 7, 7],
        );
    }

    #[test]
    fn inference_without_autodiff_matches_burn() {
        let device = Default::default();
        let conv: Conv2d<Flex> = Conv2dConfig::new([3, 8], [3, 3])
            .with_padding(PaddingConfig2d::Same)
            .init(&device);
        let x = Tensor::<Flex, 4>::random([2, 3, 10, 10], Distribution::Default, &device);
        conv2d(&conv, x.clone(), false)
            .into_data()
            .assert_approx_eq::<f32>(
                &conv.forward(x.clone()).into_data(),
                Tolerance::rel_abs(1e-4, 1e-4),
            );
        conv2d(&conv, x.clone(), true)
            .into_data()
            .assert_approx_eq::<f32>(
                &burn::tensor::activation::relu(conv.forward(x)).into_data(),
                Tolerance::rel_abs(1e-4, 1e-4),
            );
    }

    #[test]
    fn padding_pairs_follow_burn() {
        assert_eq!(
            padding_pairs(&PaddingConfig2d::Same, [128, 128], [3, 3], [1, 1]),
            ((1, 1), (1, 1))
        );
        assert_eq!(
            padding_pairs(&PaddingConfig2d::Same, [14, 14], [5, 5], [1, 1]),
            ((2, 2), (2, 2))
        );
        // An even kernel pads more at the end: the caller falls back to burn.
        assert_eq!(
            padding_pairs(&PaddingConfig2d::Same, [8, 8], [2, 2], [1, 1]),
            ((0, 1), (0, 1))
        );
        assert_eq!(
            padding_pairs(&PaddingConfig2d::Valid, [8, 8], [3, 3], [1, 1]),
            ((0, 0), (0, 0))
        );
    }
}
