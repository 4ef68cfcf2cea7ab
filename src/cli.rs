//! Command-line definitions. Each subcommand lives in `commands/`; this file
//! parses arguments and turns each result into an exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::commands::{self, report, ExperimentArgs};

#[derive(Debug, Parser)]
#[command(name = "runner", version, about = "A declarative experiment runner for deep learning", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate experiment files without running anything.
    Check {
        /// Experiment files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Override a config key (applies to every file), or remove one with `~KEY`. Repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Ignore `RUNNER_*` environment variables.
        #[arg(long)]
        no_env: bool,
        /// Print the fully resolved config, noting where each overridden value came from.
        #[arg(long)]
        show_config: bool,
    },
    /// Print a Keras-style table of the model's layers, shapes and parameters.
    Summary {
        #[command(flatten)]
        exp: ExperimentArgs,
    },
    /// Re-evaluate a finished run from its resolved config and a checkpoint.
    Eval {
        /// The run folder.
        #[arg(value_parser = folder_arg)]
        run_dir: PathBuf,
        /// Which weights: final (what the run ended with), best, last, or epoch-N.
        #[arg(long, default_value = crate::rundir::FINAL)]
        checkpoint: String,
        /// Other data to evaluate on: a test folder (image_folder) or a dataset root (food101, idx).
        #[arg(long, value_name = "PATH")]
        data: Option<PathBuf>,
        /// Override a config key of the run, or remove one with `~KEY`. Repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// cpu, cuda, cuda:N or wgpu (default: the run's runtime.device).
        #[arg(long)]
        device: Option<String>,
        /// Where to write the report (default: <run>/eval/<checkpoint>); for a run you cannot write to, or an evaluation on --data kept apart.
        #[arg(long, short = 'o', value_name = "DIR")]
        output: Option<PathBuf>,
    },
    /// Write a run's model for other tools: ONNX, or safetensors for a PyTorch nn.Sequential, with its input layout, class names and preprocessing.
    Export {
        /// The run folder (`runs/<experiment>/latest` works).
        #[arg(value_parser = folder_arg)]
        run_dir: PathBuf,
        /// The file format.
        #[arg(long, value_enum)]
        format: commands::export::Format,
        /// Which weights: final (what the run ended with), best, last, or epoch-N.
        #[arg(long, default_value = crate::rundir::FINAL)]
        checkpoint: String,
        /// Where to write (default: <run>/export/model.onnx or model.safetensors; safetensors also writes the .py beside it).
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Classify image files with a run's model: a table, predictions.csv and optionally a picture grid.
    #[command(long_about = "Classify image files with a trained run's model.\n\n\
            Each image is read as the run's evaluation read its test images (resized to the model's \
            input with the run's interpolation, its channels, rescale and normalize; no augmentation). \
            Prints a table (path, predicted class, probability, the top-k classes) and writes \
            predictions.csv; an unreadable image fails the command unless --skip-bad-images is given \
            (or the run has data.on_bad_image = \"skip\"), which lists and leaves it out. Class names come from the \
            run's meta.json: the training data is not needed.")]
    Predict {
        /// The run folder (`runs/<experiment>/latest` for the newest).
        #[arg(value_parser = folder_arg)]
        run_dir: PathBuf,
        /// Image files, folders (searched recursively for .jpg, .jpeg, .png, .bmp and .webp files) or glob patterns ('photos/*.jpg', 'photos/**/*.png').
        #[arg(required = true, value_name = "IMAGES")]
        images: Vec<String>,
        /// Which weights: final (what the run ended with), best, last, or epoch-N.
        #[arg(long, default_value = crate::rundir::FINAL)]
        checkpoint: String,
        /// Images per forward pass (default: the run's train.batch_size).
        #[arg(long, value_name = "N", value_parser = positive_arg)]
        batch_size: Option<usize>,
        /// cpu, cuda, cuda:N or wgpu (default: the run's runtime.device).
        #[arg(long)]
        device: Option<String>,
        /// How many of the most probable classes to list per image (at most the number of classes).
        #[arg(long, value_name = "N", default_value_t = 3, value_parser = positive_arg)]
        top_k: usize,
        /// Where to write the predictions: path, predicted, probability, top1_class, top1_probability, ...
        #[arg(
            long,
            short = 'o',
            value_name = "FILE",
            default_value = "predictions.csv"
        )]
        output: PathBuf,
        /// Also draw the images (the first 100) with their predicted class and probability into this PNG.
        #[arg(long, value_name = "OUT.png")]
        grid: Option<PathBuf>,
        /// Also write every class's logit (the network's output before the softmax) to the CSV, as logit_<class> columns.
        #[arg(long)]
        logits: bool,
        /// Leave out the files that cannot be decoded, listing them (default: as the run's data.on_bad_image, "fail" unless it was set).
        #[arg(long)]
        skip_bad_images: bool,
    },
    /// Train an experiment into a new run folder (or resume one).
    #[command(group(clap::ArgGroup::new("what").required(true).args(["file", "resume", "trial"])))]
    Run {
        /// The experiment file (TOML).
        file: Option<PathBuf>,
        /// Continue an interrupted run in its folder; with `--set train.epochs=N`, also a
        /// finished one, trained on to N epochs.
        #[arg(long, value_name = "RUN_DIR", value_parser = folder_arg, conflicts_with = "file")]
        resume: Option<PathBuf>,
        /// Run one sweep trial in its folder (starts it, or resumes it from its checkpoint).
        #[arg(long, value_name = "TRIAL_DIR", hide = true, conflicts_with_all = ["file", "set"])]
        trial: Option<PathBuf>,
        /// With --trial: stop, resumable, after this many completed epochs
        /// (a trial pausing at a rung of promotion-based early stopping).
        #[arg(long, value_name = "EPOCHS", hide = true, requires = "trial")]
        until: Option<usize>,
        /// With --trial: a Slurm task of a promotion sweep; after its trial
        /// pauses at a rung, it runs the promotions the sweep decides.
        #[arg(long, hide = true, requires = "trial", conflicts_with = "until")]
        worker: bool,
        /// Override a config key, e.g. `--set optimizer.learning_rate=3e-4`, or remove one:
        /// `--set '~callbacks.early_stopping'`. Hydra's `+KEY=VALUE` (only where no layer
        /// sets the key) and `++KEY=VALUE` work too. A key can choose one layer by index
        /// or by its summary name: `--set model.layers.dense.units=128`. Repeatable.
        /// With --resume, only the epochs: `--set train.epochs=N`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Ignore `RUNNER_*` environment variables.
        #[arg(long)]
        no_env: bool,
        /// cpu, cuda, cuda:N or wgpu (overrides runtime.device).
        #[arg(long)]
        device: Option<String>,
        /// Where to create the run folder (overrides runtime.runs_dir).
        #[arg(long, value_name = "DIR", conflicts_with_all = ["resume", "trial"])]
        runs_dir: Option<PathBuf>,
        /// CPU threads (overrides runtime.threads; 0 means all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Name the run folder runs/<experiment>/ID instead of the next vNNNN. If it holds a
        /// run of the same config, resume it: `--id $SLURM_JOB_ID` continues a requeued job's run.
        #[arg(long, conflicts_with_all = ["resume", "trial"])]
        id: Option<String>,
    },
    /// Runs side by side: the config keys that differ, final and best metrics.
    Compare {
        /// Run folders, or folders to take every run below from: a sweep's (its trials),
        /// an experiment's (its runs and its sweeps' trials), a runs folder (every experiment's).
        #[arg(required = true, value_parser = folder_arg)]
        dirs: Vec<PathBuf>,
        /// Rows in order of a metric, best first (val_accuracy, val_loss, final_val_accuracy,
        /// test_accuracy, time), or of a config key's value (`model.dropout`).
        #[arg(long, value_name = "KEY")]
        sort: Option<String>,
        /// Also write the table as CSV for pandas (full precision, epochs from 0);
        /// `-` writes it to stdout in place of the table.
        #[arg(long, value_name = "FILE")]
        csv: Option<PathBuf>,
        /// A column per run and a row per key, as on a terminal too narrow for a row per run.
        #[arg(long)]
        transpose: bool,
        /// Also draw the validation loss and accuracy curves of the table's first 10 runs
        /// into this PNG, a line per run (with --sort, the 10 best).
        #[arg(long, value_name = "FILE")]
        plot: Option<PathBuf>,
    },
    /// Run a grid, random or TPE search over any config keys, one run per trial.
    #[command(group(clap::ArgGroup::new("what").required(true).args(["file", "resume", "status", "cancel"])))]
    Sweep {
        /// The experiment file, with a [sweep] table.
        file: Option<PathBuf>,
        /// Override a config key of the base experiment, or remove one with `~KEY`.
        /// Repeatable. With --resume, only the budget: sweep.trials, sweep.max_trials,
        /// sweep.max_hours.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Ignore `RUNNER_*` environment variables.
        #[arg(long)]
        no_env: bool,
        /// List the trials and their values, check every trial's config, run nothing.
        #[arg(long, conflicts_with_all = ["resume", "status", "cancel"])]
        dry_run: bool,
        /// Trials at once (overrides sweep.parallel; on Slurm, also [sweep.launcher] max_parallel).
        #[arg(long)]
        parallel: Option<usize>,
        /// Stop the sweep at the first failed trial.
        #[arg(long)]
        fail_fast: bool,
        /// local or slurm (overrides sweep.launcher.type).
        #[arg(long)]
        launcher: Option<String>,
        /// Where to create the sweep folder (overrides runtime.runs_dir).
        #[arg(long, value_name = "DIR", conflicts_with_all = ["resume", "status", "cancel"])]
        runs_dir: Option<PathBuf>,
        /// Continue an interrupted sweep (finished trials are never run again), or one that
        /// ended, with more trials: `--set sweep.trials=N`.
        #[arg(long, value_name = "SWEEP_DIR", value_parser = folder_arg, conflicts_with = "file")]
        resume: Option<PathBuf>,
        /// With --resume: run failed trials again too.
        #[arg(long, requires = "resume")]
        retry_failed: bool,
        /// Show each trial's state (polls Slurm for Slurm sweeps).
        #[arg(long, value_name = "SWEEP_DIR", value_parser = folder_arg, conflicts_with_all = ["file", "set"])]
        status: Option<PathBuf>,
        /// Follow the sweep until every trial has ended.
        #[arg(long)]
        wait: bool,
        /// Cancel a sweep: its Slurm jobs (scancel), or the runner process that runs it here (SIGTERM).
        #[arg(long, value_name = "SWEEP_DIR", value_parser = folder_arg, conflicts_with_all = ["file", "set"])]
        cancel: Option<PathBuf>,
        /// Seconds between Slurm polls.
        #[arg(long, default_value_t = 5.0, hide = true, value_parser = seconds_arg)]
        poll_seconds: f64,
    },
    /// Report what the data source holds: classes, counts per split, image sizes, unreadable files.
    Data {
        #[command(flatten)]
        exp: ExperimentArgs,
        /// Also write a grid of augmented training samples with their labels to this PNG.
        #[arg(long, value_name = "OUT.png")]
        preview: Option<PathBuf>,
        /// Only list the files; do not decode every image.
        #[arg(long)]
        quick: bool,
    },
}

