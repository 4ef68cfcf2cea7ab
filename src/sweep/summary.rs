//! Sweep results: `summary.csv` (rewritten after every trial), the ranked
//! table on the terminal, and a plot of the metric over the swept values.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::plan::{Distribution, Monitor, SweepPlan};
use crate::report::plots::{self, PlotError};
use crate::rundir::{write_atomic, Meta, RunDir, RunDirError};
use crate::vocab::Strategy;

use super::asha::EarlyStop;
use super::journal::{Entry, TrialState};
use super::Trial;

/// What one trial achieved, read from its run folder.
#[derive(Debug, Clone)]
pub struct TrialResult {
    pub trial: Trial,
    pub state: TrialState,
    pub exit_code: Option<i32>,
    pub message: Option<String>,
    pub epochs: usize,
    /// Epoch (from 0) with the best value of the sweep metric.
    pub best_epoch: Option<usize>,
    pub best: Option<f64>,
    /// The metric at the last epoch.
    pub last: Option<f64>,
    pub test_accuracy: Option<f64>,
    pub wall_seconds: Option<f64>,
    pub run_dir: PathBuf,
    /// For a trial pruned or paused at a rung, the epochs it had there.
    pub rung_epoch: Option<usize>,
    /// Its Hyperband bracket (`None` without Hyperband).
    pub bracket: Option<usize>,
}

/// `val_accuracy` -> the metrics.csv column that holds it.
pub fn csv_column(metric: &str) -> String {
    match metric.strip_prefix("val_") {
        Some(_) => metric.to_string(),
        None => format!("train_{metric}"),
    }
}

/// Every column of a metrics.csv by its header, read once: each cell that
/// is a number, as [`read_metric`] reads one column.
pub fn read_columns(csv_path: &Path) -> BTreeMap<String, Vec<f64>> {
    let Ok(mut r) = csv::Reader::from_path(csv_path) else {
        return BTreeMap::new();
    };
    let Ok(headers) = r.headers().cloned() else {
        return BTreeMap::new();
    };
    let mut columns: Vec<Vec<f64>> = vec![Vec::new(); headers.len()];
    for rec in r.records().flatten() {
        for (column, cell) in columns.iter_mut().zip(rec.iter()) {
            if let Ok(v) = cell.parse::<f64>() {
                column.push(v);
            }
        }
    }
    headers.iter().map(String::from).zip(columns).collect()
}

/// One column of a metrics.csv.
pub fn read_metric(csv_path: &Path, metric: &str) -> Vec<f64> {
    let Ok(mut r) = csv::Reader::from_path(csv_path) else {
        return Vec::new();
    };
    let column = csv_column(metric);
    let Some(i) = r
        .headers()
        .ok()
        .and_then(|h| h.iter().position(|c| c == column))
    else {
        return Vec::new();
    };
    r.records()
        .flatten()
        .filter_map(|rec| rec.get(i).and_then(|v| v.parse::<f64>().ok()))
        .collect()
}

/// The epoch (from 0) and value of the best finite entry of a metric series.
pub fn best_of(values: &[f64], monitor: &Monitor) -> Option<(usize, f64)> {
    values
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_finite())
        .fold(None, |acc, (i, v)| match acc {
            Some((_, b)) if !monitor.improves(*v, b, 0.0) => acc,
            _ => Some((i, *v)),
        })
}

/// The finished (`done`) trial with the best value of the sweep's metric,
/// the first of equal values: the `*` of the ranked table once the sweep
/// has ended.
pub fn best_done<'a>(results: &'a [TrialResult], monitor: &Monitor) -> Option<&'a TrialResult> {
    let done: Vec<(&TrialResult, f64)> = results
        .iter()
        .filter(|r| r.state == TrialState::Done)
        .filter_map(|r| r.best.map(|b| (r, b)))
        .collect();
    let values: Vec<f64> = done.iter().map(|(_, b)| *b).collect();
    best_of(&values, monitor).map(|(i, _)| done[i].0)
}

/// A run's wall time up to its end, from its meta.json: every session's,
/// the time between a stop and its `--resume` left out (none while it
/// runs).
pub fn wall_seconds(meta: &Meta) -> Option<f64> {
    meta.seconds_until(meta.end_time.as_deref()?)
}

