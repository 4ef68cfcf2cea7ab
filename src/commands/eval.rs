//! `runner eval RUN_DIR`: re-evaluate a saved run from its resolved config
//! and one of its checkpoints, optionally on other data.

use std::path::{Path, PathBuf};

use crate::backend::{self, TrainBackend, WithBackend};
use crate::device::{self, DeviceRequest};

use crate::config::spec::DataSpec;
use crate::config::{self, LoadOptions};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::Net;
use crate::plan;
use crate::report;
use crate::rundir::{self, RunDir};
use crate::train::checkpoint::{self, Checkpoints};

pub struct EvalArgs {
    pub run_dir: PathBuf,
    /// `final` (default), `best`, `last`, or `epoch-N`.
    pub checkpoint: String,
    /// Evaluate on this data instead: a test folder for `image_folder`, the
    /// dataset root for `food101` and `idx`.
    pub data: Option<PathBuf>,
    pub set: Vec<String>,
    /// cpu, cuda, cuda:N or wgpu; the run's `runtime.device` when unset.
    pub device: Option<String>,
    /// Where the report goes; `<run>/eval/<checkpoint>` when unset.
    pub output: Option<PathBuf>,
}

pub fn eval(args: &EvalArgs) -> Result<()> {
    let run = RunDir::open(&args.run_dir)?;
    let out = match &args.output {
        Some(out) => {
            rundir::check_writable_folder(out)?;
            out.clone()
        }
        None => {
            let out = run.root().join("eval").join(&args.checkpoint);
            // A teammate's run in a shared `runs/` may be readable only.
            rundir::check_writable_folder(&out)
                .map_err(|e| Error::unwritable_with(e, "write elsewhere with --output DIR"))?;
            out
        }
    };
    let mut overrides = super::overrides(&args.set)?;
    let loaded = config::load(&run.resolved_config(), &LoadOptions::default())?;
    if let Some(data) = &args.data {
        let key = match loaded.spec.data {
            DataSpec::ImageFolder(_) => "data.test_path",
            DataSpec::Food101(_) | DataSpec::Idx(_) => "data.path",
            DataSpec::Synthetic(_) => {
                return Err(Error::Usage(
                    "--data does not apply to the built-in synthetic data".into(),
                ));
            }
        };
        overrides.push(config::Override::parse(&format!(
            "{key}={}",
            data.display()
        ))?);
    }
    let loaded = if overrides.is_empty() {
        loaded
    } else {
        config::load(
            &run.resolved_config(),
            &LoadOptions {
                overrides,
                use_env: false,
            },
        )?
    };
    let mut plan = plan::plan_saved(&loaded)?;
    if let Some(d) = &args.device {
        plan.device = d.parse::<DeviceRequest>().map_err(Error::Usage)?;
    }
    let device = device::resolve(plan.device)?;
    backend::prepare_gpu(device)?;
    let threads = device::cpu_threads(plan.threads);
    backend::configure_cpu(threads);
    let data = Dataset::open(&plan).map_err(|e| Error::data(&loaded.sources, e))?;

    let checkpoints = Checkpoints::new(run.checkpoints());
    let model_file = checkpoints
        .model_file(&args.checkpoint)
        .map_err(|e| Error::Usage(e.to_string()))?;
    let (split_name, split) = match (&data.test, &data.validation) {
        (Some(t), _) => ("test", t),
        (None, Some(v)) => ("validation", v),
        (None, None) => ("train", &data.train),
    };
    let job = Predict {
        plan: &plan,
        model_file: &model_file,
        split,
        pad: device.is_gpu(),
    };
    let preds = backend::run_on(device, threads, plan.train.batch_size, job)??;
    crate::outln!("Device: {device}");
    let evaluation = report::eval::Evaluation::compute(split_name, &data.classes, &preds);
    crate::outln!("Checkpoint: {}", model_file.display());
    crate::out!("{}", evaluation.render_table());
    let grid = report::prediction_grid(split, &preds, &data.classes, plan.seed)?;
    report::write(&out, &evaluation, &preds, &[], grid)?;
    crate::outln!("Report: {}", out.display());
    Ok(())
}

/// The checkpoint's predictions on a split, on the chosen backend.
struct Predict<'a> {
    plan: &'a plan::ExperimentPlan,
    model_file: &'a Path,
    split: &'a crate::data::Split,
    pad: bool,
}

impl WithBackend for Predict<'_> {
    type Output = Result<crate::report::eval::Predictions>;

    fn run<B: TrainBackend>(self, device: B::Device) -> Self::Output {
        let net = Net::<B::InnerBackend>::init(&self.plan.model, &device);
        let net = checkpoint::load_model_file(self.model_file, net, &device)
            .map_err(|e| Error::RunFailed(e.to_string()))?;
        crate::train::predict(
            &net,
            self.split,
            self.plan.train.batch_size,
            self.pad,
            &device,
        )
        .map_err(Error::Train)
    }
}
