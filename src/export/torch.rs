//! The trained layer stack as a PyTorch `nn.Sequential`: its modules as
//! Python source, and its state dict under the names that Sequential's
//! `load_state_dict` expects (`0.weight`, `0.bias`, `3.running_mean`, ...).
//!
//! One runner layer becomes one or more modules, in order, so the indices
//! count every module:
//! - `conv2d`: `nn.Conv2d`, after an `nn.ZeroPad2d` where `same` padding is
//!   uneven, then its activation's module unless it is linear;
//! - `max_pool2d`, `avg_pool2d`: `nn.MaxPool2d`, `nn.AvgPool2d` (with
//!   `count_include_pad=False`, as Keras averages), `same` padding as
//!   PyTorch's symmetric `padding` and `ceil_mode`;
//! - `global_avg_pool2d`: `nn.AdaptiveAvgPool2d(1)`, `nn.Flatten()`;
//! - `dropout`: `nn.Dropout`; `flatten`: `nn.Flatten()`;
//! - `dense`: `nn.Linear` (weight `[out, in]`, burn's `[in, out]`
//!   transposed), then its activation's module unless it is linear;
//! - `batch_norm`: `nn.BatchNorm2d` on a feature map, `nn.BatchNorm1d` on a
//!   vector, with the moving statistics as `running_mean`/`running_var`;
//! - `activation`: its module (`nn.Identity()` for linear).
//!
//! The Sequential ends in logits, as PyTorch classifiers do: a final softmax
//! that training folded into the loss is left out.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::graph::pads;
use crate::model::layer::{Act, ActKind, Layer};
use crate::model::Net;
use crate::plan::{LayerKind, ModelPlan, Shape};

/// The values of one state-dict entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// One state-dict entry of a module: `weight`, `bias`, `running_mean`, ...
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub name: &'static str,
    pub shape: Vec<usize>,
    pub values: Values,
}

/// One module of the Sequential.
#[derive(Debug, Clone, PartialEq)]
pub struct TorchModule {
    /// The Python expression that builds it, e.g. `nn.ReLU()`.
    pub code: String,
    /// The runner layer it comes from, and which part of it.
    pub comment: String,
    pub entries: Vec<Entry>,
}

/// The Sequential of a layer stack.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequential {
    pub modules: Vec<TorchModule>,
}

/// A layer with no `nn.Sequential` form.
#[derive(Debug, Clone, PartialEq)]
pub struct NoTorchForm {
    pub layer: String,
    pub reason: String,
}

impl Sequential {
    /// Every state-dict entry under its full name (`<index>.<name>`).
    pub fn state_dict(&self) -> impl Iterator<Item = (String, &Entry)> {
        self.modules.iter().enumerate().flat_map(|(i, m)| {
            m.entries
                .iter()
                .map(move |e| (format!("{i}.{}", e.name), e))
        })
    }

    /// The body of `nn.Sequential(...)`: one module per line, each with its
    /// index and the runner layer it comes from.
    pub fn python(&self) -> String {
        let mut out = String::from("nn.Sequential(\n");
        for (i, m) in self.modules.iter().enumerate() {
            out.push_str(&format!("        {},  # {i}: {}\n", m.code, m.comment));
        }
        out.push_str("    )");
        out
    }
}

/// A float as Python source: the shortest text that reads back as the
/// value rounded to 12 significant digits (so 1 - 0.99 prints as 0.01).
fn py_float(x: f64) -> String {
    let rounded: f64 = format!("{x:.11e}").parse().unwrap_or(x);
    let text = format!("{rounded:?}");
    if text.contains(['.', 'e', 'E']) || !text.chars().all(|c| c.is_ascii_digit() || c == '-') {
        text
    } else {
        format!("{text}.0")
    }
}

fn pair(v: [usize; 2]) -> String {
    format!("({}, {})", v[0], v[1])
}

fn f32_entry<B: Backend, const D: usize>(name: &'static str, t: Tensor<B, D>) -> Entry {
    let shape = t.dims().to_vec();
    let data = t.into_data().convert::<f32>();
    Entry {
        name,
        shape,
        values: Values::F32(data.to_vec::<f32>().unwrap_or_default()),
    }
}

