//! `runner check` and `runner summary`.

use std::path::PathBuf;

use burn::backend::Flex;

use super::ExperimentArgs;
use crate::data::missing_folders;
use crate::error::{Error, Result};
use crate::model::{summary, Net};

/// Validate each file; report every failure, not just the first.
pub fn run(files: &[PathBuf], set: &[String], use_env: bool, show_config: bool) -> Result<()> {
    let mut first_err: Option<Error> = None;
    for file in files {
        let exp = ExperimentArgs {
            file: file.clone(),
            set: set.to_vec(),
            no_env: !use_env,
        };
        let checked = super::load_plan(&exp).and_then(|(loaded, plan)| {
            // A sweep's axes are checked too: every value a trial can take.
            // A value a key refuses is located at its axis in the file.
            if let Some(sweep) = &plan.sweep {
                let text = crate::config::to_toml(&plan.spec);
                crate::sweep::check_axes(file, &text, sweep)
                    .map_err(|e| e.located(&loaded.sources))?;
            }
            Ok((loaded, plan))
        });
        match checked {
            Ok((loaded, plan)) => {
                if show_config {
                    crate::outln!("# {} (resolved)", file.display());
                    crate::out!("{}", loaded.annotated());
                } else {
                    let params = plan.model.params();
                    crate::outln!(
                        "ok: {} ({}: {} layers, {} params)",
                        file.display(),
                        plan.name,
                        plan.model.layers.len(),
                        summary::thousands(params.total())
                    );
                }
                // The config is sound, but `runner run` would stop at once.
                for missing in missing_folders(&plan.data.source) {
                    super::warn(&Error::data(&loaded.sources, missing));
                }
            }
            Err(e) => {
                if files.len() > 1 {
                    super::report(&e);
                }
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        // With several files every error was already shown; keep the exit code.
        Some(e) if files.len() > 1 => Err(Error::Usage(format!("{} found problems: {e}", "check"))),
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Build the model on the CPU and print its summary.
pub fn summary(exp: &ExperimentArgs) -> Result<()> {
    let (_, plan) = super::load_plan(exp)?;
    let device = Default::default();
    let net = Net::<Flex>::init(&plan.model, &device);
    let s = summary::summarize(&plan.model, &net);
    crate::out!(
        "{}",
        s.render(&plan.name, plan.model.input, plan.model.folded_softmax)
    );
    Ok(())
}