/// A positive, finite number of seconds.
fn seconds_arg(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("`{s}` is not a positive number of seconds")),
    }
}

/// A whole number of at least 1.
fn positive_arg(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{s}` is not a whole number of at least 1")),
    }
}

/// A run or sweep folder argument; `.../latest` names the newest one, a
/// sweep's `best` its best finished trial.
fn folder_arg(s: &str) -> Result<PathBuf, std::convert::Infallible> {
    Ok(crate::rundir::resolve_pointers(std::path::Path::new(s)))
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check {
            files,
            set,
            no_env,
            show_config,
        } => commands::check::run(&files, &set, !no_env, show_config),
        Command::Summary { exp } => commands::check::summary(&exp),
        Command::Eval {
            run_dir,
            checkpoint,
            data,
            set,
            device,
            output,
        } => commands::eval::eval(&commands::eval::EvalArgs {
            run_dir,
            checkpoint,
            data,
            set,
            device,
            output,
        }),
        Command::Export {
            run_dir,
            format,
            checkpoint,
            output,
        } => commands::export::export(&commands::export::ExportArgs {
            run_dir,
            format,
            checkpoint,
            output,
        }),
        Command::Predict {
            run_dir,
            images,
            checkpoint,
            batch_size,
            device,
            top_k,
            output,
            grid,
            logits,
            skip_bad_images,
        } => commands::predict::predict(&commands::predict::PredictRequest {
            run_dir,
            images,
            checkpoint,
            batch_size,
            device,
            top_k,
            output,
            grid,
            logits,
            skip_bad_images,
        }),
        Command::Run {
            file,
            resume,
            trial,
            set,
            no_env,
            device,
            runs_dir,
            threads,
            id,
            until,
            worker,
        } => {
            let target = match (file, resume, trial) {
                (_, Some(dir), _) => commands::run::RunTarget::Resume { dir, set },
                (_, _, Some(dir)) => commands::run::RunTarget::Trial { dir, worker },
                (Some(file), _, _) => {
                    commands::run::RunTarget::New(ExperimentArgs { file, set, no_env })
                }
                (None, None, None) => unreachable!("clap requires one of FILE, --resume, --trial"),
            };
            commands::run::run(
                target,
                &commands::run::RunOptions {
                    device,
                    runs_dir,
                    threads,
                    id,
                    until,
                },
            )
        }
        Command::Compare {
            dirs,
            sort,
            csv,
            transpose,
            plot,
        } => commands::compare::compare(&commands::compare::CompareArgs {
            dirs: &dirs,
            sort: sort.as_deref(),
            csv: csv.as_deref(),
            transpose,
            plot: plot.as_deref(),
        }),
        Command::Sweep {
            file,
            set,
            no_env,
            dry_run,
            parallel,
            fail_fast,
            launcher,
            runs_dir,
            resume,
            retry_failed,
            status,
            wait,
            cancel,
            poll_seconds,
        } => commands::sweep::sweep(&commands::sweep::SweepArgs {
            resume_set: if resume.is_some() {
                set.clone()
            } else {
                Vec::new()
            },
            exp: file.map(|file| ExperimentArgs { file, set, no_env }),
            dry_run,
            parallel,
            fail_fast,
            launcher,
            runs_dir,
            resume,
            retry_failed,
            status,
            wait,
            cancel,
            poll_seconds,
        }),
        Command::Data {
            exp,
            preview,
            quick,
        } => commands::data::run(&exp, preview.as_deref(), quick),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            report(&err);
            ExitCode::from(err.exit_code())
        }
    }
}
