//! The launcher against fake `sbatch`/`squeue`/`scontrol`/`sacct`/`scancel`
//! scripts: each fake logs its arguments and answers from files in its folder,
//! and the client gets that folder as its only PATH (no process-wide state, so
//! tests run in parallel and never reach a real Slurm).

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::*;

const FAKES: &[&str] = &["sbatch", "squeue", "scontrol", "sacct", "scancel"];

/// A folder of fake Slurm commands. Call N (from 0) of `cmd` prints
/// `cmd.N.out` (else `cmd.out`) on stdout, `cmd.N.err`/`cmd.err` on stderr,
/// sleeps `cmd.N.sleep`/`cmd.sleep` seconds first, and exits with
/// `cmd.N.rc`/`cmd.rc` (0 when there is neither). A command with no `.out`,
/// `.err` or `.rc` file at all exits 99: an unexpected call.
struct Fakes {
    dir: tempfile::TempDir,
}

const FAKE: &str = r#"#!/bin/bash
d=${0%/*}; n=${0##*/}
k=0; [ -f "$d/$n.count" ] && k=$(< "$d/$n.count")
echo $((k + 1)) > "$d/$n.count"
echo "$n $*" >> "$d/calls.log"
pick() { if [ -f "$d/$n.$k.$1" ]; then echo "$d/$n.$k.$1"; elif [ -f "$d/$n.$1" ]; then echo "$d/$n.$1"; fi; }
s=$(pick sleep); [ -n "$s" ] && /bin/sleep "$(< "$s")"
o=$(pick out); e=$(pick err); r=$(pick rc)
if [ -z "$o$e$r" ]; then echo "fake $n: unexpected call $*" >&2; exit 99; fi
[ -n "$o" ] && printf '%s' "$(< "$o")" && echo
[ -n "$e" ] && printf '%s\n' "$(< "$e")" >&2
[ -n "$r" ] && exit "$(< "$r")"
exit 0
"#;

impl Fakes {
    fn new() -> Fakes {
        let dir = tempfile::tempdir().unwrap();
        for name in FAKES {
            let path = dir.path().join(name);
            std::fs::write(&path, FAKE).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Fakes { dir }
    }

    /// Set what call `nth` (or every call, with `None`) of `cmd` answers.
    fn answer(&self, cmd: &str, nth: Option<usize>, kind: &str, text: &str) -> &Self {
        let name = match nth {
            Some(n) => format!("{cmd}.{n}.{kind}"),
            None => format!("{cmd}.{kind}"),
        };
        std::fs::write(self.dir.path().join(name), text).unwrap();
        self
    }

    fn out(&self, cmd: &str, text: &str) -> &Self {
        self.answer(cmd, None, "out", text)
    }

    /// A cluster config with this MaxArraySize and accounting type.
    fn config(&self, max_array_size: usize, accounting: &str) -> &Self {
        self.out(
            "scontrol",
            &format!(
                "Configuration data as of 2026-01-01T00:00:00\n\
                 AccountingStorageType   = accounting_storage/{accounting}\n\
                 MaxArraySize            = {max_array_size}\n\
                 MaxJobCount             = 10000\n"
            ),
        )
    }

    /// Every call so far, `cmd args...` per line.
    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn calls_of(&self, cmd: &str) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| c.split(' ').next() == Some(cmd))
            .collect()
    }

    fn options(&self) -> SlurmOptions {
        SlurmOptions {
            timeout: Duration::from_secs(10),
            retries: 2,
            backoff: Duration::from_millis(1),
            path: Some(self.dir.path().as_os_str().to_owned()),
            env: Vec::new(),
        }
    }

    fn client(&self, sweep: &Path) -> Slurm {
        Slurm::with_options(sweep, self.options())
    }
}

fn job(id: &str, offset: usize, trials: &[usize]) -> SubmittedJob {
    SubmittedJob {
        job_id: id.into(),
        offset,
        trials: trials.to_vec(),
        cluster: None,
    }
}

// --- sbatch --------------------------------------------------------------------

