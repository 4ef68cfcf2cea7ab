//! `runner data`: the dataset report, bad data found before training, the
//! preview picture.

use std::path::Path;

use runner::data::fixtures;

use crate::common::{runner, stderr, stdout};

/// An experiment file using `data` (a `[data]` body) for a model of
/// `classes` outputs on `input` images.
fn experiment(
    dir: &Path,
    data: &str,
    augment: &str,
    input: [usize; 3],
    classes: usize,
) -> std::path::PathBuf {
    let [h, w, c] = input;
    let text = format!(
        r#"[experiment]
name = "fixture"
seed = 3

[data]
{data}

[augment]
{augment}

[model]
input_shape = [{h}, {w}, {c}]
layers = [ {{ type = "flatten" }}, {{ type = "dense", units = {classes}, activation = "softmax" }} ]

[callbacks.checkpoint]
monitor = "loss"
"#
    );
    let path = dir.join("exp.toml");
    std::fs::write(&path, text).expect("write experiment");
    path
}

/// A temporary folder whose path always has the same length (under /tmp,
/// whatever TMPDIR says), so wrapped error messages snapshot the same.
fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("runner-")
        .tempdir_in("/tmp")
        .expect("tempdir in /tmp")
}

/// Replace the temporary folder in `text` by `[TMP]`.
fn redact(text: &str, dir: &Path) -> String {
    text.replace(&dir.display().to_string(), "[TMP]")
}

#[test]
fn quickstart_report() {
    let out = runner()
        .args(["data", "--no-env", "experiments/quickstart.toml"])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", stderr(&out));
    insta::assert_snapshot!(stdout(&out));
}

#[test]
fn image_folder_report_lists_a_corrupt_file_and_fails() {
    let dir = tempdir();
    let root = dir.path().join("pets");
    let files =
        fixtures::image_folder(&root, &["cat", "dog"], 6, (48, 32), "jpg").expect("fixture");
    std::fs::write(&files[7], b"\xFF\xD8\xFFgarbage").expect("corrupt a file");
    let data = format!(
        "source = \"image_folder\"\npath = \"{}\"\nvalidation_split = 0.25",
        root.display()
    );
    let exp = experiment(dir.path(), &data, "", [16, 16, 3], 2);

    let out = runner()
        .args(["data", "--no-env"])
        .arg(&exp)
        .output()
        .expect("runs");
    assert_eq!(
        out.status.code(),
        Some(2),
        "bad images fail the default policy"
    );
    insta::assert_snapshot!(
        "image_folder_corrupt_stdout",
        redact(&stdout(&out), dir.path())
    );
    let err = redact(&stderr(&out), dir.path());
    assert!(
        err.contains("1 image(s) cannot be decoded; the first is [TMP]/pets/dog/img_00001.jpg"),
        "{err}"
    );
    assert!(err.contains("on_bad_image"), "{err}");

    // With `skip`, the same report succeeds.
    std::fs::write(
        &exp,
        std::fs::read_to_string(&exp).expect("read").replace(
            "validation_split",
            "on_bad_image = \"skip\"\nvalidation_split",
        ),
    )
    .expect("write");
    let out = runner()
        .args(["data", "--no-env"])
        .arg(&exp)
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn missing_folder_is_named_with_exit_code_2() {
    let dir = tempdir();
    let data = format!(
        "source = \"image_folder\"\npath = \"{}\"",
        dir.path().join("nope").display()
    );
    let exp = experiment(dir.path(), &data, "", [8, 8, 3], 2);
    let out = runner()
        .args(["data", "--no-env", "--quick"])
        .arg(&exp)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!("missing_folder_stderr", redact(&stderr(&out), dir.path()));
}

/// `flowers/{rose,tulip}` under `dir`, two images each.
fn flowers(dir: &Path) {
    fixtures::image_folder(&dir.join("flowers"), &["rose", "tulip"], 2, (8, 8), "png")
        .expect("fixture");
}

/// A local sweep opens its trials' data before making its folder: a data
/// path that is not there stops it at once (exit 2, located at the key),
/// not in every trial one by one. A typo gets the folder beside it.
#[test]
fn a_local_sweep_checks_its_data_before_making_its_folder() {
    let dir = tempdir();
    flowers(dir.path());
    let data = "source = \"image_folder\"\npath = \"flower\"\nvalidation_split = 0.5";
    let exp = experiment(dir.path(), data, "", [8, 8, 3], 2);
    let mut text = std::fs::read_to_string(&exp).expect("read");
    text.push_str("\n[sweep]\nstrategy = \"grid\"\n\n[sweep.grid]\n\"optimizer.learning_rate\" = [0.01, 0.02]\n");
    std::fs::write(&exp, text).expect("write");
    let out = runner()
        .current_dir(dir.path())
        .args(["sweep", "--no-env"])
        .arg(&exp)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("exp.toml:7:8: data folder") && err.contains("help: did you mean `flowers`?"),
        "{err}"
    );
    assert!(!dir.path().join("runs").exists(), "no sweep folder");
}

