//! `runner run --resume DIR --set train.epochs=N`: a run trained on past
//! the epochs it planned, as Keras's `fit(initial_epoch=...)` or Lightning's
//! `Trainer(max_epochs=N).fit(ckpt_path=...)` carries a model on.
//!
//! Only `train.epochs` can change, and only to more than the run has
//! trained: anything else makes another experiment. A resume is exact, so
//! the run then equals one that planned N epochs from the start, and its
//! `config.resolved.toml` says N. Two runs would break that and are
//! refused: one that early stopping ended (more epochs would meet the same
//! rule, and its weights may be the restored best ones), and one whose
//! cosine schedule has begun, since its rates span `train.epochs`.

use crate::config::diagnostic::did_you_mean;
use crate::config::{self, ConfigError, LoadOptions, Loaded, Override};
use crate::error::{Error, Result};
use crate::plan::{self, ExperimentPlan, ScheduleShape};
use crate::rundir::{Meta, RunDir, Status};
use crate::sweep::TRIAL_CONFIG;

/// The keys `--set` may change on `runner run --resume`.
pub const RESUME_KEYS: [&str; 1] = ["train.epochs"];

/// A run to be trained on to more epochs than it planned.
pub(super) struct Extension {
    /// The `--set` flags, as given.
    pub set: Vec<String>,
    /// The epochs it planned before.
    pub from: usize,
}

/// The resolved config of `run`, which has trained `done` epochs, with the
/// `--set` flags of its resume applied, once every check has passed.
pub(super) fn extended(
    run: &RunDir,
    meta: &Meta,
    done: usize,
    set: &[String],
) -> Result<(Loaded, ExperimentPlan, Extension)> {
    let dir = run.root();
    for raw in set {
        let o = Override::parse(raw)?;
        if o.remove || !RESUME_KEYS.contains(&o.key.as_str()) {
            let hint = match did_you_mean(&o.key, &RESUME_KEYS) {
                _ if o.remove => " (a key cannot be removed)".to_string(),
                Some(d) => format!(" ({d})"),
                None => String::new(),
            };
            return Err(ConfigError::BadOverride {
                raw: raw.clone(),
                reason: format!(
                    "only the epochs can change when a run resumes: `--set train.epochs=N`{hint}; \
                     anything else makes another experiment, so start a new run for it \
                     (`model.init_from = \"{}\"` starts it from this run's weights)",
                    dir.display()
                ),
            }
            .into());
        }
    }
    if dir.join(TRIAL_CONFIG).is_file() {
        return Err(Error::Usage(format!(
            "{} is a sweep trial, whose epochs are its sweep's; to train its values longer, \
             start a new run from its config: `runner run {} --set train.epochs=N`",
            dir.display(),
            run.resolved_config().display()
        )));
    }
    let before = plan::plan_saved(&config::load_exact(&run.resolved_config())?)?;
    let loaded = config::load(&run.resolved_config(), &LoadOptions::recorded(set)?)?;
    let plan = plan::plan_saved(&loaded)?;
    let (from, to) = (before.train.epochs, plan.train.epochs);
    if early_stopped(meta, done, from) {
        return Err(Error::Usage(format!(
            "early stopping ended {} after epoch {done} of {from}, and more epochs would meet \
             the same rule; to train on from its weights, start a new run with \
             `model.init_from = \"{}\"`",
            dir.display(),
            dir.display()
        )));
    }
    if to <= done {
        return Err(Error::Usage(format!(
            "{} has trained {done} epoch(s); to train it on, `train.epochs` must be more than \
             that, not {to}",
            dir.display()
        )));
    }
    if to != from && cosine_begun(&plan, done) {
        return Err(Error::Usage(format!(
            "{}'s cosine schedule (callbacks.lr_schedule) spans train.epochs: its {done} \
             epoch(s) followed a decay over {from}, and a run of {to} would have had other \
             rates; start a new run of its config, `runner run {} --set train.epochs={to}`, \
             or one from its weights (`model.init_from`)",
            dir.display(),
            run.resolved_config().display()
        )));
    }
    let extension = Extension {
        set: set.to_vec(),
        from,
    };
    Ok((loaded, plan, extension))
}

/// What `runner run --resume` of a completed run offers instead, in
/// parentheses: to train it on with `--set train.epochs=N` where
/// [`extended`] would allow it, else what would (a new run), or nothing.
pub(super) fn completed_hint(run: &RunDir, meta: &Meta) -> String {
    let dir = run.root();
    if dir.join(TRIAL_CONFIG).is_file() {
        return String::new();
    }
    let Ok(plan) = config::load_exact(&run.resolved_config())
        .map_err(Error::from)
        .and_then(|l| plan::plan_saved(&l).map_err(Error::from))
    else {
        return String::new();
    };
    let done = meta.epochs_completed;
    if early_stopped(meta, done, plan.train.epochs) {
        format!(
            " (early stopping ended it after epoch {done}; `model.init_from = \"{}\"` starts a new run from its weights)",
            dir.display()
        )
    } else if cosine_begun(&plan, done) {
        format!(
            " (its cosine schedule spans its epochs; `runner run {} --set train.epochs=N` starts a longer run of its config)",
            run.resolved_config().display()
        )
    } else {
        " (`--set train.epochs=N` trains it on to N epochs)".to_string()
    }
}

/// A completed run that trained fewer epochs than it planned: early
/// stopping ended it.
fn early_stopped(meta: &Meta, done: usize, planned: usize) -> bool {
    meta.status == Status::Completed && done < planned
}

/// Whether `plan`'s cosine schedule has begun to decay after `done`
/// epochs: its rates then span `train.epochs`, which cannot change.
fn cosine_begun(plan: &ExperimentPlan, done: usize) -> bool {
    plan.callbacks
        .lr_schedule
        .as_ref()
        .is_some_and(|s| matches!(s.shape, ScheduleShape::Cosine { .. }) && done > s.warmup_epochs)
}

/// Record the extension in the run folder before training goes on: the
/// resolved config says the new epochs, and `overrides.json` lists the
/// flags under `resume_set`, after those of earlier resumes. An
/// `overrides.json` that exists but does not read as JSON is left as it is,
/// not replaced by one that would lose what it held.
pub(super) fn record(run: &RunDir, plan: &ExperimentPlan, ext: &Extension) -> Result<()> {
    run.write(
        &run.resolved_config(),
        config::to_toml(&plan.spec).as_bytes(),
    )?;
    let path = run.overrides();
    let mut overrides: serde_json::Value = match std::fs::read_to_string(&path) {
        Ok(text) => match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(_) => return Ok(()),
        },
        Err(_) => serde_json::json!({}),
    };
    if let Some(map) = overrides.as_object_mut() {
        let list = map
            .entry("resume_set")
            .or_insert_with(|| serde_json::json!([]));
        if let Some(list) = list.as_array_mut() {
            list.extend(ext.set.iter().map(|s| serde_json::json!(s)));
        }
    }
    run.write(
        &path,
        serde_json::to_string_pretty(&overrides)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    Ok(())
}
