//! Sweeps that spend compute wisely: early stopping (ASHA) locally and
//! through Slurm, kill and resume with the same rung decisions, TPE over a
//! conditional space, budgets, and the config errors of these keys.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{
    assert_exit, assert_resume_runs_nothing, decisions, journal, runner, runner_on, stderr, stdout,
    sweep_dir, tiny_experiment, trial_dir,
};
use crate::slurm_cluster::SlurmCluster;

/// The latest state of each trial.
fn states(dir: &Path) -> BTreeMap<u64, String> {
    journal(dir)
        .iter()
        .map(|e| {
            (
                e["trial"].as_u64().unwrap(),
                e["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn summary(dir: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(dir.join("summary.csv")).unwrap();
    let header = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|x| x.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}

/// Each trial's status in summary.csv, in trial order.
fn summary_status(dir: &Path) -> Vec<String> {
    let (header, rows) = summary(dir);
    let status = header.iter().position(|h| h == "status").unwrap();
    rows.into_iter()
        .map(|mut r| r.swap_remove(status))
        .collect()
}

/// `runner sweep EXP` with ASHA_SET, to its end (at most 300 s).
fn run_asha(exp: &Path, runs: &Path) -> std::process::Output {
    runner_on("sweep", exp, runs)
        .args(ASHA_SET)
        .timeout(Duration::from_secs(300))
        .output()
        .unwrap()
}

/// Re-derive every rung decision from the values the journal recorded, in
/// its order, with the rule docs/sweeps.md states: at a rung, keep the top
/// max(1, floor(n / eta)) of the n values recorded there so far (its own
/// included; lower is better here); ties continue.
fn check_rule(dir: &Path, eta: usize) {
    let mut at: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for e in journal(dir) {
        let Some(r) = e.get("rung") else { continue };
        let value = r["value"].as_f64().unwrap();
        let seen = at.entry(r["epoch"].as_u64().unwrap()).or_default();
        seen.push(value);
        let mut sorted = seen.clone();
        sorted.sort_by(f64::total_cmp);
        let k = (sorted.len() / eta).max(1);
        let expected = if value <= sorted[k - 1] {
            "continue"
        } else {
            "prune"
        };
        assert_eq!(r["decision"], expected, "{r} among {sorted:?}");
    }
}

/// A sweep of learning rates on the tiny experiment, ranked by val_loss:
/// three that learn and three that barely move, so the rungs prune.
fn asha_experiment(dir: &Path, name: &str, extra: &str) -> PathBuf {
    tiny_experiment(
        dir,
        name,
        &format!(
            r#"
[sweep]
metric = "val_loss"
parallel = 1

[sweep.grid]
"optimizer.learning_rate" = [0.01, 1e-6, 0.02, 2e-6, 0.03, 3e-6]

[sweep.early_stop]
type = "asha"
min_epochs = 1
reduction_factor = 3
{extra}"#
        ),
    )
}

/// Nine epochs of 640 images: long enough that a trial is still running
/// when its first rung prunes it.
const ASHA_SET: [&str; 4] = ["--set", "train.epochs=9", "--set", "data.train_size=640"];

/// A pruned trial stops within the epoch it began after its rung and does
/// not finish it (SIGTERM would have: an epoch nobody uses). Epochs of about
/// a second here, against a decision made within about 0.1 s of the rung.
#[test]
fn a_pruned_trial_stops_without_finishing_another_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tmp.path().join("slowepochs.toml");
    std::fs::write(
        &exp,
        r#"[experiment]
name = "slowepochs"
seed = 3

[data]
source = "synthetic"
classes = 4
train_size = 2000
validation_size = 64
test_size = 32

[augment]
rescale = "1/255"

[model]
input_shape = [32, 32, 3]
layers = [
  { type = "conv2d", filters = 32, kernel = 3, padding = "same", activation = "relu" },
  { type = "conv2d", filters = 32, kernel = 3, padding = "same", activation = "relu" },
  { type = "max_pool2d", pool = 4 },
  { type = "flatten" },
  { type = "dense", units = 4, activation = "softmax" },
]

[optimizer]
type = "adam"

[train]
epochs = 3
batch_size = 32

[sweep]
metric = "val_loss"
parallel = 1

[sweep.grid]
"optimizer.learning_rate" = [0.003, 1e-7]

# One rung, at epoch 1: the second trial is pruned there unless it beats
# the first.
[sweep.early_stop]
type = "asha"
min_epochs = 1
reduction_factor = 2
max_epochs = 2
"#,
    )
    .unwrap();
    let runs = tmp.path().join("runs");
    let out = runner_on("sweep", &exp, &runs)
        .timeout(Duration::from_secs(300))
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let dir = sweep_dir(&runs, "slowepochs");
    let st = states(&dir);
    assert_eq!(st[&1], "pruned", "{st:?}\n{}", stdout(&out));
    let d = trial_dir(&dir, 1);
    // Its meta.json says pruned, not "continue with runner run --resume".
    assert_pruned_at_epoch_1(&d);
    assert_eq!(
        crate::common::csv_epochs(&d).len(),
        1,
        "the pruned trial trained past its rung:\n{}",
        std::fs::read_to_string(d.join("metrics.csv")).unwrap()
    );
}

#[test]
fn asha_prunes_bad_trials_and_a_resume_never_reruns_them() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = asha_experiment(tmp.path(), "asha", "");
    let runs = tmp.path().join("runs");
    let out = run_asha(&exp, &runs);
    assert_exit(&out, 0);
    let text = stdout(&out);
    let dir = sweep_dir(&runs, "asha");
    check_rule(&dir, 3);
    let st = states(&dir);
    let pruned: Vec<u64> = st
        .iter()
        .filter(|(_, s)| *s == "pruned")
        .map(|(t, _)| *t)
        .collect();
    assert!(pruned.len() >= 2, "{st:?}\n{text}");
    assert!(st.values().all(|s| s == "done" || s == "pruned"), "{st:?}");
    // The slow learners are the ones pruned.
    for t in [1, 3, 5] {
        assert_eq!(st[&t], "pruned", "trial {t}: {st:?}");
    }
    // A pruned trial was stopped, cleanly, before its end, and its own
    // meta.json says why (not "continue with runner run --resume").
    for &t in &pruned {
        let meta = crate::common::meta(&trial_dir(&dir, t));
        assert_eq!(meta["status"], "stopped", "{meta}");
        let message = meta["message"].as_str().unwrap_or("");
        assert!(message.starts_with("pruned at epoch "), "{meta}");
        assert!(message.contains("a pruned trial is not resumed"), "{meta}");
    }
    let stopped_early = pruned
        .iter()
        .any(|&t| crate::common::csv_epochs(&trial_dir(&dir, t)).len() < 9);
    assert!(stopped_early, "no pruned trial was stopped before its end");
    // summary.csv, the ranked table and the final line say so.
    let (header, rows) = summary(&dir);
    let status = header.iter().position(|h| h == "status").unwrap();
    let message = header.iter().position(|h| h == "message").unwrap();
    for &t in &pruned {
        let row = &rows[t as usize];
        assert_eq!(row[status], "pruned");
        assert!(row[message].starts_with("pruned at epoch "), "{row:?}");
    }
    assert!(text.contains("pruned@1"), "{text}");
    // `runner compare` says pruned too (the trial's own meta.json: stopped).
    let cmp = runner().arg("compare").arg(&dir).output().unwrap();
    assert_exit(&cmp, 0);
    let cmp = stdout(&cmp);
    for &t in &pruned {
        let line = cmp
            .lines()
            .find(|l| l.contains(&format!("trial-{t:03}-")))
            .unwrap_or_else(|| panic!("trial {t} not compared:\n{cmp}"));
        assert!(line.contains(" pruned@"), "{line}\n{cmp}");
    }
    assert!(!cmp.contains("stopped"), "{cmp}");
    // The final line: the epochs of summary.csv, against every trial to 9.
    let epochs = header.iter().position(|h| h == "epochs").unwrap();
    let trained: usize = rows
        .iter()
        .map(|r| r[epochs].parse::<usize>().unwrap())
        .sum();
    let full = rows.len() * 9;
    let line = format!(
        "Early stopping pruned {} of {} trial(s); {trained} epoch(s) trained in all, \
         {:.0}% of the {full} that {} full trial(s) (9 epochs each) would take",
        pruned.len(),
        rows.len(),
        100.0 * trained as f64 / full as f64,
        rows.len()
    );
    assert!(text.contains(&line), "{line}\n{text}");
    let pruned_entries: Vec<serde_json::Value> = journal(&dir)
        .into_iter()
        .filter(|e| e["state"] == "pruned")
        .collect();
    // Rungs at epochs 1 and 3 (of 9, keeping a third).
    assert!(pruned_entries
        .iter()
        .all(|e| matches!(e["epoch"].as_u64(), Some(1 | 3))));

    // --resume runs nothing: a pruned trial is never resumed.
    let logs: Vec<String> = pruned
        .iter()
        .map(|&t| std::fs::read_to_string(trial_dir(&dir, t).join("run.log")).unwrap())
        .collect();
    assert_resume_runs_nothing(&dir);
    // Nor by `runner run --resume` of its folder, which names the way to
    // train its values to the end.
    let out = runner()
        .args(["run", "--resume"])
        .arg(trial_dir(&dir, pruned[0]))
        .output()
        .unwrap();
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("cannot be resumed: early stopping pruned this trial at epoch ")
            && err.contains("config.resolved.toml`"),
        "{err}"
    );
    for (&t, before) in pruned.iter().zip(&logs) {
        let after = std::fs::read_to_string(trial_dir(&dir, t).join("run.log")).unwrap();
        assert_eq!(&after, before, "trial {t} ran again");
    }
    assert_eq!(states(&dir), st);
}

/// Runs the sweep of `reference` (an experiment named "reference") to its
/// end, then the sweep of `exp` (named "killed"), both with ASHA_SET, and
/// kills the second with SIGKILL as soon as its journal holds a rung
/// decision `decision` and a running trial of index `trial` or later.
/// Returns the reference's decisions and the killed sweep's folder.
fn reference_and_killed(
    runs: &Path,
    reference: &Path,
    exp: &Path,
    decision: &str,
    trial: u64,
) -> (Vec<(u64, u64, String)>, PathBuf) {
    let out = run_asha(reference, runs);
    assert_exit(&out, 0);
    let reference = decisions(&sweep_dir(runs, "reference"));
    let mut child = crate::common::runner_process()
        .arg("sweep")
        .arg(exp)
        .args(ASHA_SET)
        .arg("--runs-dir")
        .arg(runs)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(240);
    let dir = loop {
        if let Ok(target) = crate::common::read_latest(runs.join("killed/sweeps/latest")) {
            let dir = runs.join("killed/sweeps").join(target);
            let j = journal(&dir);
            let decided = j.iter().any(|e| e["rung"]["decision"] == decision);
            let last_running = j.iter().rev().find(|e| e["state"] == "running");
            if decided && last_running.is_some_and(|e| e["trial"].as_u64() >= Some(trial)) {
                break dir;
            }
        }
        assert!(Instant::now() < deadline, "no `{decision}` decision");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the sweep ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    (reference, dir)
}

#[test]
fn a_killed_asha_sweep_resumes_to_the_same_decisions() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    // The reference: the same sweep, never interrupted; kill -9 the other
    // once a trial has been pruned and another has started.
    let reference = asha_experiment(tmp.path(), "reference", "");
    let exp = asha_experiment(tmp.path(), "killed", "");
    let (reference, dir) = reference_and_killed(&runs, &reference, &exp, "prune", 2);
    let before = decisions(&dir);
    assert!(
        before.len() < reference.len(),
        "killed too late: {before:?}"
    );
    let pruned_before: Vec<u64> = before
        .iter()
        .filter(|d| d.2 == "prune")
        .map(|d| d.0)
        .collect();
    let logs: Vec<String> = pruned_before
        .iter()
        .map(|&t| std::fs::read_to_string(trial_dir(&dir, t).join("run.log")).unwrap())
        .collect();

    let out = runner()
        .args(["sweep", "--resume"])
        .arg(&dir)
        .timeout(Duration::from_secs(300))
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert_eq!(decisions(&dir), reference, "{}", stdout(&out));
    check_rule(&dir, 3);
    // Trials pruned before the kill were not run again.
    for (&t, before) in pruned_before.iter().zip(&logs) {
        let after = std::fs::read_to_string(trial_dir(&dir, t).join("run.log")).unwrap();
        assert_eq!(&after, before, "pruned trial {t} ran again");
        assert_eq!(states(&dir)[&t], "pruned");
    }
}

/// Hyperband's `--dry-run` names each bracket's rungs and the bracket
/// each trial is dealt to, as docs/sweeps.md computes them by hand for 9
/// epochs, rungs from epoch 1 and a reduction factor of 3: brackets 0, 1,
/// 2, 0, 1, 0 for the first six trials.
#[test]
fn a_hyperband_sweep_names_each_trials_bracket_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(
        tmp.path(),
        "hb",
        "[sweep]\nstrategy = \"random\"\ntrials = 6\n\
         [sweep.random]\n\"model.dropout\" = { distribution = \"uniform\", low = 0.0, high = 0.5 }\n\
         [sweep.early_stop]\ntype = \"hyperband\"\nmin_epochs = 1\n",
    );
    let out = runner()
        .args(["sweep", "--dry-run", "--set", "train.epochs=9"])
        .arg(&exp)
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let dry = stdout(&out);
    assert!(
        dry.contains(
            "Early stopping: hyperband, keeps the top 1/3 at each rung; rungs at epochs \
             1, 3 in bracket 0, 3 in bracket 1, none in bracket 2 (of 9)"
        ),
        "{dry}"
    );
    let brackets: Vec<&str> = dry
        .lines()
        .filter(|l| l.trim_start().starts_with("trial-"))
        .filter_map(|l| l.split("  bracket ").nth(1)?.split_whitespace().next())
        .collect();
    assert_eq!(brackets, ["0", "1", "2", "0", "1", "0"], "{dry}");

    // The sweep run: summary.csv, the ranked table and --status name each
    // trial's bracket, the same as the dry run.
    let runs = tmp.path().join("runs");
    let out = runner_on("sweep", &exp, &runs)
        .args(["--set", "train.epochs=9"])
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let sweep = sweep_dir(&runs, "hb");
    let mut csv = csv::Reader::from_path(sweep.join("summary.csv")).unwrap();
    let headers = csv.headers().unwrap().clone();
    assert_eq!(
        &headers.iter().take(4).collect::<Vec<_>>(),
        &["trial", "id", "status", "bracket"]
    );
    let by_trial: Vec<(String, String)> = csv
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].to_string(), r[3].to_string())
        })
        .collect();
    let expected: Vec<(String, String)> = brackets
        .iter()
        .enumerate()
        .map(|(i, b)| (i.to_string(), b.to_string()))
        .collect();
    assert_eq!(by_trial, expected);
    let header = stdout(&out)
        .lines()
        .find(|l| l.trim_start().starts_with("trial "))
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    assert_eq!(
        header.as_deref(),
        Some("trial status bracket"),
        "{}",
        stdout(&out)
    );
    let out = runner()
        .arg("sweep")
        .arg("--status")
        .arg(&sweep)
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let status: Vec<String> = stdout(&out)
        .lines()
        .filter(|l| l.trim_start().starts_with("trial-") && l.contains(" epochs "))
        .filter_map(|l| {
            Some(
                l.split("  bracket ")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(status, brackets, "{}", stdout(&out));
}

/// TPE over a conditional space: momentum only with SGD, a learning-rate
/// range per optimizer. The first trials are random (and shown by
/// --dry-run), the others proposed from the results; no trial has a key
/// whose condition does not hold.
#[test]
fn tpe_proposes_trials_from_results_over_a_conditional_space() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(
        tmp.path(),
        "tpe",
        r#"
[sweep]
strategy = "tpe"
trials = 6
parallel = 2
metric = "val_loss"

[sweep.tpe]
n_startup = 3

[sweep.grid]
"optimizer.type" = ["sgd", "adam"]

[sweep.random]
"optimizer.momentum" = { distribution = "uniform", low = 0.0, high = 0.9, when = { "optimizer.type" = "sgd" } }
"optimizer.learning_rate" = [
  { distribution = "log_uniform", low = 1e-3, high = 0.3, when = { "optimizer.type" = "sgd" } },
  { distribution = "log_uniform", low = 1e-5, high = 1e-2, when = { "optimizer.type" = "adam" } },
]
"#,
    );
    let out = runner()
        .args(["sweep", "--dry-run"])
        .arg(&exp)
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let dry = stdout(&out).replace(&tmp.path().display().to_string(), "[TMP]");
    insta::assert_snapshot!("dry-run-tpe-conditional", dry);

    let runs = tmp.path().join("runs");
    let out = runner_on("sweep", &exp, &runs)
        .timeout(Duration::from_secs(300))
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let dir = sweep_dir(&runs, "tpe");
    let st = states(&dir);
    assert_eq!(st.len(), 6, "{st:?}");
    assert!(st.values().all(|s| s == "done"), "{st:?}");
    // The dry run's trials are the first three.
    for t in 0..3u64 {
        let name = trial_dir(&dir, t)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(dry.contains(&name), "{name} not in\n{dry}");
    }
    for t in 0..6u64 {
        let params: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(trial_dir(&dir, t).join("params.json")).unwrap(),
        )
        .unwrap();
        let sgd = params["optimizer.type"] == "sgd";
        assert_eq!(params.get("optimizer.momentum").is_some(), sgd, "{params}");
        let lr = params["optimizer.learning_rate"].as_f64().unwrap();
        let (lo, hi) = if sgd { (1e-3, 0.3) } else { (1e-5, 1e-2) };
        assert!((lo..=hi).contains(&lr), "{params}");
        // The trial's config is valid for its optimizer (no sgd-only key
        // left in an adam trial).
        let config = std::fs::read_to_string(trial_dir(&dir, t).join("trial.toml")).unwrap();
        assert_eq!(config.contains("momentum"), sgd, "trial {t}:\n{config}");
    }
    // A resume proposes nothing more: the six are done.
    let out = runner()
        .args(["sweep", "--resume"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert_eq!(states(&dir).len(), 6);
    // Two more, chosen by TPE from the six results.
    let out = runner()
        .args(["sweep", "--resume"])
        .arg(&dir)
        .args(["--set", "sweep.trials=8"])
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("0 trial(s) to run and 2 for TPE to choose, 6 already finished"),
        "{}",
        stdout(&out)
    );
    let st = states(&dir);
    assert_eq!(st.len(), 8, "{st:?}");
    assert!(st.values().all(|s| s == "done"), "{st:?}");
    for t in 6..8u64 {
        let config = std::fs::read_to_string(trial_dir(&dir, t).join("trial.toml")).unwrap();
        let params = std::fs::read_to_string(trial_dir(&dir, t).join("params.json")).unwrap();
        assert_eq!(
            config.contains("momentum"),
            params.contains("\"sgd\""),
            "trial {t}:\n{config}"
        );
    }
}

#[test]
fn budgets_stop_launching_and_say_why() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let exp = tiny_experiment(
        tmp.path(),
        "capped",
        "[sweep]\nmax_trials = 2\n[sweep.grid]\n\"optimizer.learning_rate\" = [0.01, 0.02, 0.03, 0.04]\n",
    );
    let out = runner_on("sweep", &exp, &runs).output().unwrap();
    assert_exit(&out, 0);
    let capped = sweep_dir(&runs, "capped");
    assert_eq!(states(&capped).len(), 2);
    // A grid has no `trials` to raise.
    let out = runner()
        .args(["sweep", "--resume"])
        .arg(&capped)
        .args(["--set", "sweep.trials=3"])
        .output()
        .unwrap();
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("a grid's trials are its points; `sweep.max_trials` caps them"),
        "{}",
        stderr(&out)
    );
    // Raised on resume, the cap lets the grid's next point run.
    let out = runner()
        .args(["sweep", "--resume"])
        .arg(&capped)
        .args(["--set", "sweep.max_trials=3"])
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let st = states(&capped);
    assert_eq!(st.len(), 3, "{st:?}");
    assert!(st.values().all(|s| s == "done"), "{st:?}");
    let params = std::fs::read_to_string(trial_dir(&capped, 2).join("params.json")).unwrap();
    assert!(params.contains("0.03"), "{params}");

    // A budget of a few milliseconds: the first trial starts (the clock
    // runs from the sweep's creation, checked before each start), then no
    // other.
    let exp = tiny_experiment(
        tmp.path(),
        "timed",
        "[sweep]\nparallel = 1\nmax_hours = 1e-6\n[sweep.grid]\n\"optimizer.learning_rate\" = [0.01, 0.02, 0.03]\n",
    );
    let out = runner_on("sweep", &exp, &runs).output().unwrap();
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(
        text.contains("The sweep ended early: max_hours = 0.000001 reached"),
        "{text}"
    );
    let timed = sweep_dir(&runs, "timed");
    let st = states(&timed);
    assert!(st.values().any(|s| s == "pending"), "{st:?}");
    // A resume without the limit runs the rest (`sweep.max_hours=H` is
    // resumed with in slurm_fake.rs).
    let out = runner()
        .args(["sweep", "--resume"])
        .arg(&timed)
        .args(["--set", "~sweep.max_hours"])
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert!(!stdout(&out).contains("ended early"), "{}", stdout(&out));
    let st = states(&timed);
    assert!(st.values().all(|s| s == "done"), "{st:?}");
}

