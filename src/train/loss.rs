//! The loss: categorical cross-entropy on the network's logits (a final
//! softmax is folded into it), with Keras's label smoothing and class
//! weights.
//!
//! For a batch of N rows (its real rows: padding is masked out), K classes,
//! log-probabilities `log p = log_softmax(logits)`, true class `y_i`:
//!
//! - plain: `l_i = -log p[i, y_i]`; the batch loss is `mean_i l_i`, computed
//!   exactly as it always was (burn's `CrossEntropyLoss`, or the masked sum
//!   over the real rows when padded);
//! - label smoothing ε: the target is `t = (1 - ε)·onehot(y_i) + ε/K`, so
//!   `l_i = -Σ_c t_c log p[i, c] = -((1 - ε)·log p[i, y_i] + ε/K·Σ_c log p[i, c])`
//!   (Keras's `CategoricalCrossentropy(label_smoothing=ε)`);
//! - class weights w: `loss = Σ_i w[y_i]·l_i / N`, Keras's
//!   `sum_over_batch_size` (divided by the rows, not by the weights' sum).
//!
//! Smoothing applies to the training and the validation loss (Keras uses one
//! loss object for both); class weights to training only. Accuracy never
//! sees either.

use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use thiserror::Error;

use crate::config::diagnostic::did_you_mean;
use crate::plan::ClassWeights;

/// `train.class_weight` that does not fit the data.
#[derive(Debug, Error)]
pub enum LossError {
    #[error(
        "`train.class_weight` names class `{name}`, which the data does not have (its classes: {classes}){}",
        help.as_ref().map(|h| format!("; {h}")).unwrap_or_default()
    )]
    UnknownClass {
        name: String,
        /// The data's classes, comma-separated.
        classes: String,
        /// "did you mean `x`?", when a class is close.
        help: Option<String>,
    },
    #[error(
        "`train.class_weight = \"balanced\"` needs examples of every class, but class `{class}` has none in the training split"
    )]
    EmptyClass { class: String },
}

/// The weight of each class, by label, for `train.class_weight` (`None`
/// when it is unset): `classes` are the data's class names in label order,
/// `train_labels` the training split's labels.
///
/// `"balanced"` gives `w_c = n_samples / (n_classes · count_c)`
/// (scikit-learn's `compute_class_weight("balanced")`); a table gives its
/// classes' weights and 1 to the others.
pub fn class_weights(
    spec: Option<&ClassWeights>,
    classes: &[String],
    train_labels: &[usize],
) -> Result<Option<Vec<f64>>, LossError> {
    let Some(spec) = spec else {
        return Ok(None);
    };
    let weights = match spec {
        ClassWeights::Balanced => {
            let mut counts = vec![0usize; classes.len()];
            for &label in train_labels {
                if let Some(c) = counts.get_mut(label) {
                    *c += 1;
                }
            }
            let n = train_labels.len() as f64;
            let k = classes.len() as f64;
            counts
                .iter()
                .zip(classes)
                .map(|(&count, class)| {
                    if count == 0 {
                        Err(LossError::EmptyClass {
                            class: class.clone(),
                        })
                    } else {
                        Ok(n / (k * count as f64))
                    }
                })
                .collect::<Result<Vec<f64>, LossError>>()?
        }
        ClassWeights::ByName(by_name) => {
            let mut weights = vec![1.0; classes.len()];
            for (name, &w) in by_name {
                match classes.iter().position(|c| c == name) {
                    Some(label) => weights[label] = w,
                    None => {
                        let candidates: Vec<&str> = classes.iter().map(String::as_str).collect();
                        return Err(LossError::UnknownClass {
                            name: name.clone(),
                            classes: candidates.join(", "),
                            help: did_you_mean(name, &candidates),
                        });
                    }
                }
            }
            weights
        }
    };
    Ok(Some(weights))
}

