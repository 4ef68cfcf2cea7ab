//! The trained layer stack as an ONNX graph, before it is encoded: nodes in
//! order, the weights as named initializers, and the input and output.
//! Inference form: dropout is left out, batch norm uses its moving
//! statistics, and a softmax folded into the loss during training is a
//! node again at the end.

use burn::tensor::backend::Backend;

use crate::model::layer::{Act, ActKind, Layer};
use crate::model::Net;
use crate::plan::{LayerKind, ModelPlan, Shape};
use crate::vocab::Padding;

/// An ONNX attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
}

/// One operator: `op` from the default ONNX domain.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub op: &'static str,
    pub name: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub attrs: Vec<(&'static str, Attr)>,
}

/// A float tensor stored in the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Initializer {
    pub name: String,
    pub dims: Vec<i64>,
    pub values: Vec<f32>,
}

/// The graph of a layer stack, input `[N, C, H, W]` float32 named `input`,
/// output `[N, classes]` class probabilities named `probabilities`.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub initializers: Vec<Initializer>,
    /// Channels, height, width of one input image.
    pub input_chw: [i64; 3],
    pub classes: i64,
}

pub const INPUT: &str = "input";
pub const OUTPUT: &str = "probabilities";

/// Pads `[top, left, bottom, right]` of a window: none for `valid`; for
/// `same`, TensorFlow's rule (output `ceil(in / stride)`, the odd pixel at
/// the bottom or right), which runner's layers follow.
pub(crate) fn pads(
    padding: Padding,
    input: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
) -> Vec<i64> {
    match padding {
        Padding::Valid => vec![0; 4],
        Padding::Same => {
            let total = |i: usize| {
                let out = input[i].div_ceil(stride[i]);
                ((out - 1) * stride[i] + kernel[i]).saturating_sub(input[i])
            };
            let (th, tw) = (total(0), total(1));
            vec![
                (th / 2) as i64,
                (tw / 2) as i64,
                (th - th / 2) as i64,
                (tw - tw / 2) as i64,
            ]
        }
    }
}

struct Builder {
    graph: Graph,
    /// The name of the tensor the next node reads.
    current: String,
}

