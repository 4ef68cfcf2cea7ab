//! A real single-node Slurm cluster on loopback for tests: started in a
//! temporary folder with `scripts/slurm/up.sh`, torn down with
//! `scripts/slurm/down.sh` when dropped (also when the test panics). A
//! watchdog started by up.sh takes it down if the test process is killed.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use runner::sweep::slurm::{Slurm, SlurmOptions};

const NEEDED: &[&str] = &[
    "slurmctld",
    "slurmd",
    "munged",
    "mungekey",
    "sbatch",
    "squeue",
    "scontrol",
];

pub struct SlurmCluster {
    dir: Option<tempfile::TempDir>,
    conf: PathBuf,
    /// One cluster at a time: two slurmd started at once on a loaded
    /// 2-core machine were seen to lose one at start-up.
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
}

static ONE_CLUSTER: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/slurm")
}

fn on_path(bin: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .any(|dir| dir.join(bin).is_file())
}

impl SlurmCluster {
    /// Start a cluster with the default configuration. `None` (after printing
    /// "skipped: no slurm") when Slurm is not installed and `CI` is not
    /// `true`; in CI a missing Slurm fails the test.
    #[allow(dead_code)] // for the `runner sweep` tests
    pub fn start() -> Option<SlurmCluster> {
        SlurmCluster::start_with("")
    }

    /// Start a cluster with extra `slurm.conf` lines (e.g. `MaxArraySize=3`).
    pub fn start_with(extra_conf: &str) -> Option<SlurmCluster> {
        let missing: Vec<&str> = NEEDED.iter().copied().filter(|b| !on_path(b)).collect();
        if !missing.is_empty() {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "Slurm is required in CI but {} missing (apt-get install slurmctld slurmd slurm-client munge)",
                    missing.join(", ")
                );
            }
            println!("skipped: no slurm (missing {})", missing.join(", "));
            return None;
        }
        let guard = ONE_CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::Builder::new()
            .prefix("runner-slurm-")
            .tempdir()
            .expect("temporary folder for the cluster");
        let out = Command::new(scripts_dir().join("up.sh"))
            .arg(dir.path())
            .arg("--watch")
            .arg(std::process::id().to_string())
            .env("SLURM_LOCAL_EXTRA_CONF", extra_conf)
            .output()
            .expect("run scripts/slurm/up.sh");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "up.sh failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let conf = stdout
            .lines()
            .find_map(|l| l.strip_prefix("export SLURM_CONF="))
            .unwrap_or_else(|| panic!("up.sh printed no SLURM_CONF: {stdout}"));
        Some(SlurmCluster {
            conf: PathBuf::from(conf),
            dir: Some(dir),
            _one_at_a_time: guard,
        })
    }

    /// The folder holding the cluster's state, logs and pid files.
    pub fn state_dir(&self) -> &Path {
        self.conf
            .parent()
            .expect("slurm.conf lives in the state folder")
    }

    #[allow(dead_code)] // for the `runner sweep` tests
    pub fn conf(&self) -> &Path {
        &self.conf
    }

    /// `SLURM_CONF` for a child process that talks to this cluster.
    pub fn env(&self) -> (&'static str, OsString) {
        ("SLURM_CONF", self.conf.clone().into_os_string())
    }

    /// A command with `SLURM_CONF` set for this cluster.
    #[allow(dead_code)] // for the `runner sweep` tests
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        let (k, v) = self.env();
        cmd.env(k, v);
        cmd
    }

    /// A launcher client for `sweep_dir` that talks to this cluster.
    pub fn client(&self, sweep_dir: &Path) -> Slurm {
        let (k, v) = self.env();
        Slurm::with_options(
            sweep_dir,
            SlurmOptions {
                timeout: Duration::from_secs(20),
                env: vec![(k.into(), v)],
                ..SlurmOptions::default()
            },
        )
    }

    /// Processes whose command line names this cluster's state folder
    /// (daemons, the watchdog, job scripts copied into its spool folder).
    pub fn processes(&self) -> Vec<(u32, String)> {
        let needle = format!("{}/", self.state_dir().display());
        let mut found = Vec::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return found;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
            if cmdline.contains(&needle) {
                found.push((pid, cmdline.trim().to_string()));
            }
        }
        found
    }

    /// The tail of each daemon log, for failure messages.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for name in ["slurmctld.log", "slurmd.log", "munged.log"] {
            let path = self.state_dir().join("log").join(name);
            let content = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = content.lines().collect();
            let from = lines.len().saturating_sub(20);
            text.push_str(&format!(
                "--- {}\n{}\n",
                path.display(),
                lines[from..].join("\n")
            ));
        }
        text
    }

    fn down(&mut self) -> Result<(), String> {
        let Some(dir) = self.dir.take() else {
            return Ok(());
        };
        let out = Command::new(scripts_dir().join("down.sh"))
            .arg(dir.path())
            .output()
            .map_err(|e| format!("run scripts/slurm/down.sh: {e}"))?;
        let left = self.processes();
        let result = if !out.status.success() {
            Err(format!(
                "down.sh failed: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        } else if !left.is_empty() {
            Err(format!("processes of the cluster left behind: {left:?}"))
        } else {
            Ok(())
        };
        if result.is_err() {
            // Keep the folder for a post-mortem.
            let kept = dir.keep();
            return result.map_err(|e| format!("{e}\n(state kept in {})", kept.display()));
        }
        result
    }

    /// Tear down and check that no process of this cluster remains.
    pub fn shutdown(mut self) -> Result<(), String> {
        self.down()
    }
}

impl Drop for SlurmCluster {
    fn drop(&mut self) {
        if self.dir.is_none() {
            return;
        }
        if std::thread::panicking() {
            eprintln!("Slurm cluster logs:\n{}", self.logs());
        }
        if let Err(e) = self.down() {
            eprintln!("{e}");
        }
    }
}