/// One line naming each class's weight, e.g. `cat 0.75, dog 1.5`.
pub fn describe_weights(classes: &[String], weights: &[f64]) -> String {
    classes
        .iter()
        .zip(weights)
        .map(|(c, w)| format!("{c} {w}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The cross-entropy of a run's batches; see the module's formulas.
pub struct Loss<B: Backend> {
    /// burn's cross-entropy: the plain loss, kept bit for bit.
    plain: CrossEntropyLoss<B>,
    /// Label smoothing ε; `None` when it is 0.
    smoothing: Option<f64>,
    /// Each class's weight, by label.
    class_weights: Option<Tensor<B, 1>>,
}

impl<B: Backend> Loss<B> {
    /// A loss with label smoothing `smoothing` (0 for none) and, for
    /// training, `class_weights` by label.
    pub fn new(smoothing: f64, class_weights: Option<&[f64]>, device: &B::Device) -> Loss<B> {
        let class_weights = class_weights.map(|w| {
            let w: Vec<f32> = w.iter().map(|&v| v as f32).collect();
            let k = w.len();
            Tensor::<B, 1>::from_data(TensorData::new(w, [k]), device)
        });
        Loss {
            plain: CrossEntropyLossConfig::new().init(device),
            smoothing: (smoothing != 0.0).then_some(smoothing),
            class_weights,
        }
    }

    /// The batch's loss over its `real` rows. `mask` (with padding) is 1 for
    /// the real rows and 0 for the padding after them.
    pub fn forward(
        &self,
        logits: Tensor<B, 2>,
        labels: Tensor<B, 1, Int>,
        mask: Option<&Tensor<B, 1>>,
        real: usize,
    ) -> Tensor<B, 1> {
        let [n, classes] = logits.dims();
        if self.smoothing.is_none() && self.class_weights.is_none() {
            // The plain loss, exactly as before either option existed.
            return match mask {
                None => self.plain.forward(logits, labels),
                Some(w) => {
                    let picked = log_softmax(logits, 1)
                        .gather(1, labels.reshape([n, 1]))
                        .reshape([n]);
                    (picked * w.clone()).sum().neg().div_scalar(real as f32)
                }
            };
        }
        let log_p = log_softmax(logits, 1);
        let picked = log_p
            .clone()
            .gather(1, labels.clone().reshape([n, 1]))
            .reshape([n]);
        let per_row = match self.smoothing {
            None => picked.neg(),
            Some(eps) => {
                let all = log_p.sum_dim(1).reshape([n]);
                (picked.mul_scalar(1.0 - eps) + all.mul_scalar(eps / classes as f64)).neg()
            }
        };
        let per_row = match &self.class_weights {
            Some(w) => per_row * w.clone().gather(0, labels),
            None => per_row,
        };
        let per_row = match mask {
            Some(m) => per_row * m.clone(),
            None => per_row,
        };
        per_row.sum().div_scalar(real as f32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use std::collections::BTreeMap;

    type B = Flex;

    fn logits() -> Tensor<B, 2> {
        Tensor::from_data(
            TensorData::new(
                vec![
                    2.0f32, 1.0, 0.1, 0.5, 2.5, -1.0, 0.0, 0.0, 3.0, 1.0, 1.0, 1.0,
                ],
                [4, 3],
            ),
            &Default::default(),
        )
    }

    fn labels() -> Tensor<B, 1, Int> {
        Tensor::from_data(
            TensorData::new(vec![0i64, 1, 2, 1], [4]),
            &Default::default(),
        )
    }

    /// log softmax of each row, in f64.
    fn log_p() -> Vec<Vec<f64>> {
        let v: Vec<f32> = logits().into_data().convert::<f32>().to_vec().unwrap();
        v.chunks(3)
            .map(|r| {
                let r: Vec<f64> = r.iter().map(|&x| x as f64).collect();
                let lse = r.iter().map(|x| x.exp()).sum::<f64>().ln();
                r.iter().map(|x| x - lse).collect()
            })
            .collect()
    }

    fn value(t: Tensor<B, 1>) -> f64 {
        t.into_data().convert::<f32>().to_vec::<f32>().unwrap()[0] as f64
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-5 * b.abs().max(1.0)
    }

    const Y: [usize; 4] = [0, 1, 2, 1];

    #[test]
    fn smoothed_loss_is_the_cross_entropy_with_the_smoothed_target() {
        let eps = 0.1;
        let lp = log_p();
        // Target (1 - ε)·onehot + ε/K, written out per class.
        let want: f64 = (0..4)
            .map(|i| {
                -(0..3)
                    .map(|c| {
                        let t = if c == Y[i] { 1.0 - eps } else { 0.0 } + eps / 3.0;
                        t * lp[i][c]
                    })
                    .sum::<f64>()
            })
            .sum::<f64>()
            / 4.0;
        let loss = Loss::<B>::new(eps, None, &Default::default());
        let got = value(loss.forward(logits(), labels(), None, 4));
        assert!(close(got, want), "{got} vs {want}");
        // It differs from the plain loss (the test can fail).
        let plain: f64 = (0..4).map(|i| -lp[i][Y[i]]).sum::<f64>() / 4.0;
        assert!((got - plain).abs() > 1e-3, "{got} vs {plain}");
    }

    #[test]
    fn weighted_loss_sums_weighted_rows_over_the_batch_size() {
        let w = [0.5, 2.0, 3.0];
        let lp = log_p();
        let want: f64 = (0..4).map(|i| -w[Y[i]] * lp[i][Y[i]]).sum::<f64>() / 4.0;
        let loss = Loss::<B>::new(0.0, Some(&w), &Default::default());
        let got = value(loss.forward(logits(), labels(), None, 4));
        assert!(close(got, want), "{got} vs {want}");
        // Not divided by the weights' sum (burn's and PyTorch's weighted mean).
        let wsum: f64 = Y.iter().map(|&y| w[y]).sum();
        assert!(!close(got, want * 4.0 / wsum));

        // Both at once, with the last row padding (masked out).
        let eps = 0.2;
        let smoothed = |i: usize| {
            -(0..3)
                .map(|c| (if c == Y[i] { 1.0 - eps } else { 0.0 } + eps / 3.0) * lp[i][c])
                .sum::<f64>()
        };
        let want: f64 = (0..3).map(|i| w[Y[i]] * smoothed(i)).sum::<f64>() / 3.0;
        let mask = Tensor::<B, 1>::from_data(
            TensorData::new(vec![1.0f32, 1.0, 1.0, 0.0], [4]),
            &Default::default(),
        );
        let loss = Loss::<B>::new(eps, Some(&w), &Default::default());
        let got = value(loss.forward(logits(), labels(), Some(&mask), 3));
        assert!(close(got, want), "{got} vs {want}");
    }

    #[test]
    fn no_smoothing_and_no_weights_is_the_old_loss_bit_for_bit() {
        let device = Default::default();
        let loss = Loss::<B>::new(0.0, None, &device);
        let old = CrossEntropyLossConfig::new()
            .init::<B>(&device)
            .forward(logits(), labels());
        let new = loss.forward(logits(), labels(), None, 4);
        assert_eq!(
            value(new).to_bits(),
            value(old).to_bits(),
            "the unpadded default"
        );
        // The padded default: the masked sum over the real rows, as before.
        let mask =
            Tensor::<B, 1>::from_data(TensorData::new(vec![1.0f32, 1.0, 1.0, 0.0], [4]), &device);
        let old = log_softmax(logits(), 1)
            .gather(1, labels().reshape([4, 1]))
            .reshape([4]);
        let old = (old * mask.clone()).sum().neg().div_scalar(3.0f32);
        let new = loss.forward(logits(), labels(), Some(&mask), 3);
        assert_eq!(
            value(new).to_bits(),
            value(old).to_bits(),
            "the padded default"
        );
    }

    #[test]
    fn balanced_weights_follow_the_formula() {
        let classes: Vec<String> = ["cat", "dog", "eel"].map(String::from).to_vec();
        // 6 cats, 2 dogs, 4 eels: n = 12, K = 3.
        let labels = [0, 0, 0, 1, 0, 2, 0, 2, 1, 2, 0, 2];
        let w = class_weights(Some(&ClassWeights::Balanced), &classes, &labels)
            .unwrap()
            .unwrap();
        assert_eq!(
            w,
            vec![12.0 / (3.0 * 6.0), 12.0 / (3.0 * 2.0), 12.0 / (3.0 * 4.0)]
        );
        assert_eq!(
            describe_weights(&classes, &w),
            "cat 0.6666666666666666, dog 2, eel 1"
        );

        // A class with no training examples cannot be balanced.
        let err = class_weights(Some(&ClassWeights::Balanced), &classes, &[0, 0, 1]).unwrap_err();
        assert!(
            matches!(&err, LossError::EmptyClass { class } if class == "eel"),
            "{err}"
        );
        assert_eq!(class_weights(None, &classes, &labels).unwrap(), None);
    }

    #[test]
    fn named_weights_are_placed_by_label_and_unknown_names_fail() {
        let classes: Vec<String> = ["cat", "dog", "eel"].map(String::from).to_vec();
        let by_name = |pairs: &[(&str, f64)]| {
            ClassWeights::ByName(
                pairs
                    .iter()
                    .map(|(n, w)| (n.to_string(), *w))
                    .collect::<BTreeMap<_, _>>(),
            )
        };
        let w = class_weights(Some(&by_name(&[("dog", 3.0)])), &classes, &[0, 1, 2])
            .unwrap()
            .unwrap();
        assert_eq!(w, vec![1.0, 3.0, 1.0]);
        let err = class_weights(Some(&by_name(&[("dgo", 3.0)])), &classes, &[0, 1, 2]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("`train.class_weight` names class `dgo`"),
            "{msg}"
        );
        assert!(msg.contains("did you mean `dog`?"), "{msg}");
    }
}
