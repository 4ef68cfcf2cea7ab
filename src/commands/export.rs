//! `runner export RUN_DIR --format onnx|safetensors`: the run's model as a
//! file other tools load, with its input layout, class names and
//! preprocessing printed and stored in the file's metadata.

use std::path::PathBuf;

use crate::config;
use crate::error::{Error, Result};
use crate::export::{self, ExportError};
use crate::plan;
use crate::rundir::{check_writable_file, RunDir};
use crate::train::checkpoint::CheckpointError;

/// File formats `runner export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// ONNX (opset 13), for onnxruntime and other ONNX consumers.
    Onnx,
    /// The state dict of the PyTorch nn.Sequential of the stack, with a
    /// Python module beside it that builds that Sequential and loads it.
    Safetensors,
}

impl Format {
    fn extension(self) -> &'static str {
        match self {
            Format::Onnx => "onnx",
            Format::Safetensors => "safetensors",
        }
    }
}

pub struct ExportArgs {
    pub run_dir: PathBuf,
    pub format: Format,
    /// `final` (default), `best`, `last`, or `epoch-N`.
    pub checkpoint: String,
    /// Where to write; `<run>/export/model.<format>` when unset.
    pub output: Option<PathBuf>,
}

pub fn export(args: &ExportArgs) -> Result<()> {
    let run = RunDir::open(&args.run_dir)?;
    let loaded = config::load_exact(&run.resolved_config())?;
    let plan = plan::plan_saved(&loaded)?;
    let out = match &args.output {
        Some(out) => {
            check_writable_file(out)?;
            out.clone()
        }
        None => {
            let out = export::default_path(&run, args.format.extension());
            // A teammate's run in a shared `runs/` may be readable only.
            check_writable_file(&out)
                .map_err(|e| Error::unwritable_with(e, "write elsewhere with --output FILE"))?;
            out
        }
    };
    let done = match args.format {
        Format::Onnx => export::onnx_file(&run, &plan, &args.checkpoint, &out),
        Format::Safetensors => export::safetensors_file(&run, &plan, &args.checkpoint, &out),
    }
    .map_err(|e| match e {
        ExportError::Files(f) | ExportError::Checkpoint(CheckpointError::Io(f)) => f.into(),
        e @ (ExportError::Checkpoint(
            CheckpointError::Decode { .. } | CheckpointError::Encode { .. },
        )
        | ExportError::Encode { .. }) => Error::RunFailed(e.to_string()),
        other => Error::Usage(other.to_string()),
    })?;
    for file in &done.files {
        crate::outln!(
            "Wrote {} ({} bytes, {})",
            file.path.display(),
            file.bytes,
            file.holds
        );
    }
    for (key, value) in &done.metadata {
        crate::outln!("  {key:<14} {value}");
    }
    Ok(())
}
