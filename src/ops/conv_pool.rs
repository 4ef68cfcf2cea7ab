//! A `conv2d` layer with a ReLU and the `max_pool2d` after it as one
//! operation, two ways:
//!
//! - with a 2x2, stride-2 pooling, where its input needs no gradient (the
//!   network's first layer) and the backend has a kernel for it (`flex`:
//!   `cpu_kernels::conv_pool`): a direct convolution pooled in registers,
//!   whose backward step produces the weight and bias gradients from the
//!   pooled gradient and the argmax bytes alone;
//! - with any pooling the backend's sparse gradients pay for (`flex`:
//!   windows of 9 or more outputs, or 2x2 over small maps): the same
//!   convolution and pooling forward (only the outputs the pooling reads),
//!   and a backward step that takes the input, weight and bias gradients
//!   straight from the pooled gradient ([`super::pool_grad_cpu`]).
//!
//! Like [`super::conv`] and [`super::pool`], this is a backend extension
//! ([`ConvPoolOps`]) whose defaults say "not here": the network then runs
//! the convolution and the pooling separately. `Autodiff<B>` records the
//! backward steps.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, Flex};
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::tensor::ops::{ConvOptions, FloatTensor};
use burn::tensor::{Tensor, TensorData, TensorMetadata, TensorPrimitive};

use cpu_kernels::conv::{self as conv_kernels, Geometry};
use cpu_kernels::{conv_pool as kernels, pool as pool_kernels, pool_grad};

use super::flex::{
    dims_geometry, flex_contiguous, flex_dims, flex_from, flex_geometry, flex_slice,
};
use super::options::{needed, runner_options, Needed};
use super::pool::{geometry as pool_geometry, runner_window, Argmax, PoolOps, PoolWindow};

/// A backend's fused convolution + ReLU + 2x2 max pooling. The defaults say
/// "none".
pub trait ConvPoolOps: PoolOps {
    /// Whether [`runner_conv_relu_pool`](Self::runner_conv_relu_pool)
    /// handles input `x`, `weight` and `options`; only asked where `x`
    /// needs no gradient.
    fn runner_conv_relu_pool_supported(
        _x: &FloatTensor<Self>,
        _weight: &FloatTensor<Self>,
        _options: &ConvOptions<2>,
    ) -> bool {
        false
    }

    /// The pooled, rectified convolution and where each maximum came from
    /// (as [`PoolOps::runner_max_pool2d`] with its ReLU).
    fn runner_conv_relu_pool(
        _x: FloatTensor<Self>,
        _weight: FloatTensor<Self>,
        _bias: Option<FloatTensor<Self>>,
        _options: ConvOptions<2>,
    ) -> (FloatTensor<Self>, Argmax) {
        unreachable!("runner_conv_relu_pool called on a backend without it")
    }

    /// Whether [`runner_conv_pool_sparse`](Self::runner_conv_pool_sparse)
    /// handles input `x`, `weight`, `options` and pooling `window`.
    fn runner_conv_pool_sparse_supported(
        _x: &FloatTensor<Self>,
        _weight: &FloatTensor<Self>,
        _options: &ConvOptions<2>,
        _window: &PoolWindow,
    ) -> bool {
        false
    }

    /// The convolution, then its max pooling with the ReLU: the pooled
    /// values and where each maximum came from, for
    /// [`runner_conv_pool_sparse_backward`](Self::runner_conv_pool_sparse_backward).
    fn runner_conv_pool_sparse(
        _x: FloatTensor<Self>,
        _weight: FloatTensor<Self>,
        _bias: Option<FloatTensor<Self>>,
        _options: ConvOptions<2>,
        _window: PoolWindow,
    ) -> (FloatTensor<Self>, Argmax) {
        unreachable!("runner_conv_pool_sparse called on a backend without it")
    }

    /// Input, weight and bias gradients (`None` where not `needed`) from the
    /// pooled gradient and the argmax bytes alone.
    #[allow(clippy::too_many_arguments)]
    fn runner_conv_pool_sparse_backward(
        _x: FloatTensor<Self>,
        _weight: FloatTensor<Self>,
        _grad: FloatTensor<Self>,
        _argmax: &Argmax,
        _options: ConvOptions<2>,
        _window: PoolWindow,
        _needed: Needed,
    ) -> [Option<FloatTensor<Self>>; 3] {
        unreachable!("runner_conv_pool_sparse_backward called on a backend without it")
    }

