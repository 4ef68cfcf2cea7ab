//! Pure shape inference over a layer list, with Keras-style shapes
//! (height, width, channels) and parameter counts. No burn types here: the
//! plan uses this to reject impossible stacks before any compute, and the
//! summary checks the built burn module against these figures.

use std::fmt;

use crate::config::spec::{Conv2dSpec, DenseSpec, LayerSpec, Pair, PoolSpec};
use crate::vocab::Padding;

/// The shape of one example flowing through the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A feature map: height, width, channels.
    Map { h: usize, w: usize, c: usize },
    /// A flat vector of features.
    Flat(usize),
}

impl Shape {
    /// Values per example (saturating: shapes past [`MAX_VALUES`] are
    /// refused by [`infer`]).
    pub fn elements(&self) -> usize {
        match *self {
            Shape::Map { h, w, c } => h.saturating_mul(w).saturating_mul(c),
            Shape::Flat(n) => n,
        }
    }
}

impl fmt::Display for Shape {
    /// Keras's notation, with `None` for the batch: `(None, 128, 128, 32)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::Map { h, w, c } => write!(f, "(None, {h}, {w}, {c})"),
            Shape::Flat(n) => write!(f, "(None, {n})"),
        }
    }
}

/// Parameters of one layer, split as Keras does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ParamCount {
    pub trainable: usize,
    pub non_trainable: usize,
}

impl ParamCount {
    pub fn total(&self) -> usize {
        self.trainable + self.non_trainable
    }
}

/// What shape inference found for one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerShape {
    pub input: Shape,
    pub output: Shape,
    pub params: ParamCount,
}

/// Why a stack does not work, at which layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeError {
    pub index: usize,
    pub layer_type: &'static str,
    pub input: Shape,
    pub reason: String,
    pub help: Option<String>,
}

/// The most values one layer may output per example, or hold as weights:
/// 2^32 (16 GiB of f32). Anything larger is a typo, and would end in an
/// allocation failure rather than an error.
pub const MAX_VALUES: usize = 1 << 32;

/// The product of `factors` if it stays within [`MAX_VALUES`].
fn product(factors: &[usize]) -> Option<usize> {
    factors
        .iter()
        .try_fold(1usize, |acc, &f| acc.checked_mul(f))
        .filter(|&n| n <= MAX_VALUES)
}

fn too_large(what: &str) -> String {
    format!("{what} would exceed {MAX_VALUES} values, more than runner supports")
}

/// Output size of a window sliding over `size` (Keras/TensorFlow rules).
fn window_out(size: usize, kernel: usize, stride: usize, padding: Padding) -> Option<usize> {
    match padding {
        Padding::Same => Some(size.div_ceil(stride)),
        Padding::Valid => (size >= kernel).then(|| (size - kernel) / stride + 1),
    }
}

