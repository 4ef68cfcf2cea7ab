//! One run, start to end: find or make its folder, check the device and
//! the data before anything is written, train, evaluate, and record how it
//! ended in `meta.json`. `runner run` (a new run, `--resume`, a sweep
//! trial) is a thin command over [`run`].
//!
//! Files: [`inputs`] (what a new folder records first), [`extend`] (a
//! resume that trains a run on to more epochs), [`execute`] (training and
//! evaluation on the chosen backend), [`finish`] (the outcome into
//! meta.json and an exit status), [`session`] (the run in TensorBoard's
//! HParams tab). Imports run one way: mod -> inputs, extend, execute,
//! finish, session.

mod execute;
mod extend;
mod finish;
mod inputs;
mod session;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::backend;
use crate::config::{self, Loaded};
use crate::data::Dataset;
use crate::device::{self, DeviceRequest};
use crate::error::{Error, Result};
use crate::plan::{self, ExperimentPlan};
use crate::rundir::{self, RunDir, Status};
use crate::signals::Signals;
use crate::sweep::{TrialJudge, TRIAL_CONFIG};
use crate::train::checkpoint::{Checkpoints, LAST};
use crate::train::{loss, Execution};

use execute::Execute;

/// How long a run waits for its existing folder's lock, held by another
/// process, before it gives up.
const LOCK_WAIT_SECONDS: u64 = 10;

/// What to run.
pub enum RunTarget {
    /// A new run of a loaded and planned experiment.
    New(Box<(Loaded, ExperimentPlan)>),
    /// Continue an interrupted run in its folder; `set`: `--set
    /// train.epochs=N` flags that train it on to more epochs.
    Resume { dir: PathBuf, set: Vec<String> },
    /// A sweep trial: start it, or resume it if it has a checkpoint.
    Trial(PathBuf),
}

/// Command-line settings that override the experiment file.
pub struct RunOptions {
    pub device: Option<String>,
    pub runs_dir: Option<PathBuf>,
    pub threads: Option<usize>,
    /// `--id NAME`: a new run's folder is `runs/<experiment>/NAME`, and a
    /// run of the same config already there is resumed ([`named`]).
    pub id: Option<String>,
    /// Stop, resumable, after this many completed epochs (a sweep trial
    /// pausing at a rung; only with a trial).
    pub until: Option<usize>,
}

