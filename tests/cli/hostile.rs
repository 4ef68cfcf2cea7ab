//! Input a hostile user or a crash can produce: closed pipes, wrong folder
//! arguments, absurd counts, unreadable images. The contract: no panic;
//! exit 2 naming the file for command, config and data errors, exit 1 for
//! a run that failed; no new run folder for an error found before
//! training; an existing run folder never damaged.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use runner::data::fixtures;

use crate::common::{
    assert_exit, csv_epochs, meta, run_dir, runner, runner_bound_by_permissions, runner_in_shell,
    runner_on, runner_process, stderr, stdout, sweep_dir, tiny_experiment,
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
    let dir = run_dir(&runs, "pipe");
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
fn a_wrong_folder_argument_names_the_folder_to_give_instead() {
    let tmp = tempfile::tempdir().unwrap();
    tiny_experiment(
        tmp.path(),
        "wf",
        "[sweep]\nstrategy = \"grid\"\nmetric = \"val_accuracy\"\n[sweep.grid]\n\"model.dropout\" = [0.0, 0.2]\n",
    );
    // Relative paths from the temporary folder, so the snapshot holds no
    // temporary names.
    let out = runner()
        .current_dir(tmp.path())
        .args([
            "sweep",
            "wf.toml",
            "--set",
            "train.epochs=1",
            "--runs-dir",
            "runs",
        ])
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let sweep = "runs/wf/sweeps/s0001";
    let trial = std::fs::read_to_string(tmp.path().join(sweep).join("best")).unwrap();
    let trial = format!("{sweep}/{}", trial.trim());
    let inside = format!("{trial}/checkpoints");
    let commands: Vec<Vec<&str>> = vec![
        vec!["eval", "runs/wf"],
        vec!["eval", sweep],
        vec!["run", "--resume", "runs"],
        vec!["export", "runs/wff", "--format", "onnx"],
        vec!["sweep", "--status", "runs/wf"],
        vec!["sweep", "--status", &trial],
        vec!["sweep", "--resume", "runs/wf/sweeps/s0002"],
        vec!["compare", &trial, &inside],
        // The experiment file itself.
        vec!["predict", "wf.toml", "x.png"],
        vec!["sweep", "--status", "wf.toml"],
        // A folder where the experiment file goes.
        vec!["run", "runs/wf/sweeps/s0001"],
        vec!["sweep", sweep],
        vec!["check", &trial],
        vec!["data", "runs/wf"],
        vec!["summary", "."],
    ];
    let mut text = String::new();
    for args in commands {
        let out = runner()
            .current_dir(tmp.path())
            .args(&args)
            .output()
            .unwrap();
        no_panic(&out);
        assert_exit(&out, 2);
        text += &format!("$ runner {}\n{}\n", args.join(" "), stderr(&out).trim_end());
    }
    let text = text.replace(trial.rsplit('/').next().unwrap(), "trial-NNN-xxxxxx");
    insta::assert_snapshot!("wrong-folder-arguments", text);
    // What the messages offer is what the commands take.
    let config = format!("{trial}/config.resolved.toml");
    for args in [
        vec!["eval", "runs/wf/sweeps/s0001/best"],
        vec!["eval", "runs/wf/sweeps/latest/best"],
        vec!["sweep", "--status", "runs/wf/sweeps/latest"],
        vec!["compare", "runs/wf/sweeps/latest"],
        vec!["compare", "runs", "--sort", "time"],
        vec!["check", &config],
        vec!["sweep", "--status", sweep],
    ] {
        let out = runner()
            .current_dir(tmp.path())
            .args(&args)
            .output()
            .unwrap();
        assert_exit(&out, 0);
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
    let dir = run_dir(&runs, "evalpath");
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

#[test]
fn a_torn_last_checkpoint_falls_back_and_stale_temps_are_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let exp = tiny_experiment(tmp.path(), "torn", "");
    let out = runner_on("run", &exp, &runs).output().unwrap();
    assert_exit(&out, 0);
    let dir = run_dir(&runs, "torn");
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

/// An experiment on a data table given as TOML, a `[16, 16, c]` input and
/// a dense head of `classes` outputs.
fn data_experiment(dir: &Path, name: &str, data: &str, channels: usize, classes: usize) -> PathBuf {
    let text = format!(
        "[experiment]\nname = \"{name}\"\n[data]\n{data}\n[model]\ninput_shape = [16, 16, {channels}]\nlayers = [ {{ type = \"flatten\" }}, {{ type = \"dense\", units = {classes}, activation = \"softmax\" }} ]\n[train]\nepochs = 1\nbatch_size = 4\n"
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// A data error: exit 2, no panic, the named file in the message, no run
/// folder.
fn refused_before_training(exp: &Path, runs: &Path, name: &str, names: &str) -> String {
    let out = runner_on("run", exp, runs).output().unwrap();
    no_panic(&out);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{name}: {err}");
    assert!(err.contains(names), "{name}: names `{names}`: {err}");
    assert!(
        run_folders(runs, name).is_empty(),
        "{name}: a run folder was made"
    );
    err
}

#[test]
fn corrupt_data_files_are_refused_before_training_naming_them() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");

    // IDX: a wrong magic number, and dimensions that do not match the data.
    let idx = tmp.path().join("idx");
    fixtures::idx_files(&idx, 24, 8, 2, 16, 16, false).unwrap();
    let data = format!(
        "source = \"idx\"\npath = \"{}\"\ntrain_images = \"train-images-idx3-ubyte\"\ntrain_labels = \"train-labels-idx1-ubyte\"\ntest_images = \"t10k-images-idx3-ubyte\"\ntest_labels = \"t10k-labels-idx1-ubyte\"\nclass_names = [\"a\", \"b\"]",
        idx.display()
    );
    let exp = data_experiment(tmp.path(), "idxmagic", &data, 1, 2);
    let images = idx.join("train-images-idx3-ubyte");
    let good = std::fs::read(&images).unwrap();
    let mut bad = good.clone();
    bad[3] = 1; // 0x00000801: a label file's magic
    std::fs::write(&images, &bad).unwrap();
    let err = refused_before_training(&exp, &runs, "idxmagic", "train-images-idx3-ubyte");
    assert!(err.contains("magic"), "{err}");

    let exp = data_experiment(tmp.path(), "idxdims", &data, 1, 2);
    let mut bad = good.clone();
    bad[11] = 17; // 24 x 17 x 16 promised, 24 x 16 x 16 present
    std::fs::write(&images, &bad).unwrap();
    let err = refused_before_training(&exp, &runs, "idxdims", "train-images-idx3-ubyte");
    assert!(err.contains("6528 bytes"), "{err}");

    let exp = data_experiment(tmp.path(), "idxempty", &data, 1, 2);
    std::fs::write(&images, b"").unwrap();
    refused_before_training(&exp, &runs, "idxempty", "train-images-idx3-ubyte");
    std::fs::write(&images, &good).unwrap();
    std::fs::write(idx.join("t10k-labels-idx1-ubyte"), idx_labels(7)).unwrap();
    let exp = data_experiment(tmp.path(), "idxcount", &data, 1, 2);
    refused_before_training(&exp, &runs, "idxcount", "t10k");

    // Food-101: malformed meta files.
    let food = tmp.path().join("food");
    fixtures::food101(&food, &["pizza", "sushi"], 4, 2, (16, 16)).unwrap();
    let data = format!("source = \"food101\"\npath = \"{}\"", food.display());
    for (name, text) in [
        ("foodtorn", "{\"pizza\": [\"pizza/1000\""),
        ("foodtype", "{\"pizza\": 3, \"sushi\": []}"),
        ("foodempty", ""),
        (
            "foodescape",
            "{\"pizza\": [\"../../etc/passwd\"], \"sushi\": [\"sushi/1000\"]}",
        ),
    ] {
        std::fs::write(food.join("meta/train.json"), text).unwrap();
        let exp = data_experiment(tmp.path(), name, &data, 3, 2);
        refused_before_training(&exp, &runs, name, "train.json");
    }

    // Image folders: a zero-byte image, and a folder with no images.
    let (exp, root) = folder_experiment(tmp.path(), "zerobyte", "fail");
    std::fs::write(root.join("b/zero.png"), b"").unwrap();
    refused_before_training(&exp, &runs, "zerobyte", "zero.png");
    let (exp, root) = folder_experiment(tmp.path(), "noimages", "fail");
    for f in std::fs::read_dir(root.join("b")).unwrap().flatten() {
        std::fs::remove_file(f.path()).unwrap();
    }
    refused_before_training(&exp, &runs, "noimages", "b");
}

/// A plain IDX label file of `n` labels.
fn idx_labels(n: usize) -> Vec<u8> {
    runner::data::idx::encode(&[n], &vec![0; n])
}

#[test]
fn torn_run_and_sweep_files_fail_cleanly_and_damage_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let exp = tiny_experiment(tmp.path(), "torn2", "");
    assert_exit(&runner_on("run", &exp, &runs).output().unwrap(), 0);
    let dir = run_dir(&runs, "torn2");
    let snapshot = |d: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        let mut v: Vec<_> = walkdir::WalkDir::new(d)
            .into_iter()
            .flatten()
            .filter(|e| e.file_type().is_file())
            .map(|e| (e.path().to_path_buf(), std::fs::read(e.path()).unwrap()))
            .collect();
        v.sort();
        v
    };

    // A checkpoint missing its model file: eval names what is there.
    let final_model = dir.join("checkpoints/final/model.mpk");
    let kept = std::fs::read(&final_model).unwrap();
    std::fs::remove_file(&final_model).unwrap();
    let before = snapshot(&dir);
    let out = runner().arg("eval").arg(&dir).output().unwrap();
    no_panic(&out);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("no `final` checkpoint"),
        "{}",
        stderr(&out)
    );
    assert_eq!(snapshot(&dir), before, "eval changed the run folder");
    std::fs::write(&final_model, kept).unwrap();

    // A torn meta.json: resume refuses and changes nothing; eval, which
    // reads only the config and a checkpoint, still works.
    let meta_path = dir.join("meta.json");
    let text = std::fs::read_to_string(&meta_path).unwrap();
    std::fs::write(&meta_path, &text[..text.len() / 2]).unwrap();
    let before = snapshot(&dir);
    let out = runner()
        .args(["run", "--resume"])
        .arg(&dir)
        .output()
        .unwrap();
    no_panic(&out);
    let code = out.status.code();
    assert!(code == Some(1) || code == Some(2), "{code:?}");
    assert!(stderr(&out).contains("meta.json"), "{}", stderr(&out));
    assert_eq!(snapshot(&dir), before, "--resume changed the run folder");
    let out = runner().arg("eval").arg(&dir).output().unwrap();
    no_panic(&out);
    assert_exit(&out, 0);

    // A sweep whose journal's last line was torn by a kill: resume reads
    // the whole lines and never runs a finished trial again.
    let exp = tiny_experiment(
        tmp.path(),
        "tornsweep",
        "[sweep]\n[sweep.grid]\n\"model.dropout\" = [0.0, 0.2]\n",
    );
    let out = runner()
        .arg("sweep")
        .arg(&exp)
        .args(["--set", "train.epochs=1", "--runs-dir"])
        .arg(&runs)
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let sweep = sweep_dir(&runs, "tornsweep");
    let journal = sweep.join("journal.jsonl");
    let mut text = std::fs::read_to_string(&journal).unwrap();
    text.push_str("{\"trial\": 1, \"state\": \"runn");
    std::fs::write(&journal, &text).unwrap();
    let out = runner()
        .args(["sweep", "--resume"])
        .arg(&sweep)
        .output()
        .unwrap();
    no_panic(&out);
    assert_exit(&out, 0);
    assert!(
        crate::common::stdout(&out).contains("0 trial(s) to run"),
        "{}",
        crate::common::stdout(&out)
    );
    // A torn sweep.json: exit 2 naming it.
    let meta = sweep.join("sweep.json");
    let text = std::fs::read_to_string(&meta).unwrap();
    std::fs::write(&meta, &text[..text.len() / 2]).unwrap();
    for args in [vec!["sweep", "--resume"], vec!["sweep", "--status"]] {
        let out = runner().args(&args).arg(&sweep).output().unwrap();
        no_panic(&out);
        let code = out.status.code();
        assert!(
            code == Some(1) || code == Some(2),
            "{args:?}: {code:?} {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains("sweep.json"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn a_sweep_whose_stdout_closes_still_runs_every_trial() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let exp = tiny_experiment(
        tmp.path(),
        "pipesweep",
        "[sweep]\n[sweep.grid]\n\"model.dropout\" = [0.0, 0.1, 0.2]\n",
    );
    let mut child = runner_process()
        .arg("sweep")
        .arg(&exp)
        .args(["--set", "train.epochs=1", "--runs-dir"])
        .arg(&runs)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    no_panic(&out);
    assert_exit(&out, 0);
    let sweep = sweep_dir(&runs, "pipesweep");
    let rows = std::fs::read_to_string(sweep.join("summary.csv")).unwrap();
    assert_eq!(
        rows.lines().filter(|l| l.contains(",done,")).count(),
        3,
        "{rows}"
    );
}

/// A step into a TOML document: a table key or an array index.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// Every scalar or scalar-array leaf, and every table (for unknown keys),
/// by path.
fn walk(
    value: &toml::Value,
    path: &mut Vec<Step>,
    leaves: &mut Vec<Vec<Step>>,
    tables: &mut Vec<Vec<Step>>,
) {
    match value {
        toml::Value::Table(t) => {
            tables.push(path.clone());
            for (k, v) in t {
                path.push(Step::Key(k.clone()));
                walk(v, path, leaves, tables);
                path.pop();
            }
        }
        toml::Value::Array(a) if a.iter().any(|v| v.is_table()) => {
            for (i, v) in a.iter().enumerate() {
                path.push(Step::Index(i));
                walk(v, path, leaves, tables);
                path.pop();
            }
        }
        _ => leaves.push(path.clone()),
    }
}

fn at<'a>(value: &'a mut toml::Value, path: &[Step]) -> &'a mut toml::Value {
    path.iter().fold(value, |v, step| match step {
        Step::Key(k) => &mut v.as_table_mut().unwrap()[k],
        Step::Index(i) => &mut v.as_array_mut().unwrap()[*i],
    })
}

