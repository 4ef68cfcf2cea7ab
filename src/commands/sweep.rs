//! `runner sweep`: start a sweep, resume it, follow it, cancel it.
//!
//! The sweep folder (`runs/<experiment>/sweeps/sNNNN/`) holds everything:
//! `sweep.toml` (the resolved experiment with its `[sweep]`), `sweep.json`,
//! the append-only `journal.jsonl`, `summary.csv`, `summary.png`, the
//! TensorBoard HParams experiment, and one run folder per trial.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::ExperimentArgs;
use crate::config::spec::{DistributionSpec, LauncherSpec, SlurmSpec, Strategy, SweepSpec};
use crate::config::{self, LoadOptions};
use crate::device::{self, Device};
use crate::error::{Error, Result};
use crate::logging::hparams::{self, Domain, HValue, HparamInfo, MetricInfo, SessionStatus};
use crate::plan::{ExperimentPlan, Monitor};
use crate::report::plots;
use crate::rundir::{self, write_atomic};
use crate::signals::Signals;
use crate::sweep::folder::{differing_keys, open, Sweep, SweepDir, SweepMeta};
use crate::sweep::journal::{Entry, Journal, TrialState};
use crate::sweep::scheduler::{self, Event, Finished, LocalEnd, LocalOptions};
use crate::sweep::slurm::{self, Slurm, TaskState};
use crate::sweep::{self as sw, summary, Trial, TRIAL_CONFIG};

pub struct SweepArgs {
    pub exp: Option<ExperimentArgs>,
    pub dry_run: bool,
    pub parallel: Option<usize>,
    pub fail_fast: bool,
    pub launcher: Option<String>,
    pub runs_dir: Option<PathBuf>,
    pub resume: Option<PathBuf>,
    pub retry_failed: bool,
    pub status: Option<PathBuf>,
    pub wait: bool,
    pub cancel: Option<PathBuf>,
    /// Seconds between Slurm polls.
    pub poll_seconds: f64,
}

pub fn sweep(args: &SweepArgs) -> Result<()> {
    if let Some(dir) = &args.status {
        return status(dir, args.wait, args.poll_seconds);
    }
    if let Some(dir) = &args.cancel {
        return cancel(dir);
    }
    if let Some(dir) = &args.resume {
        return resume(dir, args);
    }
    let Some(exp) = &args.exp else {
        return Err(Error::Usage(
            "give an experiment file, or --resume / --status / --cancel SWEEP_DIR".into(),
        ));
    };
    start(exp, args)
}

fn trial_error(e: sw::TrialError) -> Error {
    match e {
        sw::TrialError::Config(c) => Error::Config(c),
        sw::TrialError::Plan(p) => Error::from(p),
    }
}

fn params_text(params: &BTreeMap<String, toml::Value>) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("  ")
}

fn launcher_of(spec: &SweepSpec, flag: Option<&str>) -> Result<LauncherSpec> {
    match flag {
        None => Ok(spec.launcher.clone()),
        Some("local") => Ok(LauncherSpec::default()),
        Some("slurm") => Ok(match &spec.launcher {
            LauncherSpec::Slurm(s) => LauncherSpec::Slurm(s.clone()),
            LauncherSpec::Local(_) => LauncherSpec::Slurm(SlurmSpec::default()),
        }),
        Some(other) => Err(Error::Usage(format!(
            "--launcher {other}: use local or slurm"
        ))),
    }
}

/// Plan every trial from the sweep's resolved config (held in memory, named
/// `file` in diagnostics) before anything is created or run.
fn validate(
    file: &Path,
    plan: &ExperimentPlan,
    spec: &SweepSpec,
    trials: &[Trial],
) -> Result<Vec<ExperimentPlan>> {
    let text = config::to_toml(&plan.spec);
    sw::check_axes(file, &text, spec).map_err(trial_error)?;
    trials
        .iter()
        .map(|t| {
            sw::trial_config(file, &text, t)
                .map(|(_, p)| p)
                .map_err(trial_error)
        })
        .collect()
}

