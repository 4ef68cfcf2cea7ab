//! Starting a sweep: plan every trial before anything is created, then the
//! sweep folder (`sweep.toml`, the sources, `sweep.json`, a `trial.toml` per
//! trial, the journal, the HParams experiment), then run or submit.

use std::path::Path;

use super::asha::EarlyStop;
use super::error::SweepError;
use super::folder::{write_trial, Sweep, SweepDir, SweepMeta};
use super::follow::{follow, print_follow_hint};
use super::local::run_locally;
use super::submit::submit;
use super::{check_axes, expand, hparams, trial_config, trials_text, SweepOptions, Trial};
use crate::config::{self, Loaded, Sources};
use crate::data::Dataset;
use crate::plan::{
    Condition, Distribution, EarlyStopPlan, ExperimentPlan, LauncherPlan, SourcePlan, SweepPlan,
};
use crate::rundir::{self, write_atomic};
use crate::vocab::{HalvingVariant, Strategy};

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
    /// Trials in all: those planned now, or for TPE, `trials` (at most
    /// `max_trials`), most of them chosen later.
    fn total(&self) -> usize {
        super::total_trials(&self.sweep, self.trials.len())
    }

    fn strategy(&self) -> &'static str {
        match self.sweep.strategy {
            Strategy::Grid => "grid",
            Strategy::Random => "random",
            Strategy::Tpe => "tpe",
        }
    }
}