/// Infer the output shape and parameter count of every layer.
pub fn infer(input: [usize; 3], layers: &[LayerSpec]) -> Result<Vec<LayerShape>, ShapeError> {
    let mut shape = Shape::Map {
        h: input[0],
        w: input[1],
        c: input[2],
    };
    let mut out = Vec::with_capacity(layers.len());
    if product(&input).is_none() {
        return Err(ShapeError {
            index: 0,
            layer_type: layers.first().map_or("input", LayerSpec::type_name),
            input: shape,
            reason: too_large("the input"),
            help: Some("check `model.input_shape`".into()),
        });
    }
    for (index, layer) in layers.iter().enumerate() {
        let fail = |reason: String, help: Option<&str>| ShapeError {
            index,
            layer_type: layer.type_name(),
            input: shape,
            reason,
            help: help.map(str::to_string),
        };
        let (output, params) = match layer {
            LayerSpec::Conv2d(Conv2dSpec {
                filters,
                kernel: Pair(k),
                stride: Pair(s),
                padding,
                use_bias,
                ..
            }) => {
                let Shape::Map { h, w, c } = shape else {
                    return Err(fail(
                        "conv2d needs a feature map (height, width, channels) but gets a flat vector".into(),
                        Some("move the conv2d before the flatten / global_avg_pool2d layer"),
                    ));
                };
                let (Some(oh), Some(ow)) = (
                    window_out(h, k[0], s[0], *padding),
                    window_out(w, k[1], s[1], *padding),
                ) else {
                    return Err(fail(
                        format!(
                            "a {}x{} kernel with valid padding does not fit a {h}x{w} feature map",
                            k[0], k[1]
                        ),
                        Some("use padding = \"same\", a smaller kernel, or fewer pooling layers before this one"),
                    ));
                };
                let Some(weights) = product(&[k[0], k[1], c, *filters]) else {
                    return Err(fail(
                        too_large("the kernel"),
                        Some("check `filters` and `kernel`"),
                    ));
                };
                let bias = if *use_bias { *filters } else { 0 };
                (
                    Shape::Map {
                        h: oh,
                        w: ow,
                        c: *filters,
                    },
                    ParamCount {
                        trainable: weights + bias,
                        non_trainable: 0,
                    },
                )
            }
            LayerSpec::MaxPool2d(PoolSpec {
                pool: Pair(p),
                stride,
                padding,
                ..
            })
            | LayerSpec::AvgPool2d(PoolSpec {
                pool: Pair(p),
                stride,
                padding,
                ..
            }) => {
                let Shape::Map { h, w, c } = shape else {
                    return Err(fail(
                        format!(
                            "{} needs a feature map but gets a flat vector",
                            layer.type_name()
                        ),
                        Some("pooling layers belong before flatten"),
                    ));
                };
                let s = stride.map(|Pair(s)| s).unwrap_or(*p);
                let (Some(oh), Some(ow)) = (
                    window_out(h, p[0], s[0], *padding),
                    window_out(w, p[1], s[1], *padding),
                ) else {
                    return Err(fail(
                        format!(
                            "a {}x{} pool does not fit a {h}x{w} feature map",
                            p[0], p[1]
                        ),
                        Some("use a smaller pool, padding = \"same\", or a larger input"),
                    ));
                };
                (Shape::Map { h: oh, w: ow, c }, ParamCount::default())
            }
            LayerSpec::GlobalAvgPool2d(_) => {
                let Shape::Map { c, .. } = shape else {
                    return Err(fail(
                        "global_avg_pool2d needs a feature map but gets a flat vector".into(),
                        None,
                    ));
                };
                (Shape::Flat(c), ParamCount::default())
            }
            LayerSpec::Flatten(_) => (Shape::Flat(shape.elements()), ParamCount::default()),
            LayerSpec::Dense(DenseSpec {
                units, use_bias, ..
            }) => {
                let Shape::Flat(n) = shape else {
                    return Err(fail(
                        "dense needs a flat vector but gets a feature map; runner does not apply dense \
                         layers per pixel"
                            .into(),
                        Some("add a `flatten` or `global_avg_pool2d` layer before this dense layer"),
                    ));
                };
                let Some(weights) = product(&[n, *units]) else {
                    return Err(fail(
                        too_large("the weight matrix"),
                        Some("check `units`, or pool the feature map further before flatten"),
                    ));
                };
                let bias = if *use_bias { *units } else { 0 };
                (
                    Shape::Flat(*units),
                    ParamCount {
                        trainable: weights + bias,
                        non_trainable: 0,
                    },
                )
            }
            LayerSpec::BatchNorm(_) => {
                let c = match shape {
                    Shape::Map { c, .. } => c,
                    Shape::Flat(n) => n,
                };
                // gamma and beta learn; the moving mean and variance do not.
                (
                    shape,
                    ParamCount {
                        trainable: 2 * c,
                        non_trainable: 2 * c,
                    },
                )
            }
            LayerSpec::Dropout(_) | LayerSpec::Activation(_) => (shape, ParamCount::default()),
        };
        if output.elements() == 0 {
            return Err(fail(format!("the output would be empty ({output})"), None));
        }
        if output.elements() > MAX_VALUES {
            return Err(fail(too_large(&format!("the output {output}")), None));
        }
        out.push(LayerShape {
            input: shape,
            output,
            params,
        });
        shape = output;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::spec::{BatchNormSpec, NamedSpec};
    use crate::vocab::Activation;

    fn conv(filters: usize, k: usize, padding: Padding) -> LayerSpec {
        LayerSpec::Conv2d(Conv2dSpec {
            filters,
            kernel: Pair([k, k]),
            stride: Pair([1, 1]),
            padding,
            activation: Activation::Relu,
            use_bias: true,
            trainable: true,
            name: None,
        })
    }

    fn pool(p: usize) -> LayerSpec {
        LayerSpec::MaxPool2d(PoolSpec {
            pool: Pair([p, p]),
            stride: None,
            padding: Padding::Valid,
            name: None,
        })
    }

    fn dense(units: usize) -> LayerSpec {
        LayerSpec::Dense(DenseSpec {
            units,
            activation: Activation::Relu,
            use_bias: true,
            trainable: true,
            name: None,
        })
    }

    #[test]
    fn tutorial_stack_matches_keras_table() {
        use Padding::*;
        let layers = vec![
            conv(32, 3, Same),
            conv(32, 3, Valid),
            pool(2),
            conv(64, 3, Same),
            conv(64, 3, Valid),
            pool(2),
            conv(128, 3, Same),
            conv(128, 3, Valid),
            pool(2),
            conv(512, 5, Same),
            conv(512, 5, Valid),
            pool(4),
            LayerSpec::Flatten(NamedSpec::default()),
            dense(1024),
            dense(10),
        ];
        let shapes = infer([128, 128, 3], &layers).unwrap();
        let outs: Vec<String> = shapes.iter().map(|s| s.output.to_string()).collect();
        assert_eq!(outs[0], "(None, 128, 128, 32)");
        assert_eq!(outs[1], "(None, 126, 126, 32)");
        assert_eq!(outs[2], "(None, 63, 63, 32)");
        assert_eq!(outs[4], "(None, 61, 61, 64)");
        assert_eq!(outs[5], "(None, 30, 30, 64)");
        assert_eq!(outs[7], "(None, 28, 28, 128)");
        assert_eq!(outs[10], "(None, 10, 10, 512)");
        assert_eq!(outs[11], "(None, 2, 2, 512)");
        assert_eq!(outs[12], "(None, 2048)");
        let params: Vec<usize> = shapes.iter().map(|s| s.params.total()).collect();
        assert_eq!(params[0], 896);
        assert_eq!(params[9], 1_638_912);
        assert_eq!(params[10], 6_554_112);
        assert_eq!(params[13], 2_098_176);
        assert_eq!(params.iter().sum::<usize>(), 10_588_458);
    }

    #[test]
    fn valid_kernel_larger_than_map_fails_at_that_layer() {
        let layers = vec![pool(2), conv(8, 5, Padding::Valid)];
        let err = infer([6, 6, 1], &layers).unwrap_err();
        assert_eq!(err.index, 1);
        assert_eq!(err.input, Shape::Map { h: 3, w: 3, c: 1 });
        assert!(err.reason.contains("5x5"), "{}", err.reason);
    }

    #[test]
    fn dense_on_feature_map_is_rejected() {
        let err = infer([8, 8, 1], &[dense(4)]).unwrap_err();
        assert_eq!(err.index, 0);
        assert!(err.help.unwrap().contains("flatten"));
    }

    #[test]
    fn same_padding_with_stride_rounds_up() {
        let layers = vec![LayerSpec::Conv2d(Conv2dSpec {
            filters: 4,
            kernel: Pair([3, 3]),
            stride: Pair([2, 2]),
            padding: Padding::Same,
            activation: Activation::Linear,
            use_bias: false,
            trainable: true,
            name: None,
        })];
        let s = infer([7, 8, 3], &layers).unwrap();
        assert_eq!(s[0].output, Shape::Map { h: 4, w: 4, c: 4 });
        assert_eq!(s[0].params.total(), 3 * 3 * 3 * 4);
    }

    #[test]
    fn batch_norm_counts_moving_statistics_as_non_trainable() {
        let layers = vec![LayerSpec::BatchNorm(BatchNormSpec {
            momentum: 0.99,
            epsilon: 1e-3,
            trainable: true,
            name: None,
        })];
        let s = infer([4, 4, 16], &layers).unwrap();
        assert_eq!(
            s[0].params,
            ParamCount {
                trainable: 32,
                non_trainable: 32
            }
        );
    }

    #[test]
    fn sizes_past_the_limit_are_errors_not_overflows() {
        // 2^50 filters overflowed usize in k*k*c*filters and panicked.
        let err = infer([32, 32, 3], &[conv(1 << 50, 3, Padding::Same)]).unwrap_err();
        assert!(err.reason.contains("exceed"), "{}", err.reason);
        let err = infer(
            [32, 32, 3],
            &[LayerSpec::Flatten(NamedSpec { name: None }), dense(1 << 40)],
        )
        .unwrap_err();
        assert_eq!(err.index, 1);
        assert!(err.reason.contains("weight matrix"), "{}", err.reason);
        let err = infer([1 << 30, 1 << 30, 3], &[conv(4, 3, Padding::Same)]).unwrap_err();
        assert!(err.reason.contains("the input"), "{}", err.reason);
        // The largest legal stacks still infer.
        assert!(infer([1 << 10, 1 << 10, 4], &[conv(8, 3, Padding::Same)]).is_ok());
    }
}
