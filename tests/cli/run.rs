//! `runner run`: the run folder, callbacks, NaN termination, kill and
//! resume, concurrent runs, and the logs read back by their real consumers.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{
    assert_exit, await_checkpoint, csv_epochs, meta, newest_run, run_dir, runner, runner_on,
    runner_process, stderr, stdout, tiny_experiment,
};
use crate::python::{python_with, run_script};

#[test]
fn a_run_leaves_a_complete_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(tmp.path(), "complete", "");
    let runs = tmp.path().join("runs");
    let out = runner_on("run", &exp, &runs).output().unwrap();
    assert_exit(&out, 0);
    let dir = run_dir(&runs, "complete");
    assert!(dir.ends_with("complete/v0001"), "{}", dir.display());
    for f in [
        "source/complete.toml",
        "config.resolved.toml",
        "overrides.json",
        "meta.json",
        "metrics.csv",
        "checkpoints/last/model.mpk",
        "checkpoints/last/optimizer.mpk",
        "checkpoints/last/state.json",
        "checkpoints/best/model.mpk",
        "report/classification_report.csv",
        "report/confusion_matrix.csv",
        "report/confusion_matrix.png",
        "report/predictions.png",
        "report/predictions.csv",
        "report/curves.png",
    ] {
        assert!(dir.join(f).exists(), "{f} missing in {}", dir.display());
    }
    assert!(std::fs::read_dir(dir.join("train")).unwrap().count() > 0);
    assert!(std::fs::read_dir(dir.join("validation")).unwrap().count() > 0);
    // Every file has the mode a plain create gives under this umask (0644
    // under 022), so a team sharing `runs/` can read each other's runs.
    {
        use std::os::unix::fs::PermissionsExt;
        let plain = tmp.path().join("plain");
        std::fs::File::create(&plain).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        for e in walkdir::WalkDir::new(&dir).into_iter().flatten() {
            if e.file_type().is_file() {
                assert_eq!(mode(e.path()), mode(&plain), "{}", e.path().display());
            }
        }
    }
    let m = meta(&dir);
    assert_eq!(m["status"], "completed");
    assert_eq!(m["epochs_completed"], 3);
    assert_eq!(m["backend"], "flex");
    assert_eq!(m["dataset"]["classes"].as_array().unwrap().len(), 4);
    assert!(m["end_time"].is_string());
    assert_eq!(csv_epochs(&dir), vec![0, 1, 2]);
    let header = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    assert!(header.starts_with(
        "epoch,train_loss,train_accuracy,val_loss,val_accuracy,lr,epoch_seconds,images_per_second\n"
    ));
    // The resolved config is a valid experiment on its own.
    let again = runner()
        .arg("check")
        .arg(dir.join("config.resolved.toml"))
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", stderr(&again));
    // The report is printed, sorted by F1.
    assert!(
        stdout(&out).contains("Overall accuracy on test (32 images)"),
        "{}",
        stdout(&out)
    );
    // `latest` is a file naming the folder (a directory link would make
    // TensorBoard list the run twice), and commands accept it for the folder.
    assert!(!runs.join("complete/latest").is_symlink());
    let eval = runner()
        .arg("eval")
        .arg(runs.join("complete/latest"))
        .output()
        .unwrap();
    assert!(eval.status.success(), "{}", stderr(&eval));
    assert!(
        stdout(&eval).contains("Overall accuracy on test (32 images)"),
        "{}",
        stdout(&eval)
    );
}

