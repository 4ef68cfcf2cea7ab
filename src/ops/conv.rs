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
//! - `Flex`: runner's CPU kernels for the forward pass and both gradients
//!   (`cpu_kernels::conv`);
//! - the cubecl GPU backends (CUDA, wgpu): burn-cubecl's kernels with the
//!   strategy `RUNNER_GPU_CONV` names ([`super::cube`]);
//! - any other backend: burn's ops, unchanged ([`burn_conv_ops`]).
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
use burn::tensor::backend::Backend;
use burn::tensor::ops::{ConvOptions, FloatTensor, ModuleOps};
use burn::tensor::TensorMetadata;
use burn::tensor::{Shape, Tensor, TensorData, TensorPrimitive};

use cpu_kernels::conv as kernels;

use super::conv_pool::ConvPoolOps;
use super::flex::{flex_contiguous, flex_from, flex_geometry, flex_slice};
use super::options::{needed, runner_options, Needed};
use super::pool::PoolOps;

/// A backend's 2D convolution, forward and backward, optionally followed
/// by a ReLU in the same operation (a `conv2d` layer with `activation =
/// "relu"`; on `flex` the ReLU then runs inside the convolution's own
/// parallel passes instead of as separate serial ones). Only
/// stride, padding and dilation vary here; grouped convolutions go through
/// burn directly. Its supertrait [`PoolOps`] holds the max-pooling
/// counterpart.
pub trait ConvOps: PoolOps + ConvPoolOps {
    /// What the backward pass keeps from the forward pass besides the
    /// inputs: the rectified output where there is a ReLU.
    type ConvSaved: Clone + Send + Debug + 'static;

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
    /// `needed`), from the forward inputs `x` and `weight`.
    fn runner_conv2d_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
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
/// (`burn_conv_ops!(MyBackend)`) or a generic one
/// (`burn_conv_ops!(impl<B: FusionBackend> for Fusion<B>)`).
#[allow(unused_macros)]
macro_rules! burn_conv_ops {
    (impl<$($g:ident: $bound:path),*> for $ty:ty) => {
        impl<$($g: $bound),*> $crate::ops::pool::PoolOps for $ty {}
        impl<$($g: $bound),*> $crate::ops::conv_pool::ConvPoolOps for $ty {}
        impl<$($g: $bound),*> $crate::ops::conv::ConvOps for $ty {
            type ConvSaved = Option<burn::tensor::ops::FloatTensor<Self>>;
            fn runner_conv2d_tracked(
                x: burn::tensor::ops::FloatTensor<Self>,
                weight: burn::tensor::ops::FloatTensor<Self>,
                bias: Option<burn::tensor::ops::FloatTensor<Self>>,
                options: burn::tensor::ops::ConvOptions<2>,
                relu: bool,
                _needed: $crate::ops::options::Needed,
            ) -> (burn::tensor::ops::FloatTensor<Self>, Self::ConvSaved) {
                $crate::ops::conv::rectify::<Self>(<Self as burn::tensor::ops::ModuleOps<Self>>::conv2d(x, weight, bias, options), relu)
            }
            fn runner_conv2d_backward(
                x: burn::tensor::ops::FloatTensor<Self>,
                weight: burn::tensor::ops::FloatTensor<Self>,
                bias_len: Option<usize>,
                grad: burn::tensor::ops::FloatTensor<Self>,
                options: burn::tensor::ops::ConvOptions<2>,
                needed: $crate::ops::options::Needed,
                saved: Self::ConvSaved,
            ) -> [Option<burn::tensor::ops::FloatTensor<Self>>; 3] {
                let grad = $crate::ops::conv::unrectify::<Self>(grad, saved);
                $crate::ops::conv::burn_conv2d_backward::<Self>(x, weight, bias_len, grad, options, needed)
            }
        }
    };
    ($ty:ty) => {
        burn_conv_ops!(impl<> for $ty);
    };
}

#[allow(unused_imports)]
pub(super) use burn_conv_ops;

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
        let out = kernels::forward(
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
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias_len: Option<usize>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
        needed: Needed,
        saved: Self::ConvSaved,
    ) -> [Option<FloatTensor<Self>>; 3] {
        let Some(g) = flex_geometry(&x, &weight, &options) else {
            let grad = unrectify::<Self>(grad, saved);
            return burn_conv2d_backward::<Self>(x, weight, bias_len, grad, options, needed);
        };
        let grad = match saved {
            Some(out) => {
                let (out, grad) = (flex_contiguous(&out), flex_contiguous(&grad));
                let masked = kernels::relu_backward(flex_slice(&out), flex_slice(&grad));
                flex_from(masked, [g.batch, g.cout, g.out_h(), g.out_w()])
            }
            None => flex_contiguous(&grad),
        };
        let dx = needed[0].then(|| {
            let w = flex_contiguous(&weight);
            flex_from(
                kernels::backward_input(flex_slice(&w), flex_slice(&grad), &g),
                [g.batch, g.cin, g.h, g.w],
            )
        });
        let (dw, db) = if needed[1] || needed[2] {
            let x = flex_contiguous(&x);
            let (dw, db) = kernels::backward_weight(flex_slice(&x), flex_slice(&grad), &g);
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

// ---------------------------------------------------------------- autodiff

#[derive(Debug)]
struct ConvBackward<const N: usize>;

/// What the backward step keeps: checkpointed inputs, options, bias length,
/// which gradients are needed and the backend's own saved state.
#[derive(Debug, Clone)]
struct ConvState<S> {
    x: NodeId,
    weight: NodeId,
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
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(s.x);
        let w = checkpointer.retrieve_node_output::<FloatTensor<B>>(s.weight);
        let out = B::runner_conv2d_backward(x, w, s.bias_len, grad, s.options, s.needed, s.saved);
        for (parent, g) in ops.parents.iter().zip(out) {
            if let (Some(node), Some(g)) = (parent, g) {
                grads.register::<B>(node.id, g);
            }
        }
    }
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
            let (xs, ws) = (prep.checkpoint(&x), prep.checkpoint(&weight));
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
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias_len: Option<usize>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
        needed: Needed,
        saved: Self::ConvSaved,
    ) -> [Option<FloatTensor<Self>>; 3] {
        let grad = unrectify::<Self>(grad, saved);
        burn_conv2d_backward::<Self>(x, weight, bias_len, grad, options, needed)
    }
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
    use burn::nn::PaddingConfig2d;
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
}
