//! TensorBoard output read back by TensorBoard itself: its EventAccumulator
//! (tests/py/read_events.py) and a real server (tests/py/tb_server_check.py).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::Path;

use runner::logging::hparams::{
    write_experiment, write_session_end, write_session_start, Domain, HValue, HparamInfo,
    MetricInfo, SessionStatus,
};
use runner::logging::tensorboard::{
    Stream, TensorboardLog, BATCH_LOSS, EPOCH_ACCURACY, EPOCH_LEARNING_RATE, EPOCH_LOSS,
};
use serde_json::Value;

use crate::common::{assert_exit, run_dir, runner_on, tiny_experiment};
use crate::python::{python_with, run_script};

fn loss(epoch: i64) -> f64 {
    1.0 / (epoch as f64 + 1.3) + 0.123_456_789
}

fn accuracy(epoch: i64) -> f64 {
    0.5 + 0.1 * epoch as f64 + 1e-9
}

/// A PNG whose pixels depend on their place, so it compresses to real data.
fn gradient_png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 5) as u8, (y * 7) as u8, ((x ^ y) * 3) as u8])
    });
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// Epochs `epochs` of a run into `run_dir`, as the trainer would log them.
fn log_epochs(run_dir: &Path, epochs: std::ops::Range<i64>) {
    let mut log = TensorboardLog::open(run_dir).unwrap();
    for epoch in epochs {
        for batch in 0..3 {
            let step = epoch * 3 + batch;
            log.scalar(Stream::Train, BATCH_LOSS, step, loss(epoch) + batch as f64)
                .unwrap();
        }
        log.scalar(Stream::Train, EPOCH_LOSS, epoch, loss(epoch))
            .unwrap();
        log.scalar(Stream::Train, EPOCH_ACCURACY, epoch, accuracy(epoch))
            .unwrap();
        log.scalar(
            Stream::Train,
            EPOCH_LEARNING_RATE,
            epoch,
            1e-4 / (epoch as f64 + 1.0),
        )
        .unwrap();
        log.scalar(Stream::Validation, EPOCH_LOSS, epoch, loss(epoch) * 1.5)
            .unwrap();
        log.scalar(
            Stream::Validation,
            EPOCH_ACCURACY,
            epoch,
            accuracy(epoch) - 0.05,
        )
        .unwrap();
        log.flush().unwrap();
    }
}

