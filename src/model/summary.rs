//! A Keras-style model summary. Output shapes come from shape inference; the
//! parameter counts are read from the built burn module.

use burn::module::Module;
use burn::tensor::backend::Backend;

use super::Net;
use crate::logging::tensorboard::GraphNode;
use crate::plan::ParamCount;
use crate::plan::{ModelPlan, Shape};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryRow {
    pub name: String,
    pub class: &'static str,
    pub output: String,
    pub params: ParamCount,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub rows: Vec<SummaryRow>,
    pub total: ParamCount,
}

/// Read per-layer parameter counts off the built network.
pub fn summarize<B: Backend>(plan: &ModelPlan, net: &Net<B>) -> Summary {
    let rows: Vec<SummaryRow> = plan
        .layers
        .iter()
        .zip(&net.layers)
        .map(|(lp, layer)| {
            // burn counts BatchNorm's running statistics among the module's
            // parameters; Keras lists them as non-trainable.
            // A frozen layer's parameters are all non-trainable (Keras).
            let non_trainable = if lp.trainable {
                layer.non_trainable_params()
            } else {
                layer.num_params()
            };
            SummaryRow {
                name: lp.name.clone(),
                class: lp.kind.keras_class(),
                output: lp.shape.output.to_string(),
                params: ParamCount {
                    trainable: layer.num_params().saturating_sub(non_trainable),
                    non_trainable,
                },
            }
        })
        .collect();
    let total = rows
        .iter()
        .fold(ParamCount::default(), |acc, r| ParamCount {
            trainable: acc.trainable + r.params.trainable,
            non_trainable: acc.non_trainable + r.params.non_trainable,
        });
    Summary { rows, total }
}

/// The layer stack as TensorBoard's graph: an `input` node (`InputLayer`),
/// then one node per layer, named and classed as in the summary table, each
/// reading the one before. A node's info card lists the layer's options,
/// its parameter count and whether it trains; edges are labelled with the
/// shapes between layers (`?×16×16×32`: batch, height, width, channels).
pub fn graph_nodes(plan: &ModelPlan) -> Vec<GraphNode> {
    let dims = |s: Shape| match s {
        Shape::Map { h, w, c } => vec![-1, h as i64, w as i64, c as i64],
        Shape::Flat(n) => vec![-1, n as i64],
    };
    let [h, w, c] = plan.input;
    let mut nodes = vec![GraphNode {
        name: "input".into(),
        op: "InputLayer".into(),
        inputs: Vec::new(),
        output_shape: dims(Shape::Map { h, w, c }),
        attrs: Vec::new(),
    }];
    for layer in &plan.layers {
        let before = nodes.last().map(|n| n.name.clone());
        let mut attrs: Vec<(String, String)> = layer
            .kind
            .options()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        attrs.push(("params".into(), thousands(layer.shape.params.total())));
        attrs.push(("trainable".into(), layer.trainable.to_string()));
        nodes.push(GraphNode {
            name: layer.name.clone(),
            op: layer.kind.keras_class().into(),
            inputs: before.into_iter().collect(),
            output_shape: dims(layer.shape.output),
            attrs,
        });
    }
    nodes
}

/// `10588458` -> `10,588,458`.
pub fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

impl Summary {
    /// The table as Keras 2 prints it, with the first column widened
    /// instead of truncated.
    pub fn render(&self, model_name: &str, input: [usize; 3], folded_softmax: bool) -> String {
        let first: Vec<String> = self
            .rows
            .iter()
            .map(|r| format!("{} ({})", r.name, r.class))
            .collect();
        let w1 = first.iter().map(String::len).max().unwrap_or(0).max(27) + 2;
        let w2 = self
            .rows
            .iter()
            .map(|r| r.output.len())
            .max()
            .unwrap_or(0)
            .max(24)
            + 2;
        let w3 = 10;
        let width = w1 + w2 + w3;
        let thin = "_".repeat(width);
        let thick = "=".repeat(width);
        let mut out = String::new();
        out.push_str(&format!("Model: \"{model_name}\"\n"));
        out.push_str(&format!(
            "Input: (None, {}, {}, {})\n",
            input[0], input[1], input[2]
        ));
        out.push_str(&thin);
        out.push('\n');
        out.push_str(&format!(
            "{:<w1$}{:<w2$}{}\n",
            "Layer (type)", "Output Shape", "Param #"
        ));
        out.push_str(&thick);
        out.push('\n');
        for (i, (row, label)) in self.rows.iter().zip(&first).enumerate() {
            out.push_str(&format!(
                "{label:<w1$}{:<w2$}{}\n",
                row.output,
                thousands(row.params.total())
            ));
            out.push_str(if i + 1 == self.rows.len() {
                &thick
            } else {
                &thin
            });
            out.push('\n');
        }
        out.push_str(&format!(
            "Total params: {}\n",
            thousands(self.total.total())
        ));
        out.push_str(&format!(
            "Trainable params: {}\n",
            thousands(self.total.trainable)
        ));
        out.push_str(&format!(
            "Non-trainable params: {}\n",
            thousands(self.total.non_trainable)
        ));
        out.push_str(&thin);
        out.push('\n');
        if folded_softmax {
            out.push_str(
                "Note: the final softmax is folded into the cross-entropy loss; the network \
                 outputs logits while training and probabilities when predicting.\n",
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(10_588_458), "10,588,458");
    }
}

#[cfg(test)]
mod module_tests {
    use super::*;
    use crate::config::{self, LoadOptions};
    use burn::backend::Flex;

