//! What a Slurm array task checks before it runs its trial: the sweep's
//! `max_hours`. The Slurm launcher submits every trial at once, so the
//! budget is kept where a trial starts: a task that starts after the
//! sweep's `max_hours` have run out (counted from its creation, as
//! locally) runs nothing, and a trial that ran before may still finish.

use std::path::Path;

use super::folder::{open, SweepDir};
use super::propose::unchosen_name;

/// Why the trial in `dir` (a trial folder, or a TPE trial's unchosen
/// `trial-NNN`) must not start now: its Slurm sweep's `max_hours` have run
/// out and it never ran. `None`: run it (a local sweep's scheduler keeps
/// the budget itself).
pub fn out_of_time(dir: &Path) -> Option<String> {
    let sweep_dir = dir.parent()?;
    let root = SweepDir {
        root: sweep_dir.to_path_buf(),
    };
    if root.read_meta().ok()?.launcher != "slurm" {
        return None;
    }
    let s = open(sweep_dir).ok()?;
    let hours = s.out_of_time()?;
    // A TPE task's line names `trial-NNN` even after the task chose the
    // trial's folder (a requeued task): the trial that ran is there.
    let name = dir.file_name()?.to_string_lossy();
    let ran = s
        .trials
        .iter()
        .find(|t| t.folder_name() == name || unchosen_name(t.index) == name)
        .is_some_and(|t| t.has_run(sweep_dir));
    if ran {
        return None;
    }
    Some(format!(
        "max_hours = {hours} has run out since the sweep started: {name} is not started (`runner sweep --resume {} --set sweep.max_hours=H` gives it more time)",
        sweep_dir.display()
    ))
}
