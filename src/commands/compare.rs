//! `runner compare DIR...`: runs side by side, showing only the config keys
//! that differ, and their final and best metrics.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use crate::compare::{CompareError, Comparison, Layout};
use crate::error::{experiment_file, Error, Result, Wanted};
use crate::report::ReportError;
use crate::rundir::write_atomic;

/// What `runner compare` was asked.
pub struct CompareArgs<'a> {
    pub dirs: &'a [PathBuf],
    /// The rows in order of a metric or a config key.
    pub sort: Option<&'a str>,
    /// Also write the table as CSV there; `-` prints the CSV alone.
    pub csv: Option<&'a Path>,
    /// A column per run; otherwise a row per run unless that is wider than
    /// the terminal (standard output's) and a column per run fits.
    pub transpose: bool,
    /// Also draw the first runs' validation curves into this PNG.
    pub plot: Option<&'a Path>,
}

pub fn compare(args: &CompareArgs) -> Result<()> {
    let CompareArgs {
        dirs,
        sort,
        csv,
        transpose,
        plot,
    } = *args;
    let mut table = Comparison::load(dirs).map_err(|e| match e {
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
    for skipped in table.skipped() {
        crate::errln!(
            "warning: left out {}: {}",
            skipped.path.display(),
            skipped.reason
        );
    }
    if let Some(key) = sort {
        table
            .sort_by(key)
            .map_err(|e| Error::Usage(e.to_string()))?;
    }
    let layout = if transpose {
        Layout::Transposed
    } else {
        Layout::Auto
    };
    let stdout = std::io::stdout();
    let width = match terminal_size::terminal_size_of(&stdout) {
        Some((terminal_size::Width(w), _)) if stdout.is_terminal() => Some(usize::from(w)),
        _ => None,
    };
    match csv {
        Some(path) if path == Path::new("-") => {
            crate::out!("{}", String::from_utf8_lossy(&table.to_csv()));
        }
        Some(path) => {
            crate::out!("{}", table.render(layout, width));
            write_atomic(path, &table.to_csv())?;
            crate::outln!("CSV: {}", path.display());
        }
        None => crate::out!("{}", table.render(layout, width)),
    }
    if let Some(path) = plot {
        let (png, drawn) = table.plot().map_err(ReportError::from)?;
        write_atomic(path, &png)?;
        let of = if drawn < table.runs() {
            format!(
                " (the first {drawn} of {} runs, in the table's order)",
                table.runs()
            )
        } else {
            String::new()
        };
        // With `--csv -`, standard output is the CSV alone.
        if csv == Some(Path::new("-")) {
            crate::errln!("Plot: {}{of}", path.display());
        } else {
            crate::outln!("Plot: {}{of}", path.display());
        }
    }
    Ok(())
}
