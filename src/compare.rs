//! Runs side by side (`runner compare`): the config keys that differ
//! between them, and their final and best metrics, read back from each run
//! folder's resolved config, meta.json and metrics.csv; for the trials of
//! a sweep, early stopping's verdict from the sweep's journal.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};

use thiserror::Error;
use walkdir::WalkDir;

use crate::config;
use crate::config::diagnostic::did_you_mean;
use crate::config::spec::Mode;
use crate::plan::Monitor;
use crate::report::plots::{compared_curves, encode_png, PlotError, RunCurves};
use crate::rundir::describe::describe;
use crate::rundir::{RunDir, RunDirError, RESOLVED_CONFIG};
use crate::sweep::journal::{Journal, TrialState};
use crate::sweep::summary::{best_of, csv_column, read_columns, wall_seconds};
use crate::sweep::trial_folder_name;

#[derive(Debug, Error)]
pub enum CompareError {
    #[error("{} holds no runs to compare: {reason}", path.display())]
    NoRuns { path: PathBuf, reason: String },
    #[error(transparent)]
    Run(#[from] RunDirError),
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("cannot sort by `{key}`: it is neither a metric nor a config key of these runs{}; \
             sort by a metric, best first ({}), or by a config key as `--set` names it \
             (`optimizer.learning_rate`)",
            help.as_deref().map(|h| format!(" ({h})")).unwrap_or_default(),
            metrics.join(", "))]
    UnknownSort {
        key: String,
        help: Option<String>,
        metrics: Vec<String>,
    },
}

impl CompareError {
    /// Why the run `dir` could not be read, without naming `dir` again.
    fn reason_in(&self, dir: &Path) -> String {
        let file = |path: &Path| path.strip_prefix(dir).unwrap_or(path).display().to_string();
        match self {
            CompareError::Read { path, source } => format!("{}: {source}", file(path)),
            CompareError::Parse { source, .. } => {
                format!("{RESOLVED_CONFIG} is not TOML: {}", source.message())
            }
            other => other.to_string(),
        }
    }
}

/// What `--sort` takes besides config keys and the runs' other validation
/// metrics ([`Row::extra`]), each sorted best first.
pub const SORT_METRICS: [&str; 5] = [
    "val_accuracy",
    "val_loss",
    "final_val_accuracy",
    "test_accuracy",
    "time",
];

/// How many runs `--plot` draws: the table's first (W&B's charts show ten
/// runs too), so that no two share a colour.
pub const PLOTTED: usize = 10;

/// How deep below a folder its runs are looked for: a runs folder's
/// `<experiment>/sweeps/<sweep>/<trial>` is four folders down.
const DEPTH: usize = 4;

/// The runs found under the given folders, one row each, in order.
pub struct Comparison {
    rows: Vec<Row>,
    skipped: Vec<Skipped>,
}

/// A folder below one named on the command line that could not be read
/// (another user's run in a shared `runs/`, a run folder cut short):
/// left out of the table, with why, as `ls -R` and ripgrep go on past
/// what they cannot read.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

impl Comparison {
    /// Read every run named by `dirs`: a run folder, or every run and
    /// trial below a folder (a sweep's, an experiment's, a runs folder),
    /// each once, in the order of their paths.
    ///
    /// A run named itself that cannot be read is an error; one found below
    /// a folder is [skipped](Comparison::skipped).
    pub fn load(dirs: &[PathBuf]) -> Result<Comparison, CompareError> {
        let (runs, mut skipped) = expand(dirs)?;
        let mut rows = Vec::new();
        let mut read = Vec::new();
        for d in runs {
            match load(&d, String::new()) {
                Ok(row) => {
                    rows.push(row);
                    read.push(d);
                }
                Err(e) if !dirs.contains(&d) => skipped.push(Skipped {
                    reason: e.reason_in(&d),
                    path: d,
                }),
                Err(e) => return Err(e),
            }
        }
        let mut verdicts = BTreeMap::new();
        for ((row, d), label) in rows.iter_mut().zip(&read).zip(labels(&read)) {
            row.name = label;
            if let Some(v) = early_stop_verdict(&mut verdicts, d) {
                row.status = v;
            }
        }
        if rows.is_empty() {
            if let Some(first) = skipped.first() {
                let under = dirs.iter().find(|d| first.path.starts_with(d));
                return Err(CompareError::NoRuns {
                    path: under.or(dirs.first()).cloned().unwrap_or_default(),
                    reason: format!(
                        "{} in it cannot be read: {}",
                        first.path.display(),
                        first.reason
                    ),
                });
            }
        }
        Ok(Comparison { rows, skipped })
    }

