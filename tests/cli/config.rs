//! Experiment files: every shipped file and every example in the docs
//! checks, broken files fail with exit code 2 and a located message,
//! overrides reach the resolved config.

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

/// The ```toml blocks of a Markdown file, in order.
fn toml_blocks(doc: &str) -> Vec<String> {
    let text = std::fs::read_to_string(root().join(doc)).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match current.as_mut() {
            None if line.trim_start() == "```toml" => current = Some(String::new()),
            None => {}
            Some(_) if line.trim_start() == "```" => blocks.extend(current.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    blocks
}

/// `runner sweep --dry-run FILE` in `dir`: exit 0, and the trial count.
fn dry_run_trials(dir: &std::path::Path, file: &str) -> usize {
    let out = runner()
        .current_dir(dir)
        .args(["sweep", "--dry-run", file])
        .output()
        .unwrap();
    assert!(out.status.success(), "{file}: {}", stderr(&out));
    let text = stdout(&out);
    let last = text
        .lines()
        .find(|l| l.ends_with("nothing was run (--dry-run)."))
        .unwrap_or_else(|| panic!("{file}: {text}"));
    last.split(' ').next().unwrap().parse().unwrap()
}

/// The example files of docs/sweeps.md, README.md and docs/slurm.md run as
/// written: each complete file (`# NAME.toml` on its first line) plans, with
/// the trial count its comment gives, and each fragment plans in the file
/// it belongs to.
#[test]
fn documented_examples_plan_as_written() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let blocks = toml_blocks("docs/sweeps.md");
    let mut named = Vec::new();
    let mut fragments = Vec::new();
    for b in &blocks {
        let first = b.lines().next().unwrap_or_default();
        match first
            .strip_prefix("# ")
            .and_then(|r| r.split(".toml").next())
        {
            Some(name) if first.contains(".toml") => {
                std::fs::write(dir.join(format!("{name}.toml")), b).unwrap();
                named.push((name.to_string(), first.to_string()));
            }
            _ => fragments.push(b.clone()),
        }
    }
    assert!(named.len() >= 7 && named[0].0 == "base", "{named:?}");
    for (name, first) in &named[1..] {
        let trials = dry_run_trials(dir, &format!("{name}.toml"));
        // "# grid.toml: 3 x 3 = 9 trials", "# asha.toml: 27 random trials ..."
        let words: Vec<&str> = first.split_whitespace().collect();
        if let Some(i) = words
            .iter()
            .position(|w| w.trim_end_matches(',') == "trials")
        {
            let n = words[i - 1].parse().or_else(|_| words[i - 2].parse());
            assert_eq!(Ok(trials), n, "{first}");
        }
    }
    // Fragments: an early_stop table replaces asha.toml's; the budget
    // [sweep] table goes with a random axis.
    let asha = std::fs::read_to_string(dir.join("asha.toml")).unwrap();
    let asha_head = &asha[..asha.find("[sweep.early_stop]").unwrap()];
    assert_eq!(fragments.len(), 3, "{fragments:?}");
    for (i, f) in fragments.iter().enumerate() {
        let text = if f.starts_with("[sweep.early_stop]") {
            format!("{asha_head}{f}")
        } else {
            format!("extends = \"base.toml\"\n{f}\n[sweep.random]\n\"model.dropout\" = {{ distribution = \"uniform\", low = 0.0, high = 0.5 }}\n")
        };
        let name = format!("fragment-{i}.toml");
        std::fs::write(dir.join(&name), text).unwrap();
        dry_run_trials(dir, &name);
    }
    // docs/slurm.md's launcher table, on the grid example.
    let launcher = toml_blocks("docs/slurm.md");
    assert_eq!(launcher.len(), 1);
    let grid = std::fs::read_to_string(dir.join("grid.toml")).unwrap();
    std::fs::write(dir.join("slurm.toml"), format!("{grid}\n{}", launcher[0])).unwrap();
    assert_eq!(dry_run_trials(dir, "slurm.toml"), 9);
    // README.md: the experiment checks; with its [sweep] table, 3 x 3 trials.
    let readme = toml_blocks("README.md");
    assert_eq!(readme.len(), 2);
    std::fs::write(dir.join("readme.toml"), &readme[0]).unwrap();
    let out = runner()
        .current_dir(dir)
        .args(["check", "readme.toml"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::write(dir.join("readme-sweep.toml"), readme.join("\n")).unwrap();
    assert_eq!(dry_run_trials(dir, "readme-sweep.toml"), 9);
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

/// A `--set` key is read as a TOML dotted key, so a sweep axis, whose key
/// has dots in it, is named quoted, as errors and `--show-config` name it;
/// `--show-config` then says which axis the flag set and which the file did.
#[test]
fn set_reaches_a_sweep_axis_by_its_quoted_key() {
    let set = [
        "--set",
        "sweep.grid.\"optimizer.learning_rate\"=[1e-3, 1e-2, 3e-2]",
    ];
    let out = runner()
        .args(["sweep", "experiments/quickstart.toml", "--dry-run"])
        .args(set)
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(text.contains("6 trials; nothing was run"), "{text}");
    assert!(
        text.contains("model.dropout=0.3  optimizer.learning_rate=0.03"),
        "{text}"
    );
    let out = runner()
        .args(["check", "experiments/quickstart.toml", "--show-config"])
        .args(set)
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(
        text.contains("\n\"model.dropout\" = [0.1, 0.3]\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "\n\"optimizer.learning_rate\" = [0.001, 0.01, 0.03]  \
             # from --set sweep.grid.\"optimizer.learning_rate\"=[1e-3, 1e-2, 3e-2]\n"
        ),
        "{text}"
    );
    // An unterminated quote is no key path.
    let out = runner()
        .args(["check", "experiments/quickstart.toml"])
        .args(["--set", "sweep.grid.\"model.dropout=[0.2]"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is not a key path"),
        "{}",
        stderr(&out)
    );
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
    let err = stderr(&out);
    assert!(
        err.contains(
            "unknown key `rate` in `model.layers[1]` (layer 1 of the model, `max_pool2d`)"
        ),
        "{err}"
    );
    assert!(
        err.contains("`rate` is a key of layer type `dropout`"),
        "{err}"
    );

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

/// A variant chosen by a higher layer (`--set optimizer.type=sgd`, a
/// `RUNNER_*` variable, a child file's `type`) drops the keys lower layers
/// gave the old one, and `--show-config` says so; a key the same layer
/// sets is an error that names the variant taking it.
#[test]
fn a_variant_chosen_above_drops_the_old_variants_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let quickstart = root().join("experiments/quickstart.toml");
    let parent = tmp.path().join("rmsprop.toml");
    std::fs::write(
        &parent,
        format!(
            "extends = {:?}\n\n[optimizer]\ntype = \"rmsprop\"\nlearning_rate = 1e-3\nrho = 0.8\n",
            quickstart.display().to_string()
        ),
    )
    .unwrap();
    let child = tmp.path().join("adam.toml");
    std::fs::write(
        &child,
        "extends = \"rmsprop.toml\"\n\n[optimizer]\ntype = \"adam\"\n",
    )
    .unwrap();
    let show = |file: &PathBuf, args: &[&str], var: Option<&str>| {
        let mut cmd = runner();
        cmd.arg("check").arg(file).arg("--show-config").args(args);
        if let Some(v) = var {
            cmd.env("RUNNER_OPTIMIZER__TYPE", v);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let text = stdout(&out);
        let optimizer = text
            .split("\n[optimizer]\n")
            .nth(1)
            .and_then(|t| t.split("\n\n").next())
            .unwrap_or_else(|| panic!("{text}"))
            .to_string();
        optimizer
    };
    let by_set = show(&parent, &["--set", "optimizer.type=sgd"], None);
    let dropped = format!(
        "dropped `rho = 0.8` (from {}), which `sgd` does not take\n",
        parent.display()
    );
    assert!(
        by_set.starts_with(&format!(
            "type = \"sgd\"  # from --set optimizer.type=sgd; {dropped}\
             learning_rate = 0.001\nmomentum = 0.0  # default\n"
        )),
        "{by_set}"
    );
    assert!(!by_set.contains("\nrho ="), "{by_set}");
    let by_env = show(&parent, &[], Some("sgd"));
    assert!(
        by_env.starts_with(&format!(
            "type = \"sgd\"  # from environment variable RUNNER_OPTIMIZER__TYPE; {dropped}"
        )),
        "{by_env}"
    );
    let by_child = show(&child, &[], None);
    assert!(
        by_child.starts_with(&format!(
            "type = \"adam\"  # {}",
            dropped.replace("sgd", "adam")
        )),
        "{by_child}"
    );
    // The same layer set both: an error naming the variant that takes the key.
    let out = runner()
        .arg("check")
        .arg(&parent)
        .args(["--set", "optimizer.type=sgd", "--set", "optimizer.rho=0.5"])
        .output()
        .unwrap();
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("--set optimizer.rho=0.5: unknown key `rho` in `optimizer`"),
        "{err}"
    );
    assert!(
        err.contains("`rho` is a key of optimizer type `rmsprop`; `optimizer.type` here is `sgd`"),
        "{err}"
    );
}

/// `--set '~key'` takes a key out of the files and `RUNNER_*` variables
/// below it: a table that is on when present goes off, a key gets its
/// default and `--show-config` says why; removing what nothing sets fails.
#[test]
fn set_tilde_removes_a_key_from_the_layers_below() {
    let file = "experiments/baseline.toml";
    let out = runner()
        .args(["check", file, "--show-config"])
        .args(["--set", "~callbacks.early_stopping"])
        .env("RUNNER_CALLBACKS__EARLY_STOPPING__PATIENCE", "9")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("\n[callbacks.checkpoint]\n"), "{text}");
    let (head, body) = text.split_once("\n\n").unwrap();
    assert!(
        head.ends_with("\n# callbacks.early_stopping: removed by --set ~callbacks.early_stopping"),
        "{text}"
    );
    assert!(!body.contains("early_stopping"), "{text}");

    let out = runner()
        .args(["check", file, "--show-config"])
        .args(["--set", "~callbacks.early_stopping.patience"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("\npatience = 0  # default (--set ~callbacks.early_stopping.patience)\n"),
        "{text}"
    );

    let out = runner()
        .args(["check", file])
        .args(["--set", "~callbacks.early_stoping"])
        .output()
        .unwrap();
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains(
            "bad --set override `~callbacks.early_stoping`: `callbacks.early_stoping` is not \
             set in experiments/baseline.toml (nor a file it extends), a RUNNER_* variable or \
             an earlier --set, so there is nothing to remove"
        ),
        "{err}"
    );
    assert!(err.contains("did you mean `early_stopping`?"), "{err}");
}

/// Hydra's `+key=value` adds a key only where no layer below sets it, and
/// names the layer that does; `++key=value` sets it either way.
#[test]
fn set_plus_adds_only_what_no_layer_sets() {
    let file = "experiments/baseline.toml";
    let out = runner()
        .args(["check", file, "--show-config"])
        .args(["--set", "+train.label_smoothing=0.1"])
        .args(["--set", "++model.dropout=0.3"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("\nlabel_smoothing = 0.1  # from --set +train.label_smoothing=0.1\n"),
        "{text}"
    );
    assert!(
        text.contains("\ndropout = 0.3  # from --set ++model.dropout=0.3\n"),
        "{text}"
    );

    for (set, env, layer) in [
        ("+model.dropout=0.3", None, "experiments/baseline.toml"),
        (
            "+model.dropout=0.3",
            Some(("RUNNER_MODEL__DROPOUT", "0.4")),
            "`RUNNER_MODEL__DROPOUT`",
        ),
    ] {
        let mut cmd = runner();
        cmd.args(["check", file, "--set", set]);
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert_exit(&out, 2);
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "bad --set override `+model.dropout=0.3`: `model.dropout` is already set in \
                 {layer}, and `+KEY=VALUE` adds only a key that no layer below sets"
            )),
            "{err}"
        );
    }
}

/// `--set` keys that choose one layer, by index or by the name `runner
/// summary` shows, reach the model, and `--show-config` notes them; one
/// that chooses none lists what there is.
#[test]
fn set_keys_choose_one_layer_by_index_or_name() {
    let file = "experiments/quickstart.toml";
    let out = runner()
        .args(["summary", file])
        .args(["--set", "model.layers.conv2d_1.filters=8"])
        .args(["--set", "model.layers.-3.units=20"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    // 3x3x16x8 + 8 and 8x8x8 -> 20: 512 x 20 + 20.
    assert!(
        text.contains("conv2d_1 (Conv2D)               (None, 16, 16, 8)         1,160"),
        "{text}"
    );
    assert!(
        text.contains("dense (Dense)                   (None, 20)                10,260"),
        "{text}"
    );

    let out = runner()
        .args(["check", file, "--show-config"])
        .args(["--set", "~model.layers.0.activation"])
        .args(["--set", "model.layers.dense_1.units=10"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("\nactivation = \"linear\"  # default (--set ~model.layers.0.activation)\n"),
        "{text}"
    );
    assert!(
        text.contains("\nunits = 10  # from --set model.layers.dense_1.units=10\n"),
        "{text}"
    );
    assert!(text.contains("\nunits = 64\n"), "{text}");

    let out = runner()
        .args(["check", file, "--set", "model.layers.dens_2.units=3"])
        .output()
        .unwrap();
    assert_exit(&out, 2);
    insta::assert_snapshot!("set-key-choosing-no-layer", stderr(&out));

    // A RUNNER_* variable reaches into the list too, below a --set.
    let var = "RUNNER_MODEL__LAYERS__CONV2D_1__FILTERS";
    let out = runner()
        .args(["check", file, "--show-config"])
        .env(var, "8")
        .env("RUNNER_MODEL__LAYERS__0__FILTERS", "4")
        .args(["--set", "model.layers.0.filters=6"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "\nfilters = 8  # from environment variable {var}\n"
        )),
        "{text}"
    );
    assert!(
        text.contains("\nfilters = 6  # from --set model.layers.0.filters=6\n"),
        "{text}"
    );
    let out = runner()
        .args(["check", file])
        .env("RUNNER_MODEL__LAYERS__9__UNITS", "3")
        .output()
        .unwrap();
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("environment variable RUNNER_MODEL__LAYERS__9__UNITS: `9` chooses no element"),
        "{err}"
    );
}