#[test]
fn bad_search_settings_are_named_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(
        tmp.path(),
        "bad",
        r#"
[sweep]
strategy = "tpe"
trials = 4

[sweep.zip]
"train.batch_size" = [8, 16]

[sweep.grid]
"optimizer.type" = ["sgd", "adam", "sgd"]
"model.dropout" = { values = [0.1, 0.2, 0.1], when = { "optimizer.typ" = "sgd" } }

[sweep.random]
"optimizer.momentum" = { distribution = "uniform", low = 0.0, high = 0.9, when = { "optimizer.type" = "rmsprop" } }
"optimizer.learning_rate" = [
  { distribution = "log_uniform", low = 1e-3, high = 0.3, when = { "optimizer.type" = ["sgd", "adam"] } },
  { distribution = "log_uniform", low = 1e-5, high = 1e-2, when = { "optimizer.type" = "adam" } },
]

[sweep.early_stop]
type = "asha"
min_epochs = 3
reduction_factor = 1
"#,
    );
    let out = runner().arg("check").arg(&exp).output().unwrap();
    assert_exit(&out, 2);
    let err = stderr(&out).replace(&tmp.path().display().to_string(), "[TMP]");
    insta::assert_snapshot!("bad-search-settings", err);
}

/// Three learning rates on the real cluster, one task at a time, ASHA
/// rungs from epoch 1 keeping one in 2: the first trial learns, the other
/// two barely move and are pruned at epoch 1. `launcher`: more
/// `[sweep.launcher]` lines.
fn slurm_asha_experiment(dir: &Path, name: &str, launcher: &str) -> PathBuf {
    tiny_experiment(
        dir,
        name,
        &format!(
            r#"
[sweep]
metric = "val_loss"

[sweep.grid]
"optimizer.learning_rate" = [0.02, 1e-6, 2e-6]

[sweep.early_stop]
type = "asha"
min_epochs = 1
reduction_factor = 2

[sweep.launcher]
type = "slurm"
max_parallel = 1
cpus_per_task = 1
{launcher}"#
        ),
    )
}