    /// Weight and (where `bias`) bias gradients from the pooled output's
    /// gradient.
    fn runner_conv_relu_pool_backward(
        _x: FloatTensor<Self>,
        _grad: FloatTensor<Self>,
        _argmax: &Argmax,
        _weight_dims: [usize; 4],
        _options: ConvOptions<2>,
        _bias: bool,
    ) -> (FloatTensor<Self>, Option<FloatTensor<Self>>) {
        unreachable!("runner_conv_relu_pool_backward called on a backend without it")
    }
}

/// The kernels' geometry: a convolution the CPU kernels take
/// ([`dims_geometry`]) that the fused kernels take too.
fn geometry(x: [usize; 4], w: [usize; 4], options: &ConvOptions<2>) -> Option<Geometry> {
    dims_geometry(x, w, options).filter(kernels::supported)
}

impl ConvPoolOps for Flex {
    fn runner_conv_relu_pool_supported(
        x: &FloatTensor<Self>,
        weight: &FloatTensor<Self>,
        options: &ConvOptions<2>,
    ) -> bool {
        kernels::vectorized()
            && flex_geometry(x, weight, options)
                .filter(kernels::supported)
                .is_some()
    }

    fn runner_conv_relu_pool(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvOptions<2>,
    ) -> (FloatTensor<Self>, Argmax) {
        let Some(g) = flex_geometry(&x, &weight, &options).filter(kernels::supported) else {
            unreachable!("checked by runner_conv_relu_pool_supported")
        };
        let (x, w) = (flex_contiguous(&x), flex_contiguous(&weight));
        let b = bias.as_ref().map(flex_contiguous);
        let (out, arg) = kernels::forward(
            flex_slice(&x),
            flex_slice(&w),
            b.as_ref().map(flex_slice),
            &g,
        );
        let [ph, pw] = kernels::pooled(&g);
        (flex_from(out, [g.batch, g.cout, ph, pw]), arg.into())
    }

    fn runner_conv_relu_pool_backward(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        argmax: &Argmax,
        weight_dims: [usize; 4],
        options: ConvOptions<2>,
        bias: bool,
    ) -> (FloatTensor<Self>, Option<FloatTensor<Self>>) {
        let Some(g) = flex_dims(&x).and_then(|xd| geometry(xd, weight_dims, &options)) else {
            unreachable!("the forward pass checked the geometry")
        };
        let (x, grad) = (flex_contiguous(&x), flex_contiguous(&grad));
        let (dw, db) = kernels::backward(flex_slice(&x), flex_slice(&grad), argmax, &g);
        let db = bias.then(|| burn_flex::FlexTensor::from_data(TensorData::new(db, [g.cout])));
        (flex_from(dw, weight_dims), db)
    }

    fn runner_conv_pool_sparse_supported(
        x: &FloatTensor<Self>,
        weight: &FloatTensor<Self>,
        options: &ConvOptions<2>,
        window: &PoolWindow,
    ) -> bool {
        flex_geometry(x, weight, options).is_some_and(|g| sparse_pays(&g, window))
    }

    fn runner_conv_pool_sparse(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvOptions<2>,
        window: PoolWindow,
    ) -> (FloatTensor<Self>, Argmax) {
        let Some(full) = flex_geometry(&x, &weight, &options) else {
            unreachable!("checked by runner_conv_pool_sparse_supported")
        };
        let (x, w) = (flex_contiguous(&x), flex_contiguous(&weight));
        let b = bias.as_ref().map(flex_contiguous);
        // Only the convolution outputs the pooling reads: the top-left
        // corner of the input.
        let g = read_region(&full, &window);
        let (x, w, b) = (flex_slice(&x), flex_slice(&w), b.as_ref().map(flex_slice));
        let out = conv_kernels::forward_corner(x, [full.h, full.w], w, b, false, &g);
        let p = pool_geometry([g.batch, g.cout, g.out_h(), g.out_w()], &window);
        let (pooled, arg) = pool_kernels::max_forward(&out, &p, true);
        (
            flex_from(pooled, [g.batch, g.cout, p.out_h(), p.out_w()]),
            arg.into(),
        )
    }

