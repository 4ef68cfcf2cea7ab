//! `runner compare RUN_OR_SWEEP_DIR...`: runs side by side, showing only the
//! config keys that differ, and their final and best metrics.

use std::path::PathBuf;

use crate::compare::{CompareError, Comparison};
use crate::error::{experiment_file, Error, Result, Wanted};

pub fn compare(dirs: &[PathBuf]) -> Result<()> {
    let table = Comparison::load(dirs).map_err(|e| match e {
        CompareError::Run(r) => r.into(),
        CompareError::NoRuns { path, reason } => Error::Usage(
            CompareError::NoRuns {
                reason: experiment_file(&path, Wanted::Run).unwrap_or(reason),
                path,
            }
            .to_string(),
        ),
        other => Error::Usage(other.to_string()),
    })?;
    crate::out!("{}", table.render());
    Ok(())
}
