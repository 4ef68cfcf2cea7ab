//! The Slurm launcher end to end on a real single-node cluster: the generated
//! batch script, a split array with offsets, task states, cancelling, and a
//! teardown that leaves nothing behind. The trials are a fake `runner` script.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use runner::plan::SlurmPlan;
use runner::sweep::slurm::{
    read_jobs, write_script, write_trials_file, PollEvent, Poller, Slurm, SubmittedJob, TaskState,
};

use crate::slurm_cluster::SlurmCluster;

fn spec() -> SlurmPlan {
    SlurmPlan {
        partition: Some("local".into()),
        time: Some("00:05:00".into()),
        cpus_per_task: Some(1),
        // Proves RealMemory is set: with the default of 1 MiB any --mem is rejected.
        mem: Some("64M".into()),
        gres: None,
        account: None,
        max_parallel: Some(2),
        signal_seconds: 120,
        extra: vec!["--comment=runner-test".into()],
    }
}

/// A sweep folder with `n` trial folders, trials.txt and the batch script;
/// the "runner" records what it was asked to run, then runs `body`.
fn make_sweep(root: &Path, n: usize, body: &str) -> (PathBuf, PathBuf, Vec<PathBuf>) {
    let sweep = root.join("sweeps").join("s1");
    let trials: Vec<PathBuf> = (0..n)
        .map(|i| sweep.join(format!("trial-{i:03}-abcdef")))
        .collect();
    for t in &trials {
        std::fs::create_dir_all(t).unwrap();
    }
    write_trials_file(&sweep, &trials).unwrap();
    let runner = root.join("fake-runner");
    std::fs::write(
        &runner,
        format!(
            "#!/bin/bash\n\
             # $1=run $2=--trial $3=dir\n\
             echo \"$1 $2 task=$SLURM_ARRAY_TASK_ID offset=$RUNNER_TRIAL_OFFSET\" > \"$3/ran.tmp\" && mv \"$3/ran.tmp\" \"$3/ran\"\n\
             {body}\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&runner, std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = write_script(&spec(), &sweep, &runner, "runner-test", false).unwrap();
    (sweep, script, trials)
}

/// `runner`, talking to `cluster`.
fn on(cluster: &SlurmCluster) -> assert_cmd::Command {
    let mut cmd = crate::common::runner();
    let (k, v) = cluster.env();
    cmd.env(k, v);
    cmd
}

/// Poll every 300 ms until nothing is pending or running, or `limit` passes.
fn wait(slurm: &Slurm, jobs: &[SubmittedJob], limit: Duration) -> BTreeMap<usize, TaskState> {
    let start = Instant::now();
    let poller = Poller {
        interval: Duration::from_millis(300),
        max_consecutive_errors: 5,
    };
    poller
        .run(slurm, jobs, |event| {
            if let PollEvent::TransientError { error, .. } = event {
                eprintln!("transient: {error}");
            }
            if start.elapsed() > limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .expect("polling the cluster")
}

#[test]
fn slurm_array_runs_fails_and_cancels_on_a_real_cluster() {
    let started = Instant::now();
    // MaxArraySize=3 makes the 4 trials two submissions (offsets 0 and 3).
    let Some(cluster) = SlurmCluster::start_with("MaxArraySize=3") else {
        return;
    };
    let up = started.elapsed();
    let root = tempfile::tempdir().unwrap();

    // Four trials; trial 2 exits 3.
    let (sweep, script, trials) = make_sweep(
        root.path(),
        4,
        "case \"$3\" in *trial-002-*) exit 3;; esac\nexit 0",
    );
    let slurm = cluster.client(&sweep);
    assert_eq!(slurm.max_array_size().unwrap(), 3);
    let jobs = slurm.submit(&script, &[0, 1, 2, 3], Some(2)).unwrap();
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    assert_eq!((jobs[0].offset, jobs[0].trials.clone()), (0, vec![0, 1, 2]));
    assert_eq!((jobs[1].offset, jobs[1].trials.clone()), (3, vec![3]));
    assert_eq!(read_jobs(&sweep).unwrap(), jobs);

    let states = wait(&slurm, &jobs, Duration::from_secs(40));
    assert_eq!(
        states,
        BTreeMap::from([
            (0, TaskState::Completed),
            (1, TaskState::Completed),
            (2, TaskState::Failed { exit_code: 3 }),
            (3, TaskState::Completed),
        ]),
        "{}",
        cluster.logs()
    );
    // Each task ran its own trial, through the offset for the second array.
    for (i, trial) in trials.iter().enumerate() {
        let ran = std::fs::read_to_string(trial.join("ran")).unwrap();
        let (task, offset) = if i < 3 { (i, 0) } else { (0, 3) };
        assert_eq!(
            ran.trim(),
            format!("run --trial task={task} offset={offset}")
        );
        let job = jobs.iter().find(|j| j.trials.contains(&i)).unwrap();
        let (out, _err) = job.log_files(&sweep, i).unwrap();
        let log = std::fs::read_to_string(&out).unwrap();
        assert!(
            log.contains(&format!("runs trial {i}: {}", trial.display())),
            "{log}"
        );
    }
    let finished = started.elapsed();

    // Cancelling a sleeping trial.
    let root2 = tempfile::tempdir().unwrap();
    let (sweep2, script2, trials2) = make_sweep(root2.path(), 1, "exec sleep 317");
    let slurm2 = cluster.client(&sweep2);
    let sleeping = slurm2.submit(&script2, &[0], None).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !trials2[0].join("ran").exists() {
        assert!(
            Instant::now() < deadline,
            "the sleeping task never started\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(slurm2.poll(&sleeping).unwrap()[&0], TaskState::Running);
    slurm2.cancel(&sleeping).unwrap();
    let states = wait(&slurm2, &sleeping, Duration::from_secs(20));
    assert_eq!(states[&0], TaskState::Cancelled);
    // Cancelling again (already finished) is fine.
    slurm2.cancel(&sleeping).unwrap();

    let before_down = started.elapsed();
    let state_dir = cluster.state_dir().to_path_buf();
    cluster.shutdown().unwrap();
    let leftovers: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .filter(|c| c.contains(&format!("{}/", state_dir.display())) || c.contains("sleep 317"))
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
    eprintln!(
        "slurm timings: up {:.1}s, array done at {:.1}s, cancel done at {:.1}s, down at {:.1}s",
        up.as_secs_f64(),
        finished.as_secs_f64(),
        before_down.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

/// The whole Slurm workflow through `runner sweep`: a 4-trial sweep of a
/// tiny quickstart-like experiment, one trial made to fail, followed to the
/// end; then the cluster is torn down with nothing left behind.
#[test]
fn runner_sweep_through_slurm_records_results_and_failures() {
    let Some(cluster) = SlurmCluster::start() else {
        return;
    };
    let started = std::time::Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    // Linear activations and SGD: the 1e6 learning rate overflows to NaN.
    let exp = crate::common::tiny_experiment(
        tmp.path(),
        "slurmsweep",
        "[sweep]\nmetric = \"val_accuracy\"\n[sweep.grid]\n\"optimizer.learning_rate\" = [0.01, 0.03, 1e6, 0.05]\n[sweep.launcher]\ntype = \"slurm\"\nmax_parallel = 2\ncpus_per_task = 1\n",
    );
    let text = std::fs::read_to_string(&exp)
        .unwrap()
        .replace("activation = \"relu\"", "activation = \"linear\"")
        .replace("type = \"adam\"", "type = \"sgd\"");
    std::fs::write(&exp, text).unwrap();
    let runs = tmp.path().join("runs");
    let out = on(&cluster)
        .arg("sweep")
        .arg(&exp)
        .args([
            "--set",
            "train.epochs=2",
            "--wait",
            "--poll-seconds",
            "1",
            "--runs-dir",
        ])
        .arg(&runs)
        .timeout(std::time::Duration::from_secs(150))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "one trial fails:\n{stdout}\n{stderr}\n{}",
        cluster.logs()
    );
    assert!(
        stdout.contains("Submitted 4 trial(s) to Slurm as job"),
        "{stdout}"
    );
    // Where the sweep stands before it is followed: two trials at a time,
    // so none can have ended at the first poll.
    assert!(
        stdout.contains("(4 trials: ") && stdout.contains("Following 4 task(s) every 1 s"),
        "{stdout}"
    );

    let sweeps = runs.join("slurmsweep/sweeps");
    let dir = sweeps.join(crate::common::read_latest(sweeps.join("latest")).unwrap());
    let mut r = csv::Reader::from_path(dir.join("summary.csv")).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    let rows: Vec<Vec<String>> = r
        .records()
        .map(|x| x.unwrap().iter().map(String::from).collect())
        .collect();
    let col = |n: &str| header.iter().position(|h| h == n).unwrap();
    let status: Vec<&str> = rows.iter().map(|r| r[col("status")].as_str()).collect();
    assert_eq!(status, vec!["done", "done", "failed", "done"], "{rows:?}");
    // The failure is explained by Slurm's state and the trial's own message.
    let msg = &rows[2][col("message")];
    assert!(
        msg.contains("Slurm task failed with exit code 1: ") && msg.contains("loss became"),
        "{msg}"
    );
    // ...and where its whole log is.
    let log = msg.rsplit_once("(log: ").unwrap().1.trim_end_matches(')');
    assert!(log.ends_with("_2.err") && Path::new(log).is_file(), "{msg}");
    assert_eq!(rows[2][col("exit_code")], "1");
    for row in &rows {
        let tdir = std::path::PathBuf::from(&row[col("run_dir")]);
        assert!(tdir.join("meta.json").is_file(), "{}", tdir.display());
        if row[col("status")] == "done" {
            assert!(
                tdir.join("metrics.csv").is_file() && tdir.join("report/predictions.png").is_file()
            );
        }
    }
    assert!(dir.join("slurm/jobs.json").is_file() && dir.join("slurm/sweep.sbatch").is_file());
    // --status re-attaches from another "shell" and reports the same states.
    let st = on(&cluster)
        .args(["sweep", "--status"])
        .arg(&dir)
        .output()
        .unwrap();
    let st_out = String::from_utf8_lossy(&st.stdout);
    assert!(
        st_out.matches(" done ").count() >= 3 && st_out.contains("failed"),
        "{st_out}"
    );
    assert!(st_out.contains("(4 trials: 3 done, 1 failed)"), "{st_out}");
    // Why it failed, under its line, without having watched it fail.
    assert!(
        st_out.contains("slurm failed (exit 1)")
            && st_out.contains("| the Slurm task failed with exit code 1: "),
        "{st_out}"
    );
    println!("slurm sweep took {:.1}s", started.elapsed().as_secs_f64());

    let state_dir = cluster.state_dir().to_path_buf();
    cluster.shutdown().expect("clean teardown");
    let left = std::process::Command::new("pgrep")
        .arg("-f")
        .arg(state_dir.as_os_str())
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "leftover processes: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}

/// Slurm's warning before a time limit (`--signal=B:USR1@N`), sent here on
/// demand with `scancel --batch --signal=USR1`: the trial checkpoints and
/// exits 130, which Slurm calls FAILED. `--status` records it stopped, in
/// runner's own words (not "killed by a signal"), shows Slurm's exit code,
/// and says how to go on.
#[test]
fn a_trial_stopped_by_slurms_time_limit_warning_is_stopped_not_failed() {
    let Some(cluster) = SlurmCluster::start() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let exp = crate::common::tiny_experiment(
        tmp.path(),
        "slurmusr1",
        "[sweep]\n[sweep.grid]\n\"model.dropout\" = [0.1]\n[sweep.launcher]\ntype = \"slurm\"\n",
    );
    let runs = tmp.path().join("runs");
    // Long epochs: the warning lands while the trial trains.
    let out = on(&cluster)
        .arg("sweep")
        .arg(&exp)
        .args([
            "--set",
            "data.train_size=60000",
            "--set",
            "train.epochs=50",
            "--runs-dir",
        ])
        .arg(&runs)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", crate::common::stderr(&out));
    let submitted = crate::common::stdout(&out);
    assert!(
        submitted.contains("Follow it with `runner sweep --status "),
        "{submitted}"
    );
    assert!(
        submitted.contains(" (1 trial, grid, ranked by "),
        "{submitted}"
    );
    let dir = crate::common::sweep_dir(&runs, "slurmusr1");
    let job = read_jobs(&dir).unwrap()[0].job_id.clone();
    // Once its first epoch is in metrics.csv, the trial is training.
    let deadline = Instant::now() + Duration::from_secs(60);
    let log = loop {
        let rows = crate::common::find_trial(&dir, 0)
            .and_then(|t| std::fs::read_to_string(t.join("metrics.csv")).ok())
            .unwrap_or_default();
        if rows.lines().count() >= 2 {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "the trial never trained an epoch:\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let sent = cluster
        .command("scancel")
        .args(["--batch", "--signal=USR1", &job])
        .output()
        .unwrap();
    assert!(sent.status.success(), "{log}\n{sent:?}");
    let st = on(&cluster)
        .args(["sweep", "--wait", "--poll-seconds", "0.5", "--status"])
        .arg(&dir)
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    let text = crate::common::stdout(&st);
    assert_eq!(
        st.status.code(),
        Some(0),
        "{text}\n{}",
        crate::common::stderr(&st)
    );
    assert!(text.contains("(1 trial: 1 stopped)"), "{text}");
    assert!(text.contains("stopped  epochs"), "{text}");
    assert!(text.contains("slurm failed (exit 130)"), "{text}");
    assert!(text.contains("| stopped by SIGUSR1"), "{text}");
    assert!(!text.contains("killed by signal"), "{text}");
    assert!(
        text.contains(&format!(
            "`runner sweep --resume {}` submits the 1 trial(s) not finished",
            dir.display()
        )),
        "{text}"
    );
    let mut r = csv::Reader::from_path(dir.join("summary.csv")).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    let row: Vec<String> = r
        .records()
        .next()
        .unwrap()
        .unwrap()
        .iter()
        .map(String::from)
        .collect();
    let col = |n: &str| header.iter().position(|h| h == n).unwrap();
    assert_eq!(row[col("status")], "stopped", "{row:?}");
    assert!(
        row[col("message")].starts_with("stopped by SIGUSR1"),
        "{row:?}"
    );
    cluster.shutdown().expect("clean teardown");
}