#[test]
fn the_logs_read_back_in_pandas_and_tensorboard() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(tmp.path(), "readback", "");
    let runs = tmp.path().join("runs");
    let out = runner_on("run", &exp, &runs).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = run_dir(&runs, "readback");
    let Some(python) = python_with("tensorboard") else {
        return;
    };

    // pandas sees one row per epoch with the numbers of the CSV.
    let code = format!(
        "import pandas as pd; df = pd.read_csv({:?}); print(len(df), list(df.epoch), round(df.val_accuracy.iloc[-1], 6))",
        dir.join("metrics.csv").display().to_string()
    );
    let out = std::process::Command::new(&python)
        .args(["-c", &code])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let csv = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    let last_val: f64 = csv
        .lines()
        .last()
        .unwrap()
        .split(',')
        .nth(4)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        stdout(&out).trim(),
        format!("3 [0, 1, 2] {}", (last_val * 1e6).round() / 1e6)
    );

    // TensorBoard's EventAccumulator reads the same values at steps 0, 1, 2.
    let out = run_script(&python, "read_events.py", &[dir.as_os_str()]);
    let events: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let series = |run: &str, tag: &str| -> Vec<(i64, f64)> {
        events["runs"][run]["scalars"][tag]
            .as_array()
            .unwrap_or_else(|| panic!("{run}/{tag} in {events}"))
            .iter()
            .map(|p| (p[0].as_i64().unwrap(), p[1].as_f64().unwrap()))
            .collect()
    };
    let val_loss = series("validation", "epoch_loss");
    assert_eq!(
        val_loss.iter().map(|p| p.0).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    for (row, (_, v)) in csv.lines().skip(1).zip(&val_loss) {
        let want: f64 = row.split(',').nth(3).unwrap().parse().unwrap();
        assert!((want - v).abs() <= want.abs() * 1e-6, "{want} vs {v}");
    }
    assert_eq!(series("train", "epoch_accuracy").len(), 3);
    assert_eq!(series("train", "epoch_learning_rate").len(), 3);

    // A real TensorBoard server on loopback lists the run's curves.
    run_script(
        &python,
        "tb_server_check.py",
        &[
            dir.as_os_str(),
            "--expect-run".as_ref(),
            "train".as_ref(),
            "--expect-run".as_ref(),
            "validation".as_ref(),
            "--expect-tags".as_ref(),
            "epoch_loss,epoch_accuracy".as_ref(),
        ],
    );
}

#[test]
fn each_run_is_a_session_in_the_hparams_tab() {
    // As Lightning and Keras runs log their hyperparameters: `tensorboard
    // --logdir runs/<experiment>` lists every run with its values.
    let tmp = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(tmp.path(), "hp", "");
    let runs = tmp.path().join("runs");
    let first = runner_on("run", &exp, &runs)
        .args(["--set", "train.epochs=2"])
        .output()
        .unwrap();
    assert_exit(&first, 0);
    let second = runner_on("run", &exp, &runs)
        .args([
            "--set",
            "train.epochs=2",
            "--set",
            "optimizer.learning_rate=0.003",
        ])
        .output()
        .unwrap();
    assert_exit(&second, 0);
    // Trained on to 3 epochs: its entry says 3, not the 2 it started with.
    let v1 = runs.join("hp/v0001");
    let more = runner()
        .args(["run", "--resume"])
        .arg(&v1)
        .args(["--set", "train.epochs=3"])
        .output()
        .unwrap();
    assert_exit(&more, 0);
    let Some(python) = python_with("tensorboard") else {
        return;
    };
    let out = run_script(&python, "read_events.py", &[runs.join("hp").as_os_str()]);
    let events: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let session = |run: &str| {
        let h = &events["runs"][run]["hparams"];
        (
            h["_hparams_/session_start_info"]["hparams"].clone(),
            h["_hparams_/session_end_info"]["status"].clone(),
        )
    };
    let (hp1, end1) = session("v0001");
    let (hp2, end2) = session("v0002");
    assert_eq!(hp1["optimizer.learning_rate"], 0.01, "{hp1}");
    assert_eq!(hp2["optimizer.learning_rate"], 0.003, "{hp2}");
    assert_eq!(hp1["train.epochs"], 3.0);
    assert_eq!(hp2["train.epochs"], 2.0);
    assert_eq!(hp1["model.layers.0.filters"], 4.0);
    assert_eq!(hp1["optimizer.type"], "adam");
    assert!(hp1.get("runtime.threads").is_none(), "{hp1}");
    assert_eq!(end1, "STATUS_SUCCESS");
    assert_eq!(end2, "STATUS_SUCCESS");
    // A real server shows both sessions with their values, status and
    // last metrics, in the experiment it infers from them.
    let out = run_script(
        &python,
        "tb_server_check.py",
        &[runs.join("hp").as_os_str(), "--hparams".as_ref()],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ok hparams sessions: 2 sessions"),
        "{stdout}"
    );
    assert!(stdout.contains("'optimizer.learning_rate'"), "{stdout}");
}