#[test]
fn submit_passes_ranges_throttle_offset_and_records_jobs() {
    let fakes = Fakes::new();
    fakes.config(1001, "none").out("sbatch", "4242");
    let sweep = tempfile::tempdir().unwrap();
    let slurm = fakes.client(sweep.path());
    let jobs = slurm
        .submit(
            Path::new("/s/slurm/sweep.sbatch"),
            &[0, 1, 2, 3, 7, 9, 10],
            Some(2),
        )
        .unwrap();
    assert_eq!(jobs, vec![job("4242", 0, &[0, 1, 2, 3, 7, 9, 10])]);
    assert_eq!(
        fakes.calls_of("sbatch"),
        vec!["sbatch --parsable --array=0-3,7,9-10%2 --export=ALL,RUNNER_TRIAL_OFFSET=0 /s/slurm/sweep.sbatch"]
    );

    // A resubmission (`--resume`) appends; MaxArraySize was read once.
    fakes.out("sbatch", "4300;other");
    let again = slurm
        .submit(Path::new("/s/slurm/sweep.sbatch"), &[3, 7], None)
        .unwrap();
    assert_eq!(again[0].cluster.as_deref(), Some("other"));
    assert_eq!(
        fakes.calls_of("sbatch")[1],
        "sbatch --parsable --array=3,7 --export=ALL,RUNNER_TRIAL_OFFSET=0 /s/slurm/sweep.sbatch"
    );
    assert_eq!(fakes.calls_of("scontrol").len(), 1);
    let recorded = read_jobs(sweep.path()).unwrap();
    assert_eq!(recorded.len(), 2);
    assert_eq!(recorded[1], again[0]);
    assert_eq!(latest_job_per_trial(&recorded)[&7].job_id, "4300");
    assert_eq!(latest_job_per_trial(&recorded)[&0].job_id, "4242");
}

#[test]
fn submit_splits_arrays_at_max_array_size() {
    let fakes = Fakes::new();
    fakes
        .config(4, "none")
        .answer("sbatch", Some(0), "out", "101")
        .answer("sbatch", Some(1), "out", "102")
        .answer("sbatch", Some(2), "out", "103");
    let sweep = tempfile::tempdir().unwrap();
    let jobs = fakes
        .client(sweep.path())
        .submit(
            Path::new("/s.sbatch"),
            &(0..10).collect::<Vec<_>>(),
            Some(2),
        )
        .unwrap();
    assert_eq!(
        jobs,
        vec![
            job("101", 0, &[0, 1, 2, 3]),
            job("102", 4, &[4, 5, 6, 7]),
            job("103", 8, &[8, 9])
        ]
    );
    assert_eq!(
        fakes.calls_of("sbatch"),
        vec![
            "sbatch --parsable --array=0-3%2 --export=ALL,RUNNER_TRIAL_OFFSET=0 /s.sbatch",
            "sbatch --parsable --array=0-3%2 --export=ALL,RUNNER_TRIAL_OFFSET=4 --dependency=afterany:101 /s.sbatch",
            "sbatch --parsable --array=0-1%2 --export=ALL,RUNNER_TRIAL_OFFSET=8 --dependency=afterany:102 /s.sbatch",
        ]
    );
    assert_eq!(jobs[2].task_id(9), Some(1));
    assert_eq!(
        jobs[2].log_files(Path::new("/s"), 9).unwrap().0,
        PathBuf::from("/s/slurm/logs/103_1.out")
    );
    assert_eq!(read_jobs(sweep.path()).unwrap(), jobs);
}

#[test]
fn submit_failure_keeps_the_submissions_that_went_through() {
    let fakes = Fakes::new();
    fakes
        .config(2, "none")
        .answer("sbatch", Some(0), "out", "7")
        .answer(
            "sbatch",
            Some(1),
            "err",
            "sbatch: error: Batch job submission failed: Invalid account",
        )
        .answer("sbatch", Some(1), "rc", "1");
    let sweep = tempfile::tempdir().unwrap();
    let err = fakes
        .client(sweep.path())
        .submit(Path::new("/s.sbatch"), &[0, 1, 2], None)
        .unwrap_err();
    assert!(err.to_string().contains("Invalid account"), "{err}");
    assert!(!err.is_transient());
    assert_eq!(
        fakes.calls_of("sbatch").len(),
        2,
        "a permanent error is not retried"
    );
    assert_eq!(read_jobs(sweep.path()).unwrap(), vec![job("7", 0, &[0, 1])]);
}

