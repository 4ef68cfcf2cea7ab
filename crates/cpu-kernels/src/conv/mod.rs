//! 2D convolution, forward and both gradients, on plain `f32` slices in
//! NCHW order (groups 1; any stride, padding and dilation for the GEMM
//! kernel, narrower geometries for the others).
//!
//! [`forward`], [`backward_input`] and [`backward_weight`] pick, per
//! geometry and pass, the first [`Kernel`] that computes it and pays there
//! (thresholds measured with runner's `examples/conv_ops`); im2col + GEMM
//! runs everything the others leave. Benchmarks and tests name a kernel
//! with [`Kernel::forward`] and its siblings.

mod direct;
mod gemm;
mod lanes;
mod winograd3;
mod winograd5;

use rayon::prelude::*;

pub use crate::geometry::{Geometry, Pass};

/// The convolution kernels, in the order [`kernel_for`] tries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// A direct convolution with its output in registers (AVX-512), for
    /// few input channels: forward pass only.
    Direct,
    /// Winograd F(4x4, 3x3) over the lanes kernel's register tiles.
    Winograd3,
    /// Winograd F(2x2, 5x5).
    Winograd5,
    /// Direct convolution as register-tiled outer products (AVX-512).
    Lanes,
    /// im2col + GEMM: every geometry, every CPU.
    Gemm,
}

impl Kernel {
    /// Every kernel, in the order [`kernel_for`] tries them.
    pub const ALL: [Kernel; 5] = [
        Kernel::Direct,
        Kernel::Winograd3,
        Kernel::Winograd5,
        Kernel::Lanes,
        Kernel::Gemm,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kernel::Direct => "direct",
            Kernel::Winograd3 => "winograd 3x3",
            Kernel::Winograd5 => "winograd 5x5",
            Kernel::Lanes => "lanes",
            Kernel::Gemm => "gemm",
        }
    }

    /// Whether this kernel computes `pass` of `g` on this CPU.
    pub fn supports(self, g: &Geometry, pass: Pass) -> bool {
        match (self, pass) {
            (Kernel::Gemm, _) => true,
            (Kernel::Direct, Pass::Forward) => direct::supported(g),
            (Kernel::Direct, _) => false,
            (Kernel::Winograd3, Pass::Input) => winograd3::transposable(g),
            (Kernel::Winograd3, _) => winograd3::supported(g),
            (Kernel::Winograd5, Pass::Input) => winograd5::transposable(g),
            (Kernel::Winograd5, _) => winograd5::supported(g),
            (Kernel::Lanes, Pass::Input) => lanes::transposable(g),
            (Kernel::Lanes, _) => lanes::supported(g),
        }
    }

    /// Whether this kernel is measured to beat the ones after it on `pass`
    /// of `g` (where it [`supports`](Kernel::supports) it).
    pub fn pays(self, g: &Geometry, pass: Pass) -> bool {
        match self {
            Kernel::Gemm => true,
            Kernel::Direct => pass == Pass::Forward && direct::pays(g),
            Kernel::Winograd3 => winograd3::pays(g, pass),
            Kernel::Winograd5 => winograd5::pays(g, pass),
            Kernel::Lanes => lanes::pays(g, pass),
        }
    }

    /// The forward pass on the top-left `g.h x g.w` corner of input planes
    /// of `plane` pixels (see [`forward_corner`]). Panics where the kernel
    /// does not [`support`](Kernel::supports) the forward pass of `g`.
    pub fn forward(
        self,
        x: &[f32],
        plane: [usize; 2],
        weight: &[f32],
        bias: Option<&[f32]>,
        relu: bool,
        g: &Geometry,
    ) -> Vec<f32> {
        assert!(
            self.supports(g, Pass::Forward),
            "{} cannot run {g:?}",
            self.name()
        );
        match self {
            Kernel::Direct => direct::forward(x, plane, weight, bias, relu, g),
            Kernel::Winograd3 => winograd3::forward(x, plane, weight, bias, relu, g),
            Kernel::Winograd5 => winograd5::forward(x, plane, weight, bias, relu, g),
            Kernel::Lanes => lanes::forward(x, plane, weight, bias, relu, g),
            Kernel::Gemm => gemm::forward_corner_gemm(x, plane, weight, bias, relu, g),
        }
    }

    /// The input gradient (see [`backward_input`]). Panics where the
    /// kernel does not support this pass of `g`.
    pub fn backward_input(self, weight: &[f32], grad: &[f32], g: &Geometry) -> Vec<f32> {
        assert!(
            self.supports(g, Pass::Input),
            "{} cannot run {g:?}",
            self.name()
        );
        match self {
            Kernel::Winograd3 => winograd3::backward_input(weight, grad, g),
            Kernel::Winograd5 => winograd5::backward_input(weight, grad, g),
            Kernel::Lanes => lanes::backward_input(weight, grad, g),
            Kernel::Gemm | Kernel::Direct => gemm::backward_input_gemm(weight, grad, g),
        }
    }

    /// The weight and bias gradients (see [`backward_weight`]). Panics
    /// where the kernel does not support this pass of `g`.
    pub fn backward_weight(self, x: &[f32], grad: &[f32], g: &Geometry) -> (Vec<f32>, Vec<f32>) {
        assert!(
            self.supports(g, Pass::Weight),
            "{} cannot run {g:?}",
            self.name()
        );
        match self {
            Kernel::Winograd3 => winograd3::backward_weight(x, grad, g),
            Kernel::Winograd5 => winograd5::backward_weight(x, grad, g),
            Kernel::Lanes => lanes::backward_weight(x, grad, g),
            Kernel::Gemm | Kernel::Direct => gemm::backward_weight_gemm(x, grad, g),
        }
    }
}