/// The folder name of trial `t` of the sweep in `dir`.
fn trial_name(dir: &Path, t: u64) -> String {
    trial_dir(dir, t)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string()
}

/// Wait for the jobs named `job_name` to leave the queue, asking Slurm
/// only (no runner process follows the sweep).
fn wait_for_queue(cluster: &SlurmCluster, job_name: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    loop {
        let q = cluster
            .command("squeue")
            .args(["-h", "-n", job_name, "-o", "%i"])
            .output()
            .unwrap();
        if q.status.success() && String::from_utf8_lossy(&q.stdout).trim().is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the array is still queued: {}\n{}",
            String::from_utf8_lossy(&q.stdout),
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Release a job submitted held (`extra = ["--hold"]`).
fn release(cluster: &SlurmCluster, job_id: &str) {
    let released = cluster
        .command("scontrol")
        .args(["release", job_id])
        .output()
        .unwrap();
    assert!(released.status.success(), "{released:?}");
}

/// Every Slurm log of the sweep in `dir`, concatenated.
fn slurm_logs(dir: &Path) -> String {
    std::fs::read_dir(dir.join("slurm/logs"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect()
}

/// A trial's own meta.json after its rung at epoch 1 pruned it.
fn assert_pruned_at_epoch_1(trial: &Path) {
    let meta = crate::common::meta(trial);
    assert_eq!(meta["status"], "stopped", "{meta}");
    assert!(
        meta["message"]
            .as_str()
            .unwrap()
            .starts_with("pruned at epoch 1 by the sweep's early stopping"),
        "{meta}"
    );
}

/// Early stopping through the Slurm launcher on the real cluster, with no
/// process following the sweep: each trial decides its own rungs at every
/// epoch end (under the sweep's rungs lock) and a pruned one stops there,
/// cleanly. A later `runner sweep --status` records them as pruned.
#[test]
fn slurm_trials_prune_themselves_with_no_follower() {
    let Some(cluster) = SlurmCluster::start() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let exp = slurm_asha_experiment(tmp.path(), "slurmasha", "");
    let runs = tmp.path().join("runs");
    let (k, v) = cluster.env();
    // No --wait: runner submits the array and returns.
    let out = runner()
        .env(k, &v)
        .arg("sweep")
        .arg(&exp)
        .args(["--set", "train.epochs=30", "--runs-dir"])
        .arg(&runs)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("Each trial decides its own rungs of early stopping"),
        "{}",
        stdout(&out)
    );
    let dir = sweep_dir(&runs, "slurmasha");
    wait_for_queue(&cluster, "runner-slurmasha");
    // Every rung was decided by the trials themselves, before any follower.
    check_rule(&dir, 2);
    let pruned: Vec<u64> = journal(&dir)
        .iter()
        .filter(|e| e["rung"]["decision"] == "prune")
        .map(|e| e["trial"].as_u64().unwrap())
        .collect();
    assert_eq!(pruned, [1, 2], "{:?}", journal(&dir));
    for t in [1, 2] {
        let d = trial_dir(&dir, t);
        assert_pruned_at_epoch_1(&d);
        // Pruned at the rung of epoch 1, so it stopped right there.
        assert_eq!(crate::common::csv_epochs(&d).len(), 1, "trial {t}");
    }
    let out = runner()
        .env(k, &v)
        .args(["sweep", "--status"])
        .arg(&dir)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let text = stdout(&out);
    assert_exit(&out, 0);
    // A pruned trial's task exited 0: its stop was the sweep's doing.
    for t in [1, 2] {
        let name = trial_name(&dir, t);
        let line = text
            .lines()
            .find(|l| l.contains(&name) && l.contains(" epochs "))
            .unwrap_or_else(|| panic!("{name}: {text}"));
        assert!(line.contains("slurm completed"), "{line}\n{text}");
    }
    let st = states(&dir);
    assert_eq!(st[&0], "done", "{st:?}\n{text}\n{}", cluster.logs());
    assert_eq!(st[&1], "pruned", "{st:?}\n{text}");
    assert_eq!(st[&2], "pruned", "{st:?}\n{text}");
    assert_eq!(summary_status(&dir), ["done", "pruned", "pruned"]);
    cluster.shutdown().expect("clean teardown");
    // Each trial's HParams session started and ended, though no follower
    // saw it run and the trials' own rung lines came first.
    let Some(python) = crate::python::python_with("tensorboard") else {
        return;
    };
    let out = crate::python::run_script(&python, "read_events.py", &[dir.as_os_str()]);
    let events: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // (A pruned trial's status is STATUS_UNKNOWN, proto3's default value,
    // which the JSON leaves out.)
    for (t, status) in [(0, "STATUS_SUCCESS"), (1, ""), (2, "")] {
        let name = trial_name(&dir, t);
        let hp = &events["runs"][&name]["hparams"];
        assert!(
            hp["_hparams_/session_start_info"]["hparams"]["optimizer.learning_rate"].is_number(),
            "trial {t}: {hp}"
        );
        let end = &hp["_hparams_/session_end_info"];
        assert!(end["endTimeSecs"].is_number(), "trial {t}: {hp}");
        assert_eq!(
            end["status"].as_str().unwrap_or(""),
            status,
            "trial {t}: {hp}"
        );
    }
}

/// The fallback: trials that cannot take the sweep's rungs lock (here a
/// folder stands where the lock file goes) say so and train on, and the
/// process following the sweep prunes them: it decides their rungs and
/// stops each with `scancel --batch --signal=USR1`; the trial ends
/// cleanly, pruned, its task exits 0. The array is submitted held, so the
/// lock is blocked before any trial starts.
#[test]
fn slurm_trials_that_cannot_judge_are_pruned_by_the_follower() {
    let Some(cluster) = SlurmCluster::start() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let exp = slurm_asha_experiment(tmp.path(), "slurmfollow", "extra = [\"--hold\"]\n");
    let runs = tmp.path().join("runs");
    let (k, v) = cluster.env();
    // 30 epochs of 6,000 images take seconds, long past the follower's
    // first poll (every 0.5 s) after a pruned trial's rung.
    let sets = ["train.epochs=30", "data.train_size=6000"];
    let mut submit = runner();
    submit.env(k, &v).arg("sweep").arg(&exp);
    for s in sets {
        submit.args(["--set", s]);
    }
    let out = submit
        .arg("--runs-dir")
        .arg(&runs)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let dir = sweep_dir(&runs, "slurmfollow");
    std::fs::create_dir(dir.join(".rungs.lock")).unwrap();
    for job in runner::sweep::slurm::read_jobs(&dir).unwrap() {
        release(&cluster, &job.job_id);
    }
    let out = runner()
        .env(k, &v)
        .args(["sweep", "--status"])
        .arg(&dir)
        .args(["--wait", "--poll-seconds", "0.5"])
        .timeout(Duration::from_secs(300))
        .output()
        .unwrap();
    let text = stdout(&out);
    assert_exit(&out, 0);
    let st = states(&dir);
    assert_eq!(st[&0], "done", "{st:?}\n{text}\n{}", cluster.logs());
    // Its line gives the trial's wall time from its meta.json (30 epochs of
    // 6,000 images: seconds), not the 0 s of a trial the follower never ran.
    let line = text
        .lines()
        .find(|l| l.contains(&trial_name(&dir, 0)) && l.contains(" done in "))
        .unwrap_or_else(|| panic!("{text}"));
    let secs: f64 = line
        .split(" done in ")
        .nth(1)
        .unwrap()
        .split('s')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let meta = crate::common::meta(&trial_dir(&dir, 0));
    assert!(secs >= 1.0, "{line}\n{meta}");
    for t in [1, 2] {
        assert_eq!(st[&t], "pruned", "{st:?}\n{text}");
        let d = trial_dir(&dir, t);
        assert_pruned_at_epoch_1(&d);
        let epochs = crate::common::csv_epochs(&d).len();
        assert!(epochs < 30, "trial {t} trained {epochs} epochs");
    }
    // The trials said why they did not judge themselves.
    let log = slurm_logs(&dir);
    assert!(log.contains("cannot decide this trial's rungs"), "{log}");
    check_rule(&dir, 2);
    assert_eq!(summary_status(&dir), ["done", "pruned", "pruned"]);
    cluster.shutdown().expect("clean teardown");
}

/// TPE through the Slurm launcher on the real cluster: the array has a
/// task for every trial, and each task past `n_startup` has TPE choose its
/// trial when it starts, from the trials' own folders (no process follows
/// the sweep, so the journal has no trial's end). Submitted held, the
/// status shows the trials not chosen yet; cancelled before anything ran
/// and resumed, all six tasks run again, one at a time, so each choice
/// sees every trial before it finished; the six trials are the six points
/// of the space, none twice.
#[test]
fn slurm_tpe_trials_are_chosen_by_their_own_tasks() {
    let Some(cluster) = SlurmCluster::start() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(
        tmp.path(),
        "slurmtpe",
        r#"
[sweep]
strategy = "tpe"
trials = 6
metric = "val_loss"

[sweep.tpe]
n_startup = 2

[sweep.grid]
"optimizer.learning_rate" = [0.02, 0.005, 1e-4]
"model.dropout" = [0.0, 0.3]

[sweep.launcher]
type = "slurm"
max_parallel = 1
cpus_per_task = 1
extra = ["--hold"]
"#,
    );
    let runs = tmp.path().join("runs");
    let (k, v) = cluster.env();
    let status = |extra: &[&str]| {
        runner()
            .env(k, &v)
            .args(["sweep", "--status"])
            .arg(sweep_dir(&runs, "slurmtpe"))
            .args(extra)
            .timeout(Duration::from_secs(120))
            .output()
            .unwrap()
    };
    let out = runner()
        .env(k, &v)
        .arg("sweep")
        .arg(&exp)
        .arg("--runs-dir")
        .arg(&runs)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("Submitted 6 trial(s)"),
        "{}",
        stdout(&out)
    );
    // max_parallel is set: no note about tasks choosing at random.
    assert!(
        !stdout(&out).contains("may start at once"),
        "{}",
        stdout(&out)
    );
    let dir = sweep_dir(&runs, "slurmtpe");
    let trials_txt = std::fs::read_to_string(dir.join("slurm/trials.txt")).unwrap();
    let lines: Vec<&str> = trials_txt.lines().collect();
    assert_eq!(lines.len(), 6, "{trials_txt}");
    for (i, line) in lines.iter().enumerate() {
        let name = Path::new(line).file_name().unwrap().to_string_lossy();
        if i < 2 {
            assert!(name.starts_with(&format!("trial-00{i}-")), "{trials_txt}");
        } else {
            assert_eq!(name, format!("trial-00{i}"), "{trials_txt}");
        }
    }
    let out = status(&[]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    // The four held tasks that TPE will choose for, on one line.
    assert!(
        text.contains("  trial-002 to trial-005  not chosen yet (4)  slurm pending"),
        "{text}"
    );
    // Cancelled before anything ran, then resumed: all six go again.
    let out = runner()
        .env(k, &v)
        .args(["sweep", "--cancel"])
        .arg(&dir)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let out = runner()
        .env(k, &v)
        .args(["sweep", "--resume"])
        .arg(&dir)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("Submitted 6 trial(s)"),
        "{}",
        stdout(&out)
    );
    let jobs = runner::sweep::slurm::read_jobs(&dir).unwrap();
    release(&cluster, &jobs.last().unwrap().job_id);
    wait_for_queue(&cluster, "runner-slurmtpe");
    // One task at a time: each choice saw every trial before it finished
    // (read from their folders: no follower recorded them), none pending.
    let log = slurm_logs(&dir);
    let mut seen: Vec<(usize, usize, usize)> = log
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("TPE chose trial ")?;
            let n: Vec<usize> = rest
                .split(|c: char| !c.is_ascii_digit())
                .filter(|w| !w.is_empty())
                .take(3)
                .map(|w| w.parse().unwrap())
                .collect();
            Some((n[0], n[1], n[2]))
        })
        .collect();
    seen.sort_unstable();
    let mut finished: Vec<usize> = seen.iter().map(|s| s.1).collect();
    finished.sort_unstable();
    assert_eq!(
        seen.iter().map(|s| s.0).collect::<Vec<_>>(),
        [2, 3, 4, 5],
        "{log}"
    );
    assert_eq!(finished, [2, 3, 4, 5], "{log}\n{}", cluster.logs());
    assert!(seen.iter().all(|s| s.2 == 0), "{log}");
    let out = status(&["--wait", "--poll-seconds", "0.5"]);
    let text = stdout(&out);
    assert_exit(&out, 0);
    assert!(!text.contains("not chosen yet"), "{text}");
    let st = states(&dir);
    assert_eq!(st.len(), 6, "{st:?}\n{text}");
    assert!(st.values().all(|s| s == "done"), "{st:?}\n{text}");
    assert_eq!(summary_status(&dir), ["done"; 6]);
    let mut points = BTreeSet::new();
    for t in 0..6u64 {
        let params = std::fs::read_to_string(trial_dir(&dir, t).join("params.json")).unwrap();
        assert!(points.insert(params.clone()), "trial {t} again: {params}");
    }
    cluster.shutdown().expect("clean teardown");
    // TensorBoard's reader finds each trial's HParams session, started and
    // ended, with the values its task chose.
    let Some(python) = crate::python::python_with("tensorboard") else {
        return;
    };
    let out = crate::python::run_script(&python, "read_events.py", &[dir.as_os_str()]);
    let events: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for t in 0..6u64 {
        let name = trial_name(&dir, t);
        let hp = &events["runs"][&name]["hparams"];
        let start = &hp["_hparams_/session_start_info"]["hparams"];
        let params: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(trial_dir(&dir, t).join("params.json")).unwrap(),
        )
        .unwrap();
        for key in ["optimizer.learning_rate", "model.dropout"] {
            let (a, b) = (start[key].as_f64(), params[key].as_f64());
            assert!(a.is_some() && a == b, "trial {t} {key}: {hp} vs {params}");
        }
        assert_eq!(
            hp["_hparams_/session_end_info"]["status"], "STATUS_SUCCESS",
            "trial {t}: {hp}"
        );
    }
}

