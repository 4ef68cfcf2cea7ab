//! `runner export`, checked by the real consumers: onnxruntime gets the
//! ONNX file, and a PyTorch `nn.Sequential` written by hand for the same
//! stack loads the safetensors file; both get the same images as `runner
//! predict` and must agree with it (probabilities, and PyTorch's logits).

use std::path::{Path, PathBuf};

use runner::data::fixtures;

use crate::common::{assert_exit, run_dir, runner, runner_on, stdout};
use crate::python::{python_with, run_script};

/// PNG pictures for both sides to classify, two per class: the first at
/// the model's input size, the second not (wider, and shorter or taller),
/// which both sides resize, PIL's `nearest` and runner's.
fn pictures(dir: &Path, classes: usize, size: u32, gray: bool) -> PathBuf {
    let out = dir.join("to-classify");
    for class in 0..classes {
        for k in 0..2 {
            let (w, h) = match k {
                0 => (size, size),
                _ => (size * 3 / 2 + 1, size + (class as u32 % 3) * 4 - 3),
            };
            let img = fixtures::picture(9, class, k, w, h, 0.05);
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

/// Train `experiment` `name` (with `set` overrides), export it in both
/// formats, run `runner predict` on pictures, and give onnxruntime and the
/// hand-written Sequential `name` of tests/py/torch_check.py the same.
fn check(
    dir: &Path,
    experiment: &Path,
    name: &str,
    set: &[&str],
    classes: usize,
    size: u32,
    gray: bool,
) {
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

    let out = runner()
        .args(["export", "--format", "safetensors"])
        .arg(&latest)
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let text = stdout(&out);
    let weights = run_dir(&runs, name).join("export/model.safetensors");
    let module = weights.with_extension("py");
    for file in [&weights, &module] {
        assert!(
            text.contains(&format!("Wrote {}", file.display())),
            "{text}"
        );
    }
    assert!(text.contains("logits of the nn.Sequential"), "{text}");

    let images = pictures(dir, classes, size, gray);
    let csv = dir.join("predictions.csv");
    let out = runner()
        .arg("predict")
        .arg(&latest)
        .arg(&images)
        .args(["--top-k", &classes.to_string(), "--logits", "--output"])
        .arg(&csv)
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let checks = [
        (
            "onnxruntime",
            "onnx_check.py",
            vec![model.as_os_str(), csv.as_os_str()],
        ),
        (
            "torch",
            "torch_check.py",
            vec![name.as_ref(), weights.as_os_str(), csv.as_os_str()],
        ),
    ];
    for (module, script, args) in checks {
        let Some(python) = python_with(module) else {
            continue;
        };
        let out = run_script(&python, script, &args);
        let report = String::from_utf8_lossy(&out.stdout).to_string();
        println!("{report}");
        assert!(
            report.contains(&format!("{} images", classes * 2)),
            "{report}"
        );
        if module == "torch" {
            assert!(report.contains(&format!("({classes} resized)")), "{report}");
        }
    }
}

#[test]
fn exports_of_the_tutorial_model_agree_with_predict() {
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
fn exports_of_batch_norm_and_global_pooling_agree_with_predict() {
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
fn exports_of_a_grayscale_model_agree_with_predict() {
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

/// A 2x2 average pooling with stride 1 and `same` padding pads one side
/// only, and no nn.AvgPool2d leaves that padding out of its average: the
/// safetensors export refuses, naming the layer, and writes nothing. ONNX
/// has the form.
#[test]
fn a_layer_without_a_pytorch_form_is_named_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("folder");
    fixtures::image_folder(&data, &["x", "y"], 3, (8, 8), "png").unwrap();
    let experiment = dir.path().join("pool.toml");
    std::fs::write(
        &experiment,
        format!(
            r#"[experiment]
name = "pool"

[data]
source = "image_folder"
path = "{}"

[model]
input_shape = [8, 8, 3]
layers = [
  {{ type = "avg_pool2d", pool = 2, stride = 1, padding = "same", name = "smooth" }},
  {{ type = "flatten" }},
  {{ type = "dense", units = 2, activation = "softmax" }},
]

[train]
epochs = 1
batch_size = 2

[callbacks.checkpoint]
monitor = "loss"
"#,
            data.display()
        ),
    )
    .unwrap();
    let runs = dir.path().join("runs");
    let out = runner_on("run", &experiment, &runs).output().unwrap();
    assert_exit(&out, 0);
    let latest = runs.join("pool/latest");
    let out = runner()
        .args(["export", "--format", "safetensors"])
        .arg(&latest)
        .output()
        .unwrap();
    assert_exit(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("layer `smooth` has no PyTorch nn.Sequential form"),
        "{err}"
    );
    let export = run_dir(&runs, "pool").join("export");
    assert!(!export.join("model.safetensors").exists());
    assert!(!export.join("model.py").exists());
    let out = runner()
        .args(["export", "--format", "onnx"])
        .arg(&latest)
        .output()
        .unwrap();
    assert_exit(&out, 0);
}