    /// The counts read off the built burn module agree with shape inference,
    /// layer by layer, for the tutorial model and a model with batch norm.
    #[test]
    fn module_counts_agree_with_shape_inference() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let loaded = config::load(
            &root.join("experiments/baseline.toml"),
            &LoadOptions::default(),
        )
        .unwrap();
        let plan = crate::plan::plan(&loaded).unwrap();
        let net = Net::<Flex>::init(&plan.model, &Default::default());
        let s = summarize(&plan.model, &net);
        for (row, layer) in s.rows.iter().zip(&plan.model.layers) {
            assert_eq!(row.params, layer.shape.params, "layer {}", layer.name);
        }
        assert_eq!(s.total.total(), 10_588_458);
        assert_eq!(s.total, plan.model.params());

        let overrides = vec![config::Override::parse("model.dropout=0.1").unwrap()];
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("bn.toml");
        std::fs::write(
            &path,
            r#"[experiment]
name = "bn"
[data]
source = "synthetic"
classes = 3
[model]
input_shape = [8, 8, 1]
layers = [
  { type = "conv2d", filters = 5, kernel = 3, use_bias = false },
  { type = "batch_norm" },
  { type = "activation", activation = "relu" },
  { type = "global_avg_pool2d" },
  { type = "dense", units = 3 },
]
"#,
        )
        .unwrap();
        let loaded = config::load(
            &path,
            &LoadOptions {
                overrides,
                use_env: false,
            },
        )
        .unwrap();
        let plan = crate::plan::plan(&loaded).unwrap();
        let net = Net::<Flex>::init(&plan.model, &Default::default());
        let s = summarize(&plan.model, &net);
        for (row, layer) in s.rows.iter().zip(&plan.model.layers) {
            assert_eq!(row.params, layer.shape.params, "layer {}", layer.name);
        }
        assert_eq!(s.total.non_trainable, 10);
    }

    /// `trainable = false` moves a layer's whole count to non-trainable, in
    /// the plan and in the summary read off the module.
    #[test]
    fn frozen_layers_count_as_non_trainable() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("frozen.toml");
        std::fs::write(
            &path,
            r#"[experiment]
name = "frozen"
[data]
source = "synthetic"
classes = 3
[model]
input_shape = [8, 8, 1]
layers = [
  { type = "conv2d", filters = 5, kernel = 3, trainable = false },
  { type = "batch_norm", trainable = false },
  { type = "global_avg_pool2d" },
  { type = "dense", units = 3 },
]
"#,
        )
        .unwrap();
        let loaded = config::load(&path, &LoadOptions::default()).unwrap();
        let plan = crate::plan::plan(&loaded).unwrap();
        let net = Net::<Flex>::init(&plan.model, &Default::default());
        let s = summarize(&plan.model, &net);
        let counts: Vec<(usize, usize)> = s
            .rows
            .iter()
            .map(|r| (r.params.trainable, r.params.non_trainable))
            .collect();
        // conv 3*3*1*5 + 5; batch norm 4 * 5; dense 5*3 + 3.
        assert_eq!(counts, vec![(0, 50), (0, 20), (0, 0), (18, 0)]);
        for (row, layer) in s.rows.iter().zip(&plan.model.layers) {
            assert_eq!(row.params, layer.shape.params, "layer {}", layer.name);
        }
        assert_eq!(s.total, plan.model.params());

        // The graph: the same layers after an input, each reading the one
        // before, with Keras's options and the shapes between them.
        let nodes = graph_nodes(&plan.model);
        let chain: Vec<(&str, &str, Vec<&str>, &[i64])> = nodes
            .iter()
            .map(|n| {
                let inputs = n.inputs.iter().map(String::as_str).collect();
                (n.name.as_str(), n.op.as_str(), inputs, &n.output_shape[..])
            })
            .collect();
        assert_eq!(
            chain,
            [
                ("input", "InputLayer", vec![], &[-1, 8, 8, 1][..]),
                ("conv2d", "Conv2D", vec!["input"], &[-1, 6, 6, 5]),
                (
                    "batch_normalization",
                    "BatchNormalization",
                    vec!["conv2d"],
                    &[-1, 6, 6, 5]
                ),
                (
                    "global_average_pooling2d",
                    "GlobalAveragePooling2D",
                    vec!["batch_normalization"],
                    &[-1, 5]
                ),
                ("dense", "Dense", vec!["global_average_pooling2d"], &[-1, 3]),
            ]
        );
        let attrs = |i: usize| -> Vec<(&str, &str)> {
            nodes[i]
                .attrs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect()
        };
        assert_eq!(
            attrs(1),
            [
                ("filters", "5"),
                ("kernel_size", "(3, 3)"),
                ("strides", "(1, 1)"),
                ("padding", "valid"),
                ("activation", "linear"),
                ("use_bias", "true"),
                ("params", "50"),
                ("trainable", "false"),
            ]
        );
        assert_eq!(
            attrs(2),
            [
                ("momentum", "0.99"),
                ("epsilon", "0.001"),
                ("params", "20"),
                ("trainable", "false")
            ]
        );
        assert_eq!(attrs(3), [("params", "0"), ("trainable", "true")]);
        assert_eq!(
            attrs(4),
            [
                ("units", "3"),
                ("activation", "linear"),
                ("use_bias", "true"),
                ("params", "18"),
                ("trainable", "true")
            ]
        );
    }
}
