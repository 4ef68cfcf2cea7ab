//! The Slurm launcher against fake `sbatch`/`squeue`/`scontrol`/`sacct`/
//! `scancel` scripts first on PATH: the moments a real cluster cannot be
//! made to show on demand (a Ctrl-C while `sbatch` runs, a controller that
//! refuses every query).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::{
    decisions, journal, runner, runner_process, stderr, stdout, sweep_dir, tiny_experiment,
    trial_dir,
};

/// A folder of fake Slurm commands. Each logs its arguments to
/// `<bin>/calls.log`; `sbatch` answers job ids 1000, 1001, ... after
/// sleeping `FAKE_SBATCH_SLEEP` seconds, and refuses a script with
/// `--partition=gpu` when `<bin>/sbatch-refuses` exists; `squeue` fails
/// when `<bin>/squeue-fails` exists.
fn fake_slurm(dir: &Path) -> PathBuf {
    let bin = dir.join("fake-slurm");
    std::fs::create_dir_all(&bin).unwrap();
    let log = bin.join("calls.log");
    let script = |name: &str, body: &str| {
        let path = bin.join(name);
        std::fs::write(
            &path,
            format!(
                "#!/bin/bash\necho \"{name} $*\" >> '{}'\n{body}\n",
                log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    let b = bin.display();
    script(
        "scontrol",
        "if [ \"$1 $2\" = \"show config\" ]; then\n  echo 'MaxArraySize = 1001'\n  echo 'AccountingStorageType = accounting_storage/none'\nfi",
    );
    script(
        "sbatch",
        &format!(
            "touch '{b}/sbatch-started'\nsleep \"${{FAKE_SBATCH_SLEEP:-0}}\"\n\
             if [ -e '{b}/sbatch-refuses' ] && grep -q -- '--partition=gpu' \"${{@: -1}}\"; then\n  \
             echo 'sbatch: error: invalid partition specified: gpu' >&2\n  exit 1\nfi\n\
             n=$(cat '{b}/count' 2>/dev/null || echo 0)\necho $((n + 1)) > '{b}/count'\necho $((1000 + n))"
        ),
    );
    script(
        "squeue",
        &format!(
            "if [ -e '{b}/squeue-fails' ]; then\n  echo 'squeue: error: Invalid user for SlurmUser slurm, ignored' >&2\n  exit 1\nfi"
        ),
    );
    script("sacct", "");
    script("scancel", "");
    bin
}

fn path_with(bin: &Path) -> std::ffi::OsString {
    let mut path = bin.as_os_str().to_os_string();
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    path
}

fn calls(bin: &Path, program: &str) -> Vec<String> {
    std::fs::read_to_string(bin.join("calls.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(&format!("{program} ")))
        .map(String::from)
        .collect()
}

/// `runner sweep EXP --runs-dir RUNS` with the fake commands in `bin`.
fn submit(bin: &Path, exp: &Path, runs: &Path) -> std::process::Output {
    runner()
        .env("PATH", path_with(bin))
        .arg("sweep")
        .arg(exp)
        .arg("--runs-dir")
        .arg(runs)
        .output()
        .unwrap()
}

fn slurm_experiment(dir: &Path, name: &str) -> PathBuf {
    tiny_experiment(
        dir,
        name,
        "[sweep]\n[sweep.grid]\n\"model.dropout\" = [0.0, 0.1, 0.2]\n[sweep.launcher]\ntype = \"slurm\"\n",
    )
}

fn recorded_jobs(sweep: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(sweep.join("slurm/jobs.json")).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    v["jobs"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|j| j["job_id"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn ctrl_c_while_sbatch_runs_records_and_cancels_the_array() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = fake_slurm(tmp.path());
    let exp = slurm_experiment(tmp.path(), "ctrlc");
    let runs = tmp.path().join("runs");
    let child = runner_process()
        .env("PATH", path_with(&bin))
        .env("FAKE_SBATCH_SLEEP", "2")
        .arg("sweep")
        .arg(&exp)
        .arg("--runs-dir")
        .arg(&runs)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !bin.join("sbatch-started").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "sbatch never ran"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The terminal's Ctrl-C reaches runner; sbatch runs in its own group.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted while submitting"), "{err}");
    let dir = sweep_dir(&runs, "ctrlc");
    assert_eq!(
        recorded_jobs(&dir),
        vec!["1000"],
        "the array sbatch queued is recorded"
    );
    let cancels = calls(&bin, "scancel");
    assert!(
        cancels.len() == 1 && cancels[0].contains("1000"),
        "the array is taken back: {cancels:?}"
    );
}

#[test]
fn resume_never_resubmits_when_slurm_cannot_say_what_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = fake_slurm(tmp.path());
    let exp = slurm_experiment(tmp.path(), "noanswer");
    let runs = tmp.path().join("runs");
    let out = submit(&bin, &exp, &runs);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(calls(&bin, "sbatch").len(), 1);
    let dir = sweep_dir(&runs, "noanswer");

    std::fs::write(bin.join("squeue-fails"), "").unwrap();
    let out = resume_with(&bin, &dir, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("nothing was resubmitted") && err.contains("Invalid user"),
        "{err}"
    );
    assert_eq!(calls(&bin, "sbatch").len(), 1, "no second submission");

    // A torn jobs.json is an error too, not "no jobs".
    std::fs::remove_file(bin.join("squeue-fails")).unwrap();
    std::fs::write(dir.join("slurm/jobs.json"), "{\"jobs\": [{\"job_id\": \"10").unwrap();
    let out = resume_with(&bin, &dir, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("jobs.json"), "{}", stderr(&out));
    assert_eq!(calls(&bin, "sbatch").len(), 1, "no second submission");
}

/// A TPE sweep submitted with no `max_parallel`: every task may start at
/// once and choose at random, and `runner sweep` says so; the array has a
/// task per trial, those past `n_startup` listed as not chosen yet.
/// `--dry-run` of a Slurm sweep shows the `sbatch` it would run and the
/// script's `#SBATCH` lines, and calls no Slurm command.
#[test]
fn a_slurm_dry_run_shows_the_sbatch_lines_and_submits_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = fake_slurm(tmp.path());
    let exp = tiny_experiment(
        tmp.path(),
        "drysl",
        "[sweep.grid]\n\"optimizer.learning_rate\" = [0.01, 0.02, 0.03]\n\
         [sweep.launcher]\ntype = \"slurm\"\npartition = \"gpu\"\ntime = \"02:00:00\"\n\
         gres = \"gpu:1\"\nmax_parallel = 2\nextra = [\"--qos=normal\"]\n",
    );
    let runs = tmp.path().join("runs");
    let out = runner()
        .env("PATH", path_with(&bin))
        .args(["sweep", "--dry-run"])
        .arg(&exp)
        .arg("--runs-dir")
        .arg(&runs)
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    let from = text.find("On Slurm:").unwrap_or_else(|| panic!("{text}"));
    assert_eq!(
        text[from..].lines().collect::<Vec<_>>(),
        [
            "On Slurm: sbatch --array=0-2%2 <sweep>/slurm/sweep.sbatch, a task per trial \
             (<sweep>: the sweep's folder, made when it starts), with",
            "  #SBATCH --job-name=runner-drysl",
            "  #SBATCH --output=<sweep>/slurm/logs/%A_%a.out",
            "  #SBATCH --error=<sweep>/slurm/logs/%A_%a.err",
            "  #SBATCH --open-mode=append",
            "  #SBATCH --time=02:00:00",
            "  #SBATCH --partition=gpu",
            "  #SBATCH --gres=gpu:1",
            "  #SBATCH --signal=B:USR1@120",
            "  #SBATCH --qos=normal",
            "3 trials; nothing was run (--dry-run).",
        ]
    );
    assert!(std::fs::read_to_string(bin.join("calls.log"))
        .unwrap_or_default()
        .is_empty());
    assert!(!runs.exists());
}

#[test]
fn tpe_on_slurm_without_max_parallel_says_its_tasks_may_choose_at_random() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = fake_slurm(tmp.path());
    let exp = tiny_experiment(
        tmp.path(),
        "tpefree",
        "[sweep]\nstrategy = \"tpe\"\ntrials = 5\n[sweep.tpe]\nn_startup = 2\n\
         [sweep.random]\n\"model.dropout\" = { distribution = \"uniform\", low = 0.0, high = 0.5 }\n\
         [sweep.launcher]\ntype = \"slurm\"\n",
    );
    let dry = runner()
        .args(["sweep", "--dry-run"])
        .arg(&exp)
        .output()
        .unwrap();
    let dry = String::from_utf8_lossy(&dry.stdout);
    assert!(
        dry.contains("  ... 3 more, each chosen by TPE from the results before it, by its own array task when it starts"),
        "{dry}"
    );
    let runs = tmp.path().join("runs");
    let out = submit(&bin, &exp, &runs);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(
        text.contains("all 5 tasks may start at once, and a task that starts before 2 trial(s) have finished chooses at random"),
        "{text}"
    );
    let sbatch = calls(&bin, "sbatch");
    assert!(sbatch[0].contains("--array=0-4"), "{sbatch:?}");
    let dir = sweep_dir(&runs, "tpefree");
    let listed = std::fs::read_to_string(dir.join("slurm/trials.txt")).unwrap();
    let unchosen: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.rsplit('/').next())
        .filter(|n| n.len() == "trial-000".len())
        .collect();
    assert_eq!(
        unchosen,
        ["trial-002", "trial-003", "trial-004"],
        "{listed}"
    );
}

/// `sweep.parallel` (trials at once) throttles the job array where
/// `[sweep.launcher] max_parallel` is not set, and `--parallel` overrides
/// both, as it overrides `sweep.parallel` on the local launcher.
#[test]
fn trials_at_once_throttle_the_job_array() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = fake_slurm(tmp.path());
    let exp = tiny_experiment(
        tmp.path(),
        "atonce",
        "[sweep]\nparallel = 2\n[sweep.grid]\n\"model.dropout\" = [0.0, 0.1, 0.2]\n\
         [sweep.launcher]\ntype = \"slurm\"\n",
    );
    let runs = tmp.path().join("runs");
    let out = submit(&bin, &exp, &runs);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(
        text.contains("Submitted 3 trial(s) to Slurm as job 1000 (array 0-2, 2 at a time)"),
        "{text}"
    );
    let sbatch = calls(&bin, "sbatch");
    assert!(sbatch[0].contains("--array=0-2%2"), "{sbatch:?}");

    let dry = runner()
        .args(["sweep", "--dry-run", "--parallel", "1"])
        .arg(&exp)
        .output()
        .unwrap();
    assert!(
        stdout(&dry).contains("On Slurm: sbatch --array=0-2%1 "),
        "{}",
        stdout(&dry)
    );
}

/// What an array task of a TPE sweep does, run by hand on a sweep that the
/// fake sbatch "queued": `runner run --trial <sweep>/trial-NNN` chooses
/// trial NNN (from the trials before it, the finished startup trials here)
/// and trains it; run again, as a requeued task, it finds the same trial
/// done. Where `.propose.lock` cannot be taken, the task says so and
/// still chooses.
#[test]
fn a_tpe_task_chooses_and_trains_its_trial_and_a_requeue_finds_it() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = fake_slurm(tmp.path());
    let (dir, lines) = tpe_sweep_past_startup(tmp.path(), &bin, "tpetask", "");
    let task = |line: &str| {
        runner()
            .args(["run", "--trial", line])
            .timeout(Duration::from_secs(120))
            .output()
            .unwrap()
    };
    // The lock cannot be taken (a folder stands where it goes): the task
    // says so and chooses all the same.
    std::fs::create_dir(dir.join(".propose.lock")).unwrap();
    let out = task(&lines[2]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(
        stderr(&out).contains("choosing without it"),
        "{}",
        stderr(&out)
    );
    assert!(
        text.contains("TPE chose trial 2 from 2 finished and 0 pending trial(s)"),
        "{text}"
    );
    let chosen: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("trial-002-"))
        })
        .collect();
    assert_eq!(chosen.len(), 1, "{chosen:?}");
    let meta = crate::common::meta(&chosen[0]);
    assert_eq!(meta["status"], "completed", "{meta}");
    // A requeued task of trial 2 finds the trial its index chose.
    let out = task(&lines[2]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("already completed"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Trial 2 is a grid point that trials 0 and 1 do not have.
    let params = |p: &Path| std::fs::read_to_string(p.join("params.json")).unwrap();
    let startup: Vec<String> = lines[..2].iter().map(|l| params(Path::new(l))).collect();
    assert!(!startup.contains(&params(&chosen[0])), "{startup:?}");

    // One more trial: resubmitted with trial 3, whose task never ran, and
    // chosen from the three results when its task starts.
    std::fs::remove_dir(dir.join(".propose.lock")).unwrap();
    let out = resume_with(&bin, &dir, &["sweep.trials=5"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let sbatch = calls(&bin, "sbatch");
    assert!(
        sbatch.last().unwrap().contains("--array=3-4%1"),
        "{sbatch:?}"
    );
    let lines = trials_file(&dir);
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert!(lines[4].ends_with("/trial-004"), "{lines:?}");
    let out = task(&lines[4]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(
        text.contains("TPE chose trial 4 from 3 finished and 0 pending trial(s)"),
        "{text}"
    );
}

/// `runner sweep --resume DIR [--set KEY=VALUE]...` with the fake commands
/// in `bin`.
fn resume_with(bin: &Path, dir: &Path, sets: &[&str]) -> std::process::Output {
    let mut cmd = runner();
    cmd.env("PATH", path_with(bin))
        .args(["sweep", "--resume"])
        .arg(dir);
    for set in sets {
        cmd.args(["--set", set]);
    }
    cmd.output().unwrap()
}

fn trials_file(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("slurm/trials.txt"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn a_slurm_sweep_resumed_with_a_higher_budget_submits_only_the_new_trials() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = fake_slurm(tmp.path());
    let exp = tiny_experiment(
        tmp.path(),
        "slurmmore",
        "[sweep]\nmax_trials = 2\n[sweep.grid]\n\"model.dropout\" = [0.0, 0.1, 0.2, 0.3]\n\
         [sweep.launcher]\ntype = \"slurm\"\n",
    );
    let runs = tmp.path().join("runs");
    let out = submit(&bin, &exp, &runs);
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = sweep_dir(&runs, "slurmmore");
    for line in trials_file(&dir) {
        let out = runner().args(["run", "--trial", &line]).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let out = resume_with(&bin, &dir, &["sweep.max_trials=4"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("2 trial(s) before, 4 now"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let sbatch = calls(&bin, "sbatch");
    assert_eq!(sbatch.len(), 2, "{sbatch:?}");
    assert!(sbatch[1].contains("--array=2-3"), "{sbatch:?}");
    let lines = trials_file(&dir);
    assert_eq!(lines.len(), 4, "{lines:?}");
    let out = runner()
        .args(["run", "--trial", &lines[3]])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let params = std::fs::read_to_string(Path::new(&lines[3]).join("params.json")).unwrap();
    assert!(params.contains("0.3"), "{params}");
}

/// sbatch refuses the sweep's settings (a partition this cluster does not
/// have): the error says the trials wait in the sweep folder, and
/// `--resume --set sweep.launcher.partition=...` submits them with the
/// other setting, recorded for later resumes. The experiment file edited
/// to say the same is answered with that flag; a key that is not a Slurm
/// setting is refused with the one it resembles.
#[test]
fn a_refused_submission_waits_for_a_resume_with_other_slurm_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = fake_slurm(tmp.path());
    std::fs::write(bin.join("sbatch-refuses"), "").unwrap();
    let exp = tiny_experiment(
        tmp.path(),
        "slurmpart",
        "[sweep]\n[sweep.grid]\n\"model.dropout\" = [0.0, 0.1]\n\
         [sweep.launcher]\ntype = \"slurm\"\npartition = \"gpu\"\ntime = \"00:10:00\"\n",
    );
    let runs = tmp.path().join("runs");
    let out = submit(&bin, &exp, &runs);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let dir = sweep_dir(&runs, "slurmpart");
    let err = stderr(&out);
    assert!(err.contains("invalid partition specified: gpu"), "{err}");
    assert!(
        err.contains(&format!(
            "2 trial(s) were not submitted; they wait in {}",
            dir.display()
        )),
        "{err}"
    );
    assert!(recorded_jobs(&dir).is_empty());

    let out = resume_with(&bin, &dir, &["sweep.launcher.partiton=cpu"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("did you mean `sweep.launcher.partition`?"),
        "{}",
        stderr(&out)
    );
    let out = resume_with(&bin, &dir, &["sweep.launcher.partition=cpu"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Slurm settings changed (sweep.launcher.partition=cpu)")
            && text.contains("Submitted 2 trial(s) to Slurm as job 1000")
            && text.contains("Follow it with `runner sweep --status "),
        "{text}"
    );
    let script = std::fs::read_to_string(dir.join("slurm/sweep.sbatch")).unwrap();
    assert!(
        script.contains("#SBATCH --partition=cpu\n")
            && script.contains("#SBATCH --time=00:10:00\n"),
        "{script}"
    );
    assert_eq!(recorded_jobs(&dir), ["1000"]);

    // The file now saying so is answered with the flags that say it.
    let text = std::fs::read_to_string(&exp)
        .unwrap()
        .replace("partition = \"gpu\"", "partition = \"cpu\"")
        .replace("00:10:00", "02:00:00");
    std::fs::write(&exp, text).unwrap();
    let out = resume_with(&bin, &dir, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("gives other Slurm settings (sweep.launcher.time)")
            && err.contains(
                "add `--set sweep.launcher.time=\"02:00:00\"` to `runner sweep --resume`"
            ),
        "{err}"
    );
}

/// A promotion sweep's Slurm tasks run one after the other (as with
/// `max_parallel = 1`), each `runner run --trial LINE --worker`: each
/// trains its trial to the rung and then runs the promotions the journal
/// allows. The first task to promote a trial is killed (kill -9, as a node
/// failure would) while that trial trains; `--status` then records the
/// trial stopped, `--resume` submits it alone, and its new task trains it
/// on from its checkpoint and ends the sweep. The tasks make the decisions
/// of the same sweep run locally one trial at a time, never interrupted.
#[test]
fn promotion_tasks_in_turn_decide_as_a_local_sweep_does_despite_a_kill() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = fake_slurm(tmp.path());
    let exp = tiny_experiment(
        tmp.path(),
        "promotasks",
        "[sweep]\nmetric = \"val_loss\"\nparallel = 1\n\
         [sweep.grid]\n\"optimizer.learning_rate\" = [0.01, 1e-6, 0.02, 2e-6, 0.03, 3e-6]\n\
         [sweep.early_stop]\ntype = \"asha\"\nmin_epochs = 1\nvariant = \"promotion\"\n\
         [sweep.launcher]\ntype = \"slurm\"\nmax_parallel = 1\n",
    );
    let runs = tmp.path().join("runs");
    // One rung, at epoch 1; a promoted trial trains epochs 2 and 3, of
    // about a second each (30,000 small images).
    let sets = ["--set", "train.epochs=3", "--set", "data.train_size=30000"];
    let out = runner()
        .env("PATH", path_with(&bin))
        .arg("sweep")
        .arg(&exp)
        .args(sets)
        .arg("--runs-dir")
        .arg(&runs)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = sweep_dir(&runs, "promotasks");
    let lines = trials_file(&dir);
    assert_eq!(lines.len(), 6);
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let task = |line: &str, log: &Path| {
        runner_process()
            .args(["run", "--trial", line, "--worker"])
            .stdout(std::fs::File::create(log).unwrap())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut logs = Vec::new();
    let mut killed: Option<String> = None;
    for (i, line) in lines.iter().enumerate() {
        let log = tmp.path().join(format!("task-{i}.log"));
        let mut child = task(line, &log);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "task {i}: {}", read(&log));
                break;
            }
            assert!(Instant::now() < deadline, "task {i}: {}", read(&log));
            // A promoted trial's process has started training once its
            // run.log says so a second time.
            let promoted = killed.is_none().then(|| read(&log)).and_then(|text| {
                let l = text.lines().find(|l| l.contains(" resumed, to "))?;
                Some(l.split_whitespace().next()?.to_string())
            });
            if let Some(name) = promoted {
                if read(&dir.join(&name).join("run.log"))
                    .matches("Run folder:")
                    .count()
                    >= 2
                {
                    child.kill().unwrap();
                    child.wait().unwrap();
                    killed = Some(name);
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let text = read(&log);
        assert!(
            text.starts_with(&format!("{} started", trial_name(line))),
            "task {i}: {text}"
        );
        logs.push(text);
    }
    let all = logs.concat();
    let killed = killed.unwrap_or_else(|| panic!("no task promoted a trial: {all}"));
    assert!(all.contains("promoted from rung 1 (epoch 1)"), "{all}");
    let latest = |name: &str| -> serde_json::Value {
        journal(&dir)
            .into_iter()
            .rfind(|e| name.starts_with(&format!("trial-{:03}-", e["trial"].as_u64().unwrap())))
            .unwrap()
    };
    assert_eq!(latest(&killed)["state"], "running");

    // No task runs (the fake squeue knows none): the trial the killed
    // task trained is stopped, and only it is submitted again.
    let out = runner()
        .env("PATH", path_with(&bin))
        .args(["sweep", "--status"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let e = latest(&killed);
    assert_eq!(e["state"], "stopped", "{e}\n{}", stdout(&out));
    assert_eq!(
        e["message"], "the Slurm task that ran it ended before it did",
        "{e}"
    );
    let out = resume_with(&bin, &dir, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let index: usize = killed[6..9].parse().unwrap();
    let sbatch = calls(&bin, "sbatch");
    assert!(
        sbatch
            .last()
            .unwrap()
            .contains(&format!("--array={index}%1")),
        "{sbatch:?}"
    );
    let log = tmp.path().join("task-again.log");
    let status = task(&lines[index], &log).wait().unwrap();
    let text = read(&log);
    assert!(status.success(), "{text}");
    assert!(
        text.starts_with(&format!("{killed} resumed, to the end")),
        "{text}"
    );
    // It ended the sweep: nothing waits at the rung any more.
    assert!(text.contains(" pruned in 0s"), "{text}");
    let epochs = crate::common::csv_epochs(&dir.join(&killed));
    assert_eq!(epochs, [0, 1, 2], "{killed}");

    // The same sweep, run locally.
    let local = runner()
        .arg("sweep")
        .arg(&exp)
        .args(sets)
        .args(["--launcher", "local", "--runs-dir"])
        .arg(tmp.path().join("local"))
        .timeout(Duration::from_secs(300))
        .output()
        .unwrap();
    assert!(local.status.success(), "{}", stderr(&local));
    let local_dir = sweep_dir(&tmp.path().join("local"), "promotasks");
    let tasks = decisions(&dir);
    assert_eq!(tasks, decisions(&local_dir), "{all}\n{text}");
    assert!(tasks.iter().any(|d| d.2 == "prune"), "{tasks:?}");

    // A task of a pruned trial, run again (a requeue), trains nothing and
    // decides nothing.
    let pruned = tasks.iter().find(|d| d.2 == "prune").unwrap().0 as usize;
    let out = runner()
        .args(["run", "--trial", &lines[pruned], "--worker"])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(text.contains("Worker done: 0 launch(es)"), "{text}");
    assert_eq!(decisions(&dir), tasks);
}

/// Slurm's warning before a time limit (`--signal=B:USR1@N`) reaches the
/// batch shell, that is the worker: it passes SIGUSR1 on to the trial it
/// trains, which stops at the next batch (SIGTERM would finish the epoch),
/// recorded stopped; the task exits 130.
#[test]
fn a_worker_passes_slurms_time_limit_warning_to_its_trial() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = fake_slurm(tmp.path());
    let exp = tiny_experiment(
        tmp.path(),
        "promousr1",
        "[sweep]\nmetric = \"val_loss\"\n\
         [sweep.grid]\n\"optimizer.learning_rate\" = [0.01, 0.02, 0.03]\n\
         [sweep.early_stop]\ntype = \"asha\"\nmin_epochs = 1\nvariant = \"promotion\"\n\
         [sweep.launcher]\ntype = \"slurm\"\n",
    );
    let runs = tmp.path().join("runs");
    // Epochs of about two seconds: the warning lands inside the first.
    let out = runner()
        .env("PATH", path_with(&bin))
        .arg("sweep")
        .arg(&exp)
        .args(["--set", "data.train_size=60000", "--runs-dir"])
        .arg(&runs)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = sweep_dir(&runs, "promousr1");
    let line = trials_file(&dir)[0].clone();
    let run_log = Path::new(&line).join("run.log");
    let mut worker = runner_process()
        .args(["run", "--trial", &line, "--worker"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&run_log)
        .unwrap_or_default()
        .contains("Run folder:")
    {
        assert!(Instant::now() < deadline, "the trial never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(worker.id() as i32, libc::SIGUSR1) };
    let status = worker.wait().unwrap();
    let log = std::fs::read_to_string(&run_log).unwrap();
    assert_eq!(status.code(), Some(130), "{log}");
    assert!(log.contains("SIGUSR1"), "{log}");
    // A trial goes on with its sweep, not on its own.
    assert!(
        log.contains("continue with `runner sweep --resume "),
        "{log}"
    );
    let rows = std::fs::read_to_string(Path::new(&line).join("metrics.csv")).unwrap_or_default();
    assert!(rows.lines().nth(1).is_none(), "{rows}\n{log}");
    let lines = journal(&dir);
    let last = lines.last().unwrap();
    assert_eq!(last["state"], "stopped", "{lines:?}");
    assert_eq!(last["trial"], 0, "{lines:?}");
}

/// `max_hours` on Slurm: every task is submitted at once, so a task that
/// starts after the budget has run out runs nothing (exit 0, no
/// meta.json), `--resume` submits no trial that never started, and
/// `--resume --set sweep.max_hours=H` gives the sweep more time.
#[test]
fn a_slurm_task_starts_no_trial_after_max_hours() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = fake_slurm(tmp.path());
    let exp = tiny_experiment(
        tmp.path(),
        "slurmtimed",
        "[sweep]\nmax_hours = 1e-6\n[sweep.grid]\n\"model.dropout\" = [0.0, 0.1, 0.2]\n\
         [sweep.launcher]\ntype = \"slurm\"\n",
    );
    let runs = tmp.path().join("runs");
    let out = submit(&bin, &exp, &runs);
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = sweep_dir(&runs, "slurmtimed");
    let lines = trials_file(&dir);
    let out = runner()
        .args(["run", "--trial", &lines[0]])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(
        text.contains("max_hours = 0.000001 has run out since the sweep started"),
        "{text}"
    );
    assert!(!Path::new(&lines[0]).join("meta.json").exists());
    let out = resume_with(&bin, &dir, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("3 trial(s) that never started are not submitted"),
        "{text}"
    );
    assert!(text.contains("Nothing to resubmit"), "{text}");
    assert_eq!(calls(&bin, "sbatch").len(), 1);
    let out = resume_with(&bin, &dir, &["sweep.max_hours=1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let sbatch = calls(&bin, "sbatch");
    assert!(sbatch.last().unwrap().contains("--array=0-2"), "{sbatch:?}");
    let out = runner()
        .args(["run", "--trial", &lines[0]])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        crate::common::meta(Path::new(&lines[0]))["status"],
        "completed"
    );
}

/// Past `max_hours`, a TPE task requeued with its `trial-NNN` line goes
/// on with the trial it chose before (in `trial-NNN-<id>`), while one whose
/// trial was never chosen starts nothing.
#[test]
fn past_max_hours_a_requeued_tpe_task_finishes_the_trial_it_chose() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = fake_slurm(tmp.path());
    let (dir, lines) = tpe_sweep_past_startup(tmp.path(), &bin, "tpetimed", "max_hours = 1\n");
    assert!(lines[2].ends_with("/trial-002"), "{lines:?}");
    // Trial 2 is chosen and stops after one epoch (a time limit would).
    let out = runner()
        .args(["run", "--trial", &lines[2], "--until", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // The budget runs out.
    let out = resume_with(&bin, &dir, &["sweep.max_hours=1e-6"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("1 trial(s) that never started are not submitted"),
        "{}",
        stdout(&out)
    );
    let out = runner()
        .args(["run", "--trial", &lines[2]])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(!text.contains("is not started"), "{text}");
    assert_eq!(
        crate::common::meta(&trial_dir(&dir, 2))["status"],
        "completed"
    );
    let out = runner()
        .args(["run", "--trial", &lines[3]])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("trial-003 is not started"),
        "{}",
        stdout(&out)
    );
    assert!(!dir.join("trial-003").exists());
}

/// A TPE sweep of 4 trials (2 random to start, over 3 grid points, plus
/// the `[sweep]` lines `extra`) submitted to the fake Slurm one task at a
/// time, with the tasks of its 2 startup trials run by hand: the sweep
/// folder and its trials.txt lines.
fn tpe_sweep_past_startup(
    tmp: &Path,
    bin: &Path,
    name: &str,
    extra: &str,
) -> (PathBuf, Vec<String>) {
    let exp = tiny_experiment(
        tmp,
        name,
        &format!(
            "[sweep]\nstrategy = \"tpe\"\ntrials = 4\nmetric = \"val_loss\"\n{extra}\
             [sweep.tpe]\nn_startup = 2\n\
             [sweep.grid]\n\"optimizer.learning_rate\" = [0.02, 0.005, 1e-4]\n\
             [sweep.launcher]\ntype = \"slurm\"\nmax_parallel = 1\n"
        ),
    );
    let runs = tmp.join("runs");
    let out = submit(bin, &exp, &runs);
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = sweep_dir(&runs, name);
    let lines = trials_file(&dir);
    for line in &lines[..2] {
        let out = runner()
            .args(["run", "--trial", line])
            .timeout(Duration::from_secs(120))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    (dir, lines)
}

/// The folder name at the end of a trials.txt line.
fn trial_name(line: &str) -> String {
    Path::new(line)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string()
}
