//! A trained run's model for use outside runner (`runner export`), in
//! inference form, with what a consumer needs to feed it (input layout,
//! class names, preprocessing) in its metadata:
//! - ONNX: [`graph`] turns the plan and the trained weights into an
//!   operator graph; [`onnx`] encodes it.
//! - safetensors: [`torch`] turns them into a PyTorch `nn.Sequential` (its
//!   modules and state dict); [`safetensors`] writes the state dict and a
//!   Python module that builds the Sequential and loads it.
//!
//! Imports run one way: mod -> onnx -> graph; mod -> safetensors -> torch
//! -> graph.

pub mod graph;
pub mod onnx;
pub mod safetensors;
pub mod torch;

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
    #[error("layer `{layer}` has no PyTorch nn.Sequential form: {reason}")]
    NoTorchForm { layer: String, reason: String },
    #[error("cannot encode {}: {reason}", path.display())]
    Encode { path: PathBuf, reason: String },
}

/// One file written, for the command to report.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub path: PathBuf,
    pub bytes: usize,
    /// What it holds, e.g. `11 nodes, ONNX opset 13`.
    pub holds: String,
}

/// What was written, for the command to report.
#[derive(Debug, Clone, PartialEq)]
pub struct Exported {
    pub files: Vec<Written>,
    /// Key and value of every metadata entry, in file order.
    pub metadata: Vec<(String, String)>,
}

/// Where `runner export` writes by default: `<run>/export/model.<extension>`.
pub fn default_path(run: &RunDir, extension: &str) -> PathBuf {
    run.root()
        .join("export")
        .join("model")
        .with_extension(extension)
}

/// The class names the run trained on, from its meta.json.
fn classes(run: &RunDir) -> Result<Vec<String>, ExportError> {
    run.read_meta()?
        .class_names()
        .ok_or_else(|| ExportError::NoClasses {
            run: run.root().to_path_buf(),
        })
}

/// The metadata a consumer needs to use the model, whose output is
/// described by `output`.
fn metadata(
    plan: &ExperimentPlan,
    classes: &[String],
    checkpoint: &str,
    output: &str,
) -> Vec<(String, String)> {
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
            format!("float32 [batch, {}]: {output}", classes.len()),
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
    let net = trained(run, plan, checkpoint)?;
    let graph = graph::build(&plan.model, &net);
    let metadata = metadata(plan, &classes, checkpoint, "class probabilities (softmax)");
    let bytes = onnx::encode(&graph, &metadata);
    write_atomic(out, &bytes)?;
    Ok(Exported {
        files: vec![Written {
            path: out.to_path_buf(),
            bytes: bytes.len(),
            holds: format!("{} nodes, ONNX opset {}", graph.nodes.len(), onnx::OPSET),
        }],
        metadata,
    })
}

/// The weights of `run`'s checkpoint `checkpoint`, on the CPU.
fn trained(
    run: &RunDir,
    plan: &ExperimentPlan,
    checkpoint: &str,
) -> Result<Net<Flex>, ExportError> {
    let file = Checkpoints::new(run.checkpoints()).model_file(checkpoint)?;
    let device = Default::default();
    let net = Net::<Flex>::init(&plan.model, &device);
    Ok(checkpoint::load_model_file(&file, net, &device)?)
}

/// Write the state dict of the PyTorch form of `run`'s checkpoint
/// `checkpoint` to `out` as safetensors, and the Python module that builds
/// its `nn.Sequential` beside it (`out` with the extension `.py`), both
/// atomically.
pub fn safetensors_file(
    run: &RunDir,
    plan: &ExperimentPlan,
    checkpoint: &str,
    out: &Path,
) -> Result<Exported, ExportError> {
    let classes = classes(run)?;
    let net = trained(run, plan, checkpoint)?;
    let seq = torch::build(&plan.model, &net).map_err(|e| ExportError::NoTorchForm {
        layer: e.layer,
        reason: e.reason,
    })?;
    let metadata = metadata(
        plan,
        &classes,
        checkpoint,
        "logits of the nn.Sequential (its softmax gives the class probabilities)",
    );
    let bytes = safetensors::encode(&seq, &metadata).map_err(|reason| ExportError::Encode {
        path: out.to_path_buf(),
        reason,
    })?;
    let py = out.with_extension("py");
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let module_name = py
        .file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let entry = |key: &str| {
        metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    };
    let weights_file = name(out);
    let run_name = run.root().display().to_string();
    let source = safetensors::python_module(
        &seq,
        &safetensors::About {
            weights_file: &weights_file,
            module: &module_name,
            experiment: &plan.name,
            run: &run_name,
            checkpoint,
            input: entry("input"),
            classes: &classes,
            preprocessing: entry("preprocessing"),
        },
    );
    write_atomic(out, &bytes)?;
    write_atomic(&py, source.as_bytes())?;
    let tensors = seq.state_dict().count();
    Ok(Exported {
        files: vec![
            Written {
                path: out.to_path_buf(),
                bytes: bytes.len(),
                holds: format!(
                    "{tensors} tensors, the state dict of a {}-module nn.Sequential",
                    seq.modules.len()
                ),
            },
            Written {
                path: py,
                bytes: source.len(),
                holds: "its nn.Sequential: build(), and load() with these weights".into(),
            },
        ],
        metadata,
    })
}