impl Builder {
    fn node(
        &mut self,
        op: &'static str,
        name: &str,
        extra: Vec<String>,
        attrs: Vec<(&'static str, Attr)>,
    ) {
        let output = format!("{name}/{}", op.to_lowercase());
        let mut inputs = vec![self.current.clone()];
        inputs.extend(extra);
        self.graph.nodes.push(Node {
            op,
            name: format!("{name}/{op}"),
            inputs,
            outputs: vec![output.clone()],
            attrs,
        });
        self.current = output;
    }

    /// The layer's weights as initializers named `layer/weight`, in the
    /// order the layer's operator takes them.
    fn weights<B: Backend>(&mut self, layer_name: &str, layer: &Layer<B>) -> Vec<String> {
        layer
            .weights()
            .into_iter()
            .map(|w| {
                let name = w.path(layer_name);
                self.graph.initializers.push(Initializer {
                    name: name.clone(),
                    dims: w.dims.iter().map(|&d| d as i64).collect(),
                    values: w.values,
                });
                name
            })
            .collect()
    }

    fn activation(&mut self, name: &str, act: &Act) {
        match act.kind {
            ActKind::Linear => {}
            ActKind::Relu => self.node("Relu", name, vec![], vec![]),
            ActKind::Sigmoid => self.node("Sigmoid", name, vec![], vec![]),
            ActKind::Tanh => self.node("Tanh", name, vec![], vec![]),
            ActKind::Softmax => self.node("Softmax", name, vec![], vec![("axis", Attr::Int(1))]),
            ActKind::LeakyRelu => {
                self.node("LeakyRelu", name, vec![], vec![("alpha", Attr::Float(0.2))])
            }
            ActKind::Gelu => {
                // 0.5 * x * (1 + erf(x / sqrt 2)): burn's exact GELU, in
                // opset-13 operators.
                let x = self.current.clone();
                let sqrt2 = self.constant(&format!("{name}/sqrt2"), std::f32::consts::SQRT_2);
                let one = self.constant(&format!("{name}/one"), 1.0);
                let half = self.constant(&format!("{name}/half"), 0.5);
                self.node("Div", name, vec![sqrt2], vec![]);
                self.node("Erf", name, vec![], vec![]);
                self.node("Add", name, vec![one], vec![]);
                self.node("Mul", name, vec![x], vec![]);
                let out = format!("{name}/gelu");
                self.graph.nodes.push(Node {
                    op: "Mul",
                    name: format!("{name}/Mul_half"),
                    inputs: vec![self.current.clone(), half],
                    outputs: vec![out.clone()],
                    attrs: vec![],
                });
                self.current = out;
            }
        }
    }

    fn constant(&mut self, name: &str, v: f32) -> String {
        self.graph.initializers.push(Initializer {
            name: name.to_string(),
            dims: vec![],
            values: vec![v],
        });
        name.to_string()
    }
}

/// The graph of `net`, whose layers are those of `plan` in order.
pub fn build<B: Backend>(plan: &ModelPlan, net: &Net<B>) -> Graph {
    let [h, w, c] = plan.input;
    let mut b = Builder {
        graph: Graph {
            nodes: Vec::new(),
            initializers: Vec::new(),
            input_chw: [c as i64, h as i64, w as i64],
            classes: plan.num_classes as i64,
        },
        current: INPUT.to_string(),
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
                    kernel,
                    stride,
                    padding,
                    ..
                },
                Layer::Conv(cl),
            ) => {
                let inputs = b.weights(name, layer);
                let k = kernel.map(|v| v as i64).to_vec();
                let s = stride.map(|v| v as i64).to_vec();
                b.node(
                    "Conv",
                    name,
                    inputs,
                    vec![
                        ("kernel_shape", Attr::Ints(k)),
                        ("strides", Attr::Ints(s)),
                        ("pads", Attr::Ints(pads(*padding, hw, *kernel, *stride))),
                    ],
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
                let mut attrs = vec![
                    ("kernel_shape", Attr::Ints(pool.map(|v| v as i64).to_vec())),
                    ("strides", Attr::Ints(stride.map(|v| v as i64).to_vec())),
                    ("pads", Attr::Ints(pads(*padding, hw, *pool, *stride))),
                ];
                if avg {
                    // Keras averages over the pixels inside the image only.
                    attrs.push(("count_include_pad", Attr::Int(0)));
                }
                b.node(
                    if avg { "AveragePool" } else { "MaxPool" },
                    name,
                    vec![],
                    attrs,
                );
            }
            (LayerKind::GlobalAvgPool2d, _) => {
                b.node("GlobalAveragePool", name, vec![], vec![]);
                b.node("Flatten", name, vec![], vec![("axis", Attr::Int(1))]);
            }
            (LayerKind::Dropout { .. }, _) => {}
            (LayerKind::Flatten, _) => {
                // [N, C, H, W] flattened in C, H, W order, as burn's layers
                // were trained.
                b.node("Flatten", name, vec![], vec![("axis", Attr::Int(1))]);
            }
            (LayerKind::Dense { .. }, Layer::Dense(d)) => {
                let inputs = b.weights(name, layer);
                // burn keeps the kernel as [in, out]: y = x W + b.
                b.node("Gemm", name, inputs, vec![]);
                b.activation(name, &d.act);
            }
            (LayerKind::BatchNorm { .. }, Layer::BatchNorm(bn)) => {
                // Keras's order is ONNX's: scale, bias, mean, variance.
                let inputs = b.weights(name, layer);
                b.node(
                    "BatchNormalization",
                    name,
                    inputs,
                    vec![("epsilon", Attr::Float(bn.epsilon as f32))],
                );
            }
            (LayerKind::Activation(_), Layer::Activation(a)) => b.activation(name, a),
            // The net is built from this plan, layer for layer.
            _ => {}
        }
    }
    if matches!(
        plan.layers.last().map(|l| l.shape.output),
        Some(Shape::Map { .. })
    ) {
        b.node("Flatten", "output", vec![], vec![("axis", Attr::Int(1))]);
    }
    if net.folded_softmax {
        b.node("Softmax", "output", vec![], vec![("axis", Attr::Int(1))]);
    }
    // The last node writes the graph's output.
    if let Some(last) = b.graph.nodes.last_mut() {
        last.outputs = vec![OUTPUT.to_string()];
    } else {
        b.node("Identity", "output", vec![], vec![]);
        if let Some(last) = b.graph.nodes.last_mut() {
            last.outputs = vec![OUTPUT.to_string()];
        }
    }
    b.graph
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_puts_the_odd_pixel_at_the_bottom_right() {
        // 5 wide, kernel 2, stride 1: out 5, total pad 1 -> right only.
        assert_eq!(
            pads(Padding::Same, [5, 5], [2, 2], [1, 1]),
            vec![0, 0, 1, 1]
        );
        // 28, kernel 3, stride 1: total 2 -> 1 each side.
        assert_eq!(
            pads(Padding::Same, [28, 28], [3, 3], [1, 1]),
            vec![1, 1, 1, 1]
        );
        // 7, pool 2, stride 2: out 4, total 1 -> bottom/right.
        assert_eq!(
            pads(Padding::Same, [7, 7], [2, 2], [2, 2]),
            vec![0, 0, 1, 1]
        );
        assert_eq!(pads(Padding::Valid, [7, 7], [2, 2], [2, 2]), vec![0; 4]);
    }
}