/// Train, evaluate and record one run. Errors before training leave no new
/// folder behind; errors after it are recorded in the folder's meta.json.
pub fn run(target: RunTarget, opts: &RunOptions) -> Result<()> {
    let trial = matches!(target, RunTarget::Trial(_));
    let Some((loaded, mut plan, place, resume, extension)) = prepare(target, opts)? else {
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

    let data = Dataset::open(&plan).map_err(|e| Error::data(&loaded.sources, e))?;
    data.check_headers().map_err(Error::Data)?;
    // `Dataset::open` has checked that the data's classes and the model's
    // outputs are as many.
    // `train.class_weight` can name only the classes the data has, which a
    // folder's layout reveals only now.
    let class_weights = loss::class_weights(
        plan.train.class_weight.as_ref(),
        &data.classes,
        data.train.labels(),
    )
    .map_err(|e| Error::Usage(e.to_string()))?;
    let (run, existing) = match place {
        Place::New => (RunDir::allocate(&plan.runs_dir, &plan.name)?, false),
        // Two processes given one --id meet at its lock, as a resume does.
        Place::Named(id) => (RunDir::named(&plan.runs_dir, &plan.name, &id)?, true),
        Place::Existing(run) => (run, true),
    };
    // One process per run folder: a second `--resume` or a requeued trial
    // must not train into the same folder at the same time. An existing
    // folder's last process may still be dying (a trial of a sweep that was
    // just killed and is resumed at once): it gets a few seconds to let go.
    let wait = Duration::from_secs(if existing { LOCK_WAIT_SECONDS } else { 0 });
    // A teammate's run in a shared `runs/` can be read, not written.
    let not_ours = |e: rundir::RunDirError| match existing {
        true => Error::unwritable_with(
            e,
            format_args!(
                "to train on from this run's weights, start a run of your own with \
                 `model.init_from = \"{}\"`",
                run.root().display()
            ),
        ),
        false => e.into(),
    };
    if existing {
        rundir::check_writable_folder(run.root()).map_err(not_ours)?;
    }
    let lock = rundir::try_lock_within(&run.lock(), wait).map_err(not_ours)?;
    let Some(_lock) = lock else {
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
    if let Some(w) = &class_weights {
        crate::outln!(
            "Class weights (train.class_weight): {}",
            loss::describe_weights(&data.classes, w)
        );
    }

    if !resume {
        inputs::write(&run, &loaded, &plan)?;
    }
    if let Some(ext) = &extension {
        extend::record(&run, &plan, ext)?;
    }
    let mut meta = match (resume, run.read_meta()) {
        (true, Ok(mut m)) => {
            m.resumes += 1;
            m.begin_session(rundir::now_rfc3339());
            m.status = Status::Running;
            m.end_time = None;
            m.message = None;
            m.pid = std::process::id();
            m.backend = device.backend_name().into();
            m.device = device.to_string();
            m.gpu = gpu.map(|s| s.describe());
            m
        }
        _ => inputs::new_meta(&plan, &data, device, threads, gpu),
    };
    meta.class_weights = class_weights.map(|w| data.classes.iter().cloned().zip(w).collect());
    run.write_meta(&meta)?;
    if !trial {
        session::start(&run, &plan, &meta);
    }
    crate::outln!("Run folder: {}", run.root().display());
    if let Some(ext) = &extension {
        crate::outln!(
            "Training on to {} epochs (train.epochs was {})",
            plan.train.epochs,
            ext.from
        );
    }
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
    let judge = if trial { trial_judge(run.root()) } else { None };
    let job = Execute {
        plan: &plan,
        data: &data,
        run: &run,
        signals: &signals,
        resume,
        until: opts.until.filter(|&u| u < plan.train.epochs),
        execution,
        judge: judge.as_ref(),
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
    // A pruned trial's stop is the sweep's doing, as its journal says.
    let pruned = if trial {
        crate::sweep::journaled_prune(run.root())
    } else {
        None
    };
    let sweep = if trial { run.root().parent() } else { None };
    let result = finish::finish(&run, &mut meta, outcome, pruned, sweep);
    if !trial {
        session::end(&run, &meta);
    }
    result
}

/// A trial of a Slurm sweep with early stopping judges its own rungs
/// ([`TrialJudge`]); one whose sweep cannot be read leaves them to a
/// process following the sweep.
fn trial_judge(dir: &Path) -> Option<TrialJudge> {
    TrialJudge::for_trial(dir).unwrap_or_else(|e| {
        crate::errln!(
            "cannot read this trial's sweep ({e}); its rungs are left to `runner sweep --status --wait`"
        );
        None
    })
}

/// Where a run trains: a new folder, made once every check has passed (the
/// next `vNNNN`, or the one `--id` names), or the existing one of a resumed
/// run or a sweep trial.
enum Place {
    New,
    Named(String),
    Existing(RunDir),
}

/// What [`prepare`] found: the config, its plan, where to train, whether
/// it resumes, and how a resume trains on past the planned epochs.
type Prepared = (
    Loaded,
    ExperimentPlan,
    Place,
    bool,
    Option<extend::Extension>,
);

/// Read the config and find the run folder for each kind of target.
/// `None` when there is nothing to do (a trial that already completed).
fn prepare(target: RunTarget, opts: &RunOptions) -> Result<Option<Prepared>> {
    match target {
        RunTarget::New(planned) => {
            let (loaded, mut plan) = *planned;
            if let Some(d) = &opts.runs_dir {
                plan.runs_dir = d.clone();
            }
            match &opts.id {
                Some(id) => named(loaded, plan, id),
                None => Ok(Some((loaded, plan, Place::New, false, None))),
            }
        }
        RunTarget::Resume { dir, set } => {
            let run = RunDir::open(&dir)?;
            let meta = run.read_meta()?;
            if meta.status == Status::Completed && set.is_empty() {
                return Err(Error::Usage(format!(
                    "{} already completed; nothing to resume{}",
                    dir.display(),
                    extend::completed_hint(&run, &meta)
                )));
            }
            refuse_sweep_hold(&run)?;
            let Some(done) = Checkpoints::new(run.checkpoints()).linked_epoch(LAST) else {
                return Err(Error::Usage(format!(
                    "{} has no checkpoint to resume from (it stopped before finishing its first epoch, or callbacks.checkpoint.save_last is off); start it again with `runner run`",
                    dir.display()
                )));
            };
            if !set.is_empty() {
                let (loaded, plan, ext) = extend::extended(&run, &meta, done, &set)?;
                return Ok(Some((loaded, plan, Place::Existing(run), true, Some(ext))));
            }
            // Its own checkpoint holds the weights: `init_from` is not checked again.
            let loaded = config::load_exact(&run.resolved_config())?;
            let plan = plan::plan_saved(&loaded)?;
            Ok(Some((loaded, plan, Place::Existing(run), true, None)))
        }
        RunTarget::Trial(dir) => {
            // A TPE trial on Slurm that its task chooses now.
            let dir = crate::sweep::claim(&dir)?;
            // Nothing is created for a path that is not a trial's folder.
            if !dir.join(TRIAL_CONFIG).is_file() {
                return Err(Error::Usage(format!(
                    "{} is not a sweep trial's folder: it has no {TRIAL_CONFIG}",
                    dir.display()
                )));
            }
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
            Ok(Some((loaded, plan, Place::Existing(run), resume, None)))
        }
    }
}

/// `runner run FILE --id NAME`: the run in `runs/<experiment>/NAME`, as W&B's
/// `resume="allow"` finds a run by its id. A folder without a run starts
/// one; one holding a run of the same resolved config resumes it (a Slurm
/// job requeued after a preemption runs the same command again, and `--id
/// $SLURM_JOB_ID` continues its run); one that completed has nothing left
/// to do. A run of another config there is an error: it is never mixed.
fn named(loaded: Loaded, plan: ExperimentPlan, id: &str) -> Result<Option<Prepared>> {
    check_id(id)?;
    let dir = plan.runs_dir.join(&plan.name).join(id);
    if let Ok(run) = RunDir::open(&dir) {
        let saved = std::fs::read_to_string(run.resolved_config()).unwrap_or_default();
        let completed = run.read_meta().is_ok_and(|m| m.status == Status::Completed);
        if saved != config::to_toml(&plan.spec) {
            let or_resume = if completed {
                String::new()
            } else {
                format!(
                    ", or continue that run as it was with `runner run --resume {}`",
                    dir.display()
                )
            };
            return Err(Error::Usage(format!(
                "{} holds a run of another config (`runner compare` shows the keys that differ); give another --id{or_resume}",
                dir.display()
            )));
        }
        if completed {
            crate::outln!(
                "{} already completed; nothing to do (another --id starts a new run)",
                dir.display()
            );
            return Ok(None);
        }
        let resume = Checkpoints::new(run.checkpoints())
            .linked_epoch(LAST)
            .is_some();
        return Ok(Some((loaded, plan, Place::Existing(run), resume, None)));
    }
    Ok(Some((
        loaded,
        plan,
        Place::Named(id.to_string()),
        false,
        None,
    )))
}

/// A `--id` names one folder beside the numbered ones: letters, digits,
/// `-`, `_` and `.`, and not a name runner gives (`v0001`, `latest`, `sweeps`).
fn check_id(id: &str) -> Result<()> {
    let numbered = id
        .strip_prefix('v')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    let why = if id.is_empty() || id.starts_with('.') {
        Some("it must not be empty or start with `.`")
    } else if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        Some("use letters, digits, `-`, `_` and `.`")
    } else if numbered || id == "latest" || id == "sweeps" {
        Some("runner names folders so itself (`v0001`, `latest`, `sweeps`)")
    } else {
        None
    };
    match why {
        Some(why) => Err(Error::Usage(format!(
            "--id {id:?} cannot name a run folder: {why}"
        ))),
        None => Ok(()),
    }
}

/// `runner run --resume` of a sweep trial that early stopping pruned, or
/// that waits at a rung for a promotion: training it on here would undo
/// the sweep's decision and leave its record (journal, summary, ranking)
/// saying otherwise. Its values can still train to the end as a new run.
fn refuse_sweep_hold(run: &RunDir) -> Result<()> {
    let dir = run.root();
    let why = if let Some(epoch) = crate::sweep::journaled_prune(dir) {
        format!(
            "early stopping pruned this trial at epoch {epoch}, and a pruned trial is never resumed"
        )
    } else if crate::sweep::journaled_pause(dir) {
        let sweep = dir.parent().unwrap_or(dir);
        format!(
            "this trial waits at a rung for its sweep to promote it; `runner sweep --resume {}` decides whether it goes on",
            sweep.display()
        )
    } else {
        return Ok(());
    };
    Err(Error::Usage(format!(
        "{} cannot be resumed: {why}. To train its values to the end, start a new run from its config: `runner run {}`",
        dir.display(),
        run.resolved_config().display()
    )))
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
