//! Input a hostile user or a crash can produce: closed pipes, wrong folder
//! arguments, absurd counts, unreadable images. The contract: no panic;
//! exit 2 naming the file for command, config and data errors, exit 1 for
//! a run that failed; no new run folder for an error found before
//! training; an existing run folder never damaged.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use runner::data::fixtures;

use crate::common::{
    assert_exit, read_latest, runner, runner_on, runner_process, stderr, tiny_experiment,
};

/// Run folders (`v*`) under `runs/<name>`.
fn run_folders(runs: &Path, name: &str) -> Vec<PathBuf> {
    std::fs::read_dir(runs.join(name))
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('v'))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn meta(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap()
}

fn no_panic(out: &std::process::Output) {
    let err = stderr(out);
    assert!(!err.contains("panicked"), "{err}");
    assert_ne!(out.status.code(), Some(101), "{err}");
}

#[test]
fn a_closed_stdout_does_not_stop_a_run_or_an_eval() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(tmp.path(), "pipe", "");
    let runs = tmp.path().join("runs");
    // The reader goes away before runner writes a line (`runner run | head -0`).
    let mut child = runner_process()
        .arg("run")
        .arg(&exp)
        .arg("--runs-dir")
        .arg(&runs)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    no_panic(&out);
    assert_exit(&out, 0);
    let dir = runs
        .join("pipe")
        .join(read_latest(runs.join("pipe/latest")).unwrap());
    assert_eq!(meta(&dir)["status"], "completed");
    assert!(dir.join("report/predictions.csv").is_file());

    let mut child = runner_process()
        .arg("eval")
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    no_panic(&out);
    assert_exit(&out, 0);
}

#[test]
fn errors_found_before_training_leave_no_run_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    // A device this build lacks.
    let exp = tiny_experiment(tmp.path(), "nodevice", "");
    let out = runner_on("run", &exp, &runs)
        .args([
            "--device",
            if cfg!(feature = "cuda") {
                "cuda:99"
            } else {
                "cuda"
            },
        ])
        .output()
        .unwrap();
    no_panic(&out);
    assert_exit(&out, 2);
    assert!(run_folders(&runs, "nodevice").is_empty());
    assert!(!runs.join("nodevice/latest").exists());
    // A class-count mismatch found when the data is opened.
    let exp = tiny_experiment(tmp.path(), "classes", "");
    let out = runner_on("run", &exp, &runs)
        .args(["--set", "data.classes=3"])
        .output()
        .unwrap();
    no_panic(&out);
    assert_exit(&out, 2);
    assert!(run_folders(&runs, "classes").is_empty(), "{}", stderr(&out));
}

#[test]
fn folder_arguments_that_name_no_run_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    for args in [
        vec![
            "run".to_string(),
            "--resume".into(),
            tmp.path().display().to_string(),
        ],
        vec!["eval".into(), tmp.path().join("nope").display().to_string()],
    ] {
        let out = runner().args(&args).output().unwrap();
        no_panic(&out);
        assert_exit(&out, 2);
        assert!(
            stderr(&out).contains("is not a run folder"),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn absurd_counts_are_config_errors_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    for (from, to, key) in [
        (
            "test_size = 32",
            "test_size = 32\nprefetch = 1000000000",
            "data.prefetch",
        ),
        (
            "batch_size = 16",
            "batch_size = 1000000000",
            "train.batch_size",
        ),
        ("epochs = 3", "epochs = 1000000000000", "train.epochs"),
    ] {
        let exp = tiny_experiment(tmp.path(), "counts", "");
        let text = std::fs::read_to_string(&exp).unwrap().replacen(from, to, 1);
        std::fs::write(&exp, text).unwrap();
        let out = runner().arg("check").arg(&exp).output().unwrap();
        no_panic(&out);
        assert_exit(&out, 2);
        let err = stderr(&out);
        assert!(
            err.contains(&format!("`{key}`")) && err.contains("out of range"),
            "{key}: {err}"
        );
        assert!(err.contains("counts.toml"), "names the file: {err}");
        // The same bound holds for a value given on the command line.
        let value = to.rsplit(" = ").next().unwrap();
        let out = runner()
            .arg("check")
            .arg(tiny_experiment(tmp.path(), "counts", ""))
            .args(["--set", &format!("{key}={value}")])
            .output()
            .unwrap();
        no_panic(&out);
        assert_exit(&out, 2);
        assert!(
            stderr(&out).contains(&format!("--set {key}=")),
            "{}",
            stderr(&out)
        );
    }
    // A grid of 10^7 trials, and a random sweep of 10^9.
    let axes: String = [
        (
            "model.dropout",
            "0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9",
        ),
        (
            "data.noise",
            "0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9",
        ),
        (
            "optimizer.learning_rate",
            "1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 2e-1, 2e-2, 2e-3, 2e-4",
        ),
        ("experiment.seed", "1, 2, 3, 4, 5, 6, 7, 8, 9, 10"),
        ("data.train_size", "90, 91, 92, 93, 94, 95, 96, 97, 98, 99"),
        ("train.batch_size", "1, 2, 3, 4, 5, 6, 7, 8, 9, 10"),
        ("train.epochs", "1, 2, 3, 4, 5, 6, 7, 8, 9, 10"),
    ]
    .iter()
    .map(|(k, v)| format!("\"{k}\" = [{v}]\n"))
    .collect();
    let grid = tiny_experiment(
        tmp.path(),
        "grid",
        &format!("[sweep]\nstrategy = \"grid\"\nmetric = \"val_accuracy\"\n[sweep.grid]\n{axes}"),
    );
    let out = runner()
        .args(["sweep", "--dry-run"])
        .arg(&grid)
        .output()
        .unwrap();
    no_panic(&out);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("10000000 trials"), "{}", stderr(&out));
    let random = tiny_experiment(
        tmp.path(),
        "random",
        "[sweep]\nstrategy = \"random\"\ntrials = 1000000000\nmetric = \"val_accuracy\"\n[sweep.random]\n\"model.dropout\" = { distribution = \"uniform\", low = 0.0, high = 0.5 }\n",
    );
    let out = runner()
        .args(["sweep", "--dry-run"])
        .arg(&random)
        .output()
        .unwrap();
    no_panic(&out);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("`sweep.trials`"), "{}", stderr(&out));
}

