//! The evaluation report of a run: tables on the terminal and as CSV, and
//! pictures as PNG (also sent to TensorBoard by the caller).

pub mod eval;
pub mod plots;

use std::path::PathBuf;

use rand::seq::index::sample;
use rand::SeedableRng;
use thiserror::Error;

use crate::data::{DataError, Split};
use crate::logging::csv::EpochRow;
use crate::rundir::{write_atomic, RunDirError};
use eval::{Evaluation, Predictions};
use plots::{PlotError, Tile};

#[derive(Debug, Error)]
pub enum ReportError {
    #[error(transparent)]
    Plot(#[from] PlotError),
    #[error(transparent)]
    Write(#[from] RunDirError),
    #[error(transparent)]
    Data(#[from] DataError),
}

/// A picture of the report: its file name and PNG bytes.
pub struct Picture {
    pub name: &'static str,
    pub png: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

fn picture(name: &'static str, img: image::RgbImage) -> Result<Picture, ReportError> {
    Ok(Picture {
        name,
        width: img.width(),
        height: img.height(),
        png: plots::encode_png(&img)?,
    })
}

/// 20 test images (seeded choice) with the predicted label over the true
/// one, green when right and red when wrong.
pub fn prediction_grid(
    split: &Split,
    preds: &Predictions,
    classes: &[String],
    seed: u64,
) -> Result<image::RgbImage, ReportError> {
    let n = preds.truth.len();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut tiles = Vec::new();
    for i in sample(&mut rng, n, n.min(20)).into_iter() {
        let (t, p) = (preds.truth[i], preds.predicted[i]);
        let name = |c: usize| classes.get(c).cloned().unwrap_or_else(|| c.to_string());
        tiles.push(Tile {
            image: split.image(preds.indices[i])?,
            lines: vec![name(p), format!("({})", name(t))],
            color: if p == t { plots::GREEN } else { plots::RED },
        });
    }
    Ok(plots::image_grid("Predicted (true)", &tiles, 5, 128)?)
}

/// Write the report files into `dir` and return the pictures.
pub fn write(
    dir: &std::path::Path,
    evaluation: &Evaluation,
    predictions: &Predictions,
    history: &[EpochRow],
    grid: image::RgbImage,
) -> Result<Vec<Picture>, ReportError> {
    write_atomic(
        &dir.join("predictions.csv"),
        evaluation.predictions_csv(predictions).as_bytes(),
    )?;
    write_atomic(
        &dir.join("classification_report.csv"),
        evaluation.classes_csv().as_bytes(),
    )?;
    write_atomic(
        &dir.join("confusion_matrix.csv"),
        evaluation.confusion_csv().as_bytes(),
    )?;
    let json = serde_json::to_vec_pretty(evaluation).unwrap_or_default();
    write_atomic(&dir.join("evaluation.json"), &json)?;
    let mut pictures = vec![
        picture(
            "confusion_matrix",
            plots::confusion(&evaluation.class_names, &evaluation.confusion)?,
        )?,
        picture("predictions", grid)?,
    ];
    if !history.is_empty() {
        pictures.push(picture("curves", plots::curves(history)?)?);
    }
    for p in &pictures {
        write_atomic(&dir.join(format!("{}.png", p.name)), &p.png)?;
    }
    Ok(pictures)
}

/// Where `write` puts a picture.
pub fn picture_path(dir: &std::path::Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.png"))
}
