//! `runner run`: train an experiment into a new run folder, resume one, or
//! run one sweep trial in its own folder.

use std::path::{Path, PathBuf};

use burn::module::AutodiffModule;

use super::ExperimentArgs;
use crate::backend::{self, TrainBackend, WithBackend};
use crate::config::{self, Loaded};
use crate::data::Dataset;
use crate::device::{self, Device, DeviceRequest};
use crate::error::{Error, Result};
use crate::gpu::GpuSettings;
use crate::logging::tensorboard::{Stream, TensorboardLog};
use crate::plan::{self, ExperimentPlan};
use crate::report;
use crate::rundir::{self, Meta, RunDir, Status};
use crate::signals::Signals;
use crate::sweep::TRIAL_CONFIG;
use crate::train::checkpoint::{Checkpoints, LAST};
use crate::train::events::RunLog;
use crate::train::progress::Progress;
use crate::train::{self, Ending, Execution, Session, TrainState};

/// What `runner run` was asked to do.
pub enum RunTarget {
    /// A new run of an experiment file.
    New(ExperimentArgs),
    /// Continue an interrupted run in its folder.
    Resume(PathBuf),
    /// A sweep trial: start it, or resume it if it has a checkpoint.
    Trial(PathBuf),
}

pub struct RunOptions {
    pub device: Option<String>,
    pub runs_dir: Option<PathBuf>,
    pub threads: Option<usize>,
}

pub fn run(target: RunTarget, opts: &RunOptions) -> Result<()> {
    let Some((loaded, mut plan, place, resume)) = prepare(target, opts)? else {
        return Ok(());
    };
    // Everything that can be wrong with the command, the device or the data
    // is found before a new run folder exists.
    if let Some(d) = &opts.device {
        plan.device = d.parse::<DeviceRequest>().map_err(Error::Usage)?;
    }
    let device = device::resolve(plan.device)?;
    let gpu = backend::prepare_gpu(device)?;
    let threads = device::cpu_threads(opts.threads.unwrap_or(plan.threads));
    // Only the first call in a process can size the global pool.
    backend::configure_cpu(threads);

    let data = Dataset::open(&plan).map_err(Error::Data)?;
    data.check_headers().map_err(Error::Data)?;
    if data.classes.len() != plan.model.num_classes {
        return Err(Error::Usage(format!(
            "the data has {} classes but the model ends in {} outputs; set the last dense layer's `units` to {}",
            data.classes.len(),
            plan.model.num_classes,
            data.classes.len()
        )));
    }
    let (run, existing) = match place {
        Place::New => (RunDir::allocate(&plan.runs_dir, &plan.name)?, false),
        Place::Existing(run) => (run, true),
    };
    // One process per run folder: a second `--resume` or a requeued trial
    // must not train into the same folder at the same time.
    let Some(_lock) = rundir::try_lock(&run.root().join(".lock"))? else {
        return Err(Error::Usage(format!(
            "{} is being run by another runner process",
            run.root().display()
        )));
    };
    if existing {
        // Half-written files of a process that was killed; the lock makes
        // this process the folder's only writer.
        let removed = rundir::remove_stale_temps(run.root());
        if removed > 0 {
            crate::outln!("Removed {removed} temporary file(s) left by a killed run");
        }
    }
    print_dataset(&data);

    if !resume {
        write_inputs(&run, &loaded, &plan)?;
    }
    let mut meta = match (resume, run.read_meta()) {
        (true, Ok(mut m)) => {
            m.resumes += 1;
            m.status = Status::Running;
            m.end_time = None;
            m.message = None;
            m.pid = std::process::id();
            m.backend = device.backend_name().into();
            m.device = device.to_string();
            m.gpu = gpu.map(|s| s.describe());
            m
        }
        _ => new_meta(&plan, &data, device, threads, gpu),
    };
    run.write_meta(&meta)?;
    crate::outln!("Run folder: {}", run.root().display());
    let execution = match gpu {
        Some(settings) => {
            crate::outln!("GPU: {device} ({})", settings.describe());
            Execution::gpu(
                plan.model.mixes_rows(),
                settings
                    .cache_dir
                    .as_deref()
                    .map_or("off".into(), |p| p.display().to_string()),
            )
        }
        None => Execution::cpu(),
    };

    let signals = Signals::install();
    let job = Execute {
        plan: &plan,
        data: &data,
        run: &run,
        signals: &signals,
        resume,
        execution,
    };
    let outcome = backend::run_on(device, threads, plan.train.batch_size, job)
        .map_err(Error::from)
        .and_then(|o| o);
    let skipped = data.skipped();
    if let Some((first, reason)) = skipped.first() {
        crate::outln!(
            "Skipped {} unreadable image(s) (data.on_bad_image = \"skip\"); the first: {}: {reason}",
            skipped.len(),
            first.display()
        );
    }
    // The same files are skipped on every resume of the run.
    meta.skipped_images = meta.skipped_images.max(skipped.len());
    finish(&run, &mut meta, outcome)
}

