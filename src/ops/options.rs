//! What the convolution and pooling extensions share: which gradients a
//! step needs, burn's padding arithmetic, and when burn's own modules run.

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::Autodiff;
use burn::nn::conv::Conv2d;
use burn::nn::PaddingConfig2d;
use burn::tensor::backend::Backend;
use burn::tensor::ops::{ConvOptions, FloatTensor};
use burn::tensor::Tensor;

/// Which gradients the backward pass must produce: input, weight, bias.
pub type Needed = [bool; 3];

/// Which of a convolution's input, weight and bias need a gradient.
pub(crate) fn needed<B: Backend, C: CheckpointStrategy>(
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

/// (before, after) padding per spatial dimension, as burn's `Conv2d` computes it.
pub(crate) fn padding_pairs(
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
pub(crate) fn runner_options<B: Backend>(
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

#[cfg(test)]
mod tests {
    use super::*;

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
