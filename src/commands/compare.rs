//! `runner compare RUN_OR_SWEEP_DIR...`: runs side by side, showing only the
//! config keys that differ, and their final and best metrics.

use std::path::PathBuf;

use crate::compare::{CompareError, Comparison};
use crate::error::{Error, Result};

pub fn compare(dirs: &[PathBuf]) -> Result<()> {
    let table = Comparison::load(dirs).map_err(|e| match e {
        CompareError::Run(r) => r.into(),
        other => Error::Usage(other.to_string()),
    })?;
    crate::out!("{}", table.render());
    Ok(())
}
