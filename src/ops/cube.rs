//! runner's convolution hook ([`ConvOps`]) on burn's cubecl backends (CUDA,
//! wgpu), with and without burn's fusion wrapper.
//!
//! - `CubeBackend<R, ..>` (fusion off): the forward pass and both gradients
//!   call burn-cubecl's convolution kernels with the strategy that
//!   [`gpu::settings`] names (`RUNNER_GPU_CONV`): autotune (burn's default
//!   when autotune is compiled in), implicit GEMM, or direct. A strategy
//!   that cannot run a shape falls back to the direct kernel, then to
//!   burn's own operation.
//! - `Fusion<B>` (fusion on): burn's operations, which the fusion stream
//!   records and hands to the backend's autotuned kernels.
//!
//! Pooling has no runner kernels on a GPU: [`PoolOps`] and [`ConvPoolOps`]
//! keep their defaults, so burn's pooling runs.

use burn::tensor::ops::{ConvOptions, FloatTensor, ModuleOps};
use burn::tensor::TensorMetadata;
use burn_cubecl::kernel::conv::{
    conv_data_backward, conv_forward, conv_weight_backward, ConvStrategy,
};
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
use burn_fusion::{Fusion, FusionBackend};

use super::conv::{bias_backward, burn_conv_ops, rectify, unrectify, ConvOps};
use super::conv_pool::ConvPoolOps;
use super::options::Needed;
use super::pool::PoolOps;
use crate::gpu::{self, ConvKernels};

/// The explicit strategies to try, in order, for the configured kernels;
/// empty means burn's own operation (autotuned).
fn strategies() -> Vec<ConvStrategy> {
    match gpu::settings().conv {
        ConvKernels::Autotune => Vec::new(),
        ConvKernels::ImplicitGemm => vec![ConvStrategy::ImplicitGemm, ConvStrategy::Direct],
        ConvKernels::Direct => vec![ConvStrategy::Direct],
    }
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> PoolOps
    for CubeBackend<R, F, I, BT>
{
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> ConvPoolOps
    for CubeBackend<R, F, I, BT>
{
}

/// The first of the configured strategies that runs `kernel`, else
/// `fallback` (burn's own operation).
fn with_strategies<T, E>(
    kernel: impl Fn(ConvStrategy) -> Result<T, E>,
    fallback: impl FnOnce() -> T,
) -> T {
    strategies()
        .into_iter()
        .find_map(|s| kernel(s).ok())
        .unwrap_or_else(fallback)
}

/// The forward convolution with the configured kernels.
fn forward<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    x: CubeTensor<R>,
    weight: CubeTensor<R>,
    bias: Option<CubeTensor<R>>,
    options: ConvOptions<2>,
) -> CubeTensor<R> {
    with_strategies(
        |s| conv_forward::<R, 2>(x.clone(), weight.clone(), bias.clone(), options.clone(), s),
        || {
            <CubeBackend<R, F, I, BT> as ModuleOps<_>>::conv2d(
                x.clone(),
                weight.clone(),
                bias.clone(),
                options.clone(),
            )
        },
    )
}

/// The input gradient with the configured kernels.
fn data_backward<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    x: CubeTensor<R>,
    weight: CubeTensor<R>,
    grad: CubeTensor<R>,
    options: ConvOptions<2>,
) -> CubeTensor<R> {
    with_strategies(
        |s| conv_data_backward::<R, 2>(grad.clone(), weight.clone(), x.shape(), options.clone(), s),
        || {
            <CubeBackend<R, F, I, BT> as ModuleOps<_>>::conv2d_x_backward(
                x.clone(),
                weight.clone(),
                grad.clone(),
                options.clone(),
            )
        },
    )
}

/// The weight gradient with the configured kernels.
fn weight_backward<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    x: CubeTensor<R>,
    weight: CubeTensor<R>,
    grad: CubeTensor<R>,
    options: ConvOptions<2>,
) -> CubeTensor<R> {
    with_strategies(
        |s| {
            conv_weight_backward::<R, 2>(
                x.clone(),
                grad.clone(),
                weight.shape(),
                options.clone(),
                s,
            )
        },
        || {
            <CubeBackend<R, F, I, BT> as ModuleOps<_>>::conv2d_weight_backward(
                x.clone(),
                weight.clone(),
                grad.clone(),
                options.clone(),
            )
        },
    )
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> ConvOps
    for CubeBackend<R, F, I, BT>
{
    type ConvSaved = Option<FloatTensor<Self>>;

    fn runner_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvOptions<2>,
        relu: bool,
    ) -> FloatTensor<Self> {
        rectify::<Self>(forward::<R, F, I, BT>(x, weight, bias, options), relu).0
    }

    fn runner_conv2d_tracked(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvOptions<2>,
        relu: bool,
        _needed: Needed,
    ) -> (FloatTensor<Self>, Self::ConvSaved) {
        rectify::<Self>(forward::<R, F, I, BT>(x, weight, bias, options), relu)
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
        let dx = needed[0].then(|| {
            data_backward::<R, F, I, BT>(x.clone(), weight.clone(), grad.clone(), options.clone())
        });
        let db = bias_backward::<Self>(&x, &grad, bias_len, needed[2]);
        let dw = needed[1].then(|| weight_backward::<R, F, I, BT>(x, weight, grad, options));
        [dx, dw, db]
    }
}

burn_conv_ops!(impl<B: FusionBackend> for Fusion<B>);
