//! Files under `<sweep>/slurm`: where they live, and `trials.txt`.

use std::path::{Path, PathBuf};

use super::SlurmError;
use crate::rundir::write_atomic;

/// Where the Slurm launcher keeps its files inside a sweep folder.
#[derive(Debug, Clone)]
pub struct SlurmPaths {
    dir: PathBuf,
}

impl SlurmPaths {
    pub fn new(sweep_dir: &Path) -> SlurmPaths {
        SlurmPaths {
            dir: sweep_dir.join("slurm"),
        }
    }
    /// `<sweep>/slurm`
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The batch script, `<sweep>/slurm/sweep.sbatch`.
    pub fn script(&self) -> PathBuf {
        self.dir.join("sweep.sbatch")
    }
    /// Line N (counted from 0) is trial N's absolute folder.
    pub fn trials_file(&self) -> PathBuf {
        self.dir.join("trials.txt")
    }
    /// Every submission so far ([`read_jobs`](super::read_jobs)).
    pub fn jobs_file(&self) -> PathBuf {
        self.dir.join("jobs.json")
    }
    /// Per-task stdout and stderr, `%A_%a.out` / `%A_%a.err`.
    pub fn logs_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }
    /// The stdout and stderr files of array task `task_id` of job `job_id`.
    pub fn task_logs(&self, job_id: &str, task_id: usize) -> (PathBuf, PathBuf) {
        let logs = self.logs_dir();
        (
            logs.join(format!("{job_id}_{task_id}.out")),
            logs.join(format!("{job_id}_{task_id}.err")),
        )
    }
}

/// Write `<sweep>/slurm/trials.txt`: line N = `trial_dirs[N]`, which must be
/// absolute (batch jobs may start anywhere) and free of line breaks.
pub fn write_trials_file(sweep_dir: &Path, trial_dirs: &[PathBuf]) -> Result<PathBuf, SlurmError> {
    let mut text = String::new();
    for dir in trial_dirs {
        let Some(s) = dir.to_str() else {
            return Err(SlurmError::TrialPath {
                path: dir.clone(),
                reason: "not valid UTF-8",
            });
        };
        if !dir.is_absolute() {
            return Err(SlurmError::TrialPath {
                path: dir.clone(),
                reason: "not an absolute path",
            });
        }
        if s.contains(['\n', '\r']) {
            return Err(SlurmError::TrialPath {
                path: dir.clone(),
                reason: "it contains a line break",
            });
        }
        text.push_str(s);
        text.push('\n');
    }
    let path = SlurmPaths::new(sweep_dir).trials_file();
    write_atomic(&path, text.as_bytes())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trials_file_rejects_relative_and_multiline_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let err = write_trials_file(tmp.path(), &[PathBuf::from("runs/x")]).unwrap_err();
        assert!(err.to_string().contains("not an absolute path"), "{err}");
        let err = write_trials_file(tmp.path(), &[PathBuf::from("/a\nb")]).unwrap_err();
        assert!(err.to_string().contains("line break"), "{err}");
    }
}
