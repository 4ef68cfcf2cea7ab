//! `runner data`: what the experiment's data source holds, checked by
//! decoding every image once, and optionally a preview of augmented samples.
//! Unreadable images are listed; with `on_bad_image = "fail"` (the default)
//! they also make the command fail (exit 2), as they would fail a run.

use std::io::IsTerminal;
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};

use super::ExperimentArgs;
use crate::data::{preview, DataError, Dataset, Inspection};
use crate::error::{Error, Result};
use crate::vocab::BadImagePolicy;

/// Samples in a preview grid.
pub const PREVIEW_SAMPLES: usize = 16;

pub fn run(exp: &ExperimentArgs, preview_path: Option<&Path>, quick: bool) -> Result<()> {
    let (loaded, plan) = super::load_plan(exp)?;
    let dataset = Dataset::open(&plan).map_err(|e| Error::data(&loaded.sources, e))?;
    crate::out!("{}", dataset.report());
    if !quick {
        let bar = progress_bar(dataset.splits().iter().map(|s| s.len()).sum());
        let inspection =
            Inspection::run(&dataset.splits(), &|done, _| bar.set_position(done as u64));
        bar.finish_and_clear();
        crate::outln!();
        crate::out!("{inspection}");
        if let Some((first, reason)) = inspection.bad.first() {
            if dataset.train.bad_image_policy() == BadImagePolicy::Fail {
                return Err(DataError::BadImages {
                    count: inspection.bad.len(),
                    first: first.clone(),
                    reason: reason.clone(),
                }
                .into());
            }
        }
    }
    if let Some(path) = preview_path {
        preview::write(&dataset, plan.seed, PREVIEW_SAMPLES, path)?;
        crate::outln!();
        crate::outln!(
            "preview     {} ({PREVIEW_SAMPLES} training samples as the model sees them in epoch 1)",
            path.display()
        );
    }
    Ok(())
}

fn progress_bar(total: usize) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total as u64);
    if let Ok(style) =
        ProgressStyle::with_template("checking images {bar:30} {pos}/{len} ({per_sec}, {eta} left)")
    {
        bar.set_style(style);
    }
    bar
}