/// `runner check` reads no data, but a folder the config names that is not
/// there gets a warning (exit 0: the config is sound), each the error
/// `runner run` would stop with, located at its key.
#[test]
fn check_warns_of_each_missing_data_folder_as_run_would_fail() {
    let dir = tempdir();
    flowers(dir.path());
    let data = "source = \"image_folder\"\npath = \"flower\"\ntest_path = \"flowers-test\"";
    let exp = experiment(dir.path(), data, "", [8, 8, 3], 2);
    let command = |name: &str| {
        runner()
            .current_dir(dir.path())
            .args([name, "--no-env"])
            .arg(&exp)
            .output()
            .expect("runs")
    };
    let check = command("check");
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    assert!(stdout(&check).starts_with("ok: "), "{}", stdout(&check));
    let warned = stderr(&check);
    let run = command("run");
    assert_eq!(run.status.code(), Some(2));
    let failed = stderr(&run);
    // The run stops at the first; the check names both.
    assert_eq!(
        warned.matches("runner::data::missing").count(),
        2,
        "{warned}"
    );
    assert_eq!(warned.matches("⚠").count(), 2, "{warned}");
    let first = warned
        .split("\n\n")
        .take(2)
        .collect::<Vec<_>>()
        .join("\n\n");
    assert_eq!(first.replace('⚠', "×"), failed.trim_end(), "{warned}");
    assert!(warned.contains("help: did you mean `flowers`?"), "{warned}");
    assert!(warned.contains("exp.toml:8:13: test folder"), "{warned}");
    assert!(!dir.path().join("runs").exists());

    // Once the folders are there, not a word.
    std::fs::rename(dir.path().join("flowers"), dir.path().join("flower")).expect("mv");
    fixtures::image_folder(
        &dir.path().join("flowers-test"),
        &["rose", "tulip"],
        1,
        (8, 8),
        "png",
    )
    .expect("fixture");
    let check = command("check");
    assert_eq!(check.status.code(), Some(0));
    assert_eq!(stderr(&check), "");
}

/// `data/train/<class>`, `data/validation/<class>`, as Keras tutorials
/// lay a dataset out, given whole as `path`: refused before a run folder
/// is made, with the three keys that name the splits.
#[test]
fn split_folders_given_as_the_class_root_are_refused() {
    let dir = tempdir();
    let root = dir.path().join("pets");
    for split in ["train", "validation"] {
        fixtures::image_folder(&root.join(split), &["cat", "dog"], 1, (8, 8), "png")
            .expect("fixture");
    }
    let data = format!("source = \"image_folder\"\npath = \"{}\"", root.display());
    let exp = experiment(dir.path(), &data, "", [8, 8, 3], 2);
    let out = runner()
        .current_dir(dir.path())
        .args(["run", "--no-env"])
        .arg(&exp)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!("split_folders_stderr", redact(&stderr(&out), dir.path()));
    assert!(!dir.path().join("runs").exists(), "no run folder");
}

#[test]
fn unknown_class_gets_a_did_you_mean() {
    let dir = tempdir();
    let root = dir.path().join("pets");
    fixtures::image_folder(&root, &["cat", "dog"], 1, (8, 8), "png").expect("fixture");
    let data = format!(
        "source = \"image_folder\"\npath = \"{}\"\nclasses = [\"cat\", \"dgo\"]",
        root.display()
    );
    let exp = experiment(dir.path(), &data, "", [8, 8, 3], 2);
    let out = runner()
        .args(["data", "--no-env"])
        .arg(&exp)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!("unknown_class_stderr", redact(&stderr(&out), dir.path()));
}

#[test]
fn empty_class_folder_is_named() {
    let dir = tempdir();
    let root = dir.path().join("pets");
    fixtures::image_folder(&root, &["cat"], 1, (8, 8), "png").expect("fixture");
    std::fs::create_dir_all(root.join("dog")).expect("mkdir");
    let data = format!("source = \"image_folder\"\npath = \"{}\"", root.display());
    let exp = experiment(dir.path(), &data, "", [8, 8, 3], 2);
    let out = runner()
        .args(["data", "--no-env"])
        .arg(&exp)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = redact(&stderr(&out), dir.path());
    assert!(
        err.contains("class folder [TMP]/pets/dog has no images"),
        "{err}"
    );
}

