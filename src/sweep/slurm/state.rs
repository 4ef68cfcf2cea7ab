//! Task states, and the parsers of `squeue`, `scontrol`, `sacct` and `sbatch` output.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::array::parse_array_spec;
use super::DEFAULT_MAX_ARRAY_SIZE;

/// What Slurm says about one array task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TaskState {
    Pending,
    Running,
    Completed,
    /// A non-zero exit; killed by signal N reads as 128 + N; -1 when unknown.
    Failed {
        exit_code: i32,
    },
    Timeout,
    OutOfMemory,
    NodeFail,
    Cancelled,
    Preempted,
    /// Slurm no longer knows the task (aged out of squeue and scontrol, no
    /// accounting): the trial's meta.json is the only word.
    Gone,
}

impl TaskState {
    /// From a Slurm state name (`RUNNING`, `CANCELLED by 0`, `OUT_OF_MEMORY`...)
    /// and, for failures, the exit code.
    pub fn from_slurm(state: &str, exit_code: Option<i32>) -> TaskState {
        let name = state
            .split_whitespace()
            .next()
            .unwrap_or("")
            .trim_end_matches('+');
        match name.to_ascii_uppercase().as_str() {
            "PENDING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "RESV_DEL_HOLD"
            | "CONFIGURING" => TaskState::Pending,
            "RUNNING" | "COMPLETING" | "SUSPENDED" | "STOPPED" | "SIGNALING" | "STAGE_OUT"
            | "RESIZING" | "POWER_UP_NODE" | "UPDATE_DB" => TaskState::Running,
            "COMPLETED" => TaskState::Completed,
            "FAILED" | "SPECIAL_EXIT" => TaskState::Failed {
                exit_code: exit_code.unwrap_or(-1),
            },
            "TIMEOUT" | "DEADLINE" => TaskState::Timeout,
            "OUT_OF_MEMORY" => TaskState::OutOfMemory,
            "NODE_FAIL" | "BOOT_FAIL" => TaskState::NodeFail,
            "CANCELLED" | "REVOKED" => TaskState::Cancelled,
            "PREEMPTED" => TaskState::Preempted,
            // A state this code does not know yet: keep watching; once it ages
            // out the trial's meta.json decides.
            _ => TaskState::Pending,
        }
    }

    /// Pending or running: Slurm may still change it.
    pub fn is_active(&self) -> bool {
        matches!(self, TaskState::Pending | TaskState::Running)
    }

    /// A short lowercase label for tables: `pending`, `failed`, `out_of_memory`...
    pub fn label(&self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Running => "running",
            TaskState::Completed => "completed",
            TaskState::Failed { .. } => "failed",
            TaskState::Timeout => "timeout",
            TaskState::OutOfMemory => "out_of_memory",
            TaskState::NodeFail => "node_fail",
            TaskState::Cancelled => "cancelled",
            TaskState::Preempted => "preempted",
            TaskState::Gone => "gone",
        }
    }

    /// One sentence for the journal and the summary.
    pub fn explain(&self) -> String {
        match self {
            TaskState::Pending => "waiting in the Slurm queue".into(),
            TaskState::Running => "running under Slurm".into(),
            TaskState::Completed => "the Slurm task ended with exit code 0".into(),
            TaskState::Failed { exit_code } if *exit_code < 0 => {
                "the Slurm task failed (exit code unknown)".into()
            }
            TaskState::Failed { exit_code } if *exit_code > 128 => format!(
                "the Slurm task failed with exit code {exit_code} (killed by signal {})",
                exit_code - 128
            ),
            TaskState::Failed { exit_code } => {
                format!("the Slurm task failed with exit code {exit_code}")
            }
            TaskState::Timeout => {
                "the Slurm time limit was reached (TIMEOUT); resume it, with `--set sweep.launcher.time=...` for a longer limit"
                    .into()
            }
            TaskState::OutOfMemory => {
                "killed for using more memory than requested (OUT_OF_MEMORY); resume it with `--set sweep.launcher.mem=...`"
                    .into()
            }
            TaskState::NodeFail => "the node running it failed (NODE_FAIL); resume to rerun".into(),
            TaskState::Cancelled => "cancelled (scancel, or by an administrator)".into(),
            TaskState::Preempted => "preempted by a higher-priority job; resume to rerun".into(),
            TaskState::Gone => {
                "no longer known to Slurm (aged out); the trial's meta.json tells".into()
            }
        }
    }
}

/// `3:0` -> 3; `0:9` (killed by signal 9) -> 137.
fn parse_exit_code(text: &str) -> Option<i32> {
    let (code, signal) = match text.split_once(':') {
        Some((c, s)) => (c.trim().parse::<i32>().ok()?, s.trim().parse::<i32>().ok()?),
        None => (text.trim().parse::<i32>().ok()?, 0),
    };
    Some(if code == 0 && signal > 0 {
        128 + signal
    } else {
        code
    })
}

/// Split `jobid_task` / `jobid_[a-b%n]` into the job id and its task ids.
fn split_array_id(id: &str) -> Option<(&str, Vec<usize>)> {
    let (job, tasks) = id.trim().split_once('_')?;
    Some((job, parse_array_spec(tasks)?))
}

/// Task states keyed by (array job id, array task id).
pub type TaskStates = BTreeMap<(String, usize), TaskState>;

