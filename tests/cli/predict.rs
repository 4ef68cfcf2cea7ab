//! `runner predict`: a trained run's model on image files, folders and
//! patterns; predictions.csv read back by pandas; agreement with the run's
//! own evaluation; unreadable images under both policies; the printed table
//! and the picture grid.

use std::path::{Path, PathBuf};

use runner::data::fixtures;

use crate::common::{assert_exit, run_dir, runner, runner_on, stderr, stdout};
use crate::python::python_with;

const CLASSES: [&str; 3] = ["cat", "dog", "eel"];

/// A temporary folder under /tmp, whatever TMPDIR says.
fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("runner-")
        .tempdir_in("/tmp")
        .expect("tempdir in /tmp")
}

/// Generate `pets/train` (6 PNGs per class) and `pets/test` (2 JPEGs per
/// class, of another size) under `dir`, train experiment `name` on them
/// for one epoch (`data` and `optimizer` lines added to their tables), and
/// return the run folder and the test files in the test split's order.
fn train(dir: &Path, name: &str, data: &str, optimizer: &str) -> (PathBuf, Vec<PathBuf>) {
    let train = dir.join("pets/train");
    let test = dir.join("pets/test");
    fixtures::image_folder(&train, &CLASSES, 6, (24, 20), "png").expect("fixture");
    let test_files = fixtures::image_folder(&test, &CLASSES, 2, (30, 18), "jpg").expect("fixture");
    let text = format!(
        r#"[experiment]
name = "{name}"
seed = 3

[data]
source = "image_folder"
path = "{}"
test_path = "{}"
interpolation = "bilinear"
{data}

[augment]
rescale = "1/255"
horizontal_flip = true
rotation_range = 20

[model]
input_shape = [12, 12, 3]
layers = [
  {{ type = "conv2d", filters = 4, kernel = 3, padding = "same", activation = "relu" }},
  {{ type = "max_pool2d", pool = 2 }},
  {{ type = "flatten" }},
  {{ type = "dense", units = 3, activation = "softmax" }},
]

[optimizer]
type = "adam"
{optimizer}

[train]
epochs = 1
batch_size = 4

[callbacks.checkpoint]
monitor = "loss"
"#,
        train.display(),
        test.display()
    );
    let exp = dir.join(format!("{name}.toml"));
    std::fs::write(&exp, text).expect("write experiment");
    let runs = dir.join("runs");
    let out = runner_on("run", &exp, &runs).output().expect("runs");
    assert_exit(&out, 0);
    (run_dir(&runs, name), test_files)
}

/// `runner predict` run from `dir`, so relative paths start there.
fn predict(dir: &Path) -> assert_cmd::Command {
    let mut cmd = runner();
    cmd.current_dir(dir).arg("predict");
    cmd
}

/// A CSV file as its header and rows.
fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header = r
        .headers()
        .expect("header")
        .iter()
        .map(String::from)
        .collect();
    let rows = r
        .records()
        .map(|rec| rec.expect("row").iter().map(String::from).collect())
        .collect();
    (header, rows)
}

fn header(k: usize) -> Vec<String> {
    let mut h = vec!["path".to_string(), "predicted".into(), "probability".into()];
    for i in 1..=k {
        h.push(format!("top{i}_class"));
        h.push(format!("top{i}_probability"));
    }
    h
}

fn relative(files: &[PathBuf], dir: &Path) -> Vec<String> {
    files
        .iter()
        .map(|f| {
            f.strip_prefix(dir)
                .expect("under dir")
                .display()
                .to_string()
        })
        .collect()
}