/// Promotion-based ASHA: trials train to a rung and pause there; the best
/// paused trial of a rung is resumed from its checkpoint once it is in the
/// top 1/eta of the values there, else a new trial starts; what is still
/// paused at the end is pruned. A pruned trial never trained past its
/// rung, a promoted one continues exactly where it paused (its curve is
/// the grid's), and a resume runs nothing.
#[test]
fn promotion_pauses_trials_at_rungs_and_resumes_the_best() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let exp = asha_experiment(tmp.path(), "promo", "variant = \"promotion\"\n");
    let out = run_asha(&exp, &runs);
    assert_exit(&out, 0);
    let text = stdout(&out);
    let dir = sweep_dir(&runs, "promo");
    check_promotions(&dir, 3);
    let st = states(&dir);
    assert!(st.values().all(|s| s == "done" || s == "pruned"), "{st:?}");
    let done: Vec<u64> = st
        .iter()
        .filter(|(_, s)| *s == "done")
        .map(|(t, _)| *t)
        .collect();
    assert!(!done.is_empty() && done.len() < 6, "{st:?}\n{text}");
    // Six trials reach rung 1 (epoch 1): one in three is promoted to rung 2
    // (epoch 3), and of those one goes to the end.
    let d = decisions(&dir);
    assert_eq!(d.iter().filter(|x| x.2 == "pause" && x.1 == 1).count(), 6);
    assert!(text.contains("promoted from rung 1 (epoch 1)"), "{text}");
    assert!(text.contains("resumed, to epoch 3"), "{text}");
    // A pruned trial trained exactly to the rung it paused at, no further.
    let pruned_entries: Vec<serde_json::Value> = journal(&dir)
        .into_iter()
        .filter(|e| e["state"] == "pruned")
        .collect();
    assert_eq!(pruned_entries.len(), 6 - done.len());
    for e in &pruned_entries {
        let t = e["trial"].as_u64().unwrap();
        let epoch = e["epoch"].as_u64().unwrap() as usize;
        assert!(matches!(epoch, 1 | 3), "{e}");
        let trained = crate::common::csv_epochs(&trial_dir(&dir, t)).len();
        assert_eq!(trained, epoch, "trial {t} trained past its rung");
        assert_eq!(
            crate::common::meta(&trial_dir(&dir, t))["status"],
            "stopped"
        );
    }
    assert!(text.contains("pruned@1"), "{text}");
    assert!(text.contains("Early stopping pruned"), "{text}");
    let status = summary_status(&dir);
    for e in &pruned_entries {
        assert_eq!(status[e["trial"].as_u64().unwrap() as usize], "pruned");
    }

    // The same points as a plain grid: a promoted trial's curve, paused and
    // resumed from checkpoints, is the one trained straight through.
    let grid = asha_experiment(tmp.path(), "plain", "")
        .to_str()
        .unwrap()
        .to_string();
    let plain = std::fs::read_to_string(&grid).unwrap();
    let cut = plain.find("[sweep.early_stop]").unwrap();
    std::fs::write(&grid, &plain[..cut]).unwrap();
    let out = run_asha(Path::new(&grid), &runs);
    assert_exit(&out, 0);
    let plain_dir = sweep_dir(&runs, "plain");
    for &t in &done {
        let curve = |d: &Path| {
            let mut r = csv::Reader::from_path(d.join("metrics.csv")).unwrap();
            let i = r
                .headers()
                .unwrap()
                .iter()
                .position(|h| h == "val_accuracy")
                .unwrap();
            r.records()
                .map(|x| x.unwrap()[i].to_string())
                .collect::<Vec<_>>()
        };
        let promoted = curve(&trial_dir(&dir, t));
        assert_eq!(promoted.len(), 9);
        assert_eq!(promoted, curve(&trial_dir(&plain_dir, t)), "trial {t}");
    }

    // --resume runs nothing: the pruned trials stay where they paused.
    assert_resume_runs_nothing(&dir);
    assert_eq!(states(&dir), st);
}

