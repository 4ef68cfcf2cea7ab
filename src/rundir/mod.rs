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

use crate::process::{output_within, Finished};

pub mod describe;

/// The resolved config of a run: the file that makes a folder a run folder.
pub const RESOLVED_CONFIG: &str = "config.resolved.toml";
/// What makes a folder a sweep folder: where the sweep came from.
pub const SWEEP_META: &str = "sweep.json";
/// The folder of an experiment's sweeps: `runs/<name>/sweeps/sNNNN`.
pub const SWEEPS: &str = "sweeps";
/// Where run folders go unless `runtime.runs_dir` says otherwise (the
/// default that config/spec.rs gives it; config sits above this module).
pub const DEFAULT_RUNS_DIR: &str = "runs";

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

impl RunDirError {
    /// Whether the path itself cannot be written, whatever is retried: a
    /// folder in its place, a file where a folder should be, no permission,
    /// a read-only file system. A path the user named is then theirs to
    /// change (exit code 2), unlike a full disk or a failing one (1).
    pub fn is_unwritable_path(&self) -> bool {
        use io::ErrorKind::*;
        matches!(
            self,
            RunDirError::Write { source, .. } | RunDirError::Create { source, .. }
                if matches!(
                    source.kind(),
                    NotADirectory | IsADirectory | PermissionDenied | ReadOnlyFilesystem
                )
        )
    }
}

/// Where `create_dir_all(dir)` failed because a file stands where one of
/// `dir`'s folders should be (the OS says only "File exists"): that file.
fn file_in_the_way(dir: &Path) -> Option<io::Error> {
    let file = dir.ancestors().find(|a| a.exists())?;
    (!file.is_dir()).then(|| {
        io::Error::new(
            io::ErrorKind::NotADirectory,
            format!("{} is a file, not a folder", file.display()),
        )
    })
}

/// tempfile's error names the temporary file ("No such file or directory
/// (os error 2) at path \"/x/.tmp-WKcgWJ\""), a name the user never gave:
/// keep the reason only.
fn without_temp_name(e: io::Error) -> io::Error {
    match e.to_string().split_once(" at path \"") {
        Some((reason, _)) => io::Error::new(e.kind(), reason.to_string()),
        None => e,
    }
}

/// Whether [`write_atomic`] could write the file `path`, asked before the
/// work that makes it, so that a path that cannot be written fails at
/// once: a folder in its place, a file where a folder should be, no
/// permission, a read-only file system, each as [`RunDirError::Write`]
/// ([`RunDirError::is_unwritable_path`]). Nothing is created.
pub fn check_writable_file(path: &Path) -> Result<(), RunDirError> {
    if path.is_dir() {
        return Err(RunDirError::Write {
            path: path.to_path_buf(),
            source: io::Error::from_raw_os_error(libc::EISDIR),
        });
    }
    probe_folder(path.parent().unwrap_or(Path::new(".")), path)
}

/// As [`check_writable_file`], for a folder that files are to be written
/// into (made if it is not there).
pub fn check_writable_folder(dir: &Path) -> Result<(), RunDirError> {
    probe_folder(dir, dir)
}

/// Whether files can be made in `dir`, or in the nearest folder above it
/// that exists (where its missing folders would be made), by making an
/// unnamed temporary file there; errors name `path`.
fn probe_folder(dir: &Path, path: &Path) -> Result<(), RunDirError> {
    let err = |source| RunDirError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = match dir.as_os_str().is_empty() {
        true => Path::new("."),
        false => dir,
    };
    if let Some(file) = file_in_the_way(dir) {
        return Err(err(file));
    }
    let existing = dir
        .ancestors()
        .find(|a| a.is_dir())
        .unwrap_or(Path::new("."));
    tempfile::tempfile_in(existing)
        .map(drop)
        .map_err(|e| err(without_temp_name(e)))
}