/// pandas reads the CSV of `k` = all classes: the columns, one row per
/// image, top-k sorted and summing to 1, predicted = top 1.
fn check_with_pandas(csv: &Path, k: usize, rows: usize) {
    let Some(python) = python_with("pandas") else {
        return;
    };
    let code = r#"
import sys
import pandas as pd
df = pd.read_csv(sys.argv[1])
k = int(sys.argv[2])
cols = ["path", "predicted", "probability"]
cols += [f"top{i}_{c}" for i in range(1, k + 1) for c in ("class", "probability")]
assert list(df.columns) == cols, list(df.columns)
p = df[[f"top{i}_probability" for i in range(1, k + 1)]]
assert ((p.sum(axis=1) - 1).abs() < 1e-4).all(), p.sum(axis=1).tolist()
assert (p.diff(axis=1).iloc[:, 1:] <= 0).all().all(), p
assert (df.predicted == df.top1_class).all()
assert (df.probability == df.top1_probability).all()
assert df[[f"top{i}_class" for i in range(1, k + 1)]].nunique(axis=1).eq(k).all()
print(len(df))
"#;
    let out = std::process::Command::new(&python)
        .arg("-c")
        .arg(code)
        .arg(csv)
        .arg(k.to_string())
        .output()
        .expect("python runs");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), rows.to_string());
}

