//! One file per subcommand.

pub mod check;
pub mod compare;
pub mod data;
pub mod eval;
pub mod run;
pub mod sweep;

use crate::cli::ExperimentArgs;
use crate::config::{self, LoadOptions, Loaded, Override};
use crate::error::Result;
use crate::plan::{self, ExperimentPlan};

/// Parse `--set` flags.
pub fn overrides(set: &[String]) -> Result<Vec<Override>> {
    Ok(set
        .iter()
        .map(|s| Override::parse(s))
        .collect::<Result<_, _>>()?)
}

/// Read and validate an experiment: file -> spec -> plan.
pub fn load_plan(exp: &ExperimentArgs) -> Result<(Loaded, ExperimentPlan)> {
    let opts = LoadOptions {
        overrides: overrides(&exp.set)?,
        use_env: !exp.no_env,
    };
    let loaded = config::load(&exp.file, &opts)?;
    let plan = plan::plan(&loaded)?;
    Ok((loaded, plan))
}
