//! A short-lived external program (git, the Slurm commands) run under a
//! deadline: no stdin, both pipes read on their own threads so that a full
//! pipe cannot stall the child, and on expiry the child's whole process
//! group killed, so that a grandchild holding a pipe open cannot keep us
//! waiting either.

use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How a program run by [`output_within`] ended.
#[derive(Debug)]
pub enum Finished {
    /// It exited (successfully or not) before the deadline.
    Exited {
        status: ExitStatus,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
    },
    /// It was still running at the deadline and was killed, with its process
    /// group; what it had written by then.
    TimedOut { stdout: Vec<u8>, stderr: Vec<u8> },
}

/// Run `cmd` in a process group of its own, with stdin from /dev/null and
/// stdout and stderr collected, for at most `timeout`. An error means it
/// could not be started or waited for (it is killed then too).
pub fn output_within(cmd: &mut Command, timeout: Duration) -> io::Result<Finished> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()?;
    let group = child.id() as libc::pid_t;
    let kill_group = || {
        // SAFETY: killpg only sends a signal; the group is the child's own
        // (process_group(0) above), so nothing else is touched.
        unsafe {
            libc::killpg(group, libc::SIGKILL);
        }
    };
    let (tx, rx) = mpsc::channel::<(bool, Vec<u8>)>();
    let pipes: [(bool, Option<Box<dyn Read + Send>>); 2] = [
        (false, child.stdout.take().map(|r| Box::new(r) as _)),
        (true, child.stderr.take().map(|r| Box::new(r) as _)),
    ];
    for (is_stderr, pipe) in pipes {
        if let Some(mut pipe) = pipe {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = pipe.read_to_end(&mut buf);
                let _ = tx.send((is_stderr, buf));
            });
        }
    }
    drop(tx);

    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(e) => {
                kill_group();
                let _ = child.wait();
                return Err(e);
            }
        }
        if Instant::now() >= deadline {
            kill_group();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    };

    // Collect both pipes; a grandchild that keeps one open past the deadline
    // is killed with the group.
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        let got = match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(got) => Some(got),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                kill_group();
                rx.recv_timeout(Duration::from_secs(2)).ok()
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
        };
        match got {
            Some((true, buf)) => stderr = buf,
            Some((false, buf)) => stdout = buf,
            None => break,
        }
    }
    Ok(match status {
        Some(status) => Finished::Exited {
            status,
            stdout,
            stderr,
        },
        None => Finished::TimedOut { stdout, stderr },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    #[test]
    fn both_pipes_and_the_status_come_back() {
        let out = output_within(
            &mut sh("echo out; echo err >&2; exit 3"),
            Duration::from_secs(10),
        )
        .expect("sh runs");
        let Finished::Exited {
            status,
            stdout,
            stderr,
        } = out
        else {
            panic!("timed out: {out:?}");
        };
        assert_eq!(status.code(), Some(3));
        assert_eq!(stdout, b"out\n");
        assert_eq!(stderr, b"err\n");
    }

    #[test]
    fn a_program_past_its_timeout_is_killed_with_what_it_wrote() {
        let start = Instant::now();
        let out = output_within(
            &mut sh("echo started; sleep 30"),
            Duration::from_millis(300),
        )
        .expect("sh runs");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
        let Finished::TimedOut { stdout, .. } = out else {
            panic!("not timed out: {out:?}");
        };
        assert_eq!(stdout, b"started\n");
    }

    #[test]
    fn a_grandchild_holding_the_pipes_does_not_outlive_the_deadline() {
        // The shell exits at once, but its background child keeps stdout
        // open: only killing the group at the deadline ends the read, and
        // with it what the shell wrote comes back.
        let start = Instant::now();
        let out = output_within(
            &mut sh("sleep 30 & echo parent"),
            Duration::from_millis(300),
        )
        .expect("sh runs");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
        let Finished::Exited { status, stdout, .. } = out else {
            panic!("the shell itself exited at once: {out:?}");
        };
        assert!(status.success());
        assert_eq!(stdout, b"parent\n");
    }

    #[test]
    fn a_missing_program_is_an_error() {
        let err = output_within(
            &mut Command::new("/nonexistent/program"),
            Duration::from_secs(1),
        )
        .expect_err("cannot start");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