/// Result of training plus evaluation.
struct Outcome {
    state: TrainState,
    ending: Ending,
    test_accuracy: Option<f64>,
}

fn finish(
    run: &RunDir,
    meta: &mut Meta,
    outcome: std::result::Result<Outcome, Error>,
) -> Result<()> {
    meta.end_time = Some(rundir::now_rfc3339());
    let result = match outcome {
        Ok(o) => {
            meta.epochs_completed = o.state.epochs_done;
            meta.best_epoch = o.state.checkpoint.best_epoch;
            meta.best_value = o.state.checkpoint.best;
            meta.test_accuracy = o.test_accuracy;
            match o.ending {
                Ending::Completed => {
                    meta.status = Status::Completed;
                    Ok(())
                }
                Ending::EarlyStopped { epoch, restored } => {
                    meta.status = Status::Completed;
                    meta.message = Some(match restored {
                        Some(b) => format!(
                            "early stopping after epoch {}; restored the weights of epoch {}",
                            epoch + 1,
                            b + 1
                        ),
                        None => format!("early stopping after epoch {}", epoch + 1),
                    });
                    Ok(())
                }
                Ending::Interrupted { reason } => {
                    meta.status = Status::Stopped;
                    let msg = format!(
                        "stopped by {reason} after {} epoch(s); continue with `runner run --resume {}`",
                        o.state.epochs_done,
                        run.root().display()
                    );
                    meta.message = Some(msg.clone());
                    Err(Error::Interrupted(msg))
                }
                Ending::Diverged { epoch, batch, loss } => {
                    meta.status = Status::Failed;
                    let msg = format!(
                        "the loss became {loss} at batch {batch} of epoch {} (terminate_on_nan); try a lower learning rate",
                        epoch + 1
                    );
                    meta.message = Some(msg.clone());
                    Err(Error::RunFailed(msg))
                }
            }
        }
        Err(e) => {
            meta.status = Status::Failed;
            meta.message = Some(e.to_string());
            Err(e)
        }
    };
    run.write_meta(meta)?;
    if let Some(m) = &meta.message {
        crate::outln!("{m}");
    }
    crate::outln!("Status: {}", meta.status.as_str());
    result
}

/// Where a run trains: a new folder, made once every check has passed, or
/// the existing one of a resumed run or a sweep trial.
enum Place {
    New,
    Existing(RunDir),
}

/// Read the config and find the run folder for each kind of target.
/// `None` when there is nothing to do (a trial that already completed).
fn prepare(
    target: RunTarget,
    opts: &RunOptions,
) -> Result<Option<(Loaded, ExperimentPlan, Place, bool)>> {
    match target {
        RunTarget::New(exp) => {
            let (loaded, mut plan) = super::load_plan(&exp)?;
            if let Some(d) = &opts.runs_dir {
                plan.runs_dir = d.clone();
            }
            Ok(Some((loaded, plan, Place::New, false)))
        }
        RunTarget::Resume(dir) => {
            let run = RunDir::open(&dir)?;
            let meta = run.read_meta()?;
            if meta.status == Status::Completed {
                return Err(Error::Usage(format!(
                    "{} already completed; nothing to resume",
                    dir.display()
                )));
            }
            let (loaded, plan) = load_exact(&run.resolved_config())?;
            if Checkpoints::new(run.checkpoints())
                .linked_epoch(LAST)
                .is_none()
            {
                return Err(Error::Usage(format!(
                    "{} has no checkpoint to resume from (it stopped before finishing its first epoch); start it again with `runner run`",
                    dir.display()
                )));
            }
            Ok(Some((loaded, plan, Place::Existing(run), true)))
        }
        RunTarget::Trial(dir) => {
            let run = RunDir::at(&dir)?;
            if let Ok(meta) = run.read_meta() {
                if meta.status == Status::Completed {
                    crate::outln!("{} already completed", dir.display());
                    return Ok(None);
                }
            }
            let (loaded, plan) = load_exact(&dir.join(TRIAL_CONFIG))?;
            let resume = Checkpoints::new(run.checkpoints())
                .linked_epoch(LAST)
                .is_some();
            Ok(Some((loaded, plan, Place::Existing(run), resume)))
        }
    }
}

fn load_exact(path: &Path) -> Result<(Loaded, ExperimentPlan)> {
    let loaded = config::load_exact(path)?;
    let plan = plan::plan(&loaded)?;
    Ok((loaded, plan))
}

/// What was found, per class and split, before training starts.
fn print_dataset(data: &Dataset) {
    crate::out!("{}", data.report());
    crate::outln!();
}