    /// What was left out of the table, in the order it was met.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// Put the rows in order of `key`: a metric best first (the highest
    /// accuracy, the lowest loss, the shortest time: [`SORT_METRICS`] and
    /// the runs' other validation metrics, by their best), or a config
    /// key's value, numbers by value, from the smallest. Runs without a
    /// value come last; ties keep their order.
    pub fn sort_by(&mut self, key: &str) -> Result<(), CompareError> {
        let metric = key.strip_prefix("best_").unwrap_or(key);
        let metric = if metric == "wall_seconds" {
            "time"
        } else {
            metric
        };
        let extra: Vec<String> = extra_metrics(&self.rows).into_iter().cloned().collect();
        let best_first = |v: Option<f64>, maximize: bool| {
            v.map(|v| Value::Number(if maximize { -v } else { v }))
        };
        let value = |r: &Row| -> Option<Value> {
            match metric {
                "val_accuracy" => best_first(r.best_val_accuracy.map(|(_, v)| v), true),
                "val_loss" => best_first(r.best_val_loss.map(|(_, v)| v), false),
                "final_val_accuracy" => best_first(r.final_val_accuracy, true),
                "test_accuracy" => best_first(r.test_accuracy, true),
                "time" => best_first(r.wall_seconds, false),
                m if extra.iter().any(|e| e == m) => best_first(
                    r.extra.get(m).copied().flatten().map(|(_, v)| v),
                    Monitor::new(m, Mode::Auto).maximize,
                ),
                _ => r.config.get(key).map(|text| match text.parse::<f64>() {
                    Ok(v) => Value::Number(v),
                    Err(_) => Value::Text(text.clone()),
                }),
            }
        };
        let metrics: Vec<String> = SORT_METRICS
            .iter()
            .map(|m| m.to_string())
            .chain(extra.iter().cloned())
            .collect();
        let known = metrics.iter().any(|m| m == metric)
            || self.rows.iter().any(|r| r.config.contains_key(key));
        if !known {
            let keys: BTreeSet<&str> = self
                .rows
                .iter()
                .flat_map(|r| r.config.keys().map(String::as_str))
                .chain(metrics.iter().map(String::as_str))
                .collect();
            return Err(CompareError::UnknownSort {
                key: key.to_string(),
                help: did_you_mean(key, &keys.into_iter().collect::<Vec<_>>()),
                metrics,
            });
        }
        self.rows.sort_by(|a, b| match (value(a), value(b)) {
            (Some(a), Some(b)) => a.cmp(&b),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        });
        Ok(())
    }

    /// Validation loss and accuracy by epoch of the first [`PLOTTED`] runs
    /// in the table's order, a line each, as PNG; and how many it drew.
    pub fn plot(&self) -> Result<(Vec<u8>, usize), PlotError> {
        let runs: Vec<RunCurves> = self
            .rows
            .iter()
            .take(PLOTTED)
            .map(|r| RunCurves {
                label: &r.name,
                loss: &r.val_loss_curve,
                accuracy: &r.val_accuracy_curve,
            })
            .collect();
        let png = encode_png(&compared_curves(&runs)?)?;
        Ok((png, runs.len()))
    }

    /// How many runs the table has.
    pub fn runs(&self) -> usize {
        self.rows.len()
    }

    /// The table: only the keys that differ, then status and metrics, a
    /// row per run. Keys as rows and runs as columns instead (as W&B's and
    /// MLflow's run comparisons show them) when `layout` says so, or, for
    /// [`Layout::Auto`], when a row per run is wider than `width` (the
    /// terminal's) and a column per run fits it.
    pub fn render(&self, layout: Layout, width: Option<usize>) -> String {
        render(&self.rows, layout, width)
    }