#[test]
fn submit_garbage_is_a_parse_error() {
    let fakes = Fakes::new();
    fakes
        .config(1001, "none")
        .out("sbatch", "Submitted batch job 5");
    let sweep = tempfile::tempdir().unwrap();
    let err = fakes
        .client(sweep.path())
        .submit(Path::new("/s"), &[0], None)
        .unwrap_err();
    assert!(matches!(err, SlurmError::Parse { .. }), "{err}");
    assert!(read_jobs(sweep.path()).unwrap().is_empty());
}

#[test]
fn arrays_disabled() {
    let fakes = Fakes::new();
    fakes.config(0, "none");
    let sweep = tempfile::tempdir().unwrap();
    let err = fakes
        .client(sweep.path())
        .submit(Path::new("/s"), &[0], None)
        .unwrap_err();
    assert!(matches!(err, SlurmError::ArraysDisabled));
    assert!(fakes.calls_of("sbatch").is_empty());
}

// --- polling -------------------------------------------------------------------

const SCONTROL_JOB: &str = "\
JobId=1 ArrayJobId=1 ArrayTaskId=3 ArrayTaskThrottle=2 JobName=t JobState=COMPLETED Reason=None ExitCode=0:0 RunTime=00:00:01
JobId=4 ArrayJobId=1 ArrayTaskId=2 ArrayTaskThrottle=2 JobName=t JobState=FAILED Reason=NonZeroExitCode ExitCode=3:0 RunTime=00:00:01
JobId=3 ArrayJobId=1 ArrayTaskId=1 ArrayTaskThrottle=2 JobName=t JobState=COMPLETED Reason=None ExitCode=0:0 RunTime=00:00:01
JobId=2 ArrayJobId=1 ArrayTaskId=0 ArrayTaskThrottle=2 JobName=t JobState=CANCELLED Reason=None ExitCode=0:15 RunTime=00:00:01";

#[test]
fn poll_takes_exit_codes_from_scontrol_without_accounting() {
    let fakes = Fakes::new();
    fakes.config(1001, "none").out(
        "squeue",
        "1_3|3|COMPLETED|None\n1_1|1|COMPLETED|None\n1_0|0|CANCELLED|None\n1_2|2|FAILED|NonZeroExitCode",
    );
    // After the scontrol show config call, `scontrol -o show job 1`:
    fakes.answer("scontrol", Some(1), "out", SCONTROL_JOB);
    let sweep = tempfile::tempdir().unwrap();
    let states = fakes
        .client(sweep.path())
        .poll(&[job("1", 0, &[0, 1, 2, 3])])
        .unwrap();
    assert_eq!(
        states,
        BTreeMap::from([
            (0, TaskState::Cancelled),
            (1, TaskState::Completed),
            (2, TaskState::Failed { exit_code: 3 }),
            (3, TaskState::Completed),
        ])
    );
    assert!(
        fakes.calls_of("sacct").is_empty(),
        "no sacct without accounting"
    );
    assert_eq!(
        fakes.calls_of("squeue"),
        vec!["squeue -h -r -t all -j 1 -o %i|%K|%T|%r"]
    );
    assert_eq!(fakes.calls_of("scontrol")[1], "scontrol -o show job 1");
}

#[test]
fn poll_maps_offsets_and_skips_detail_when_squeue_says_all() {
    let fakes = Fakes::new();
    fakes.config(4, "none").out(
        "squeue",
        "101_[2-3]|2-3|PENDING|JobArrayTaskLimit\n101_0|0|RUNNING|None\n101_1|1|COMPLETED|None\n102_0|0|PENDING|Dependency",
    );
    let sweep = tempfile::tempdir().unwrap();
    let jobs = [job("101", 0, &[0, 1, 2, 3]), job("102", 4, &[4])];
    let states = fakes.client(sweep.path()).poll(&jobs).unwrap();
    assert_eq!(
        states,
        BTreeMap::from([
            (0, TaskState::Running),
            (1, TaskState::Completed),
            (2, TaskState::Pending),
            (3, TaskState::Pending),
            (4, TaskState::Pending),
        ])
    );
    assert_eq!(
        fakes.calls_of("squeue"),
        vec!["squeue -h -r -t all -j 101,102 -o %i|%K|%T|%r"]
    );
    assert!(
        fakes.calls_of("scontrol").is_empty(),
        "nothing needed more detail"
    );
}