/// Results of every trial, from the journal and the trial folders.
pub fn collect(
    sweep_dir: &Path,
    trials: &[Trial],
    latest: &BTreeMap<usize, Entry>,
    sweep: &SweepPlan,
) -> Vec<TrialResult> {
    let monitor = &sweep.monitor;
    let hyperband = EarlyStop::hyperband(sweep);
    trials
        .iter()
        .map(|t| {
            let dir = t.dir(sweep_dir);
            let run = RunDir::at_existing(&dir);
            let meta: Option<Meta> = run.read_meta().ok();
            let values = read_metric(&run.metrics_csv(), &monitor.metric);
            let best = best_of(&values, monitor);
            let entry = latest.get(&t.index);
            TrialResult {
                trial: t.clone(),
                state: entry.map(|e| e.state).unwrap_or(TrialState::Pending),
                exit_code: entry.and_then(|e| e.exit_code),
                message: entry.and_then(|e| e.message.clone()),
                epochs: values.len(),
                best_epoch: best.map(|b| b.0),
                best: best.map(|b| b.1),
                last: values.last().copied(),
                test_accuracy: meta.as_ref().and_then(|m| m.test_accuracy),
                wall_seconds: meta.as_ref().and_then(wall_seconds),
                run_dir: dir,
                rung_epoch: entry
                    .filter(|e| matches!(e.state, TrialState::Pruned | TrialState::Paused))
                    .and_then(|e| e.epoch),
                bracket: hyperband.as_ref().map(|h| h.bracket_of(t.index)),
            }
        })
        .collect()
}

fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One row per trial: its values, status, best and last metric, wall time
/// and folder. Written atomically, so a crash never leaves half a file.
pub fn write_csv(
    path: &Path,
    axes: &[String],
    metric: &str,
    results: &[TrialResult],
) -> Result<(), RunDirError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let brackets = results.iter().any(|r| r.bracket.is_some());
    let mut header: Vec<String> = vec!["trial".into(), "id".into(), "status".into()];
    if brackets {
        header.push("bracket".into());
    }
    header.extend(axes.iter().cloned());
    header.extend([
        "epochs".into(),
        "best_epoch".into(),
        format!("best_{metric}"),
        format!("last_{metric}"),
        "test_accuracy".into(),
        "wall_seconds".into(),
        "exit_code".into(),
        "message".into(),
        "run_dir".into(),
    ]);
    let _ = w.write_record(&header);
    let num = |v: Option<f64>| v.map(|v| format!("{v}")).unwrap_or_default();
    for r in results {
        let mut rec = vec![
            r.trial.index.to_string(),
            r.trial.id.clone(),
            r.state.as_str().to_string(),
        ];
        if brackets {
            rec.push(r.bracket.map(|b| b.to_string()).unwrap_or_default());
        }
        rec.extend(
            axes.iter()
                .map(|a| r.trial.params.get(a).map(value_text).unwrap_or_default()),
        );
        rec.extend([
            r.epochs.to_string(),
            r.best_epoch.map(|e| e.to_string()).unwrap_or_default(),
            num(r.best),
            num(r.last),
            num(r.test_accuracy),
            r.wall_seconds
                .map(|s| format!("{s:.1}"))
                .unwrap_or_default(),
            r.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            r.message.clone().unwrap_or_default(),
            r.run_dir.display().to_string(),
        ]);
        let _ = w.write_record(&rec);
    }
    let bytes = w.into_inner().unwrap_or_default();
    write_atomic(path, &bytes)
}