    fn runner_conv_pool_sparse_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        argmax: &Argmax,
        options: ConvOptions<2>,
        window: PoolWindow,
        needed: Needed,
    ) -> [Option<FloatTensor<Self>>; 3] {
        let Some(full) = flex_geometry(&x, &weight, &options) else {
            unreachable!("the forward pass checked the geometry")
        };
        let g = read_region(&full, &window);
        let plane = [full.h, full.w];
        let p = pool_geometry([g.batch, g.cout, g.out_h(), g.out_w()], &window);
        let grad = flex_contiguous(&grad);
        let hits = pool_grad::Hits::new(flex_slice(&grad), argmax, &g, &p);
        let dx = needed[0].then(|| {
            let w = flex_contiguous(&weight);
            let dx = pool_grad::backward_input(flex_slice(&w), &hits, &g, &p, plane);
            flex_from(dx, [g.batch, g.cin, full.h, full.w])
        });
        let (dw, db) = match needed[1] || needed[2] {
            true => {
                let x = flex_contiguous(&x);
                let (dw, db) = pool_grad::backward_weight(flex_slice(&x), plane, &hits, &g, &p);
                let dw = flex_from(dw, [g.cout, g.cin, g.kh, g.kw]);
                let db = burn_flex::FlexTensor::from_data(TensorData::new(db, [g.cout]));
                (
                    Some(dw).filter(|_| needed[1]),
                    Some(db).filter(|_| needed[2]),
                )
            }
            false => (None, None),
        };
        [dx, dw, db]
    }
}

/// The convolution cut to what `window` reads ([`pool_grad::read_region`]:
/// the top-left corner of the input), or `g` whole.
fn read_region(g: &Geometry, window: &PoolWindow) -> Geometry {
    match window.padding == [0, 0] {
        true => pool_grad::read_region(g, window.kernel, window.stride).unwrap_or(*g),
        false => *g,
    }
}

/// Whether the sparse gradients beat the dense ones for convolution `g`
/// and pooling `window` on the CPU (measured, bench/FINDINGS.md): pooling
/// windows of 9 or more outputs, where they do a ninth or less of the dense
/// arithmetic (the tutorial's 4x4: the gradients in about a third of the
/// time), and 2x2 windows over inputs of at most 1,024 pixels, whose
/// channel blocks stay in the core's first-level cache (the Fashion CNN's
/// second layer, 13x13: whole runs about 18 % faster); on larger maps a 2x2
/// pooling's gradients are faster through the GEMMs. And a pooling the
/// kernels take.
fn sparse_pays(g: &Geometry, window: &PoolWindow) -> bool {
    let p = pool_geometry([g.batch, g.cout, g.out_h(), g.out_w()], window);
    let area = window.kernel[0] * window.kernel[1];
    let small = g.h * g.w <= 1024;
    (area >= 9 || (area >= 4 && small)) && pool_grad::fits(g, &p)
}

#[derive(Debug)]
struct ConvPoolBackward<const N: usize>;

/// What the backward step keeps: the (untracked) input, the argmax bytes,
/// the weight's dimensions and the options.
#[derive(Debug, Clone)]
struct ConvPoolState<T> {
    x: T,
    argmax: Argmax,
    weight_dims: [usize; 4],
    options: ConvOptions<2>,
}

impl<B: ConvPoolOps, const N: usize> Backward<B, N> for ConvPoolBackward<N> {
    type State = ConvPoolState<FloatTensor<B>>;

    fn backward(
        self,
        ops: Ops<Self::State, N>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<B>(&ops.node);
        let s = ops.state;
        // Parents: the weight, then the bias where N is 2.
        let (dw, db) = B::runner_conv_relu_pool_backward(
            s.x,
            grad,
            &s.argmax,
            s.weight_dims,
            s.options,
            N == 2,
        );
        if let Some(node) = &ops.parents[0] {
            grads.register::<B>(node.id, dw);
        }
        if let (Some(Some(node)), Some(db)) = (ops.parents.get(1), db) {
            grads.register::<B>(node.id, db);
        }
    }
}

