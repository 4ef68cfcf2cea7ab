//! The Python interpreter that reads our outputs with their real consumers
//! (TensorBoard, pandas). `make test` installs requirements-test.txt into
//! `.venv` and points RUNNER_TEST_PYTHON at its python.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// RUNNER_TEST_PYTHON if it can import `module`. Otherwise `None` after
/// printing "skipped: no <module> python", or a panic when running in CI
/// (CI set to anything but "" or "false"), where a skip would hide the check.
pub fn python_with(module: &str) -> Option<PathBuf> {
    let reason = match std::env::var_os("RUNNER_TEST_PYTHON") {
        None => "RUNNER_TEST_PYTHON is not set".to_string(),
        Some(python) => {
            let python = PathBuf::from(python);
            match Command::new(&python)
                .args(["-c", &format!("import {module}")])
                .output()
            {
                Ok(out) if out.status.success() => return Some(python),
                Ok(out) => format!(
                    "{} cannot import {module}: {}",
                    python.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                Err(e) => format!("cannot run {}: {e}", python.display()),
            }
        }
    };
    let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
    if in_ci {
        panic!("{reason}; in CI this test needs it: run `make test`, which installs requirements-test.txt into .venv");
    }
    println!("skipped: no {module} python ({reason}; `make test` sets it up)");
    None
}

/// A script under tests/py/.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(name)
}

/// Run `python script args...`; panic with its output unless it succeeds.
pub fn run_script(python: &Path, name: &str, args: &[&std::ffi::OsStr]) -> Output {
    let out = Command::new(python)
        .arg(script(name))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "{name} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
