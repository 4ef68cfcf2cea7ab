//! Sweeps: expand `[sweep]` into trials, validate every trial config before
//! anything runs, and keep the sweep's state in its folder so it can be
//! followed, resumed and summarised from any shell.
//!
//! A trial is a `runner run --trial DIR` child process (locally, or as a
//! Slurm array task): a crash or a leaked global in one trial cannot touch
//! another, and the same trial runs identically everywhere.
//!
//! One file per concern, each using only those listed before it:
//!
//! ```text
//! mod.rs        trials: [sweep] expanded, each trial's config planned
//! journal.rs    journal.jsonl: every trial's state over time
//! folder.rs     the sweep folder, sweep.json, a sweep read back (open)
//! summary.rs    summary.csv, the ranked table, the plot
//! scheduler.rs  local child processes, `parallel` at a time
//! slurm/        Slurm job arrays (one file per concern)
//! error.rs      SweepError: why a sweep operation stopped
//! hparams.rs    the TensorBoard HParams experiment and sessions
//! outcome.rs    a finished trial recorded; the sweep's end concluded
//! local.rs      trials run on this machine
//! submit.rs     trials submitted to Slurm
//! follow.rs     --status and --cancel; a Slurm sweep followed
//! start.rs      a new sweep: trials planned, folder created, launched
//! resume.rs     --resume
//! ```

pub mod folder;
pub mod journal;
pub mod scheduler;
pub mod slurm;
pub mod summary;

mod error;
mod follow;
mod hparams;
mod local;
mod outcome;
mod resume;
mod start;
mod submit;

pub use error::SweepError;
pub use follow::{cancel, status};
pub use resume::resume;
pub use start::{dry_run, start, NewSweep};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

use crate::config::{self, ConfigError, LoadOptions, Loaded, Override};
use crate::plan::{self, Distribution, ExperimentPlan, PlanErrors, SweepPlan};
use crate::vocab::Strategy;

/// How `runner sweep` runs and follows trials: its flags.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// Trials at once on this machine, over `sweep.parallel`.
    pub parallel: Option<usize>,
    /// Start no more local trials once one failed.
    pub fail_fast: bool,
    /// `--launcher`: `local` or `slurm` instead of the file's launcher.
    pub launcher: Option<String>,
    /// On resume, run failed trials again.
    pub retry_failed: bool,
    /// Follow a Slurm sweep until no trial is pending or running.
    pub wait: bool,
    /// Seconds between Slurm polls.
    pub poll_seconds: f64,
}

/// One point of the sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    /// Position in the sweep, from 0; never renumbered.
    pub index: usize,
    /// Short hash of the trial's parameters.
    pub id: String,
    /// Swept key path -> value.
    pub params: BTreeMap<String, toml::Value>,
}

impl Trial {
    /// `trial-007-3f9a1c`: short, safe, stable; values live in files.
    pub fn folder_name(&self) -> String {
        format!("trial-{:03}-{}", self.index, self.id)
    }

    pub fn dir(&self, sweep_dir: &Path) -> PathBuf {
        sweep_dir.join(self.folder_name())
    }

    /// `key=value` for each swept key, two spaces apart.
    pub fn params_text(&self) -> String {
        self.params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("  ")
    }
}

