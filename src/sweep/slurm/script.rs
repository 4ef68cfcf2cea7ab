//! The batch script: rendered from `[sweep.launcher]`, one array task per trial.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::files::SlurmPaths;
use super::{SlurmError, OFFSET_VAR};
use crate::plan::SlurmPlan;
use crate::rundir::write_atomic;

/// Render the batch script ([`render_script`]) and write it to
/// `<sweep>/slurm/sweep.sbatch`, creating `slurm/logs/` (Slurm does not create
/// the folder of `--output`, and a task whose log folder is missing fails
/// without a trace).
pub fn write_script(
    slurm: &SlurmPlan,
    sweep_dir: &Path,
    runner_bin: &Path,
    job_name: &str,
    worker: bool,
) -> Result<PathBuf, SlurmError> {
    let paths = SlurmPaths::new(sweep_dir);
    let logs = paths.logs_dir();
    std::fs::create_dir_all(&logs).map_err(|source| SlurmError::Io { path: logs, source })?;
    let path = paths.script();
    write_atomic(
        &path,
        render_script(slurm, sweep_dir, runner_bin, job_name, worker).as_bytes(),
    )?;
    Ok(path)
}

/// The batch script for a sweep: `#SBATCH` resources from `slurm`, then a body
/// that maps `SLURM_ARRAY_TASK_ID + $RUNNER_TRIAL_OFFSET` to a line of
/// `<sweep>/slurm/trials.txt` and whose last line `exec`s
/// `<runner_bin> run --trial "$TRIAL_DIR"` (so `--signal=B:USR1@N`, sent to the
/// batch shell, reaches `runner` itself); with `worker` (a promotion sweep)
/// `--worker` follows, and the task then runs the sweep's promotions.
///
/// The `--array` range is not in the script: [`Slurm::submit`](super::Slurm::submit) passes it on
/// the `sbatch` command line, so a resubmission can name any subset of trials.
pub fn render_script(
    slurm: &SlurmPlan,
    sweep_dir: &Path,
    runner_bin: &Path,
    job_name: &str,
    worker: bool,
) -> String {
    let paths = SlurmPaths::new(sweep_dir);
    let logs = paths.logs_dir();
    let mut s = String::new();
    let mut line = |text: String| {
        s.push_str(&text);
        s.push('\n');
    };
    line("#!/bin/bash".into());
    line(format!(
        "# Written by runner for the sweep {}: one array task per trial.",
        one_line(&sweep_dir.display().to_string())
    ));
    line(format!(
        "# sbatch gets --array=<trials> and --export=ALL,{OFFSET_VAR}=<first trial> on its command line."
    ));
    let mut opt =
        |name: &str, value: &str| line(format!("#SBATCH --{name}={}", sbatch_value(value)));
    opt("job-name", &job_name_of(job_name));
    opt("output", &format!("{}/%A_%a.out", logs.display()));
    opt("error", &format!("{}/%A_%a.err", logs.display()));
    // A task that Slurm requeues (a preemption, a node failure) writes to
    // the same files again: appending keeps the first attempt's log.
    opt("open-mode", "append");
    if let Some(cpus) = slurm.cpus_per_task {
        opt("cpus-per-task", &cpus.to_string());
    }
    if let Some(mem) = &slurm.mem {
        opt("mem", mem);
    }
    if let Some(time) = &slurm.time {
        opt("time", time);
    }
    if let Some(partition) = &slurm.partition {
        opt("partition", partition);
    }
    if let Some(gres) = &slurm.gres {
        opt("gres", gres);
    }
    if let Some(account) = &slurm.account {
        opt("account", account);
    }
    opt("signal", &format!("B:USR1@{}", slurm.signal_seconds));
    for extra in &slurm.extra {
        let extra = one_line(extra);
        let extra = extra.trim();
        if extra.starts_with("#SBATCH") {
            line(extra.to_string());
        } else {
            line(format!("#SBATCH {extra}"));
        }
    }
    let trials_file = shell_quote(&paths.trials_file().display().to_string());
    let runner = shell_quote(&runner_bin.display().to_string());
    let worker = if worker { " --worker" } else { "" };
    // Writing into a String cannot fail.
    let _ = write!(
        s,
        r#"
set -euo pipefail
trials_file={trials_file}
task_id=${{SLURM_ARRAY_TASK_ID:?not started as a Slurm array task}}
trial_index=$(( task_id + ${{{OFFSET_VAR}:-0}} ))
TRIAL_DIR=$(sed -n "$(( trial_index + 1 ))p" "$trials_file")
if [ -z "$TRIAL_DIR" ]; then
    echo "runner: no trial $trial_index in $trials_file" >&2
    exit 2
fi
echo "runner: job ${{SLURM_ARRAY_JOB_ID:-?}}_$task_id on ${{SLURMD_NODENAME:-?}} runs trial $trial_index: $TRIAL_DIR"
cd "${{SLURM_SUBMIT_DIR:-$PWD}}"
exec {runner} run --trial "$TRIAL_DIR"{worker}
"#
    );
    s
}