/// Trials ranked by their best metric, the best one marked with `*`;
/// pruned trials (whose best comes from fewer epochs) after the others
/// with a metric, those that went further first; failed trials (even with
/// a metric: the best is never one that failed) and those with no metric
/// yet last. A trial running, paused at a rung (promotion) or stopped for
/// a resume is still in the race: it ranks by its best so far.
pub fn ranked_table(axes: &[String], monitor: &Monitor, results: &[TrialResult]) -> String {
    let mut order: Vec<&TrialResult> = results.iter().collect();
    let tier = |r: &TrialResult| match (r.best, r.state) {
        (None, _) | (Some(_), TrialState::Failed) => 2,
        (Some(_), TrialState::Pruned) => 1,
        _ => 0,
    };
    order.sort_by(|a, b| {
        tier(a)
            .cmp(&tier(b))
            .then_with(|| match tier(a) {
                1 => b.rung_epoch.cmp(&a.rung_epoch),
                _ => std::cmp::Ordering::Equal,
            })
            .then_with(|| match (a.best, b.best) {
                (Some(x), Some(y)) => {
                    let c = x.total_cmp(&y);
                    if monitor.maximize {
                        c.reverse()
                    } else {
                        c
                    }
                }
                _ => a.trial.index.cmp(&b.trial.index),
            })
    });
    let brackets = results.iter().any(|r| r.bracket.is_some());
    let mut header: Vec<String> = vec!["".into(), "trial".into(), "status".into()];
    if brackets {
        header.push("bracket".into());
    }
    header.extend(axes.iter().cloned());
    header.extend([
        format!("best {}", monitor.metric),
        "epoch".into(),
        "test acc".into(),
        "time".into(),
    ]);
    let mut rows: Vec<Vec<String>> = vec![header];
    for (rank, r) in order.iter().enumerate() {
        let mut row = vec![
            if rank == 0 && tier(r) == 0 {
                "*".to_string()
            } else {
                String::new()
            },
            r.trial.folder_name(),
            r.state.label(r.rung_epoch),
        ];
        if brackets {
            row.push(r.bracket.map(|b| b.to_string()).unwrap_or_default());
        }
        row.extend(
            axes.iter()
                .map(|a| r.trial.params.get(a).map(value_text).unwrap_or_default()),
        );
        row.extend([
            r.best
                .map(|v| format!("{v:.4}"))
                .unwrap_or_else(|| "-".into()),
            r.best_epoch
                .map(|e| (e + 1).to_string())
                .unwrap_or_else(|| "-".into()),
            r.test_accuracy
                .map(|v| format!("{v:.4}"))
                .unwrap_or_else(|| "-".into()),
            r.wall_seconds
                .map(|s| format!("{s:.0}s"))
                .unwrap_or_else(|| "-".into()),
        ]);
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// A heat map for exactly two grid axes, otherwise the metric against each
/// numeric axis, by the sweep's metric. `None` when nothing finished yet.
/// A pruned trial's best comes from fewer epochs: its heat-map cell is
/// grey with "pruned@N" (the epochs at its rung) under the value, its
/// scatter point a hollow grey circle.
pub fn plot(
    spec: &SweepPlan,
    results: &[TrialResult],
) -> Result<Option<image::RgbImage>, PlotError> {
    let monitor = &spec.monitor;
    let done: Vec<&TrialResult> = results.iter().filter(|r| r.best.is_some()).collect();
    if done.is_empty() {
        return Ok(None);
    }
    let title = format!("best {} per trial", monitor.metric);
    if spec.strategy == Strategy::Grid
        && spec.grid.len() == 2
        && spec.zip.is_empty()
        && !spec.is_conditional()
    {
        let keys: Vec<&String> = spec.grid.iter().map(|a| &a.key).collect();
        // "pruned@N" (the epochs at its rung, as in the ranked table).
        let pruned_mark =
            |r: &TrialResult| (r.state == TrialState::Pruned).then(|| r.state.label(r.rung_epoch));
        let (rows, cols) = (&spec.grid[0].values, &spec.grid[1].values);
        let cells: Vec<Vec<plots::Cell>> = rows
            .iter()
            .map(|rv| {
                cols.iter()
                    .map(|cv| {
                        let found = done.iter().find(|r| {
                            r.trial.params.get(keys[0]) == Some(rv)
                                && r.trial.params.get(keys[1]) == Some(cv)
                        });
                        plots::Cell {
                            value: found.and_then(|r| r.best),
                            mark: found.and_then(|r| pruned_mark(r)),
                        }
                    })
                    .collect()
            })
            .collect();
        let row_labels: Vec<String> = rows.iter().map(value_text).collect();
        let col_labels: Vec<String> = cols.iter().map(value_text).collect();
        let img = plots::heatmap(
            &format!("{title} (rows: {}, columns: {})", keys[0], keys[1]),
            &row_labels,
            &col_labels,
            &cells,
            |v| format!("{v:.4}"),
        )?;
        return Ok(Some(img));
    }
    let mut panels = Vec::new();
    for key in super::axis_names(spec) {
        let values: Vec<(&TrialResult, &toml::Value)> = done
            .iter()
            .filter_map(|r| Some((*r, r.trial.params.get(&key)?)))
            .collect();
        let number = |v: &toml::Value| match v {
            toml::Value::Float(f) => Some(*f),
            toml::Value::Integer(i) => Some(*i as f64),
            _ => None,
        };
        let categories = match values.iter().all(|(_, v)| number(v).is_some()) {
            true => None,
            false => Some(categories(spec, &key, values.iter().map(|(_, v)| *v))),
        };
        let points: Vec<plots::ScatterPoint> = values
            .iter()
            .filter_map(|(r, v)| {
                let x = match &categories {
                    None => number(v)?,
                    Some(c) => c.iter().position(|c| c == v)? as f64,
                };
                Some(plots::ScatterPoint {
                    x,
                    y: r.best?,
                    pruned: r.state == TrialState::Pruned,
                })
            })
            .collect();
        if !points.is_empty() {
            panels.push(plots::Panel {
                name: key,
                points,
                categories: categories.map(|c| c.into_iter().map(value_text).collect()),
            });
        }
    }
    if panels.is_empty() {
        return Ok(None);
    }
    Ok(Some(plots::scatter_panels(
        &title,
        &monitor.metric,
        &panels,
    )?))
}

/// The values of the axis `key`, for a panel with a column each: as the
/// plan lists them (grid lists, zip lists, random choices), then any other
/// value a trial had (a sweep folder from an older file).
fn categories<'a>(
    spec: &'a SweepPlan,
    key: &str,
    trials: impl Iterator<Item = &'a toml::Value>,
) -> Vec<&'a toml::Value> {
    let grid = spec
        .grid
        .iter()
        .filter(|a| a.key == key)
        .flat_map(|a| &a.values);
    let zip = spec.zip.get(key).into_iter().flatten();
    let choices = spec
        .random
        .iter()
        .filter(|a| a.key == key)
        .flat_map(|a| &a.cases)
        .flat_map(|c| match &c.distribution {
            Distribution::Choice(values) => values.as_slice(),
            _ => &[],
        });
    let mut out: Vec<&toml::Value> = Vec::new();
    for v in grid.chain(zip).chain(choices).chain(trials) {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::vocab::Mode;

    /// A trial result of 2 epochs, for tests here and in outcome.rs.
    pub(in crate::sweep) fn result(
        index: usize,
        lr: f64,
        best: Option<f64>,
        state: TrialState,
    ) -> TrialResult {
        let params = BTreeMap::from([(
            "optimizer.learning_rate".to_string(),
            toml::Value::Float(lr),
        )]);
        TrialResult {
            trial: Trial {
                index,
                id: super::super::trial_id(&params),
                params,
            },
            state,
            exit_code: None,
            message: None,
            epochs: 2,
            best_epoch: best.map(|_| 1),
            best,
            last: best,
            test_accuracy: None,
            wall_seconds: Some(3.0),
            run_dir: PathBuf::from(format!("/x/{index}")),
            rung_epoch: None,
            bracket: None,
        }
    }

    /// Every column read at once matches each column read alone.
    #[test]
    fn all_columns_read_once_match_each_read_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        std::fs::write(
            &path,
            "epoch,train_loss,val_loss,val_top2_accuracy\n0,2.5,2.0,0.5\n1,1.5,nan,\n",
        )
        .unwrap();
        let columns = read_columns(&path);
        assert_eq!(
            columns.keys().collect::<Vec<_>>(),
            ["epoch", "train_loss", "val_loss", "val_top2_accuracy"]
        );
        for (metric, column) in [
            ("loss", "train_loss"),
            ("val_loss", "val_loss"),
            ("val_top2_accuracy", "val_top2_accuracy"),
        ] {
            let alone = read_metric(&path, metric);
            assert_eq!(
                format!("{alone:?}"),
                format!("{:?}", columns[column]),
                "{metric}"
            );
        }
        assert_eq!(columns["val_top2_accuracy"], [0.5]);
        assert!(read_columns(&dir.path().join("missing.csv")).is_empty());
    }

    #[test]
    fn the_best_done_trial_is_never_a_pruned_failed_or_running_one() {
        let results = vec![
            result(0, 0.1, Some(0.5), TrialState::Done),
            result(1, 0.01, Some(0.99), TrialState::Pruned),
            result(2, 0.001, Some(0.98), TrialState::Failed),
            result(3, 0.003, Some(0.97), TrialState::Running),
            result(4, 0.004, Some(0.7), TrialState::Done),
            result(5, 0.005, Some(0.7), TrialState::Done),
        ];
        let max = Monitor::new("val_accuracy", Mode::Auto);
        let best = |m: &Monitor, r: &[TrialResult]| best_done(r, m).map(|r| r.trial.index);
        // Of equal values, the first.
        assert_eq!(best(&max, &results), Some(4));
        let min = Monitor::new("val_loss", Mode::Auto);
        assert_eq!(best(&min, &results), Some(0));
        assert_eq!(best(&max, &results[1..4]), None);
    }

    #[test]
    fn ranking_puts_the_best_first_and_failures_last() {
        let m = Monitor::new("val_accuracy", Mode::Auto);
        // Trial 3 failed after the best epoch of all (a NaN later, say):
        // it is not the best, and ranks with the failures.
        let results = vec![
            result(0, 0.1, Some(0.5), TrialState::Done),
            result(1, 0.01, None, TrialState::Failed),
            result(2, 0.001, Some(0.9), TrialState::Done),
            result(3, 0.003, Some(0.95), TrialState::Failed),
        ];
        let axes = vec!["optimizer.learning_rate".to_string()];
        let table = ranked_table(&axes, &m, &results);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[1].starts_with("*  trial-002"), "{table}");
        assert!(lines[2].contains("trial-000"), "{table}");
        assert!(
            lines[3].contains("trial-001") && lines[3].contains("failed"),
            "{table}"
        );
        assert!(
            lines[4].contains("trial-003") && lines[4].contains("failed"),
            "{table}"
        );
        // With only failed (or pruned) trials, none is marked best.
        for (state, label) in [(TrialState::Failed, "failed"), (TrialState::Done, "pruned")] {
            let mut only = result(3, 0.003, Some(0.95), state);
            if label == "pruned" {
                only = pruned(only, 1);
            }
            let table = ranked_table(&axes, &m, &[only]);
            let row = table.lines().nth(1).unwrap();
            assert!(!row.starts_with('*') && row.contains(label), "{table}");
        }
    }

    /// A paused trial ranks by its value among the running and done ones
    /// (here the best so far, with the `*`); pruned ones come after them,
    /// the one pruned at the later rung first, whatever their values.
    #[test]
    fn a_paused_trial_ranks_by_its_value_and_pruned_ones_come_after() {
        let m = Monitor::new("val_loss", Mode::Auto);
        let mut paused = result(1, 0.02, Some(0.5), TrialState::Paused);
        paused.rung_epoch = Some(3);
        let results = vec![
            result(0, 0.01, Some(1.0), TrialState::Done),
            paused,
            pruned(result(2, 0.03, Some(0.2), TrialState::Done), 1),
            pruned(result(3, 0.04, Some(0.9), TrialState::Done), 3),
            result(4, 0.05, Some(0.7), TrialState::Running),
        ];
        let axes = vec!["optimizer.learning_rate".to_string()];
        let table = ranked_table(&axes, &m, &results);
        let order: Vec<&str> = table
            .lines()
            .skip(1)
            .map(|l| {
                l.split_whitespace()
                    .find(|w| w.starts_with("trial-"))
                    .unwrap()
            })
            .collect();
        let names: Vec<String> = results.iter().map(|r| r.trial.folder_name()).collect();
        assert_eq!(
            order,
            [&names[1], &names[4], &names[0], &names[3], &names[2]],
            "{table}"
        );
        assert!(table.lines().nth(1).unwrap().starts_with('*'), "{table}");
        assert!(table.contains("paused@3"), "{table}");
    }

    #[test]
    fn csv_has_one_row_per_trial_with_its_values() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("summary.csv");
        let results = vec![
            result(0, 0.1, Some(0.5), TrialState::Done),
            result(1, 0.01, None, TrialState::Failed),
        ];
        write_csv(
            &path,
            &["optimizer.learning_rate".to_string()],
            "val_accuracy",
            &results,
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with(
            "trial,id,status,optimizer.learning_rate,epochs,best_epoch,best_val_accuracy"
        ));
        assert!(lines[1].starts_with("0,"), "{text}");
        assert!(lines[2].contains(",failed,0.01,"), "{text}");
        assert_eq!(lines.len(), 3);
    }

    /// Under Hyperband each trial's bracket is read into its result and
    /// shown as a column of summary.csv and of the ranked table; under
    /// ASHA (one bracket) there is no such column.
    #[test]
    fn hyperband_results_name_their_bracket() {
        let tmp = tempfile::tempdir().unwrap();
        let toml = |kind: &str| {
            SweepPlan::from_toml(
                &format!(
                    "strategy = \"random\"\ntrials = 8\nmetric = \"val_accuracy\"\n\
                     [random]\n\"optimizer.learning_rate\" = {{ distribution = \"log_uniform\", low = 1e-4, high = 1e-1 }}\n\
                     [early_stop]\ntype = \"{kind}\"\nmin_epochs = 1\nmax_epochs = 9\n"
                ),
                1,
            )
        };
        let trials: Vec<Trial> = (0..8)
            .map(|i| result(i, 0.01, None, TrialState::Pending).trial)
            .collect();
        let axes = ["optimizer.learning_rate".to_string()];
        let hyperband = toml("hyperband");
        let results = collect(tmp.path(), &trials, &BTreeMap::new(), &hyperband);
        // By hand: Hyperband over 9 epochs with eta 3 has brackets of
        // n = 9, 5 and 3 trials, dealt out to the smallest share so far
        // (ties to the lower bracket): 0, 1, 2, 0, 1, 0, 0, 2.
        let brackets: Vec<Option<usize>> = results.iter().map(|r| r.bracket).collect();
        let by_hand = [0, 1, 2, 0, 1, 0, 0, 2].map(Some);
        assert_eq!(brackets, by_hand);
        let path = tmp.path().join("summary.csv");
        write_csv(&path, &axes, "val_accuracy", &results).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("trial,id,status,bracket,optimizer.learning_rate,"),
            "{text}"
        );
        let row: Vec<&str> = text.lines().nth(3).unwrap().split(',').collect();
        assert_eq!((row[0], row[3]), ("2", "2"), "{text}");
        let table = ranked_table(&axes, &hyperband.monitor, &results);
        let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(header[..3], ["trial", "status", "bracket"], "{table}");

        let asha = toml("asha");
        let results = collect(tmp.path(), &trials, &BTreeMap::new(), &asha);
        assert!(results.iter().all(|r| r.bracket.is_none()));
        write_csv(&path, &axes, "val_accuracy", &results).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("trial,id,status,optimizer.learning_rate,"),
            "{text}"
        );
        assert!(!ranked_table(&axes, &asha.monitor, &results).contains("bracket"));
    }

    fn pruned(mut r: TrialResult, at: usize) -> TrialResult {
        r.state = TrialState::Pruned;
        r.rung_epoch = Some(at);
        r
    }

    fn count(img: &image::RgbImage, color: plotters::style::RGBColor) -> usize {
        let plotters::style::RGBColor(r, g, b) = color;
        img.pixels().filter(|p| p.0 == [r, g, b]).count()
    }

    #[test]
    fn plot_gives_an_axis_of_names_a_column_per_name() {
        let spec = SweepPlan::from_toml(
            "strategy = \"random\"\ntrials = 4\nmetric = \"val_loss\"\n[random]\n\
             \"model.initializer\" = { distribution = \"choice\", values = [\"he_normal\", \"glorot_uniform\", \"he_uniform\"] }\n\
             \"optimizer.learning_rate\" = { distribution = \"log_uniform\", low = 1e-4, high = 1e-1 }\n",
            1,
        );
        let text = |s: &str| toml::Value::String(s.into());
        let with_init = |inits: &[&str]| -> Vec<TrialResult> {
            inits
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let mut r = result(i, 0.01, Some(0.3 + 0.1 * i as f64), TrialState::Done);
                    r.trial.params.insert("model.initializer".into(), text(t));
                    r
                })
                .collect()
        };
        // The columns in the plan's order, then values the plan lacks.
        let trials = [
            text("glorot_uniform"),
            text("lecun_normal"),
            text("he_normal"),
        ];
        let names: Vec<String> = categories(&spec, "model.initializer", trials.iter())
            .into_iter()
            .map(value_text)
            .collect();
        assert_eq!(
            names,
            ["he_normal", "glorot_uniform", "he_uniform", "lecun_normal"]
        );

        // A panel for the names (the first) beside the learning rate's,
        // each point in its name's column.
        let blue_xs = |inits: &[&str]| {
            let img = plot(&spec, &with_init(inits)).unwrap().unwrap();
            assert_eq!(img.width(), 2 * 480);
            let plotters::style::RGBColor(r, g, b) = plots::FINISHED;
            let xs: Vec<u32> = img
                .enumerate_pixels()
                .filter(|(x, _, p)| *x < 480 && p.0 == [r, g, b])
                .map(|(x, _, _)| x)
                .collect();
            assert!(!xs.is_empty());
            (*xs.iter().min().unwrap(), *xs.iter().max().unwrap())
        };
        // Three columns over about 400 pixels: he_normal's centre near
        // 135, glorot_uniform's near 265.
        let (lo, hi) = blue_xs(&["he_normal", "he_normal"]);
        assert!(lo > 100 && hi < 170, "{lo}..{hi}");
        let (lo, hi) = blue_xs(&["glorot_uniform", "glorot_uniform", "glorot_uniform"]);
        assert!(lo > 230 && hi < 300, "{lo}..{hi}");
    }

    #[test]
    fn plot_sets_pruned_trials_apart() {
        // Scatter: one numeric axis.
        let spec = SweepPlan::from_toml(
            "metric = \"val_loss\"\n[grid]\n\"optimizer.learning_rate\" = [0.1, 0.01, 0.001, 0.0001]\n",
            1,
        );
        let lrs = [0.1, 0.01, 0.001, 0.0001];
        let finished: Vec<TrialResult> = lrs
            .iter()
            .enumerate()
            .map(|(i, lr)| result(i, *lr, Some(0.3 + 0.1 * i as f64), TrialState::Done))
            .collect();
        let mut some_pruned = finished.clone();
        some_pruned[1] = pruned(some_pruned[1].clone(), 3);
        some_pruned[3] = pruned(some_pruned[3].clone(), 1);
        let a = plot(&spec, &finished).unwrap().unwrap();
        let b = plot(&spec, &some_pruned).unwrap().unwrap();
        assert!(count(&b, plots::MUTED) > count(&a, plots::MUTED) + 90);
        assert!(count(&b, plots::FINISHED) < count(&a, plots::FINISHED) - 40);
        assert!(b.height() > a.height(), "a legend under the panels");

        // Heat map: two grid axes; the pruned trial's cell is grey.
        let spec = SweepPlan::from_toml(
            "metric = \"val_loss\"\n[grid]\n\"model.dropout\" = [0.2, 0.5]\n\"optimizer.learning_rate\" = [0.1, 0.01]\n",
            1,
        );
        let grid: Vec<TrialResult> = [(0.2, 0.1), (0.2, 0.01), (0.5, 0.1), (0.5, 0.01)]
            .iter()
            .enumerate()
            .map(|(i, (d, lr))| {
                let mut r = result(i, *lr, Some(0.3 + 0.1 * i as f64), TrialState::Done);
                r.trial
                    .params
                    .insert("model.dropout".into(), toml::Value::Float(*d));
                r
            })
            .collect();
        let mut grid_pruned = grid.clone();
        grid_pruned[2] = pruned(grid_pruned[2].clone(), 3);
        let a = plot(&spec, &grid).unwrap().unwrap();
        let b = plot(&spec, &grid_pruned).unwrap().unwrap();
        assert_eq!(a.dimensions(), b.dimensions());
        assert!(count(&b, plots::MUTED_FILL) > count(&a, plots::MUTED_FILL) + 90 * 90 / 2);
    }

    #[test]
    fn metric_columns() {
        assert_eq!(csv_column("val_accuracy"), "val_accuracy");
        assert_eq!(csv_column("loss"), "train_loss");
        assert_eq!(csv_column("top5_accuracy"), "train_top5_accuracy");
    }
}
