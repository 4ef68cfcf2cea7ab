//! `metrics.csv`: one row per epoch, rewritten whole and atomically after
//! every epoch from the run's history, so a killed run never leaves a
//! half-written row and a resumed run never duplicates one.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::rundir::{write_atomic, RunDirError};

/// The numbers logged for one epoch. `epoch` counts from 0, as Keras's
/// `CSVLogger` and TensorBoard steps do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRow {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_top_k_accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_top_k_accuracy: Option<f64>,
    pub lr: f64,
    pub epoch_seconds: f64,
    pub images_per_second: f64,
}

/// Render the history as CSV. Validation and top-k columns are present
/// only when the experiment produces them.
pub fn render(rows: &[EpochRow], top_k: Option<usize>, has_validation: bool) -> String {
    let mut header = vec![
        "epoch".to_string(),
        "train_loss".into(),
        "train_accuracy".into(),
    ];
    if let Some(k) = top_k {
        header.push(format!("train_top{k}_accuracy"));
    }
    if has_validation {
        header.push("val_loss".into());
        header.push("val_accuracy".into());
        if let Some(k) = top_k {
            header.push(format!("val_top{k}_accuracy"));
        }
    }
    header.extend([
        "lr".into(),
        "epoch_seconds".into(),
        "images_per_second".into(),
    ]);
    let mut w = csv::Writer::from_writer(Vec::new());
    // Writing into memory cannot fail.
    let _ = w.write_record(&header);
    let opt = |v: Option<f64>| v.map(num).unwrap_or_default();
    for r in rows {
        let mut rec = vec![
            r.epoch.to_string(),
            num(r.train_loss),
            num(r.train_accuracy),
        ];
        if top_k.is_some() {
            rec.push(opt(r.train_top_k_accuracy));
        }
        if has_validation {
            rec.push(opt(r.val_loss));
            rec.push(opt(r.val_accuracy));
            if top_k.is_some() {
                rec.push(opt(r.val_top_k_accuracy));
            }
        }
        rec.extend([
            num(r.lr),
            format!("{:.3}", r.epoch_seconds),
            format!("{:.1}", r.images_per_second),
        ]);
        let _ = w.write_record(&rec);
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else if v.is_nan() {
        "nan".into()
    } else if v > 0.0 {
        "inf".into()
    } else {
        "-inf".into()
    }
}

pub fn write(
    path: &Path,
    rows: &[EpochRow],
    top_k: Option<usize>,
    has_validation: bool,
) -> Result<(), RunDirError> {
    write_atomic(path, render(rows, top_k, has_validation).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(epoch: usize) -> EpochRow {
        EpochRow {
            epoch,
            train_loss: 1.5,
            train_accuracy: 0.25,
            train_top_k_accuracy: None,
            val_loss: Some(1.25),
            val_accuracy: Some(0.5),
            val_top_k_accuracy: None,
            lr: 0.001,
            epoch_seconds: 2.0,
            images_per_second: 100.0,
        }
    }

    #[test]
    fn header_and_rows() {
        let text = render(&[row(0), row(1)], None, true);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "epoch,train_loss,train_accuracy,val_loss,val_accuracy,lr,epoch_seconds,images_per_second"
        );
        assert_eq!(lines[1], "0,1.5,0.25,1.25,0.5,0.001,2.000,100.0");
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn no_validation_columns_without_validation() {
        let text = render(&[row(0)], Some(5), false);
        assert!(text.starts_with("epoch,train_loss,train_accuracy,train_top5_accuracy,lr,"));
    }
}