fn path_text(path: &[Step]) -> String {
    path.iter()
        .map(|s| match s {
            Step::Key(k) => k.clone(),
            Step::Index(i) => i.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Mutants of one experiment: (kind, what was changed, TOML text).
fn mutants(text: &str) -> Vec<(&'static str, String, String)> {
    let doc: toml::Value = toml::from_str(text).unwrap();
    let (mut leaves, mut tables) = (Vec::new(), Vec::new());
    walk(&doc, &mut Vec::new(), &mut leaves, &mut tables);
    let mut out = Vec::new();
    let mut push = |kind, path: &[Step], doc: toml::Value| {
        out.push((kind, path_text(path), toml::to_string(&doc).unwrap()));
    };
    for path in &leaves {
        let (last, parent) = path.split_last().unwrap();
        let mut d = doc.clone();
        match (at(&mut d, parent), last) {
            (toml::Value::Table(t), Step::Key(k)) => drop(t.remove(k)),
            (toml::Value::Array(a), Step::Index(i)) => drop(a.remove(*i)),
            _ => unreachable!(),
        }
        push("deleted key", path, d);
        let old = at(&mut doc.clone(), path).clone();
        let wrong = match &old {
            toml::Value::String(_) => vec![toml::Value::Integer(12345)],
            toml::Value::Array(_) => vec![
                toml::Value::String("oops".into()),
                toml::Value::Array(vec![]),
            ],
            _ => vec![toml::Value::String("oops".into())],
        };
        for v in wrong {
            let mut d = doc.clone();
            *at(&mut d, path) = v;
            push("wrong type", path, d);
        }
        let extreme = match &old {
            toml::Value::Integer(_) => vec![
                toml::Value::Integer(-1),
                toml::Value::Integer(0),
                toml::Value::Integer(1 << 50),
            ],
            toml::Value::Float(_) => vec![
                toml::Value::Float(-1.0),
                toml::Value::Float(1e300),
                toml::Value::Float(f64::NAN),
            ],
            toml::Value::String(_) => vec![toml::Value::String(String::new())],
            _ => vec![],
        };
        for v in extreme {
            let mut d = doc.clone();
            *at(&mut d, path) = v;
            push("out of range", path, d);
        }
    }
    for path in &tables {
        let mut d = doc.clone();
        at(&mut d, path)
            .as_table_mut()
            .unwrap()
            .insert("zz_unknown".into(), toml::Value::Integer(1));
        push("unknown key", path, d);
    }
    // A table header written twice.
    for line in text
        .lines()
        .filter(|l| l.trim_start().starts_with('[') && !l.contains("[["))
    {
        out.push((
            "duplicated table",
            line.trim().to_string(),
            format!("{text}\n{}\n", line.trim()),
        ));
    }
    out
}

/// The shipped experiments, `experiments/*.toml`, sorted.
fn experiment_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(crate::common::root().join("experiments"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_mutation_of_the_experiment_files_is_refused_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let files = experiment_files();
    assert!(!files.is_empty());
    let mut tally: std::collections::BTreeMap<(&str, Option<i32>), usize> = Default::default();
    let mut accepted = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
        for (n, (kind, what, mutant)) in mutants(&text).into_iter().enumerate() {
            let path = tmp.path().join(format!("{stem}-m{n:04}.toml"));
            std::fs::write(&path, &mutant).unwrap();
            let out = runner().arg("check").arg(&path).output().unwrap();
            let err = stderr(&out);
            let code = out.status.code();
            let case = format!("{stem}: {kind} `{what}`");
            assert!(!err.contains("panicked"), "{case}: {err}");
            assert!(
                code == Some(0) || code == Some(2),
                "{case}: exit {code:?}: {err}"
            );
            if code == Some(2) {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                assert!(err.contains(&name), "{case}: the file is not named: {err}");
            }
            if matches!(kind, "unknown key" | "duplicated table") {
                assert_eq!(code, Some(2), "{case}: accepted");
            }
            if kind == "unknown key" {
                assert!(err.contains("zz_unknown"), "{case}: {err}");
            }
            if kind == "out of range" && code == Some(0) {
                accepted.push(case);
            }
            *tally.entry((kind, code)).or_default() += 1;
        }
    }
    // The closing note's table: how many mutants of each kind gave which exit.
    for ((kind, code), n) in &tally {
        println!("{kind:>16}  exit {}  {n}", code.unwrap_or(-1));
    }
    // Extreme values that are still valid: 0 or 2^50 as a seed or a
    // patience, an empty description, 0 degrees of rotation, a huge learning
    // rate (legal, and a NaN loss then fails the run with exit 1), 2^50 as
    // "the first N classes" of a folder (a data error, exit 2, once `runner
    // run` sees how many there are), a validation split of 0 where no
    // callback watches a validation metric; a sweep's learning-rate range
    // reaching 1e300 (as legal as the learning rate itself) and a time
    // budget of 2^50 hours.
    let legal = [
        "seed",
        "description",
        "patience",
        "rotation_range",
        "learning_rate",
        "learning_rate.high",
        "learning_rate.0.high",
        "learning_rate.1.high",
        "max_hours",
        "classes",
        "validation_split",
    ];
    for case in &accepted {
        assert!(
            legal.iter().any(|k| case.contains(&format!("{k}`"))),
            "accepted: {case}"
        );
    }
}

/// Every variant of the optimizer and the data source chosen by `--set`
/// over every shipped experiment, and over its resolved config (as a run
/// folder keeps it, every default of the old variant written out): the
/// keys the file gave the old variant are dropped (an optimizer switch
/// always checks), and nothing panics.
#[test]
fn a_variant_switched_by_set_over_any_experiment_never_panics() {
    let tmp = tempfile::tempdir().unwrap();
    let mut files = experiment_files();
    for file in files.clone() {
        let out = runner()
            .arg("check")
            .arg(&file)
            .arg("--show-config")
            .output()
            .unwrap();
        assert_exit(&out, 0);
        let resolved = tmp.path().join(
            file.file_name()
                .unwrap()
                .to_string_lossy()
                .replace(".toml", "-resolved.toml"),
        );
        std::fs::write(&resolved, stdout(&out)).unwrap();
        files.push(resolved);
    }
    let switches = [
        ("optimizer.type", &["rmsprop", "adam", "adamw", "sgd"][..]),
        (
            "data.source",
            &["synthetic", "idx", "image_folder", "food101"][..],
        ),
    ];
    for file in &files {
        for (key, variants) in switches {
            for v in variants {
                let set = format!("{key}={v}");
                let out = runner()
                    .arg("check")
                    .arg(file)
                    .args(["--set", &set])
                    .output()
                    .unwrap();
                let case = format!("{} --set {set}", file.display());
                no_panic(&out);
                let code = out.status.code();
                if key == "optimizer.type" {
                    assert_eq!(code, Some(0), "{case}: {}", stderr(&out));
                } else {
                    assert!(matches!(code, Some(0 | 2)), "{case}: {}", stderr(&out));
                }
            }
        }
    }
}

/// An output named on the command line that cannot be a file (under a
/// file, or a folder already) is the command's mistake: exit 2, naming
/// the path and why, and nothing is written.
#[test]
fn an_output_path_that_cannot_be_written_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(tmp.path(), "out", "");
    let out = runner()
        .current_dir(tmp.path())
        .args([
            "run",
            "out.toml",
            "--set",
            "train.epochs=1",
            "--runs-dir",
            "runs",
        ])
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert!(exp.is_file());
    let run = "runs/out/v0001";
    let image = format!("{run}/report/predictions.png");
    std::fs::write(tmp.path().join("notes.txt"), "mine").unwrap();
    for (args, why) in [
        (
            vec!["run", "out.toml", "--runs-dir", "notes.txt/runs"],
            "cannot create run folder under notes.txt/runs/out: notes.txt is a file, not a folder",
        ),
        (
            vec!["compare", "runs", "--csv", "notes.txt/all.csv"],
            "notes.txt is a file, not a folder",
        ),
        (
            vec!["compare", "runs", "--plot", "runs"],
            "cannot write runs: Is a directory",
        ),
        (
            vec![
                "export",
                run,
                "--format",
                "onnx",
                "--output",
                "notes.txt/m/model.onnx",
            ],
            "notes.txt is a file, not a folder",
        ),
        (
            vec!["predict", run, &image, "-o", "notes.txt/p.csv"],
            "cannot write notes.txt/p.csv: notes.txt is a file, not a folder",
        ),
        (
            vec!["predict", run, &image, "--grid", "runs"],
            "cannot write runs: Is a directory",
        ),
        (
            vec!["eval", run, "--output", "notes.txt/eval"],
            "cannot write notes.txt/eval: notes.txt is a file, not a folder",
        ),
    ] {
        let out = runner()
            .current_dir(tmp.path())
            .args(&args)
            .output()
            .unwrap();
        no_panic(&out);
        assert_exit(&out, 2);
        assert!(stderr(&out).contains(why), "{args:?}: {}", stderr(&out));
        // Found before the work, except by compare, which is quick.
        if args[0] != "compare" {
            assert_eq!(stdout(&out), "", "{args:?}");
        }
    }
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("notes.txt")).unwrap(),
        "mine"
    );
}

