//! The forward pass over the layer stack.

use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::layer::{ActKind, ConvLayer, Layer, Weight};
use crate::ops::{self, avg_pool, norm, pool, ConvOps};
use crate::plan::ModelPlan;

/// A sequential image classifier.
#[derive(Module, Debug)]
pub struct Net<B: Backend> {
    pub layers: Vec<Layer<B>>,
    /// The plan's last-layer softmax, folded into the loss: `forward`
    /// returns logits and `predict` applies it.
    pub folded_softmax: bool,
}

/// Activations between layers: a feature map or a flat vector.
enum Flow<B: Backend> {
    Map(Tensor<B, 4>),
    Flat(Tensor<B, 2>),
}

impl<B: Backend> Net<B> {
    /// Build the network with fresh weights. Weight initialisation draws
    /// from the backend's RNG: seed it first for a reproducible start.
    pub fn init(plan: &ModelPlan, device: &B::Device) -> Net<B> {
        let mut layers: Vec<Layer<B>> = plan
            .layers
            .iter()
            .map(|l| Layer::init(l, plan.initializer, device))
            .collect();
        if plan.folded_softmax {
            // Drop the softmax from the last layer; the loss and `predict` apply it.
            match layers.last_mut() {
                Some(Layer::Dense(d)) => d.act.kind = ActKind::Linear,
                Some(Layer::Activation(a)) => a.kind = ActKind::Linear,
                _ => {}
            }
        }
        Net {
            layers,
            folded_softmax: plan.folded_softmax,
        }
    }
}

impl<B: Backend> Net<B> {
    /// Every weight of the net with its Keras path, `layer/weight`
    /// (`conv2d/kernel`, `batch_normalization/moving_mean`), named after
    /// `plan`'s layers, from which the net was built.
    pub fn named_weights(&self, plan: &ModelPlan) -> Vec<(String, Weight)> {
        plan.layers
            .iter()
            .zip(&self.layers)
            .flat_map(|(lp, layer)| layer.weights().into_iter().map(|w| (w.path(&lp.name), w)))
            .collect()
    }

    /// Copy the weights of the layers named in `names` from `source` (built
    /// from `source_plan`); the plan checked that their shapes match.
    pub fn copy_layers(
        mut self,
        plan: &ModelPlan,
        source: &Net<B>,
        source_plan: &ModelPlan,
        names: &[String],
    ) -> Net<B> {
        let index = |p: &ModelPlan, name: &str| p.layers.iter().position(|l| l.name == name);
        for name in names {
            let (Some(i), Some(j)) = (index(plan, name), index(source_plan, name)) else {
                continue;
            };
            if let (Some(ours), Some(theirs)) = (self.layers.get_mut(i), source.layers.get(j)) {
                let record = theirs.clone().into_record();
                let fresh = std::mem::replace(ours, Layer::Flatten(super::layer::Flatten));
                *ours = fresh.load_record(record);
            }
        }
        self
    }

    /// Freeze the layers the plan marks `trainable = false`: their
    /// parameters take no gradient, so the optimizer neither moves them
    /// nor keeps state for them.
    pub fn freeze(mut self, plan: &ModelPlan) -> Net<B> {
        for (layer, lp) in self.layers.iter_mut().zip(&plan.layers) {
            if !lp.trainable {
                let l = std::mem::replace(layer, Layer::Flatten(super::layer::Flatten));
                *layer = l.no_grad();
            }
        }
        self
    }
}