/// Write a file so that readers see either the old or the new content, never
/// a torn one: write a temp file in the same folder, fsync, rename.
///
/// The file gets the mode a plain `File::create` would give it: that of the
/// file it replaces, or else 0666 less the umask. (A temp file's own mode is
/// 0600, which would hide every run from the rest of a team sharing `runs/`.)
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RunDirError> {
    let err = |source| RunDirError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| err(file_in_the_way(dir).unwrap_or(e)))?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".tmp-");
    #[cfg(unix)]
    let replaced = fs::metadata(path).ok().map(|m| m.permissions());
    #[cfg(unix)]
    builder.permissions({
        use std::os::unix::fs::PermissionsExt;
        fs::Permissions::from_mode(0o666)
    });
    // A temp file's errors name its path, a name the user never gave.
    let tmp_err = |e| err(without_temp_name(e));
    let mut tmp = builder.tempfile_in(dir).map_err(tmp_err)?;
    // The umask applies to the mode a file is created with, not to a set one.
    #[cfg(unix)]
    if let Some(mode) = replaced {
        tmp.as_file().set_permissions(mode).map_err(tmp_err)?;
    }
    tmp.write_all(bytes).map_err(tmp_err)?;
    tmp.as_file().sync_all().map_err(tmp_err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    // The rename, and a folder that create_dir_all just made, are only
    // durable once the folders that hold them are synced.
    sync_dir(dir).map_err(err)?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent).map_err(err)?;
    }
    Ok(())
}

/// fsync a folder, making the creation, rename or removal of its entries
/// durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    fs::File::open(dir)?.sync_all()
}

/// Prefixes of the temporary names used by [`write_atomic`] and [`relink`].
const TEMP_PREFIXES: [&str; 2] = [".tmp-", ".link-"];

/// Remove what a killed writer left behind in `dir` and the folders below
/// it: the temporary files of [`write_atomic`] and [`relink`]. Only for a
/// folder this process owns (a run it holds the lock of). Returns how many
/// were removed.
pub fn remove_stale_temps(dir: &Path) -> usize {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| !e.file_type().is_dir())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| TEMP_PREFIXES.iter().any(|p| n.starts_with(p)))
        })
        .filter(|e| fs::remove_file(e.path()).is_ok())
        .count()
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
    sync_dir(dir).map_err(err)?;
    Ok(())
}

