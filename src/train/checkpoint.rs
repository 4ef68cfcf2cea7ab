//! Checkpoints: one `epoch-NNNN/` folder per saved epoch (`model.mpk`, and
//! for resumable ones `optimizer.mpk` + `state.json`), and links `last`,
//! `best` and `restore` that point at one of them. Every file is written
//! atomically and a link only moves once its target is complete, so a run
//! killed at any moment leaves the links pointing at whole checkpoints.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use burn::tensor::backend::Backend;
use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

use crate::model::Net;
use crate::rundir::{relink, write_atomic, RunDirError};

#[derive(Debug, Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Io(#[from] RunDirError),
    #[error("cannot encode {what}: {message}")]
    Encode { what: String, message: String },
    #[error("checkpoint {} is unreadable: {message}", path.display())]
    Decode { path: PathBuf, message: String },
    #[error("no `{name}` checkpoint in {}", dir.display())]
    Missing { name: String, dir: PathBuf },
    #[error("--checkpoint takes a checkpoint name of the run (final, best, last or epoch-N), not the path `{0}`")]
    NotAName(String),
    #[error("{} has no `{name}` checkpoint{hint}; available: {available}", dir.display())]
    Unavailable {
        name: String,
        dir: PathBuf,
        hint: &'static str,
        available: String,
    },
}

/// Names of the links into the epoch folders, and the weights file
/// (defined beside the run folder's layout, which readers share).
pub use crate::rundir::{BEST, FINAL, LAST, MODEL_FILE, RESTORE};
/// What makes a checkpoint resumable besides its weights.
const OPTIMIZER_FILE: &str = "optimizer.mpk";
const STATE_FILE: &str = "state.json";

#[derive(Debug, Clone)]
pub struct Checkpoints {
    dir: PathBuf,
}

fn recorder() -> NamedMpkBytesRecorder<FullPrecisionSettings> {
    NamedMpkBytesRecorder::new()
}