#[test]
fn a_job_that_aged_out_everywhere_is_gone() {
    let fakes = Fakes::new();
    fakes
        .config(1001, "none")
        .answer(
            "squeue",
            None,
            "err",
            "slurm_load_jobs error: Invalid job id specified",
        )
        .answer("squeue", None, "rc", "1")
        .answer(
            "scontrol",
            Some(1),
            "err",
            "slurm_load_jobs error: Invalid job id specified",
        )
        .answer("scontrol", Some(1), "rc", "1");
    let sweep = tempfile::tempdir().unwrap();
    let states = fakes
        .client(sweep.path())
        .poll(&[job("77", 0, &[0, 1])])
        .unwrap();
    assert_eq!(
        states,
        BTreeMap::from([(0, TaskState::Gone), (1, TaskState::Gone)])
    );
    assert_eq!(
        fakes.calls_of("squeue").len(),
        1,
        "an unknown job is an answer, not retried"
    );
}

#[test]
fn a_resubmitted_trial_follows_its_latest_job() {
    let fakes = Fakes::new();
    fakes
        .config(1001, "none")
        .out("squeue", "20_3|3|RUNNING|None")
        .answer(
            "scontrol",
            Some(1),
            "out",
            "JobId=11 ArrayJobId=10 ArrayTaskId=0 JobState=COMPLETED ExitCode=0:0",
        );
    let sweep = tempfile::tempdir().unwrap();
    let jobs = [job("10", 0, &[0, 3]), job("20", 0, &[3])];
    let states = fakes.client(sweep.path()).poll(&jobs).unwrap();
    assert_eq!(
        states,
        BTreeMap::from([(0, TaskState::Completed), (3, TaskState::Running)])
    );
    assert_eq!(
        fakes.calls_of("scontrol")[1],
        "scontrol -o show job 10",
        "only job 10 needed detail"
    );
}

#[test]
fn poll_uses_sacct_with_accounting() {
    let fakes = Fakes::new();
    fakes.config(1001, "slurmdbd").out("squeue", "").out(
        "sacct",
        "55_0|COMPLETED|0:0\n55_1|OUT_OF_MEMORY|0:125\n55_2|TIMEOUT|0:0\n55_3|CANCELLED by 1000|0:0\n55_[4-5]|PENDING|0:0\n55_6|FAILED|2:0",
    );
    let sweep = tempfile::tempdir().unwrap();
    let states = fakes
        .client(sweep.path())
        .poll(&[job("55", 0, &[0, 1, 2, 3, 4, 5, 6, 7])])
        .unwrap();
    assert_eq!(
        states,
        BTreeMap::from([
            (0, TaskState::Completed),
            (1, TaskState::OutOfMemory),
            (2, TaskState::Timeout),
            (3, TaskState::Cancelled),
            (4, TaskState::Pending),
            (5, TaskState::Pending),
            (6, TaskState::Failed { exit_code: 2 }),
            (7, TaskState::Gone),
        ])
    );
    assert_eq!(
        fakes.calls_of("sacct"),
        vec!["sacct -n -X -P -o JobID,State,ExitCode -j 55"]
    );
}

#[test]
fn sacct_saying_disabled_switches_to_scontrol_once() {
    let fakes = Fakes::new();
    fakes
        .config(1001, "slurmdbd")
        .out("squeue", "")
        .answer(
            "sacct",
            None,
            "err",
            "sacct: error: Slurm accounting storage is disabled",
        )
        .answer("sacct", None, "rc", "1")
        .answer(
            "scontrol",
            Some(1),
            "out",
            "JobId=9 ArrayJobId=9 ArrayTaskId=0 JobState=FAILED ExitCode=4:0",
        )
        .answer(
            "scontrol",
            Some(2),
            "out",
            "JobId=9 ArrayJobId=9 ArrayTaskId=0 JobState=FAILED ExitCode=4:0",
        );
    let sweep = tempfile::tempdir().unwrap();
    let slurm = fakes.client(sweep.path());
    let jobs = [job("9", 0, &[0])];
    for _ in 0..2 {
        let states = slurm.poll(&jobs).unwrap();
        assert_eq!(states[&0], TaskState::Failed { exit_code: 4 });
    }
    assert_eq!(fakes.calls_of("sacct").len(), 1, "detected once");
    assert_eq!(
        fakes.calls_of("scontrol").len(),
        3,
        "config once, then show job per poll"
    );
}