/// Record operation `op` on the autodiff tape with `inputs` as its `N`
/// parents: `forward` computes the pooled output and its argmax bytes, and
/// `state` makes what the backward step keeps (only where it will run).
fn record_pooled<B, C, O, const N: usize>(
    op: O,
    inputs: &[&FloatTensor<Autodiff<B, C>>],
    forward: impl FnOnce() -> (FloatTensor<B>, Argmax),
    state: impl FnOnce(Argmax) -> O::State,
) -> (FloatTensor<Autodiff<B, C>>, Argmax)
where
    B: ConvPoolOps,
    C: CheckpointStrategy,
    O: Backward<B, N>,
{
    let parents: Vec<_> = inputs.iter().map(|t| t.node.clone()).collect();
    let Ok(nodes) = <[_; N]>::try_from(parents) else {
        unreachable!("one parent per input")
    };
    let prep = op.prepare::<C>(nodes).compute_bound().stateful();
    let (out, argmax) = forward();
    match prep {
        OpsKind::Tracked(prep) => (prep.finish(state(argmax.clone()), out), argmax),
        OpsKind::UnTracked(prep) => (prep.finish(out), argmax),
    }
}

/// Record the fused operation on the autodiff tape; its `N` parents are the
/// weight and, where `N` is 2, the bias.
fn record<B: ConvPoolOps, C: CheckpointStrategy, const N: usize>(
    x: FloatTensor<Autodiff<B, C>>,
    weight: FloatTensor<Autodiff<B, C>>,
    bias: Option<FloatTensor<Autodiff<B, C>>>,
    options: ConvOptions<2>,
) -> (FloatTensor<Autodiff<B, C>>, Argmax) {
    let inputs: Vec<_> = [Some(&weight), bias.as_ref()]
        .into_iter()
        .flatten()
        .collect();
    let shape = weight.primitive.shape();
    let weight_dims = [shape[0], shape[1], shape[2], shape[3]];
    let (xp, wp) = (x.primitive.clone(), weight.primitive.clone());
    let bp = bias.as_ref().map(|b| b.primitive.clone());
    let state_options = options.clone();
    record_pooled::<B, C, _, N>(
        ConvPoolBackward::<N>,
        &inputs,
        || B::runner_conv_relu_pool(xp, wp, bp, options),
        |argmax| ConvPoolState {
            x: x.primitive.clone(),
            argmax,
            weight_dims,
            options: state_options,
        },
    )
}

impl<B: ConvPoolOps, C: CheckpointStrategy> ConvPoolOps for Autodiff<B, C> {
    fn runner_conv_relu_pool_supported(
        x: &FloatTensor<Self>,
        weight: &FloatTensor<Self>,
        options: &ConvOptions<2>,
    ) -> bool {
        // The backward step produces no input gradient.
        x.node.requirement.is_none()
            && B::runner_conv_relu_pool_supported(&x.primitive, &weight.primitive, options)
    }

    fn runner_conv_relu_pool(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvOptions<2>,
    ) -> (FloatTensor<Self>, Argmax) {
        match bias {
            Some(_) => record::<B, C, 2>(x, weight, bias, options),
            None => record::<B, C, 1>(x, weight, bias, options),
        }
    }

    fn runner_conv_pool_sparse_supported(
        x: &FloatTensor<Self>,
        weight: &FloatTensor<Self>,
        options: &ConvOptions<2>,
        window: &PoolWindow,
    ) -> bool {
        B::runner_conv_pool_sparse_supported(&x.primitive, &weight.primitive, options, window)
    }

    fn runner_conv_pool_sparse(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvOptions<2>,
        window: PoolWindow,
    ) -> (FloatTensor<Self>, Argmax) {
        match bias {
            Some(_) => record_sparse::<B, C, 3>(x, weight, bias, options, window),
            None => record_sparse::<B, C, 2>(x, weight, bias, options, window),
        }
    }
    // No backward passes of their own: nested autodiff (second-order
    // gradients) is not supported, and runner never builds
    // `Autodiff<Autodiff<_>>`, whose backward step would reach the
    // `unreachable!` default of the inner `Autodiff`.
}