/// The Slurm job name of the sweep of experiment `name`.
pub fn job_name(name: &str) -> String {
    format!("runner-{name}")
}

/// The `#SBATCH` lines of a sweep's batch script, for `--dry-run`; the
/// sweep folder, not made yet, is written `<sweep>`.
pub fn sbatch_lines(slurm: &SlurmPlan, name: &str) -> Vec<String> {
    let script = render_script(
        slurm,
        Path::new("<sweep>"),
        Path::new("runner"),
        &job_name(name),
        false,
    );
    script
        .lines()
        .filter(|l| l.starts_with("#SBATCH"))
        .map(String::from)
        .collect()
}

/// Control characters (a line break would end an `#SBATCH` line) become spaces.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Slurm job names: no whitespace or quotes (they show in `squeue` columns).
fn job_name_of(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() || c == '"' || c == '\'' {
                '-'
            } else {
                c
            }
        })
        .collect();
    if cleaned.is_empty() {
        "runner".into()
    } else {
        cleaned
    }
}

/// An `#SBATCH` value: double-quoted (which sbatch strips) when it has spaces.
fn sbatch_value(value: &str) -> String {
    let value = one_line(value);
    if value.contains(char::is_whitespace) {
        format!("\"{}\"", value.replace('"', ""))
    } else {
        value
    }
}

/// Single-quote `text` for bash.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;
    use crate::sweep::slurm::files::write_trials_file;

    fn spec() -> SlurmPlan {
        SlurmPlan {
            partition: None,
            time: None,
            cpus_per_task: None,
            mem: None,
            gres: None,
            account: None,
            max_parallel: None,
            signal_seconds: 120,
            extra: Vec::new(),
        }
    }

    #[test]
    fn script_with_every_option() {
        let spec = SlurmPlan {
            partition: Some("gpu".into()),
            time: Some("02:00:00".into()),
            cpus_per_task: Some(8),
            mem: Some("32G".into()),
            gres: Some("gpu:1".into()),
            account: Some("proj42".into()),
            max_parallel: Some(4),
            signal_seconds: 300,
            extra: vec![
                "--constraint=a100".into(),
                "#SBATCH --qos=long".into(),
                "--comment=two\nlines".into(),
            ],
        };
        let script = render_script(
            &spec,
            Path::new("/scratch/runs/cnn/sweeps/lr-grid"),
            Path::new("/opt/runner/bin/runner"),
            "cnn lr-grid",
            false,
        );
        insta::assert_snapshot!(script);
    }

    #[test]
    fn script_with_defaults_quotes_odd_paths() {
        let script = render_script(
            &spec(),
            Path::new("/data/my runs/it's/sweeps/s1"),
            Path::new("/opt/run ner"),
            "s1",
            false,
        );
        insta::assert_snapshot!(script);
    }

    #[test]
    fn a_promotion_sweeps_tasks_run_as_workers() {
        let render = |worker| render_script(&spec(), Path::new("/s"), Path::new("/r"), "s", worker);
        let exec = |s: &str| s.lines().last().unwrap_or_default().to_string();
        assert_eq!(exec(&render(false)), "exec '/r' run --trial \"$TRIAL_DIR\"");
        assert_eq!(
            exec(&render(true)),
            "exec '/r' run --trial \"$TRIAL_DIR\" --worker"
        );
    }

    #[test]
    fn script_body_runs_the_trial_of_task_plus_offset() {
        // Execute the real script body with bash: task 1 + offset 2 -> trial 3.
        let tmp = tempfile::tempdir().unwrap();
        let sweep = tmp.path().join("sweep dir");
        let trials: Vec<PathBuf> = (0..5)
            .map(|i| sweep.join(format!("trial-{i:03}")))
            .collect();
        write_trials_file(&sweep, &trials).unwrap();
        let runner = tmp.path().join("fake-runner");
        std::fs::write(
            &runner,
            "#!/bin/bash\necho \"args: $*\"\necho \"cwd: $PWD\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&runner, std::fs::Permissions::from_mode(0o755)).unwrap();
        let script = write_script(&spec(), &sweep, &runner, "t", false).unwrap();
        assert!(SlurmPaths::new(&sweep).logs_dir().is_dir());

        let run = |task: &str, offset: Option<&str>| {
            let mut cmd = Command::new("bash");
            cmd.arg(&script)
                .env("SLURM_ARRAY_TASK_ID", task)
                .env("SLURM_SUBMIT_DIR", tmp.path())
                .env_remove(OFFSET_VAR);
            if let Some(offset) = offset {
                cmd.env(OFFSET_VAR, offset);
            }
            cmd.output().unwrap()
        };
        let out = run("1", Some("2"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{out:?}");
        assert!(
            stdout.contains(&format!("args: run --trial {}\n", trials[3].display())),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!("cwd: {}\n", tmp.path().display())),
            "{stdout}"
        );

        let out = run("4", None);
        assert!(String::from_utf8_lossy(&out.stdout)
            .contains(&format!("--trial {}\n", trials[4].display())));

        // Past the last line: a clear error, not runner with an empty path.
        let out = run("3", Some("2"));
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("no trial 5 in"));
    }
}