impl Checkpoints {
    pub fn new(dir: PathBuf) -> Checkpoints {
        Checkpoints { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Folder for the checkpoint taken after `epochs_done` epochs.
    pub fn epoch_dir(&self, epochs_done: usize) -> PathBuf {
        self.dir.join(format!("epoch-{epochs_done:04}"))
    }

    pub fn save_model<B: Backend>(
        &self,
        epochs_done: usize,
        net: &Net<B>,
    ) -> Result<(), CheckpointError> {
        let bytes =
            Recorder::<B>::record(&recorder(), net.clone().into_record(), ()).map_err(|e| {
                CheckpointError::Encode {
                    what: "model weights".into(),
                    message: e.to_string(),
                }
            })?;
        write_atomic(&self.epoch_dir(epochs_done).join(MODEL_FILE), &bytes)?;
        Ok(())
    }

    /// Whether the checkpoint of `epochs_done` has its weights on disk.
    pub fn has_model(&self, epochs_done: usize) -> bool {
        self.epoch_dir(epochs_done).join(MODEL_FILE).exists()
    }

    /// Optimizer state and loop state, which make a checkpoint resumable.
    pub fn save_resume_state<S: Serialize>(
        &self,
        epochs_done: usize,
        optimizer: &[u8],
        state: &S,
    ) -> Result<(), CheckpointError> {
        let dir = self.epoch_dir(epochs_done);
        write_atomic(&dir.join(OPTIMIZER_FILE), optimizer)?;
        let json = serde_json::to_vec_pretty(state).map_err(|e| CheckpointError::Encode {
            what: "training state".into(),
            message: e.to_string(),
        })?;
        write_atomic(&dir.join(STATE_FILE), &json)?;
        Ok(())
    }

    /// Point link `name` at the checkpoint of `epochs_done`.
    pub fn link(&self, name: &str, epochs_done: usize) -> Result<(), CheckpointError> {
        let target = format!("epoch-{epochs_done:04}");
        relink(&self.dir.join(name), &target)?;
        Ok(())
    }

    pub fn unlink(&self, name: &str) {
        let _ = fs::remove_file(self.dir.join(name));
    }

    /// Which epoch a link points at.
    pub fn linked_epoch(&self, name: &str) -> Option<usize> {
        let target = fs::read_link(self.dir.join(name)).ok()?;
        target.to_str()?.strip_prefix("epoch-")?.parse().ok()
    }

    /// Epochs with a checkpoint folder on disk, ascending.
    pub fn saved_epochs(&self) -> Vec<usize> {
        let mut v: Vec<usize> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .filter_map(|e| e.file_name().to_str()?.strip_prefix("epoch-")?.parse().ok())
            .collect();
        v.sort_unstable();
        v
    }

    /// The `model.mpk` of a checkpoint named `final`, `best`, `last` or
    /// `epoch-N`; a path is refused, so nothing outside the run is read.
    pub fn model_file(&self, name: &str) -> Result<PathBuf, CheckpointError> {
        // A name, never a path: the report is written under eval/<name>, and a
        // path would read and write outside the run.
        let mut parts = Path::new(name).components();
        if !matches!(
            (parts.next(), parts.next()),
            (Some(std::path::Component::Normal(_)), None)
        ) {
            return Err(CheckpointError::NotAName(name.to_string()));
        }
        let dir = match name
            .strip_prefix("epoch-")
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(epoch) => self.epoch_dir(epoch),
            None => self.dir().join(name),
        };
        let file = dir.join(MODEL_FILE);
        if file.is_file() {
            return Ok(file);
        }
        let available: Vec<String> = [FINAL, BEST, LAST]
            .iter()
            .filter(|n| self.dir().join(n).join(MODEL_FILE).is_file())
            .map(|s| s.to_string())
            .chain(self.saved_epochs().iter().map(|e| format!("epoch-{e:04}")))
            .collect();
        let hint = if name == FINAL {
            " (the run did not finish; try `last`)"
        } else {
            ""
        };
        Err(CheckpointError::Unavailable {
            name: name.to_string(),
            dir: self.dir().to_path_buf(),
            hint,
            available: if available.is_empty() {
                "none".to_string()
            } else {
                available.join(", ")
            },
        })
    }

    /// Whether the checkpoint of `epoch` holds resume state.
    fn resumable(&self, epoch: usize) -> bool {
        let dir = self.epoch_dir(epoch);
        [MODEL_FILE, OPTIMIZER_FILE, STATE_FILE]
            .iter()
            .all(|f| dir.join(f).is_file())
    }

    /// Resumable checkpoints below `last` (all of them without one),
    /// newest first.
    fn older_resumable(&self, last: Option<usize>) -> impl Iterator<Item = usize> + '_ {
        self.saved_epochs()
            .into_iter()
            .rev()
            .filter(move |&e| last.is_none_or(|l| e < l) && self.resumable(e))
    }

    /// Epochs to resume from, best first: `last`, then the older resumable
    /// checkpoints, newest first (also when the `last` link is gone).
    pub fn resume_candidates(&self) -> Vec<usize> {
        let last = self.linked_epoch(LAST);
        last.into_iter().chain(self.older_resumable(last)).collect()
    }

    /// Delete every epoch folder that is neither linked, nor `last`'s
    /// fallback, nor in `keep`, and the resume state (optimizer, loop
    /// state) of every epoch but `last` and its fallback.
    pub fn prune(&self, keep: &BTreeSet<usize>) {
        let last = self.linked_epoch(LAST);
        // The newest resumable checkpoint below `last` keeps its resume
        // state, so that a `last` torn by a crash has one to fall back to.
        let fallback = last.and_then(|l| self.older_resumable(Some(l)).next());
        let linked: BTreeSet<usize> = [LAST, BEST, RESTORE, FINAL]
            .iter()
            .filter_map(|n| self.linked_epoch(n))
            .chain(fallback)
            .collect();
        for e in self.saved_epochs() {
            if !keep.contains(&e) && !linked.contains(&e) {
                let _ = fs::remove_dir_all(self.epoch_dir(e));
            } else if Some(e) != last && Some(e) != fallback {
                let _ = fs::remove_file(self.epoch_dir(e).join(OPTIMIZER_FILE));
                let _ = fs::remove_file(self.epoch_dir(e).join(STATE_FILE));
            }
        }
    }

