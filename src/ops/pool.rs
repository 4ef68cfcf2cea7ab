//! The max pooling every `max_pool2d` layer runs, with a faster path on
//! `flex` (`cpu_kernels::pool`) and burn's own pooling everywhere else.
//!
//! Like [`super::conv`], this is a backend extension ([`PoolOps`]): burn's
//! behaviour by default, runner's kernels where they exist, and an
//! `Autodiff<B>` implementation that records its own backward step (the
//! gradient goes to the element each maximum came from, remembered as one
//! byte per output instead of burn-flex's `i64` index).
//!
//! A ReLU can be fused into the pooling ([`max_pool2d`]'s `relu`): pooling
//! then rectifying equals rectifying then pooling (both keep the largest
//! positive value, and its gradient reaches the same element; only a window
//! holding a NaN differs: 0 here, its largest other value there), but the ReLU
//! then touches a quarter of the values (2x2 windows) and its backward mask
//! comes free with the argmax. The network uses it for a `conv2d` with
//! `activation = "relu"` followed by a `max_pool2d`.

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, Flex};
use burn::nn::pool::MaxPool2d;
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{activation, Tensor, TensorMetadata, TensorPrimitive};

use cpu_kernels::pool::{self as kernels, PoolGeometry};

use super::flex::{flex_contiguous, flex_from, flex_slice};
use super::options::{burn_kernels_forced, padding_pairs};

/// A max-pooling window: size, stride and (symmetric) padding per spatial dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolWindow {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
}

/// Which element of its window each output came from (row-major window
/// position), as recorded by the forward pass.
pub type Argmax = Arc<Vec<u8>>;

/// A backend's 2D max pooling, where runner has its own kernels. The
/// defaults say "none": callers then use burn's pooling.
pub trait PoolOps: Backend {
    /// Whether [`runner_max_pool2d`](Self::runner_max_pool2d) handles `x` with `window`.
    fn runner_max_pool2d_supported(_x: &FloatTensor<Self>, _window: &PoolWindow) -> bool {
        false
    }

    /// The pooled tensor (rectified where `relu`) and where each maximum
    /// came from ([`kernels::NO_GRADIENT`] where the ReLU cut it off). Only
    /// called when [`runner_max_pool2d_supported`](Self::runner_max_pool2d_supported) said yes.
    fn runner_max_pool2d(
        _x: FloatTensor<Self>,
        _window: PoolWindow,
        _relu: bool,
    ) -> (FloatTensor<Self>, Argmax) {
        unreachable!("runner_max_pool2d called on a backend without runner's pooling")
    }

    /// The input gradient of [`runner_max_pool2d`](Self::runner_max_pool2d)
    /// for an input of shape `dims`.
    fn runner_max_pool2d_backward(
        _grad: FloatTensor<Self>,
        _argmax: &Argmax,
        _dims: [usize; 4],
        _window: PoolWindow,
    ) -> FloatTensor<Self> {
        unreachable!("runner_max_pool2d_backward called on a backend without runner's pooling")
    }
}

fn dims4(shape: &burn::tensor::Shape) -> Option<[usize; 4]> {
    (shape.num_dims() == 4).then(|| [shape[0], shape[1], shape[2], shape[3]])
}

pub(super) fn geometry(dims: [usize; 4], window: &PoolWindow) -> PoolGeometry {
    PoolGeometry {
        planes: dims[0] * dims[1],
        h: dims[2],
        w: dims[3],
        kh: window.kernel[0],
        kw: window.kernel[1],
        stride: window.stride,
        padding: window.padding,
    }
}

impl PoolOps for Flex {
    fn runner_max_pool2d_supported(x: &FloatTensor<Self>, window: &PoolWindow) -> bool {
        x.dtype() == burn::tensor::DType::F32
            && dims4(&x.shape()).is_some_and(|d| geometry(d, window).supported())
    }