#[derive(Debug)]
struct SparseBackward<const N: usize>;

/// What the sparse backward step keeps: the input, the weight, the argmax
/// bytes, the convolution and pooling, and which gradients are needed.
#[derive(Debug, Clone)]
struct SparseState<T> {
    x: T,
    weight: T,
    argmax: Argmax,
    options: ConvOptions<2>,
    window: PoolWindow,
    needed: Needed,
}

impl<B: ConvPoolOps, const N: usize> Backward<B, N> for SparseBackward<N> {
    type State = SparseState<FloatTensor<B>>;

    fn backward(
        self,
        ops: Ops<Self::State, N>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<B>(&ops.node);
        let s = ops.state;
        let out = B::runner_conv_pool_sparse_backward(
            s.x, s.weight, grad, &s.argmax, s.options, s.window, s.needed,
        );
        // Parents: the input, the weight, then the bias where N is 3.
        for (parent, g) in ops.parents.iter().zip(out) {
            if let (Some(node), Some(g)) = (parent, g) {
                grads.register::<B>(node.id, g);
            }
        }
    }
}

/// Record the convolution and its pooling on the autodiff tape as one
/// operation; its `N` parents are the input, the weight and, where `N` is
/// 3, the bias.
fn record_sparse<B: ConvPoolOps, C: CheckpointStrategy, const N: usize>(
    x: FloatTensor<Autodiff<B, C>>,
    weight: FloatTensor<Autodiff<B, C>>,
    bias: Option<FloatTensor<Autodiff<B, C>>>,
    options: ConvOptions<2>,
    window: PoolWindow,
) -> (FloatTensor<Autodiff<B, C>>, Argmax) {
    let inputs: Vec<_> = [Some(&x), Some(&weight), bias.as_ref()]
        .into_iter()
        .flatten()
        .collect();
    let needed = needed::<B, C>(&x, &weight, bias.as_ref());
    let (xp, wp) = (x.primitive.clone(), weight.primitive.clone());
    let bp = bias.as_ref().map(|b| b.primitive.clone());
    let state_options = options.clone();
    record_pooled::<B, C, _, N>(
        SparseBackward::<N>,
        &inputs,
        || B::runner_conv_pool_sparse(xp, wp, bp, options, window),
        |argmax| SparseState {
            x: x.primitive.clone(),
            weight: weight.primitive.clone(),
            argmax,
            options: state_options,
            window,
            needed,
        },
    )
}

/// `conv` (whose activation is a ReLU) then `pool` on `x` as one fused
/// operation, where the pooling is a 2x2 window with stride 2 and no
/// padding, `x` needs no gradient and the backend has a kernel for it;
/// otherwise `x` comes back unchanged for the separate path.
pub fn conv2d_relu_max_pool<B: ConvPoolOps>(
    conv: &Conv2d<B>,
    pool: &MaxPool2d,
    x: Tensor<B, 4>,
) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    const TWO_BY_TWO: PoolWindow = PoolWindow {
        kernel: [2, 2],
        stride: [2, 2],
        padding: [0, 0],
    };
    let plain_pool = runner_window(pool, &x) == Some(TWO_BY_TWO);
    let Some(options) = runner_options(conv, &x).filter(|_| plain_pool) else {
        return Err(x);
    };
    let weight = conv.weight.val().into_primitive().tensor();
    let xp = x.into_primitive().tensor();
    if !B::runner_conv_relu_pool_supported(&xp, &weight, &options) {
        return Err(Tensor::from_primitive(TensorPrimitive::Float(xp)));
    }
    let bias = conv
        .bias
        .as_ref()
        .map(|b| b.val().into_primitive().tensor());
    let (out, _) = B::runner_conv_relu_pool(xp, weight, bias, options);
    Ok(Tensor::from_primitive(TensorPrimitive::Float(out)))
}

