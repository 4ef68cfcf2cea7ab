//! Evaluation tables: overall accuracy, per-class precision / recall / F1 /
//! support (sklearn's definitions, sorted by F1 as in the tutorial), and
//! the confusion matrix.

use serde::Serialize;

/// Predictions on an evaluation split.
#[derive(Debug, Clone, Default)]
pub struct Predictions {
    /// Dataset index of each example, in evaluation order.
    pub indices: Vec<usize>,
    pub truth: Vec<usize>,
    pub predicted: Vec<usize>,
    /// Probability of the predicted class.
    pub confidence: Vec<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassRow {
    pub class: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    pub split: String,
    pub accuracy: f64,
    pub examples: usize,
    /// Sorted by F1, best first.
    pub classes: Vec<ClassRow>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
    pub class_names: Vec<String>,
}

impl Evaluation {
    pub fn compute(split: &str, class_names: &[String], p: &Predictions) -> Evaluation {
        let k = class_names.len();
        let mut confusion = vec![vec![0usize; k]; k];
        for (&t, &q) in p.truth.iter().zip(&p.predicted) {
            if t < k && q < k {
                confusion[t][q] += 1;
            }
        }
        let correct: usize = (0..k).map(|i| confusion[i][i]).sum();
        let n = p.truth.len();
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let mut classes: Vec<ClassRow> = (0..k)
            .map(|c| {
                let tp = confusion[c][c];
                let predicted: usize = (0..k).map(|t| confusion[t][c]).sum();
                let support: usize = confusion[c].iter().sum();
                let precision = ratio(tp, predicted);
                let recall = ratio(tp, support);
                let f1 = if precision + recall == 0.0 {
                    0.0
                } else {
                    2.0 * precision * recall / (precision + recall)
                };
                ClassRow {
                    class: class_names[c].clone(),
                    precision,
                    recall,
                    f1,
                    support,
                }
            })
            .collect();
        classes.sort_by(|a, b| b.f1.total_cmp(&a.f1).then_with(|| a.class.cmp(&b.class)));
        Evaluation {
            split: split.to_string(),
            accuracy: ratio(correct, n),
            examples: n,
            classes,
            confusion,
            class_names: class_names.to_vec(),
        }
    }

    /// The per-class table as the tutorial prints it.
    pub fn render_table(&self) -> String {
        let w = self
            .classes
            .iter()
            .map(|c| c.class.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let mut out = format!(
            "Overall accuracy on {} ({} images): {:.2}%\n\n{:<w$}  {:>9}  {:>9}  {:>9}  {:>7}\n",
            self.split,
            self.examples,
            self.accuracy * 100.0,
            "class",
            "precision",
            "recall",
            "f1-score",
            "support"
        );
        for c in &self.classes {
            out.push_str(&format!(
                "{:<w$}  {:>9.4}  {:>9.4}  {:>9.4}  {:>7}\n",
                c.class, c.precision, c.recall, c.f1, c.support
            ));
        }
        out
    }

    /// One row per example, in evaluation order: its index in the split,
    /// true and predicted class, and the predicted class's probability.
    pub fn predictions_csv(&self, p: &Predictions) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        let _ = w.write_record(["index", "true_class", "predicted_class", "probability"]);
        let name = |c: usize| {
            self.class_names
                .get(c)
                .cloned()
                .unwrap_or_else(|| c.to_string())
        };
        for i in 0..p.indices.len() {
            let _ = w.write_record([
                p.indices[i].to_string(),
                name(p.truth[i]),
                name(p.predicted[i]),
                p.confidence[i].to_string(),
            ]);
        }
        String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
    }

    pub fn classes_csv(&self) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        let _ = w.write_record(["class", "precision", "recall", "f1", "support"]);
        for c in &self.classes {
            let _ = w.write_record([
                c.class.clone(),
                format!("{:.6}", c.precision),
                format!("{:.6}", c.recall),
                format!("{:.6}", c.f1),
                c.support.to_string(),
            ]);
        }
        String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
    }

    /// Rows are true classes, columns predicted classes.
    pub fn confusion_csv(&self) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut header = vec!["true\\predicted".to_string()];
        header.extend(self.class_names.iter().cloned());
        let _ = w.write_record(&header);
        for (name, row) in self.class_names.iter().zip(&self.confusion) {
            let mut rec = vec![name.clone()];
            rec.extend(row.iter().map(|v| v.to_string()));
            let _ = w.write_record(&rec);
        }
        String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_match_sklearn_definitions() {
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        // truth:     a a a b b c
        // predicted: a a b b c c
        let p = Predictions {
            indices: (0..6).collect(),
            truth: vec![0, 0, 0, 1, 1, 2],
            predicted: vec![0, 0, 1, 1, 2, 2],
            confidence: vec![1.0; 6],
        };
        let e = Evaluation::compute("test", &names, &p);
        assert!((e.accuracy - 4.0 / 6.0).abs() < 1e-12);
        let get = |n: &str| e.classes.iter().find(|c| c.class == n).unwrap().clone();
        let a = get("a");
        assert_eq!((a.precision, a.support), (1.0, 3));
        assert!((a.recall - 2.0 / 3.0).abs() < 1e-12);
        let b = get("b");
        assert!((b.precision - 0.5).abs() < 1e-12 && (b.recall - 0.5).abs() < 1e-12);
        let c = get("c");
        assert!((c.precision - 0.5).abs() < 1e-12 && c.recall == 1.0);
        assert_eq!(
            e.confusion,
            vec![vec![2, 1, 0], vec![0, 1, 1], vec![0, 0, 1]]
        );
        // sorted by F1: a (0.8), c (0.667), b (0.5)
        let order: Vec<&str> = e.classes.iter().map(|c| c.class.as_str()).collect();
        assert_eq!(order, vec!["a", "c", "b"]);
        assert!(e
            .confusion_csv()
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("a,2,1,0"));
    }
}