/// Re-derive every promotion from the values the journal recorded, in its
/// order: a trial is promoted from a rung only while paused there and in
/// the top max(1, floor(n / eta)) of the n values recorded there so far
/// (lower is better here); a trial pruned at the end was paused there.
fn check_promotions(dir: &Path, eta: usize) {
    let mut at: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    let mut paused: BTreeMap<u64, u64> = BTreeMap::new();
    for e in journal(dir) {
        let Some(r) = e.get("rung") else { continue };
        let (trial, epoch) = (r["trial"].as_u64().unwrap(), r["epoch"].as_u64().unwrap());
        let value = r["value"].as_f64().unwrap();
        match r["decision"].as_str().unwrap() {
            "pause" => {
                at.entry(epoch).or_default().push(value);
                paused.insert(trial, epoch);
            }
            "continue" => {
                assert_eq!(paused.remove(&trial), Some(epoch), "{r}");
                let seen = &at[&epoch];
                let better = seen.iter().filter(|v| **v < value).count();
                assert!(better < (seen.len() / eta).max(1), "{r} among {seen:?}");
            }
            "prune" => assert_eq!(paused.remove(&trial), Some(epoch), "{r}"),
            other => panic!("decision {other}"),
        }
    }
    assert!(paused.is_empty(), "still paused: {paused:?}");
}