fn start(exp: &ExperimentArgs, args: &SweepArgs) -> Result<()> {
    let (loaded, mut plan) = super::load_plan(exp)?;
    if let Some(d) = &args.runs_dir {
        plan.runs_dir = d.clone();
    }
    let Some(spec) = plan.sweep.clone() else {
        return Err(Error::Usage(format!(
            "{} has no [sweep] table; add one with [sweep.grid] axes such as \"model.dropout\" = [0.1, 0.2]",
            exp.file.display()
        )));
    };
    let launcher = launcher_of(&spec, args.launcher.as_deref())?;
    let trials = sw::expand(&spec, plan.seed);
    if trials.is_empty() {
        return Err(Error::Usage("the sweep has no trials".into()));
    }
    let trial_plans = validate(&exp.file, &plan, &spec, &trials)?;
    let monitor = sw::monitor(&spec);
    let strategy = match spec.strategy {
        Strategy::Grid => "grid",
        Strategy::Random => "random",
    };

    if args.dry_run {
        crate::outln!(
            "Sweep of {}: {strategy}, {} trials, ranked by {} ({})",
            exp.file.display(),
            trials.len(),
            monitor.metric,
            if monitor.maximize { "max" } else { "min" }
        );
        for t in &trials {
            crate::outln!("  {}  {}", t.folder_name(), params_text(&t.params));
        }
        crate::outln!("{} trials; nothing was run (--dry-run).", trials.len());
        return Ok(());
    }

    let root = rundir::allocate_versioned(&plan.runs_dir.join(&plan.name).join("sweeps"), "s")?;
    let dir = SweepDir { root };
    write_atomic(&dir.sweep_file(), config::to_toml(&plan.spec).as_bytes())?;
    for f in &loaded.sources.files {
        let name = f
            .path
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_else(|| "experiment.toml".into());
        write_atomic(&dir.root.join("source").join(name), f.text.as_bytes())?;
    }
    let meta = SweepMeta {
        experiment: plan.name.clone(),
        source: std::fs::canonicalize(&exp.file).unwrap_or_else(|_| exp.file.clone()),
        set: exp.set.clone(),
        env: loaded
            .sources
            .env
            .iter()
            .filter_map(|(var, key)| Some(format!("{key}={}", std::env::var(var).ok()?)))
            .collect(),
        created: rundir::now_rfc3339(),
        launcher: match launcher {
            LauncherSpec::Local(_) => "local".into(),
            LauncherSpec::Slurm(_) => "slurm".into(),
        },
        trials: trials.len(),
        runner_version: env!("CARGO_PKG_VERSION").into(),
    };
    write_atomic(
        &dir.meta(),
        serde_json::to_string_pretty(&meta)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    // Trial folders and configs, written from the validated plans.
    let journal = dir.journal();
    for (t, trial_plan) in trials.iter().zip(&trial_plans) {
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
    write_hparams_experiment(&dir.root, &spec, &plan)?;
    crate::outln!(
        "Sweep folder: {} ({} trials, {strategy}, ranked by {})",
        dir.root.display(),
        trials.len(),
        monitor.metric
    );
    let loaded = Sweep {
        dir,
        meta,
        spec,
        plan,
        trials,
    };
    match launcher {
        LauncherSpec::Local(_) => {
            let todo = loaded.trials.clone();
            run_locally(&loaded, &todo, args)
        }
        LauncherSpec::Slurm(s) => {
            let todo: Vec<usize> = loaded.trials.iter().map(|t| t.index).collect();
            submit_slurm(&loaded, &s, &todo)?;
            if args.wait {
                follow(&loaded, true, args.poll_seconds)
            } else {
                crate::outln!(
                    "Follow it with `runner sweep --status {0} [--wait]`; cancel with `runner sweep --cancel {0}`.",
                    loaded.dir.root.display()
                );
                Ok(())
            }
        }
    }
}

fn hvalue(v: &toml::Value) -> HValue {
    match v {
        toml::Value::Float(f) => HValue::Number(*f),
        toml::Value::Integer(i) => HValue::Number(*i as f64),
        toml::Value::Boolean(b) => HValue::Bool(*b),
        toml::Value::String(s) => HValue::Text(s.clone()),
        other => HValue::Text(other.to_string()),
    }
}

/// Values of one discrete axis, all of one kind for TensorBoard.
fn discrete(values: &[toml::Value]) -> Option<Domain> {
    let vals: Vec<HValue> = values.iter().map(hvalue).collect();
    let same_kind = vals
        .windows(2)
        .all(|w| std::mem::discriminant(&w[0]) == std::mem::discriminant(&w[1]));
    same_kind.then_some(Domain::Discrete(vals))
}

/// The one complete HParams experiment summary at the sweep root: every
/// swept key with its domain, and the metrics, before any trial starts.
fn write_hparams_experiment(root: &Path, spec: &SweepSpec, plan: &ExperimentPlan) -> Result<()> {
    let mut infos = Vec::new();
    for (k, v) in spec.grid.iter().chain(&spec.zip) {
        let mut uniq: Vec<toml::Value> = Vec::new();
        for x in v {
            if !uniq.contains(x) {
                uniq.push(x.clone());
            }
        }
        infos.push(HparamInfo {
            name: k.clone(),
            domain: discrete(&uniq),
        });
    }
    for (k, d) in &spec.random {
        let domain = match d {
            DistributionSpec::Uniform(r) | DistributionSpec::LogUniform(r) => {
                Some(Domain::Interval {
                    min: r.low,
                    max: r.high,
                })
            }
            DistributionSpec::Int(r) => Some(Domain::Interval {
                min: r.low as f64,
                max: r.high as f64,
            }),
            DistributionSpec::Choice(c) => discrete(&c.values),
        };
        infos.push(HparamInfo {
            name: k.clone(),
            domain,
        });
    }
    let has_val = plan.metrics.iter().any(|m| m.starts_with("val_"));
    let mut metrics = Vec::new();
    for (group, on) in [("validation", has_val), ("train", true)] {
        if !on {
            continue;
        }
        for tag in ["epoch_accuracy", "epoch_loss"] {
            metrics.push(MetricInfo {
                group: group.into(),
                tag: tag.into(),
                display_name: format!(
                    "{} {}",
                    if group == "train" { "train" } else { "val" },
                    &tag[6..]
                ),
            });
        }
    }
    hparams::write_experiment(root, &infos, &metrics).map_err(|e| Error::RunFailed(e.to_string()))
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn session_start(trial: &Trial, sweep_root: &Path, journal: &Journal) {
    let started_before = journal
        .entries()
        .iter()
        .any(|e| e.trial == trial.index && e.state == TrialState::Running);
    if started_before {
        return;
    }
    let hp: BTreeMap<String, HValue> = trial
        .params
        .iter()
        .map(|(k, v)| (k.clone(), hvalue(v)))
        .collect();
    let _ = hparams::write_session_start(&trial.dir(sweep_root), &hp, now_secs());
}

fn session_end(trial: &Trial, sweep_root: &Path, state: TrialState) {
    let status = match state {
        TrialState::Done => SessionStatus::Success,
        TrialState::Failed => SessionStatus::Failure,
        _ => return,
    };
    let _ = hparams::write_session_end(&trial.dir(sweep_root), status, now_secs());
}

fn resume(dir: &Path, args: &SweepArgs) -> Result<()> {
    let s = open(dir)?;
    // Never renumber: the trials in the journal must be the trials of the spec.
    let journal = s.dir.journal();
    let known: BTreeMap<usize, String> = journal
        .entries()
        .into_iter()
        .map(|e| (e.trial, e.id))
        .collect();
    for t in &s.trials {
        if let Some(id) = known.get(&t.index) {
            if *id != t.id {
                return Err(Error::Usage(format!(
                    "{}: trial {} was {id} but the sweep file now gives {}; the sweep's spec changed, so it cannot be resumed. Start a new sweep instead.",
                    s.dir.root.display(),
                    t.index,
                    t.id
                )));
            }
        }
    }
    // The experiment file it came from must still say the same, read as at
    // the start (the same RUNNER_* values and --set flags) and planned as
    // the sweep file was, so that filled-in defaults compare equal.
    if s.meta.source.is_file() {
        let raw: Vec<String> = s.meta.env.iter().chain(&s.meta.set).cloned().collect();
        let opts = LoadOptions {
            overrides: super::overrides(&raw)?,
            use_env: false,
        };
        let now = config::load(&s.meta.source, &opts)
            .ok()
            .and_then(|now| crate::plan::plan(&now).ok());
        if let Some(now) = now {
            let mut diff = Vec::new();
            differing_keys(
                &config::to_table(&now.spec),
                &config::to_table(&s.plan.spec),
                "",
                &mut diff,
            );
            // The data paths are made absolute in the sweep file.
            diff.retain(|k| !k.starts_with("data.") || !k.ends_with("path"));
            if !diff.is_empty() {
                return Err(Error::Usage(format!(
                    "{} changed since the sweep in {} started ({}); resuming would mix two experiments. Start a new sweep, or restore the file.",
                    s.meta.source.display(),
                    s.dir.root.display(),
                    diff.join(", ")
                )));
            }
        }
    }
    let latest = journal.latest();
    let launcher = if s.meta.launcher == "slurm" {
        launcher_of(&s.spec, Some("slurm"))?
    } else {
        launcher_of(&s.spec, args.launcher.as_deref())?
    };
    match launcher {
        LauncherSpec::Local(_) => {
            let todo: Vec<Trial> = s
                .trials
                .iter()
                .filter(|t| match latest.get(&t.index).map(|e| e.state) {
                    Some(TrialState::Done) => false,
                    Some(TrialState::Failed) => args.retry_failed,
                    _ => true,
                })
                .cloned()
                .collect();
            let skipped = s.trials.len() - todo.len();
            crate::outln!(
                "Resuming {}: {} trial(s) to run, {skipped} already finished{}",
                s.dir.root.display(),
                todo.len(),
                if args.retry_failed {
                    ""
                } else {
                    " or failed (use --retry-failed to run failed ones again)"
                }
            );
            run_locally(&s, &todo, args)
        }
        LauncherSpec::Slurm(spec) => {
            // What still runs must be known before anything is resubmitted:
            // an unreadable jobs.json or a Slurm that does not answer stops
            // the resume rather than running a trial twice.
            let slurm = Slurm::new(&s.dir.root);
            let jobs = slurm::read_jobs(&s.dir.root).map_err(slurm_err)?;
            let live = if jobs.is_empty() {
                BTreeMap::new()
            } else {
                slurm.poll(&jobs).map_err(|e| {
                    Error::RunFailed(format!(
                        "slurm: cannot tell which trials still run, so nothing was resubmitted: {e}"
                    ))
                })?
            };
            let todo: Vec<usize> = s
                .trials
                .iter()
                .filter(|t| !live.get(&t.index).is_some_and(|st| st.is_active()))
                .filter(|t| match latest.get(&t.index).map(|e| e.state) {
                    Some(TrialState::Done) => false,
                    Some(TrialState::Failed) => args.retry_failed,
                    _ => true,
                })
                .filter(|t| !trial_completed(&t.dir(&s.dir.root)))
                .map(|t| t.index)
                .collect();
            if todo.is_empty() {
                crate::outln!("Nothing to resubmit in {}", s.dir.root.display());
            } else {
                submit_slurm(&s, &spec, &todo)?;
            }
            if args.wait {
                follow(&s, true, args.poll_seconds)
            } else {
                Ok(())
            }
        }
    }
}

fn trial_completed(dir: &Path) -> bool {
    rundir::RunDir::at_existing(dir)
        .read_meta()
        .is_ok_and(|m| m.status == rundir::Status::Completed)
}

/// Default parallelism: one trial per GPU, or on CPU as many trials as
/// cores (up to the number of trials), each with an equal share of threads.
fn local_options(s: &Sweep, todo: usize, args: &SweepArgs) -> Result<LocalOptions> {
    let runner_bin = std::env::current_exe()
        .map_err(|e| Error::Usage(format!("cannot find the runner binary: {e}")))?;
    let cores = device::cpu_threads(0);
    let device = device::resolve(s.plan.device)?;
    let gpus = match device {
        Device::Cuda(_) => device::cuda_device_count().unwrap_or(1).max(1),
        Device::Wgpu => 1,
        Device::Cpu => 0,
    };
    let parallel = args
        .parallel
        .or(s.spec.parallel)
        .unwrap_or(if gpus > 0 {
            gpus
        } else {
            cores.min(todo.max(1))
        })
        .max(1);
    let devices = if gpus > 0 {
        (0..parallel)
            .map(|i| match device {
                Device::Wgpu => "wgpu".to_string(),
                _ => format!("cuda:{}", i % gpus),
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(LocalOptions {
        parallel,
        threads: (cores / parallel).max(1),
        fail_fast: args.fail_fast,
        runner_bin,
        devices,
    })
}

fn run_locally(s: &Sweep, todo: &[Trial], args: &SweepArgs) -> Result<()> {
    let Some(_lock) = rundir::try_lock(&s.dir.lock())? else {
        return Err(Error::Usage(format!(
            "{} is already being run by another runner process",
            s.dir.root.display()
        )));
    };
    let opts = local_options(s, todo.len(), args)?;
    crate::outln!(
        "Running {} trial(s), {} at a time, {} thread(s) each",
        todo.len(),
        opts.parallel,
        opts.threads
    );
    let monitor = sw::monitor(&s.spec);
    let axes = sw::axis_names(&s.spec);
    let journal = s.dir.journal();
    let total = s.trials.len();
    let signals = Signals::install();
    let mut failures = 0usize;
    let mut record = |event: Event| match event {
        Event::Started(t) => {
            session_start(t, &s.dir.root, &journal);
            let _ = journal.append(&Entry::new(t.index, &t.id, TrialState::Running));
            crate::outln!(
                "[{}/{total}] {} started  {}",
                t.index + 1,
                t.folder_name(),
                params_text(&t.params)
            );
        }
        Event::Finished(f) => {
            if f.state == TrialState::Failed {
                failures += 1;
            }
            finish_trial(s, &journal, f, &axes, &monitor);
        }
    };
    let end = scheduler::run_local(&s.dir.root, todo, &opts, &signals, &mut record);
    conclude(s, &axes, &monitor, end, failures)
}

/// Record one finished trial: journal, HParams end, summary.csv, a line.
fn finish_trial(s: &Sweep, journal: &Journal, f: &Finished, axes: &[String], monitor: &Monitor) {
    let mut e = Entry::new(f.trial.index, &f.trial.id, f.state);
    e.exit_code = f.exit_code;
    e.message = f.message.clone();
    let _ = journal.append(&e);
    session_end(&f.trial, &s.dir.root, f.state);
    let results = summary::collect(&s.dir.root, &s.trials, &journal.latest(), monitor);
    let _ = summary::write_csv(&s.dir.summary_csv(), axes, &monitor.metric, &results);
    let best = results
        .iter()
        .find(|r| r.trial.index == f.trial.index)
        .and_then(|r| r.best)
        .map(|v| format!("  best {} {v:.4}", monitor.metric))
        .unwrap_or_default();
    crate::outln!(
        "       {} {} in {:.0}s{best}",
        f.trial.folder_name(),
        f.state.as_str(),
        f.seconds
    );
    if f.state == TrialState::Failed {
        if let Some(m) = &f.message {
            for line in m.lines() {
                crate::outln!("         | {line}");
            }
        }
    }
}

/// Final summary: CSV, plot, ranked table, and the sweep's exit status.
fn conclude(
    s: &Sweep,
    axes: &[String],
    monitor: &Monitor,
    end: LocalEnd,
    failures: usize,
) -> Result<()> {
    let latest = s.dir.journal().latest();
    let results = summary::collect(&s.dir.root, &s.trials, &latest, monitor);
    summary::write_csv(&s.dir.summary_csv(), axes, &monitor.metric, &results)?;
    if let Ok(Some(img)) = summary::plot(&s.spec, monitor, &results) {
        if let Ok(png) = plots::encode_png(&img) {
            write_atomic(&s.dir.summary_png(), &png)?;
        }
    }
    crate::outln!("\n{}", summary::ranked_table(axes, monitor, &results));
    crate::outln!("Summary: {}", s.dir.summary_csv().display());
    let failed = results
        .iter()
        .filter(|r| r.state == TrialState::Failed)
        .count();
    if end == LocalEnd::Interrupted {
        return Err(Error::Interrupted(format!(
            "sweep stopped; continue it with `runner sweep --resume {}`",
            s.dir.root.display()
        )));
    }
    if failed > 0 || failures > 0 {
        return Err(Error::RunFailed(format!(
            "{failed} of {} trial(s) failed (see summary.csv; rerun them with `runner sweep --resume {} --retry-failed`)",
            results.len(),
            s.dir.root.display()
        )));
    }
    Ok(())
}

fn slurm_err(e: slurm::SlurmError) -> Error {
    Error::RunFailed(format!("slurm: {e}"))
}

fn submit_slurm(s: &Sweep, spec: &SlurmSpec, todo: &[usize]) -> Result<()> {
    let runner_bin = std::env::current_exe()
        .map_err(|e| Error::Usage(format!("cannot find the runner binary: {e}")))?;
    let dirs: Vec<PathBuf> = s
        .trials
        .iter()
        .map(|t| {
            std::fs::canonicalize(&s.dir.root)
                .unwrap_or_else(|_| s.dir.root.clone())
                .join(t.folder_name())
        })
        .collect();
    slurm::write_trials_file(&s.dir.root, &dirs).map_err(slurm_err)?;
    let job_name = format!("runner-{}", s.plan.name);
    let script =
        slurm::write_script(spec, &s.dir.root, &runner_bin, &job_name).map_err(slurm_err)?;
    let client = Slurm::new(&s.dir.root);
    // Ctrl-C must not land between sbatch queueing an array and jobs.json
    // recording it: hold the signal until the answer is written down, then
    // take back what this call submitted.
    let held = Signals::hold();
    let jobs = client
        .submit_until(&script, todo, spec.max_parallel, &|| held.requested())
        .map_err(slurm_err)?;
    let ids: Vec<&str> = jobs.iter().map(|j| j.job_id.as_str()).collect();
    if held.requested() {
        let cancelled = client.cancel(&jobs);
        return Err(Error::Interrupted(match cancelled {
            Ok(()) if jobs.is_empty() => "interrupted before anything was submitted".into(),
            Ok(()) => format!(
                "interrupted while submitting; job {} was recorded and cancelled; `runner sweep --resume {}` submits its trials again",
                ids.join(", "),
                s.dir.root.display()
            ),
            Err(e) => format!(
                "interrupted while submitting; job {} is recorded in {}, but cancelling it failed ({e}); `runner sweep --cancel {}` cancels it",
                ids.join(", "),
                slurm::SlurmPaths::new(&s.dir.root).jobs_file().display(),
                s.dir.root.display()
            ),
        }));
    }
    crate::outln!(
        "Submitted {} trial(s) to Slurm as job {} (array {})",
        todo.len(),
        ids.join(", "),
        slurm::compact_ranges(todo)
    );
    Ok(())
}

/// A trial's state from its folder and what Slurm says about its task.
/// `log` is the task's Slurm output file, quoted when the trial failed.
fn slurm_state(
    dir: &Path,
    task: Option<&TaskState>,
    journal_state: TrialState,
    log: Option<&Path>,
) -> (TrialState, Option<String>) {
    let meta = rundir::RunDir::at_existing(dir).read_meta().ok();
    let meta_status = meta.as_ref().map(|m| m.status);
    if meta_status == Some(rundir::Status::Completed) {
        return (TrialState::Done, None);
    }
    let tail = || log.map(|l| scheduler::log_tail(l, 8)).unwrap_or_default();
    match task {
        Some(TaskState::Pending) => (TrialState::Pending, None),
        Some(TaskState::Running) => (TrialState::Running, None),
        // Ended by Slurm before runner ever started it (`runner sweep
        // --cancel` on a pending task, a preemption, a node failure): it
        // has not failed, and `--resume` must run it.
        Some(t @ (TaskState::Cancelled | TaskState::Preempted | TaskState::NodeFail))
            if meta.is_none() =>
        {
            (
                TrialState::Stopped,
                Some(format!("{} before it started", t.explain())),
            )
        }
        Some(t) => {
            let why = t.explain();
            match meta_status {
                Some(rundir::Status::Stopped) => (TrialState::Stopped, Some(why)),
                _ => {
                    let detail = meta.and_then(|m| m.message).unwrap_or_else(tail);
                    (
                        TrialState::Failed,
                        Some(if detail.is_empty() {
                            why
                        } else {
                            format!("{why}: {detail}")
                        }),
                    )
                }
            }
        }
        None => (journal_state, None),
    }
}

/// Poll Slurm and the trial folders, record changes; with `wait`, until no
/// trial is pending or running.
fn follow(s: &Sweep, wait: bool, poll_seconds: f64) -> Result<()> {
    let monitor = sw::monitor(&s.spec);
    let axes = sw::axis_names(&s.spec);
    let journal = s.dir.journal();
    let client = Slurm::new(&s.dir.root);
    let signals = Signals::install();
    loop {
        let jobs = slurm::read_jobs(&s.dir.root).map_err(slurm_err)?;
        let tasks = if jobs.is_empty() {
            BTreeMap::new()
        } else {
            match client.poll(&jobs) {
                Ok(t) => t,
                Err(e) if e.is_transient() => {
                    crate::errln!("slurm is not answering ({e}); trying again");
                    std::thread::sleep(Duration::from_secs_f64(poll_seconds));
                    continue;
                }
                Err(e) => return Err(slurm_err(e)),
            }
        };
        let latest = journal.latest();
        let by_trial = slurm::latest_job_per_trial(&jobs);
        let mut active = 0;
        for t in &s.trials {
            let old = latest
                .get(&t.index)
                .map(|e| e.state)
                .unwrap_or(TrialState::Pending);
            let log = by_trial
                .get(&t.index)
                .and_then(|j| j.log_files(&s.dir.root, t.index))
                .map(|(_, err)| err);
            let (state, message) = slurm_state(
                &t.dir(&s.dir.root),
                tasks.get(&t.index),
                old,
                log.as_deref(),
            );
            if matches!(state, TrialState::Pending | TrialState::Running)
                && tasks.get(&t.index).is_some_and(|x| x.is_active())
            {
                active += 1;
            }
            if state != old {
                if state == TrialState::Running {
                    session_start(t, &s.dir.root, &journal);
                }
                let f = Finished {
                    trial: t.clone(),
                    state,
                    exit_code: match tasks.get(&t.index) {
                        Some(TaskState::Failed { exit_code }) => Some(*exit_code),
                        _ => None,
                    },
                    message,
                    seconds: 0.0,
                };
                if matches!(state, TrialState::Pending | TrialState::Running) {
                    let _ = journal.append(&Entry::new(t.index, &t.id, state));
                    crate::outln!("       {} {}", t.folder_name(), state.as_str());
                } else {
                    finish_trial(s, &journal, &f, &axes, &monitor);
                }
            }
        }
        if !wait || active == 0 || signals.stop_requested() {
            print_status(s, &tasks, &monitor);
            if active == 0 {
                let failures = journal
                    .latest()
                    .values()
                    .filter(|e| e.state == TrialState::Failed)
                    .count();
                return conclude(s, &axes, &monitor, LocalEnd::Finished, failures);
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs_f64(poll_seconds));
    }
}

fn print_status(s: &Sweep, tasks: &BTreeMap<usize, TaskState>, monitor: &Monitor) {
    let latest = s.dir.journal().latest();
    crate::outln!("Sweep {} ({} trials)", s.dir.root.display(), s.trials.len());
    for t in &s.trials {
        let state = latest
            .get(&t.index)
            .map(|e| e.state.as_str())
            .unwrap_or("pending");
        let values = summary::read_metric(
            &rundir::RunDir::at_existing(&t.dir(&s.dir.root)).metrics_csv(),
            &monitor.metric,
        );
        let slurm = tasks
            .get(&t.index)
            .map(|x| format!("  slurm {}", x.label()))
            .unwrap_or_default();
        crate::outln!(
            "  {}  {:<8} epochs {:>3}{slurm}  {}",
            t.folder_name(),
            state,
            values.len(),
            params_text(&t.params)
        );
    }
}

fn status(dir: &Path, wait: bool, poll_seconds: f64) -> Result<()> {
    let s = open(dir)?;
    if s.meta.launcher == "slurm" {
        return follow(&s, wait, poll_seconds);
    }
    let monitor = sw::monitor(&s.spec);
    print_status(&s, &BTreeMap::new(), &monitor);
    let axes = sw::axis_names(&s.spec);
    let results = summary::collect(&s.dir.root, &s.trials, &s.dir.journal().latest(), &monitor);
    crate::outln!("\n{}", summary::ranked_table(&axes, &monitor, &results));
    Ok(())
}

fn cancel(dir: &Path) -> Result<()> {
    let s = open(dir)?;
    if s.meta.launcher != "slurm" {
        return Err(Error::Usage(format!(
            "{} runs locally; stop it with Ctrl-C in its terminal (it stays resumable)",
            dir.display()
        )));
    }
    let jobs = slurm::read_jobs(&s.dir.root).map_err(slurm_err)?;
    Slurm::new(&s.dir.root).cancel(&jobs).map_err(slurm_err)?;
    crate::outln!(
        "Cancelled job(s) {}",
        jobs.iter()
            .map(|j| j.job_id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    follow(&s, false, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta_with(dir: &Path, status: &str) {
        std::fs::write(
            dir.join("meta.json"),
            format!(
                r#"{{"experiment":"t","runner_version":"0","backend":"flex","device":"cpu","threads":1,"seed":1,"dataset":null,"command":[],"cwd":"/","hostname":"h","pid":1,"start_time":"x","status":"{status}"}}"#
            ),
        )
        .unwrap();
    }

    #[test]
    fn a_task_cancelled_before_it_started_is_stopped_not_failed() {
        let dir = tempfile::tempdir().unwrap();
        for task in [
            TaskState::Cancelled,
            TaskState::Preempted,
            TaskState::NodeFail,
        ] {
            let (state, why) = slurm_state(dir.path(), Some(&task), TrialState::Pending, None);
            assert_eq!(state, TrialState::Stopped, "{task:?}");
            assert!(why.unwrap().ends_with("before it started"));
        }
        // A task that failed by itself before writing anything did fail.
        let failed = TaskState::Failed { exit_code: 2 };
        let (state, _) = slurm_state(dir.path(), Some(&failed), TrialState::Pending, None);
        assert_eq!(state, TrialState::Failed);
    }

    #[test]
    fn a_started_trial_keeps_what_its_folder_says() {
        let dir = tempfile::tempdir().unwrap();
        meta_with(dir.path(), "stopped");
        let (state, _) = slurm_state(
            dir.path(),
            Some(&TaskState::Cancelled),
            TrialState::Running,
            None,
        );
        assert_eq!(state, TrialState::Stopped);
        meta_with(dir.path(), "running");
        let (state, _) = slurm_state(
            dir.path(),
            Some(&TaskState::Cancelled),
            TrialState::Running,
            None,
        );
        assert_eq!(
            state,
            TrialState::Failed,
            "killed without stopping: its run crashed"
        );
        meta_with(dir.path(), "completed");
        let (state, _) = slurm_state(
            dir.path(),
            Some(&TaskState::Cancelled),
            TrialState::Running,
            None,
        );
        assert_eq!(state, TrialState::Done);
    }
}
