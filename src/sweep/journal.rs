//! The append-only journal of trial states (`journal.jsonl`): one JSON line
//! per state change, fsynced, never rewritten. The latest line of a trial is
//! its state; a torn last line (a crash mid-write) is ignored. Early
//! stopping's rung decisions are lines too (with the trial's state at the
//! time, `running`), in the order they were made, so a resumed sweep
//! restores them and decides as an uninterrupted one would.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::asha::RungRecord;
use crate::rundir::{now_rfc3339, RunDirError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrialState {
    Pending,
    Running,
    Done,
    Failed,
    /// Stopped by a signal or a time limit; resumes from its checkpoint.
    Stopped,
    /// Stopped by early stopping at a rung; never resumed.
    Pruned,
    /// Waiting at a rung for a promotion (promotion-based early stopping):
    /// the sweep resumes it from its checkpoint if it is promoted, and
    /// prunes it if the sweep ends first.
    Paused,
}

impl TrialState {
    pub fn as_str(&self) -> &'static str {
        match self {
            TrialState::Pending => "pending",
            TrialState::Running => "running",
            TrialState::Done => "done",
            TrialState::Failed => "failed",
            TrialState::Stopped => "stopped",
            TrialState::Pruned => "pruned",
            TrialState::Paused => "paused",
        }
    }

    /// Done, pruned or failed: a trial that the sweep runs no further
    /// unless asked to retry it.
    pub fn is_ended(&self) -> bool {
        matches!(
            self,
            TrialState::Done | TrialState::Pruned | TrialState::Failed
        )
    }

    /// The state as the ranked table, the plot and `runner compare` show
    /// it: `pruned@3` for a trial pruned (or paused) at the rung of epoch 3.
    pub fn label(&self, rung_epoch: Option<usize>) -> String {
        match rung_epoch {
            Some(e) => format!("{}@{e}", self.as_str()),
            None => self.as_str().to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub time: String,
    pub trial: usize,
    pub id: String,
    pub state: TrialState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The trial's values, on its first (pending) line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<BTreeMap<String, toml::Value>>,
    /// A rung decision of early stopping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rung: Option<RungRecord>,
    /// On a `pruned` line: the epochs the trial had completed at its rung.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<usize>,
}

impl Entry {
    pub fn new(trial: usize, id: &str, state: TrialState) -> Entry {
        Entry {
            time: now_rfc3339(),
            trial,
            id: id.to_string(),
            state,
            exit_code: None,
            message: None,
            params: None,
            rung: None,
            epoch: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Journal {
    path: PathBuf,
}

impl Journal {
    pub fn new(sweep_dir: &Path) -> Journal {
        Journal {
            path: sweep_dir.join("journal.jsonl"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The lock every process takes to decide rungs: read the decisions
    /// so far, decide, journal, release. On Slurm a trial decides its own
    /// rungs while a follower may decide them too; under the lock the
    /// second finds the first's record and decides nothing.
    pub fn rungs_lock(&self) -> PathBuf {
        self.path.with_file_name(".rungs.lock")
    }

    /// The journal's size in bytes (0 when there is none): it only grows,
    /// so an unchanged size means no new line.
    pub fn bytes(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    pub fn exists(&self) -> bool {
        self.path.is_file()
    }

    /// Append one line and make it durable before returning.
    pub fn append(&self, entry: &Entry) -> Result<(), RunDirError> {
        let err = |source| RunDirError::Write {
            path: self.path.clone(),
            source,
        };
        let mut line = serde_json::to_string(entry).unwrap_or_default();
        line.push('\n');
        // On Slurm, trials on other nodes append their rung decisions while
        // a follower appends states, and NFS has no atomic O_APPEND across
        // clients: every append holds a lock (best effort: a filesystem
        // without flock appends unlocked, as before).
        let _guard = crate::rundir::lock(&self.path.with_file_name(".journal.lock")).ok();
        // A crash mid-write leaves a line without its newline: end it first,
        // so this entry starts on a line of its own.
        if let Ok(bytes) = std::fs::read(&self.path) {
            if bytes.last().is_some_and(|b| *b != b'\n') {
                line.insert(0, '\n');
            }
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(err)?;
        f.write_all(line.as_bytes()).map_err(err)?;
        f.sync_data().map_err(err)?;
        Ok(())
    }

    /// Every readable line, in order.
    pub fn entries(&self) -> Vec<Entry> {
        std::fs::read_to_string(&self.path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Every rung decision, in the order it was made.
    pub fn rungs(&self) -> Vec<RungRecord> {
        self.entries().into_iter().filter_map(|e| e.rung).collect()
    }

    /// Every trial with its values (from its first line), by index.
    pub fn trials(&self) -> BTreeMap<usize, (String, BTreeMap<String, toml::Value>)> {
        let mut m = BTreeMap::new();
        for e in self.entries() {
            if let Some(p) = e.params {
                m.entry(e.trial).or_insert((e.id, p));
            }
        }
        m
    }

    /// The latest entry of each trial.
    pub fn latest(&self) -> BTreeMap<usize, Entry> {
        latest_of(self.entries())
    }
}

/// The latest of `entries` (in journal order) for each trial.
pub fn latest_of(entries: impl IntoIterator<Item = Entry>) -> BTreeMap<usize, Entry> {
    let mut m = BTreeMap::new();
    for e in entries {
        m.insert(e.trial, e);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_state_wins_and_a_torn_line_is_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        let j = Journal::new(tmp.path());
        j.append(&Entry::new(0, "aaa", TrialState::Pending))
            .unwrap();
        j.append(&Entry::new(1, "bbb", TrialState::Pending))
            .unwrap();
        j.append(&Entry::new(0, "aaa", TrialState::Running))
            .unwrap();
        j.append(&Entry::new(0, "aaa", TrialState::Done)).unwrap();
        let mut f = OpenOptions::new().append(true).open(j.path()).unwrap();
        f.write_all(b"{\"time\":\"x\",\"trial\":1,\"id\":\"bbb\",\"sta")
            .unwrap();
        let latest = j.latest();
        assert_eq!(latest[&0].state, TrialState::Done);
        assert_eq!(latest[&1].state, TrialState::Pending);
        assert_eq!(j.entries().len(), 4);
        // The next entry after a torn line is still read.
        j.append(&Entry::new(1, "bbb", TrialState::Failed)).unwrap();
        assert_eq!(j.latest()[&1].state, TrialState::Failed);
    }
}
