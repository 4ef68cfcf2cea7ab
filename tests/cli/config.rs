//! Experiment files: every shipped file checks, broken files fail with exit
//! code 2 and a located message, overrides reach the resolved config.

use std::path::PathBuf;

use crate::common::{assert_exit, root, runner, stderr, stdout};

#[test]
fn every_experiment_file_checks() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("experiments"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 2,
        "experiments/ holds the shipped experiments"
    );
    for f in files {
        let out = runner().arg("check").arg(&f).output().unwrap();
        assert!(out.status.success(), "{}: {}", f.display(), stderr(&out));
        assert!(stdout(&out).starts_with("ok: "), "{}", stdout(&out));
    }
}

/// Every broken file fails before any compute with exit code 2 and a message
/// that names the file and the key or layer; the messages are snapshotted.
#[test]
fn broken_corpus_fails_with_located_messages() {
    let dir = root().join("tests/fixtures/broken");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        // A parent of another fixture, not a case of its own.
        .filter(|p| !p.ends_with("extends-cycle-parent.toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 25, "the corpus has {} files", files.len());
    for f in &files {
        let rel = f.strip_prefix(root()).unwrap();
        let out = runner().arg("check").arg(rel).output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{}: {err}", rel.display());
        let stem = f.file_stem().unwrap().to_str().unwrap();
        assert!(
            err.contains(".toml:"),
            "{stem}: the message names a file and line: {err}"
        );
        assert!(!err.contains("panicked"), "{stem}: {err}");
        assert!(
            !err.contains("Error {"),
            "{stem}: no Rust debug dump: {err}"
        );
        insta::assert_snapshot!(format!("broken-{stem}"), err);
    }
}

/// An error report is one line per message in a pipe (a Slurm log, CI), so
/// `grep` finds it whole, and wrapped to the width of a terminal. The
/// terminal is a pseudo-terminal of 60 columns made by util-linux `script`.
#[test]
fn error_reports_wrap_on_a_terminal_and_never_in_a_pipe() {
    let file = "tests/fixtures/broken/unknown-augment-key.toml";
    let help = "help: did you mean `horizontal_flip`? (valid keys here: rescale, normalize,";
    let piped = runner().args(["check", file]).output().unwrap();
    assert_exit(&piped, 2);
    let err = stderr(&piped);
    assert!(err.lines().any(|l| l.contains(help)), "{err}");
    assert!(err.lines().any(|l| l.len() > 100), "{err}");

    let bin = assert_cmd::cargo::cargo_bin("runner");
    let shell = format!("stty cols 60 rows 20; {} check {file}", bin.display());
    let mut script = std::process::Command::new("script");
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("RUNNER_")) {
        script.env_remove(k);
    }
    let tty = script
        .args(["-qec", &shell, "/dev/null"])
        .current_dir(root())
        .env("NO_COLOR", "1")
        .output()
        .expect("util-linux `script` runs the check on a pseudo-terminal");
    let text = stdout(&tty).replace('\r', "");
    assert!(text.contains("unknown key `horizontal_flips`"), "{text}");
    assert!(text.contains("did you mean `horizontal_flip`?"), "{text}");
    let widest = text.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    assert!(
        (40..=60).contains(&widest),
        "widest line {widest} columns on a 60-column terminal:\n{text}"
    );
}

#[test]
fn missing_file_is_named_not_a_missing_field() {
    let out = runner()
        .args(["check", "experiments/no-such-file.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("experiments/no-such-file.toml"), "{err}");
    assert!(err.contains("no such file"), "{err}");
    assert!(!err.contains("missing"), "{err}");
}

#[test]
fn set_and_env_overrides_reach_the_resolved_config() {
    let out = runner()
        .args(["check", "experiments/quickstart.toml", "--show-config"])
        .args([
            "--set",
            "optimizer.learning_rate=0.5",
            "--set",
            "train.epochs=9",
        ])
        .env("RUNNER_MODEL__DROPOUT", "0.33")
        .env("RUNNER_OPTIMIZER__LEARNING_RATE", "0.1")
        .env("RUNNER_OS", "Linux") // a CI system's variable: not a config key
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    // --set beats the environment, which beats the file.
    assert!(
        text.contains("learning_rate = 0.5  # from --set optimizer.learning_rate=0.5"),
        "{text}"
    );
    assert!(
        text.contains("epochs = 9  # from --set train.epochs=9"),
        "{text}"
    );
    assert!(
        text.contains("dropout = 0.33  # from environment variable RUNNER_MODEL__DROPOUT"),
        "{text}"
    );
    // Values from the file carry no note; defaults say so.
    assert!(text.contains("name = \"quickstart\"\n"), "{text}");
    assert!(text.contains("threads = 0  # default"), "{text}");
    // The resolved text is itself a valid experiment.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("resolved.toml");
    let body: String = text.lines().skip(1).collect::<Vec<_>>().join("\n");
    std::fs::write(&path, body).unwrap();
    let again = runner()
        .arg("check")
        .arg(&path)
        .arg("--show-config")
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stdout(&again).contains("learning_rate = 0.5\n"));
}

#[test]
fn bad_override_names_the_key() {
    let out = runner()
        .args([
            "check",
            "experiments/quickstart.toml",
            "--set",
            "optimizer.learning_rat=0.5",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("--set optimizer.learning_rat=0.5"), "{err}");
    assert!(err.contains("did you mean `learning_rate`?"), "{err}");

    let out = runner()
        .args([
            "check",
            "experiments/quickstart.toml",
            "--set",
            "model.layers.1.rate=0.5",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("model.dropout"), "{}", stderr(&out));

    let out = runner()
        .args(["check", "experiments/quickstart.toml"])
        .env("RUNNER_MODLE__DROPOUT", "0.1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("did you mean `model`?"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn extends_child_overrides_parent_and_show_config_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let child = tmp.path().join("child.toml");
    let parent = root().join("experiments/quickstart.toml");
    std::fs::write(
        &child,
        format!(
            "extends = {:?}\n\n[experiment]\nname = \"child\"\n\n[train]\nepochs = 2\n",
            parent.display().to_string()
        ),
    )
    .unwrap();
    let out = runner()
        .arg("check")
        .arg(&child)
        .arg("--show-config")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("name = \"child\"\n"), "{text}");
    assert!(text.contains("epochs = 2\n"), "{text}");
    assert!(
        text.contains(&format!("batch_size = 32  # from {}", parent.display())),
        "{text}"
    );
}

#[test]
fn summary_of_the_tutorial_model_matches_keras() {
    let out = runner()
        .args(["summary", "experiments/baseline.toml"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("Total params: 10,588,458"), "{text}");
    assert!(text.contains("Trainable params: 10,588,458"), "{text}");
    assert!(text.contains("Non-trainable params: 0"), "{text}");
    for shape in [
        "(None, 128, 128, 32)",
        "(None, 2, 2, 512)",
        "(None, 2048)",
        "(None, 1024)",
        "(None, 10)",
    ] {
        assert!(text.contains(shape), "{shape} in {text}");
    }
    insta::assert_snapshot!("summary-baseline", text);
}

#[test]
fn cuda_request_without_cuda_is_a_one_line_error() {
    if cfg!(feature = "cuda") {
        return; // a CUDA build on a machine with or without a GPU: covered by device tests
    }
    let out = runner()
        .args(["run", "experiments/quickstart.toml", "--device", "cuda"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("built without it"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