#[test]
fn a_negative_or_nan_poll_interval_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    for value in [
        "--poll-seconds=-1",
        "--poll-seconds=NaN",
        "--poll-seconds=inf",
    ] {
        let out = runner()
            .args(["sweep", "--status"])
            .arg(tmp.path())
            .arg(value)
            .output()
            .unwrap();
        no_panic(&out);
        assert_exit(&out, 2);
        assert!(
            stderr(&out).contains("not a positive number of seconds"),
            "{value}: {}",
            stderr(&out)
        );
    }
}

/// An image-folder experiment on 16x16 PNGs of 2 classes, 6 each.
fn folder_experiment(dir: &Path, name: &str, policy: &str) -> (PathBuf, PathBuf) {
    let root = dir.join(format!("{name}-images"));
    fixtures::image_folder(&root, &["a", "b"], 6, (16, 16), "png").unwrap();
    let text = format!(
        r#"[experiment]
name = "{name}"
seed = 1
[data]
source = "image_folder"
path = "{}"
on_bad_image = "{policy}"
[augment]
rescale = "1/255"
[model]
input_shape = [16, 16, 3]
layers = [ {{ type = "flatten" }}, {{ type = "dense", units = 2, activation = "softmax" }} ]
[train]
epochs = 2
batch_size = 4
[callbacks.checkpoint]
monitor = "loss"
"#,
        root.display()
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    (path, root)
}

#[test]
fn unreadable_headers_stop_a_run_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let (exp, root) = folder_experiment(tmp.path(), "headers", "fail");
    std::fs::write(root.join("a/empty.png"), b"").unwrap();
    std::fs::write(root.join("b/text.png"), b"not an image at all").unwrap();
    let runs = tmp.path().join("runs");
    let out = runner_on("run", &exp, &runs).output().unwrap();
    no_panic(&out);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("2 image(s) cannot be decoded"), "{err}");
    assert!(err.contains("empty.png"), "names the first file: {err}");
    assert!(run_folders(&runs, "headers").is_empty());
}

#[test]
fn a_truncated_image_fails_the_run_at_its_batch_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (exp, root) = folder_experiment(tmp.path(), "truncated", "fail");
    // A good header, then the data cut short.
    let good = std::fs::read(root.join("a/img_00000.png")).unwrap();
    std::fs::write(root.join("a/cut.png"), &good[..good.len() / 2]).unwrap();
    let runs = tmp.path().join("runs");
    let out = runner_on("run", &exp, &runs).output().unwrap();
    no_panic(&out);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("cut.png"), "{}", stderr(&out));
    let dir = &run_folders(&runs, "truncated")[0];
    assert_eq!(meta(dir)["status"], "failed");
}