/// A quota or a full disk mid-run (here a file-size limit, which fails a
/// write as a full disk does): the run fails (exit 1) naming the file it
/// could not write, not the temporary file it wrote through; no temporary
/// file is left behind and `meta.json` still reads, saying `failed`.
#[test]
fn a_write_that_fails_mid_run_fails_the_run_and_names_its_file() {
    let tmp = tempfile::tempdir().unwrap();
    // 110,000 weights: model.mpk is about 440 KB, every other file a few KB.
    std::fs::write(
        tmp.path().join("big.toml"),
        r#"[experiment]
name = "big"

[data]
source = "synthetic"
classes = 4
train_size = 32
validation_size = 16
test_size = 16

[model]
input_shape = [12, 12, 3]
layers = [
  { type = "flatten" },
  { type = "dense", units = 256, activation = "relu" },
  { type = "dense", units = 4, activation = "softmax" },
]

[train]
epochs = 2
batch_size = 16
"#,
    )
    .unwrap();
    // `ulimit -f` counts KiB; an ignored SIGXFSZ makes the write fail with
    // EFBIG instead of killing the process.
    let out =
        runner_in_shell(r#"ulimit -f 200; trap '' XFSZ; exec "$0" run big.toml --runs-dir runs"#)
            .current_dir(tmp.path())
            .output()
            .unwrap();
    no_panic(&out);
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("checkpoints/epoch-0001/model.mpk: File too large"),
        "{err}"
    );
    assert!(!err.contains(".tmp-"), "{err}");
    let run = run_dir(&tmp.path().join("runs"), "big");
    assert_eq!(meta(&run)["status"], "failed");
    let leftovers: Vec<_> = walkdir::WalkDir::new(&run)
        .into_iter()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A `runs/` shared by a team: a teammate's run may be closed to me, or
/// readable but not writable. `compare` leaves out what it cannot read
/// and says so; `eval` and `export` say at once, before any work, that
/// they cannot write into the run, and `--output` writes elsewhere.
#[test]
fn a_shared_runs_folder_with_runs_i_cannot_read_or_write() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    tiny_experiment(tmp.path(), "team", "");
    for _ in 0..2 {
        let out = runner()
            .current_dir(tmp.path())
            .args([
                "run",
                "team.toml",
                "--set",
                "train.epochs=1",
                "--runs-dir",
                "runs",
            ])
            .output()
            .unwrap();
        assert_exit(&out, 0);
    }
    let mode = |rel: &str, mode: u32| {
        let path = tmp.path().join(rel);
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    mode("runs/team/v0001", 0o555);
    mode("runs/team/v0002", 0o000);
    let run = |args: &[&str]| {
        let out = runner_bound_by_permissions()
            .current_dir(tmp.path())
            .args(args)
            .output()
            .unwrap();
        no_panic(&out);
        out
    };
    let out = run(&["compare", "runs"]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("team/v0001"), "{}", stdout(&out));
    assert!(!stdout(&out).contains("v0002"), "{}", stdout(&out));
    assert_eq!(
        stderr(&out).trim(),
        "warning: left out runs/team/v0002: Permission denied (os error 13)"
    );
    let out = run(&["eval", "runs/team/v0002"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out)
            .contains("runs/team/v0002 is not a run folder: it cannot be read: Permission denied"),
        "{}",
        stderr(&out)
    );
    for (args, why) in [
        (
            vec!["eval", "runs/team/v0001"],
            "cannot write runs/team/v0001/eval/final: Permission denied (os error 13); \
             write elsewhere with --output DIR",
        ),
        (
            vec!["export", "runs/team/v0001", "--format", "onnx"],
            "cannot write runs/team/v0001/export/model.onnx: Permission denied (os error 13); \
             write elsewhere with --output FILE",
        ),
        (
            vec![
                "run",
                "--resume",
                "runs/team/v0001",
                "--set",
                "train.epochs=2",
            ],
            "cannot write runs/team/v0001: Permission denied (os error 13); to train on \
             from this run's weights, start a run of your own with \
             `model.init_from = \"runs/team/v0001\"`",
        ),
    ] {
        let out = run(&args);
        assert_exit(&out, 2);
        assert!(stderr(&out).contains(why), "{args:?}: {}", stderr(&out));
        if args[0] != "run" {
            assert_eq!(stdout(&out), "", "{args:?}: no work before the check");
        }
    }
    let out = run(&["eval", "runs/team/v0001", "--output", "mine/eval"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("Report: mine/eval"),
        "{}",
        stdout(&out)
    );
    assert!(tmp.path().join("mine/eval/evaluation.json").is_file());
    let out = run(&[
        "export",
        "runs/team/v0001",
        "--format",
        "onnx",
        "-o",
        "mine/m.onnx",
    ]);
    assert_exit(&out, 0);
    assert!(tmp.path().join("mine/m.onnx").is_file());
    // The tempdir's owner gets it back to remove it.
    mode("runs/team/v0001", 0o755);
    mode("runs/team/v0002", 0o755);
    assert!(!tmp.path().join("runs/team/v0001/eval").exists());
}