/// The kernel that runs `pass` of `g`: the first that supports it and pays.
pub fn kernel_for(g: &Geometry, pass: Pass) -> Kernel {
    Kernel::ALL
        .into_iter()
        .find(|k| k.supports(g, pass) && k.pays(g, pass))
        .unwrap_or(Kernel::Gemm)
}

/// Forward pass: `[batch, cout, oh, ow]` from `x: [batch, cin, h, w]`,
/// plus the bias and, where `relu`, a ReLU fused into the same pass.
pub fn forward(
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    g: &Geometry,
) -> Vec<f32> {
    forward_corner(x, [g.h, g.w], weight, bias, relu, g)
}

/// [`forward`] on the top-left `h x w` corner of input planes of `plane`
/// (`>= [h, w]`) pixels: the direct kernels read the corner in place,
/// im2col + GEMM a cropped copy.
pub fn forward_corner(
    x: &[f32],
    plane: [usize; 2],
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    g: &Geometry,
) -> Vec<f32> {
    assert!(plane[0] >= g.h && plane[1] >= g.w);
    assert_eq!(x.len(), g.batch * g.cin * plane[0] * plane[1]);
    kernel_for(g, Pass::Forward).forward(x, plane, weight, bias, relu, g)
}

/// Weight and bias gradients: (`[cout, cin, kh, kw]`, `[cout]`).
pub fn backward_weight(x: &[f32], grad: &[f32], g: &Geometry) -> (Vec<f32>, Vec<f32>) {
    kernel_for(g, Pass::Weight).backward_weight(x, grad, g)
}

/// Input gradient: `[batch, cin, h, w]`.
pub fn backward_input(weight: &[f32], grad: &[f32], g: &Geometry) -> Vec<f32> {
    kernel_for(g, Pass::Input).backward_input(weight, grad, g)
}

/// The gradient through a fused ReLU: `grad` where the forward output
/// `out` is positive, 0 elsewhere (burn's `relu_backward`), in parallel.
pub fn relu_backward(out: &[f32], grad: &[f32]) -> Vec<f32> {
    assert_eq!(out.len(), grad.len());
    out.par_iter()
        .with_min_len(1 << 14)
        .zip(grad)
        .map(|(o, g)| if *o > 0.0 { *g } else { 0.0 })
        .collect()
}