#[test]
fn idx_with_a_wrong_magic_number_is_named() {
    let dir = tempdir();
    let idx = dir.path().join("idx");
    fixtures::idx_files(&idx, 10, 5, 2, 4, 4, true).expect("fixture");
    // Swap the training images and labels.
    std::fs::rename(idx.join("train-images-idx3-ubyte.gz"), idx.join("tmp")).expect("mv");
    std::fs::rename(
        idx.join("train-labels-idx1-ubyte.gz"),
        idx.join("train-images-idx3-ubyte.gz"),
    )
    .expect("mv");
    let data = format!("source = \"idx\"\npath = \"{}\"", idx.display());
    let exp = experiment(dir.path(), &data, "", [4, 4, 1], 2);
    let out = runner()
        .args(["data", "--no-env"])
        .arg(&exp)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!("idx_magic_stderr", redact(&stderr(&out), dir.path()));
}

#[test]
fn food101_meta_pointing_at_a_missing_file_is_named() {
    let dir = tempdir();
    let root = dir.path().join("food-101");
    fixtures::food101(&root, &["apple_pie", "baklava"], 3, 1, (16, 16)).expect("fixture");
    std::fs::remove_file(root.join("images/baklava/1007.jpg")).expect("rm");
    let data = format!("source = \"food101\"\npath = \"{}\"", root.display());
    let exp = experiment(dir.path(), &data, "", [8, 8, 3], 2);
    let out = runner()
        .args(["data", "--no-env"])
        .arg(&exp)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!(
        "food101_missing_file_stderr",
        redact(&stderr(&out), dir.path())
    );
}

#[test]
fn food101_report_counts_the_official_split() {
    let dir = tempdir();
    let root = dir.path().join("food-101");
    fixtures::food101(&root, &["apple_pie", "baklava", "churros"], 8, 2, (40, 30))
        .expect("fixture");
    let data = format!(
        "source = \"food101\"\npath = \"{}\"\nclasses = 2\nvalidation_split = 0.25",
        root.display()
    );
    let exp = experiment(dir.path(), &data, "", [16, 16, 3], 2);
    let out = runner()
        .args(["data", "--no-env"])
        .arg(&exp)
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", stderr(&out));
    insta::assert_snapshot!("food101_stdout", redact(&stdout(&out), dir.path()));
}

#[test]
fn model_outputs_must_match_the_classes() {
    let dir = tempdir();
    let root = dir.path().join("pets");
    fixtures::image_folder(&root, &["cat", "dog", "eel"], 1, (8, 8), "png").expect("fixture");
    let data = format!("source = \"image_folder\"\npath = \"{}\"", root.display());
    let exp = experiment(dir.path(), &data, "", [8, 8, 3], 2);
    let out = runner()
        .args(["data", "--no-env"])
        .arg(&exp)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("the data has 3 classes but the model ends in 2 outputs"),
        "{}",
        stderr(&out)
    );
    // Located at the last dense layer's `units`, with the two ways out.
    insta::assert_snapshot!("class_count_stderr", redact(&stderr(&out), dir.path()));
}

#[test]
fn fashion_mnist_report() {
    if !Path::new("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").is_file() {
        println!("skipped: Fashion-MNIST is not installed (`make data` installs it)");
        return;
    }
    let out = runner()
        .args([
            "data",
            "--no-env",
            "--quick",
            "experiments/fashion-mnist.toml",
        ])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", stderr(&out));
    insta::assert_snapshot!(stdout(&out));
}

#[test]
fn preview_writes_a_picture_grid() {
    let dir = tempdir();
    let png = dir.path().join("preview.png");
    let out = runner()
        .args([
            "data",
            "--no-env",
            "--quick",
            "experiments/quickstart.toml",
            "--preview",
        ])
        .arg(&png)
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("preview.png (16 training samples"),
        "{}",
        stdout(&out)
    );
    let img = image::open(&png).expect("a readable PNG");
    // 4 x 4 cells of 128 px with 8 px gaps and a 22 px label band.
    assert_eq!((img.width(), img.height()), (4 * 136 + 8, 4 * 158 + 8));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("ls")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "no temporary files left: {leftovers:?}");
}
