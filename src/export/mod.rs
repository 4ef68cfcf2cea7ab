//! A trained run's model for use outside runner (`runner export`): an ONNX
//! file of the layer stack in inference form, with what a consumer needs to
//! feed it (input layout, class names, preprocessing) in its metadata.
//!
//! [`graph`] turns the plan and the trained weights into an operator graph;
//! [`onnx`] encodes it. Imports run one way: mod -> onnx -> graph.

pub mod graph;
pub mod onnx;

use std::path::{Path, PathBuf};

use burn::backend::Flex;
use thiserror::Error;

use crate::model::Net;
use crate::plan::ExperimentPlan;
use crate::rundir::{write_atomic, RunDir, RunDirError};
use crate::train::checkpoint::{self, CheckpointError, Checkpoints};

#[derive(Debug, Error)]
pub enum ExportError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Files(#[from] RunDirError),
    #[error("{}: meta.json names no classes for this run (was it written by an older runner?)", run.display())]
    NoClasses { run: PathBuf },
}

/// What was written, for the command to report.
#[derive(Debug, Clone, PartialEq)]
pub struct Exported {
    pub path: PathBuf,
    pub bytes: usize,
    pub nodes: usize,
    /// Key and value of every metadata entry, in file order.
    pub metadata: Vec<(String, String)>,
}

/// Where `runner export` writes by default: `<run>/export/model.onnx`.
pub fn default_path(run: &RunDir) -> PathBuf {
    run.root().join("export").join("model.onnx")
}

/// The class names the run trained on, from its meta.json.
fn classes(run: &RunDir) -> Result<Vec<String>, ExportError> {
    run.read_meta()?
        .class_names()
        .ok_or_else(|| ExportError::NoClasses {
            run: run.root().to_path_buf(),
        })
}

/// The metadata a consumer needs to use the model.
fn metadata(plan: &ExperimentPlan, classes: &[String], checkpoint: &str) -> Vec<(String, String)> {
    let [h, w, c] = plan.model.input;
    let a = &plan.augment;
    let normalize = a.normalize.as_ref().map_or(
        serde_json::Value::Null,
        |n| serde_json::json!({"mean": n.mean, "std": n.std}),
    );
    let preprocessing = serde_json::json!({
        "resize": [h, w],
        "interpolation": format!("{:?}", plan.data.interpolation).to_lowercase(),
        "color": if c == 1 { "grayscale" } else { "rgb" },
        "rescale": a.rescale,
        "normalize": normalize,
        "order": "pixel values 0-255, times rescale, then (x - mean) / std per channel",
    });
    vec![
        (
            "input".into(),
            format!("float32 [batch, {c}, {h}, {w}]: batch, channels, height, width (NCHW)"),
        ),
        (
            "output".into(),
            format!(
                "float32 [batch, {}]: class probabilities (softmax)",
                classes.len()
            ),
        ),
        (
            "classes".into(),
            serde_json::to_string(classes).unwrap_or_default(),
        ),
        ("preprocessing".into(), preprocessing.to_string()),
        ("experiment".into(), plan.name.clone()),
        ("checkpoint".into(), checkpoint.to_string()),
    ]
}

/// Write the ONNX model of `run`'s checkpoint `checkpoint` (`final`,
/// `best`, `last`, `epoch-N`) to `out`, atomically.
pub fn onnx_file(
    run: &RunDir,
    plan: &ExperimentPlan,
    checkpoint: &str,
    out: &Path,
) -> Result<Exported, ExportError> {
    let classes = classes(run)?;
    let file = Checkpoints::new(run.checkpoints()).model_file(checkpoint)?;
    let device = Default::default();
    let net = Net::<Flex>::init(&plan.model, &device);
    let net = checkpoint::load_model_file(&file, net, &device)?;
    let graph = graph::build(&plan.model, &net);
    let metadata = metadata(plan, &classes, checkpoint);
    let bytes = onnx::encode(&graph, &metadata);
    write_atomic(out, &bytes)?;
    Ok(Exported {
        path: out.to_path_buf(),
        bytes: bytes.len(),
        nodes: graph.nodes.len(),
        metadata,
    })
}