#[test]
fn terminate_on_nan_fails_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(tmp.path(), "nan", "");
    // Without ReLUs to die, weights grow by a factor of about the learning
    // rate at every step until they overflow and the loss turns NaN.
    let text = std::fs::read_to_string(&exp)
        .unwrap()
        .replace("activation = \"relu\"", "activation = \"linear\"")
        .replace("type = \"adam\"", "type = \"sgd\"");
    std::fs::write(&exp, text).unwrap();
    let runs = tmp.path().join("runs");
    let out = runner_on("run", &exp, &runs)
        .args([
            "--set",
            "optimizer.learning_rate=1e6",
            "--set",
            "train.epochs=20",
        ])
        .output()
        .unwrap();
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("terminate_on_nan"),
        "{}",
        stderr(&out)
    );
    let dir = run_dir(&runs, "nan");
    let m = meta(&dir);
    assert_eq!(m["status"], "failed");
    assert!(
        m["message"].as_str().unwrap().contains("loss became"),
        "{m}"
    );
    assert!(m["epochs_completed"].as_u64().unwrap() < 20);
    // With the callback off, the same run goes on to the end.
    let out = runner_on("run", &exp, &runs)
        .args([
            "--set",
            "optimizer.learning_rate=1e6",
            "--set",
            "train.epochs=2",
        ])
        .args(["--set", "callbacks.terminate_on_nan=false"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn best_only_checkpointing_saves_only_on_improvement() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(
        tmp.path(),
        "bestonly",
        "[callbacks.checkpoint]\nmonitor = \"val_loss\"\nsave_best_only = true\nsave_last = false\n",
    );
    let runs = tmp.path().join("runs");
    let out = runner_on("run", &exp, &runs)
        .args([
            "--set",
            "train.epochs=6",
            "--set",
            "optimizer.learning_rate=0.05",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = run_dir(&runs, "bestonly");
    let csv = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    let val: Vec<f64> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(3).unwrap().parse().unwrap())
        .collect();
    let best = val.iter().enumerate().fold(
        (0, f64::MAX),
        |b, (i, v)| if *v < b.1 { (i, *v) } else { b },
    );
    // `best` points at the epoch with the lowest val_loss; besides it only
    // `final` (the weights the run ended with, epoch 6) is kept.
    let target = std::fs::read_link(dir.join("checkpoints/best")).unwrap();
    assert_eq!(target, PathBuf::from(format!("epoch-{:04}", best.0 + 1)));
    assert_eq!(
        std::fs::read_link(dir.join("checkpoints/final")).unwrap(),
        PathBuf::from("epoch-0006")
    );
    let mut kept: Vec<String> = std::fs::read_dir(dir.join("checkpoints"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("epoch-"))
        .collect();
    kept.sort();
    let mut expected = vec![format!("epoch-{:04}", best.0 + 1), "epoch-0006".to_string()];
    expected.sort();
    expected.dedup();
    assert_eq!(kept, expected);
    assert!(!dir.join("checkpoints/last").exists());
}

#[test]
fn early_stopping_restores_the_best_weights() {
    let tmp = tempfile::tempdir().unwrap();
    // A rate this high makes validation loss bounce, so patience 1 stops early.
    let exp = tiny_experiment(
        tmp.path(),
        "early",
        "[callbacks.early_stopping]\nmonitor = \"val_loss\"\npatience = 1\nrestore_best_weights = true\n",
    );
    let runs = tmp.path().join("runs");
    let out = runner_on("run", &exp, &runs)
        .args([
            "--set",
            "train.epochs=30",
            "--set",
            "optimizer.learning_rate=0.3",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = run_dir(&runs, "early");
    let csv = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    let val: Vec<f64> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(3).unwrap().parse().unwrap())
        .collect();
    assert!(val.len() < 30, "early stopping never fired: {val:?}");
    // Keras semantics: the stop comes `patience` epochs after the best one.
    let best = val.iter().enumerate().fold(
        (0, f64::MAX),
        |b, (i, v)| if *v < b.1 { (i, *v) } else { b },
    );
    assert_eq!(val.len() - 1, best.0 + 1, "{val:?}");
    let m = meta(&dir);
    assert!(
        m["message"]
            .as_str()
            .unwrap()
            .contains(&format!("restored the weights of epoch {}", best.0 + 1)),
        "{m}"
    );
    // The evaluation ran on the restored weights: re-evaluating the best
    // checkpoint gives the same test accuracy.
    let eval = runner()
        .arg("eval")
        .arg(&dir)
        .args(["--checkpoint", "best"])
        .output()
        .unwrap();
    assert!(eval.status.success(), "{}", stderr(&eval));
    let acc = m["test_accuracy"].as_f64().unwrap();
    assert!(
        stdout(&eval).contains(&format!("{:.2}%", acc * 100.0)),
        "{} vs {}",
        stdout(&eval),
        acc
    );
}

#[test]
fn eight_concurrent_runs_get_eight_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(tmp.path(), "crowd", "");
    let runs = tmp.path().join("runs");
    let children: Vec<_> = (0..8)
        .map(|_| {
            std::process::Command::new(assert_cmd::cargo::cargo_bin("runner"))
                .arg("run")
                .arg(&exp)
                .args([
                    "--set",
                    "train.epochs=1",
                    "--set",
                    "data.train_size=16",
                    "--set",
                    "runtime.threads=1",
                ])
                .arg("--runs-dir")
                .arg(&runs)
                .env("RUNNER_PLAIN", "1")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut dirs: Vec<String> = std::fs::read_dir(runs.join("crowd"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('v'))
        .collect();
    dirs.sort();
    assert_eq!(
        dirs,
        (1..=8).map(|i| format!("v{i:04}")).collect::<Vec<_>>()
    );
    for d in &dirs {
        assert_eq!(meta(&runs.join("crowd").join(d))["status"], "completed");
    }
}

#[test]
fn a_killed_run_resumes_without_losing_or_repeating_an_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(tmp.path(), "killed", "");
    let runs = tmp.path().join("runs");
    let epochs = 8;
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("runner"))
        .arg("run")
        .arg(&exp)
        .args([
            "--set",
            &format!("train.epochs={epochs}"),
            "--set",
            "data.train_size=400",
        ])
        .arg("--runs-dir")
        .arg(&runs)
        .env("RUNNER_PLAIN", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the second checkpoint, then SIGKILL mid-training.
    let dir = await_checkpoint(&mut child, 2, || newest_run(&runs, "killed"));
    child.kill().unwrap();
    child.wait().unwrap();
    let before = csv_epochs(&dir);
    assert!(before.len() < epochs, "killed too late: {before:?}");
    assert_eq!(
        meta(&dir)["status"],
        "running",
        "a killed run has no chance to mark itself"
    );
    // Its process is gone, which compare says, with the way on.
    let out = runner().arg("compare").arg(&dir).output().unwrap();
    assert_exit(&out, 0);
    let text = stdout(&out);
    let row = text.lines().find(|l| l.starts_with("killed/")).unwrap();
    assert!(row.contains(" killed "), "{text}");
    assert!(
        text.contains("`runner run --resume DIR` continues"),
        "{text}"
    );

    let out = runner()
        .arg("run")
        .arg("--resume")
        .arg(&dir)
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("Resuming after epoch"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        csv_epochs(&dir),
        (0..epochs).collect::<Vec<_>>(),
        "one row per epoch, in order"
    );
    let m = meta(&dir);
    assert_eq!(m["status"], "completed");
    assert_eq!(m["resumes"], 1);
    // The last checkpoint is intact: it evaluates.
    let eval = runner().arg("eval").arg(&dir).output().unwrap();
    assert!(eval.status.success(), "{}", stderr(&eval));

    // TensorBoard shows one curve with one point per epoch.
    let Some(python) = python_with("tensorboard") else {
        return;
    };
    let out = run_script(&python, "read_events.py", &[dir.as_os_str()]);
    let events: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut steps: Vec<i64> = events["runs"]["validation"]["scalars"]["epoch_loss"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_i64().unwrap())
        .collect();
    steps.dedup();
    assert_eq!(steps, (0..epochs as i64).collect::<Vec<_>>());
}

#[test]
fn resume_refuses_a_completed_run() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(tmp.path(), "done", "");
    let runs = tmp.path().join("runs");
    let out = runner_on("run", &exp, &runs)
        .args(["--set", "train.epochs=1"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = runner()
        .arg("run")
        .arg("--resume")
        .arg(run_dir(&runs, "done"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("already completed"),
        "{}",
        stderr(&out)
    );
    // A run resumes in its own folder: --runs-dir would be ignored.
    let out = runner()
        .arg("run")
        .arg("--resume")
        .arg(run_dir(&runs, "done"))
        .arg("--runs-dir")
        .arg(tmp.path().join("elsewhere"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("'--resume <RUN_DIR>' cannot be used with '--runs-dir <DIR>'"),
        "{}",
        stderr(&out)
    );
}

/// Columns of metrics.csv that a run computes (epoch to lr, not its
/// timings), per epoch.
fn learned_rows(dir: &Path) -> Vec<Vec<f64>> {
    std::fs::read_to_string(dir.join("metrics.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').take(6).map(|v| v.parse().unwrap()).collect())
        .collect()
}

/// `runner run --resume DIR --set train.epochs=N` trains a finished run on
/// to N epochs, and the run equals one that planned N from the start.
#[test]
fn a_finished_run_trains_on_to_more_epochs() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(tmp.path(), "more", "");
    let runs = tmp.path().join("runs");
    let run = |epochs: &str, extra: &[&str]| {
        let out = runner_on("run", &exp, &runs)
            .args(["--set", &format!("train.epochs={epochs}")])
            .args(extra)
            .output()
            .unwrap();
        assert_exit(&out, 0);
        run_dir(&runs, "more")
    };
    let resume = |dir: &Path, set: &[&str]| {
        let mut cmd = runner();
        cmd.current_dir(tmp.path())
            .arg("run")
            .arg("--resume")
            .arg(dir);
        for s in set {
            cmd.args(["--set", s]);
        }
        cmd.output().unwrap()
    };
    let short = run("2", &[]);
    let long = run("4", &[]);
    let config_before = std::fs::read(short.join("config.resolved.toml")).unwrap();

    // Refused, and nothing in the folder changes: another key, fewer
    // epochs than it has trained, or a removal.
    let rel = short.strip_prefix(tmp.path()).unwrap();
    let other = resume(rel, &["optimizer.learning_rate=0.1"]);
    assert_exit(&other, 2);
    let fewer = resume(rel, &["train.epochs=2"]);
    assert_exit(&fewer, 2);
    let removed = resume(rel, &["~train.epochs"]);
    assert_exit(&removed, 2);
    insta::assert_snapshot!(
        "resume-more-epochs-refusals",
        [other, fewer, removed]
            .iter()
            .map(stderr)
            .collect::<Vec<_>>()
            .join("----\n")
    );
    assert_eq!(
        std::fs::read(short.join("config.resolved.toml")).unwrap(),
        config_before
    );
    assert_eq!(csv_epochs(&short), vec![0, 1]);
    assert_eq!(meta(&short)["resumes"], 0);

    let out = resume(rel, &["train.epochs=4"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(
        text.contains("Training on to 4 epochs (train.epochs was 2)")
            && text.contains("Resuming after epoch 2 of 4"),
        "{text}"
    );
    // The same numbers as the run that planned 4 epochs (a sum over
    // threads may differ in its last bit from run to run).
    let (a, b) = (learned_rows(&short), learned_rows(&long));
    assert_eq!(a.len(), 4);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
        assert!((x - y).abs() <= 1e-9 * y.abs().max(1.0), "{a:?}\n{b:?}");
    }
    let (m, l) = (meta(&short), meta(&long));
    assert_eq!(m["status"], "completed");
    assert_eq!(m["epochs_completed"], 4);
    assert_eq!(m["resumes"], 1);
    assert_eq!(m["test_accuracy"], l["test_accuracy"]);
    // Its config says so, and the flag is recorded.
    let out = runner()
        .arg("compare")
        .arg(&short)
        .arg(&long)
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("(the configs are identical)"),
        "{}",
        stdout(&out)
    );
    let overrides: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(short.join("overrides.json")).unwrap())
            .unwrap();
    assert_eq!(overrides["set"], serde_json::json!(["train.epochs=2"]));
    assert_eq!(
        overrides["resume_set"],
        serde_json::json!(["train.epochs=4"])
    );

    // A run that early stopping ended, and a cosine schedule that has
    // begun, would not equal a longer run: refused.
    let stopped = run(
        "3",
        &[
            "--set",
            "callbacks.early_stopping.min_delta=10",
            "--set",
            "callbacks.early_stopping.patience=1",
        ],
    );
    assert_eq!(
        csv_epochs(&stopped),
        vec![0, 1],
        "early stopping did not stop"
    );
    let out = resume(&stopped, &["train.epochs=6"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("early stopping ended") && stderr(&out).contains("model.init_from"),
        "{}",
        stderr(&out)
    );
    let cosine = run("2", &["--set", "callbacks.lr_schedule.type=\"cosine\""]);
    let out = resume(&cosine, &["train.epochs=3"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("cosine schedule"), "{}", stderr(&out));
    assert_eq!(csv_epochs(&cosine), vec![0, 1]);

    // A plain --resume of a completed run offers only what would work.
    let plain = |dir: &Path| {
        let out = resume(dir, &[]);
        assert_exit(&out, 2);
        stderr(&out)
    };
    let offers_more = "`--set train.epochs=N` trains it on";
    let text = plain(&short);
    assert!(text.contains(offers_more), "{text}");
    let text = plain(&stopped);
    assert!(
        text.contains("early stopping ended it after epoch 2") && !text.contains(offers_more),
        "{text}"
    );
    let text = plain(&cosine);
    assert!(
        text.contains("its cosine schedule spans its epochs") && !text.contains(offers_more),
        "{text}"
    );
}

/// `runner compare --csv`: the table for pandas, whose numbers agree with
/// each run's own metrics.csv; for a whole runs folder, every run and
/// trial of every experiment, in the order `--sort` asks for.
#[test]
fn compare_writes_a_csv_that_pandas_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(tmp.path(), "cmp", "");
    let runs = tmp.path().join("runs");
    for lr in ["0.01", "0.001"] {
        let out = runner_on("run", &exp, &runs)
            .args(["--set", &format!("optimizer.learning_rate={lr}")])
            .output()
            .unwrap();
        assert_exit(&out, 0);
    }
    let other = tiny_experiment(
        tmp.path(),
        "other",
        "top_k = 2\n[sweep]\nstrategy = \"grid\"\n[sweep.grid]\n\"model.dropout\" = [0.2, 0.3]\n",
    );
    let out = runner_on("sweep", &other, &runs).output().unwrap();
    assert_exit(&out, 0);
    let all = tmp.path().join("all.csv");
    let png = tmp.path().join("curves.png");
    let out = runner()
        .arg("compare")
        .arg(&runs)
        .args(["--sort", "val_loss", "--csv"])
        .arg(&all)
        .arg("--plot")
        .arg(&png)
        .output()
        .unwrap();
    assert_exit(&out, 0);
    // Four runs: each drawn, none left out.
    assert!(
        stdout(&out).ends_with(&format!("Plot: {}\n", png.display())),
        "{}",
        stdout(&out)
    );
    let picture = image::open(&png).unwrap();
    assert_eq!((picture.width(), picture.height()), (1200, 480));
    // A key no run has: refused, with the metric meant.
    let out = runner()
        .arg("compare")
        .arg(&runs)
        .args(["--sort", "val_los"])
        .output()
        .unwrap();
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("cannot sort by `val_los`")
            && stderr(&out).contains("did you mean `val_loss`?"),
        "{}",
        stderr(&out)
    );
    let csv = tmp.path().join("cmp.csv");
    let out = runner()
        .arg("compare")
        .arg(runs.join("cmp"))
        .arg("--csv")
        .arg(&csv)
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(text.starts_with("run  "), "the table first: {text}");
    assert!(text.contains(&format!("CSV: {}", csv.display())), "{text}");
    // `-`: the CSV alone on stdout, the same as the file.
    let out = runner()
        .arg("compare")
        .arg(runs.join("cmp"))
        .args(["--csv", "-"])
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), std::fs::read_to_string(&csv).unwrap());
    // `--transpose`: a column per run, a row per key; the CSV unchanged.
    let out = runner()
        .arg("compare")
        .arg(runs.join("cmp"))
        .arg("--transpose")
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let text = stdout(&out);
    let cells = |line: &str| -> Vec<String> {
        let found = text
            .lines()
            .find(|l| l.starts_with(line))
            .unwrap_or_default();
        found.split_whitespace().map(String::from).collect()
    };
    assert_eq!(cells("run "), ["run", "cmp/v0001", "cmp/v0002"], "{text}");
    assert_eq!(
        cells("optimizer.learning_rate "),
        ["optimizer.learning_rate", "0.01", "0.001"],
        "{text}"
    );
    assert_eq!(
        cells("status "),
        ["status", "completed", "completed"],
        "{text}"
    );

    let Some(python) = python_with("pandas") else {
        return;
    };
    let code = r#"
import os, sys
import pandas as pd
metrics = ["status", "epochs", "best_val_accuracy", "best_val_accuracy_epoch",
    "best_val_loss", "best_val_loss_epoch", "final_val_accuracy", "test_accuracy",
    "start_time", "wall_seconds", "run_dir"]
df = pd.read_csv(sys.argv[1])
assert list(df.columns) == ["run", "optimizer.learning_rate"] + metrics, list(df.columns)
assert df["optimizer.learning_rate"].tolist() == [0.01, 0.001]
every = pd.read_csv(sys.argv[2])
top2 = ["best_val_top2_accuracy", "best_val_top2_accuracy_epoch"]
assert list(every.columns) == ["run", "experiment.name", "model.dropout",
    "optimizer.learning_rate", "train.top_k"] + metrics[:6] + top2 + metrics[6:], list(every.columns)
# Only the sweep's trials log top-2 accuracy.
assert every.best_val_top2_accuracy.isna().tolist() == (every["experiment.name"] == "cmp").tolist()
labels = sorted(r.rsplit("-", 1)[0] if r.startswith("s0001/") else r for r in every.run)
assert labels == ["cmp/v0001", "cmp/v0002", "s0001/trial-000", "s0001/trial-001"], every.run
assert every["experiment.name"].value_counts().to_dict() == {"cmp": 2, "other": 2}
assert every.best_val_loss.is_monotonic_increasing, every.best_val_loss
for frame in (df, every):
    assert (frame.status == "completed").all()
    for _, r in frame.iterrows():
        m = pd.read_csv(f"{r.run_dir}/metrics.csv")
        assert r.epochs == len(m)
        assert r.best_val_accuracy == m.val_accuracy.max(), (r, m)
        assert r.best_val_accuracy_epoch == m.epoch[m.val_accuracy.idxmax()]
        assert r.best_val_loss == m.val_loss.min()
        assert r.best_val_loss_epoch == m.epoch[m.val_loss.idxmin()]
        assert r.final_val_accuracy == m.val_accuracy.iloc[-1]
        assert 0 <= r.test_accuracy <= 1
        assert 0 < r.wall_seconds < 600, r.wall_seconds
        assert pd.Timestamp(r.start_time).year >= 2024, r.start_time
        if "val_top2_accuracy" in m:
            assert r.best_val_top2_accuracy == m.val_top2_accuracy.max()
            assert r.best_val_top2_accuracy_epoch == m.epoch[m.val_top2_accuracy.idxmax()]
# Every run's learning curve in one frame, as the README shows it.
hist = pd.concat(pd.read_csv(f"{d}/metrics.csv").assign(run=r) for r, d in zip(every.run, every.run_dir))
assert hist.groupby("run").epoch.count().to_dict() == dict(zip(every.run, every.epochs))
assert every.run_dir.map(os.path.isabs).all(), every.run_dir
print(len(df), len(every))
"#;
    let out = std::process::Command::new(&python)
        .arg("-c")
        .arg(code)
        .arg(&csv)
        .arg(&all)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "2 4");
}

/// `runner run FILE --id NAME`: the same command again (a requeued Slurm
/// job) resumes its run in `runs/<experiment>/NAME`, and does nothing once
/// it completed; another config under the same id is refused.
#[test]
fn a_run_named_by_id_resumes_when_its_command_runs_again() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(tmp.path(), "job", "");
    let runs = tmp.path().join("runs");
    let dir = runs.join("job/1234");
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["--id", "1234", "--set", "train.epochs=40"]
            .into_iter()
            .chain(["--set", "data.train_size=400"])
            .chain(extra.iter().copied())
            .map(String::from)
            .collect();
        v.extend(["--runs-dir".to_string(), runs.display().to_string()]);
        v
    };
    // Killed after a checkpoint, as a preempted job may be.
    let mut child = runner_process()
        .arg("run")
        .arg(&exp)
        .args(args(&[]))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The second checkpoint: the first epoch's row is in metrics.csv by then.
    assert_eq!(
        await_checkpoint(&mut child, 2, || newest_run(&runs, "job")),
        dir
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        crate::common::read_latest(runs.join("job/latest")).unwrap(),
        Path::new("1234")
    );
    let before = csv_epochs(&dir);
    assert!(!before.is_empty() && before.len() < 40, "{before:?}");

    // The same command resumes it: no epoch lost or repeated.
    let again = |extra: &[&str]| {
        runner()
            .arg("run")
            .arg(&exp)
            .args(args(extra))
            .output()
            .unwrap()
    };
    let out = again(&[]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("Resuming after epoch"),
        "{}",
        stdout(&out)
    );
    assert_eq!(csv_epochs(&dir), (0..40).collect::<Vec<_>>());
    assert_eq!(meta(&dir)["resumes"], 1);
    // Completed: nothing to do, exit 0.
    let out = again(&[]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("already completed"),
        "{}",
        stdout(&out)
    );
    assert_eq!(meta(&dir)["resumes"], 1);
    // Another config under the id, and ids that are not folder names.
    let out = again(&["--set", "optimizer.learning_rate=0.5"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("holds a run of another config"),
        "{}",
        stderr(&out)
    );
    for bad in ["v0002", "a/b", "latest", ""] {
        let out = runner_on("run", &exp, &runs)
            .args(["--id", bad])
            .output()
            .unwrap();
        assert_exit(&out, 2);
        assert!(
            stderr(&out).contains("cannot name a run folder"),
            "{bad}: {}",
            stderr(&out)
        );
    }
    // Numbered runs go on beside it.
    let out = runner_on("run", &exp, &runs).output().unwrap();
    assert_exit(&out, 0);
    assert_eq!(run_dir(&runs, "job"), runs.join("job/v0001"));
}

/// SIGUSR1 (Slurm's warning before a time limit) stops at the next batch;
/// SIGINT (Ctrl-C) finishes the epoch. Both leave a `stopped`, resumable run.
#[test]
fn signals_stop_a_run_cleanly_and_it_resumes() {
    for (signal, name) in [(libc::SIGUSR1, "SIGUSR1"), (libc::SIGINT, "interrupt")] {
        let tmp = tempfile::tempdir().unwrap();
        let exp = tiny_experiment(tmp.path(), "signalled", "");
        let runs = tmp.path().join("runs");
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("runner"))
            .arg("run")
            .arg(&exp)
            .args(["--set", "train.epochs=30", "--set", "data.train_size=400"])
            .arg("--runs-dir")
            .arg(&runs)
            .env("RUNNER_PLAIN", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let dir = await_checkpoint(&mut child, 1, || newest_run(&runs, "signalled"));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, signal) };
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(130),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let m = meta(&dir);
        assert_eq!(m["status"], "stopped", "{name}: {m}");
        assert!(m["message"].as_str().unwrap().contains(name), "{m}");
        assert!(m["message"].as_str().unwrap().contains("--resume"), "{m}");
        // Nothing prunes a run outside a sweep.
        assert!(!m["message"].as_str().unwrap().contains("sweep"), "{m}");
        let done = csv_epochs(&dir).len();
        assert!(done < 30, "{name}: stopped early");
        let first = m["run_seconds"].as_f64().unwrap();
        // The pause between the stop and the resume is not the run's time.
        std::thread::sleep(Duration::from_secs(2));
        let out = runner()
            .arg("run")
            .arg("--resume")
            .arg(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(csv_epochs(&dir), (0..30).collect::<Vec<_>>());
        let m = meta(&dir);
        assert_eq!(m["status"], "completed");
        let at = |key: &str| {
            time::OffsetDateTime::parse(
                m[key].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap()
        };
        let span = (at("end_time") - at("start_time")).as_seconds_f64();
        let session = (at("end_time") - at("session_start")).as_seconds_f64();
        let total = m["run_seconds"].as_f64().unwrap();
        assert_eq!(m["earlier_seconds"].as_f64(), Some(first), "{m}");
        assert!((total - (first + session)).abs() < 0.01, "{m}");
        assert!(
            total < span - 1.5,
            "{name}: {total} s of a {span} s span: {m}"
        );
    }
}

/// A folder whose last process still holds its lock (a trial of a sweep
/// killed a moment ago, still dying) is waited for, a few seconds, rather
/// than failed at once; a folder that stays held gets a clear error.
#[test]
fn a_held_run_folder_is_waited_for_then_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(tmp.path(), "held", "");
    // A trial folder `name` whose lock this process holds, and
    // `runner run --trial` on it.
    let held_trial = |name: &str| {
        let trial = tmp.path().join(name);
        std::fs::create_dir_all(&trial).unwrap();
        std::fs::copy(&exp, trial.join("trial.toml")).unwrap();
        let lock = runner::rundir::try_lock(&trial.join(".lock"))
            .unwrap()
            .expect("lock");
        let mut cmd = runner();
        cmd.args(["run", "--trial"])
            .arg(&trial)
            .timeout(Duration::from_secs(120));
        (trial, lock, cmd)
    };
    // Held for 1.5 s by another process (here: this one), then let go.
    let (trial, lock, mut cmd) = held_trial("trial-000-abcdef");
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        drop(lock);
    });
    let start = Instant::now();
    let out = cmd.output().unwrap();
    release.join().unwrap();
    assert_exit(&out, 0);
    assert!(start.elapsed() >= Duration::from_millis(1500));
    assert_eq!(meta(&trial)["status"], "completed");
    // Held for good: refused after the wait, naming the folder.
    let (_, _lock, mut cmd) = held_trial("trial-001-abcdef");
    let start = Instant::now();
    let out = cmd.output().unwrap();
    assert_exit(&out, 2);
    let waited = start.elapsed();
    assert!(waited >= Duration::from_secs(10), "{waited:?}");
    let err = stderr(&out);
    assert!(
        err.contains("is being run by another runner process"),
        "{err}"
    );
    assert!(err.contains("trial-001-abcdef"), "{err}");
}

/// `runner run --trial` on a path that is not a trial's folder (a typo, or
/// a TPE trial past the sweep's last) exits 2 and creates nothing there.
#[test]
fn a_trial_path_that_is_not_a_trial_folder_is_refused_and_not_created() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("sweeps/s0001/trial-042");
    let out = runner()
        .args(["run", "--trial"])
        .arg(&missing)
        .output()
        .unwrap();
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("is not a sweep trial's folder"), "{err}");
    assert!(err.contains("trial.toml"), "{err}");
    assert!(!missing.exists() && !tmp.path().join("sweeps").exists());
}