/// The module of an activation; `None` for linear.
fn activation(act: &Act) -> Option<&'static str> {
    Some(match act.kind {
        ActKind::Linear => return None,
        ActKind::Relu => "nn.ReLU()",
        ActKind::Sigmoid => "nn.Sigmoid()",
        ActKind::Tanh => "nn.Tanh()",
        ActKind::Softmax => "nn.Softmax(dim=1)",
        // burn's GELU is the exact one (erf), PyTorch's default.
        ActKind::Gelu => "nn.GELU()",
        ActKind::LeakyRelu => "nn.LeakyReLU(0.2)",
    })
}

/// A pooling window's `same` padding `[top, left, bottom, right]` in
/// PyTorch's form: a symmetric `padding` and `ceil_mode` that give the same
/// windows (PyTorch starts them at `-padding`, as TensorFlow's rule starts
/// them at `-top`, and with `ceil_mode` adds a last one that hangs over the
/// bottom or right edge, whose pixels outside the image count for neither
/// side). `None` where no such pair exists.
fn pool_padding(
    input: [usize; 2],
    window: [usize; 2],
    stride: [usize; 2],
    pads: &[i64],
) -> Option<([usize; 2], bool)> {
    let p = [pads[0] as usize, pads[1] as usize];
    let out = |i: usize| {
        (input[i] + pads[i] as usize + pads[i + 2] as usize)
            .checked_sub(window[i])
            .map(|span| span / stride[i] + 1)
    };
    [false, true].into_iter().find_map(|ceil| {
        let fits = (0..2).all(|i| {
            let Some(span) = (input[i] + 2 * p[i]).checked_sub(window[i]) else {
                return false;
            };
            let mut n = if ceil {
                span.div_ceil(stride[i])
            } else {
                span / stride[i]
            } + 1;
            // PyTorch drops a last window that would start in the padding.
            if ceil && (n - 1) * stride[i] >= input[i] + p[i] {
                n -= 1;
            }
            // PyTorch allows at most half a window of padding.
            Some(n) == out(i) && 2 * p[i] <= window[i]
        });
        fits.then_some((p, ceil))
    })
}

struct Builder {
    modules: Vec<TorchModule>,
}

impl Builder {
    fn push(&mut self, code: impl Into<String>, comment: impl Into<String>, entries: Vec<Entry>) {
        self.modules.push(TorchModule {
            code: code.into(),
            comment: comment.into(),
            entries,
        });
    }

    fn activation(&mut self, name: &str, act: &Act) {
        if let Some(code) = activation(act) {
            self.push(code, format!("{name}'s activation"), vec![]);
        }
    }
}