/// Hash of the parameters: the same values give the same id on every run.
pub fn trial_id(params: &BTreeMap<String, toml::Value>) -> String {
    let mut h = Sha256::new();
    for (k, v) in params {
        h.update(k.as_bytes());
        h.update(b"=");
        h.update(v.to_string().as_bytes());
        h.update(b"\n");
    }
    h.finalize()
        .iter()
        .take(3)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The names of all swept keys, in the order trials list them.
pub fn axis_names(spec: &SweepPlan) -> Vec<String> {
    spec.grid
        .keys()
        .chain(spec.zip.keys())
        .chain(spec.random.keys())
        .cloned()
        .collect()
}

/// All trials of a sweep, in a fixed order. Grid: the cartesian product of
/// `[sweep.grid]` axes (sorted by key; the last varies fastest) and the
/// `[sweep.zip]` group as one more axis. Random: `trials` draws, each axis
/// in key order from one generator seeded with the plan's seed; grid lists
/// are uniform choices.
pub fn expand(spec: &SweepPlan) -> Vec<Trial> {
    let mut points: Vec<BTreeMap<String, toml::Value>> = Vec::new();
    let zip_len = spec.zip.values().map(Vec::len).min().unwrap_or(0);
    match spec.strategy {
        Strategy::Grid => {
            points.push(BTreeMap::new());
            for (key, values) in &spec.grid {
                points = points
                    .into_iter()
                    .flat_map(|p| {
                        values.iter().map(move |v| {
                            let mut q = p.clone();
                            q.insert(key.clone(), v.clone());
                            q
                        })
                    })
                    .collect();
            }
            if !spec.zip.is_empty() {
                points = points
                    .into_iter()
                    .flat_map(|p| {
                        (0..zip_len).map(move |i| {
                            let mut q = p.clone();
                            for (key, values) in &spec.zip {
                                q.insert(key.clone(), values[i].clone());
                            }
                            q
                        })
                    })
                    .collect();
            }
        }
        Strategy::Random => {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(spec.seed);
            for _ in 0..spec.trials {
                let mut p = BTreeMap::new();
                for (key, values) in &spec.grid {
                    p.insert(
                        key.clone(),
                        values[rng.random_range(0..values.len())].clone(),
                    );
                }
                if zip_len > 0 {
                    let i = rng.random_range(0..zip_len);
                    for (key, values) in &spec.zip {
                        p.insert(key.clone(), values[i].clone());
                    }
                }
                for (key, dist) in &spec.random {
                    p.insert(key.clone(), sample(dist, &mut rng));
                }
                points.push(p);
            }
        }
    }
    points
        .into_iter()
        .enumerate()
        .map(|(index, params)| Trial {
            index,
            id: trial_id(&params),
            params,
        })
        .collect()
}

/// Round a drawn float to 6 significant digits, so configs and tables stay
/// readable; the value used is exactly the one written.
fn round_sig(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let digits = 6 - v.abs().log10().ceil() as i32;
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

fn sample(dist: &Distribution, rng: &mut impl Rng) -> toml::Value {
    match dist {
        Distribution::Uniform { low, high } => {
            toml::Value::Float(round_sig(rng.random_range(*low..*high)))
        }
        Distribution::LogUniform { low, high } => {
            toml::Value::Float(round_sig(rng.random_range(low.ln()..high.ln()).exp()))
        }
        Distribution::Int { low, high } => toml::Value::Integer(rng.random_range(*low..=*high)),
        Distribution::Choice(values) => values[rng.random_range(0..values.len())].clone(),
    }
}

/// The file a sweep keeps its resolved experiment (with `[sweep]`) in.
pub const SWEEP_FILE: &str = "sweep.toml";

/// A trial's config inside its folder.
pub const TRIAL_CONFIG: &str = "trial.toml";

/// Why a trial config is not valid.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum TrialError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Plan(#[from] PlanErrors),
}

/// A trial's full config: the sweep's resolved config (`sweep_text`, named
/// `sweep_file` in diagnostics) with the trial's values applied as overrides
/// (so a bad axis key or value is reported like a bad `--set`, naming the
/// axis), without the `[sweep]` table.
pub fn trial_config(
    sweep_file: &Path,
    sweep_text: &str,
    trial: &Trial,
) -> Result<(Loaded, ExperimentPlan), TrialError> {
    let overrides = trial
        .params
        .iter()
        .map(|(k, v)| Override::axis(k, v))
        .collect::<Result<Vec<_>, _>>()?;
    let mut loaded = config::load_text(
        sweep_file,
        sweep_text,
        &LoadOptions {
            overrides,
            use_env: false,
        },
    )?;
    let mut plan = plan::plan(&loaded)?;
    loaded.spec.sweep = None;
    plan.spec.sweep = None;
    plan.sweep = None;
    Ok((loaded, plan))
}

/// Every swept key must be a key the config has: applying any value of a
/// made-up key fails with "unknown key" even when the trial's other values
/// are fine. Checks each axis with its first value on the base config.
pub fn check_axes(sweep_file: &Path, sweep_text: &str, spec: &SweepPlan) -> Result<(), TrialError> {
    let firsts = spec
        .grid
        .iter()
        .chain(&spec.zip)
        .filter_map(|(k, v)| v.first().map(|v| (k.clone(), v.clone())))
        .chain(spec.random.iter().map(|(k, d)| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
            (k.clone(), sample(d, &mut rng))
        }));
    for (key, value) in firsts {
        let trial = Trial {
            index: 0,
            id: String::new(),
            params: BTreeMap::from([(key, value)]),
        };
        trial_config(sweep_file, sweep_text, &trial)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> SweepPlan {
        SweepPlan::from_toml(text, 1)
    }

    fn show(trials: &[Trial]) -> Vec<String> {
        trials
            .iter()
            .map(|t| {
                t.params
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }

    #[test]
    fn grid_is_a_cartesian_product_with_the_last_axis_fastest() {
        let s = spec("[grid]\n\"model.dropout\" = [0.1, 0.2]\n\"optimizer.learning_rate\" = [1e-4, 3e-4, 1e-3]\n");
        let t = expand(&s);
        assert_eq!(t.len(), 6);
        assert_eq!(t[0].params["model.dropout"].as_float(), Some(0.1));
        assert_eq!(
            t[1].params["optimizer.learning_rate"].as_float(),
            Some(3e-4)
        );
        assert_eq!(t[3].params["model.dropout"].as_float(), Some(0.2));
        let ids: std::collections::BTreeSet<_> = t.iter().map(|t| t.id.clone()).collect();
        assert_eq!(ids.len(), 6, "ids are distinct");
        let other_seed = SweepPlan {
            seed: 99,
            ..s.clone()
        };
        assert_eq!(expand(&other_seed), t, "a grid does not depend on the seed");
    }

    #[test]
    fn zip_axes_vary_together() {
        let s = spec("[grid]\n\"train.epochs\" = [1, 2]\n[zip]\n\"optimizer.learning_rate\" = [0.1, 0.01]\n\"train.batch_size\" = [64, 32]\n");
        let t = show(&expand(&s));
        assert_eq!(
            t,
            vec![
                "optimizer.learning_rate=0.1 train.batch_size=64 train.epochs=1",
                "optimizer.learning_rate=0.01 train.batch_size=32 train.epochs=1",
                "optimizer.learning_rate=0.1 train.batch_size=64 train.epochs=2",
                "optimizer.learning_rate=0.01 train.batch_size=32 train.epochs=2",
            ]
        );
    }

    #[test]
    fn random_draws_are_seeded_and_in_range() {
        const SWEEP: &str = "strategy = \"random\"\ntrials = 20\nseed = 5\n[random]\n\"optimizer.learning_rate\" = { distribution = \"log_uniform\", low = 1e-5, high = 1e-2 }\n\"model.dropout\" = { distribution = \"uniform\", low = 0.0, high = 0.5 }\n\"train.batch_size\" = { distribution = \"choice\", values = [16, 32] }\n\"train.epochs\" = { distribution = \"int\", low = 1, high = 3 }\n";
        let s = spec(SWEEP);
        let a = expand(&s);
        assert_eq!(
            a,
            expand(&SweepPlan::from_toml(SWEEP, 2)),
            "the sweep seed wins over the experiment seed"
        );
        assert_eq!(a.len(), 20);
        for t in &a {
            let lr = t.params["optimizer.learning_rate"].as_float().unwrap();
            assert!((1e-5..=1e-2).contains(&lr));
            let d = t.params["model.dropout"].as_float().unwrap();
            assert!((0.0..=0.5).contains(&d));
            assert!(matches!(
                t.params["train.batch_size"].as_integer(),
                Some(16 | 32)
            ));
            assert!((1..=3).contains(&t.params["train.epochs"].as_integer().unwrap()));
        }
        let mut other = s.clone();
        other.seed = 6;
        assert_ne!(expand(&other), a);
    }

    #[test]
    fn trial_ids_depend_only_on_values() {
        let p = BTreeMap::from([("a.b".to_string(), toml::Value::Float(0.1))]);
        assert_eq!(trial_id(&p), trial_id(&p.clone()));
        assert_eq!(trial_id(&p).len(), 6);
        let q = BTreeMap::from([("a.b".to_string(), toml::Value::Float(0.2))]);
        assert_ne!(trial_id(&p), trial_id(&q));
        let t = Trial {
            index: 7,
            id: trial_id(&p),
            params: p,
        };
        assert!(t.folder_name().starts_with("trial-007-"));
    }

    #[test]
    fn significant_digits() {
        assert_eq!(round_sig(0.000123456789), 0.000123457);
        assert_eq!(round_sig(123.4567891), 123.457);
    }
}