/// Create the next free `<prefix>NNNN` folder under `parent` and point
/// `parent/latest` at it. `create_dir` is atomic, so concurrent callers
/// never share a folder: one that loses the race takes the next number.
pub fn allocate_versioned(parent: &Path, prefix: &str) -> Result<PathBuf, RunDirError> {
    fs::create_dir_all(parent).map_err(|source| RunDirError::Create {
        parent: parent.to_path_buf(),
        source: file_in_the_way(parent).unwrap_or(source),
    })?;
    let highest = fs::read_dir(parent)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix(prefix)?
                .parse::<u32>()
                .ok()
        })
        .max()
        .unwrap_or(0);
    let mut next = highest + 1;
    loop {
        let name = format!("{prefix}{next:04}");
        let root = parent.join(&name);
        match fs::create_dir(&root) {
            Ok(()) => {
                // Best effort: a stale `latest` must not fail the run.
                let _ = write_latest(parent, &name);
                return Ok(root);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => next += 1,
            Err(source) => {
                return Err(RunDirError::Create {
                    parent: parent.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// Hold an exclusive lock on `path` while the returned file lives; `None`
/// when another process holds it.
pub fn try_lock(path: &Path) -> Result<Option<fs::File>, RunDirError> {
    flock(path, libc::LOCK_EX | libc::LOCK_NB)
}

/// [`try_lock`], tried again every 50 ms for up to `wait`: a process that
/// was just killed (a sweep trial dies with its killed sweep) can hold its
/// lock for a moment after its parent is gone.
pub fn try_lock_within(
    path: &Path,
    wait: std::time::Duration,
) -> Result<Option<fs::File>, RunDirError> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        if let Some(f) = try_lock(path)? {
            return Ok(Some(f));
        }
        if std::time::Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Hold an exclusive lock on `path` while the returned file lives, waiting
/// for another process that holds it (for a step of milliseconds).
pub fn lock(path: &Path) -> Result<fs::File, RunDirError> {
    flock(path, libc::LOCK_EX)?.ok_or_else(|| RunDirError::Write {
        path: path.to_path_buf(),
        source: std::io::Error::last_os_error(),
    })
}

/// Whether a process holds the lock at `path` ([`try_lock`]), probed
/// read-only with a shared lock that is let go at once: `Some(false)` when
/// there is no lock file, `None` when the file cannot be opened (a folder
/// this user may only read, say) or the filesystem refuses the probe.
pub fn is_locked(path: &Path) -> Option<bool> {
    use std::os::fd::AsRawFd;
    let f = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(false),
        Err(_) => return None,
    };
    // SAFETY: flock on a valid open descriptor.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0 {
        return Some(false);
    }
    // Held elsewhere; any other failure (no locks on this filesystem)
    // tells nothing.
    (std::io::Error::last_os_error().raw_os_error() == Some(libc::EWOULDBLOCK)).then_some(true)
}

/// Write this process into the lock file `f` it holds ([`try_lock`]):
/// `<pid> <host>`, for [`lock_holder`]. Best effort: the lock works
/// without it.
pub fn record_holder(f: &fs::File) {
    use std::os::unix::fs::FileExt;
    if f.set_len(0).is_ok() {
        let line = format!("{} {}\n", std::process::id(), hostname());
        let _ = f.write_all_at(line.as_bytes(), 0);
    }
}

/// The process a lock file names ([`record_holder`]): its pid and host.
/// Whether it still holds the lock is [`is_locked`]'s to say.
pub fn lock_holder(path: &Path) -> Option<(u32, String)> {
    let text = fs::read_to_string(path).ok()?;
    let (pid, host) = text.trim().split_once(' ')?;
    Some((pid.parse().ok()?, host.to_string()))
}

fn flock(path: &Path, how: libc::c_int) -> Result<Option<fs::File>, RunDirError> {
    use std::os::fd::AsRawFd;
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|source| RunDirError::Write {
            path: path.to_path_buf(),
            source,
        })?;
    // SAFETY: flock on a valid open descriptor.
    let rc = unsafe { libc::flock(f.as_raw_fd(), how) };
    Ok((rc == 0).then_some(f))
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
        let root = allocate_versioned(&runs_dir.join(experiment), "v")?;
        Ok(RunDir { root })
    }

    /// The folder `runs_dir/experiment/id` of a run named by `runner run
    /// --id`, created if needed, with `latest` pointing at it; the folder
    /// may already hold that run.
    pub fn named(runs_dir: &Path, experiment: &str, id: &str) -> Result<RunDir, RunDirError> {
        let parent = runs_dir.join(experiment);
        let run = RunDir::at(&parent.join(id))?;
        // Best effort: a stale `latest` must not fail the run.
        let _ = write_latest(&parent, id);
        Ok(run)
    }

    /// Use `root` as the run folder, creating it if needed (sweep trials).
    pub fn at(root: &Path) -> Result<RunDir, RunDirError> {
        fs::create_dir_all(root).map_err(|source| RunDirError::Create {
            parent: root.to_path_buf(),
            source,
        })?;
        Ok(RunDir {
            root: root.to_path_buf(),
        })
    }

    /// A folder that may or may not hold a run yet (reading only).
    pub fn at_existing(root: &Path) -> RunDir {
        RunDir {
            root: root.to_path_buf(),
        }
    }

    /// An existing run folder (for `--resume` and `runner eval`).
    pub fn open(root: &Path) -> Result<RunDir, RunDirError> {
        let dir = RunDir {
            root: root.to_path_buf(),
        };
        if !dir.resolved_config().is_file() {
            return Err(RunDirError::NotARun {
                path: root.to_path_buf(),
                reason: describe::describe(root).not_a_run(root),
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
        self.root.join(RESOLVED_CONFIG)
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
    /// The checkpoint (or link) `name` under `checkpoints/`: one of the
    /// link names below, or an `epoch-NNNN` folder.
    pub fn checkpoint(&self, name: &str) -> PathBuf {
        self.checkpoints().join(name)
    }
    pub fn report_dir(&self) -> PathBuf {
        self.root.join("report")
    }
    pub fn log_file(&self) -> PathBuf {
        self.root.join("run.log")
    }
    /// The lock its training process holds ([`try_lock`]): one process per
    /// run folder.
    pub fn lock(&self) -> PathBuf {
        self.root.join(".lock")
    }

    /// Whether `meta` (this folder's) says `running` although no process
    /// runs the folder: it was killed (SIGKILL, out of memory, a power
    /// loss) before it could record its end, and `--resume` continues it.
    /// Judged only for a run started on this machine, by its lock, since a
    /// network filesystem may not share locks between machines.
    pub fn was_killed(&self, meta: &Meta) -> bool {
        meta.status == Status::Running
            && meta.hostname == hostname()
            && is_locked(&self.lock()) == Some(false)
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

    /// Write meta.json, its `run_seconds` brought up to now.
    pub fn write_meta(&self, meta: &Meta) -> Result<(), RunDirError> {
        let mut meta = meta.clone();
        meta.run_seconds = meta.seconds_until(&now_rfc3339());
        let text = serde_json::to_string_pretty(&meta).unwrap_or_default();
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
    /// The GPU settings a GPU run used (fusion, convolution kernels, kernel cache).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<String>,
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
    /// When this session of the run began: `start_time`, or its latest
    /// `--resume`. Absent in an older runner's meta.json.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_start: Option<String>,
    /// The seconds the run's earlier sessions ran, each to its last write
    /// of meta.json (an interrupted session's time up to its last epoch).
    #[serde(default, skip_serializing_if = "is_zero_seconds")]
    pub earlier_seconds: f64,
    /// The seconds the run has run, over all its sessions, as of this
    /// write: the time between a stop and its `--resume` is not in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_seconds: Option<f64>,
    /// Images left out as unreadable under `data.on_bad_image = "skip"`
    /// (by the last session of the run).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped_images: usize,
    /// The weight of each class in the training loss (`train.class_weight`),
    /// by class name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_weights: Option<std::collections::BTreeMap<String, f64>>,
}

impl Meta {
    /// The seconds the run has run by `now` (RFC 3339): its earlier
    /// sessions, and this one from its start.
    pub fn seconds_until(&self, now: &str) -> Option<f64> {
        let start = self.session_start.as_deref().unwrap_or(&self.start_time);
        Some(self.earlier_seconds + seconds_between(start, now)?.max(0.0))
    }

    /// Begin a new session (`--resume`): what the run has run so far is
    /// kept in `earlier_seconds`. A meta.json without `run_seconds` (an
    /// older runner's) counts its span up to its end, if it has one.
    pub fn begin_session(&mut self, now: String) {
        self.earlier_seconds = self.run_seconds.unwrap_or_else(|| {
            self.end_time
                .as_deref()
                .and_then(|end| seconds_between(&self.start_time, end))
                .unwrap_or(0.0)
        });
        self.session_start = Some(now);
    }

    /// The class names the run trained on, in label order, from the dataset
    /// fingerprint; `None` when meta.json names none.
    pub fn class_names(&self) -> Option<Vec<String>> {
        self.dataset
            .get("classes")
            .and_then(|c| serde_json::from_value::<Vec<String>>(c.clone()).ok())
            .filter(|c| !c.is_empty())
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GitInfo {
    pub commit: String,
    pub dirty: bool,
}

/// How long provenance waits for one `git` call before leaving it out.
const GIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The commit and dirty flag of the git checkout around `dir`, if any.
///
/// Provenance must never hang or run someone else's program: each call has
/// a timeout, and the repository's `core.fsmonitor` and hooks are switched
/// off, as are optional index locks.
pub fn git_info(dir: &Path) -> Option<GitInfo> {
    let run = |args: &[&str]| -> Option<String> {
        let mut cmd = std::process::Command::new("git");
        cmd.args([
            "-c",
            "core.fsmonitor=false",
            "-c",
            "core.hooksPath=/dev/null",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_OPTIONAL_LOCKS", "0")
        .env("GIT_TERMINAL_PROMPT", "0");
        match output_within(&mut cmd, GIT_TIMEOUT) {
            Ok(Finished::Exited { status, stdout, .. }) if status.success() => {
                Some(String::from_utf8_lossy(&stdout).trim().to_string())
            }
            _ => None,
        }
    };
    let commit = run(&["rev-parse", "HEAD"])?;
    let dirty = run(&["status", "--porcelain", "--untracked-files=no"])
        .map(|s| !s.is_empty())
        .unwrap_or(false);
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

// The checkpoint layout every reader of a run folder shares (train writes
// it, see train::checkpoint; predict, export and `model.init_from` read it):
// `checkpoints/epoch-NNNN/` folders holding the weights in `MODEL_FILE`, and
// links to them named below.

/// The weights file of a checkpoint folder.
pub const MODEL_FILE: &str = "model.mpk";
/// The newest checkpoint.
pub const LAST: &str = "last";
/// The checkpoint with the best monitored metric.
pub const BEST: &str = "best";
/// The epoch early stopping would restore (kept alive until training ends).
pub const RESTORE: &str = "restore";
/// The weights the run ended with and was evaluated on.
pub const FINAL: &str = "final";

/// The seconds from one RFC 3339 time to another.
pub fn seconds_between(start: &str, end: &str) -> Option<f64> {
    let fmt = &time::format_description::well_known::Rfc3339;
    let a = time::OffsetDateTime::parse(start, fmt).ok()?;
    let b = time::OffsetDateTime::parse(end, fmt).ok()?;
    Some((b - a).as_seconds_f64())
}

fn is_zero_seconds(s: &f64) -> bool {
    *s == 0.0
}

/// The file naming the newest run (or sweep) folder of its parent.
pub const LATEST: &str = "latest";

/// Point `parent/latest` at `name`. It is a one-line file, not a symlink:
/// TensorBoard follows directory links and would list every run twice.
fn write_latest(parent: &Path, name: &str) -> Result<(), RunDirError> {
    let path = parent.join(LATEST);
    if path.is_symlink() {
        // Written by an older runner.
        let _ = fs::remove_file(&path);
    }
    write_atomic(&path, format!("{name}\n").as_bytes())
}

/// The file in a sweep folder naming its best finished trial.
pub const BEST_TRIAL: &str = "best";

/// `path` with each `latest` and `best` in it that is a one-line file read
/// as the folder it names: `runs/x/sweeps/latest/best` becomes
/// `runs/x/sweeps/s0003/trial-004-1a2b3c`. Other paths, an older runner's
/// `latest` symlink included, are unchanged.
pub fn resolve_pointers(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        out.push(c);
        let pointer =
            matches!(c, std::path::Component::Normal(n) if n == LATEST || n == BEST_TRIAL);
        if !(pointer && out.is_file()) {
            continue;
        }
        if let Ok(text) = fs::read_to_string(&out) {
            let name = text.trim();
            if !name.is_empty() && !name.contains('/') && name != "." && name != ".." {
                out.set_file_name(name);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// /proc takes no new files: the temporary file cannot be made. The
    /// error names the file asked for, not the temporary one.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_file_that_cannot_be_made_is_named_without_the_temporary_name() {
        let err = write_atomic(Path::new("/proc/runner-test.csv"), b"x")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("cannot write /proc/runner-test.csv: "),
            "{err}"
        );
        assert!(!err.contains(".tmp-") && !err.contains("at path"), "{err}");
    }

    /// The checks before the work: what write_atomic would refuse, they
    /// refuse, naming the path asked for; what it would write, they pass,
    /// creating nothing.
    #[test]
    fn writable_paths_are_checked_without_making_anything() {
        let tmp = tempfile::tempdir().unwrap();
        let notes = tmp.path().join("notes.txt");
        fs::write(&notes, "mine").unwrap();
        let new = tmp.path().join("a/b/c.csv");
        check_writable_file(&new).unwrap();
        check_writable_folder(&tmp.path().join("a/b")).unwrap();
        check_writable_file(Path::new("c.csv")).unwrap();
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1, "made nothing");
        let under = notes.join("c.csv");
        let err = check_writable_file(&under).unwrap_err();
        assert!(err.is_unwritable_path());
        assert_eq!(
            err.to_string(),
            format!(
                "cannot write {}: {} is a file, not a folder",
                under.display(),
                notes.display()
            )
        );
        let err = check_writable_folder(&notes).unwrap_err();
        assert!(err.is_unwritable_path(), "{err}");
        let err = check_writable_file(tmp.path()).unwrap_err();
        assert!(err.is_unwritable_path(), "{err}");
        assert!(
            err.to_string().ends_with("Is a directory (os error 21)"),
            "{err}"
        );
        #[cfg(target_os = "linux")]
        {
            let proc = Path::new("/proc/runner-test.csv");
            let err = check_writable_file(proc).unwrap_err().to_string();
            let wrote = write_atomic(proc, b"x").unwrap_err().to_string();
            assert_eq!(err, wrote);
        }
        assert_eq!(fs::read_to_string(&notes).unwrap(), "mine");
    }

    #[test]
    fn the_default_runs_folder_is_the_configs() {
        let spec = crate::config::spec::RuntimeSpec::default();
        assert_eq!(spec.runs_dir, Path::new(DEFAULT_RUNS_DIR));
    }

    #[test]
    fn is_locked_sees_a_held_lock_and_takes_none() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".lock");
        assert_eq!(is_locked(&p), Some(false));
        assert!(!p.exists(), "the probe creates no lock file");
        let held = try_lock(&p).unwrap().unwrap();
        assert_eq!(is_locked(&p), Some(true));
        drop(held);
        assert_eq!(is_locked(&p), Some(false));
        // The probe let go: the lock can be taken after it.
        let held = try_lock(&p).unwrap().unwrap();
        assert_eq!(lock_holder(&p), None);
        record_holder(&held);
        record_holder(&held);
        assert_eq!(lock_holder(&p), Some((std::process::id(), hostname())));
        assert_eq!(is_locked(&p), Some(true));
    }

    #[test]
    fn a_running_run_without_its_process_was_killed() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::at(dir.path()).unwrap();
        let meta = |status: &str, host: &str| -> Meta {
            serde_json::from_str(&format!(
                r#"{{"experiment":"t","runner_version":"0","backend":"flex","device":"cpu","threads":1,"seed":1,"dataset":null,"command":[],"cwd":"/","hostname":"{host}","pid":1,"start_time":"x","status":"{status}"}}"#
            ))
            .unwrap()
        };
        let here = hostname();
        assert!(run.was_killed(&meta("running", &here)));
        // Its process holds the lock while it runs.
        let held = try_lock(&run.lock()).unwrap().unwrap();
        assert!(!run.was_killed(&meta("running", &here)));
        drop(held);
        assert!(run.was_killed(&meta("running", &here)));
        // A run that recorded its end, or one started on another machine,
        // whose lock this machine may not see.
        assert!(!run.was_killed(&meta("stopped", &here)));
        assert!(!run.was_killed(&meta("completed", &here)));
        assert!(!run.was_killed(&meta("running", "another-host")));
    }

    #[test]
    fn git_provenance_runs_no_fsmonitor_or_hook_of_the_repository() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path();
        let git = |args: &[&str]| {
            let ok = std::process::Command::new("git")
                .args([
                    "-c",
                    "user.name=t",
                    "-c",
                    "user.email=t@t",
                    "-c",
                    "commit.gpgsign=false",
                ])
                .args(args)
                .current_dir(repo)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .expect("git is installed")
                .success();
            assert!(ok, "git {args:?}");
        };
        git(&["init", "-q"]);
        std::fs::write(repo.join("a.txt"), "1").expect("write");
        git(&["add", "a.txt"]);
        git(&["commit", "-q", "-m", "one"]);
        // A repository that runs a program on `git status`.
        let marker = repo.join("fsmonitor-ran");
        let script = repo.join("monitor.sh");
        std::fs::write(
            &script,
            format!("#!/bin/sh\ntouch '{}'\nexit 1\n", marker.display()),
        )
        .expect("write");
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(&script)
            .status()
            .expect("chmod");
        git(&["config", "core.fsmonitor", &script.display().to_string()]);
        std::fs::write(repo.join("a.txt"), "2").expect("write");
        let info = git_info(repo).expect("a repository");
        assert_eq!(info.commit.len(), 40);
        assert!(info.dirty);
        assert!(!marker.exists(), "git_info ran the repository's fsmonitor");
        // The same repository does run it for a plain `git status`.
        git(&["status", "--porcelain"]);
        assert!(marker.exists(), "the fixture's fsmonitor is real");
    }

    #[test]
    fn versions_are_allocated_in_order_and_latest_follows() {
        let tmp = tempfile::tempdir().unwrap();
        let a = RunDir::allocate(tmp.path(), "exp").unwrap();
        let b = RunDir::allocate(tmp.path(), "exp").unwrap();
        assert!(a.root().ends_with("exp/v0001"));
        assert!(b.root().ends_with("exp/v0002"));
        let latest = tmp.path().join("exp/latest");
        assert_eq!(fs::read_to_string(&latest).unwrap(), "v0002\n");
        assert_eq!(resolve_pointers(&latest), tmp.path().join("exp/v0002"));
        // Not a directory link: TensorBoard would list every run twice.
        assert!(!latest.is_symlink());
        assert_eq!(
            resolve_pointers(&tmp.path().join("exp/v0001")),
            tmp.path().join("exp/v0001")
        );
    }

    #[test]
    fn pointers_resolve_anywhere_in_a_path() {
        let tmp = tempfile::tempdir().unwrap();
        let sweeps = tmp.path().join("exp/sweeps");
        fs::create_dir_all(sweeps.join("s0002/trial-004-abc/checkpoints")).unwrap();
        fs::write(sweeps.join(LATEST), "s0002\n").unwrap();
        fs::write(sweeps.join("s0002").join(BEST_TRIAL), "trial-004-abc\n").unwrap();
        let trial = sweeps.join("s0002/trial-004-abc");
        assert_eq!(resolve_pointers(&sweeps.join("latest/best")), trial);
        assert_eq!(
            resolve_pointers(&sweeps.join("latest/best/checkpoints")),
            trial.join("checkpoints")
        );
        assert_eq!(
            resolve_pointers(&sweeps.join("latest/trial-004-abc")),
            trial
        );
        // A folder named `best` (a checkpoint) is a folder, not a pointer.
        let ckpt = trial.join("checkpoints/best");
        fs::create_dir_all(&ckpt).unwrap();
        assert_eq!(
            resolve_pointers(&sweeps.join("latest/best/checkpoints/best")),
            ckpt
        );
        // A pointer that names no single folder is left as it is.
        fs::write(sweeps.join(LATEST), "../elsewhere\n").unwrap();
        assert_eq!(
            resolve_pointers(&sweeps.join("latest")),
            sweeps.join("latest")
        );
    }

    #[test]
    fn concurrent_allocation_never_shares_a_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs: Vec<PathBuf> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..16)
                .map(|_| {
                    s.spawn(|| {
                        RunDir::allocate(tmp.path(), "exp")
                            .unwrap()
                            .root()
                            .to_path_buf()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let unique: std::collections::BTreeSet<_> = dirs.iter().collect();
        assert_eq!(unique.len(), 16);
    }

    #[test]
    fn a_runs_time_leaves_out_the_pause_before_a_resume() {
        let mut meta: Meta = serde_json::from_str(
            r#"{"experiment":"t","runner_version":"0","backend":"flex","device":"cpu",
            "threads":1,"seed":1,"dataset":null,"command":[],"cwd":"/","hostname":"h",
            "pid":1,"start_time":"2026-01-01T10:00:00Z","status":"running"}"#,
        )
        .unwrap();
        // An older runner's meta.json: its span.
        assert_eq!(meta.seconds_until("2026-01-01T10:00:30Z"), Some(30.0));
        meta.run_seconds = meta.seconds_until("2026-01-01T10:00:30Z");
        // Stopped at 10:00:30, resumed at 11:00:00, ended at 11:00:10.
        meta.begin_session("2026-01-01T11:00:00Z".into());
        assert_eq!(meta.earlier_seconds, 30.0);
        assert_eq!(meta.seconds_until("2026-01-01T11:00:10Z"), Some(40.0));
        // Without run_seconds, an ended run's span is what came before.
        meta.run_seconds = None;
        meta.end_time = Some("2026-01-01T11:00:10Z".into());
        meta.begin_session("2026-01-02T00:00:00Z".into());
        assert_eq!(meta.earlier_seconds, 3610.0);
        // A write records the time so far.
        let tmp = tempfile::tempdir().unwrap();
        let run = RunDir::at(tmp.path()).unwrap();
        run.write_meta(&meta).unwrap();
        let back = run.read_meta().unwrap();
        assert!(back.run_seconds.unwrap() > 3610.0);
    }

    #[test]
    fn a_file_where_a_folder_should_be_is_named_and_unwritable() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("notes.txt");
        fs::write(&file, "mine").unwrap();
        let err = write_atomic(&file.join("a/b.csv"), b"x").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "cannot write {}: {} is a file, not a folder",
                file.join("a/b.csv").display(),
                file.display()
            )
        );
        assert!(err.is_unwritable_path());
        let err = write_atomic(tmp.path(), b"x").unwrap_err();
        assert!(err.is_unwritable_path(), "{err}");
        assert_eq!(fs::read_to_string(&file).unwrap(), "mine");
        // A full or failing disk is not the path's fault.
        let full = RunDirError::Write {
            path: file.clone(),
            source: io::Error::from(io::ErrorKind::StorageFull),
        };
        assert!(!full.is_unwritable_path());
    }

    #[test]
    fn atomic_write_replaces_content() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("x/metrics.csv");
        write_atomic(&p, b"a").unwrap();
        write_atomic(&p, b"bb").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"bb");
        let leftovers: Vec<_> = fs::read_dir(p.parent().unwrap())
            .unwrap()
            .flatten()
            .collect();
        assert_eq!(leftovers.len(), 1, "no temp files left behind");
    }

    #[cfg(unix)]
    #[test]
    fn atomic_write_gives_the_mode_a_plain_create_gives() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let tmp = tempfile::tempdir().unwrap();
        let plain = tmp.path().join("plain");
        fs::File::create(&plain).unwrap();
        let p = tmp.path().join("meta.json");
        write_atomic(&p, b"{}").unwrap();
        // 0666 less the umask (0644 under the usual 022), not a temp
        // file's 0600.
        assert_eq!(mode(&p), mode(&plain));
        // A replaced file keeps the mode its owner gave it.
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&p, b"{ }").unwrap();
        assert_eq!(mode(&p), 0o640);
        assert_eq!(fs::read(&p).unwrap(), b"{ }");
    }
}