    /// The same as CSV for pandas: one row per run, the keys that differ,
    /// then status and metrics at full precision, each best with its epoch
    /// (from 0, as metrics.csv counts), and the run's folder as an absolute
    /// path (as the sweep's summary.csv gives it), so a notebook elsewhere
    /// opens it. A missing value is an empty cell.
    pub fn to_csv(&self) -> Vec<u8> {
        let rows = &self.rows;
        let keys = differing(rows);
        let extra = extra_metrics(rows);
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut header = vec!["run".to_string()];
        header.extend(keys.iter().map(|k| k.to_string()));
        header.extend(
            [
                "status",
                "epochs",
                "best_val_accuracy",
                "best_val_accuracy_epoch",
                "best_val_loss",
                "best_val_loss_epoch",
            ]
            .map(String::from),
        );
        header.extend(
            extra
                .iter()
                .flat_map(|m| [format!("best_{m}"), format!("best_{m}_epoch")]),
        );
        header.extend(
            [
                "final_val_accuracy",
                "test_accuracy",
                "start_time",
                "wall_seconds",
                "run_dir",
            ]
            .map(String::from),
        );
        let _ = w.write_record(&header);
        let num = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        let best = |v: Option<(usize, f64)>| {
            [
                num(v.map(|(_, v)| v)),
                v.map(|(e, _)| e.to_string()).unwrap_or_default(),
            ]
        };
        for r in rows {
            let mut rec = vec![r.name.clone()];
            rec.extend(
                keys.iter()
                    .map(|k| r.config.get(*k).cloned().unwrap_or_default()),
            );
            rec.extend([r.status.clone(), r.epochs.to_string()]);
            rec.extend(best(r.best_val_accuracy));
            rec.extend(best(r.best_val_loss));
            for m in &extra {
                rec.extend(best(r.extra.get(*m).copied().flatten()));
            }
            rec.extend([
                num(r.final_val_accuracy),
                num(r.test_accuracy),
                r.start_time.clone().unwrap_or_default(),
                num(r.wall_seconds),
                std::path::absolute(&r.dir)
                    .unwrap_or_else(|_| r.dir.clone())
                    .display()
                    .to_string(),
            ]);
            let _ = w.write_record(&rec);
        }
        w.into_inner().unwrap_or_default()
    }
}

/// How the table is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// A row per run unless that is wider than the terminal and a column
    /// per run fits it.
    Auto,
    /// A column per run, a row per key (`--transpose`).
    Transposed,
}

/// The status of a run whose meta.json says `running` but whose process
/// is gone ([`RunDir::was_killed`]).
const KILLED: &str = "killed";

struct Row {
    name: String,
    dir: PathBuf,
    config: BTreeMap<String, String>,
    status: String,
    epochs: usize,
    best_val_accuracy: Option<(usize, f64)>,
    best_val_loss: Option<(usize, f64)>,
    final_val_accuracy: Option<f64>,
    test_accuracy: Option<f64>,
    /// The best of each other validation metric in its metrics.csv
    /// (`val_top5_accuracy` with `train.top_k = 5`), by name.
    extra: BTreeMap<String, Option<(usize, f64)>>,
    /// Each epoch's val_loss and val_accuracy, from metrics.csv.
    val_loss_curve: Vec<f64>,
    val_accuracy_curve: Vec<f64>,
    start_time: Option<String>,
    /// Up to the run's end, resumes' pauses left out; none while it runs.
    wall_seconds: Option<f64>,
}

/// The validation metrics besides val_accuracy and val_loss that any of
/// the runs has, by name.
fn extra_metrics(rows: &[Row]) -> Vec<&String> {
    let names: BTreeSet<&String> = rows.iter().flat_map(|r| r.extra.keys()).collect();
    names.into_iter().collect()
}

/// A value `--sort` orders by: numbers before text.
#[derive(Debug, PartialEq)]
enum Value {
    Number(f64),
    Text(String),
}

impl Eq for Value {}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Value {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Value::Number(a), Value::Number(b)) => a.total_cmp(b),
            (Value::Number(_), Value::Text(_)) => Ordering::Less,
            (Value::Text(_), Value::Number(_)) => Ordering::Greater,
            (Value::Text(a), Value::Text(b)) => a.cmp(b),
        }
    }
}

/// A config's values as the table shows them, by key path
/// ([`config::flatten`]): a string bare, as the sweep's tables show values,
/// anything else as TOML.
fn flatten(table: &toml::Table) -> BTreeMap<String, String> {
    config::flatten(table)
        .into_iter()
        .map(|(k, v)| match v {
            toml::Value::String(text) => (k, text),
            other => (k, other.to_string()),
        })
        .collect()
}

/// Run folders named on the command line, each once: a run folder
/// itself, or every run folder below a folder (the trials of a sweep
/// folder; an experiment folder's runs and its sweeps' trials; a runs
/// folder's experiments); and the folders below them that could not be
/// read. A folder that gives neither is an error saying what it is.
fn expand(dirs: &[PathBuf]) -> Result<(Vec<PathBuf>, Vec<Skipped>), CompareError> {
    let mut runs = Vec::new();
    let mut skipped = Vec::new();
    let mut seen = BTreeSet::new();
    for d in dirs {
        let (found, unread) = runs_under(d);
        if found.is_empty() && !unread.iter().any(|s| s.path != *d) {
            return Err(CompareError::NoRuns {
                path: d.clone(),
                reason: describe(d).not_a_run(d),
            });
        }
        let mut once = |p: &Path| seen.insert(p.canonicalize().unwrap_or_else(|_| p.to_path_buf()));
        runs.extend(found.into_iter().filter(|run| once(run)));
        skipped.extend(unread.into_iter().filter(|s| once(&s.path)));
    }
    Ok((runs, skipped))
}

