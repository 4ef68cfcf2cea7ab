//! Starting a sweep: plan every trial before anything is created, then the
//! sweep folder (`sweep.toml`, the sources, `sweep.json`, a `trial.toml` per
//! trial, the journal, the HParams experiment), then run or submit.

use std::path::Path;

use super::error::SweepError;
use super::folder::{Sweep, SweepDir, SweepMeta};
use super::follow::follow;
use super::journal::{Entry, TrialState};
use super::local::run_locally;
use super::submit::submit;
use super::{check_axes, expand, hparams, trial_config, SweepOptions, Trial, TRIAL_CONFIG};
use crate::config::{self, Loaded};
use crate::plan::{ExperimentPlan, LauncherPlan, SweepPlan};
use crate::rundir::{self, write_atomic};
use crate::vocab::Strategy;

/// A sweep to start: the experiment file as given, its `--set` flags, and
/// the experiment read and planned from them.
pub struct NewSweep<'a> {
    pub file: &'a Path,
    pub set: &'a [String],
    pub loaded: &'a Loaded,
    pub plan: ExperimentPlan,
}

/// A sweep with every trial planned, before anything is written.
struct Planned {
    sweep: SweepPlan,
    launcher: LauncherPlan,
    trials: Vec<Trial>,
    trial_plans: Vec<ExperimentPlan>,
}

impl Planned {
    fn strategy(&self) -> &'static str {
        match self.sweep.strategy {
            Strategy::Grid => "grid",
            Strategy::Random => "random",
        }
    }
}

/// The sweep's plan, its launcher (the file's, or `launcher`, the
/// `--launcher` flag) and every trial planned from the sweep's resolved
/// config (held in memory, named `file` in diagnostics).
fn plan_trials(new: &NewSweep, launcher: Option<&str>) -> Result<Planned, SweepError> {
    let Some(sweep) = new.plan.sweep.clone() else {
        return Err(SweepError::NoSweepTable(new.file.to_path_buf()));
    };
    let launcher = sweep.launcher_with(launcher)?;
    let trials = expand(&sweep);
    if trials.is_empty() {
        return Err(SweepError::NoTrials);
    }
    let text = config::to_toml(&new.plan.spec);
    check_axes(new.file, &text, &sweep)?;
    let trial_plans = trials
        .iter()
        .map(|t| trial_config(new.file, &text, t).map(|(_, p)| p))
        .collect::<Result<_, _>>()?;
    Ok(Planned {
        sweep,
        launcher,
        trials,
        trial_plans,
    })
}

/// `runner sweep --dry-run FILE`: plan every trial and list them; nothing
/// is created or run.
pub fn dry_run(new: &NewSweep, launcher: Option<&str>) -> Result<(), SweepError> {
    let p = plan_trials(new, launcher)?;
    let monitor = &p.sweep.monitor;
    crate::outln!(
        "Sweep of {}: {}, {} trials, ranked by {} ({})",
        new.file.display(),
        p.strategy(),
        p.trials.len(),
        monitor.metric,
        if monitor.maximize { "max" } else { "min" }
    );
    for t in &p.trials {
        crate::outln!("  {}  {}", t.folder_name(), t.params_text());
    }
    crate::outln!("{} trials; nothing was run (--dry-run).", p.trials.len());
    Ok(())
}

/// `runner sweep FILE`: plan every trial, create the sweep folder, then run
/// the trials here or submit them to Slurm (and with `wait`, follow them).
pub fn start(new: NewSweep, opts: &SweepOptions) -> Result<(), SweepError> {
    let p = plan_trials(&new, opts.launcher.as_deref())?;
    let s = create(new, &p)?;
    match &p.launcher {
        LauncherPlan::Local => run_locally(&s, &s.trials, opts),
        LauncherPlan::Slurm(settings) => {
            let todo: Vec<usize> = s.trials.iter().map(|t| t.index).collect();
            submit(&s, settings, &todo)?;
            if opts.wait {
                follow(&s, true, opts.poll_seconds)
            } else {
                crate::outln!(
                    "Follow it with `runner sweep --status {0} [--wait]`; cancel with `runner sweep --cancel {0}`.",
                    s.dir.root.display()
                );
                Ok(())
            }
        }
    }
}

/// The sweep folder, written from the validated plans.
fn create(new: NewSweep, p: &Planned) -> Result<Sweep, SweepError> {
    let plan = new.plan;
    let root = rundir::allocate_versioned(&plan.runs_dir.join(&plan.name).join("sweeps"), "s")?;
    let dir = SweepDir { root };
    write_atomic(&dir.sweep_file(), config::to_toml(&plan.spec).as_bytes())?;
    for f in &new.loaded.sources.files {
        let name = f
            .path
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_else(|| "experiment.toml".into());
        write_atomic(&dir.root.join("source").join(name), f.text.as_bytes())?;
    }
    let meta = SweepMeta {
        experiment: plan.name.clone(),
        source: std::fs::canonicalize(new.file).unwrap_or_else(|_| new.file.to_path_buf()),
        set: new.set.to_vec(),
        env: new
            .loaded
            .sources
            .env
            .iter()
            .filter_map(|(var, key)| Some(format!("{key}={}", std::env::var(var).ok()?)))
            .collect(),
        created: rundir::now_rfc3339(),
        launcher: p.launcher.name().into(),
        trials: p.trials.len(),
        runner_version: env!("CARGO_PKG_VERSION").into(),
    };
    write_atomic(
        &dir.meta(),
        serde_json::to_string_pretty(&meta)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    let journal = dir.journal();
    for (t, trial_plan) in p.trials.iter().zip(&p.trial_plans) {
        let tdir = t.dir(&dir.root);
        write_atomic(
            &tdir.join(TRIAL_CONFIG),
            config::to_toml(&trial_plan.spec).as_bytes(),
        )?;
        write_atomic(
            &tdir.join("params.json"),
            serde_json::to_string_pretty(&t.params)
                .unwrap_or_default()
                .as_bytes(),
        )?;
        let mut e = Entry::new(t.index, &t.id, TrialState::Pending);
        e.params = Some(t.params.clone());
        journal.append(&e)?;
    }
    hparams::write_experiment(&dir.root, &p.sweep, &plan)?;
    crate::outln!(
        "Sweep folder: {} ({} trials, {}, ranked by {})",
        dir.root.display(),
        p.trials.len(),
        p.strategy(),
        p.sweep.monitor.metric
    );
    Ok(Sweep {
        dir,
        meta,
        sweep: p.sweep.clone(),
        plan,
        trials: p.trials.clone(),
    })
}
