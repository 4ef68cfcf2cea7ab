//! Average pooling with Keras's `same` padding: the odd pixel of padding
//! goes to the bottom and right, and padded pixels are never counted in the
//! average. burn's `AvgPool2d` pads such asymmetric cases with explicit
//! zeros that it then counts (burn issue #4362): a 2x2 pool with stride 2
//! over 5 rows halved the last row's averages. Those cases are computed
//! here as a sum over the padded input divided by the count of real pixels.

use burn::nn::pool::AvgPool2d;
use burn::tensor::backend::Backend;
use burn::tensor::module::avg_pool2d as pool_op;
use burn::tensor::ops::PadMode;
use burn::tensor::Tensor;

pub fn avg_pool2d<B: Backend>(p: &AvgPool2d, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [_, _, h, w] = x.dims();
    let ((top, bottom), (left, right)) =
        super::options::padding_pairs(&p.padding, [h, w], p.kernel_size, p.stride);
    if top == bottom && left == right {
        return p.forward(x);
    }
    let pool = |t: Tensor<B, 4>| {
        pool_op(
            t.pad((left, right, top, bottom), PadMode::Constant(0.0)),
            p.kernel_size,
            p.stride,
            [0, 0],
            true,
            p.ceil_mode,
        )
    };
    // (sum / k) / (count / k): the mean over the window's real pixels.
    let ones = Tensor::<B, 4>::ones([1, 1, h, w], &x.device());
    pool(x) / pool(ones)
}