#[test]
fn skipped_images_are_counted_and_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let (exp, root) = folder_experiment(tmp.path(), "skip", "skip");
    std::fs::write(root.join("a/empty.png"), b"").unwrap();
    let good = std::fs::read(root.join("b/img_00000.png")).unwrap();
    std::fs::write(root.join("b/cut.png"), &good[..good.len() / 2]).unwrap();
    let runs = tmp.path().join("runs");
    let out = runner_on("run", &exp, &runs).output().unwrap();
    no_panic(&out);
    assert_exit(&out, 0);
    let text = crate::common::stdout(&out);
    assert!(text.contains("Skipped 2 unreadable image(s)"), "{text}");
    let dir = &run_folders(&runs, "skip")[0];
    assert_eq!(meta(dir)["skipped_images"], 2);
}

#[test]
fn eval_takes_a_checkpoint_name_never_a_path() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let exp = tiny_experiment(tmp.path(), "evalpath", "");
    let out = runner_on("run", &exp, &runs).output().unwrap();
    assert_exit(&out, 0);
    let run = runs.join("evalpath/latest");
    // A folder that holds a model file of the right name.
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let dir = runs.join("evalpath").join(read_latest(&run).unwrap());
    std::fs::copy(
        dir.join("checkpoints/final/model.mpk"),
        elsewhere.join("model.mpk"),
    )
    .unwrap();
    for name in [
        elsewhere.display().to_string(),
        "../../../elsewhere".to_string(),
        "final/..".to_string(),
    ] {
        let out = runner()
            .arg("eval")
            .arg(&run)
            .args(["--checkpoint", &name])
            .output()
            .unwrap();
        no_panic(&out);
        assert_exit(&out, 2);
        assert!(stderr(&out).contains("not the path"), "{}", stderr(&out));
    }
    let left: Vec<_> = std::fs::read_dir(&elsewhere).unwrap().flatten().collect();
    assert_eq!(left.len(), 1, "nothing was written next to the model file");
    let out = runner()
        .arg("eval")
        .arg(&run)
        .args(["--checkpoint", "best"])
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert!(dir.join("eval/best/evaluation.json").is_file());
    assert!(dir.join("eval/best/predictions.csv").is_file());
}

/// The first column of metrics.csv: the epochs logged, in order.
fn csv_epochs(dir: &Path) -> Vec<usize> {
    let text = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn a_torn_last_checkpoint_falls_back_and_stale_temps_are_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let exp = tiny_experiment(tmp.path(), "torn", "");
    let out = runner_on("run", &exp, &runs).output().unwrap();
    assert_exit(&out, 0);
    let dir = runs
        .join("torn")
        .join(read_latest(runs.join("torn/latest")).unwrap());
    let ck = dir.join("checkpoints");
    // What a power loss after the last epoch's checkpoint can leave: a
    // status still `running`, a `last` whose optimizer state never reached
    // the disk, and the temporary files of writers that were cut off.
    let mut m = meta(&dir);
    m["status"] = "running".into();
    std::fs::write(dir.join("meta.json"), m.to_string()).unwrap();
    assert_eq!(
        std::fs::read_link(ck.join("last")).unwrap(),
        Path::new("epoch-0003")
    );
    std::fs::write(ck.join("epoch-0003/optimizer.mpk"), b"").unwrap();
    let temps = [
        dir.join(".tmp-metrics"),
        ck.join("epoch-0002/.tmp-model"),
        ck.join(".link-4242-last"),
    ];
    for t in &temps {
        std::fs::write(t, b"half").unwrap();
    }

    let out = runner()
        .args(["run", "--resume"])
        .arg(&dir)
        .output()
        .unwrap();
    no_panic(&out);
    assert_exit(&out, 0);
    let text = format!("{}{}", crate::common::stdout(&out), stderr(&out));
    assert!(
        text.contains("epoch 3 does not load") && text.contains("falling back to epoch 2"),
        "{text}"
    );
    assert!(text.contains("Removed 3 temporary file(s)"), "{text}");
    for t in &temps {
        assert!(!t.exists(), "{} is left", t.display());
    }
    assert_eq!(
        csv_epochs(&dir),
        vec![0, 1, 2],
        "epoch 3 trained again, logged once"
    );
    assert_eq!(meta(&dir)["status"], "completed");
    assert_eq!(
        std::fs::read_link(ck.join("last")).unwrap(),
        Path::new("epoch-0003")
    );
    // The new `last` is whole and its fallback is kept.
    for e in ["epoch-0003", "epoch-0002"] {
        for f in ["model.mpk", "optimizer.mpk", "state.json"] {
            assert!(ck.join(e).join(f).is_file(), "{e}/{f}");
        }
    }
}
