//! `--device wgpu`: the cubecl GPU path (the machinery burn-cuda uses:
//! fusion, autotune, kernel caches) on whatever Vulkan device is present,
//! in CI Mesa's software driver lavapipe. Fixed shapes, the kernel cache
//! folder, the warm-up note, evaluation on the device, sweeps, settings.
//!
//! These need a runner built with `--features wgpu` (`make test` builds it)
//! and a Vulkan driver; without either they say so on stdout and pass,
//! except in CI (`CI` set), where both must be there.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::common::{assert_exit, read_latest, runner, runner_on, stderr, stdout, tiny_experiment};

/// Whether the GPU tests can run here; prints why not.
fn wgpu_here() -> bool {
    static HERE: OnceLock<bool> = OnceLock::new();
    *HERE.get_or_init(|| {
        let ci = std::env::var_os("CI").is_some();
        if !cfg!(feature = "wgpu") {
            assert!(
                !ci,
                "CI must build the tests with --features wgpu (make test)"
            );
            println!("skipped: this runner is built without --features wgpu");
            return false;
        }
        // Where the Vulkan loader looks for drivers on Linux.
        let drivers = ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d"]
            .iter()
            .filter_map(|d| std::fs::read_dir(d).ok())
            .flatten()
            .flatten()
            .count();
        if drivers == 0 {
            assert!(
                !ci,
                "CI needs a Vulkan driver (apt install mesa-vulkan-drivers)"
            );
            println!("skipped: no Vulkan driver here (apt install mesa-vulkan-drivers)");
            return false;
        }
        true
    })
}

/// A kernel cache shared by the tests that do not look into it: the first
/// one tunes, the others find the results.
fn shared_cache() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

fn run_dir(runs: &Path, name: &str) -> PathBuf {
    let dir = runs.join(name);
    dir.join(read_latest(dir.join("latest")).unwrap())
}

/// `(true class, predicted class, probability)` per row of a predictions.csv.
fn predictions(path: &Path) -> Vec<(String, String, f64)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("index,true_class,predicted_class,probability")
    );
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[1].to_string(), f[2].to_string(), f[3].parse().unwrap())
        })
        .collect()
}