/// The original file(s), the resolved config and the overrides.
fn write_inputs(run: &RunDir, loaded: &Loaded, plan: &ExperimentPlan) -> Result<()> {
    for f in &loaded.sources.files {
        let name = f
            .path
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_else(|| "experiment.toml".into());
        run.write(&run.source_dir().join(name), f.text.as_bytes())?;
    }
    run.write(
        &run.resolved_config(),
        config::to_toml(&plan.spec).as_bytes(),
    )?;
    let overrides = serde_json::json!({
        "set": loaded.sources.overrides.iter().map(|o| o.raw.clone()).collect::<Vec<_>>(),
        "env": loaded.sources.env.iter().map(|(var, key)| serde_json::json!({"variable": var, "key": key})).collect::<Vec<_>>(),
        "extends": loaded.sources.files.iter().skip(1).map(|f| f.path.display().to_string()).collect::<Vec<_>>(),
    });
    run.write(
        &run.overrides(),
        serde_json::to_string_pretty(&overrides)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    Ok(())
}

fn new_meta(
    plan: &ExperimentPlan,
    data: &Dataset,
    device: Device,
    threads: usize,
    gpu: Option<&GpuSettings>,
) -> Meta {
    let cwd = std::env::current_dir().unwrap_or_default();
    Meta {
        experiment: plan.name.clone(),
        runner_version: env!("CARGO_PKG_VERSION").into(),
        git: rundir::git_info(&cwd),
        backend: device.backend_name().into(),
        device: device.to_string(),
        gpu: gpu.map(|s| s.describe()),
        threads,
        seed: plan.seed,
        dataset: serde_json::to_value(data.fingerprint()).unwrap_or_default(),
        command: std::env::args().collect(),
        cwd,
        hostname: rundir::hostname(),
        pid: std::process::id(),
        start_time: rundir::now_rfc3339(),
        end_time: None,
        status: Status::Running,
        message: None,
        epochs_completed: 0,
        best_epoch: None,
        best_value: None,
        test_accuracy: None,
        resumes: 0,
        skipped_images: 0,
    }
}

/// Training and evaluation of one run, on whichever backend
/// [`backend::with_device`] picks.
struct Execute<'a> {
    plan: &'a ExperimentPlan,
    data: &'a Dataset,
    run: &'a RunDir,
    signals: &'a Signals,
    resume: bool,
    execution: Execution,
}

impl WithBackend for Execute<'_> {
    type Output = std::result::Result<Outcome, Error>;

    fn run<B: TrainBackend>(self, device: B::Device) -> Self::Output {
        execute::<B>(self, &device)
    }
}

fn execute<B: TrainBackend>(
    job: Execute<'_>,
    device: &B::Device,
) -> std::result::Result<Outcome, Error> {
    let Execute {
        plan,
        data,
        run,
        signals,
        resume,
        execution,
    } = job;
    let pad_eval = execution.pad_eval;
    let session = Session {
        plan,
        data,
        checkpoints: Checkpoints::new(run.checkpoints()),
        signals,
        resume,
        execution,
    };
    let tb = if plan.callbacks.tensorboard.enabled {
        let mut log =
            TensorboardLog::open(run.root()).map_err(|e| Error::RunFailed(e.to_string()))?;
        if !resume {
            let config = format!("```toml\n{}\n```", config::to_toml(&plan.spec));
            log.text(Stream::Train, "config", 0, &config)
                .map_err(|e| Error::RunFailed(e.to_string()))?;
        }
        Some(log)
    } else {
        None
    };
    let mut events = RunLog {
        run,
        plan,
        has_validation: data.validation.is_some(),
        tb,
    };
    let mut progress = Progress::new();
    let fit = session
        .fit::<B>(device, &mut events, &mut progress)
        .map_err(Error::Train)?;

    let evaluate = matches!(fit.ending, Ending::Completed | Ending::EarlyStopped { .. });
    let mut test_accuracy = None;
    if evaluate {
        let model = fit.model.valid();
        let (split_name, split) = match (&data.test, &data.validation) {
            (Some(t), _) => ("test", t),
            (None, Some(v)) => ("validation", v),
            (None, None) => ("train", &data.train),
        };
        let preds = train::predict(&model, split, plan.train.batch_size, pad_eval, device)
            .map_err(Error::Train)?;
        let evaluation = report::eval::Evaluation::compute(split_name, &data.classes, &preds);
        crate::out!("\n{}", evaluation.render_table());
        let grid = report::prediction_grid(split, &preds, &data.classes, plan.seed)?;
        let pictures = report::write(
            &run.report_dir(),
            &evaluation,
            &preds,
            &fit.state.history,
            grid,
        )?;
        if let Some(tb) = events.tb.as_mut() {
            let step = fit.state.epochs_done.saturating_sub(1) as i64;
            for p in &pictures {
                tb.image_png(
                    Stream::Validation,
                    &format!("evaluation/{}", p.name),
                    step,
                    &p.png,
                    p.width,
                    p.height,
                )
                .map_err(|e| Error::RunFailed(e.to_string()))?;
            }
            tb.text(
                Stream::Validation,
                "evaluation/report",
                step,
                &format!("```\n{}```", evaluation.render_table()),
            )
            .map_err(|e| Error::RunFailed(e.to_string()))?;
            tb.flush().map_err(|e| Error::RunFailed(e.to_string()))?;
        }
        crate::outln!("Report: {}", run.report_dir().display());
        test_accuracy = Some(evaluation.accuracy);
    }
    Ok(Outcome {
        state: fit.state,
        ending: fit.ending,
        test_accuracy,
    })
}
