//! Between burn-flex tensors and the CPU kernels' slices and geometries.

use burn::tensor::ops::ConvOptions;
use burn::tensor::TensorData;
use cpu_kernels::conv::Geometry;

/// The CPU kernels' geometry for input dimensions `x` and weight
/// dimensions `w` (`[cout, cin, kh, kw]`): one group, matching channels,
/// any stride/padding/dilation, the kernel inside the padded input.
pub(crate) fn dims_geometry(
    x: [usize; 4],
    w: [usize; 4],
    options: &ConvOptions<2>,
) -> Option<Geometry> {
    if options.groups != 1 || x[1] != w[1] {
        return None;
    }
    let g = Geometry {
        batch: x[0],
        cin: x[1],
        h: x[2],
        w: x[3],
        cout: w[0],
        kh: w[2],
        kw: w[3],
        stride: options.stride,
        padding: options.padding,
        dilation: options.dilation,
    };
    // The kernel must fit in the padded input.
    let fits = |size: usize, pad: usize, d: usize, k: usize| size + 2 * pad > d * (k - 1);
    (fits(g.h, g.padding[0], g.dilation[0], g.kh) && fits(g.w, g.padding[1], g.dilation[1], g.kw))
        .then_some(g)
}

/// A 4D tensor's dimensions.
pub(crate) fn flex_dims(t: &burn_flex::FlexTensor) -> Option<[usize; 4]> {
    let s = t.layout().shape();
    (s.num_dims() == 4).then(|| [s[0], s[1], s[2], s[3]])
}

/// The CPU kernels handle f32 tensors of [`dims_geometry`].
pub(crate) fn flex_geometry(
    x: &burn_flex::FlexTensor,
    w: &burn_flex::FlexTensor,
    options: &ConvOptions<2>,
) -> Option<Geometry> {
    let f32s = x.dtype() == burn::tensor::DType::F32 && w.dtype() == burn::tensor::DType::F32;
    match (flex_dims(x), flex_dims(w)) {
        (Some(xd), Some(wd)) if f32s => dims_geometry(xd, wd, options),
        _ => None,
    }
}

pub(crate) fn flex_contiguous(t: &burn_flex::FlexTensor) -> burn_flex::FlexTensor {
    t.to_contiguous()
}

pub(crate) fn flex_from(values: Vec<f32>, shape: [usize; 4]) -> burn_flex::FlexTensor {
    burn_flex::FlexTensor::from_data(TensorData::new(values, shape))
}

pub(crate) fn flex_slice(t: &burn_flex::FlexTensor) -> &[f32] {
    // `flex_f32` made it contiguous with offset 0, so this is the whole tensor.
    t.as_slice::<f32>().unwrap_or_else(|| t.storage::<f32>())
}