/// `dir` if it is a run folder, else the run folders up to [`DEPTH`]
/// below it, in the order of their paths, and the folders there that
/// could not be read. Nothing inside a run, in a hidden folder or behind a
/// symbolic link is looked at: a link names a run found by its own path.
/// (`latest` and a sweep's `best` are files naming a folder, not links.)
fn runs_under(dir: &Path) -> (Vec<PathBuf>, Vec<Skipped>) {
    if dir.join(RESOLVED_CONFIG).is_file() {
        return (vec![dir.to_path_buf()], Vec::new());
    }
    let mut found = Vec::new();
    let mut skipped = Vec::new();
    let mut walk = WalkDir::new(dir)
        .min_depth(1)
        .max_depth(DEPTH)
        .sort_by_file_name()
        .into_iter();
    while let Some(entry) = walk.next() {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                if let Some(path) = e.path() {
                    skipped.push(Skipped {
                        path: path.to_path_buf(),
                        reason: e.io_error().map_or(e.to_string(), |io| io.to_string()),
                    });
                }
                continue;
            }
        };
        if !entry.file_type().is_dir() {
            continue;
        }
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        let run = !hidden && entry.path().join(RESOLVED_CONFIG).is_file();
        if run {
            found.push(entry.path().to_path_buf());
        }
        if hidden || run {
            walk.skip_current_dir();
        }
    }
    (found, skipped)
}

fn load(dir: &Path, label: String) -> Result<Row, CompareError> {
    let run = RunDir::open(dir)?;
    let text =
        std::fs::read_to_string(run.resolved_config()).map_err(|source| CompareError::Read {
            path: run.resolved_config(),
            source,
        })?;
    let table: toml::Table = toml::from_str(&text).map_err(|source| CompareError::Parse {
        path: dir.to_path_buf(),
        source,
    })?;
    let config = flatten(&table);
    let meta = run.read_meta().ok();
    let mut columns = read_columns(&run.metrics_csv());
    let acc = columns.remove("val_accuracy").unwrap_or_default();
    let loss = columns.remove("val_loss").unwrap_or_default();
    Ok(Row {
        name: label,
        dir: dir.to_path_buf(),
        config,
        status: match &meta {
            Some(m) if run.was_killed(m) => KILLED.into(),
            Some(m) => m.status.as_str().into(),
            None => "unknown".into(),
        },
        epochs: columns.get(&csv_column("loss")).map_or(0, Vec::len),
        best_val_accuracy: best_of(&acc, &Monitor::max("val_accuracy")),
        best_val_loss: best_of(&loss, &Monitor::min("val_loss")),
        // The other validation metrics (val_accuracy and val_loss are
        // taken out above).
        extra: columns
            .iter()
            .filter(|(name, _)| name.starts_with("val_"))
            .map(|(name, values)| {
                let best = best_of(values, &Monitor::new(name, Mode::Auto));
                (name.clone(), best)
            })
            .collect(),
        final_val_accuracy: acc.last().copied(),
        test_accuracy: meta.as_ref().and_then(|m| m.test_accuracy),
        val_loss_curve: loss,
        val_accuracy_curve: acc,
        start_time: meta.as_ref().map(|m| m.start_time.clone()),
        wall_seconds: meta.as_ref().and_then(wall_seconds),
    })
}

/// For a trial of a sweep that early stopping pruned or paused, its state
/// as the sweep's ranked table shows it (`pruned@3`: at the rung of epoch
/// 3), where its own meta.json only says `stopped`. Each sweep's journal is
/// read once, into `verdicts` (sweep folder -> trial folder -> state).
fn early_stop_verdict(
    verdicts: &mut BTreeMap<PathBuf, BTreeMap<String, String>>,
    dir: &Path,
) -> Option<String> {
    let sweep = dir.parent()?;
    let by_trial = verdicts.entry(sweep.to_path_buf()).or_insert_with(|| {
        let journal = Journal::new(sweep);
        if !journal.exists() {
            return BTreeMap::new();
        }
        journal
            .latest()
            .into_values()
            .filter(|e| matches!(e.state, TrialState::Pruned | TrialState::Paused))
            .map(|e| (trial_folder_name(e.trial, &e.id), e.state.label(e.epoch)))
            .collect()
    });
    by_trial.get(dir.file_name()?.to_str()?).cloned()
}

