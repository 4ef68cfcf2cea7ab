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
//! asha.rs       the rung rule of ASHA and Hyperband (pure)
//! promotion.rs  the rung rule of promotion-based ASHA (pure)
//! tpe.rs        the Tree-structured Parzen Estimator (pure)
//! mod.rs        trials: [sweep] expanded, each trial's config planned
//! journal.rs    journal.jsonl: every trial's state and rung decision over time
//! folder.rs     the sweep folder, sweep.json, a sweep read back (open)
//! summary.rs    summary.csv, the ranked table, the plot
//! scheduler.rs  local child processes, `parallel` at a time, asked of a Driver
//! prune.rs      early stopping of running trials: metrics read, rungs decided
//! slurm/        Slurm job arrays (one file per concern)
//! error.rs      SweepError: why a sweep operation stopped
//! hparams.rs    the TensorBoard HParams experiment and sessions
//! outcome.rs    a finished trial recorded; the sweep's end concluded
//! propose.rs    TPE's next trial: its history, proposed, written; claimed
//!               by a Slurm array task
//! local.rs      trials run on this machine
//! submit.rs     trials submitted to Slurm
//! follow.rs     --status and --cancel; a Slurm sweep followed
//! start.rs      a new sweep: trials planned, folder created, launched
//! resume.rs     --resume
//! ```

pub mod asha;
pub mod folder;
pub mod journal;
pub mod promotion;
pub mod scheduler;
pub mod slurm;
pub mod summary;
pub mod tpe;

mod error;
mod extend;
mod follow;
mod hparams;
mod local;
mod outcome;
mod propose;
mod prune;
mod resume;
mod start;
mod submit;
mod task;
mod worker;

pub use error::SweepError;
pub use follow::{cancel, status};
pub use propose::claim;
pub use prune::{journaled_pause, journaled_prune, TrialJudge};
pub use resume::resume;
pub use start::{dry_run, start, NewSweep};
pub use task::out_of_time;
pub use worker::{work, WorkerOptions};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

use crate::config::{self, ConfigError, LoadOptions, Loaded, Override};
use crate::plan::{self, all_hold, Distribution, ExperimentPlan, PlanErrors, SweepPlan};
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

/// `trial-NNN-<id>`: the folder of trial `index` in its sweep folder.
pub fn trial_folder_name(index: usize, id: &str) -> String {
    format!("trial-{index:03}-{id}")
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
        trial_folder_name(self.index, &self.id)
    }

    pub fn dir(&self, sweep_dir: &Path) -> PathBuf {
        sweep_dir.join(self.folder_name())
    }

    /// Whether the trial has ever started: its run wrote `meta.json`.
    pub fn has_run(&self, sweep_dir: &Path) -> bool {
        crate::rundir::RunDir::at_existing(&self.dir(sweep_dir))
            .meta()
            .is_file()
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
    spec.keys()
}

