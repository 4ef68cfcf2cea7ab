//! `runner export --format onnx`, checked by its real consumer: onnxruntime
//! gets the same images as `runner predict` and must agree with it.

use std::path::{Path, PathBuf};

use runner::data::fixtures;

use crate::common::{assert_exit, run_dir, runner, stdout};
use crate::python::{python_with, run_script};

/// PNG pictures at the model's input size for both sides to classify.
fn pictures(dir: &Path, classes: usize, size: u32, gray: bool) -> PathBuf {
    let out = dir.join("to-classify");
    for class in 0..classes {
        for k in 0..2 {
            let img = fixtures::picture(9, class, k, size, size, 0.05);
            let path = out.join(format!("c{class}-{k}.png"));
            if gray {
                std::fs::create_dir_all(&out).unwrap();
                image::DynamicImage::ImageRgb8(img)
                    .to_luma8()
                    .save(&path)
                    .unwrap();
            } else {
                fixtures::save(&img, &path, 90).unwrap();
            }
        }
    }
    out
}

/// Train `experiment` (with `set` overrides) for an epoch, export it, run
/// `runner predict` and onnxruntime on the same pictures, and compare.
fn check(
    dir: &Path,
    experiment: &Path,
    name: &str,
    set: &[&str],
    classes: usize,
    size: u32,
    gray: bool,
) {
    let Some(python) = python_with("onnxruntime") else {
        return;
    };
    let runs = dir.join("runs");
    let mut run = runner();
    run.arg("run").arg(experiment).arg("--runs-dir").arg(&runs);
    for s in set {
        run.args(["--set", s]);
    }
    let out = run.output().unwrap();
    assert_exit(&out, 0);
    let latest = runs.join(name).join("latest");

    let out = runner()
        .args(["export", "--format", "onnx"])
        .arg(&latest)
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let text = stdout(&out);
    let model = run_dir(&runs, name).join("export/model.onnx");
    assert!(
        text.contains(&format!("Wrote {}", model.display())),
        "{text}"
    );
    assert!(
        text.contains("classes") && text.contains("preprocessing"),
        "{text}"
    );

    let images = pictures(dir, classes, size, gray);
    let csv = dir.join("predictions.csv");
    let out = runner()
        .arg("predict")
        .arg(&latest)
        .arg(&images)
        .args(["--top-k", &classes.to_string(), "--output"])
        .arg(&csv)
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let out = run_script(
        &python,
        "onnx_check.py",
        &[model.as_os_str(), csv.as_os_str()],
    );
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    println!("{report}");
    assert!(
        report.contains(&format!("{} images", classes * 2)),
        "{report}"
    );
}

#[test]
fn onnx_of_the_tutorial_model_agrees_with_predict() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..10).map(|c| format!("food{c}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let data = dir.path().join("food-101");
    fixtures::food101(&data, &names, 2, 1, (128, 128)).unwrap();
    let experiment = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/baseline.toml");
    let path = format!("data.path={}", data.display());
    check(
        dir.path(),
        &experiment,
        "baseline",
        &[&path, "train.epochs=1", "train.batch_size=8"],
        10,
        128,
        false,
    );
}

/// A stack with batch norm (inference form), global average pooling, average
/// pooling with `same` padding and the other activations.
#[test]
fn onnx_of_batch_norm_and_global_pooling_agrees_with_predict() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("folder");
    fixtures::image_folder(&data, &["a", "b", "c"], 6, (15, 15), "png").unwrap();
    let experiment = dir.path().join("bn.toml");
    std::fs::write(
        &experiment,
        format!(
            r#"[experiment]
name = "bn"
seed = 5

[data]
source = "image_folder"
path = "{}"
validation_split = 0.2

[augment]
rescale = "1/255"
normalize = {{ mean = [0.5, 0.4, 0.3], std = [0.2, 0.25, 0.3] }}

[model]
input_shape = [15, 15, 3]
layers = [
  {{ type = "conv2d", filters = 6, kernel = 3, padding = "same", activation = "relu" }},
  {{ type = "batch_norm" }},
  {{ type = "avg_pool2d", pool = 2, padding = "same" }},
  {{ type = "conv2d", filters = 8, kernel = 3, stride = 2, padding = "same", activation = "gelu" }},
  {{ type = "max_pool2d", pool = 3, stride = 1, padding = "same" }},
  {{ type = "activation", activation = "leaky_relu" }},
  {{ type = "global_avg_pool2d" }},
  {{ type = "batch_norm" }},
  {{ type = "dense", units = 3, activation = "softmax" }},
]

[train]
epochs = 2
batch_size = 4
"#,
            data.display()
        ),
    )
    .unwrap();
    check(dir.path(), &experiment, "bn", &[], 3, 15, false);
}

#[test]
fn onnx_of_a_grayscale_model_agrees_with_predict() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("folder");
    fixtures::image_folder(&data, &["x", "y"], 6, (12, 12), "png").unwrap();
    let experiment = dir.path().join("gray.toml");
    std::fs::write(
        &experiment,
        format!(
            r#"[experiment]
name = "gray"
seed = 6

[data]
source = "image_folder"
path = "{}"

[augment]
rescale = "1/255"

[model]
input_shape = [12, 12, 1]
layers = [
  {{ type = "conv2d", filters = 4, kernel = 3, activation = "tanh" }},
  {{ type = "max_pool2d", pool = 2 }},
  {{ type = "dropout", rate = 0.3 }},
  {{ type = "flatten" }},
  {{ type = "dense", units = 8, activation = "sigmoid" }},
  {{ type = "dense", units = 2, activation = "softmax" }},
]

[train]
epochs = 2
batch_size = 4

[callbacks.checkpoint]
monitor = "loss"
"#,
            data.display()
        ),
    )
    .unwrap();
    check(dir.path(), &experiment, "gray", &[], 2, 12, true);
}