// --- timeouts and retries ----------------------------------------------------------

#[test]
fn a_hanging_controller_times_out_instead_of_hanging() {
    let fakes = Fakes::new();
    fakes
        .config(1001, "none")
        .out("squeue", "")
        .answer("squeue", None, "sleep", "30");
    let sweep = tempfile::tempdir().unwrap();
    let slurm = Slurm::with_options(
        sweep.path(),
        SlurmOptions {
            timeout: Duration::from_millis(300),
            retries: 1,
            ..fakes.options()
        },
    );
    let start = Instant::now();
    let err = slurm.poll(&[job("1", 0, &[0])]).unwrap_err();
    let took = start.elapsed();
    assert!(matches!(err, SlurmError::Timeout { .. }), "{err}");
    assert!(err.is_transient());
    assert!(err.to_string().contains("scontrol ping"), "{err}");
    assert_eq!(fakes.calls_of("squeue").len(), 2, "one retry");
    assert!(
        took < Duration::from_secs(5),
        "took {took:?}: the sleeping fake was not killed"
    );
}

#[test]
fn a_slow_sbatch_is_not_submitted_twice() {
    let fakes = Fakes::new();
    fakes
        .config(1001, "none")
        .out("sbatch", "5")
        .answer("sbatch", None, "sleep", "30");
    let sweep = tempfile::tempdir().unwrap();
    let slurm = Slurm::with_options(
        sweep.path(),
        SlurmOptions {
            timeout: Duration::from_millis(300),
            ..fakes.options()
        },
    );
    let err = slurm.submit(Path::new("/s"), &[0], None).unwrap_err();
    assert!(matches!(err, SlurmError::SubmitUncertain { .. }), "{err}");
    assert!(err.to_string().contains("squeue --me"), "{err}");
    assert!(!err.is_transient(), "a caller must not blindly resubmit");
    assert_eq!(fakes.calls_of("sbatch").len(), 1);

    // A lost answer is just as uncertain.
    let fakes = Fakes::new();
    fakes
        .config(1001, "none")
        .answer(
            "sbatch",
            None,
            "err",
            "sbatch: error: Socket timed out on send/recv operation",
        )
        .answer("sbatch", None, "rc", "1");
    let err = fakes
        .client(sweep.path())
        .submit(Path::new("/s"), &[0], None)
        .unwrap_err();
    assert!(matches!(err, SlurmError::SubmitUncertain { .. }), "{err}");
    assert!(err.to_string().contains("Socket timed out"), "{err}");
    assert_eq!(fakes.calls_of("sbatch").len(), 1);
    assert!(read_jobs(sweep.path()).unwrap().is_empty());
}

#[test]
fn unreachable_controller_is_retried_with_backoff() {
    let fakes = Fakes::new();
    let down = "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)";
    fakes
        .config(1001, "none")
        .answer("sbatch", Some(0), "err", down)
        .answer("sbatch", Some(0), "rc", "1")
        .answer("sbatch", Some(1), "out", "31");
    let sweep = tempfile::tempdir().unwrap();
    let jobs = fakes
        .client(sweep.path())
        .submit(Path::new("/s"), &[0], None)
        .unwrap();
    assert_eq!(jobs[0].job_id, "31");
    assert_eq!(fakes.calls_of("sbatch").len(), 2);

    // Always down: gives up after the retries with a transient error.
    let fakes = Fakes::new();
    fakes
        .config(1001, "none")
        .answer(
            "squeue",
            None,
            "err",
            "squeue: error: Unable to contact slurm controller (connect failure)",
        )
        .answer("squeue", None, "rc", "1");
    let err = fakes
        .client(sweep.path())
        .poll(&[job("1", 0, &[0])])
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("connect failure"), "{err}");
    assert_eq!(fakes.calls_of("squeue").len(), 3);
}