    /// Load model weights saved at `epochs_done` into `net`.
    pub fn load_model<B: Backend>(
        &self,
        epochs_done: usize,
        net: Net<B>,
        device: &B::Device,
    ) -> Result<Net<B>, CheckpointError> {
        load_model_file(&self.epoch_dir(epochs_done).join(MODEL_FILE), net, device)
    }

    /// Loop state and optimizer bytes of the checkpoint of `epoch`.
    pub fn load_resume_state<S: DeserializeOwned>(
        &self,
        epoch: usize,
    ) -> Result<(S, Vec<u8>), CheckpointError> {
        let dir = self.epoch_dir(epoch);
        let read = |name: &str| {
            let path = dir.join(name);
            fs::read(&path).map_err(|e| CheckpointError::Decode {
                path: path.clone(),
                message: e.to_string(),
            })
        };
        let state_path = dir.join(STATE_FILE);
        let state: S =
            serde_json::from_slice(&read(STATE_FILE)?).map_err(|e| CheckpointError::Decode {
                path: state_path,
                message: e.to_string(),
            })?;
        Ok((state, read(OPTIMIZER_FILE)?))
    }
}

/// Load weights from a `model.mpk` file into `net` (same architecture).
pub fn load_model_file<B: Backend>(
    path: &Path,
    net: Net<B>,
    device: &B::Device,
) -> Result<Net<B>, CheckpointError> {
    let bytes = fs::read(path).map_err(|e| CheckpointError::Decode {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let record =
        Recorder::<B>::load(&recorder(), bytes, device).map_err(|e| CheckpointError::Decode {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    Ok(net.load_record(record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_pruning_keep_only_what_is_referenced() {
        let tmp = tempfile::tempdir().unwrap();
        let c = Checkpoints::new(tmp.path().join("checkpoints"));
        for e in 1..=5 {
            write_atomic(&c.epoch_dir(e).join("model.mpk"), b"x").unwrap();
        }
        c.link(LAST, 5).unwrap();
        c.link(BEST, 2).unwrap();
        assert_eq!(c.linked_epoch(LAST), Some(5));
        c.prune(&BTreeSet::from([4]));
        assert_eq!(c.saved_epochs(), vec![2, 4, 5]);
        c.link(LAST, 4).unwrap();
        c.prune(&BTreeSet::new());
        assert_eq!(c.saved_epochs(), vec![2, 4]);
    }

    fn save_resumable(c: &Checkpoints, e: usize) {
        for f in ["model.mpk", "optimizer.mpk", "state.json"] {
            write_atomic(&c.epoch_dir(e).join(f), b"x").unwrap();
        }
    }

    #[test]
    fn the_previous_resumable_checkpoint_is_kept_as_a_fallback() {
        let tmp = tempfile::tempdir().unwrap();
        let c = Checkpoints::new(tmp.path().join("checkpoints"));
        for e in 1..=3 {
            save_resumable(&c, e);
            c.link(LAST, e).unwrap();
            c.prune(&BTreeSet::new());
        }
        // Epoch 3 is `last`, epoch 2 its fallback; epoch 1 is gone.
        assert_eq!(c.saved_epochs(), vec![2, 3]);
        assert!(c.resumable(2) && c.resumable(3));
        assert_eq!(c.resume_candidates(), vec![3, 2]);
        // A `last` link lost in a crash: the newest whole one comes first.
        c.unlink(LAST);
        assert_eq!(c.resume_candidates(), vec![3, 2]);
        // A `last` that names a folder which never reached the disk.
        c.link(LAST, 4).unwrap();
        assert_eq!(c.resume_candidates(), vec![4, 3, 2]);
    }
}