/// kill -9 of a promotion sweep's parent, then --resume: the trials paused
/// before the kill wait for their promotion instead of running again, and
/// the sweep makes the decisions of one never interrupted.
#[test]
fn a_killed_promotion_sweep_resumes_to_the_same_decisions() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    // kill -9 once a trial has been promoted and a later one has started.
    let extra = "variant = \"promotion\"\n";
    let reference = asha_experiment(tmp.path(), "reference", extra);
    let exp = asha_experiment(tmp.path(), "killed", extra);
    let (reference, dir) = reference_and_killed(&runs, &reference, &exp, "continue", 3);
    let before = decisions(&dir);
    assert!(
        before.len() < reference.len(),
        "killed too late: {before:?}"
    );
    assert_eq!(before[..], reference[..before.len()]);

    let out = runner()
        .args(["sweep", "--resume"])
        .arg(&dir)
        .timeout(Duration::from_secs(300))
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert_eq!(decisions(&dir), reference, "{}", stdout(&out));
    check_promotions(&dir, 3);
    // Every trial trained to its rung or to the end, never past a rung it
    // was pruned at, and one row per epoch.
    for (t, state) in states(&dir) {
        let epochs = crate::common::csv_epochs(&trial_dir(&dir, t));
        assert_eq!(epochs, (0..epochs.len()).collect::<Vec<_>>(), "trial {t}");
        if state == "done" {
            assert_eq!(epochs.len(), 9);
        } else {
            assert!(
                matches!(epochs.len(), 1 | 3),
                "trial {t}: {state}, {epochs:?}"
            );
        }
    }
}