/// A short, distinct label for each run: the last two parts of its path
/// (`quickstart/v0001`, `s0001/trial-000-6ad8f9`), more where two runs
/// would share them (two experiments' `s0001/trial-000-6ad8f9`).
fn labels(dirs: &[PathBuf]) -> Vec<String> {
    let parts: Vec<Vec<String>> = dirs
        .iter()
        .map(|d| {
            d.components()
                .filter_map(|c| match c {
                    Component::Normal(part) => Some(part.to_string_lossy().into_owned()),
                    _ => None,
                })
                .collect()
        })
        .collect();
    let mut taken = vec![2; dirs.len()];
    loop {
        let labels: Vec<String> = parts
            .iter()
            .zip(&taken)
            .map(|(p, &n)| p[p.len().saturating_sub(n)..].join("/"))
            .collect();
        let mut count: HashMap<&str, usize> = HashMap::new();
        for l in &labels {
            *count.entry(l).or_default() += 1;
        }
        let mut longer = false;
        for (i, l) in labels.iter().enumerate() {
            if count[l.as_str()] > 1 && taken[i] < parts[i].len() {
                taken[i] += 1;
                longer = true;
            }
        }
        if !longer {
            return labels;
        }
    }
}

/// The config keys whose values differ between the rows, layer 2 before
/// layer 10.
fn differing(rows: &[Row]) -> Vec<&String> {
    let keys: BTreeSet<&String> = rows.iter().flat_map(|r| r.config.keys()).collect();
    let mut differing: Vec<&String> = keys
        .into_iter()
        // Neither changes what a run trains: a trial's config has no
        // `[sweep]`, a plain run's keeps its file's.
        .filter(|k| !config::under(k, "experiment.description") && !config::under(k, "sweep"))
        .filter(|k| {
            let first = rows[0].config.get(*k);
            rows.iter().any(|r| r.config.get(*k) != first)
        })
        .collect();
    differing.sort_by_key(|k| {
        k.split('.')
            .map(|seg| match seg.parse::<usize>() {
                Ok(n) => (n, String::new()),
                Err(_) => (usize::MAX, seg.to_string()),
            })
            .collect::<Vec<_>>()
    });
    differing
}

fn render(rows: &[Row], layout: Layout, width: Option<usize>) -> String {
    let differing = differing(rows);
    let extra = extra_metrics(rows);
    let fmt = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into());
    let fmt_best = |v: Option<(usize, f64)>| {
        v.map(|(e, v)| format!("{v:.4} @{}", e + 1))
            .unwrap_or_else(|| "-".into())
    };
    let mut table: Vec<Vec<String>> = Vec::new();
    let mut header = vec!["run".to_string()];
    header.extend(differing.iter().map(|k| k.to_string()));
    header.extend(["status", "epochs", "best val_accuracy", "best val_loss"].map(String::from));
    header.extend(extra.iter().map(|m| format!("best {m}")));
    header.extend(["final val_accuracy", "test accuracy", "time"].map(String::from));
    table.push(header);
    for r in rows {
        let mut row = vec![r.name.clone()];
        row.extend(
            differing
                .iter()
                .map(|k| r.config.get(*k).cloned().unwrap_or_else(|| "-".into())),
        );
        row.extend([
            r.status.clone(),
            r.epochs.to_string(),
            fmt_best(r.best_val_accuracy),
            fmt_best(r.best_val_loss),
        ]);
        row.extend(
            extra
                .iter()
                .map(|m| fmt_best(r.extra.get(*m).copied().flatten())),
        );
        row.extend([
            fmt(r.final_val_accuracy),
            fmt(r.test_accuracy),
            r.wall_seconds
                .map(|s| format!("{s:.0}s"))
                .unwrap_or_else(|| "-".into()),
        ]);
        table.push(row);
    }
    let by_run = aligned(&table);
    let by_key = || aligned(&transpose(&table));
    let widest = |text: &str| text.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    let text = match (layout, width) {
        (Layout::Transposed, _) => by_key(),
        (Layout::Auto, Some(w)) if widest(&by_run) > w => {
            let by_key = by_key();
            if widest(&by_key) <= w {
                by_key
            } else {
                by_run
            }
        }
        (Layout::Auto, _) => by_run,
    };
    let mut out = String::new();
    if differing.is_empty() {
        out.push_str("(the configs are identical)\n");
    }
    out.push_str(&text);
    if rows.iter().any(|r| r.status == KILLED) {
        out.push_str(
            "killed: its meta.json says running, but no process runs it (killed, out of memory, \
             or a power loss); `runner run --resume DIR` continues a run, \
             `runner sweep --resume SWEEP_DIR` a sweep's trial\n",
        );
    }
    out
}