/// The sweep's plan, its launcher (the file's, or `launcher`, the
/// `--launcher` flag) and every trial planned from the sweep's resolved
/// config (held in memory, named `file` in diagnostics).
fn plan_trials(new: &NewSweep, opts: &SweepOptions) -> Result<Planned, SweepError> {
    let Some(sweep) = new.plan.sweep.clone() else {
        return Err(SweepError::NoSweepTable(new.file.to_path_buf()));
    };
    let launcher = sweep.launcher_with(opts.launcher.as_deref(), opts.parallel)?;
    let trials = expand(&sweep);
    if trials.is_empty() {
        return Err(SweepError::NoTrials);
    }
    let text = config::to_toml(&new.plan.spec);
    check_axes(new.file, &text, &sweep).map_err(|e| e.located(&new.loaded.sources))?;
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
pub fn dry_run(new: &NewSweep, opts: &SweepOptions) -> Result<(), SweepError> {
    let p = plan_trials(new, opts)?;
    let monitor = &p.sweep.monitor;
    crate::outln!(
        "Sweep of {}: {}, {}, ranked by {} ({})",
        new.file.display(),
        p.strategy(),
        trials_text(p.total()),
        monitor.metric,
        if monitor.maximize { "max" } else { "min" }
    );
    if p.sweep.is_conditional() {
        crate::outln!("Axes and when they apply:");
        for line in describe_axes(&p.sweep) {
            crate::outln!("  {line}");
        }
    }
    if let Some(e) = &p.sweep.early_stop {
        crate::outln!("{}", describe_early_stop(e));
    }
    // Hyperband deals trials to its brackets by index: say where each goes.
    let hyperband = EarlyStop::hyperband(&p.sweep);
    for t in &p.trials {
        crate::outln!(
            "  {}  {}{}",
            t.folder_name(),
            EarlyStop::bracket_label(hyperband.as_ref(), t.index),
            t.params_text()
        );
    }
    if p.trials.len() < p.total() {
        crate::outln!(
            "  ... {} more, each chosen by TPE from the results before it{}",
            p.total() - p.trials.len(),
            if matches!(p.launcher, LauncherPlan::Slurm(_)) {
                ", by its own array task when it starts"
            } else {
                ""
            }
        );
    }
    if let LauncherPlan::Slurm(settings) = &p.launcher {
        let all: Vec<usize> = (0..p.total()).collect();
        crate::outln!(
            "On Slurm: sbatch --array={} <sweep>/slurm/sweep.sbatch, a task per trial \
             (<sweep>: the sweep's folder, made when it starts), with",
            super::slurm::array_spec(&all, settings.max_parallel)
        );
        for line in super::slurm::sbatch_lines(settings, &new.plan.name) {
            crate::outln!("  {line}");
        }
    }
    crate::outln!("{}; nothing was run (--dry-run).", trials_text(p.total()));
    Ok(())
}

/// One line per axis (a line per case of a conditional random axis):
/// key, values or distribution, and its `when`.
fn describe_axes(sweep: &SweepPlan) -> Vec<String> {
    let when = |w: &[Condition]| {
        if w.is_empty() {
            String::new()
        } else {
            let parts: Vec<String> = w
                .iter()
                .map(|c| {
                    let vs: Vec<String> = c.values.iter().map(|v| v.to_string()).collect();
                    format!("{} in [{}]", c.key, vs.join(", "))
                })
                .collect();
            format!("  when {}", parts.join(" and "))
        }
    };
    let width = sweep.keys().iter().map(String::len).max().unwrap_or(0);
    let mut lines = Vec::new();
    for a in &sweep.grid {
        let vs: Vec<String> = a.values.iter().map(|v| v.to_string()).collect();
        lines.push(format!(
            "{:<width$}  grid [{}]{}",
            a.key,
            vs.join(", "),
            when(&a.when)
        ));
    }
    for key in sweep.zip.keys() {
        lines.push(format!("{key:<width$}  zip"));
    }
    for a in &sweep.random {
        for c in &a.cases {
            let d = match &c.distribution {
                Distribution::Uniform { low, high } => format!("uniform {low}..{high}"),
                Distribution::LogUniform { low, high } => format!("log_uniform {low}..{high}"),
                Distribution::Int { low, high } => format!("int {low}..={high}"),
                Distribution::Choice(vs) => format!(
                    "choice [{}]",
                    vs.iter()
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            lines.push(format!("{:<width$}  {d}{}", a.key, when(&c.when)));
        }
    }
    lines
}

/// The early stopping rule and its rungs.
fn describe_early_stop(e: &EarlyStopPlan) -> String {
    let plan = EarlyStop::of(e);
    let brackets: Vec<String> = (0..plan.brackets())
        .map(|b| {
            let r: Vec<String> = plan.rungs(b).iter().map(|e| e.to_string()).collect();
            if r.is_empty() {
                "none".to_string()
            } else {
                r.join(", ")
            }
        })
        .collect();
    format!(
        "Early stopping: {}{}, keeps the top 1/{} at each rung; rungs at epochs {} (of {})",
        if e.hyperband { "hyperband" } else { "asha" },
        match e.variant {
            HalvingVariant::Stopping => "",
            HalvingVariant::Promotion => " (promotion: trials pause at each rung)",
        },
        e.reduction_factor,
        if brackets.len() == 1 {
            brackets[0].clone()
        } else {
            brackets
                .iter()
                .enumerate()
                .map(|(i, b)| format!("{b} in bracket {i}"))
                .collect::<Vec<_>>()
                .join(", ")
        },
        e.max_epochs
    )
}

/// Open the data the first trial of a local sweep will read, so that a
/// data path that is not there stops the sweep before its folder is made,
/// not every trial one by one; errors are located in `sources`, the
/// sweep's own files and flags. Not when an axis varies a `data` key (each
/// trial reads its own), and not for the generated `synthetic` source. A
/// Slurm sweep is not checked: its data may be on the compute nodes only.
fn check_data(
    trial: &ExperimentPlan,
    sources: &Sources,
    sweep: &SweepPlan,
) -> Result<(), SweepError> {
    if matches!(trial.data.source, SourcePlan::Synthetic { .. })
        || sweep.keys().iter().any(|k| config::under(k, "data"))
    {
        return Ok(());
    }
    match Dataset::open(trial) {
        Ok(_) => Ok(()),
        Err(e) => Err(match e.located(sources) {
            Ok(located) => SweepError::DataAt(located),
            Err(e) => SweepError::Data(e),
        }),
    }
}

/// `runner sweep FILE`: plan every trial, create the sweep folder, then run
/// the trials here or submit them to Slurm (and with `wait`, follow them).
pub fn start(new: NewSweep, opts: &SweepOptions) -> Result<(), SweepError> {
    let p = plan_trials(&new, opts)?;
    if let (LauncherPlan::Local, Some(first)) = (&p.launcher, p.trial_plans.first()) {
        check_data(first, &new.loaded.sources, &p.sweep)?;
    }
    let mut s = create(new, &p)?;
    match &p.launcher {
        LauncherPlan::Local => {
            let todo = s.trials.clone();
            run_locally(&mut s, todo, opts)
        }
        LauncherPlan::Slurm(settings) => {
            // TPE's trials past the first are chosen by their own tasks.
            let todo: Vec<usize> = (0..s.meta.trials).collect();
            submit(&s, settings, &todo)?;
            if s.sweep.strategy == Strategy::Tpe && settings.max_parallel.is_none() {
                crate::outln!(
                    "With none of --parallel, sweep.parallel and [sweep.launcher] max_parallel, all {} tasks may start at once, and a task that starts before {} trial(s) have finished chooses at random: set one to the number of trials to run at once.",
                    s.meta.trials,
                    s.sweep.tpe.n_startup
                );
            }
            if opts.wait {
                follow(&mut s, true, opts.poll_seconds)
            } else {
                print_follow_hint(&s.dir.root);
                match s.sweep.early_stop.map(|e| e.variant) {
                    Some(HalvingVariant::Stopping) => crate::outln!(
                        "Each trial decides its own rungs of early stopping: nothing needs to keep running."
                    ),
                    Some(HalvingVariant::Promotion) => crate::outln!(
                        "Each task trains its trial to its first rung, then runs the promotions the sweep decides: nothing needs to keep running."
                    ),
                    None => {}
                }
                Ok(())
            }
        }
    }
}

/// The sweep folder, written from the validated plans.
fn create(new: NewSweep, p: &Planned) -> Result<Sweep, SweepError> {
    let plan = new.plan;
    let root =
        rundir::allocate_versioned(&plan.runs_dir.join(&plan.name).join(rundir::SWEEPS), "s")?;
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
        trials: p.total(),
        runner_version: env!("CARGO_PKG_VERSION").into(),
        resume_set: Vec::new(),
    };
    write_atomic(
        &dir.meta(),
        serde_json::to_string_pretty(&meta)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    for (t, trial_plan) in p.trials.iter().zip(&p.trial_plans) {
        write_trial(&dir, t, trial_plan)?;
    }
    hparams::write_experiment(&dir.root, &p.sweep, &plan)?;
    crate::outln!(
        "Sweep folder: {} ({}, {}, ranked by {})",
        dir.root.display(),
        trials_text(p.total()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_stopping_is_described_with_each_brackets_rungs() {
        let plan = |hyperband| EarlyStopPlan {
            hyperband,
            min_epochs: 1,
            reduction_factor: 3,
            max_epochs: 9,
            variant: HalvingVariant::Stopping,
        };
        assert_eq!(
            describe_early_stop(&plan(false)),
            "Early stopping: asha, keeps the top 1/3 at each rung; rungs at epochs 1, 3 (of 9)"
        );
        assert_eq!(
            describe_early_stop(&plan(true)),
            "Early stopping: hyperband, keeps the top 1/3 at each rung; rungs at epochs \
             1, 3 in bracket 0, 3 in bracket 1, none in bracket 2 (of 9)"
        );
    }
}
