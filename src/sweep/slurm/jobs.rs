//! Submissions, recorded in `<sweep>/slurm/jobs.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::files::SlurmPaths;
use super::SlurmError;
use crate::rundir::write_atomic;

/// One `sbatch` call: array task `t` of `job_id` runs trial `offset + t`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmittedJob {
    pub job_id: String,
    pub offset: usize,
    pub trials: Vec<usize>,
    /// Set when `sbatch --parsable` named a cluster (`jobid;cluster`, as with
    /// `--clusters`); later commands then pass `-M cluster`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
}

impl SubmittedJob {
    /// The array task id that runs `trial`, if this job runs it.
    pub fn task_id(&self, trial: usize) -> Option<usize> {
        self.trials.contains(&trial).then(|| trial - self.offset)
    }

    /// The stdout and stderr files of the task that runs `trial`.
    pub fn log_files(&self, sweep_dir: &Path, trial: usize) -> Option<(PathBuf, PathBuf)> {
        let task = self.task_id(trial)?;
        Some(SlurmPaths::new(sweep_dir).task_logs(&self.job_id, task))
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct JobsFile {
    jobs: Vec<SubmittedJob>,
}

/// Every submission recorded in `<sweep>/slurm/jobs.json`, oldest first
/// (empty when nothing was submitted).
pub fn read_jobs(sweep_dir: &Path) -> Result<Vec<SubmittedJob>, SlurmError> {
    let path = SlurmPaths::new(sweep_dir).jobs_file();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(SlurmError::Io { path, source }),
    };
    let file: JobsFile =
        serde_json::from_str(&text).map_err(|source| SlurmError::Json { path, source })?;
    Ok(file.jobs)
}

pub(super) fn append_job(sweep_dir: &Path, job: &SubmittedJob) -> Result<(), SlurmError> {
    let mut jobs = read_jobs(sweep_dir)?;
    jobs.push(job.clone());
    let path = SlurmPaths::new(sweep_dir).jobs_file();
    let text =
        serde_json::to_string_pretty(&JobsFile { jobs }).map_err(|source| SlurmError::Json {
            path: path.clone(),
            source,
        })?;
    write_atomic(&path, format!("{text}\n").as_bytes())?;
    Ok(())
}

/// The latest submission that ran each trial (a resubmission replaces an earlier one).
pub fn latest_job_per_trial(jobs: &[SubmittedJob]) -> BTreeMap<usize, &SubmittedJob> {
    let mut out = BTreeMap::new();
    for job in jobs {
        for &t in &job.trials {
            out.insert(t, job);
        }
    }
    out
}
