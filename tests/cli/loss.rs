//! `train.label_smoothing` and `train.class_weight` end to end, on a small
//! imbalanced image folder.

use std::path::{Path, PathBuf};

use runner::data::fixtures;

use crate::common::{assert_exit, meta, run_dir, runner_on, stderr, stdout};

/// `root/<class>/img_<k>.png`, `counts[i]` images of class `classes[i]`.
fn imbalanced_folder(root: &Path, classes: &[&str], counts: &[usize]) {
    for (c, (name, &count)) in classes.iter().zip(counts).enumerate() {
        for k in 0..count {
            let img = fixtures::picture(1, c, k, 8, 8, 0.05);
            fixtures::save(&img, &root.join(name).join(format!("img_{k:03}.png")), 90)
                .expect("fixture");
        }
    }
}

/// An experiment on the folder `root` (3 classes of 8x8 images), one epoch,
/// with `data` and `train` lines appended to those tables.
fn experiment(dir: &Path, name: &str, root: &Path, data: &str, train: &str) -> PathBuf {
    let text = format!(
        r#"[experiment]
name = "{name}"
seed = 3

[data]
source = "image_folder"
path = "{path}"
{data}

[augment]
rescale = "1/255"

[model]
input_shape = [8, 8, 3]
layers = [ {{ type = "flatten" }}, {{ type = "dense", units = 3, activation = "softmax" }} ]

[optimizer]
type = "adam"
learning_rate = 0.01

[train]
epochs = 1
batch_size = 4
{train}
"#,
        path = root.display()
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write experiment");
    path
}

/// 6 cats, 2 dogs, 4 eels: n = 12, K = 3.
fn pets(dir: &Path) -> PathBuf {
    let root = dir.join("pets");
    imbalanced_folder(&root, &["cat", "dog", "eel"], &[6, 2, 4]);
    root
}

#[test]
fn balanced_class_weights_are_printed_and_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let root = pets(tmp.path());
    let exp = experiment(
        tmp.path(),
        "balanced",
        &root,
        "",
        "class_weight = \"balanced\"",
    );
    let runs = tmp.path().join("runs");
    let out = runner_on("run", &exp, &runs).output().unwrap();
    assert_exit(&out, 0);
    // w_c = n / (K * count_c): 12 / 18, 12 / 6, 12 / 12.
    let (cat, dog, eel) = (12.0 / 18.0, 2.0, 1.0);
    let line = format!("Class weights (train.class_weight): cat {cat}, dog {dog}, eel {eel}\n");
    let printed = stdout(&out);
    assert_eq!(printed.matches(&line).count(), 1, "{printed}");
    let m = meta(&run_dir(&runs, "balanced"));
    assert_eq!(m["status"], "completed");
    assert_eq!(
        m["class_weights"],
        serde_json::json!({ "cat": cat, "dog": dog, "eel": eel })
    );
}

#[test]
fn an_unknown_class_in_class_weight_fails_with_a_did_you_mean() {
    let tmp = tempfile::tempdir().unwrap();
    let root = pets(tmp.path());
    let exp = experiment(
        tmp.path(),
        "typo",
        &root,
        "",
        "class_weight = { cat = 1.0, dgo = 3.0 }",
    );
    let runs = tmp.path().join("runs");
    let out = runner_on("run", &exp, &runs).output().unwrap();
    assert_exit(&out, 2);
    // The message as one line (miette wraps it).
    let err = stderr(&out)
        .split_whitespace()
        .filter(|w| *w != "│")
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        err.contains("`train.class_weight` names class `dgo`, which the data does not have (its classes: cat, dog, eel); did you mean `dog`?"),
        "{err}"
    );
    assert!(
        !runs.join("typo").exists(),
        "no run folder for a usage error"
    );
}

#[test]
fn a_run_with_label_smoothing_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = pets(tmp.path());
    let exp = experiment(
        tmp.path(),
        "smooth",
        &root,
        "validation_split = 0.25",
        "label_smoothing = 0.1\nclass_weight = { dog = 3.0 }",
    );
    let runs = tmp.path().join("runs");
    let out = runner_on("run", &exp, &runs).output().unwrap();
    assert_exit(&out, 0);
    let dir = run_dir(&runs, "smooth");
    let m = meta(&dir);
    assert_eq!(m["status"], "completed");
    assert_eq!(
        m["class_weights"],
        serde_json::json!({ "cat": 1.0, "dog": 3.0, "eel": 1.0 })
    );
    let resolved = std::fs::read_to_string(dir.join("config.resolved.toml")).unwrap();
    assert!(resolved.contains("label_smoothing = 0.1"), "{resolved}");
    // One epoch logged, with a finite smoothed validation loss.
    let csv = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    let row: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    let val_loss: f64 = row[3].parse().unwrap();
    assert!(val_loss.is_finite() && val_loss > 0.0, "{csv}");
}
