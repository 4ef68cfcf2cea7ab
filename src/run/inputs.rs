//! What a new run folder records before training: the experiment's files,
//! the resolved config, the overrides, and the first meta.json.

use crate::config::{self, Loaded};
use crate::data::Dataset;
use crate::device::Device;
use crate::error::Result;
use crate::gpu::GpuSettings;
use crate::plan::ExperimentPlan;
use crate::rundir::{self, Meta, RunDir, Status};

/// The original file(s), the resolved config and the overrides.
pub(super) fn write(run: &RunDir, loaded: &Loaded, plan: &ExperimentPlan) -> Result<()> {
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

pub(super) fn new_meta(
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
        session_start: None,
        earlier_seconds: 0.0,
        run_seconds: None,
        skipped_images: 0,
        class_weights: None,
    }
}