#[test]
fn predict_on_a_folder_a_pattern_and_files_agrees_with_the_evaluation() {
    let tmp = tempdir();
    let d = tmp.path();
    let (run, test_files) = train(d, "pets", "", "learning_rate = 0.01");
    // Predict never needs the training data.
    std::fs::rename(d.join("pets/train"), d.join("moved")).expect("mv");

    // A folder, the run named by `latest`, every class listed.
    let out = predict(d)
        .args(["runs/pets/latest", "pets/test", "--top-k", "3"])
        .args(["-o", "out/folder.csv", "--device", "cpu"])
        .output()
        .expect("runs");
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(
        text.contains("Predictions: out/folder.csv (6 image(s), top 3)"),
        "{text}"
    );
    assert!(
        text.contains("Checkpoint: runs/pets/v0001/checkpoints/final/model.mpk"),
        "{text}"
    );
    let (head, rows) = read_csv(&d.join("out/folder.csv"));
    assert_eq!(head, header(3));
    let paths: Vec<String> = rows.iter().map(|r| r[0].clone()).collect();
    assert_eq!(paths, relative(&test_files, d));
    for r in &rows {
        let sum: f64 = (0..3)
            .map(|i| r[4 + 2 * i].parse::<f64>().expect("number"))
            .sum();
        assert!((sum - 1.0).abs() < 1e-5, "{r:?}");
        assert!(CLASSES.contains(&r[1].as_str()), "{r:?}");
        // The table shows each image's path and prediction.
        assert!(
            text.lines()
                .any(|l| l.starts_with(&r[0]) && l.contains(&r[1])),
            "{text}"
        );
    }
    check_with_pandas(&d.join("out/folder.csv"), 3, 6);

    // The run's evaluation saw the same test folder: the same predicted
    // class and probability for every image (its report's rows are the
    // test split, in the order the files were made).
    let (eval_head, eval_rows) = read_csv(&run.join("report/predictions.csv"));
    assert_eq!(
        eval_head,
        vec!["index", "true_class", "predicted_class", "probability"]
    );
    assert_eq!(eval_rows.len(), 6);
    for e in &eval_rows {
        let index: usize = e[0].parse().expect("index");
        let ours = &rows[index];
        assert_eq!(ours[0], relative(&test_files[index..=index], d)[0]);
        assert_eq!(ours[1], e[2], "predicted class of {}", ours[0]);
        let (a, b): (f64, f64) = (ours[2].parse().expect("p"), e[3].parse().expect("p"));
        assert!((a - b).abs() < 1e-6, "{}: {a} vs {b}", ours[0]);
    }

    // A quoted pattern, expanded by runner (the first image of each
    // class); --top-k is capped at the number of classes; the CSV goes to
    // predictions.csv in the working folder.
    let out = predict(d)
        .arg(&run)
        .args(["pets/test/*/img_00000.jpg", "--top-k", "10"])
        .output()
        .expect("runs");
    assert_exit(&out, 0);
    let (head, rows) = read_csv(&d.join("predictions.csv"));
    assert_eq!(head, header(3));
    let firsts: Vec<PathBuf> = test_files.iter().step_by(2).cloned().collect();
    assert_eq!(
        rows.iter().map(|r| r[0].clone()).collect::<Vec<_>>(),
        relative(&firsts, d)
    );

    // Files, in the order given, one at a time, only the top class.
    let out = predict(d)
        .arg(&run)
        .arg(&test_files[5])
        .arg(&test_files[0])
        .args(["--top-k", "1", "--batch-size", "1", "-o", "two.csv"])
        .output()
        .expect("runs");
    assert_exit(&out, 0);
    let (head, two) = read_csv(&d.join("two.csv"));
    assert_eq!(head, header(1));
    let (_, folder) = read_csv(&d.join("out/folder.csv"));
    for (row, i) in two.iter().zip([5, 0]) {
        assert_eq!(row[0], test_files[i].display().to_string());
        assert_eq!(row[1], folder[i][1]);
        let (a, b): (f64, f64) = (row[2].parse().expect("p"), folder[i][2].parse().expect("p"));
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
}

#[test]
fn the_grid_shows_the_images_with_their_predictions() {
    let tmp = tempdir();
    let d = tmp.path();
    let (run, test_files) = train(d, "grid", "", "learning_rate = 0.01");
    let out = predict(d)
        .arg(&run)
        .args(["pets/test", "--grid", "pictures/grid.png"])
        .output()
        .expect("runs");
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("Grid: pictures/grid.png\n"),
        "{}",
        stdout(&out)
    );
    let img = image::open(d.join("pictures/grid.png"))
        .expect("a readable PNG")
        .to_rgb8();
    // 6 images, 5 to a row: cells of 128 px + 10 px gaps, a 44 px caption
    // over each, a 36 px title.
    assert_eq!((img.width(), img.height()), (5 * 138 + 10, 36 + 2 * 182));
    // The first cell holds a picture, not the white background.
    let cell = (0..128).flat_map(|y| (0..128).map(move |x| (10 + x, 36 + 44 + y)));
    assert!(
        cell.into_iter()
            .any(|(x, y)| img.get_pixel(x, y).0 != [255, 255, 255]),
        "the first cell is blank"
    );
    // Fewer images than a row: the grid is as wide as they are.
    let out = predict(d)
        .arg(&run)
        .arg(&test_files[0])
        .arg(&test_files[3])
        .args(["--grid", "small.png"])
        .output()
        .expect("runs");
    assert_exit(&out, 0);
    let img = image::open(d.join("small.png")).expect("a readable PNG");
    assert_eq!((img.width(), img.height()), (2 * 138 + 10, 36 + 182));
    let leftovers: Vec<_> = std::fs::read_dir(d.join("pictures"))
        .expect("ls")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "no temporary files left: {leftovers:?}");
}