/// Rows of cells, each column as wide as its widest cell, two spaces apart.
fn aligned(table: &[Vec<String>]) -> String {
    let columns = table.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            table
                .iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in table {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Columns as rows.
fn transpose(table: &[Vec<String>]) -> Vec<Vec<String>> {
    let columns = table.iter().map(Vec::len).max().unwrap_or(0);
    (0..columns)
        .map(|c| {
            table
                .iter()
                .map(|r| r.get(c).cloned().unwrap_or_default())
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_differing_keys_are_shown() {
        let row = |name: &str, lr: &str| {
            run_row(
                name,
                &[("optimizer.learning_rate", lr), ("train.epochs", "3")],
            )
        };
        let text = render(&[row("a", "0.1"), row("b", "0.01")], Layout::Auto, None);
        let header = text.lines().next().unwrap();
        assert!(header.contains("optimizer.learning_rate"));
        assert!(!header.contains("train.epochs"));
        assert!(text.lines().nth(1).unwrap().contains("0.5000 @2"), "{text}");

        let mut rows = [row("a", "0.1"), row("b", "0.1")];
        for (key, a, b) in [
            ("model.layers.10.units", "1", "2"),
            ("model.layers.2.units", "1", "2"),
            ("model.dropout", "0.1", "0.2"),
        ] {
            rows[0].config.insert(key.into(), a.into());
            rows[1].config.insert(key.into(), b.into());
        }
        let text = render(&rows, Layout::Auto, None);
        let header: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(
            header[1..4],
            [
                "model.dropout",
                "model.layers.2.units",
                "model.layers.10.units"
            ]
        );
    }

    fn run_row(name: &str, keys: &[(&str, &str)]) -> Row {
        Row {
            name: name.into(),
            dir: PathBuf::from(name),
            config: keys
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            status: "completed".into(),
            epochs: 3,
            best_val_accuracy: Some((1, 0.5)),
            best_val_loss: Some((2, 0.7)),
            final_val_accuracy: Some(0.4),
            test_accuracy: None,
            extra: BTreeMap::new(),
            val_loss_curve: vec![0.9, 0.7],
            val_accuracy_curve: vec![0.4, 0.5],
            start_time: None,
            wall_seconds: Some(3.0),
        }
    }

    /// Two runs that differ in many keys: a row per run is wide, a column
    /// per run narrow. Auto picks by the terminal's width; a pipe (no
    /// width) always gets a row per run; `--transpose` always a column.
    #[test]
    fn runs_become_columns_when_rows_are_wider_than_the_terminal() {
        let keys = |v: &str| -> Vec<(String, String)> {
            (0..8)
                .map(|i| (format!("model.layers.{i}.units"), format!("{v}{i}")))
                .collect()
        };
        let row = |name: &str, v: &str| {
            let k = keys(v);
            let pairs: Vec<(&str, &str)> =
                k.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            run_row(name, &pairs)
        };
        let rows = [row("a/v0001", "1"), row("b/v0002", "2")];
        let by_run = render(&rows, Layout::Auto, None);
        let widest = |t: &str| t.lines().map(str::len).max().unwrap();
        assert_eq!(by_run.lines().count(), 3, "{by_run}");
        assert!(widest(&by_run) > 200, "{by_run}");
        let by_key = render(&rows, Layout::Transposed, None);
        // run, 8 keys, status, 5 metrics and the time.
        assert_eq!(by_key.lines().count(), 1 + 8 + 7, "{by_key}");
        let lines: Vec<&str> = by_key.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["run", "a/v0001", "b/v0002"]
        );
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["model.layers.0.units", "10", "20"]
        );
        assert_eq!(
            lines[11].split_whitespace().collect::<Vec<_>>(),
            ["best", "val_accuracy", "0.5000", "@2", "0.5000", "@2"]
        );
        assert!(widest(&by_key) < 60, "{by_key}");
        assert_eq!(render(&rows, Layout::Auto, Some(80)), by_key);
        assert_eq!(render(&rows, Layout::Auto, Some(widest(&by_run))), by_run);
        // Neither fits: a row per run, the usual layout.
        assert_eq!(render(&rows, Layout::Auto, Some(20)), by_run);
    }

    /// A plain run keeps its file's `[sweep]`, a trial has none: that is no
    /// difference in what they trained.
    #[test]
    fn sweep_keys_are_not_differences() {
        let rows = [
            run_row(
                "plain",
                &[("train.epochs", "3"), ("sweep.metric", "val_loss")],
            ),
            run_row("trial", &[("train.epochs", "3")]),
        ];
        let text = render(&rows, Layout::Auto, None);
        assert!(text.starts_with("(the configs are identical)"), "{text}");
        assert!(!text.contains("sweep."), "{text}");
    }

    #[test]
    fn labels_are_the_shortest_distinct_ends_of_the_paths() {
        let dirs = [
            "runs/a/v0001",
            "runs/a/sweeps/s0001/trial-000-ab12cd",
            "runs/b/sweeps/s0001/trial-000-ab12cd",
            "copy/b/v0001",
            "runs/b/v0001",
            "v0002",
        ]
        .map(PathBuf::from);
        assert_eq!(
            labels(&dirs),
            [
                "a/v0001",
                "a/sweeps/s0001/trial-000-ab12cd",
                "b/sweeps/s0001/trial-000-ab12cd",
                "copy/b/v0001",
                "runs/b/v0001",
                "v0002",
            ]
        );
        // The same parts under two parents (`..`): as long as the path.
        let dirs = ["../x/v1", "x/v1", "x/v2"].map(PathBuf::from);
        assert_eq!(labels(&dirs), ["x/v1", "x/v1", "x/v2"]);
    }

    /// A runs folder: every run and trial of every experiment, each once,
    /// in path order; not what is inside a run, behind a link or hidden,
    /// nor deeper than a runs folder's trials.
    #[test]
    fn every_run_below_a_folder_is_found_once() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("runs");
        let run = |rel: &str| {
            let dir = root.join(rel);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(RESOLVED_CONFIG), "").unwrap();
            dir
        };
        let v1 = run("a/v0001");
        let t0 = run("a/sweeps/s0001/trial-000-aaaaaa");
        let t1 = run("a/sweeps/s0001/trial-001-bbbbbb");
        let b1 = run("b/v0001");
        // A run's own sub-folders, a hidden folder, one level too deep.
        run("a/v0001/checkpoints/x");
        run("a/.trash/v0009");
        run("b/sweeps/s0001/more/trial-000-cccccc");
        // runner's own pointers are files; a user's link is a link.
        std::fs::write(root.join("a/latest"), "v0001").unwrap();
        std::fs::write(root.join("a/sweeps/s0001/best"), "trial-001-bbbbbb").unwrap();
        std::os::unix::fs::symlink("v0001", root.join("a/mine")).unwrap();
        std::os::unix::fs::symlink("sweeps/s0001", root.join("a/good-sweep")).unwrap();
        let runs_under = |dir: &Path| runs_under(dir).0;
        assert_eq!(
            runs_under(&root),
            [t0.clone(), t1.clone(), v1.clone(), b1.clone()]
        );
        assert_eq!(runs_under(&root.join("a/sweeps/s0001")), [t0.clone(), t1]);
        // A link named on the command line is followed.
        assert_eq!(runs_under(&root.join("a/mine")), [root.join("a/mine")]);
        assert_eq!(runs_under(&root.join("a/good-sweep")).len(), 2);
        // Each once, whichever way it is named.
        let all = expand(&[
            root.join("a"),
            v1.clone(),
            root.join("a/mine"),
            root.clone(),
        ])
        .unwrap()
        .0;
        assert_eq!(
            all,
            [t0, root.join("a/sweeps/s0001/trial-001-bbbbbb"), v1, b1]
        );
        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert!(matches!(expand(&[empty]), Err(CompareError::NoRuns { .. })));
    }

    /// A run below a folder that cannot be read is left out and named; the
    /// same run named itself is an error, and so is a folder whose runs
    /// all are left out.
    #[test]
    fn a_run_that_cannot_be_read_is_skipped_unless_named() {
        let tmp = tempfile::tempdir().unwrap();
        let exp = tmp.path().join("a");
        for (run, config) in [("v0001", ""), ("v0002", "[[[")] {
            std::fs::create_dir_all(exp.join(run)).unwrap();
            std::fs::write(exp.join(run).join(RESOLVED_CONFIG), config).unwrap();
        }
        let table = Comparison::load(std::slice::from_ref(&exp)).unwrap();
        assert_eq!(table.runs(), 1);
        assert_eq!(table.rows[0].dir, exp.join("v0001"));
        let [skipped] = table.skipped() else {
            panic!("{:?}", table.skipped())
        };
        assert_eq!(skipped.path, exp.join("v0002"));
        assert!(
            skipped
                .reason
                .starts_with("config.resolved.toml is not TOML: "),
            "{}",
            skipped.reason
        );
        assert!(matches!(
            Comparison::load(&[exp.join("v0002")]),
            Err(CompareError::Parse { .. })
        ));
        std::fs::remove_dir_all(exp.join("v0001")).unwrap();
        match Comparison::load(std::slice::from_ref(&exp)) {
            Err(CompareError::NoRuns { path, reason }) => {
                assert_eq!(path, exp);
                assert!(
                    reason.starts_with(&format!(
                        "{} in it cannot be read: ",
                        exp.join("v0002").display()
                    )),
                    "{reason}"
                );
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("no error"),
        }
    }

    #[test]
    fn sort_puts_the_best_first_and_missing_values_last() {
        let row = |name: &str, dropout: &str, acc: Option<f64>, loss: f64, secs: f64| {
            let mut r = run_row(name, &[("model.dropout", dropout), ("model.name", name)]);
            r.best_val_accuracy = acc.map(|v| (0, v));
            r.best_val_loss = Some((0, loss));
            r.wall_seconds = Some(secs);
            r
        };
        let mut table = Comparison {
            rows: vec![
                row("a", "0.25", Some(0.5), 0.9, 30.0),
                row("b", "0.1", Some(0.7), 0.4, 10.0),
                row("c", "0.3", None, 0.6, 20.0),
                row("d", "0.1", Some(0.6), 0.5, 40.0),
            ],
            skipped: Vec::new(),
        };
        let order = |t: &Comparison| t.rows.iter().map(|r| r.name.clone()).collect::<String>();
        for (key, expected) in [
            ("val_accuracy", "bdac"),
            ("best_val_accuracy", "bdac"),
            ("val_loss", "bdca"),
            ("time", "bcad"),
            ("wall_seconds", "bcad"),
            // Numbers by value (0.25 < 0.3), ties in their order.
            ("model.dropout", "bdac"),
            ("model.name", "abcd"),
        ] {
            table.sort_by(key).unwrap();
            assert_eq!(order(&table), expected, "{key}");
        }
        // Runs that lack the key come last.
        table.rows[0].config.remove("model.dropout");
        table.sort_by("model.dropout").unwrap();
        assert!(order(&table).ends_with('a'), "{}", order(&table));

        // Another validation metric: best first by its name's direction.
        for (r, top5) in table.rows.iter_mut().zip([0.9, 0.8, 0.95, 0.85]) {
            r.extra.insert("val_top5_accuracy".into(), Some((1, top5)));
        }
        table.rows[3].extra.insert("val_top5_accuracy".into(), None);
        let names = |t: &Comparison| t.rows.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
        let before = names(&table);
        table.sort_by("val_top5_accuracy").unwrap();
        assert_eq!(names(&table), [2, 0, 1, 3].map(|i| before[i].clone()),);
        let text = render(&table.rows, Layout::Auto, None);
        let header = text.lines().next().unwrap();
        assert!(
            header.contains("best val_loss  best val_top5_accuracy  final val_accuracy"),
            "{header}"
        );
        assert!(text.lines().nth(1).unwrap().contains("0.9500 @2"), "{text}");
        let csv = String::from_utf8(table.to_csv()).unwrap();
        assert!(
            csv.lines().next().unwrap().contains(
                "best_val_loss_epoch,best_val_top5_accuracy,best_val_top5_accuracy_epoch,final_val_accuracy"
            ),
            "{csv}"
        );

        let err = table.sort_by("model.dropuot").unwrap_err().to_string();
        assert!(err.contains("did you mean `model.dropout`?"), "{err}");
        let err = table.sort_by("accuracy").unwrap_err().to_string();
        assert!(err.contains("cannot sort by `accuracy`"), "{err}");
        assert!(err.contains("val_accuracy, val_loss"), "{err}");
        assert!(err.contains("time, val_top5_accuracy)"), "{err}");
    }

    #[test]
    fn a_list_of_tables_is_flattened_by_index_as_set_takes_it() {
        let table: toml::Table = toml::from_str(
            r#"
            [model]
            input_shape = [8, 8, 1]
            layers = [{ type = "conv2d", filters = 4 }, { type = "flatten" }]
            "#,
        )
        .unwrap();
        let out = flatten(&table);
        let keys: Vec<&str> = out.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "model.input_shape",
                "model.layers.0.filters",
                "model.layers.0.type",
                "model.layers.1.type"
            ]
        );
        assert_eq!(out["model.layers.0.filters"], "4");
        assert_eq!(out["model.input_shape"], "[8, 8, 1]");
        // A string bare, as the sweep's tables show it.
        assert_eq!(out["model.layers.1.type"], "flatten");
    }
}
