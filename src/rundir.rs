//! Versioned run folders, atomic writes and `meta.json`. Every path inside a
//! run folder is a method here, so no other module spells a file name.
//!
//! Layout of `runs/<experiment>/v0007/`:
//! ```text
//! source/            the experiment file and its `extends` parents, as written
//! config.resolved.toml   the fully resolved config (readable by `runner run`)
//! overrides.json     the --set flags and RUNNER_* variables that applied
//! meta.json          versions, git, device, seed, dataset fingerprint, times, status
//! metrics.csv        one row per epoch
//! train/ validation/ TensorBoard event files (Keras layout)
//! checkpoints/       epoch-NNNN/ folders; `last` and `best` link to one of them
//! report/            evaluation tables and pictures
//! ```

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RunDirError {
    #[error("cannot create run folder under {}: {source}", parent.display())]
    Create { parent: PathBuf, source: io::Error },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{} is not a run folder: {reason}", path.display())]
    NotARun { path: PathBuf, reason: String },
}

/// Write a file so that readers see either the old or the new content, never
/// a torn one: write a temp file in the same folder, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RunDirError> {
    let err = |source| RunDirError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(err)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(err)?;
    tmp.write_all(bytes).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

/// Point `link` at `target` (a name relative to the link's folder),
/// replacing any previous link atomically.
pub fn relink(link: &Path, target: &str) -> Result<(), RunDirError> {
    let err = |source| RunDirError::Write {
        path: link.to_path_buf(),
        source,
    };
    let dir = link.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".link-{}-{}",
        std::process::id(),
        link.file_name().and_then(|n| n.to_str()).unwrap_or("link")
    ));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).map_err(err)?;
    fs::rename(&tmp, link).map_err(err)?;
    Ok(())
}

/// Run lifecycle, as recorded in `meta.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Running,
    Completed,
    Failed,
    Stopped,
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Stopped => "stopped",
        }
    }
}

/// A run folder.
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// Allocate the next free `vNNNN` folder under `runs_dir/experiment`.
    /// `create_dir` is atomic, so concurrent runs never share a folder: a
    /// process that loses the race simply takes the next number.
    pub fn allocate(runs_dir: &Path, experiment: &str) -> Result<RunDir, RunDirError> {
        let parent = runs_dir.join(experiment);
        fs::create_dir_all(&parent).map_err(|source| RunDirError::Create {
            parent: parent.clone(),
            source,
        })?;
        let mut next = Self::highest_version(&parent) + 1;
        loop {
            let root = parent.join(format!("v{next:04}"));
            match fs::create_dir(&root) {
                Ok(()) => {
                    let dir = RunDir { root };
                    // Best effort: a stale `latest` must not fail the run.
                    let _ = relink(&parent.join("latest"), &format!("v{next:04}"));
                    return Ok(dir);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => next += 1,
                Err(source) => return Err(RunDirError::Create { parent, source }),
            }
        }
    }

    fn highest_version(parent: &Path) -> u32 {
        fs::read_dir(parent)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_prefix('v')?.parse::<u32>().ok())
            .max()
            .unwrap_or(0)
    }

    /// Use `root` as the run folder, creating it if needed (sweep trials).
    pub fn at(root: &Path) -> Result<RunDir, RunDirError> {
        fs::create_dir_all(root).map_err(|source| RunDirError::Create {
            parent: root.to_path_buf(),
            source,
        })?;
        Ok(RunDir { root: root.to_path_buf() })
    }

    /// An existing run folder (for `--resume` and `runner eval`).
    pub fn open(root: &Path) -> Result<RunDir, RunDirError> {
        let dir = RunDir { root: root.to_path_buf() };
        if !dir.resolved_config().is_file() {
            return Err(RunDirError::NotARun {
                path: root.to_path_buf(),
                reason: "it has no config.resolved.toml".into(),
            });
        }
        Ok(dir)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn source_dir(&self) -> PathBuf {
        self.root.join("source")
    }
    pub fn resolved_config(&self) -> PathBuf {
        self.root.join("config.resolved.toml")
    }
    pub fn overrides(&self) -> PathBuf {
        self.root.join("overrides.json")
    }
    pub fn meta(&self) -> PathBuf {
        self.root.join("meta.json")
    }
    pub fn metrics_csv(&self) -> PathBuf {
        self.root.join("metrics.csv")
    }
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }
    pub fn report_dir(&self) -> PathBuf {
        self.root.join("report")
    }
    pub fn log_file(&self) -> PathBuf {
        self.root.join("run.log")
    }

    pub fn write(&self, path: &Path, bytes: &[u8]) -> Result<(), RunDirError> {
        write_atomic(path, bytes)
    }

    pub fn read_meta(&self) -> Result<Meta, RunDirError> {
        let path = self.meta();
        let text = fs::read_to_string(&path).map_err(|source| RunDirError::Read {
            path: path.clone(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| RunDirError::NotARun {
            path: self.root.clone(),
            reason: format!("meta.json is not readable: {e}"),
        })
    }

    pub fn write_meta(&self, meta: &Meta) -> Result<(), RunDirError> {
        let text = serde_json::to_string_pretty(meta).unwrap_or_default();
        write_atomic(&self.meta(), text.as_bytes())
    }
}

/// Facts about a run, rewritten atomically as it progresses.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub experiment: String,
    pub runner_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitInfo>,
    pub backend: String,
    pub device: String,
    pub threads: usize,
    pub seed: u64,
    pub dataset: serde_json::Value,
    pub command: Vec<String>,
    pub cwd: PathBuf,
    pub hostname: String,
    pub pid: u32,
    pub start_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    pub status: Status,
    /// Why the run ended when it did not complete (or how it stopped early).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default)]
    pub epochs_completed: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_epoch: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_accuracy: Option<f64>,
    /// How many times `--resume` continued this run.
    #[serde(default)]
    pub resumes: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GitInfo {
    pub commit: String,
    pub dirty: bool,
}

/// The commit and dirty flag of the git checkout around `dir`, if any.
pub fn git_info(dir: &Path) -> Option<GitInfo> {
    let run = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let commit = run(&["rev-parse", "HEAD"])?;
    let dirty = run(&["status", "--porcelain", "--untracked-files=no"]).map(|s| !s.is_empty()).unwrap_or(false);
    Some(GitInfo { commit, dirty })
}

/// Now, as an RFC 3339 timestamp in UTC.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_allocated_in_order_and_latest_follows() {
        let tmp = tempfile::tempdir().unwrap();
        let a = RunDir::allocate(tmp.path(), "exp").unwrap();
        let b = RunDir::allocate(tmp.path(), "exp").unwrap();
        assert!(a.root().ends_with("exp/v0001"));
        assert!(b.root().ends_with("exp/v0002"));
        let latest = fs::read_link(tmp.path().join("exp/latest")).unwrap();
        assert_eq!(latest, PathBuf::from("v0002"));
    }

    #[test]
    fn concurrent_allocation_never_shares_a_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs: Vec<PathBuf> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..16)
                .map(|_| s.spawn(|| RunDir::allocate(tmp.path(), "exp").unwrap().root().to_path_buf()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let unique: std::collections::BTreeSet<_> = dirs.iter().collect();
        assert_eq!(unique.len(), 16);
    }

    #[test]
    fn atomic_write_replaces_content() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("x/metrics.csv");
        write_atomic(&p, b"a").unwrap();
        write_atomic(&p, b"bb").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"bb");
        let leftovers: Vec<_> = fs::read_dir(p.parent().unwrap()).unwrap().flatten().collect();
        assert_eq!(leftovers.len(), 1, "no temp files left behind");
    }
}
