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
    render(err, "error");
}

/// [`report`] as a warning (miette's `⚠` for its `×`): something a command
/// finds wrong that does not fail it.
pub fn warn(err: &Error) {
    render(&AsWarning(err), "warning");
}

fn render(diagnostic: &dyn miette::Diagnostic, kind: &str) {
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
    if handler.render_report(&mut out, diagnostic).is_err() {
        out = format!("{kind}: {diagnostic}");
    }
    crate::errln!("{out}");
}

/// A diagnostic with its text, code, labels and help, at warning severity.
#[derive(Debug)]
struct AsWarning<'a>(&'a Error);

impl std::fmt::Display for AsWarning<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for AsWarning<'_> {}

impl miette::Diagnostic for AsWarning<'_> {
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.0.code()
    }
    fn severity(&self) -> Option<miette::Severity> {
        Some(miette::Severity::Warning)
    }
    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.0.help()
    }
    fn url<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.0.url()
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.0.source_code()
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        self.0.labels()
    }
}