/// `squeue -h -r -t all -o '%i|%K|%T|%r'` lines -> (job id, task id) -> state.
/// `FAILED` here has no exit code yet (squeue does not know it).
pub fn parse_squeue(output: &str) -> TaskStates {
    let mut out = BTreeMap::new();
    for line in output.lines() {
        let mut fields = line.split('|');
        let (Some(id), _, Some(state)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let Some((job, tasks)) = split_array_id(id) else {
            continue;
        };
        let state = TaskState::from_slurm(state, None);
        for task in tasks {
            out.insert((job.to_string(), task), state);
        }
    }
    out
}

/// `scontrol -o show job ID` lines (one per array task or pending range).
pub fn parse_scontrol_jobs(output: &str) -> TaskStates {
    let mut out = BTreeMap::new();
    for line in output.lines() {
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        };
        let (Some(job), Some(tasks), Some(state)) =
            (field("ArrayJobId"), field("ArrayTaskId"), field("JobState"))
        else {
            continue;
        };
        let Some(tasks) = parse_array_spec(tasks) else {
            continue;
        };
        let state = TaskState::from_slurm(state, field("ExitCode").and_then(parse_exit_code));
        for task in tasks {
            out.insert((job.to_string(), task), state);
        }
    }
    out
}

/// `sacct -n -P -X -o JobID,State,ExitCode` lines.
pub fn parse_sacct(output: &str) -> TaskStates {
    let mut out = BTreeMap::new();
    for line in output.lines() {
        let mut fields = line.split('|');
        let (Some(id), Some(state), exit) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let Some((job, tasks)) = split_array_id(id) else {
            continue;
        };
        let state = TaskState::from_slurm(state, exit.and_then(parse_exit_code));
        for task in tasks {
            out.insert((job.to_string(), task), state);
        }
    }
    out
}

/// `sbatch --parsable` prints `jobid` or `jobid;cluster`.
pub fn parse_parsable(stdout: &str) -> Option<(String, Option<String>)> {
    let line = stdout
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())?;
    let (job, cluster) = match line.split_once(';') {
        Some((j, c)) => (j.trim(), Some(c.trim()).filter(|c| !c.is_empty())),
        None => (line, None),
    };
    if job.is_empty() || !job.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((job.to_string(), cluster.map(str::to_string)))
}

/// `scontrol show config` -> `MaxArraySize`, `AccountingStorageType`.
pub(super) fn parse_config(output: &str) -> ClusterFacts {
    let mut facts = ClusterFacts {
        max_array_size: DEFAULT_MAX_ARRAY_SIZE,
        accounting: None,
    };
    for line in output.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match key.trim() {
            "MaxArraySize" => {
                if let Ok(n) = value.trim().parse() {
                    facts.max_array_size = n;
                }
            }
            "AccountingStorageType" => {
                facts.accounting = Some(!value.trim().ends_with("/none"));
            }
            _ => {}
        }
    }
    facts
}

#[derive(Debug, Clone, Copy)]
pub(super) struct ClusterFacts {
    pub(super) max_array_size: usize,
    /// `None`: the config did not say.
    pub(super) accounting: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsable_output() {
        assert_eq!(parse_parsable("123\n"), Some(("123".into(), None)));
        assert_eq!(
            parse_parsable("4567;gpu-cluster\n"),
            Some(("4567".into(), Some("gpu-cluster".into())))
        );
        assert_eq!(
            parse_parsable("note: something\n89\n"),
            Some(("89".into(), None))
        );
        assert_eq!(parse_parsable("Submitted batch job 12\n"), None);
        assert_eq!(parse_parsable(""), None);
    }

    #[test]
    fn squeue_lines_with_tasks_and_pending_ranges() {
        let states = parse_squeue(
            "123_4|4|RUNNING|None\n\
             123_[5-9%2]|5-9%2|PENDING|JobArrayTaskLimit\n\
             123_2|2|FAILED|NonZeroExitCode\n\
             CLUSTER: other\n\
             124_0|0|COMPLETING|None\n",
        );
        assert_eq!(states[&("123".into(), 4)], TaskState::Running);
        for t in 5..=9 {
            assert_eq!(states[&("123".into(), t)], TaskState::Pending);
        }
        assert_eq!(
            states[&("123".into(), 2)],
            TaskState::Failed { exit_code: -1 }
        );
        assert_eq!(states[&("124".into(), 0)], TaskState::Running);
        assert_eq!(states.len(), 8);
    }

    #[test]
    fn state_names_and_exit_codes() {
        assert_eq!(
            TaskState::from_slurm("CANCELLED by 0", None),
            TaskState::Cancelled
        );
        assert_eq!(
            TaskState::from_slurm("OUT_OF_MEMORY", None),
            TaskState::OutOfMemory
        );
        assert_eq!(TaskState::from_slurm("TIMEOUT", None), TaskState::Timeout);
        assert_eq!(
            TaskState::from_slurm("NODE_FAIL", None),
            TaskState::NodeFail
        );
        assert_eq!(
            TaskState::from_slurm("PREEMPTED", None),
            TaskState::Preempted
        );
        assert_eq!(TaskState::from_slurm("REQUEUED", None), TaskState::Pending);
        assert_eq!(parse_exit_code("3:0"), Some(3));
        assert_eq!(parse_exit_code("0:9"), Some(137));
        assert_eq!(parse_exit_code("x"), None);
        assert!(TaskState::Failed { exit_code: 3 }
            .explain()
            .contains("exit code 3"));
        assert!(TaskState::Failed { exit_code: 137 }
            .explain()
            .contains("signal 9"));
        assert!(TaskState::OutOfMemory.explain().contains("mem"));
        assert!(TaskState::Gone.explain().contains("meta.json"));
        let json = serde_json::to_string(&TaskState::Failed { exit_code: 3 }).unwrap();
        assert_eq!(json, r#"{"state":"failed","exit_code":3}"#);
    }
}
