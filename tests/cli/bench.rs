//! The benchmark driver's plumbing (`bench/bench.py --smoke`): it trains a
//! tiny model through the real `runner run`, reads the throughput back from
//! metrics.csv and the peak RSS from the process. No timing is asserted.

use std::process::Command;

use crate::common::root;

#[test]
fn bench_smoke_reads_runner_throughput_from_a_real_run() {
    let runner = assert_cmd::cargo::cargo_bin("runner");
    let results = tempfile::tempdir().unwrap();
    let out = Command::new("python3")
        .arg(root().join("bench/bench.py"))
        .arg("--smoke")
        .arg("--runner")
        .arg(&runner)
        .arg("--results")
        .arg(results.path())
        .arg("--work")
        .arg(results.path().join("work"))
        .arg("--threads")
        .arg("1")
        .current_dir(root())
        .env_remove("RUNNER_PLAIN")
        .output()
        .expect("python3 runs bench/bench.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("SMOKE "))
        .expect("a SMOKE line");
    let field = |k: &str| -> f64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {k} in {line}"))
    };
    assert_eq!(field("epochs"), 2.0);
    assert!(field("img_per_s") > 0.0, "{line}");
    // The whole runner process, model and loader: more than the interpreter's few MiB.
    assert!(field("rss_mib") > 20.0, "{line}");
}
