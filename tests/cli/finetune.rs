//! `model.init_from` and `trainable = false` end to end: train on three
//! classes, then fine-tune on two others with the convolutions frozen.

use std::path::{Path, PathBuf};

use runner::data::fixtures;

use crate::common::{assert_exit, run_dir, runner, stderr, stdout};

/// `root/<class>/img_<k>.png`: 8 images of each class, drawn as the
/// synthetic shape `shapes[i]`.
fn folder(root: &Path, classes: &[&str], shapes: &[usize]) {
    for (name, &shape) in classes.iter().zip(shapes) {
        for k in 0..8 {
            let img = fixtures::picture(1, shape, k, 8, 8, 0.05);
            fixtures::save(&img, &root.join(name).join(format!("img_{k:03}.png")), 90)
                .expect("fixture");
        }
    }
}

/// An experiment on `data` whose last dense layer has `classes` units;
/// `model` lines go into `[model]`, `conv` into both conv layers.
fn experiment(
    dir: &Path,
    name: &str,
    data: &str,
    classes: usize,
    model: &str,
    conv: &str,
    epochs: usize,
) -> PathBuf {
    let text = format!(
        r#"[experiment]
name = "{name}"
seed = 3

[data]
source = "image_folder"
path = "{data}"

[augment]
rescale = "1/255"

[model]
input_shape = [8, 8, 3]
{model}
layers = [
  {{ type = "conv2d", filters = 4, kernel = 3, padding = "same", activation = "relu"{conv} }},
  {{ type = "max_pool2d" }},
  {{ type = "conv2d", filters = 4, kernel = 3, padding = "same", activation = "relu"{conv} }},
  {{ type = "flatten" }},
  {{ type = "dense", units = {classes}, activation = "softmax" }},
]

[optimizer]
type = "adam"
learning_rate = 0.01

[train]
epochs = {epochs}
batch_size = 4
"#
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write experiment");
    path
}

/// `runner run <exp> --runs-dir runs`, in `dir` (so relative paths are
/// relative to it).
fn run_in(dir: &Path, exp: &Path) -> std::process::Output {
    runner()
        .current_dir(dir)
        .arg("run")
        .arg(exp)
        .arg("--runs-dir")
        .arg("runs")
        .output()
        .unwrap()
}

/// The training loss of each epoch, from metrics.csv.
fn losses(run: &Path) -> Vec<f64> {
    let text = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "train_loss").unwrap();
    lines
        .map(|l| l.split(',').nth(col).unwrap().parse().unwrap())
        .collect()
}

#[test]
fn fine_tuning_keeps_frozen_layers_and_trains_a_new_head() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    folder(&dir.join("abc"), &["a", "b", "c"], &[0, 1, 2]);
    folder(&dir.join("de"), &["d", "e"], &[3, 4]);

    let first = experiment(dir, "first", "abc", 3, "", "", 2);
    let out = run_in(dir, &first);
    assert_exit(&out, 0);
    let source = run_dir(&dir.join("runs"), "first");

    // A relative `runs/first/latest`, two classes, frozen convolutions.
    let ft = experiment(
        dir,
        "ft",
        "de",
        2,
        "init_from = \"runs/first/latest\"",
        ", trainable = false",
        4,
    );
    let out = run_in(dir, &ft);
    assert_exit(&out, 0);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        said.contains(
            "dense: the final dense layer has 2 units instead of the source's 3; re-initialised"
        ),
        "{said}"
    );
    assert!(said.contains("(2 layer(s) copied)"), "{said}");
    let tuned = run_dir(&dir.join("runs"), "ft");
    let resolved = std::fs::read_to_string(tuned.join("config.resolved.toml")).unwrap();
    assert!(
        resolved.contains(&format!("init_from = {:?}", source.display().to_string())),
        "the resolved config names the source folder: {resolved}"
    );

    let before = runner::predict::layer_weights(&source, "final").unwrap();
    let after = runner::predict::layer_weights(&tuned, "final").unwrap();
    for name in ["conv2d", "conv2d_1"] {
        let get =
            |w: &[(String, Vec<Vec<f32>>)]| w.iter().find(|(n, _)| n == name).unwrap().1.clone();
        let (b, a) = (get(&before), get(&after));
        assert_eq!(a.len(), 2, "{name}: kernel and bias");
        assert!(a[0].iter().any(|v| *v != 0.0));
        let bits = |t: &[Vec<f32>]| -> Vec<Vec<u32>> {
            t.iter()
                .map(|v| v.iter().map(|x| x.to_bits()).collect())
                .collect()
        };
        assert_eq!(bits(&a), bits(&b), "{name} is frozen: bit-identical");
    }
    // The new head learned: the training loss fell.
    let loss = losses(&tuned);
    assert_eq!(loss.len(), 4);
    assert!(loss[3] < loss[0], "the head learns: {loss:?}");

    // The tuned run stands on its own: with the source gone, it still predicts.
    std::fs::remove_dir_all(dir.join("runs/first")).unwrap();
    let out = runner()
        .current_dir(dir)
        .arg("predict")
        .arg(&tuned)
        .arg(dir.join("de/d/img_000.png"))
        .output()
        .unwrap();
    assert_exit(&out, 0);
}

#[test]
fn mismatching_layers_are_all_named_before_a_run_folder_exists() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    folder(&dir.join("abc"), &["a", "b", "c"], &[0, 1, 2]);
    let first = experiment(dir, "first", "abc", 3, "", "", 1);
    assert_exit(&run_in(dir, &first), 0);

    // 6 filters instead of 4: both convolutions and the dense layer change.
    let text = std::fs::read_to_string(&first)
        .unwrap()
        .replace("filters = 4", "filters = 6")
        .replace("name = \"first\"", "name = \"wide\"")
        .replace("[model]", "[model]\ninit_from = \"runs/first/latest\"");
    let wide = dir.join("wide.toml");
    std::fs::write(&wide, text).unwrap();
    let out = run_in(dir, &wide);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("3 layer(s) differ"), "{err}");
    for layer in ["conv2d:", "conv2d_1:", "dense:"] {
        assert!(err.contains(layer), "{layer} named: {err}");
    }
    assert!(!dir.join("runs/wide").exists(), "no run folder");
}

/// A head copied from a run on other classes (the same count) is named:
/// its outputs start out meaning the source's classes. The same classes
/// say nothing.
#[test]
fn a_head_copied_from_other_classes_is_noted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    folder(&dir.join("abc"), &["a", "b", "c"], &[0, 1, 2]);
    folder(&dir.join("xyz"), &["x", "y", "z"], &[0, 1, 2]);
    assert_exit(
        &run_in(dir, &experiment(dir, "first", "abc", 3, "", "", 1)),
        0,
    );
    let from = "init_from = \"runs/first/latest\"";

    let out = run_in(dir, &experiment(dir, "other", "xyz", 3, from, "", 1));
    assert_exit(&out, 0);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(said.contains("(3 layer(s) copied)"), "{said}");
    assert!(
        said.contains(
            "dense: copied from a source that trained it on other classes (output 0 is `a` \
             there, `x` here; output 1 is `b` there, `y` here; output 2 is `c` there, `z` here); \
             rename it (`name = \"head\"`) to start it fresh"
        ),
        "{said}"
    );

    let out = run_in(dir, &experiment(dir, "same", "abc", 3, from, "", 1));
    assert_exit(&out, 0);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(said.contains("(3 layer(s) copied)"), "{said}");
    assert!(!said.contains("trained it on"), "{said}");
}
