//! Average pooling and global average pooling as the plan builds them,
//! against values computed here from Keras's definitions: `same` padding
//! puts the odd pixel of padding at the bottom and right, and padded
//! pixels are not counted in the average.

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Tensor, TensorData};

use crate::model::layer::Layer;
use crate::plan::{LayerKind, LayerPlan};
use crate::plan::{LayerShape, ParamCount, Shape};
use crate::vocab::{InitializerKind, Padding};

type AD = Autodiff<Flex>;

fn layer(kind: LayerKind) -> Layer<AD> {
    let s = Shape::Flat(1);
    let plan = LayerPlan {
        name: "p".into(),
        kind,
        shape: LayerShape {
            input: s,
            output: s,
            params: ParamCount::default(),
        },
        trainable: true,
    };
    Layer::init(&plan, InitializerKind::GlorotUniform, &Default::default())
}

/// Keras's average pooling of one h x w map: output size and the window of
/// every output, clipped to the map (padding not counted).
fn keras_avg_pool(
    x: &[f64],
    h: usize,
    w: usize,
    pool: usize,
    stride: usize,
    same: bool,
) -> (usize, usize, Vec<Vec<usize>>) {
    let (oh, ow, top, left) = if same {
        let (oh, ow) = (h.div_ceil(stride), w.div_ceil(stride));
        let pad_h = ((oh - 1) * stride + pool).saturating_sub(h);
        let pad_w = ((ow - 1) * stride + pool).saturating_sub(w);
        (oh, ow, pad_h / 2, pad_w / 2)
    } else {
        ((h - pool) / stride + 1, (w - pool) / stride + 1, 0, 0)
    };
    let mut windows = Vec::new();
    for i in 0..oh {
        for j in 0..ow {
            let mut cells = Vec::new();
            for di in 0..pool {
                for dj in 0..pool {
                    let (r, c) = (
                        (i * stride + di) as isize - top as isize,
                        (j * stride + dj) as isize - left as isize,
                    );
                    if r >= 0 && c >= 0 && (r as usize) < h && (c as usize) < w {
                        cells.push(r as usize * w + c as usize);
                    }
                }
            }
            windows.push(cells);
        }
    }
    let _ = x;
    (oh, ow, windows)
}

#[test]
fn avg_pool2d_matches_keras_with_same_and_valid_padding() {
    let device = Default::default();
    let (h, w) = (5, 6);
    let x: Vec<f64> = (0..h * w)
        .map(|i| ((i * 5) % 11) as f64 - 3.0 + i as f64 * 0.1)
        .collect();
    for (pool, stride, same) in [
        (2, 2, true),
        (3, 2, true),
        (3, 1, true),
        (2, 2, false),
        (3, 2, false),
    ] {
        let Layer::AvgPool(p) = layer(LayerKind::AvgPool2d {
            pool: [pool, pool],
            stride: [stride, stride],
            padding: if same { Padding::Same } else { Padding::Valid },
        }) else {
            panic!("an average pooling layer")
        };
        let (oh, ow, windows) = keras_avg_pool(&x, h, w, pool, stride, same);
        let input = Tensor::<AD, 4>::from_data(
            TensorData::new(
                x.iter().map(|v| *v as f32).collect::<Vec<_>>(),
                [1, 1, h, w],
            ),
            &device,
        )
        .require_grad();
        let y = crate::ops::avg_pool::avg_pool2d(&p, input.clone());
        let case = format!("pool {pool} stride {stride} same {same}");
        assert_eq!(y.dims(), [1, 1, oh, ow], "{case}");
        let got: Vec<f32> = y.clone().into_data().to_vec().unwrap();
        for (k, cells) in windows.iter().enumerate() {
            let want = cells.iter().map(|&i| x[i]).sum::<f64>() / cells.len() as f64;
            assert!(
                (got[k] as f64 - want).abs() < 1e-5,
                "{case}: output {k}: {} vs {want}",
                got[k]
            );
        }
        // dL/dx for L = sum(y * g): each window spreads g / count over its cells.
        let g: Vec<f64> = (0..oh * ow).map(|k| 1.0 + k as f64 * 0.5).collect();
        let gt = Tensor::<AD, 4>::from_data(
            TensorData::new(
                g.iter().map(|v| *v as f32).collect::<Vec<_>>(),
                [1, 1, oh, ow],
            ),
            &device,
        );
        let grads = (y * gt).sum().backward();
        let mut want = vec![0.0; h * w];
        for (k, cells) in windows.iter().enumerate() {
            for &i in cells {
                want[i] += g[k] / cells.len() as f64;
            }
        }
        let got: Vec<f32> = input.grad(&grads).unwrap().into_data().to_vec().unwrap();
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!(
                (*a as f64 - b).abs() < 1e-5,
                "{case}: gradient {i}: {a} vs {b}"
            );
        }
    }
}

#[test]
fn global_avg_pool2d_is_the_mean_of_each_map() {
    let device = Default::default();
    let Layer::GlobalAvgPool(p) = layer(LayerKind::GlobalAvgPool2d) else {
        panic!("a global average pooling layer")
    };
    let (n, c, h, w) = (2, 3, 4, 5);
    let x: Vec<f32> = (0..n * c * h * w)
        .map(|i| ((i * 7) % 13) as f32 * 0.25 - 1.0)
        .collect();
    let input = Tensor::<AD, 4>::from_data(TensorData::new(x.clone(), [n, c, h, w]), &device)
        .require_grad();
    let y = p.forward(input.clone());
    assert_eq!(y.dims(), [n, c, 1, 1]);
    let got: Vec<f32> = y.clone().into_data().to_vec().unwrap();
    for (k, v) in got.iter().enumerate() {
        let want: f64 = x[k * h * w..(k + 1) * h * w]
            .iter()
            .map(|v| *v as f64)
            .sum::<f64>()
            / (h * w) as f64;
        assert!((*v as f64 - want).abs() < 1e-6, "map {k}: {v} vs {want}");
    }
    let g: Vec<f32> = (0..n * c).map(|k| k as f32 - 2.0).collect();
    let grads = (y * Tensor::<AD, 4>::from_data(TensorData::new(g.clone(), [n, c, 1, 1]), &device))
        .sum()
        .backward();
    let dx: Vec<f32> = input.grad(&grads).unwrap().into_data().to_vec().unwrap();
    for (i, v) in dx.iter().enumerate() {
        let want = g[i / (h * w)] as f64 / (h * w) as f64;
        assert!(
            (*v as f64 - want).abs() < 1e-7,
            "gradient {i}: {v} vs {want}"
        );
    }
}