    fn runner_max_pool2d(
        x: FloatTensor<Self>,
        window: PoolWindow,
        relu: bool,
    ) -> (FloatTensor<Self>, Argmax) {
        let Some(dims) = dims4(&x.shape()) else {
            unreachable!("checked by runner_max_pool2d_supported")
        };
        let g = geometry(dims, &window);
        let x = flex_contiguous(&x);
        let (out, arg) = kernels::max_forward(flex_slice(&x), &g, relu);
        (
            flex_from(out, [dims[0], dims[1], g.out_h(), g.out_w()]),
            arg.into(),
        )
    }

    fn runner_max_pool2d_backward(
        grad: FloatTensor<Self>,
        argmax: &Argmax,
        dims: [usize; 4],
        window: PoolWindow,
    ) -> FloatTensor<Self> {
        let g = geometry(dims, &window);
        let grad = flex_contiguous(&grad);
        flex_from(kernels::max_backward(flex_slice(&grad), argmax, &g), dims)
    }
}

#[derive(Debug)]
struct MaxPoolBackward;

#[derive(Debug, Clone)]
struct MaxPoolState {
    argmax: Argmax,
    dims: [usize; 4],
    window: PoolWindow,
}

impl<B: PoolOps> Backward<B, 1> for MaxPoolBackward {
    type State = MaxPoolState;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<B>(&ops.node);
        let s = ops.state;
        if let Some(parent) = &ops.parents[0] {
            grads.register::<B>(
                parent.id,
                B::runner_max_pool2d_backward(grad, &s.argmax, s.dims, s.window),
            );
        }
    }
}

impl<B: PoolOps, C: CheckpointStrategy> PoolOps for Autodiff<B, C> {
    fn runner_max_pool2d_supported(x: &FloatTensor<Self>, window: &PoolWindow) -> bool {
        B::runner_max_pool2d_supported(&x.primitive, window)
    }

    fn runner_max_pool2d(
        x: FloatTensor<Self>,
        window: PoolWindow,
        relu: bool,
    ) -> (FloatTensor<Self>, Argmax) {
        let dims = dims4(&x.primitive.shape());
        match MaxPoolBackward
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let Some(dims) = dims else {
                    unreachable!("checked by runner_max_pool2d_supported")
                };
                let (out, argmax) = B::runner_max_pool2d(x.primitive, window, relu);
                let state = MaxPoolState {
                    argmax: argmax.clone(),
                    dims,
                    window,
                };
                (prep.finish(state, out), argmax)
            }
            OpsKind::UnTracked(prep) => {
                let (out, argmax) = B::runner_max_pool2d(x.primitive, window, relu);
                (prep.finish(out), argmax)
            }
        }
    }
    // Second-order gradients through pooling are not supported: runner
    // never builds `Autodiff<Autodiff<_>>`, whose backward step would reach
    // the `unreachable!` default of the inner `Autodiff`.
}

/// The window of `pool` on `x` for runner's kernels, or `None` where burn's
/// pooling must run it: `RUNNER_CONV=burn`, dilation, ceil mode or
/// asymmetric padding.
pub(super) fn runner_window<B: Backend>(pool: &MaxPool2d, x: &Tensor<B, 4>) -> Option<PoolWindow> {
    if burn_kernels_forced() || pool.dilation != [1, 1] || pool.ceil_mode {
        return None;
    }
    let [_, _, h, w] = x.dims();
    let ((top, bottom), (left, right)) =
        padding_pairs(&pool.padding, [h, w], pool.kernel_size, pool.stride);
    (top == bottom && left == right).then_some(PoolWindow {
        kernel: pool.kernel_size,
        stride: pool.stride,
        padding: [top, left],
    })
}

