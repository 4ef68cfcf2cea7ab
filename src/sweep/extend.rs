//! `runner sweep --resume DIR --set sweep.trials=N`: a sweep's budget
//! raised when it resumes, as an Optuna study is optimized for more trials.
//!
//! Only the budget can change: `sweep.trials`, `sweep.max_trials` and
//! `sweep.max_hours`; and on Slurm the `[sweep.launcher]` settings
//! (`--set sweep.launcher.time=08:00:00` after a time limit). The flags
//! are recorded in `sweep.json`
//! ([`SweepMeta::resume_set`](super::folder::SweepMeta)) and applied over
//! `sweep.toml` whenever the sweep is read back; one atomic write commits
//! them. A random sweep's draws and a grid's order do not depend on the
//! number of trials, so the trials already planned keep their values and
//! the new ones follow them; TPE chooses the new ones from every result so
//! far. A sweep never loses trials this way.

use super::error::SweepError;
use super::folder::{write_trial, FolderError, Sweep};
use super::{expand, total_trials, trial_config, Trial};
use crate::config::diagnostic::did_you_mean;
use crate::config::{self, ConfigError, LoadOptions, Override};
use crate::plan::{self, LauncherPlan};
use crate::rundir::{self, write_atomic};
use crate::vocab::Strategy;

/// The keys `--set` may change on `--resume`.
pub const RESUME_KEYS: [&str; 3] = ["sweep.trials", "sweep.max_trials", "sweep.max_hours"];

/// The Slurm settings `--set` may change on `--resume` of a Slurm sweep:
/// where and how its tasks run (a longer time limit, more memory, another
/// partition), not what they compute. They apply to the tasks submitted
/// from then on.
pub const LAUNCHER_KEYS: [&str; 9] = [
    "sweep.launcher.partition",
    "sweep.launcher.time",
    "sweep.launcher.cpus_per_task",
    "sweep.launcher.mem",
    "sweep.launcher.gres",
    "sweep.launcher.account",
    "sweep.launcher.max_parallel",
    "sweep.launcher.signal_seconds",
    "sweep.launcher.extra",
];

/// Whether `--resume` may change `key`: a budget key, or on a Slurm sweep
/// one of its Slurm settings.
pub fn resume_may_change(key: &str, slurm: bool) -> bool {
    RESUME_KEYS.contains(&key) || (slurm && LAUNCHER_KEYS.contains(&key))
}

/// Apply `set` (the `--set` flags of `--resume`) to the sweep `s`: check
/// the keys, plan the sweep with them, plan and write the trials they add,
/// then record them in `sweep.json`. A refusal writes nothing; the new
/// trials' folders are written before `sweep.json`, whose one atomic write
/// makes them part of the sweep.
pub(super) fn extend(s: &mut Sweep, set: &[String]) -> Result<(), SweepError> {
    if set.is_empty() {
        return Ok(());
    }
    let slurm = s.meta.launcher == "slurm";
    // The flags that change Slurm settings, and those that change the budget.
    let (mut settings, mut budget): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
    for raw in set {
        let o = Override::parse(raw)?;
        let launcher_key = LAUNCHER_KEYS.contains(&o.key.as_str());
        if launcher_key {
            settings.push(raw);
        } else {
            budget.push(raw);
        }
        let refusal = if launcher_key && !slurm {
            Some(
                "this sweep runs its trials locally, with no Slurm settings to change; \
                 a sweep's launcher is chosen when it starts"
                    .into(),
            )
        } else if !resume_may_change(&o.key, slurm) {
            let keys: Vec<&str> = RESUME_KEYS
                .iter()
                .chain(LAUNCHER_KEYS.iter().filter(|_| slurm))
                .copied()
                .collect();
            let hint = did_you_mean(&o.key, &keys)
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            let what = if slurm {
                let settings: Vec<&str> = LAUNCHER_KEYS
                    .iter()
                    .filter_map(|k| k.strip_prefix("sweep.launcher."))
                    .collect();
                format!(
                    "the sweep's budget ({}) and its Slurm settings (sweep.launcher.{}) \
                     can change when it resumes",
                    RESUME_KEYS.join(", "),
                    settings.join(", ")
                )
            } else {
                format!(
                    "the sweep's budget can change when it resumes: {}",
                    RESUME_KEYS.join(", ")
                )
            };
            Some(format!(
                "only {what}{hint}; anything else makes another experiment, so start a new sweep for it",
            ))
        } else if o.key == "sweep.trials" && s.sweep.strategy == Strategy::Grid {
            Some("a grid's trials are its points; `sweep.max_trials` caps them".into())
        } else {
            None
        };
        if let Some(reason) = refusal {
            return Err(ConfigError::BadOverride {
                raw: raw.clone(),
                reason,
            }
            .into());
        }
    }
    let mut all: Vec<String> = s.meta.resume_set.clone();
    // A sweep sent to Slurm with `--launcher slurm` may have no
    // `[sweep.launcher]` table to set keys in.
    if !settings.is_empty() && !matches!(s.sweep.launcher, LauncherPlan::Slurm(_)) {
        all.push("sweep.launcher.type=slurm".into());
    }
    all.extend(set.iter().cloned());
    let file = s.dir.sweep_file();
    let loaded = config::load(&file, &LoadOptions::recorded(&all)?)?;
    let new_plan = plan::plan(&loaded).map_err(FolderError::from)?;
    let Some(sweep) = new_plan.sweep.clone() else {
        return Err(SweepError::NoSweepTable(file));
    };
    let before = s.meta.trials;
    // A grid's points or the random draws; TPE chooses its own as the
    // sweep goes on.
    let planned = (sweep.strategy != Strategy::Tpe).then(|| expand(&sweep));
    let total = total_trials(&sweep, planned.as_ref().map_or(0, Vec::len));
    if total < before {
        return Err(SweepError::FewerTrials {
            dir: s.dir.root.clone(),
            had: before,
            now: total,
        });
    }
    // The trials this adds.
    let added: Vec<Trial> = match planned {
        None => Vec::new(),
        Some(trials) => {
            for (old, new) in s.trials.iter().zip(&trials) {
                if old.id != new.id {
                    return Err(SweepError::TrialsChanged {
                        dir: s.dir.root.clone(),
                        index: old.index,
                        was: old.id.clone(),
                        now: new.id.clone(),
                    });
                }
            }
            trials.into_iter().skip(s.trials.len()).collect()
        }
    };
    // A local sweep that another process runs is not changed under it.
    let Some(lock) = rundir::try_lock(&s.dir.lock())? else {
        return Err(SweepError::Locked(s.dir.root.clone()));
    };
    let text = config::to_toml(&new_plan.spec);
    let plans = added
        .iter()
        .map(|t| trial_config(&file, &text, t).map(|(_, p)| p))
        .collect::<Result<Vec<_>, _>>()?;
    for (t, p) in added.iter().zip(&plans) {
        write_trial(&s.dir, t, p)?;
    }
    let mut meta = s.meta.clone();
    meta.trials = total;
    meta.resume_set = all;
    write_atomic(
        &s.dir.meta(),
        serde_json::to_string_pretty(&meta)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    drop(lock);
    if !budget.is_empty() {
        crate::outln!(
            "Sweep budget changed ({}): {before} trial(s) before, {total} now",
            budget.join(", ")
        );
    }
    if !settings.is_empty() {
        crate::outln!(
            "Slurm settings changed ({}): the tasks submitted from now on use them",
            settings.join(", ")
        );
    }
    s.meta = meta;
    s.sweep = sweep;
    s.plan = new_plan;
    s.trials.extend(added);
    Ok(())
}