#[test]
fn a_wgpu_run_trains_keeps_its_kernels_and_evaluates_like_the_cpu() {
    if !wgpu_here() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("kernels");
    let exp = tiny_experiment(tmp.path(), "gpu", "");
    let runs = tmp.path().join("runs");
    let out = runner_on("run", &exp, &runs)
        .args(["--device", "wgpu"])
        .env("RUNNER_KERNEL_CACHE", &cache)
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "GPU: wgpu (fusion on, convolutions autotune, kernel cache {})",
            cache.display()
        )),
        "{text}"
    );
    assert!(
        text.contains("Compiling and tuning GPU kernels for the first step"),
        "{text}"
    );
    assert!(text.contains("First step: "), "{text}");
    let dir = run_dir(&runs, "gpu");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["device"], "wgpu");
    assert_eq!(meta["backend"], "wgpu");
    assert!(
        meta["gpu"].as_str().unwrap().contains("fusion on"),
        "{meta}"
    );
    // The autotune results went to runner's cache folder, not target/.
    let files = walk(&cache);
    assert!(
        files
            .iter()
            .any(|f| f.to_string_lossy().contains("autotune")),
        "{files:?}"
    );

    // The same checkpoint on the GPU and on the CPU: same classes, same
    // probabilities up to float rounding.
    let mut by_device = Vec::new();
    for device in ["wgpu", "cpu"] {
        let out = runner()
            .arg("eval")
            .arg(&dir)
            .args(["--device", device])
            .env("RUNNER_KERNEL_CACHE", &cache)
            .output()
            .unwrap();
        assert_exit(&out, 0);
        assert!(stdout(&out).contains(&format!("Device: {device}")));
        let p = predictions(&dir.join("eval/final/predictions.csv"));
        assert_eq!(p.len(), 32);
        by_device.push(p);
    }
    for (g, c) in by_device[0].iter().zip(&by_device[1]) {
        assert_eq!((&g.0, &g.1), (&c.0, &c.1));
        assert!((g.2 - c.2).abs() < 1e-4, "{g:?} vs {c:?}");
    }
    // The run's own report was made on the GPU: the same predictions.
    let own = predictions(&dir.join("report/predictions.csv"));
    for (o, c) in own.iter().zip(&by_device[1]) {
        assert_eq!(o.1, c.1);
        assert!((o.2 - c.2).abs() < 1e-4, "{o:?} vs {c:?}");
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// How many kernels a run compiled, from cubecl's compilation log, with
/// compiled kernels and autotune results kept in `cache`.
fn kernels_compiled(tmp: &Path, cache: &Path, name: &str, sizes: [usize; 3]) -> usize {
    let exp = tiny_experiment(tmp, name, "");
    let log = tmp.join(format!("{name}.log"));
    let out = runner_on("run", &exp, &tmp.join("runs"))
        .args(["--device", "wgpu"])
        .arg("--set")
        .arg(format!("data.train_size={}", sizes[0]))
        .arg("--set")
        .arg(format!("data.validation_size={}", sizes[1]))
        .arg("--set")
        .arg(format!("data.test_size={}", sizes[2]))
        .env("RUNNER_KERNEL_CACHE", cache)
        .env("CUBECL_DEBUG_LOG", &log)
        .output()
        .unwrap();
    assert_exit(&out, 0);
    std::fs::read_to_string(&log)
        .unwrap()
        .matches("[START_KERNEL_COMPILATION]")
        .count()
}

#[test]
fn short_last_batches_bring_no_new_kernels() {
    if !wgpu_here() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // A cache of this test's own, tuned by a first run: a run that finds no
    // autotune result compiles every candidate kernel as well, so both
    // measured runs must start from the same cache (a cache shared with the
    // other tests changes under them).
    let cache = tmp.path().join("kernels");
    let cold = kernels_compiled(tmp.path(), &cache, "warm", [96, 32, 32]);
    // Batches of 16: every split divides evenly, or none does (the last
    // training, validation and test batches are short). Once, under the
    // whole suite's load, the first warm run compiled 50 kernels and the
    // short run after it 45: warm until two runs agree.
    let mut even = kernels_compiled(tmp.path(), &cache, "even", [96, 32, 32]);
    for again in 0..3 {
        let next = kernels_compiled(tmp.path(), &cache, &format!("even{again}"), [96, 32, 32]);
        if next == even {
            break;
        }
        even = next;
    }
    let short = kernels_compiled(tmp.path(), &cache, "short", [90, 30, 27]);
    assert!(even > 10, "the log counted {even} kernels");
    assert!(
        cold >= even,
        "a cold cache compiled {cold}, a warm one {even}"
    );
    assert_eq!(
        short, even,
        "padded short batches must run the full batches' kernels"
    );
}

/// A sweep on a GPU device, two trials sharing the one GPU at once
/// (`trials_per_gpu = 2`, with no `parallel`): both run on it, and their
/// runs overlap in time.
#[test]
fn a_sweep_runs_its_trials_on_wgpu() {
    if !wgpu_here() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(
        tmp.path(),
        "gsweep",
        "[runtime]\ndevice = \"wgpu\"\n[sweep]\nstrategy = \"grid\"\nmetric = \"val_accuracy\"\ntrials_per_gpu = 2\n[sweep.grid]\n\"model.dropout\" = [0.0, 0.2]\n",
    );
    let runs = tmp.path().join("runs");
    let out = runner_on("sweep", &exp, &runs)
        .args(["--set", "train.epochs=1"])
        .env("RUNNER_KERNEL_CACHE", shared_cache())
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let sweeps = runs.join("gsweep/sweeps");
    let sweep = sweeps.join(read_latest(sweeps.join("latest")).unwrap());
    let trials: Vec<PathBuf> = std::fs::read_dir(&sweep)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("trial-")
        })
        .collect();
    assert_eq!(trials.len(), 2, "{trials:?}");
    assert!(stdout(&out).contains("2 at a time"), "{}", stdout(&out));
    let time = |meta: &serde_json::Value, key: &str| {
        let text = meta[key].as_str().unwrap_or_default().to_string();
        time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("{key} {text:?}: {e}"))
    };
    let mut spans = Vec::new();
    for t in trials {
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(t.join("meta.json")).unwrap()).unwrap();
        assert_eq!(meta["device"], "wgpu", "{}", t.display());
        assert_eq!(meta["status"], "completed", "{}", t.display());
        spans.push((time(&meta, "start_time"), time(&meta, "end_time")));
    }
    let ((s0, e0), (s1, e1)) = (spans[0], spans[1]);
    assert!(
        s0 < e1 && s1 < e0,
        "the two trials did not run at the same time: {spans:?}"
    );
}

#[test]
fn bad_gpu_settings_are_usage_errors_naming_the_variable() {
    if !cfg!(feature = "wgpu") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(tmp.path(), "badgpu", "");
    let out = runner_on("run", &exp, &tmp.path().join("runs"))
        .args(["--device", "wgpu"])
        .env("RUNNER_GPU_CONV", "winograd")
        .output()
        .unwrap();
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("RUNNER_GPU_CONV=winograd is not a valid setting; use autotune, implicit_gemm or direct"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn wgpu_without_the_feature_says_how_to_build_it() {
    if cfg!(feature = "wgpu") {
        return;
    }
    let out = runner()
        .args(["run", "experiments/quickstart.toml", "--device", "wgpu"])
        .output()
        .unwrap();
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("--features wgpu"), "{err}");
}
