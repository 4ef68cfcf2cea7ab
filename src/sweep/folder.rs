//! A sweep folder: its files, `sweep.json`, and the sweep read back from it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::journal::{Entry, Journal, TrialState};
use super::{Trial, SWEEP_FILE, TRIAL_CONFIG};
use crate::config::{self, ConfigError, LoadOptions};
use crate::plan::{ExperimentPlan, PlanErrors, SweepPlan};
use crate::rundir::describe::describe;
use crate::rundir::{self, write_atomic, RunDirError, SWEEP_META};
use crate::vocab::Strategy;

/// Why a folder could not be read back as a sweep.
#[derive(Debug, Error)]
pub enum FolderError {
    #[error("{} is not a sweep folder: {reason}", dir.display())]
    NotASweep { dir: PathBuf, reason: String },
    #[error("{}: sweep.json is unreadable: {reason}", dir.display())]
    BadMeta { dir: PathBuf, reason: String },
    #[error("{} has no [sweep] table", .0.display())]
    NoSweepTable(PathBuf),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Plan(#[from] PlanErrors),
}

/// `sweep.json`: where the sweep came from and how it runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepMeta {
    pub experiment: String,
    pub source: PathBuf,
    pub set: Vec<String>,
    /// `RUNNER_*` config variables that applied at the start, as
    /// `key=value` (applied before `set`, as at the start).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    pub created: String,
    pub launcher: String,
    /// Trials in all (for TPE, those chosen so far and those to come).
    pub trials: usize,
    pub runner_version: String,
    /// `--set` flags given to `runner sweep --resume` that raised the
    /// sweep's budget (`sweep.trials`, `sweep.max_trials`,
    /// `sweep.max_hours`), in order: applied over `sweep.toml` whenever the
    /// sweep is read back, so `sweep.toml` is never rewritten.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resume_set: Vec<String>,
}

/// Paths inside a sweep folder.
pub struct SweepDir {
    pub root: PathBuf,
}

impl SweepDir {
    pub fn sweep_file(&self) -> PathBuf {
        self.root.join(SWEEP_FILE)
    }
    pub fn meta(&self) -> PathBuf {
        self.root.join(SWEEP_META)
    }
    pub fn summary_csv(&self) -> PathBuf {
        self.root.join("summary.csv")
    }
    pub fn summary_png(&self) -> PathBuf {
        self.root.join("summary.png")
    }
    pub fn lock(&self) -> PathBuf {
        self.root.join(".lock")
    }
    pub fn journal(&self) -> Journal {
        Journal::new(&self.root)
    }
    pub fn read_meta(&self) -> Result<SweepMeta, FolderError> {
        let text = std::fs::read_to_string(self.meta()).map_err(|e| FolderError::NotASweep {
            dir: self.root.clone(),
            reason: if self.meta().exists() {
                format!("cannot read {SWEEP_META}: {e}")
            } else {
                describe(&self.root).not_a_sweep(&self.root)
            },
        })?;
        serde_json::from_str(&text).map_err(|e| FolderError::BadMeta {
            dir: self.root.clone(),
            reason: e.to_string(),
        })
    }
}

/// A sweep: its folder, `sweep.json`, plans and trials.
pub struct Sweep {
    pub dir: SweepDir,
    pub meta: SweepMeta,
    /// The plan of its `[sweep]`.
    pub sweep: SweepPlan,
    /// The plan of the whole experiment, `[sweep]` included.
    pub plan: ExperimentPlan,
    pub trials: Vec<Trial>,
}

impl Sweep {
    /// The hours of `max_hours` once they have run out, counted from the
    /// sweep's creation (the time in `sweep.json`, so a resume or a Slurm
    /// task counts from the same start); `None` before, or without it.
    pub fn out_of_time(&self) -> Option<f64> {
        let hours = self.sweep.max_hours?;
        let elapsed = rundir::seconds_between(&self.meta.created, &rundir::now_rfc3339())?;
        (elapsed >= hours * 3600.0).then_some(hours)
    }
}

/// Read a sweep folder back: its plans and trials.
pub fn open(dir: &Path) -> Result<Sweep, FolderError> {
    let dir = SweepDir {
        root: dir.to_path_buf(),
    };
    let meta = dir.read_meta()?;
    let loaded = config::load(&dir.sweep_file(), &LoadOptions::recorded(&meta.resume_set)?)?;
    let plan = crate::plan::plan(&loaded)?;
    let sweep = plan
        .sweep
        .clone()
        .ok_or_else(|| FolderError::NoSweepTable(dir.sweep_file()))?;
    let trials = match sweep.strategy {
        // TPE's trials after the first ones depend on results: the journal
        // has every one proposed so far.
        Strategy::Tpe => journaled_trials(&dir.journal()),
        _ => super::expand(&sweep),
    };
    Ok(Sweep {
        dir,
        meta,
        sweep,
        plan,
        trials,
    })
}

/// The trials the journal has values for: a TPE sweep's trials chosen so
/// far (on Slurm, more as their tasks start).
pub fn journaled_trials(journal: &Journal) -> Vec<Trial> {
    journal
        .trials()
        .into_iter()
        .map(|(index, (id, params))| Trial { index, id, params })
        .collect()
}

/// A TPE sweep's trials that are not chosen yet, by index.
pub fn unchosen(s: &Sweep) -> Vec<usize> {
    let chosen: std::collections::BTreeSet<usize> = s.trials.iter().map(|t| t.index).collect();
    (0..s.meta.trials).filter(|i| !chosen.contains(i)).collect()
}

/// A trial's folder (`trial.toml`, `params.json`) and its first journal
/// line, `pending` with its values.
pub fn write_trial(dir: &SweepDir, t: &Trial, plan: &ExperimentPlan) -> Result<(), RunDirError> {
    let tdir = t.dir(&dir.root);
    write_atomic(
        &tdir.join(TRIAL_CONFIG),
        config::to_toml(&plan.spec).as_bytes(),
    )?;
    write_atomic(
        &tdir.join("params.json"),
        serde_json::to_string_pretty(&t.params)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    let mut e = Entry::new(t.index, &t.id, TrialState::Pending);
    e.params = Some(t.params.clone());
    dir.journal().append(&e)
}

/// Keys whose resolved values differ between two configs.
pub fn differing_keys(a: &toml::Table, b: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for k in keys {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match (a.get(k), b.get(k)) {
            (Some(toml::Value::Table(x)), Some(toml::Value::Table(y))) => {
                differing_keys(x, y, &path, out)
            }
            (x, y) if x != y => out.push(path),
            _ => {}
        }
    }
}
