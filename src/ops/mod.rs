//! The tensor operations the model asks for, routed per backend: burn's
//! own modules by default, and faster paths where we have them.
//!
//! - `flex` (CPU): runner's kernels (the `cpu_kernels` crate) for the
//!   convolution, its gradients, max pooling and the two fused;
//! - the cubecl GPU backends (CUDA, wgpu): burn-cubecl's convolution
//!   kernels with the strategy `RUNNER_GPU_CONV` names ([`cube`]);
//! - batch normalization with Keras's semantics ([`norm`]) and average
//!   pooling with burn 0.21's `same` padding mended ([`avg_pool`]) on
//!   every backend.
//!
//! Each extension is a trait on the backend ([`PoolOps`], [`ConvPoolOps`],
//! [`ConvOps`], which requires the other two) with an `Autodiff<B>`
//! implementation that records a custom backward step, so the model and
//! the training loop stay generic. [`conv_block`] is the entry point a
//! `conv2d` layer uses.
//!
//! Imports run one way: `conv` → `conv_pool` → `pool` → `options`, `flex`;
//! `cube` → `conv`.

pub mod avg_pool;
pub mod conv;
pub mod conv_pool;
#[cfg(feature = "gpu")]
pub mod cube;
mod flex;
pub mod norm;
pub mod options;
pub mod pool;

use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::tensor::Tensor;

pub use conv::ConvOps;
pub use conv_pool::ConvPoolOps;
pub use pool::PoolOps;

/// A `conv2d` layer's convolution on `x`, its ReLU where `relu`, and where
/// `pool` is given the max pooling right after it, each on the fastest path
/// the backend has:
///
/// - convolution, ReLU and a 2x2 pooling as one operation where the input
///   needs no gradient;
/// - with a wider pooling (3x3 and up) or a 2x2 one over a small map, as
///   one operation whose gradients come straight from the pooled gradient;
/// - otherwise the convolution, then the pooling with the ReLU inside it
///   (on a quarter of the values, its mask free with the argmax);
/// - without a pooling, the ReLU inside the convolution (one pass each way).
///
/// Other activations are the caller's, between the convolution and any
/// pooling: pass `pool` only with `relu`, or with no activation at all.
pub fn conv_block<B: ConvOps>(
    conv: &Conv2d<B>,
    relu: bool,
    pool: Option<&MaxPool2d>,
    x: Tensor<B, 4>,
) -> Tensor<B, 4> {
    let Some(p) = pool else {
        return conv::conv2d(conv, x, relu);
    };
    if !relu {
        return pool::max_pool2d(p, conv::conv2d(conv, x, false), false);
    }
    let x = match conv_pool::conv2d_relu_max_pool(conv, p, x) {
        Ok(out) => return out,
        Err(x) => x,
    };
    let x = match conv_pool::conv2d_relu_max_pool_sparse(conv, p, x) {
        Ok(out) => return out,
        Err(x) => x,
    };
    pool::max_pool2d(p, conv::conv2d(conv, x, false), true)
}