/// Run `pool` on `x`, then a ReLU where `relu`, through runner's kernels
/// where the backend has them and the pooling is plain (dilation 1, floor
/// mode, symmetric padding); burn's pooling and ReLU otherwise.
pub fn max_pool2d<B: PoolOps>(pool: &MaxPool2d, x: Tensor<B, 4>, relu: bool) -> Tensor<B, 4> {
    let burns = |x: Tensor<B, 4>| {
        let out = pool.forward(x);
        if relu {
            activation::relu(out)
        } else {
            out
        }
    };
    let Some(window) = runner_window(pool, &x) else {
        return burns(x);
    };
    let x = x.into_primitive().tensor();
    if !B::runner_max_pool2d_supported(&x, &window) {
        return burns(Tensor::from_primitive(TensorPrimitive::Float(x)));
    }
    Tensor::from_primitive(TensorPrimitive::Float(
        B::runner_max_pool2d(x, window, relu).0,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::pool::MaxPool2dConfig;
    use burn::nn::PaddingConfig2d;
    use burn::tensor::{Distribution, Tolerance};

    type AD = Autodiff<Flex>;

    /// Values and input gradients equal burn's pooling (random inputs have
    /// no ties), and with the fused ReLU those of burn's ReLU then pooling.
    fn check(pool: MaxPool2d, input: [usize; 4]) {
        check_with(&pool, input, false);
        check_with(&pool, input, true);
    }

    fn check_with(pool: &MaxPool2d, input: [usize; 4], relu: bool) {
        let device = Default::default();
        let x = Tensor::<AD, 4>::random(input, Distribution::Uniform(-1.0, 1.0), &device)
            .require_grad();
        let ours = max_pool2d(pool, x.clone(), relu);
        let theirs = if relu {
            pool.forward(activation::relu(x.clone()))
        } else {
            pool.forward(x.clone())
        };
        assert_eq!(ours.dims(), theirs.dims());
        ours.clone()
            .into_data()
            .assert_eq(&theirs.clone().into_data(), true);
        let probe = Tensor::<AD, 4>::random(ours.dims(), Distribution::Default, &device);
        let g_ours = (ours * probe.clone()).sum().backward();
        let g_theirs = (theirs * probe).sum().backward();
        let (a, b) = (
            x.grad(&g_ours).expect("our gradient"),
            x.grad(&g_theirs).expect("burn's gradient"),
        );
        a.into_data()
            .assert_approx_eq::<f32>(&b.into_data(), Tolerance::rel_abs(1e-6, 1e-6));
    }

    #[test]
    fn values_and_gradients_match_burns_pooling() {
        check(MaxPool2dConfig::new([2, 2]).init(), [2, 3, 7, 8]);
        check(
            MaxPool2dConfig::new([3, 3]).with_strides([2, 2]).init(),
            [1, 2, 9, 9],
        );
        check(
            MaxPool2dConfig::new([3, 3]).with_strides([1, 1]).init(),
            [2, 2, 6, 5],
        );
        check(
            MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            [1, 2, 8, 7],
        );
        // Asymmetric `same` padding and dilation take burn's path; still equal.
        check(
            MaxPool2dConfig::new([2, 2])
                .with_padding(PaddingConfig2d::Same)
                .init(),
            [1, 1, 5, 5],
        );
        check(
            MaxPool2dConfig::new([2, 2]).with_dilation([2, 2]).init(),
            [1, 1, 6, 6],
        );
    }

    #[test]
    fn inference_without_autodiff_matches_burn() {
        let device = Default::default();
        let pool = MaxPool2dConfig::new([2, 2]).init();
        let x = Tensor::<Flex, 4>::random([2, 4, 10, 11], Distribution::Default, &device);
        let ours = max_pool2d(&pool, x.clone(), false);
        assert!(Flex::runner_max_pool2d_supported(
            &x.clone().into_primitive().tensor(),
            &PoolWindow {
                kernel: [2, 2],
                stride: [2, 2],
                padding: [0, 0]
            }
        ));
        ours.into_data()
            .assert_eq(&pool.forward(x).into_data(), true);
    }
}
