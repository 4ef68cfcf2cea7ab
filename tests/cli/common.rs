//! Shared helpers: the real `runner` binary, run from the repository root
//! with a clean environment, and tiny experiment files.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `runner` from the repository root, plain output, no RUNNER_* leaking in.
pub fn runner() -> Command {
    Command::from_std(runner_process())
}

/// The same as [`runner`], as a plain process, for tests that hold its pipes.
pub fn runner_process() -> std::process::Command {
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("runner"));
    runner_env(&mut cmd);
    cmd
}

/// `bash -c SCRIPT` with `runner`'s environment, the binary's path in `$0`:
/// for tests that set a limit first (`ulimit -f 200; exec "$0" run ...`).
pub fn runner_in_shell(script: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new("bash");
    cmd.arg("-c")
        .arg(script)
        .arg(assert_cmd::cargo::cargo_bin("runner"));
    runner_env(&mut cmd);
    cmd
}

/// [`runner`] bound by file permissions as any user is: as root, it runs
/// under `setpriv` without the capabilities that let root read and write
/// past them, so that a folder made unreadable (`chmod 000`) is.
pub fn runner_bound_by_permissions() -> Command {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return runner();
    }
    let mut cmd = std::process::Command::new("setpriv");
    let caps = "-dac_override,-dac_read_search";
    cmd.arg(format!("--inh-caps={caps}"))
        .arg(format!("--bounding-set={caps}"))
        .arg(assert_cmd::cargo::cargo_bin("runner"));
    runner_env(&mut cmd);
    Command::from_std(cmd)
}

/// The repository root as the working folder, plain output, no RUNNER_*
/// leaking in.
fn runner_env(cmd: &mut std::process::Command) {
    cmd.current_dir(root());
    for (k, _) in std::env::vars() {
        if k.starts_with("RUNNER_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("RUNNER_PLAIN", "1").env("NO_COLOR", "1");
}

/// `runner <command> <experiment> --runs-dir <runs>`, for more arguments.
pub fn runner_on(command: &str, experiment: &Path, runs: &Path) -> Command {
    let mut cmd = runner();
    cmd.arg(command).arg(experiment).arg("--runs-dir").arg(runs);
    cmd
}

pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Assert the process exited with `code`, showing its output when it did not.
pub fn assert_exit(out: &std::process::Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}\n{}",
        stdout(out),
        stderr(out)
    );
}

/// A small synthetic experiment that trains in about a second.
pub fn tiny_experiment(dir: &Path, name: &str, extra: &str) -> PathBuf {
    let text = format!(
        r#"[experiment]
name = "{name}"
seed = 3

[data]
source = "synthetic"
classes = 4
train_size = 96
validation_size = 32
test_size = 32

[augment]
rescale = "1/255"

[model]
input_shape = [12, 12, 3]
dropout = 0.1
layers = [
  {{ type = "conv2d", filters = 4, kernel = 3, padding = "same", activation = "relu" }},
  {{ type = "max_pool2d", pool = 2 }},
  {{ type = "flatten" }},
  {{ type = "dropout" }},
  {{ type = "dense", units = 4, activation = "softmax" }},
]

[optimizer]
type = "adam"
learning_rate = 0.01

[train]
epochs = 3
batch_size = 16
{extra}
"#
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write experiment");
    path
}

/// The folder name `runs/<experiment>/latest` (a one-line file) names.
pub fn read_latest(path: impl AsRef<Path>) -> std::io::Result<PathBuf> {
    Ok(PathBuf::from(std::fs::read_to_string(path)?.trim()))
}

/// The newest run folder of experiment `name` under `runs` (its `latest`).
pub fn run_dir(runs: &Path, name: &str) -> PathBuf {
    newest_run(runs, name).expect("latest file")
}

/// [`run_dir`], or `None` while its `latest` does not exist yet.
pub fn newest_run(runs: &Path, name: &str) -> Option<PathBuf> {
    let target = read_latest(runs.join(name).join("latest")).ok()?;
    Some(runs.join(name).join(target))
}

/// Waits, while `child` still runs, until the run folder that `locate`
/// finds has saved its `nth` epoch's `last` checkpoint (or a later one),
/// then returns that folder: the moment to kill or signal a run
/// mid-training. By the second checkpoint the first epoch's row is in
/// `metrics.csv`.
pub fn await_checkpoint(
    child: &mut std::process::Child,
    nth: u32,
    locate: impl Fn() -> Option<PathBuf>,
) -> PathBuf {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        if let Some(dir) = locate() {
            let epoch = std::fs::read_link(dir.join("checkpoints/last"))
                .ok()
                .and_then(|t| t.to_str()?.strip_prefix("epoch-")?.parse::<u32>().ok());
            if epoch.is_some_and(|e| e >= nth) {
                return dir;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint of epoch {nth} appeared"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its checkpoint of epoch {nth} was seen"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The newest sweep folder of experiment `name` under `runs`.
pub fn sweep_dir(runs: &Path, name: &str) -> PathBuf {
    let sweeps = runs.join(name).join("sweeps");
    sweeps.join(read_latest(sweeps.join("latest")).expect("latest sweep"))
}

/// `runner sweep --resume DIR` exits 0 with nothing left to run.
pub fn assert_resume_runs_nothing(dir: &Path) {
    let out = runner()
        .args(["sweep", "--resume"])
        .arg(dir)
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("0 trial(s) to run"),
        "{}",
        stdout(&out)
    );
}

/// A run folder's meta.json.
pub fn meta(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap()
}

/// The first column of metrics.csv: the epochs logged, in order.
pub fn csv_epochs(dir: &Path) -> Vec<usize> {
    let text = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect()
}

/// Every readable line of a sweep's journal.jsonl, in order.
pub fn journal(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("journal.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// (trial, epoch, decision) of every rung line, in journal order.
pub fn decisions(dir: &Path) -> Vec<(u64, u64, String)> {
    journal(dir)
        .iter()
        .filter_map(|e| {
            let r = e.get("rung")?;
            Some((
                r["trial"].as_u64()?,
                r["epoch"].as_u64()?,
                r["decision"].as_str()?.to_string(),
            ))
        })
        .collect()
}

/// The folder of trial `index` of the sweep in `sweep` (`trial-NNN-<id>`).
pub fn trial_dir(sweep: &Path, index: u64) -> PathBuf {
    find_trial(sweep, index).unwrap_or_else(|| panic!("no trial {index} in {}", sweep.display()))
}

/// [`trial_dir`], or `None` while it does not exist yet.
pub fn find_trial(sweep: &Path, index: u64) -> Option<PathBuf> {
    std::fs::read_dir(sweep)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("trial-{index:03}-")))
        })
}
