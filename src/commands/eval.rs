//! `runner eval RUN_DIR`: re-evaluate a saved run from its resolved config
//! and one of its checkpoints, optionally on other data.

use std::path::PathBuf;

use burn::backend::Flex;

use crate::config::spec::DataSpec;
use crate::config::{self, LoadOptions};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::Net;
use crate::plan;
use crate::report;
use crate::rundir::RunDir;
use crate::train::checkpoint::{self, Checkpoints, FINAL};

pub struct EvalArgs {
    pub run_dir: PathBuf,
    /// `final` (default), `best`, `last`, or `epoch-N`.
    pub checkpoint: String,
    /// Evaluate on this data instead: a test folder for `image_folder`, the
    /// dataset root for `food101` and `idx`.
    pub data: Option<PathBuf>,
    pub set: Vec<String>,
}

pub fn eval(args: &EvalArgs) -> Result<()> {
    let run = RunDir::open(&args.run_dir)?;
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
    let plan = plan::plan(&loaded)?;
    let data = Dataset::open(&plan).map_err(Error::Data)?;

    let checkpoints = Checkpoints::new(run.checkpoints());
    let model_file = model_file(&checkpoints, &args.checkpoint)?;
    let device = Default::default();
    let net = Net::<Flex>::init(&plan.model, &device);
    let net = checkpoint::load_model_file(&model_file, net, &device)
        .map_err(|e| Error::RunFailed(e.to_string()))?;

    let (split_name, split) = match (&data.test, &data.validation) {
        (Some(t), _) => ("test", t),
        (None, Some(v)) => ("validation", v),
        (None, None) => ("train", &data.train),
    };
    let preds =
        crate::train::predict(&net, split, plan.train.batch_size, &device).map_err(Error::Train)?;
    let evaluation = report::eval::Evaluation::compute(split_name, &data.classes, &preds);
    println!("Checkpoint: {}", model_file.display());
    print!("{}", evaluation.render_table());
    let grid = report::prediction_grid(split, &preds, &data.classes, plan.seed)?;
    let out = run.root().join("eval").join(&args.checkpoint);
    report::write(&out, &evaluation, &[], grid)?;
    println!("Report: {}", out.display());
    Ok(())
}

fn model_file(checkpoints: &Checkpoints, name: &str) -> Result<PathBuf> {
    let dir = match name
        .strip_prefix("epoch-")
        .and_then(|n| n.parse::<usize>().ok())
    {
        Some(epoch) => checkpoints.epoch_dir(epoch),
        None => checkpoints.dir().join(name),
    };
    let file = dir.join("model.mpk");
    if file.is_file() {
        return Ok(file);
    }
    let available: Vec<String> = ["final", "best", "last"]
        .iter()
        .filter(|n| checkpoints.dir().join(n).join("model.mpk").is_file())
        .map(|s| s.to_string())
        .chain(
            checkpoints
                .saved_epochs()
                .iter()
                .map(|e| format!("epoch-{e:04}")),
        )
        .collect();
    let hint = if name == FINAL {
        " (the run did not finish; try `last`)"
    } else {
        ""
    };
    Err(Error::Usage(format!(
        "{} has no `{name}` checkpoint{hint}; available: {}",
        checkpoints.dir().display(),
        if available.is_empty() {
            "none".to_string()
        } else {
            available.join(", ")
        }
    )))
}