#[test]
fn missing_commands_are_a_spawn_error() {
    let sweep = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let slurm = Slurm::with_options(
        sweep.path(),
        SlurmOptions {
            path: Some(empty.path().as_os_str().to_owned()),
            ..SlurmOptions::default()
        },
    );
    let err = slurm.cancel(&[job("1", 0, &[0])]).unwrap_err();
    assert!(matches!(err, SlurmError::Spawn { .. }), "{err}");
    assert!(err.to_string().contains("scancel 1"), "{err}");
}

// --- cancel and the polling loop -------------------------------------------------

#[test]
fn cancel_names_every_job_once_and_tolerates_finished_ones() {
    let fakes = Fakes::new();
    fakes
        .answer(
            "scancel",
            None,
            "err",
            "scancel: error: Kill job error on job id 8: Invalid job id specified",
        )
        .answer("scancel", None, "rc", "1");
    let sweep = tempfile::tempdir().unwrap();
    let mut other = job("9", 0, &[2]);
    other.cluster = Some("gpu".into());
    fakes
        .client(sweep.path())
        .cancel(&[job("8", 0, &[0]), job("8", 0, &[1]), other])
        .unwrap();
    assert_eq!(
        fakes.calls_of("scancel"),
        vec!["scancel 8", "scancel -M gpu 9"]
    );

    let fakes = Fakes::new();
    fakes
        .answer(
            "scancel",
            None,
            "err",
            "scancel: error: Access/permission denied",
        )
        .answer("scancel", None, "rc", "1");
    let err = fakes
        .client(sweep.path())
        .cancel(&[job("8", 0, &[0])])
        .unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");
}

#[test]
fn poller_waits_until_nothing_is_active_and_rides_out_errors() {
    let fakes = Fakes::new();
    fakes
        .config(1001, "none")
        .answer("squeue", Some(0), "out", "3_0|0|PENDING|None")
        .answer(
            "squeue",
            Some(1),
            "err",
            "squeue: error: Socket timed out on send/recv operation",
        )
        .answer("squeue", Some(1), "rc", "1")
        .answer("squeue", Some(2), "out", "3_0|0|RUNNING|None")
        .answer("squeue", Some(3), "out", "3_0|0|COMPLETED|None")
        .answer("squeue", Some(4), "out", "should not be asked");
    let sweep = tempfile::tempdir().unwrap();
    let slurm = Slurm::with_options(
        sweep.path(),
        SlurmOptions {
            retries: 0,
            ..fakes.options()
        },
    );
    let poller = Poller {
        interval: Duration::from_millis(5),
        max_consecutive_errors: 2,
    };
    let mut seen = Vec::new();
    let states = poller
        .run(&slurm, &[job("3", 0, &[0])], |event| {
            seen.push(match event {
                PollEvent::States(s) => s[&0].label().to_string(),
                PollEvent::TransientError { consecutive, .. } => format!("error {consecutive}"),
            });
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(states[&0], TaskState::Completed);
    assert_eq!(seen, vec!["pending", "error 1", "running", "completed"]);
}

#[test]
fn poller_gives_up_after_too_many_failed_rounds() {
    let fakes = Fakes::new();
    fakes
        .config(1001, "none")
        .answer(
            "squeue",
            None,
            "err",
            "squeue: error: Unable to contact slurm controller (connect failure)",
        )
        .answer("squeue", None, "rc", "1");
    let sweep = tempfile::tempdir().unwrap();
    let slurm = Slurm::with_options(
        sweep.path(),
        SlurmOptions {
            retries: 0,
            ..fakes.options()
        },
    );
    let poller = Poller {
        interval: Duration::from_millis(1),
        max_consecutive_errors: 3,
    };
    let err = poller
        .run(&slurm, &[job("3", 0, &[0])], |_| ControlFlow::Continue(()))
        .unwrap_err();
    assert!(matches!(err, SlurmError::GaveUp { count: 4, .. }), "{err}");
    assert_eq!(fakes.calls_of("squeue").len(), 4);
}