/// All trials of a sweep, in a fixed order. Grid: the cartesian product of
/// `[sweep.grid]` axes (sorted by key, each after the axes its `when`
/// names; the last varies fastest; an axis whose `when` does not hold is
/// left out of that trial) and the `[sweep.zip]` group as one more axis.
/// Random: `trials` draws, each axis in that order from one generator
/// seeded with the plan's seed (grid lists as uniform choices, then the
/// zip group, then the random axes); an axis whose `when` does not hold is
/// not drawn. TPE: its first `n_startup` trials, which are random draws
/// too ([`tpe_startup`]); the others depend on results. Either way at most
/// `max_trials`.
pub fn expand(spec: &SweepPlan) -> Vec<Trial> {
    let mut points: Vec<BTreeMap<String, toml::Value>> = Vec::new();
    let zip_len = spec.zip.values().map(Vec::len).min().unwrap_or(0);
    match spec.strategy {
        Strategy::Grid => {
            points.push(BTreeMap::new());
            for axis in &spec.grid {
                points = points
                    .into_iter()
                    .flat_map(|p| {
                        let values: Vec<toml::Value> = if all_hold(&axis.when, &p) {
                            axis.values.clone()
                        } else {
                            Vec::new()
                        };
                        let keep = values.is_empty().then(|| p.clone());
                        values
                            .into_iter()
                            .map(move |v| {
                                let mut q = p.clone();
                                q.insert(axis.key.clone(), v);
                                q
                            })
                            .chain(keep)
                            .collect::<Vec<_>>()
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
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..spec.trials {
                let p = fresh(&mut seen, || draw(spec, &mut rng));
                points.push(p);
            }
        }
        Strategy::Tpe => return tpe_startup(spec),
    }
    points
        .into_iter()
        .take(spec.max_trials.unwrap_or(usize::MAX))
        .enumerate()
        .map(|(index, params)| Trial {
            index,
            id: trial_id(&params),
            params,
        })
        .collect()
}

/// `1 trial`, `4 trials`: a count of trials as a sentence says it.
pub fn trials_text(n: usize) -> String {
    if n == 1 {
        "1 trial".into()
    } else {
        format!("{n} trials")
    }
}

/// Trials in all: the `planned` ones (a grid's points, the random draws),
/// or for TPE `trials` (at most `max_trials`), most of them chosen as the
/// sweep goes on.
pub fn total_trials(spec: &SweepPlan, planned: usize) -> usize {
    match spec.strategy {
        Strategy::Tpe => spec.trials.min(spec.max_trials.unwrap_or(usize::MAX)),
        _ => planned,
    }
}

/// How many times a point already in the sweep is drawn again before it is
/// kept: a small finite space (grid lists, choices) runs out of new points.
pub const REDRAWS: usize = 100;

/// The first of up to [`REDRAWS`] + 1 draws that is not in `seen` (by
/// trial id), or the last one drawn; recorded in `seen`. A random or TPE
/// sweep thus never repeats a point while new ones are left: a repeat
/// costs a whole trial and tells nothing new.
pub fn fresh(
    seen: &mut std::collections::BTreeSet<String>,
    mut draw: impl FnMut() -> BTreeMap<String, toml::Value>,
) -> BTreeMap<String, toml::Value> {
    let mut p = draw();
    for _ in 0..REDRAWS {
        if !seen.contains(&trial_id(&p)) {
            break;
        }
        p = draw();
    }
    seen.insert(trial_id(&p));
    p
}

/// One random draw of every axis that applies, in draw order: the grid
/// lists (uniform choices), the zip group, the random axes.
pub fn draw(spec: &SweepPlan, rng: &mut impl Rng) -> BTreeMap<String, toml::Value> {
    let zip_len = spec.zip.values().map(Vec::len).min().unwrap_or(0);
    let mut p = BTreeMap::new();
    for axis in &spec.grid {
        if all_hold(&axis.when, &p) {
            let v = axis.values[rng.random_range(0..axis.values.len())].clone();
            p.insert(axis.key.clone(), v);
        }
    }
    if zip_len > 0 {
        let i = rng.random_range(0..zip_len);
        for (key, values) in &spec.zip {
            p.insert(key.clone(), values[i].clone());
        }
    }
    for axis in &spec.random {
        if let Some((_, case)) = axis.case(&p) {
            let v = sample(&case.distribution, rng);
            p.insert(axis.key.clone(), v);
        }
    }
    p
}

/// The first trials of a TPE sweep, which do not depend on results: its
/// `n_startup` random draws (at most `trials` and `max_trials`), the
/// generator of trial `i` seeded with the plan's seed and `i`.
pub fn tpe_startup(spec: &SweepPlan) -> Vec<Trial> {
    let n = spec
        .tpe
        .n_startup
        .min(spec.trials)
        .min(spec.max_trials.unwrap_or(usize::MAX));
    let mut seen = std::collections::BTreeSet::new();
    (0..n)
        .map(|index| {
            let mut rng = trial_rng(spec.seed, index);
            let params = fresh(&mut seen, || draw(spec, &mut rng));
            Trial {
                index,
                id: trial_id(&params),
                params,
            }
        })
        .collect()
}

/// TPE proposals tried before a repeat is replaced by a random draw.
const TPE_TRIES: usize = 10;

/// The values of TPE trial `index` once its history decides them: proposed
/// by [`tpe::propose`] from `history` with trial `index`'s generator
/// ([`trial_rng`]). TPE proposes a point already in `seen` (by trial id)
/// when its good density has settled on it (a small finite space); after
/// `TPE_TRIES` (10) proposals the trial is a random draw instead, so, as
/// [`fresh`] does for random sweeps, no point runs twice while new ones are
/// left. The values are recorded in `seen`. The same plan, index, history
/// and `seen` give the same values: `runner sweep` and
/// examples/asha_replay.rs both call this.
pub fn tpe_next(
    spec: &SweepPlan,
    index: usize,
    history: &[tpe::Observation],
    seen: &mut std::collections::BTreeSet<String>,
) -> BTreeMap<String, toml::Value> {
    let (grid, random) = spec.draw_axes();
    let axes: Vec<_> = grid.into_iter().chain(random).collect();
    let settings = tpe::Settings::from(spec.tpe);
    let mut rng = trial_rng(spec.seed, index);
    let mut tries = 0;
    fresh(seen, || {
        tries += 1;
        if tries <= TPE_TRIES {
            tpe::propose(&axes, history, &settings, &mut rng)
        } else {
            draw(spec, &mut rng)
        }
    })
}

/// The generator of trial `index` of a TPE sweep: one per trial, so a
/// trial's draws do not depend on how many trials were proposed before it.
pub fn trial_rng(seed: u64, index: usize) -> rand_chacha::ChaCha8Rng {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index as u64 + 1);
    rng
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

/// One value drawn from `dist`.
pub fn sample(dist: &Distribution, rng: &mut impl Rng) -> toml::Value {
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
///
/// A trial that switches a table's variant (`optimizer.type = "adam"` in a
/// sweep whose file says `sgd`) drops the keys of that table the new
/// variant does not take (`momentum`), as any layer above the file does
/// ([`config::variant`]): the resolved sweep file lists the old variant's
/// defaults, which belong to it. A key the trial sets itself is never
/// dropped.
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
    let opts = LoadOptions {
        overrides,
        use_env: false,
    };
    let mut loaded = config::load_text(sweep_file, sweep_text, &opts)?;
    let mut plan = plan::plan(&loaded)?;
    loaded.spec.sweep = None;
    plan.spec.sweep = None;
    plan.sweep = None;
    Ok((loaded, plan))
}

/// Every swept key must be a key the config has, and every value it can
/// take one the key accepts: applying any value of a made-up key fails
/// with "unknown key" even when the trial's other values are fine, and a
/// range that reaches past what its key accepts (a dropout up to 1.5) fails
/// at its end. Checks each value of each list, both ends of each range
/// (each case of a conditional axis), on the base config, together with a
/// value of each axis its `when` names that makes it apply
/// (`optimizer.momentum` is checked with `optimizer.type = "sgd"`).
pub fn check_axes(sweep_file: &Path, sweep_text: &str, spec: &SweepPlan) -> Result<(), AxisError> {
    let mut firsts: Vec<(&str, String, toml::Value, Vec<plan::Condition>)> = Vec::new();
    for a in &spec.grid {
        for v in &a.values {
            firsts.push(("grid", a.key.clone(), v.clone(), a.when.clone()));
        }
    }
    for (k, vs) in &spec.zip {
        for v in vs {
            firsts.push(("zip", k.clone(), v.clone(), Vec::new()));
        }
    }
    for a in &spec.random {
        for c in &a.cases {
            let ends = match &c.distribution {
                Distribution::Uniform { low, high } | Distribution::LogUniform { low, high } => {
                    vec![toml::Value::Float(*low), toml::Value::Float(*high)]
                }
                Distribution::Int { low, high } => {
                    vec![toml::Value::Integer(*low), toml::Value::Integer(*high)]
                }
                Distribution::Choice(values) => values.clone(),
            };
            for v in ends {
                firsts.push(("random", a.key.clone(), v, c.when.clone()));
            }
        }
    }
    for (table, key, value, when) in firsts {
        let mut params = BTreeMap::new();
        let mut conditions = when;
        // Parents first, then theirs (a chain is at most as long as the
        // number of axes).
        for _ in 0..=spec.keys().len() {
            let Some(c) = conditions.pop() else { break };
            if params.contains_key(&c.key) {
                continue;
            }
            if let Some(v) = c.values.first() {
                params.insert(c.key.clone(), v.clone());
            }
            conditions.extend(parent_conditions(spec, &c.key, &params));
        }
        params.insert(key.clone(), value);
        let trial = Trial {
            index: 0,
            id: String::new(),
            params,
        };
        if let Err(error) = trial_config(sweep_file, sweep_text, &trial) {
            let table = format!("sweep.{table}");
            return Err(AxisError { table, key, error });
        }
    }
    Ok(())
}

/// A value of a sweep axis that its key refuses (see [`check_axes`]).
#[derive(Debug)]
pub struct AxisError {
    /// Where the axis is: `sweep.grid`, `sweep.zip` or `sweep.random`.
    pub table: String,
    pub key: String,
    pub error: TrialError,
}

impl AxisError {
    /// The error, with its message and help, located at the axis in the
    /// file that gives it (`sweep.grid."model.dropout"`), as `sources`
    /// (the sweep's experiment) tell.
    pub fn located(self, sources: &config::Sources) -> ConfigError {
        use miette::Diagnostic;
        let (message, help) = match &self.error {
            TrialError::Config(e) => (e.to_string(), e.help().map(|h| h.to_string())),
            TrialError::Plan(e) => {
                let all: Vec<String> = e.errors.iter().map(ToString::to_string).collect();
                (all.join("; "), None)
            }
        };
        let at = config::KeyPath::parse(&self.table).key(self.key);
        sources.error_at(at, message, help)
    }
}

/// The conditions of the axis `key` (of the case that can apply given
/// `params`, or its first).
fn parent_conditions(
    spec: &SweepPlan,
    key: &str,
    params: &BTreeMap<String, toml::Value>,
) -> Vec<plan::Condition> {
    if let Some(a) = spec.grid.iter().find(|a| a.key == key) {
        return a.when.clone();
    }
    match spec.random.iter().find(|a| a.key == key) {
        Some(a) => a
            .case(params)
            .map(|(_, c)| c)
            .or(a.cases.first())
            .map(|c| c.when.clone())
            .unwrap_or_default(),
        None => Vec::new(),
    }
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

    const CONDITIONAL: &str = r#"
strategy = "random"
trials = 300
seed = 9
[grid]
"optimizer.type" = ["sgd", "adam", "rmsprop"]
"model.dropout" = { values = [0.1, 0.2], when = { "optimizer.type" = ["sgd", "adam"] } }
[random]
"optimizer.momentum" = { distribution = "uniform", low = 0.0, high = 0.9, when = { "optimizer.type" = "sgd" } }
"optimizer.nesterov" = { distribution = "choice", values = [true, false], when = { "optimizer.type" = "sgd" } }
"train.batch_size" = { distribution = "choice", values = [8, 16], when = { "optimizer.nesterov" = true } }
"optimizer.learning_rate" = [
  { distribution = "log_uniform", low = 1e-3, high = 1e-1, when = { "optimizer.type" = "sgd" } },
  { distribution = "log_uniform", low = 1e-5, high = 1e-3, when = { "optimizer.type" = ["adam", "rmsprop"] } },
]
"#;

    /// Which keys a trial must have, from its optimizer (and nesterov).
    fn check_active(p: &BTreeMap<String, toml::Value>) {
        let ty = p["optimizer.type"].as_str().unwrap();
        let sgd = ty == "sgd";
        assert_eq!(p.contains_key("optimizer.momentum"), sgd, "{p:?}");
        assert_eq!(p.contains_key("optimizer.nesterov"), sgd, "{p:?}");
        assert_eq!(p.contains_key("model.dropout"), ty != "rmsprop", "{p:?}");
        let nesterov = p.get("optimizer.nesterov").and_then(toml::Value::as_bool);
        assert_eq!(
            p.contains_key("train.batch_size"),
            nesterov == Some(true),
            "{p:?}"
        );
        let lr = p["optimizer.learning_rate"].as_float().unwrap();
        let (lo, hi) = if sgd { (1e-3, 1e-1) } else { (1e-5, 1e-3) };
        assert!((lo..=hi).contains(&lr), "{p:?}");
    }

    /// A conditional space never produces a trial with an inactive key, and
    /// a value always comes from the case that applies; chains of
    /// conditions (batch size <- nesterov <- type) hold too.
    #[test]
    fn conditional_random_draws_have_only_active_keys() {
        let s = spec(CONDITIONAL);
        let trials = expand(&s);
        assert_eq!(trials.len(), 300);
        for t in &trials {
            check_active(&t.params);
        }
        // Every branch is reached.
        let has = |k: &str| trials.iter().filter(|t| t.params.contains_key(k)).count();
        assert!(has("optimizer.momentum") > 50 && has("train.batch_size") > 20);
        assert!(has("optimizer.momentum") < 200);
    }

    #[test]
    fn a_conditional_grid_leaves_inactive_axes_out() {
        let mut text = CONDITIONAL.replace("strategy = \"random\"", "strategy = \"grid\"");
        text.truncate(text.find("[random]").unwrap());
        let trials = show(&expand(&spec(&text)));
        assert_eq!(
            trials,
            vec![
                "model.dropout=0.1 optimizer.type=\"sgd\"",
                "model.dropout=0.2 optimizer.type=\"sgd\"",
                "model.dropout=0.1 optimizer.type=\"adam\"",
                "model.dropout=0.2 optimizer.type=\"adam\"",
                "optimizer.type=\"rmsprop\"",
            ]
        );
    }

    /// A random sweep over a finite space draws each point once while new
    /// ones are left: 6 draws of a 6-point space are the 6 points; the 7th
    /// repeats one.
    #[test]
    fn random_draws_do_not_repeat_a_point_while_new_ones_are_left() {
        let s = spec(
            "strategy = \"random\"\ntrials = 7\n[grid]\n\"a.b\" = [1, 2, 3]\n\"a.c\" = [1, 2]\n",
        );
        let t = expand(&s);
        let ids: std::collections::BTreeSet<&String> = t[..6].iter().map(|t| &t.id).collect();
        assert_eq!(ids.len(), 6);
        assert!(ids.contains(&t[6].id));
    }

    #[test]
    fn max_trials_caps_a_grid_and_random_draws() {
        let s = spec("max_trials = 4\n[grid]\n\"a.b\" = [1, 2, 3]\n\"a.c\" = [1, 2]\n");
        let t = expand(&s);
        assert_eq!(t.len(), 4);
        let all = expand(&SweepPlan {
            max_trials: None,
            ..s
        });
        assert_eq!(t[..], all[..4], "the first points of the grid");
    }

    /// TPE's first trials are random draws from a generator per trial, so
    /// the dry run shows exactly the trials the sweep starts with.
    #[test]
    fn tpe_startup_trials_are_seeded_draws() {
        let text = CONDITIONAL.replace("strategy = \"random\"", "strategy = \"tpe\"");
        let s = spec(&format!("{text}\n[tpe]\nn_startup = 5\n"));
        let a = expand(&s);
        assert_eq!(a.len(), 5);
        assert_eq!(a, expand(&s));
        for t in &a {
            check_active(&t.params);
        }
        assert_eq!(a[0].params, draw(&s, &mut trial_rng(s.seed, 0)));
    }

    /// TPE after its startup trials: the same history gives the same
    /// proposal, and a 2 x 2 space gives four different points before any
    /// repeats, though the history ranks one point far above the others
    /// (where TPE's good density keeps proposing it).
    #[test]
    fn tpe_next_is_deterministic_and_repeats_no_point_while_new_ones_are_left() {
        let s = spec(
            "strategy = \"tpe\"\ntrials = 6\n[tpe]\nn_startup = 1\n[grid]\n\"model.dropout\" = [0.1, 0.2]\n\"train.batch_size\" = [16, 32]\n",
        );
        let mut history = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        let mut ids = Vec::new();
        for index in 0..5 {
            let mut again = seen.clone();
            let p = tpe_next(&s, index, &history, &mut seen);
            assert_eq!(
                p,
                tpe_next(&s, index, &history, &mut again),
                "trial {index}"
            );
            ids.push(trial_id(&p));
            // The first point is the best by far; every later one is worse.
            let loss = if index == 0 { 0.0 } else { 10.0 + index as f64 };
            history.push(tpe::Observation {
                params: p,
                outcome: tpe::Outcome::Complete { loss },
            });
        }
        let distinct: std::collections::BTreeSet<_> = ids[..4].iter().collect();
        assert_eq!(distinct.len(), 4, "{ids:?}");
        assert!(
            ids[..4].contains(&ids[4]),
            "a fifth point repeats one: {ids:?}"
        );
        assert_eq!(seen.len(), 4);
    }

    /// A trial that switches the optimizer drops the old optimizer's keys
    /// from its config (the resolved sweep file lists sgd's `momentum`),
    /// and keeps the rest.
    #[test]
    fn a_trial_switching_a_variant_drops_the_old_variants_keys() {
        let base = r#"
[experiment]
name = "t"

[data]
source = "synthetic"
classes = 2

[model]
input_shape = [8, 8, 1]
layers = [{ type = "flatten" }, { type = "dense", units = 2, activation = "softmax" }]

[optimizer]
type = "sgd"
learning_rate = 0.05
momentum = 0.9
nesterov = true
"#;
        let trial = |ty: &str| Trial {
            index: 0,
            id: String::new(),
            params: BTreeMap::from([(
                "optimizer.type".to_string(),
                toml::Value::String(ty.into()),
            )]),
        };
        let (_, plan) = trial_config(Path::new("x.toml"), base, &trial("adam")).expect("plans");
        let text = config::to_toml(&plan.spec);
        assert!(
            !text.contains("momentum") && !text.contains("nesterov"),
            "{text}"
        );
        assert!(text.contains("learning_rate = 0.05"), "{text}");
        // Keeping the variant keeps its keys.
        let (_, plan) = trial_config(Path::new("x.toml"), base, &trial("sgd")).expect("plans");
        assert!(config::to_toml(&plan.spec).contains("momentum = 0.9"));
        // A key the trial sets itself is never dropped: a bad one is named.
        let mut t = trial("adam");
        t.params
            .insert("optimizer.momentum".into(), toml::Value::Float(0.5));
        let err = trial_config(Path::new("x.toml"), base, &t).unwrap_err();
        assert!(err.to_string().contains("momentum"), "{err}");
    }

    #[test]
    fn significant_digits() {
        assert_eq!(round_sig(0.000123456789), 0.000123457);
        assert_eq!(round_sig(123.4567891), 123.457);
    }
}