/// The Sequential of `net`, whose layers are those of `plan` in order.
pub fn build<B: Backend>(plan: &ModelPlan, net: &Net<B>) -> Result<Sequential, NoTorchForm> {
    let mut b = Builder {
        modules: Vec::new(),
    };
    for (lp, layer) in plan.layers.iter().zip(&net.layers) {
        let name = lp.name.as_str();
        let hw = match lp.shape.input {
            Shape::Map { h, w, .. } => [h, w],
            Shape::Flat(_) => [1, 1],
        };
        match (&lp.kind, layer) {
            (
                LayerKind::Conv2d {
                    in_channels,
                    filters,
                    kernel,
                    stride,
                    padding,
                    use_bias,
                    ..
                },
                Layer::Conv(cl),
            ) => {
                let pd = pads(*padding, hw, *kernel, *stride);
                let symmetric = pd[0] == pd[2] && pd[1] == pd[3];
                if !symmetric {
                    // (left, right, top, bottom)
                    b.push(
                        format!("nn.ZeroPad2d(({}, {}, {}, {}))", pd[1], pd[3], pd[0], pd[2]),
                        format!("{name}'s uneven `same` padding"),
                        vec![],
                    );
                }
                let padding = if symmetric { [pd[0], pd[1]] } else { [0, 0] };
                let mut entries = vec![f32_entry("weight", cl.conv.weight.val())];
                if let Some(bias) = &cl.conv.bias {
                    entries.push(f32_entry("bias", bias.val()));
                }
                b.push(
                    format!(
                        "nn.Conv2d({in_channels}, {filters}, kernel_size={}, stride={}, padding=({}, {}), bias={})",
                        pair(*kernel),
                        pair(*stride),
                        padding[0],
                        padding[1],
                        if *use_bias { "True" } else { "False" }
                    ),
                    name,
                    entries,
                );
                b.activation(name, &cl.act);
            }
            (
                LayerKind::MaxPool2d {
                    pool,
                    stride,
                    padding,
                },
                _,
            )
            | (
                LayerKind::AvgPool2d {
                    pool,
                    stride,
                    padding,
                },
                _,
            ) => {
                let avg = matches!(lp.kind, LayerKind::AvgPool2d { .. });
                let pd = pads(*padding, hw, *pool, *stride);
                let (p, ceil) = match pool_padding(hw, *pool, *stride, &pd) {
                    Some(form) => form,
                    None if !avg => {
                        // Pad with -inf, which a maximum never picks.
                        b.push(
                            format!(
                                "nn.ConstantPad2d(({}, {}, {}, {}), float(\"-inf\"))",
                                pd[1], pd[3], pd[0], pd[2]
                            ),
                            format!("{name}'s uneven `same` padding"),
                            vec![],
                        );
                        ([0, 0], false)
                    }
                    None => {
                        return Err(NoTorchForm {
                            layer: name.to_string(),
                            reason: format!(
                                "its `same` padding (top, left, bottom, right = {pd:?}) on a {}x{} input has no nn.AvgPool2d form that leaves the padding out of the average",
                                hw[0], hw[1]
                            ),
                        })
                    }
                };
                let ceil = if ceil { ", ceil_mode=True" } else { "" };
                let code = if avg {
                    format!(
                        "nn.AvgPool2d(kernel_size={}, stride={}, padding={}{ceil}, count_include_pad=False)",
                        pair(*pool),
                        pair(*stride),
                        pair(p)
                    )
                } else {
                    format!(
                        "nn.MaxPool2d(kernel_size={}, stride={}, padding={}{ceil})",
                        pair(*pool),
                        pair(*stride),
                        pair(p)
                    )
                };
                b.push(code, name, vec![]);
            }
            (LayerKind::GlobalAvgPool2d, _) => {
                b.push("nn.AdaptiveAvgPool2d(1)", name, vec![]);
                b.push("nn.Flatten()", format!("{name}'s flatten"), vec![]);
            }
            (LayerKind::Dropout { rate }, _) => {
                b.push(format!("nn.Dropout(p={})", py_float(*rate)), name, vec![]);
            }
            (LayerKind::Flatten, _) => b.push("nn.Flatten()", name, vec![]),
            (
                LayerKind::Dense {
                    in_features,
                    units,
                    use_bias,
                    ..
                },
                Layer::Dense(d),
            ) => {
                let mut entries = vec![f32_entry("weight", d.linear.weight.val().transpose())];
                if let Some(bias) = &d.linear.bias {
                    entries.push(f32_entry("bias", bias.val()));
                }
                b.push(
                    format!(
                        "nn.Linear({in_features}, {units}, bias={})",
                        if *use_bias { "True" } else { "False" }
                    ),
                    name,
                    entries,
                );
                b.activation(name, &d.act);
            }
            (
                LayerKind::BatchNorm {
                    features,
                    momentum,
                    epsilon,
                },
                Layer::BatchNorm(bn),
            ) => {
                let dims = if matches!(lp.shape.input, Shape::Map { .. }) {
                    2
                } else {
                    1
                };
                let entries = vec![
                    f32_entry("weight", bn.gamma.val()),
                    f32_entry("bias", bn.beta.val()),
                    f32_entry("running_mean", bn.running_mean.value()),
                    f32_entry("running_var", bn.running_var.value()),
                    // PyTorch counts batches only to average without a
                    // momentum; with one, as here, the count is never read.
                    Entry {
                        name: "num_batches_tracked",
                        shape: vec![],
                        values: Values::I64(vec![0]),
                    },
                ];
                // Keras's momentum weighs the old average, PyTorch's the new batch.
                b.push(
                    format!(
                        "nn.BatchNorm{dims}d({features}, eps={}, momentum={})",
                        py_float(*epsilon),
                        py_float(1.0 - momentum)
                    ),
                    name,
                    entries,
                );
            }
            (LayerKind::Activation(_), Layer::Activation(a)) => {
                b.push(activation(a).unwrap_or("nn.Identity()"), name, vec![]);
            }
            // The net is built from this plan, layer for layer.
            _ => {}
        }
    }
    Ok(Sequential { modules: b.modules })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::Padding;

    #[test]
    fn python_floats_read_back_and_stay_short() {
        assert_eq!(py_float(0.2), "0.2");
        assert_eq!(py_float(1.0 - 0.99), "0.01");
        assert_eq!(py_float(1e-3), "0.001");
        assert_eq!(py_float(1.0), "1.0");
        assert_eq!(py_float(1e-5), "1e-5");
    }

    /// Windows PyTorch would place, from its padding and ceil mode, as
    /// (start, end) pairs clipped to the image: the same as TensorFlow's
    /// `same` rule, whose windows start at `-top`.
    fn windows_tf(
        input: usize,
        window: usize,
        stride: usize,
        top: i64,
        bottom: i64,
    ) -> Vec<(i64, i64)> {
        let n = (input as i64 + top + bottom - window as i64) / stride as i64 + 1;
        (0..n)
            .map(|i| {
                let s = i * stride as i64 - top;
                (s.max(0), (s + window as i64).min(input as i64))
            })
            .collect()
    }

    fn windows_torch(
        input: usize,
        window: usize,
        stride: usize,
        p: usize,
        ceil: bool,
    ) -> Vec<(i64, i64)> {
        let span = input + 2 * p - window;
        let mut n = if ceil {
            span.div_ceil(stride)
        } else {
            span / stride
        } + 1;
        if ceil && (n - 1) * stride >= input + p {
            n -= 1;
        }
        (0..n as i64)
            .map(|i| {
                let s = i * stride as i64 - p as i64;
                (s.max(0), (s + window as i64).min(input as i64))
            })
            .collect()
    }

    /// Every `same` pooling from 1 to 20 pixels, windows 1 to 5 and strides
    /// 1 to 4: where a PyTorch form is found, its windows are TensorFlow's.
    #[test]
    fn pool_padding_gives_tensorflows_windows_or_none() {
        let mut found = 0;
        for input in 1..=20 {
            for window in 1..=5 {
                for stride in 1..=4 {
                    let pd = pads(
                        Padding::Same,
                        [input, input],
                        [window, window],
                        [stride, stride],
                    );
                    match pool_padding([input, input], [window, window], [stride, stride], &pd) {
                        Some(([p, q], ceil)) => {
                            found += 1;
                            assert_eq!(p, q);
                            assert_eq!(
                                windows_torch(input, window, stride, p, ceil),
                                windows_tf(input, window, stride, pd[0], pd[2]),
                                "{input} {window} {stride}"
                            );
                        }
                        // A stride of 1 with an even window (its one pixel
                        // of padding goes to one side only), or one window
                        // in all that hangs over the edge.
                        None => assert!(
                            (stride == 1 && window % 2 == 0) || input <= stride,
                            "{input} {window} {stride}: {pd:?}"
                        ),
                    }
                }
            }
        }
        assert!(found > 300, "{found}");
        // 15 wide, 2 by 2: one pixel of padding at the right, a ceil-mode window.
        let pd = pads(Padding::Same, [15, 15], [2, 2], [2, 2]);
        assert_eq!(
            pool_padding([15, 15], [2, 2], [2, 2], &pd),
            Some(([0, 0], true))
        );
        // Valid padding: nothing to add.
        let pd = pads(Padding::Valid, [15, 15], [2, 2], [2, 2]);
        assert_eq!(
            pool_padding([15, 15], [2, 2], [2, 2], &pd),
            Some(([0, 0], false))
        );
    }
}
