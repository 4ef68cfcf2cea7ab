//! Submitting a sweep's trials to Slurm as job arrays: the trial list, the
//! batch script, and `sbatch` with Ctrl-C held until the answer is recorded.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::error::SweepError;
use super::folder::Sweep;
use super::propose::unchosen_name;
use super::slurm::{self, Slurm};
use crate::plan::SlurmPlan;
use crate::signals::Signals;
use crate::vocab::HalvingVariant;

/// Submit the trials `todo` (by index) with the `#SBATCH` `settings`.
/// trials.txt lists every trial of the sweep: its folder, or for a TPE
/// trial not chosen yet `trial-NNN`, which its task claims when it starts
/// ([`claim`](super::claim)).
pub(super) fn submit(s: &Sweep, settings: &SlurmPlan, todo: &[usize]) -> Result<(), SweepError> {
    let runner_bin = std::env::current_exe().map_err(SweepError::RunnerBinary)?;
    let root = std::fs::canonicalize(&s.dir.root).unwrap_or_else(|_| s.dir.root.clone());
    let chosen: BTreeMap<usize, String> = s
        .trials
        .iter()
        .map(|t| (t.index, t.folder_name()))
        .collect();
    let total = s.meta.trials.max(chosen.keys().last().map_or(0, |i| i + 1));
    let dirs: Vec<PathBuf> = (0..total)
        .map(|i| match chosen.get(&i) {
            Some(name) => root.join(name),
            None => root.join(unchosen_name(i)),
        })
        .collect();
    slurm::write_trials_file(&s.dir.root, &dirs)?;
    let job_name = slurm::job_name(&s.plan.name);
    // A promotion sweep's tasks are its workers (see `worker`).
    let worker = s
        .sweep
        .early_stop
        .is_some_and(|e| e.variant == HalvingVariant::Promotion);
    let script = slurm::write_script(settings, &root, &runner_bin, &job_name, worker)?;
    let client = Slurm::new(&s.dir.root);
    // Ctrl-C must not land between sbatch queueing an array and jobs.json
    // recording it: hold the signal until the answer is written down, then
    // take back what this call submitted.
    let held = Signals::hold();
    let recorded = || slurm::read_jobs(&s.dir.root).unwrap_or_default();
    let earlier = recorded().len();
    let jobs = client
        .submit_until(&script, todo, settings.max_parallel, &|| held.requested())
        .map_err(|source| {
            // The arrays that went in before the failure are in jobs.json.
            let submitted: usize = recorded()
                .iter()
                .skip(earlier)
                .map(|j| j.trials.len())
                .sum();
            SweepError::NotSubmitted {
                source,
                count: todo.len().saturating_sub(submitted),
                dir: s.dir.root.clone(),
            }
        })?;
    let ids: Vec<&str> = jobs.iter().map(|j| j.job_id.as_str()).collect();
    if held.requested() {
        let cancelled = client.cancel(&jobs);
        return Err(match cancelled {
            Ok(()) if jobs.is_empty() => SweepError::InterruptedBeforeSubmit,
            Ok(()) => SweepError::InterruptedSubmit {
                jobs: ids.join(", "),
                dir: s.dir.root.clone(),
            },
            Err(cause) => SweepError::InterruptedUncancelled {
                jobs: ids.join(", "),
                jobs_file: slurm::SlurmPaths::new(&s.dir.root).jobs_file(),
                dir: s.dir.root.clone(),
                cause,
            },
        });
    }
    let at_once = match settings.max_parallel {
        Some(n) if n > 0 => format!(", {n} at a time"),
        _ => String::new(),
    };
    crate::outln!(
        "Submitted {} trial(s) to Slurm as job {} (array {}{at_once})",
        todo.len(),
        ids.join(", "),
        slurm::compact_ranges(todo)
    );
    Ok(())
}