fn read_events(python: &Path, dir: &Path) -> Value {
    let out = run_script(python, "read_events.py", &[dir.as_os_str()]);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `[[step, value], ...]` of one scalar tag.
fn points(runs: &Value, run: &str, tag: &str) -> Vec<(i64, f64)> {
    runs[run]["scalars"][tag]
        .as_array()
        .unwrap_or_else(|| panic!("no scalar {run}/{tag} in {runs}"))
        .iter()
        .map(|p| (p[0].as_i64().unwrap(), p[1].as_f64().unwrap()))
        .collect()
}

/// What TensorBoard stores for `v`: scalars are f32.
fn stored(v: f64) -> f64 {
    v as f32 as f64
}

#[test]
fn scalars_images_and_text_read_back_with_tensorboard() {
    let Some(python) = python_with("tensorboard") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    // A run that stops after epoch 1 and is resumed: two event files per folder.
    log_epochs(&run, 0..2);
    log_epochs(&run, 2..4);
    let png = gradient_png(48, 32);
    let mut log = TensorboardLog::open(&run).unwrap();
    log.image_png(
        Stream::Validation,
        "evaluation/confusion_matrix",
        3,
        &png,
        48,
        32,
    )
    .unwrap();
    let config = "```toml\nname = \"cnn\"\n[optimizer]\nlr = 1e-4\n```\nünïcode ✓";
    log.text(Stream::Train, "config", 0, config).unwrap();
    log.flush().unwrap();

    let json = read_events(&python, &run);
    let runs = &json["runs"];
    let names: Vec<&String> = runs.as_object().unwrap().keys().collect();
    assert_eq!(names, ["train", "validation"]);

    for (stream, tag, f) in [
        ("train", EPOCH_LOSS, loss as fn(i64) -> f64),
        ("train", EPOCH_ACCURACY, accuracy),
        ("train", EPOCH_LEARNING_RATE, |e| 1e-4 / (e as f64 + 1.0)),
        ("validation", EPOCH_LOSS, |e| loss(e) * 1.5),
        ("validation", EPOCH_ACCURACY, |e| accuracy(e) - 0.05),
    ] {
        let expected: Vec<(i64, f64)> = (0..4).map(|e| (e, stored(f(e)))).collect();
        assert_eq!(points(runs, stream, tag), expected, "{stream}/{tag}");
    }
    let batches = points(runs, "train", BATCH_LOSS);
    assert_eq!(batches.len(), 12);
    assert_eq!(batches[7], (7, stored(loss(2) + 1.0)));
    assert!(runs["validation"]["scalars"][EPOCH_LEARNING_RATE].is_null());

    let images = &runs["validation"]["images"]["evaluation/confusion_matrix"];
    assert_eq!(images.as_array().unwrap().len(), 1, "{images}");
    let image = &images[0];
    assert_eq!(
        [
            &image["step"],
            &image["width"],
            &image["height"],
            &image["png_width"],
            &image["png_height"]
        ],
        [3, 48, 32, 48, 32]
    );

    assert_eq!(runs["train"]["plugins"]["config"], "text");
    assert_eq!(runs["train"]["texts"]["config"][0]["text"], config);
    assert_eq!(runs["train"]["texts"]["config"][0]["step"], 0);
}

const METRICS: [(&str, &str); 3] = [
    ("validation", EPOCH_ACCURACY),
    ("validation", EPOCH_LOSS),
    ("train", EPOCH_LOSS),
];

/// A sweep root as `runner sweep` lays it out: the experiment summary at the
/// root, one folder per trial with its session summaries and its scalars.
fn write_sweep(root: &Path) {
    let hparams = [
        HparamInfo {
            name: "optimizer.lr".into(),
            domain: Some(Domain::Interval {
                min: 1e-5,
                max: 1e-2,
            }),
        },
        HparamInfo {
            name: "model.dropout".into(),
            domain: Some(Domain::Discrete(vec![
                HValue::Number(0.2),
                HValue::Number(0.5),
            ])),
        },
        HparamInfo {
            name: "optimizer.type".into(),
            domain: Some(Domain::Discrete(vec![
                HValue::Text("rmsprop".into()),
                HValue::Text("adam".into()),
            ])),
        },
        HparamInfo {
            name: "augment.flip".into(),
            domain: Some(Domain::Discrete(vec![
                HValue::Bool(false),
                HValue::Bool(true),
            ])),
        },
    ];
    let metrics: Vec<MetricInfo> = METRICS
        .iter()
        .map(|(group, tag)| MetricInfo {
            group: group.to_string(),
            tag: tag.to_string(),
            display_name: format!("{group} {tag}"),
        })
        .collect();
    write_experiment(root, &hparams, &metrics).unwrap();
    for (i, (lr, dropout, opt, flip, status)) in [
        (1e-4, 0.2, "rmsprop", true, SessionStatus::Success),
        (1e-3, 0.5, "adam", false, SessionStatus::Failure),
    ]
    .into_iter()
    .enumerate()
    {
        let trial = root.join(format!("trial-{i}"));
        let values = BTreeMap::from([
            ("optimizer.lr".to_string(), HValue::Number(lr)),
            ("model.dropout".to_string(), HValue::Number(dropout)),
            ("optimizer.type".to_string(), HValue::Text(opt.into())),
            ("augment.flip".to_string(), HValue::Bool(flip)),
        ]);
        write_session_start(&trial, &values, 1_700_000_000.0 + i as f64).unwrap();
        log_epochs(&trial, 0..3 + i as i64);
        write_session_end(&trial, status, 1_700_000_100.0 + i as f64).unwrap();
    }
}

#[test]
fn hparams_summaries_read_back_with_tensorboard() {
    let Some(python) = python_with("tensorboard") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    write_sweep(dir.path());
    let json = read_events(&python, dir.path());
    let runs = &json["runs"];

    let experiment = &runs["."]["hparams"]["_hparams_/experiment"];
    let infos = experiment["hparamInfos"].as_array().unwrap();
    let names: Vec<&str> = infos.iter().map(|h| h["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "optimizer.lr",
            "model.dropout",
            "optimizer.type",
            "augment.flip"
        ]
    );
    assert_eq!(infos[0]["type"], "DATA_TYPE_FLOAT64");
    assert_eq!(infos[0]["domainInterval"]["maxValue"], 1e-2);
    assert_eq!(infos[1]["domainDiscrete"], serde_json::json!([0.2, 0.5]));
    assert_eq!(infos[2]["type"], "DATA_TYPE_STRING");
    assert_eq!(
        infos[2]["domainDiscrete"],
        serde_json::json!(["rmsprop", "adam"])
    );
    assert_eq!(infos[3]["type"], "DATA_TYPE_BOOL");
    let metric_names: Vec<(&str, &str)> = experiment["metricInfos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"]["group"].as_str().unwrap(),
                m["name"]["tag"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(metric_names, METRICS);
    assert_eq!(
        experiment["metricInfos"][0]["datasetType"],
        "DATASET_VALIDATION"
    );

    let start = &runs["trial-1"]["hparams"]["_hparams_/session_start_info"];
    assert_eq!(
        start["hparams"],
        serde_json::json!({"optimizer.lr": 1e-3, "model.dropout": 0.5,
                           "optimizer.type": "adam", "augment.flip": false})
    );
    assert_eq!(start["startTimeSecs"], 1_700_000_001.0);
    let end = &runs["trial-1"]["hparams"]["_hparams_/session_end_info"];
    assert_eq!(end["status"], "STATUS_FAILURE");
    assert_eq!(
        runs["trial-0"]["hparams"]["_hparams_/session_end_info"]["status"],
        "STATUS_SUCCESS"
    );
    // The metric the HPARAMS tab shows for trial-1: its last validation accuracy.
    let last = *points(runs, "trial-1/validation", EPOCH_ACCURACY)
        .last()
        .unwrap();
    assert_eq!(last, (3, stored(accuracy(3) - 0.05)));
}

fn server_check(python: &Path, dir: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(python);
    cmd.arg(crate::python::script("tb_server_check.py"))
        .arg(dir)
        .args(args);
    cmd.output().unwrap()
}

#[test]
fn tensorboard_server_lists_runs_tags_and_sessions() {
    let Some(python) = python_with("tensorboard") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    write_sweep(dir.path());
    let started = std::time::Instant::now();
    let args = [
        "--hparams",
        "--expect-run",
        "trial-0/train",
        "--expect-run",
        "trial-1/validation",
        "--expect-tags",
        "epoch_loss,epoch_accuracy",
    ];
    let out = run_script(
        &python,
        "tb_server_check.py",
        &std::iter::once(dir.path().as_os_str())
            .chain(args.iter().map(OsStr::new))
            .collect::<Vec<_>>(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ok hparams sessions: 2 sessions"),
        "{stdout}"
    );
    println!("{stdout}server check took {:.1?}", started.elapsed());

    // The check can fail: a tag no run has.
    let out = server_check(
        &python,
        dir.path(),
        &[
            "--expect-run",
            "trial-0/validation",
            "--expect-tags",
            "epoch_learning_rate",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("run 'trial-0/validation' lacks tags ['epoch_learning_rate']"),
        "{stderr}"
    );
}

/// Values spread over a few orders of magnitude, with repeats.
fn weight_like(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919 % 1013) as f32 / 1013.0 - 0.3) * if i % 5 == 0 { 0.01 } else { 1.0 })
        .collect()
}

/// TensorBoard's numpy version of `tf.summary.histogram`'s bucketing, over
/// each list of values in the JSON list on stdin: one line of buckets each.
const HISTOGRAM_PB: &str = r#"
import json, sys
import numpy as np
from tensorboard.plugins.histogram.summary_v2 import histogram_pb
from tensorboard.util import tensor_util
for values in json.load(sys.stdin):
    pb = histogram_pb("w", np.array(values, dtype=np.float32))
    print(json.dumps(tensor_util.make_ndarray(pb.value[0].tensor).tolist()))
"#;

#[test]
fn histograms_are_bucketed_as_tensorboards_own_histogram_pb() {
    let Some(python) = python_with("tensorboard") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut log = TensorboardLog::open(dir.path()).unwrap();
    let cases = [weight_like(1000), vec![0.25; 9], vec![-2.0, 3.5]];
    for (step, values) in cases.iter().enumerate() {
        log.histogram(Stream::Train, "w/histogram", step as i64, values)
            .unwrap();
    }
    log.flush().unwrap();
    let json = read_events(&python, dir.path());
    let written = &json["runs"]["train"]["histograms"]["w/histogram"];

    let mut child = std::process::Command::new(&python)
        .args(["-c", HISTOGRAM_PB])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    serde_json::to_writer(child.stdin.take().unwrap(), &cases).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let reference: Vec<Vec<[f64; 3]>> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(reference.len(), cases.len());
    for (step, want) in reference.iter().enumerate() {
        assert_eq!(written[step]["step"], step);
        let got: Vec<[f64; 3]> = serde_json::from_value(written[step]["buckets"].clone()).unwrap();
        assert_eq!(got.len(), 30);
        for (g, w) in got.iter().zip(want) {
            for (a, b) in g.iter().zip(w) {
                assert!(
                    (a - b).abs() <= 1e-12 * b.abs().max(1.0),
                    "step {step}: {g:?} vs {w:?}"
                );
            }
        }
    }
}

#[test]
fn a_runs_graph_and_weight_histograms_show_in_tensorboards_tabs() {
    let Some(python) = python_with("tensorboard") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let extra = "[callbacks.tensorboard]\nhistogram_every = 2\n";
    let exp = tiny_experiment(tmp.path(), "hist", extra);
    let runs = tmp.path().join("runs");
    let out = runner_on("run", &exp, &runs).output().unwrap();
    assert_exit(&out, 0);
    let dir = run_dir(&runs, "hist");
    let json = read_events(&python, &dir);
    let histograms = json["runs"]["train"]["histograms"].as_object().unwrap();
    // Keras's tags, `layer/weight/histogram`, after epochs 0 and 2 of 3;
    // each counts every value of its weight.
    let sizes = BTreeMap::from([
        ("conv2d/bias/histogram", 4.0),
        ("conv2d/kernel/histogram", (4 * 3 * 3 * 3) as f64),
        ("dense/bias/histogram", 4.0),
        ("dense/kernel/histogram", (6 * 6 * 4 * 4) as f64),
    ]);
    let tags: Vec<&str> = histograms.keys().map(String::as_str).collect();
    assert_eq!(tags, sizes.keys().copied().collect::<Vec<_>>());
    for (tag, size) in sizes {
        let events = histograms[tag].as_array().unwrap();
        let steps: Vec<i64> = events.iter().map(|e| e["step"].as_i64().unwrap()).collect();
        assert_eq!(steps, [0, 2], "{tag}");
        for e in events {
            let buckets: Vec<[f64; 3]> = serde_json::from_value(e["buckets"].clone()).unwrap();
            assert_eq!(buckets.iter().map(|b| b[2]).sum::<f64>(), size, "{tag}");
            assert!(buckets.windows(2).all(|w| w[0][1] == w[1][0]), "{tag}");
        }
    }
    assert!(json["runs"]["validation"]["histograms"]
        .as_object()
        .unwrap()
        .is_empty());

    // The layer stack as the graph of train/ (Keras's write_graph), once.
    let graph = json["runs"]["train"]["graph"].as_array().unwrap();
    let chain: Vec<(&str, &str, &Value)> = graph
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap(),
                n["op"].as_str().unwrap(),
                &n["inputs"],
            )
        })
        .collect();
    let names = [
        "input",
        "conv2d",
        "max_pooling2d",
        "flatten",
        "dropout",
        "dense",
    ];
    let ops = [
        "InputLayer",
        "Conv2D",
        "MaxPooling2D",
        "Flatten",
        "Dropout",
        "Dense",
    ];
    for (i, (name, op, inputs)) in chain.iter().enumerate() {
        assert_eq!((*name, *op), (names[i], ops[i]));
        let before: Vec<&str> = names[..i].iter().rev().take(1).copied().collect();
        assert_eq!(**inputs, serde_json::json!(before), "{name}");
    }
    assert_eq!(chain.len(), names.len());
    assert_eq!(
        graph[1]["output_shapes"],
        serde_json::json!([[-1, 12, 12, 4]])
    );
    assert_eq!(graph[3]["output_shapes"], serde_json::json!([[-1, 144]]));
    assert_eq!(graph[1]["attrs"]["filters"], "4");
    assert_eq!(graph[5]["attrs"]["params"], "580");
    assert!(json["runs"]["validation"]["graph"].is_null());

    // A real server shows them: histograms with their steps in two tabs,
    // the graph with every node.
    let out = run_script(&python, "tb_server_check.py", &[dir.as_os_str()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ok histograms: 4 histograms"), "{stdout}");
    assert!(stdout.contains("ok graphs: train (6 nodes)"), "{stdout}");

    // `graph = false` writes none.
    let extra = "[callbacks.tensorboard]\ngraph = false\n";
    let exp = tiny_experiment(tmp.path(), "nograph", extra);
    let out = runner_on("run", &exp, &runs)
        .args(["--set", "train.epochs=1"])
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let json = read_events(&python, &run_dir(&runs, "nograph"));
    assert!(json["runs"]["train"]["graph"].is_null());
    assert!(json["runs"]["train"]["scalars"]["epoch_loss"].is_array());
}