#[test]
fn unreadable_images_fail_by_default_and_bad_arguments_exit_2() {
    let tmp = tempdir();
    let d = tmp.path();
    let (run, test_files) = train(d, "strict", "", "learning_rate = 0.01");
    let bad = d.join("bad");
    std::fs::create_dir_all(&bad).expect("mkdir");
    std::fs::copy(&test_files[0], bad.join("a-good.jpg")).expect("cp");
    std::fs::write(bad.join("broken.jpg"), b"\xFF\xD8\xFFgarbage").expect("write");
    std::fs::create_dir_all(d.join("notes")).expect("mkdir");
    std::fs::write(d.join("notes/readme.txt"), "no pictures here").expect("write");
    let out = predict(d).arg(&run).arg("bad").output().expect("runs");
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("cannot decode image bad/broken.jpg"), "{err}");
    assert!(err.contains("pass --skip-bad-images"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!d.join("predictions.csv").exists());

    // --skip-bad-images lists the file and predicts on the rest; a file
    // that is not an image by its name is left out, and said so.
    std::fs::write(bad.join("scan.tiff"), b"II*\0").expect("write");
    let out = predict(d)
        .arg(&run)
        .args(["bad", "--skip-bad-images"])
        .output()
        .expect("runs");
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(
        text.contains("Skipped 1 unreadable image(s):\n  bad/broken.jpg: "),
        "{text}"
    );
    assert!(
        text.contains("Left out 1 file(s) that are not .jpg, .jpeg, .png, .bmp or .webp images: bad/scan.tiff"),
        "{text}"
    );
    let (_, rows) = read_csv(&d.join("predictions.csv"));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][0], "bad/a-good.jpg");
    std::fs::remove_file(d.join("predictions.csv")).expect("rm");

    let cases: [(&[&str], &str); 6] = [
        (&["nope.png"], "nope.png does not exist"),
        (
            &["pets/test/*.png"],
            "no file or folder matches `pets/test/*.png`",
        ),
        (&["pets/test", "elsewhere"], "elsewhere does not exist"),
        (&["pets/test/cat/img_0000[0.jpg"], "is not a valid pattern"),
        (
            &["notes"],
            "no image files (.jpg, .jpeg, .png, .bmp or .webp) found in notes",
        ),
        (
            &["pets/test", "--checkpoint", "epoch-7"],
            "no `epoch-7` checkpoint",
        ),
    ];
    for (args, message) in cases {
        let out = predict(d)
            .arg("runs/strict/latest")
            .args(args)
            .output()
            .expect("runs");
        assert_exit(&out, 2);
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
    }
    // A folder that holds no run.
    let out = predict(d)
        .args(["pets", "pets/test"])
        .output()
        .expect("runs");
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("is not a run folder"),
        "{}",
        stderr(&out)
    );
    // Usage errors of the arguments themselves.
    for args in [["--top-k", "0"], ["--batch-size", "x"]] {
        let out = predict(d)
            .arg(&run)
            .arg("pets/test")
            .args(args)
            .output()
            .expect("runs");
        assert_exit(&out, 2);
    }
    let out = predict(d).arg(&run).output().expect("runs");
    assert_exit(&out, 2);
}

/// The printed table, on a run whose weights barely moved from their
/// start (a learning rate of 1e-30): on black images every layer's output
/// is its (near-zero) bias, so every class has probability exactly 1/3
/// on every machine, and ties go to the classes in order.
#[test]
fn the_table_lists_each_image_and_the_skipped_ones() {
    let tmp = tempdir();
    let d = tmp.path();
    train(
        d,
        "table",
        "on_bad_image = \"skip\"",
        "learning_rate = 1e-30",
    );
    let black = image::RgbImage::new(16, 16);
    for name in ["one.png", "sub/three.png", "two.png"] {
        fixtures::save(&black, &d.join("black").join(name), 90).expect("save");
    }
    std::fs::write(d.join("black/broken.png"), b"not a picture").expect("write");
    let out = predict(d)
        .args([
            "runs/table/latest",
            "black",
            "--top-k",
            "2",
            "--device",
            "cpu",
        ])
        .output()
        .expect("runs");
    assert_exit(&out, 0);
    insta::assert_snapshot!("predict_table", stdout(&out));
    let (head, rows) = read_csv(&d.join("predictions.csv"));
    assert_eq!(head, header(2));
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows
        .iter()
        .all(|r| r[1] == "cat" && r[3] == "cat" && r[5] == "dog"));

    // Nothing readable at all is an error, even under `skip`.
    let out = predict(d)
        .args(["runs/table/latest", "black/broken.png"])
        .output()
        .expect("runs");
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("none of the 1 image(s) can be read; the first is black/broken.png"),
        "{}",
        stderr(&out)
    );
}
