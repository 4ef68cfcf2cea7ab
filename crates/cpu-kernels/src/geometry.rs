//! The sizes of one convolution, and its three passes.

/// Sizes of one convolution. Weights are `[cout, cin, kh, kw]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub batch: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
}

impl Geometry {
    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.padding[0] - self.dilation[0] * (self.kh - 1) - 1) / self.stride[0] + 1
    }
    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.padding[1] - self.dilation[1] * (self.kw - 1) - 1) / self.stride[1] + 1
    }
    /// Rows of the column matrix: one per (input channel, kernel row, kernel column).
    pub(crate) fn rows(&self) -> usize {
        self.cin * self.kh * self.kw
    }
    /// Columns of the column matrix: one per output pixel.
    pub(crate) fn cols(&self) -> usize {
        self.out_h() * self.out_w()
    }
    pub(crate) fn in_len(&self) -> usize {
        self.cin * self.h * self.w
    }
    pub(crate) fn out_len(&self) -> usize {
        self.cout * self.cols()
    }
}

/// The three passes of a convolution: each picks its kernel on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    Forward,
    Input,
    Weight,
}