/// `conv` (whose activation is a ReLU) then `pool` on `x` as one operation
/// whose backward pass takes the convolution's gradients straight from the
/// pooled gradient ([`super::pool_grad_cpu`]), where the backend offers it
/// for this convolution and pooling; otherwise `x` comes back unchanged.
pub fn conv2d_relu_max_pool_sparse<B: ConvPoolOps>(
    conv: &Conv2d<B>,
    pool: &MaxPool2d,
    x: Tensor<B, 4>,
) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    let (Some(window), Some(options)) = (runner_window(pool, &x), runner_options(conv, &x)) else {
        return Err(x);
    };
    let weight = conv.weight.val().into_primitive().tensor();
    let xp = x.into_primitive().tensor();
    if !B::runner_conv_pool_sparse_supported(&xp, &weight, &options, &window) {
        return Err(Tensor::from_primitive(TensorPrimitive::Float(xp)));
    }
    let bias = conv
        .bias
        .as_ref()
        .map(|b| b.val().into_primitive().tensor());
    let (out, _) = B::runner_conv_pool_sparse(xp, weight, bias, options, window);
    Ok(Tensor::from_primitive(TensorPrimitive::Float(out)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::conv::Conv2dConfig;
    use burn::nn::pool::MaxPool2dConfig;
    use burn::nn::PaddingConfig2d;
    use burn::tensor::{activation, Distribution, Tolerance};

    type AD = Autodiff<Flex>;

    /// The fused operation against burn's convolution, ReLU and pooling:
    /// the pooled values and the weight and bias gradients.
    fn check(config: Conv2dConfig, input: [usize; 4]) {
        let device = Default::default();
        let conv: Conv2d<AD> = config.init(&device);
        let pool = MaxPool2dConfig::new([2, 2]).init();
        let x = Tensor::<AD, 4>::random(input, Distribution::Uniform(-1.0, 1.0), &device);
        let Ok(ours) = conv2d_relu_max_pool(&conv, &pool, x.clone()) else {
            panic!("the fused operation applies to {config:?} on {input:?}")
        };
        let theirs = pool.forward(activation::relu(conv.forward(x)));
        assert_eq!(ours.dims(), theirs.dims());
        ours.clone()
            .into_data()
            .assert_approx_eq::<f32>(&theirs.clone().into_data(), Tolerance::rel_abs(1e-5, 1e-5));
        let probe = Tensor::<AD, 4>::random(ours.dims(), Distribution::Default, &device);
        let g_ours = (ours * probe.clone()).sum().backward();
        let g_theirs = (theirs * probe).sum().backward();
        let data = |t: Option<Tensor<Flex, 4>>| t.map(|t| t.into_data());
        let data1 = |t: Option<Tensor<Flex, 1>>| t.map(|t| t.into_data());
        let bias = conv.bias.as_ref().expect("a bias");
        let pairs = [
            (
                data(conv.weight.grad(&g_ours)),
                data(conv.weight.grad(&g_theirs)),
            ),
            (data1(bias.grad(&g_ours)), data1(bias.grad(&g_theirs))),
        ];
        for (a, b) in pairs {
            let (Some(a), Some(b)) = (a, b) else {
                panic!("both paths produce the weight and bias gradients")
            };
            a.assert_approx_eq::<f32>(&b, Tolerance::rel_abs(1e-4, 1e-4));
        }
    }

    #[test]
    fn values_and_parameter_gradients_match_burns_layers() {
        if !kernels::vectorized() {
            println!(
                "skipped: no AVX-512 on this CPU; the fused operation is only offered with it"
            );
            return;
        }
        check(Conv2dConfig::new([1, 8], [3, 3]), [4, 1, 28, 28]);
        check(
            Conv2dConfig::new([3, 4], [3, 3]).with_padding(PaddingConfig2d::Same),
            [2, 3, 9, 12],
        );
    }

    /// The sparse-gradient operation against burn's convolution, ReLU and
    /// pooling: values and the input, weight and bias gradients.
    fn check_sparse(config: Conv2dConfig, input: [usize; 4], pool: MaxPool2dConfig) {
        let device = Default::default();
        let conv: Conv2d<AD> = config.init(&device);
        let pool = pool.init();
        let x = Tensor::<AD, 4>::random(input, Distribution::Uniform(-1.0, 1.0), &device)
            .require_grad();
        let Ok(ours) = conv2d_relu_max_pool_sparse(&conv, &pool, x.clone()) else {
            panic!("the sparse operation applies to {config:?} on {input:?}")
        };
        let theirs = pool.forward(activation::relu(conv.forward(x.clone())));
        assert_eq!(ours.dims(), theirs.dims());
        ours.clone()
            .into_data()
            .assert_approx_eq::<f32>(&theirs.clone().into_data(), Tolerance::rel_abs(1e-5, 1e-5));
        let probe = Tensor::<AD, 4>::random(ours.dims(), Distribution::Default, &device);
        let g_ours = (ours * probe.clone()).sum().backward();
        let g_theirs = (theirs * probe).sum().backward();
        let bias = conv.bias.as_ref().expect("a bias");
        let pairs = [
            (
                x.grad(&g_ours).map(|t| t.into_data()),
                x.grad(&g_theirs).map(|t| t.into_data()),
            ),
            (
                conv.weight.grad(&g_ours).map(|t| t.into_data()),
                conv.weight.grad(&g_theirs).map(|t| t.into_data()),
            ),
            (
                bias.grad(&g_ours).map(|t| t.into_data()),
                bias.grad(&g_theirs).map(|t| t.into_data()),
            ),
        ];
        for (a, b) in pairs {
            let (Some(a), Some(b)) = (a, b) else {
                panic!("both paths produce the input, weight and bias gradients")
            };
            a.assert_approx_eq::<f32>(&b, Tolerance::rel_abs(1e-4, 1e-4));
        }
    }

    #[test]
    fn sparse_gradients_match_burns_layers() {
        // The tutorial's last block in small: 5x5 kernels, a 4x4 pooling.
        check_sparse(
            Conv2dConfig::new([20, 6], [5, 5]),
            [2, 20, 10, 10],
            MaxPool2dConfig::new([4, 4]),
        );
        // `same` padding, a 3x3 pooling with stride 2 (overlapping windows).
        check_sparse(
            Conv2dConfig::new([3, 4], [3, 3]).with_padding(PaddingConfig2d::Same),
            [2, 3, 9, 9],
            MaxPool2dConfig::new([3, 3]).with_strides([2, 2]),
        );
        // The Fashion CNN's second layer in small: a 2x2 pooling of 11x11
        // (the last row and column unread), a small map.
        check_sparse(
            Conv2dConfig::new([8, 16], [3, 3]),
            [2, 8, 13, 13],
            MaxPool2dConfig::new([2, 2]),
        );
        // 2x2 poolings of large maps keep the dense path.
        let conv: Conv2d<AD> = Conv2dConfig::new([3, 4], [3, 3]).init(&Default::default());
        let x = Tensor::<AD, 4>::zeros([1, 3, 40, 40], &Default::default());
        let two = MaxPool2dConfig::new([2, 2]).init();
        assert!(conv2d_relu_max_pool_sparse(&conv, &two, x).is_err());
    }

    #[test]
    fn an_input_that_needs_a_gradient_or_another_pooling_is_handed_back() {
        let device = Default::default();
        let conv: Conv2d<AD> = Conv2dConfig::new([1, 2], [3, 3]).init(&device);
        let x = Tensor::<AD, 4>::random([1, 1, 8, 8], Distribution::Default, &device);
        let pool = MaxPool2dConfig::new([2, 2]).init();
        assert!(conv2d_relu_max_pool(&conv, &pool, x.clone().require_grad()).is_err());
        let wide = MaxPool2dConfig::new([3, 3]).init();
        assert!(conv2d_relu_max_pool(&conv, &wide, x.clone()).is_err());
        let strided: Conv2d<AD> = Conv2dConfig::new([1, 2], [3, 3])
            .with_stride([2, 2])
            .init(&device);
        assert!(conv2d_relu_max_pool(&strided, &pool, x.clone()).is_err());
        // The same call without autodiff (validation) takes it where it can.
        let plain: Conv2d<Flex> = Conv2dConfig::new([1, 2], [3, 3]).init(&device);
        let xp = Tensor::<Flex, 4>::random([1, 1, 8, 8], Distribution::Default, &device);
        assert_eq!(
            conv2d_relu_max_pool(&plain, &pool, xp).is_ok(),
            kernels::vectorized()
        );
    }
}