/// A trial that fails before its first rung under promotion is recorded as
/// failed (exit 1, summary.csv), never reaches a rung record, and the
/// sweep still promotes by the rule and trains a trial to the end.
#[test]
fn a_failing_trial_under_promotion_fails_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let exp = asha_experiment(tmp.path(), "promofail", "variant = \"promotion\"\n");
    // Linear activations and SGD at 1e6 and 2e6 overflow to NaN in the first epoch
    // (terminate_on_nan): trials 1 and 4 fail.
    let text = std::fs::read_to_string(&exp)
        .unwrap()
        .replace(
            "[0.01, 1e-6, 0.02, 2e-6, 0.03, 3e-6]",
            "[0.01, 1e6, 0.02, 2e-6, 2e6, 0.03, 3e-6]",
        )
        .replace("activation = \"relu\"", "activation = \"linear\"")
        .replace("type = \"adam\"", "type = \"sgd\"");
    std::fs::write(&exp, text).unwrap();
    let out = run_asha(&exp, &runs);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("2 of 7 trial(s) failed"),
        "{}",
        stderr(&out)
    );
    let dir = sweep_dir(&runs, "promofail");
    check_promotions(&dir, 3);
    let st = states(&dir);
    assert_eq!(st[&1], "failed", "{st:?}");
    assert_eq!(st[&4], "failed", "{st:?}");
    let others: Vec<&String> = st
        .iter()
        .filter(|(t, _)| !matches!(t, 1 | 4))
        .map(|(_, s)| s)
        .collect();
    assert!(
        others.iter().all(|s| *s == "done" || *s == "pruned"),
        "{st:?}"
    );
    assert!(others.iter().any(|s| *s == "done"), "{st:?}");
    assert!(
        decisions(&dir).iter().all(|d| d.0 != 1 && d.0 != 4),
        "a failed trial has a rung record"
    );
    let status = summary_status(&dir);
    assert_eq!(status[1], "failed");
    assert_eq!(status[4], "failed");
}