impl<B: ConvOps> Net<B> {
    /// Class scores (logits) for a batch of `[batch, channels, height, width]` images.
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let mut x = Flow::Map(images);
        // The pooling of layer `i` already ran fused into its convolution.
        let mut pooled = None;
        for (i, layer) in self.layers.iter().enumerate() {
            if pooled.take() == Some(i) {
                continue;
            }
            x = match (layer, x) {
                (Layer::Conv(c), Flow::Map(t)) => {
                    let (out, with_pool) = self.conv_layer(i, c, t);
                    if with_pool {
                        pooled = Some(i + 1);
                    }
                    Flow::Map(out)
                }
                // A pooling right after a convolution with a ReLU ran with it.
                (Layer::MaxPool(p), Flow::Map(t)) => Flow::Map(pool::max_pool2d(p, t, false)),
                (Layer::AvgPool(p), Flow::Map(t)) => Flow::Map(avg_pool::avg_pool2d(p, t)),
                (Layer::GlobalAvgPool(p), Flow::Map(t)) => Flow::Flat(p.forward(t).flatten(1, 3)),
                (Layer::Dropout(d), Flow::Map(t)) => Flow::Map(d.forward(t)),
                (Layer::Dropout(d), Flow::Flat(t)) => Flow::Flat(d.forward(t)),
                (Layer::Flatten(_), Flow::Map(t)) => Flow::Flat(t.flatten(1, 3)),
                (Layer::Flatten(_), Flow::Flat(t)) => Flow::Flat(t),
                (Layer::Dense(d), Flow::Flat(t)) => Flow::Flat(d.act.apply(d.linear.forward(t))),
                (Layer::BatchNorm(bn), Flow::Map(t)) => Flow::Map(norm::batch_norm(bn, t)),
                (Layer::BatchNorm(bn), Flow::Flat(t)) => Flow::Flat(norm::batch_norm(bn, t)),
                (Layer::Activation(a), Flow::Map(t)) => Flow::Map(a.apply(t)),
                (Layer::Activation(a), Flow::Flat(t)) => Flow::Flat(a.apply(t)),
                // Shape inference in the plan rules these out before a model is built.
                (_, Flow::Map(_)) | (_, Flow::Flat(_)) => {
                    unreachable!("layer stack was validated by the plan")
                }
            };
        }
        match x {
            Flow::Flat(t) => t,
            Flow::Map(t) => t.flatten(1, 3),
        }
    }

    /// Layer `i`, convolution `c`, on `t`; `true` where the max pooling of
    /// layer `i + 1` ran with it (after a convolution with a ReLU, which
    /// then runs fused with one or the other: [`ops::conv_block`]).
    fn conv_layer(&self, i: usize, c: &ConvLayer<B>, t: Tensor<B, 4>) -> (Tensor<B, 4>, bool) {
        let relu = c.act.kind == ActKind::Relu;
        let pool = match self.layers.get(i + 1) {
            Some(Layer::MaxPool(p)) if relu => Some(p),
            _ => None,
        };
        let out = ops::conv_block(&c.conv, relu, pool, t);
        (if relu { out } else { c.act.apply(out) }, pool.is_some())
    }

    /// Class probabilities.
    pub fn predict(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let out = self.forward(images);
        if self.folded_softmax {
            softmax(out, 1)
        } else {
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{LayerKind, LayerPlan};
    use crate::plan::{LayerShape, ParamCount, Shape};
    use crate::vocab::{Activation, InitializerKind, Padding};
    use burn::backend::Flex;

    fn lp(kind: LayerKind) -> LayerPlan {
        let s = Shape::Flat(1);
        LayerPlan {
            name: "x".into(),
            kind,
            shape: LayerShape {
                input: s,
                output: s,
                params: ParamCount::default(),
            },
            trainable: true,
        }
    }

    fn conv_pool_dense_plan() -> ModelPlan {
        ModelPlan {
            input: [6, 6, 1],
            layers: vec![
                lp(LayerKind::Conv2d {
                    in_channels: 1,
                    filters: 4,
                    kernel: [3, 3],
                    stride: [1, 1],
                    padding: Padding::Same,
                    activation: Activation::Relu,
                    use_bias: true,
                }),
                lp(LayerKind::MaxPool2d {
                    pool: [2, 2],
                    stride: [2, 2],
                    padding: Padding::Valid,
                }),
                lp(LayerKind::Flatten),
                lp(LayerKind::Dense {
                    in_features: 36,
                    units: 3,
                    activation: Activation::Softmax,
                    use_bias: true,
                }),
            ],
            num_classes: 3,
            folded_softmax: true,
            initializer: InitializerKind::GlorotUniform,
        }
    }

    #[test]
    fn named_weights_are_keras_paths_covering_every_parameter() {
        let mut plan = conv_pool_dense_plan();
        plan.layers[0].name = "conv2d".into();
        plan.layers[3].name = "dense".into();
        plan.layers.insert(
            1,
            LayerPlan {
                name: "batch_normalization".into(),
                ..lp(LayerKind::BatchNorm {
                    features: 4,
                    momentum: 0.99,
                    epsilon: 1e-3,
                })
            },
        );
        if let LayerKind::Conv2d { use_bias, .. } = &mut plan.layers[0].kind {
            *use_bias = false;
        }
        let net = Net::<Flex>::init(&plan, &Default::default());
        let weights = net.named_weights(&plan);
        let got: Vec<(&str, &[usize])> = weights
            .iter()
            .map(|(path, w)| (path.as_str(), w.dims.as_slice()))
            .collect();
        assert_eq!(
            got,
            [
                ("conv2d/kernel", &[4, 1, 3, 3][..]),
                ("batch_normalization/gamma", &[4]),
                ("batch_normalization/beta", &[4]),
                ("batch_normalization/moving_mean", &[4]),
                ("batch_normalization/moving_variance", &[4]),
                ("dense/kernel", &[36, 3]),
                ("dense/bias", &[3]),
            ]
        );
        for (path, w) in &weights {
            assert_eq!(w.values.len(), w.dims.iter().product::<usize>(), "{path}");
        }
        let total: usize = weights.iter().map(|(_, w)| w.values.len()).sum();
        assert_eq!(total, net.num_params());
        // Read back as they are: gamma starts at 1, the moving variance at 1.
        assert!(weights[1].1.values.iter().all(|&v| v == 1.0));
        assert!(weights[4].1.values.iter().all(|&v| v == 1.0));
    }

    #[test]
    fn forward_gives_one_score_per_class_and_softmax_sums_to_one() {
        let plan = conv_pool_dense_plan();
        let device = Default::default();
        let net = Net::<Flex>::init(&plan, &device);
        let x = Tensor::<Flex, 4>::ones([2, 1, 6, 6], &device);
        let logits = net.forward(x.clone());
        assert_eq!(logits.dims(), [2, 3]);
        let probs: Vec<f32> = net.predict(x).sum_dim(1).into_data().to_vec().unwrap();
        for p in probs {
            assert!((p - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn a_relu_handed_to_the_pooling_gives_burns_values_and_gradients() {
        // conv2d(relu) then max_pool2d: the network rectifies after pooling;
        // the result and every gradient must equal burn's conv, ReLU, pool.
        type AD = burn::backend::Autodiff<Flex>;
        let device = Default::default();
        // An input without a gradient takes the fused convolution + pooling
        // (where the CPU has AVX-512); one with a gradient the operation
        // with sparse gradients (a 2x2 pooling of a small map).
        for track_input in [false, true] {
            let net = Net::<AD>::init(&conv_pool_dense_plan(), &device);
            check_conv_pool_dense(&net, track_input);
        }
    }

    fn check_conv_pool_dense(net: &Net<burn::backend::Autodiff<Flex>>, track_input: bool) {
        type AD = burn::backend::Autodiff<Flex>;
        let device = Default::default();
        let x = Tensor::<AD, 4>::random(
            [3, 1, 6, 6],
            burn::tensor::Distribution::Uniform(-1.0, 1.0),
            &device,
        );
        let x = if track_input { x.require_grad() } else { x };
        let ours = net.forward(x.clone());
        let (Layer::Conv(c), Layer::MaxPool(p), Layer::Dense(d)) =
            (&net.layers[0], &net.layers[1], &net.layers[3])
        else {
            panic!("conv, pool, flatten, dense expected")
        };
        let maps = burn::tensor::activation::relu(c.conv.forward(x.clone()));
        let theirs = d.linear.forward(p.forward(maps).flatten(1, 3));
        ours.clone()
            .into_data()
            .assert_approx_eq::<f32>(&theirs.clone().into_data(), Default::default());
        let probe =
            Tensor::<AD, 2>::random(ours.dims(), burn::tensor::Distribution::Default, &device);
        let g_ours = (ours * probe.clone()).sum().backward();
        let g_theirs = (theirs * probe).sum().backward();
        let weight = &c.conv.weight;
        let (a, b) = (
            weight.grad(&g_ours).expect("our gradient"),
            weight.grad(&g_theirs).expect("burn's gradient"),
        );
        let a: Vec<f32> = a.into_data().to_vec().expect("f32");
        assert!(
            a.iter().any(|v| *v != 0.0),
            "the gradient reaches the weights"
        );
        a.iter()
            .zip(b.into_data().to_vec::<f32>().expect("f32"))
            .for_each(|(a, b)| {
                assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
            });
        if track_input {
            let (a, b) = (
                x.grad(&g_ours).expect("our input gradient"),
                x.grad(&g_theirs).expect("burn's input gradient"),
            );
            a.into_data()
                .assert_approx_eq::<f32>(&b.into_data(), Default::default());
        }
    }
}
