//! `runner sweep`: dry runs, bad axes, a full sweep with its summary and
//! HParams, failing trials, kill and resume, and `runner compare`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{
    assert_exit, root, runner, runner_on, stderr, stdout, sweep_dir, tiny_experiment,
};
use crate::python::{python_with, run_script};

fn journal(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("journal.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn states_of(dir: &Path, state: &str) -> Vec<u64> {
    let mut v: Vec<u64> = journal(dir)
        .iter()
        .filter(|e| e["state"] == state)
        .map(|e| e["trial"].as_u64().unwrap())
        .collect();
    v.sort();
    v
}

fn summary_rows(dir: &Path) -> Vec<Vec<String>> {
    let mut r = csv::Reader::from_path(dir.join("summary.csv")).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    let mut rows = vec![header];
    rows.extend(
        r.records()
            .map(|rec| rec.unwrap().iter().map(String::from).collect::<Vec<_>>()),
    );
    rows
}

#[test]
fn dry_runs_list_exactly_the_expected_trials() {
    for name in ["grid-2x3", "zip", "random"] {
        let out = runner()
            .args([
                "sweep",
                &format!("tests/fixtures/sweeps/{name}.toml"),
                "--dry-run",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        insta::assert_snapshot!(format!("dry-run-{name}"), stdout(&out));
    }
    // The same random sweep twice lists the same trials.
    let a = runner()
        .args(["sweep", "tests/fixtures/sweeps/random.toml", "--dry-run"])
        .output()
        .unwrap();
    let b = runner()
        .args(["sweep", "tests/fixtures/sweeps/random.toml", "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(a.stdout, b.stdout);
    assert!(
        !root().join("tests/fixtures/sweeps/runs").exists(),
        "a dry run creates nothing"
    );
}

#[test]
fn a_bad_axis_key_or_value_exits_2_naming_it() {
    let out = runner()
        .args(["sweep", "tests/fixtures/sweeps/bad-axis.toml", "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // Located at the axis in the file, as any key of the file is.
    assert!(
        stderr(&out).contains(
            "tests/fixtures/sweeps/bad-axis.toml:34:19: sweep axis model.dropuot = 0.1: \
             unknown key `dropuot` in `model`"
        ),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("did you mean `dropout`?"),
        "{}",
        stderr(&out)
    );
    let tmp = tempfile::tempdir().unwrap();
    let out = runner()
        .args([
            "sweep",
            "tests/fixtures/sweeps/bad-axis-value.toml",
            "--runs-dir",
        ])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("bad-axis-value.toml:34:19: sweep axis model.dropout = 1.5"),
        "{}",
        stderr(&out)
    );
    assert!(
        std::fs::read_dir(tmp.path()).unwrap().next().is_none(),
        "nothing was created or run"
    );
}

const GRID: &str = "[sweep]\nmetric = \"val_accuracy\"\nparallel = 2\n\n[sweep.grid]\n\"model.dropout\" = [0.0, 0.3]\n\"optimizer.learning_rate\" = [0.003, 0.03]\n";

#[test]
fn a_sweep_leaves_summary_trial_folders_plot_and_hparams() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(tmp.path(), "swept", GRID);
    let runs = tmp.path().join("runs");
    let out = runner_on("sweep", &exp, &runs).output().unwrap();
    assert_exit(&out, 0);
    let dir = sweep_dir(&runs, "swept");
    let rows = summary_rows(&dir);
    assert_eq!(rows.len(), 5, "a header and 4 trials: {rows:?}");
    assert_eq!(
        &rows[0][..5],
        [
            "trial",
            "id",
            "status",
            "model.dropout",
            "optimizer.learning_rate"
        ]
    );
    for (i, row) in rows[1..].iter().enumerate() {
        assert_eq!(row[0], i.to_string());
        assert_eq!(row[2], "done");
        let tdir = PathBuf::from(row.last().unwrap());
        for f in [
            "trial.toml",
            "params.json",
            "meta.json",
            "metrics.csv",
            "report/confusion_matrix.png",
            "checkpoints/final/model.mpk",
        ] {
            assert!(tdir.join(f).exists(), "{f} in {}", tdir.display());
        }
        assert!(tdir
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(&format!("trial-{i:03}-")));
    }
    assert!(dir.join("summary.png").is_file());
    // The ranked table marks the best trial.
    let text = stdout(&out);
    let table: Vec<&str> = text
        .lines()
        .skip_while(|l| !(l.contains("status") && l.contains("best val_accuracy")))
        .collect();
    assert!(table.len() >= 5 && table[1].starts_with('*'), "{text}");
    // The one-line file `best` names that trial (the best done trial of
    // summary.csv, the first of equal values), and a command that takes a
    // run folder takes `sweeps/latest/best`.
    let col = rows[0]
        .iter()
        .position(|c| c == "best_val_accuracy")
        .unwrap();
    let value = |r: &Vec<String>| r[col].parse::<f64>().unwrap();
    let best_row = rows[1..]
        .iter()
        .fold(None, |best: Option<&Vec<String>>, r| match best {
            Some(b) if value(b) >= value(r) => Some(b),
            _ => Some(r),
        })
        .unwrap();
    let best = Path::new(best_row.last().unwrap())
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    assert_eq!(
        std::fs::read_to_string(dir.join("best")).unwrap(),
        format!("{best}\n")
    );
    assert!(table[1].contains(&best), "{text}");
    let eval = runner()
        .arg("eval")
        .arg(runs.join("swept/sweeps/latest/best"))
        .output()
        .unwrap();
    assert!(eval.status.success(), "{}", stderr(&eval));
    assert!(
        stdout(&eval).contains(&format!("{best}/eval/final")),
        "{}",
        stdout(&eval)
    );

    // `runner compare` lines the trials up with only the keys that differ.
    let cmp = runner().arg("compare").arg(&dir).output().unwrap();
    assert!(cmp.status.success(), "{}", stderr(&cmp));
    let text = stdout(&cmp);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert!(
        lines[0].contains("model.dropout") && lines[0].contains("optimizer.learning_rate"),
        "{text}"
    );
    assert!(!lines[0].contains("train.epochs"), "{text}");
    assert!(
        lines[1].contains("trial-000-") && lines[1].contains("completed"),
        "{text}"
    );

    // TensorBoard: the hparams plugin sees every trial with its values and metrics.
    let Some(python) = python_with("tensorboard") else {
        return;
    };
    let out = run_script(&python, "read_events.py", &[dir.as_os_str()]);
    let events: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = events.to_string();
    assert!(
        text.contains("model.dropout") && text.contains("optimizer.learning_rate"),
        "{text}"
    );
    run_script(
        &python,
        "tb_server_check.py",
        &[
            dir.as_os_str(),
            "--hparams".as_ref(),
            "--expect-tags".as_ref(),
            "epoch_loss,epoch_accuracy".as_ref(),
        ],
    );
}

#[test]
fn a_failing_trial_is_reported_and_the_others_finish() {
    let tmp = tempfile::tempdir().unwrap();
    // Linear activations and SGD at 1e6 overflow to NaN (terminate_on_nan).
    let exp = tiny_experiment(
        tmp.path(),
        "onefails",
        "[sweep]\nparallel = 2\n[sweep.grid]\n\"optimizer.learning_rate\" = [0.01, 1e6, 0.05]\n",
    );
    let text = std::fs::read_to_string(&exp)
        .unwrap()
        .replace("activation = \"relu\"", "activation = \"linear\"")
        .replace("type = \"adam\"", "type = \"sgd\"");
    std::fs::write(&exp, text).unwrap();
    let runs = tmp.path().join("runs");
    let out = runner_on("sweep", &exp, &runs).output().unwrap();
    assert_exit(&out, 1);
    let dir = sweep_dir(&runs, "onefails");
    let rows = summary_rows(&dir);
    let status: Vec<&str> = rows[1..].iter().map(|r| r[2].as_str()).collect();
    assert_eq!(status, vec!["done", "failed", "done"]);
    // `best` never names a failed trial.
    let best = std::fs::read_to_string(dir.join("best")).unwrap();
    assert!(
        best.starts_with("trial-000-") || best.starts_with("trial-002-"),
        "{best}"
    );
    let msg_col = rows[0].iter().position(|c| c == "message").unwrap();
    assert!(rows[2][msg_col].contains("loss became"), "{:?}", rows[2]);
    let code_col = rows[0].iter().position(|c| c == "exit_code").unwrap();
    assert_eq!(rows[2][code_col], "1");
    assert!(stdout(&out).contains("failed"), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("1 of 3 trial(s) failed"),
        "{}",
        stderr(&out)
    );

    // --fail-fast stops at the first failure, leaving the rest pending.
    let out = runner()
        .arg("sweep")
        .arg(&exp)
        .args(["--runs-dir"])
        .arg(&runs)
        .args(["--fail-fast", "--parallel", "1"])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let dir = sweep_dir(&runs, "onefails");
    assert_eq!(states_of(&dir, "done"), vec![0]);
    assert_eq!(states_of(&dir, "failed"), vec![1]);
    assert!(
        states_of(&dir, "running").iter().all(|t| *t < 2),
        "trial 2 never started"
    );
}

#[test]
fn a_killed_sweep_resumes_and_never_reruns_a_finished_trial() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(
        tmp.path(),
        "killsweep",
        "[sweep]\nparallel = 2\n[sweep.grid]\n\"model.dropout\" = [0.0, 0.1, 0.2, 0.3]\n",
    );
    let runs = tmp.path().join("runs");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("runner"))
        .arg("sweep")
        .arg(&exp)
        .args([
            "--set",
            "train.epochs=5",
            "--set",
            "data.train_size=320",
            "--runs-dir",
        ])
        .arg(&runs)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill the sweep once a trial has finished and others are running.
    let deadline = Instant::now() + Duration::from_secs(180);
    let dir = loop {
        if let Ok(target) = crate::common::read_latest(runs.join("killsweep/sweeps/latest")) {
            let dir = runs.join("killsweep/sweeps").join(target);
            if !states_of(&dir, "done").is_empty() {
                break dir;
            }
        }
        assert!(Instant::now() < deadline, "no trial finished");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the sweep ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let done_before = states_of(&dir, "done");
    assert!(done_before.len() < 4, "killed too late: {done_before:?}");
    let first = done_before[0] as usize;
    let first_dir = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(&format!("trial-{first:03}-"))
        })
        .unwrap();
    let meta_before = std::fs::read_to_string(first_dir.join("meta.json")).unwrap();
    let log_before = std::fs::read_to_string(first_dir.join("run.log")).unwrap();

    let out = runner()
        .args(["sweep", "--resume"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_exit(&out, 0);
    // Each trial is done exactly once in the journal and in summary.csv.
    assert_eq!(states_of(&dir, "done"), vec![0, 1, 2, 3]);
    let rows = summary_rows(&dir);
    assert_eq!(rows.len(), 5);
    assert!(rows[1..].iter().all(|r| r[2] == "done"), "{rows:?}");
    // The finished trial was not run again: its folder is untouched.
    assert_eq!(
        std::fs::read_to_string(first_dir.join("meta.json")).unwrap(),
        meta_before
    );
    assert_eq!(
        std::fs::read_to_string(first_dir.join("run.log")).unwrap(),
        log_before
    );
    // A second resume has nothing left to do.
    crate::common::assert_resume_runs_nothing(&dir);
    assert_eq!(states_of(&dir, "done"), vec![0, 1, 2, 3]);
}

#[test]
fn a_killed_trial_fails_and_retry_failed_finishes_it() {
    // A trial killed by the OOM killer or a `kill -9`: the sweep records it
    // as failed and goes on; `--resume --retry-failed` runs it again from
    // its last checkpoint, and every record of it then says done.
    let tmp = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(
        tmp.path(),
        "retry",
        "[sweep.grid]\n\"model.dropout\" = [0.1]\n",
    );
    let runs = tmp.path().join("runs");
    let epochs = 20;
    let mut sweep = crate::common::runner_process()
        .arg("sweep")
        .arg(&exp)
        .args(["--set", &format!("train.epochs={epochs}")])
        .args(["--set", "data.train_size=400", "--runs-dir"])
        .arg(&runs)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Its trial's second checkpoint: the trial is mid-training.
    let sweeps = runs.join("retry/sweeps");
    let trial = crate::common::await_checkpoint(&mut sweep, 2, || {
        let latest = crate::common::read_latest(sweeps.join("latest")).ok()?;
        crate::common::find_trial(&sweeps.join(latest), 0)
    });
    let pid = crate::common::meta(&trial)["pid"].as_i64().unwrap();
    // SAFETY: signalling the trial process our sweep started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert_eq!(sweep.wait().unwrap().code(), Some(1));
    let dir = trial.parent().unwrap().to_path_buf();
    assert_eq!(states_of(&dir, "failed"), vec![0]);
    let done_before = crate::common::csv_epochs(&trial).len();
    assert!(done_before < epochs, "killed too late");

    let out = runner()
        .args(["sweep", "--resume"])
        .arg(&dir)
        .output()
        .unwrap();
    // Without --retry-failed it stays failed, and says how to retry it.
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("0 trial(s) to run"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("--retry-failed"), "{}", stdout(&out));
    let out = runner()
        .args(["sweep", "--resume"])
        .arg(&dir)
        .arg("--retry-failed")
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert_eq!(states_of(&dir, "done"), vec![0]);
    let rows = summary_rows(&dir);
    assert_eq!(rows[1][2], "done", "{rows:?}");
    let m = crate::common::meta(&trial);
    assert_eq!(m["status"], "completed");
    assert_eq!(m["resumes"], 1);
    // From its checkpoint: no epoch lost or repeated.
    assert_eq!(
        crate::common::csv_epochs(&trial),
        (0..epochs).collect::<Vec<_>>()
    );
    // TensorBoard's HParams tab shows it succeeded, not its first end.
    let Some(python) = python_with("tensorboard") else {
        return;
    };
    let out = run_script(&python, "read_events.py", &[trial.as_os_str()]);
    let events: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        events["runs"]["."]["hparams"]["_hparams_/session_end_info"]["status"], "STATUS_SUCCESS",
        "{events}"
    );
}

#[test]
fn resuming_with_a_changed_spec_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(
        tmp.path(),
        "changed",
        "[sweep]\n[sweep.grid]\n\"model.dropout\" = [0.0]\n",
    );
    let runs = tmp.path().join("runs");
    let out = runner()
        .arg("sweep")
        .arg(&exp)
        .args(["--set", "train.epochs=1", "--runs-dir"])
        .arg(&runs)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&exp)
        .unwrap()
        .replace("learning_rate = 0.01", "learning_rate = 0.02");
    std::fs::write(&exp, text).unwrap();
    let out = runner()
        .args(["sweep", "--resume"])
        .arg(sweep_dir(&runs, "changed"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("optimizer.learning_rate"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn resuming_a_sweep_started_with_env_values_and_filled_defaults_is_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    // No validation data, so planning sets the checkpoint monitor to `loss`.
    let exp = tiny_experiment(
        tmp.path(),
        "envsweep",
        "[sweep]\nmetric = \"loss\"\n[sweep.grid]\n\"model.dropout\" = [0.0]\n",
    );
    let text = std::fs::read_to_string(&exp)
        .unwrap()
        .replace("validation_size = 32", "validation_size = 0");
    std::fs::write(&exp, text).unwrap();
    let runs = tmp.path().join("runs");
    let out = runner()
        .arg("sweep")
        .arg(&exp)
        .env("RUNNER_TRAIN__EPOCHS", "1")
        .arg("--runs-dir")
        .arg(&runs)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = sweep_dir(&runs, "envsweep");
    // Resumed from another shell, where the variable is not set.
    crate::common::assert_resume_runs_nothing(&dir);
    // A real change is still refused, and the variable is not taken for one.
    let text = std::fs::read_to_string(&exp)
        .unwrap()
        .replace("learning_rate = 0.01", "learning_rate = 0.02");
    std::fs::write(&exp, text).unwrap();
    let out = runner()
        .args(["sweep", "--resume"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("optimizer.learning_rate"), "{err}");
    assert!(
        !err.contains("train.epochs") && !err.contains("monitor"),
        "{err}"
    );
}

/// The trial folders of a sweep folder, by name.
fn trial_folders(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("trial-"))
        .collect();
    v.sort();
    v
}

#[test]
fn a_sweep_resumed_with_a_higher_budget_runs_only_the_trials_it_adds() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(
        tmp.path(),
        "more",
        "[sweep]\nstrategy = \"random\"\ntrials = 3\nseed = 5\n[sweep.random]\n\
         \"optimizer.learning_rate\" = { distribution = \"log_uniform\", low = 1e-3, high = 1e-1 }\n",
    );
    let runs = tmp.path().join("runs");
    let out = runner_on("sweep", &exp, &runs)
        .args(["--set", "train.epochs=1"])
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let dir = sweep_dir(&runs, "more");
    let first = trial_folders(&dir);
    assert_eq!(first.len(), 3);
    let curves: Vec<Vec<u8>> = first
        .iter()
        .map(|t| std::fs::read(dir.join(t).join("metrics.csv")).unwrap())
        .collect();
    let meta = std::fs::read(dir.join("sweep.json")).unwrap();
    let resume = |set: &[&str]| {
        let mut cmd = runner();
        cmd.args(["sweep", "--resume"]).arg(&dir);
        for s in set {
            cmd.args(["--set", s]);
        }
        cmd.output().unwrap()
    };

    // Only the budget can change, and never downwards; a refusal writes nothing.
    let out = resume(&["model.dropout=0.3"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("only the sweep's budget can change when it resumes: sweep.trials, sweep.max_trials, sweep.max_hours"),
        "{err}"
    );
    // A local sweep has no Slurm settings to change.
    let out = resume(&["sweep.launcher.time=01:00:00"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("this sweep runs its trials locally"),
        "{}",
        stderr(&out)
    );
    let out = resume(&["sweep.trails=5"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("did you mean `sweep.trials`?"),
        "{}",
        stderr(&out)
    );
    let out = resume(&["sweep.trials=2"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("the sweep has 3 trial(s), and the new budget allows 2"),
        "{}",
        stderr(&out)
    );
    // --dry-run is for a new sweep: with --resume it would have run it.
    let out = runner()
        .args(["sweep", "--dry-run", "--resume"])
        .arg(&dir)
        .args(["--set", "sweep.trials=5"])
        .output()
        .unwrap();
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("'--dry-run' cannot be used with '--resume <SWEEP_DIR>'"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(dir.join("sweep.json")).unwrap(), meta);
    assert_eq!(trial_folders(&dir), first);

    // Five trials: the two a five-trial sweep would have drawn after the three.
    let dry = runner_on("sweep", &exp, &runs)
        .args([
            "--set",
            "train.epochs=1",
            "--set",
            "sweep.trials=5",
            "--dry-run",
        ])
        .output()
        .unwrap();
    assert_exit(&dry, 0);
    let out = resume(&["sweep.trials=5"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(
        text.contains("Sweep budget changed (sweep.trials=5): 3 trial(s) before, 5 now"),
        "{text}"
    );
    assert!(
        text.contains("2 trial(s) to run, 3 already finished"),
        "{text}"
    );
    let now = trial_folders(&dir);
    assert_eq!(now.len(), 5);
    for t in &now {
        assert!(
            stdout(&dry).contains(&format!("  {t}  ")),
            "{t} is not in\n{}",
            stdout(&dry)
        );
    }
    for (t, curve) in first.iter().zip(&curves) {
        assert_eq!(
            &std::fs::read(dir.join(t).join("metrics.csv")).unwrap(),
            curve,
            "{t} ran again"
        );
    }
    assert_eq!(states_of(&dir, "done"), vec![0, 1, 2, 3, 4]);
    assert_eq!(summary_rows(&dir).len(), 1 + 5);
    // The new budget stays: a plain resume has nothing to do.
    crate::common::assert_resume_runs_nothing(&dir);

    // The file asking for another budget is answered with the flag that gives it.
    let text = std::fs::read_to_string(&exp)
        .unwrap()
        .replace("trials = 3", "trials = 6");
    std::fs::write(&exp, text).unwrap();
    let out = resume(&[]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("gives another budget (sweep.trials)"), "{err}");
    assert!(
        err.contains("add `--set sweep.trials=6` to `runner sweep --resume`"),
        "{err}"
    );
    let out = resume(&["sweep.trials=6"]);
    assert_exit(&out, 0);
    assert_eq!(states_of(&dir, "done"), vec![0, 1, 2, 3, 4, 5]);
}

/// A local sweep of two 1000-epoch trials, one at a time, started in
/// `tmp`, with its stderr to `stderr`; returned once trial 0 runs.
// The caller waits for the child it is given.
#[allow(clippy::zombie_processes)]
fn long_local_sweep(tmp: &Path, stderr: Stdio) -> (std::process::Child, PathBuf) {
    let exp = tiny_experiment(
        tmp,
        "long",
        "[sweep]\nparallel = 1\n[sweep.grid]\n\"model.dropout\" = [0.0, 0.1]\n",
    );
    let runs = tmp.join("runs");
    let mut child = crate::common::runner_process()
        .arg("sweep")
        .arg(&exp)
        .args(["--set", "train.epochs=1000", "--runs-dir"])
        .arg(&runs)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(target) = crate::common::read_latest(runs.join("long/sweeps/latest")) {
            let dir = runs.join("long/sweeps").join(target);
            if states_of(&dir, "running") == vec![0] {
                return (child, dir);
            }
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("trial 0 never started");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `--status` of a local sweep says whether a runner process still runs
/// it; a trial the journal last saw running in a killed sweep shows as
/// stopped, and `--wait` waits for the process to end.
#[test]
fn status_tells_a_running_local_sweep_from_a_killed_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut child, dir) = long_local_sweep(tmp.path(), Stdio::null());
    let running_lines = |text: &str| {
        text.lines()
            .filter(|l| l.contains("trial-000") && l.contains("  running"))
            .count()
    };
    let out = runner()
        .args(["sweep", "--status"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(
        text.contains(&format!("A runner process (pid {} on ", child.id()))
            && text.contains(
                "is running this sweep; `--wait` waits for it to end, `--cancel` stops it."
            ),
        "{text}"
    );
    assert_eq!(running_lines(&text), 2, "{text}");
    assert!(text.contains("(2 trials: 1 running, 1 pending)"), "{text}");

    let waiter = crate::common::runner_process()
        .args(["sweep", "--wait", "--poll-seconds", "0.2", "--status"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    let out = waiter.wait_with_output().unwrap();
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(
        text.contains("Waiting for the runner process that runs"),
        "{text}"
    );
    assert_eq!(running_lines(&text), 0, "{text}");
    assert!(text.contains("(2 trials: 1 pending, 1 stopped)"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("trial-000") && l.contains("  stopped")),
        "{text}"
    );
    assert!(
        text.contains("No runner process is running this sweep; `runner sweep --resume")
            && text.contains("runs the 2 trial(s) not finished"),
        "{text}"
    );
}

/// `runner sweep --cancel DIR` of a local sweep stops the runner process
/// that runs it, as Ctrl-C in its terminal would: resumable.
#[test]
fn a_local_sweep_is_cancelled_from_another_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut child, dir) = long_local_sweep(tmp.path(), Stdio::piped());
    let cancel = |wait: &[&str]| {
        runner()
            .args(["sweep"])
            .args(wait)
            .arg("--cancel")
            .arg(&dir)
            .output()
            .unwrap()
    };
    // With --wait, it comes back once the sweep has stopped.
    let out = cancel(&["--wait", "--poll-seconds", "0.2"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "Asked runner process {} to stop the sweep (SIGTERM)",
            child.id()
        )),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("trial-000") && l.contains("  stopped")),
        "{text}"
    );
    assert!(
        text.contains("No runner process is running this sweep"),
        "{text}"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the sweep did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("runner sweep --resume"), "{err}");
    assert_eq!(states_of(&dir, "stopped"), vec![0]);
    let out = cancel(&[]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("No runner process is running")
            && stdout(&out).contains("nothing to cancel"),
        "{}",
        stdout(&out)
    );
}