/// Promotion through the Slurm launcher on the real cluster, two tasks at
/// a time and no process following the sweep: each task trains its trial
/// to the first rung, then runs the promotions the journal allows, and the
/// last one prunes what still waits. Every promotion follows the rule,
/// pruned trials trained exactly to their rung, and `--status` and
/// `--resume` take the tasks' records as they are.
#[test]
fn promotion_on_slurm_runs_promotions_in_the_array_tasks() {
    let Some(cluster) = SlurmCluster::start() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let exp = asha_experiment(
        tmp.path(),
        "slurmpromo",
        "variant = \"promotion\"\n\n[sweep.launcher]\ntype = \"slurm\"\nmax_parallel = 2\ncpus_per_task = 1\n",
    );
    let out = runner().arg("check").arg(&exp).output().unwrap();
    assert_exit(&out, 0);
    let runs = tmp.path().join("runs");
    let (k, v) = cluster.env();
    let out = runner()
        .env(k, &v)
        .arg("sweep")
        .arg(&exp)
        .args(ASHA_SET)
        .arg("--runs-dir")
        .arg(&runs)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("then runs the promotions the sweep decides"),
        "{}",
        stdout(&out)
    );
    let dir = sweep_dir(&runs, "slurmpromo");
    let script = std::fs::read_to_string(dir.join("slurm/sweep.sbatch")).unwrap();
    assert!(
        script.contains("--trial \"$TRIAL_DIR\" --worker\n"),
        "{script}"
    );
    wait_for_queue(&cluster, "runner-slurmpromo");
    let logs = slurm_logs(&dir);
    check_promotions(&dir, 3);
    let d = decisions(&dir);
    assert_eq!(
        d.iter().filter(|x| x.2 == "pause" && x.1 == 1).count(),
        6,
        "{d:?}\n{logs}"
    );
    assert!(d.iter().any(|x| x.2 == "continue"), "{d:?}\n{logs}");
    assert!(logs.contains("promoted from rung 1 (epoch 1)"), "{logs}");
    assert!(logs.contains("resumed, to epoch 3"), "{logs}");
    let st = states(&dir);
    assert!(
        st.values().all(|s| s == "done" || s == "pruned"),
        "{st:?}\n{logs}\n{}",
        cluster.logs()
    );
    assert!(st.values().any(|s| s == "done"), "{st:?}\n{logs}");
    for (&t, state) in &st {
        let epochs = crate::common::csv_epochs(&trial_dir(&dir, t));
        assert_eq!(epochs, (0..epochs.len()).collect::<Vec<_>>(), "trial {t}");
        if state == "done" {
            assert_eq!(epochs.len(), 9, "trial {t}");
        } else {
            // Pruned where it paused: at a rung, never past it.
            let at = journal(&dir)
                .iter()
                .rev()
                .find(|e| e["trial"] == t && e["state"] == "pruned")
                .map(|e| e["epoch"].as_u64().unwrap() as usize);
            assert_eq!(Some(epochs.len()), at, "trial {t}");
            assert!(matches!(epochs.len(), 1 | 3), "trial {t}: {epochs:?}");
        }
    }
    let status = summary_status(&dir);
    for (&t, state) in &st {
        assert_eq!(&status[t as usize], state, "trial {t}");
    }
    // A follower takes the tasks' records as they are: a paused trial's
    // task ended long before the trial did.
    let out = runner()
        .env(k, &v)
        .args(["sweep", "--status"])
        .arg(&dir)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert_eq!(states(&dir), st, "{}", stdout(&out));
    let out = runner()
        .env(k, &v)
        .args(["sweep", "--resume"])
        .arg(&dir)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("Nothing to resubmit"),
        "{}",
        stdout(&out)
    );
    cluster.shutdown().expect("clean teardown");
}

/// `max_hours` through the real cluster: the budget has run out before
/// the tasks start, so each ends without starting its trial (Slurm says
/// completed, and no meta.json exists); the follower records them as not
/// started rather than failed, and says why the sweep ended early.
#[test]
fn slurm_tasks_after_max_hours_start_nothing_and_the_sweep_says_why() {
    let Some(cluster) = SlurmCluster::start() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(
        tmp.path(),
        "slurmtimed",
        "[sweep]\nmax_hours = 1e-6\n[sweep.grid]\n\"model.dropout\" = [0.0, 0.1, 0.2]\n\
         [sweep.launcher]\ntype = \"slurm\"\ncpus_per_task = 1\n",
    );
    let runs = tmp.path().join("runs");
    let (k, v) = cluster.env();
    let out = runner()
        .env(k, &v)
        .arg("sweep")
        .arg(&exp)
        .args(["--wait", "--poll-seconds", "0.5", "--runs-dir"])
        .arg(&runs)
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    let text = stdout(&out);
    assert_exit(&out, 0);
    assert!(
        text.contains(
            "The sweep ended early: max_hours = 0.000001 reached; 3 trial(s) not started"
        ),
        "{text}\n{}",
        stderr(&out)
    );
    let dir = sweep_dir(&runs, "slurmtimed");
    let st = states(&dir);
    assert!(st.values().all(|s| s == "pending"), "{st:?}\n{text}");
    assert!(
        slurm_logs(&dir).contains("is not started"),
        "{}",
        slurm_logs(&dir)
    );
    for t in 0..3 {
        assert!(!trial_dir(&dir, t).join("meta.json").exists());
    }
    cluster.shutdown().expect("clean teardown");
}

#[test]
fn a_wrong_early_stop_variant_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = asha_experiment(tmp.path(), "promotypo", "variant = \"promote\"\n");
    let out = runner().arg("check").arg(&exp).output().unwrap();
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("promotion"), "{err}");
    assert!(err.contains("variant"), "{err}");
}
