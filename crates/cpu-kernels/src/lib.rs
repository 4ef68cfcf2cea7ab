//! runner's CPU kernels: convolution, max pooling and the two fused into
//! one pass, forward and backward, on plain `f32` slices in NCHW order with
//! a geometry beside them. No tensor library: burn's autodiff reaches these
//! through runner's `ops` module.
//!
//! - [`conv`]: convolution forward pass and both gradients, each
//!   dispatched to the kernel that runs its geometry fastest (Winograd,
//!   register-tiled direct kernels on AVX-512, im2col + GEMM everywhere);
//! - [`pool`]: max pooling with a byte argmax per output, ReLU folded in;
//! - [`conv_pool`]: a convolution, its ReLU and a 2x2 max pooling in one
//!   pass, and its gradients;
//! - [`pool_grad`]: a convolution's gradients straight from the gradient
//!   of the max pooling after it, touching only the pooled maxima.
//!
//! The vector kernels need AVX-512F (checked at run time); elsewhere the
//! portable paths run. Every kernel is checked against im2col + GEMM or a
//! naive definition by its tests.

pub mod conv;
pub mod conv_pool;
mod geometry;
mod par;
pub mod pool;
pub mod pool_grad;
#[cfg(test)]
mod test_util;
