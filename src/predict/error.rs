//! What can go wrong in `runner predict`, each naming what is at fault.

use std::path::PathBuf;

use thiserror::Error;

use crate::backend::BackendError;
use crate::config::ConfigError;
use crate::data::{image_folder, DataError};
use crate::device::DeviceError;
use crate::plan::PlanErrors;
use crate::report::plots::PlotError;
use crate::rundir::RunDirError;
use crate::train::checkpoint::CheckpointError;

#[derive(Debug, Error)]
pub enum PredictError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Plan(#[from] PlanErrors),
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    #[error("{}: meta.json names no classes for this run (was it written by an older runner?)", run.display())]
    NoClasses { run: PathBuf },
    #[error("{}: meta.json names {found} classes but the model ends in {model} outputs", run.display())]
    ClassCount {
        run: PathBuf,
        found: usize,
        model: usize,
    },
    #[error("{} does not exist", path.display())]
    Missing { path: PathBuf },
    #[error("no file or folder matches `{pattern}`")]
    NoMatch { pattern: String },
    #[error("`{pattern}` is not a valid pattern: {reason}")]
    BadPattern { pattern: String, reason: String },
    #[error("cannot list {}: {reason}", path.display())]
    Walk { path: PathBuf, reason: String },
    #[error("no image files ({}) found in {}", image_folder::extensions_listed(), args.join(" "))]
    NoImages { args: Vec<String> },
    #[error("--device: {0}")]
    BadDevice(String),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// An unreadable image under `on_bad_image = "fail"` (or a file that
    /// disappeared while the grid was drawn).
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("none of the {count} image(s) can be read; the first is {}: {reason}", first.display())]
    NoneReadable {
        count: usize,
        first: PathBuf,
        reason: String,
    },
    #[error("cannot read the model's output back from the device: {0}")]
    Readback(String),
    #[error(transparent)]
    Plot(#[from] PlotError),
}
