//! One file per subcommand, and what they share: how an experiment file is
//! read ([`ExperimentArgs`], [`load_plan`]) and how an error is shown
//! ([`report`]).

pub mod check;
pub mod compare;
pub mod data;
pub mod eval;
pub mod export;
pub mod predict;
pub mod run;
pub mod sweep;

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args;

use crate::config::{self, ConfigError, LoadOptions, Loaded, Override};
use crate::error::{Error, Result};
use crate::plan::{self, ExperimentPlan};
use crate::rundir::describe::describe;

/// How to read an experiment file: shared by every command that takes one.
#[derive(Debug, Clone, Args)]
pub struct ExperimentArgs {
    /// The experiment file (TOML).
    pub file: PathBuf,
    /// Override a config key, e.g. `--set optimizer.learning_rate=3e-4`, or remove one:
    /// `--set '~callbacks.early_stopping'`. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Ignore `RUNNER_*` environment variables.
    #[arg(long)]
    pub no_env: bool,
}

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
    let loaded = config::load(&exp.file, &opts).map_err(|e| match e {
        // `runner run runs/x/v0001`: say what the folder is, and what to give.
        ConfigError::FileMissing { path, .. } if path.is_dir() => ConfigError::NotAFile {
            reason: describe(&path).not_an_experiment_file(&path),
            path,
        },
        other => other,
    })?;
    let plan = plan::plan(&loaded)?;
    Ok((loaded, plan))
}

/// Render an error with miette on stderr. On a terminal: colors (unless
/// `NO_COLOR`), wrapped to its width. In a pipe or a file (a Slurm log, CI):
/// no colors, and each message on one line, so `grep` finds it whole.
pub fn report(err: &Error) {
    let stderr = std::io::stderr();
    let tty = stderr.is_terminal();
    let theme = if tty && std::env::var_os("NO_COLOR").is_none() {
        miette::GraphicalTheme::unicode()
    } else {
        miette::GraphicalTheme::unicode_nocolor()
    };
    // Every message already ends in its cause's text (`cannot write X:
    // No such file or directory`): the chain would say it twice.
    let handler = miette::GraphicalReportHandler::new_themed(theme).without_cause_chain();
    let handler = match terminal_size::terminal_size_of(&stderr) {
        Some((terminal_size::Width(w), _)) if tty => handler.with_width(usize::from(w).max(40)),
        _ if tty => handler.with_width(100),
        _ => handler.with_wrap_lines(false),
    };
    let mut out = String::new();
    if handler.render_report(&mut out, err).is_err() {
        out = format!("error: {err}");
    }
    crate::errln!("{out}");
}
