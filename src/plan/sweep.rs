//! The sweep side of the plan: `[sweep]` checked, its ranking metric's
//! direction decided, its axes with their `when` conditions in the order
//! they are drawn, its random axes as plain distributions, its early
//! stopping, budget and launcher resolved. The sweep module reads these,
//! never the specs.

use std::collections::{BTreeMap, BTreeSet};

use super::{check_monitor, Checker, Monitor, MAX_PARALLEL, MAX_TRIALS};
use crate::config::diagnostic::did_you_mean;
use crate::config::spec::{
    DistributionSpec, EarlyStopSpec, IntRangeSpec, LauncherSpec, RangeSpec, SlurmSpec, SweepSpec,
    WhenSpec,
};
use crate::config::KeyPath;
use crate::vocab::{HalvingVariant, Strategy};

/// Most trials that share one GPU (`sweep.trials_per_gpu`).
pub const MAX_TRIALS_PER_GPU: usize = 64;
/// Largest `sweep.early_stop.reduction_factor`.
pub const MAX_REDUCTION_FACTOR: usize = 100;
/// Largest `sweep.tpe.n_candidates`.
pub const MAX_TPE_CANDIDATES: usize = 10_000;

/// A validated `[sweep]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepPlan {
    pub strategy: Strategy,
    /// The metric that ranks trials, with its direction.
    pub monitor: Monitor,
    /// Trials at once; `None` leaves it to the launcher (one per GPU, or as
    /// many as CPU cores).
    pub parallel: Option<usize>,
    /// Draws of a random or TPE sweep (at least 1 there); a grid ignores it.
    pub trials: usize,
    /// Seed of the random draws: `sweep.seed`, else the experiment's seed.
    pub seed: u64,
    /// `[sweep.grid]` axes, each after the axes its `when` names (else in
    /// key order).
    pub grid: Vec<GridAxis>,
    /// Axes that vary together (all the same length), by key path.
    pub zip: BTreeMap<String, Vec<toml::Value>>,
    /// `[sweep.random]` axes, each after the axes its cases' `when` name
    /// (else in key order).
    pub random: Vec<RandomAxis>,
    /// Start no more trials once this many have started.
    pub max_trials: Option<usize>,
    /// Start no more trials once this many hours have passed since the
    /// sweep was created.
    pub max_hours: Option<f64>,
    /// Trials sharing one GPU at once.
    pub trials_per_gpu: usize,
    /// Stop bad trials at rungs.
    pub early_stop: Option<EarlyStopPlan>,
    /// Settings of `strategy = "tpe"`.
    pub tpe: TpePlan,
    /// Where trials run.
    pub launcher: LauncherPlan,
}

/// `when = { key = value }`: holds in a trial whose value of `key` is one
/// of `values`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub key: String,
    pub values: Vec<toml::Value>,
}

impl Condition {
    /// Whether it holds for a trial's values (drawn so far).
    pub fn holds(&self, params: &BTreeMap<String, toml::Value>) -> bool {
        params
            .get(&self.key)
            .is_some_and(|v| self.values.contains(v))
    }
}

/// Whether every condition holds: an axis with none is always swept.
pub fn all_hold(when: &[Condition], params: &BTreeMap<String, toml::Value>) -> bool {
    when.iter().all(|c| c.holds(params))
}

/// A `[sweep.grid]` axis.
#[derive(Debug, Clone, PartialEq)]
pub struct GridAxis {
    pub key: String,
    pub values: Vec<toml::Value>,
    pub when: Vec<Condition>,
}

/// A `[sweep.random]` axis: its cases, of which at most one applies to a
/// trial (the plan checked that no two can).
#[derive(Debug, Clone, PartialEq)]
pub struct RandomAxis {
    pub key: String,
    pub cases: Vec<RandomCase>,
}

impl RandomAxis {
    /// The case that applies to a trial with these values, if any.
    pub fn case(&self, params: &BTreeMap<String, toml::Value>) -> Option<(usize, &RandomCase)> {
        self.cases
            .iter()
            .enumerate()
            .find(|(_, c)| all_hold(&c.when, params))
    }
}

/// One distribution of a random axis and when it applies.
#[derive(Debug, Clone, PartialEq)]
pub struct RandomCase {
    pub when: Vec<Condition>,
    pub distribution: Distribution,
}

/// `[sweep.early_stop]` resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EarlyStopPlan {
    /// Hyperband's several brackets, or ASHA's one.
    pub hyperband: bool,
    pub min_epochs: usize,
    pub reduction_factor: usize,
    /// `max_epochs`, else `train.epochs`.
    pub max_epochs: usize,
    /// Stop at a rung, or pause there for a promotion.
    pub variant: HalvingVariant,
}

/// `[sweep.tpe]` resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TpePlan {
    pub n_startup: usize,
    pub n_candidates: usize,
}

/// How a random axis is drawn.
#[derive(Debug, Clone, PartialEq)]
pub enum Distribution {
    /// Floats from `low` to `high`.
    Uniform { low: f64, high: f64 },
    /// Floats whose logarithm is uniform; `0 < low`.
    LogUniform { low: f64, high: f64 },
    /// Integers from `low` to `high`, both included.
    Int { low: i64, high: i64 },
    /// One of the values, each equally likely.
    Choice(Vec<toml::Value>),
}

/// Where a sweep's trials run.
#[derive(Debug, Clone, PartialEq)]
pub enum LauncherPlan {
    /// Child processes on this machine.
    Local,
    /// A Slurm job array.
    Slurm(SlurmPlan),
}

/// The `#SBATCH` settings of a Slurm job array.
#[derive(Debug, Clone, PartialEq)]
pub struct SlurmPlan {
    pub partition: Option<String>,
    pub time: Option<String>,
    pub cpus_per_task: Option<usize>,
    pub mem: Option<String>,
    pub gres: Option<String>,
    pub account: Option<String>,
    /// Array tasks running at once; `None` is no limit.
    pub max_parallel: Option<usize>,
    /// Seconds before the time limit at which trials get SIGUSR1.
    pub signal_seconds: u64,
    /// Extra `#SBATCH` lines, verbatim.
    pub extra: Vec<String>,
}

/// Why a `--launcher` choice cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LauncherError {
    #[error("--launcher {0}: use local or slurm")]
    Unknown(String),
}

impl SweepPlan {
    /// The plan of a `[sweep]` table, without checking it (`train_epochs`:
    /// the default `max_epochs` of early stopping).
    fn resolve(s: &SweepSpec, experiment_seed: u64, train_epochs: usize) -> SweepPlan {
        let grid = s
            .grid
            .iter()
            .map(|(k, a)| GridAxis {
                key: k.clone(),
                values: a.values.clone(),
                when: conditions(&a.when),
            })
            .collect::<Vec<_>>();
        let random = s
            .random
            .iter()
            .map(|(k, a)| RandomAxis {
                key: k.clone(),
                cases: a
                    .cases()
                    .iter()
                    .map(|c| RandomCase {
                        when: conditions(&c.when),
                        distribution: Distribution::resolve(&c.distribution),
                    })
                    .collect(),
            })
            .collect::<Vec<_>>();
        SweepPlan {
            strategy: s.strategy,
            monitor: Monitor::new(&s.metric, s.mode),
            parallel: s.parallel,
            trials: s.trials.unwrap_or(0),
            seed: s.seed.unwrap_or(experiment_seed),
            grid: dependency_order(grid, |a| a.key.as_str(), |a| a.when.iter().collect()).0,
            zip: s.zip.clone(),
            random: dependency_order(
                random,
                |a| a.key.as_str(),
                |a| a.cases.iter().flat_map(|c| &c.when).collect(),
            )
            .0,
            max_trials: s.max_trials,
            max_hours: s.max_hours,
            trials_per_gpu: s.trials_per_gpu,
            early_stop: s.early_stop.as_ref().map(|e| {
                let (hyperband, r) = match e {
                    EarlyStopSpec::Asha(r) => (false, r),
                    EarlyStopSpec::Hyperband(r) => (true, r),
                };
                EarlyStopPlan {
                    hyperband,
                    min_epochs: r.min_epochs,
                    reduction_factor: r.reduction_factor,
                    max_epochs: r.max_epochs.unwrap_or(train_epochs),
                    variant: r.variant,
                }
            }),
            tpe: {
                let t = s.tpe.clone().unwrap_or_default();
                TpePlan {
                    n_startup: t.n_startup,
                    n_candidates: t.n_candidates,
                }
            },
            launcher: match &s.launcher {
                LauncherSpec::Local(_) => LauncherPlan::Local,
                LauncherSpec::Slurm(slurm) => LauncherPlan::Slurm(SlurmPlan::resolve(slurm)),
            },
        }
    }

    /// Every swept key: grid, zip, random.
    pub fn keys(&self) -> Vec<String> {
        self.grid
            .iter()
            .map(|a| a.key.clone())
            .chain(self.zip.keys().cloned())
            .chain(self.random.iter().map(|a| a.key.clone()))
            .collect()
    }

    /// The grid lists as choices followed by the random axes, in the order
    /// a random or TPE trial draws them (the zip group, if any, is drawn
    /// between the two).
    pub fn draw_axes(&self) -> (Vec<RandomAxis>, Vec<RandomAxis>) {
        let grid = self
            .grid
            .iter()
            .map(|a| RandomAxis {
                key: a.key.clone(),
                cases: vec![RandomCase {
                    when: a.when.clone(),
                    distribution: Distribution::Choice(a.values.clone()),
                }],
            })
            .collect();
        (grid, self.random.clone())
    }

    /// Whether any axis has a `when`.
    pub fn is_conditional(&self) -> bool {
        self.grid.iter().any(|a| !a.when.is_empty())
            || self
                .random
                .iter()
                .any(|a| a.cases.iter().any(|c| !c.when.is_empty()))
    }

    /// The plan of a `[sweep]` table given as TOML, unchecked: for tests of
    /// the code below the plan.
    #[cfg(test)]
    pub(crate) fn from_toml(text: &str, experiment_seed: u64) -> SweepPlan {
        let spec: SweepSpec = toml::from_str(text).expect("a [sweep] table");
        SweepPlan::resolve(&spec, experiment_seed, 10)
    }

    /// The launcher to use: the file's, or the one `flag` (`--launcher`)
    /// names. Choosing `slurm` keeps the file's Slurm settings when it has
    /// them. On Slurm, the trials at once (`parallel`, the `--parallel`
    /// flag, else `sweep.parallel`) are the array's throttle: `parallel`
    /// over `max_parallel`, and `sweep.parallel` where `max_parallel` is
    /// not set.
    pub fn launcher_with(
        &self,
        flag: Option<&str>,
        parallel: Option<usize>,
    ) -> Result<LauncherPlan, LauncherError> {
        let slurm = |s: &SlurmPlan| {
            LauncherPlan::Slurm(SlurmPlan {
                max_parallel: parallel.or(s.max_parallel).or(self.parallel),
                ..s.clone()
            })
        };
        match (flag, &self.launcher) {
            (None | Some("slurm"), LauncherPlan::Slurm(s)) => Ok(slurm(s)),
            (None | Some("local"), _) => Ok(LauncherPlan::Local),
            (Some("slurm"), LauncherPlan::Local) => Ok(slurm(&SlurmPlan::default())),
            (Some(other), _) => Err(LauncherError::Unknown(other.to_string())),
        }
    }
}

impl LauncherPlan {
    /// `local` or `slurm`, as `sweep.json` records it.
    pub fn name(&self) -> &'static str {
        match self {
            LauncherPlan::Local => "local",
            LauncherPlan::Slurm(_) => "slurm",
        }
    }
}

/// The conditions of a `when` table; a list value is any of its values.
fn conditions(when: &WhenSpec) -> Vec<Condition> {
    when.iter()
        .map(|(k, v)| Condition {
            key: k.clone(),
            values: match v {
                toml::Value::Array(vs) => vs.clone(),
                v => vec![v.clone()],
            },
        })
        .collect()
}

/// `items` (in key order) reordered so each comes after the items of the
/// same list its conditions name, keeping key order otherwise; and the
/// keys of any circle of conditions, which stay at the end.
fn dependency_order<T>(
    items: Vec<T>,
    key: impl Fn(&T) -> &str,
    when: impl Fn(&T) -> Vec<&Condition>,
) -> (Vec<T>, Vec<String>) {
    let keys: BTreeSet<String> = items.iter().map(|i| key(i).to_string()).collect();
    let deps: Vec<BTreeSet<String>> = items
        .iter()
        .map(|i| {
            when(i)
                .into_iter()
                .map(|c| c.key.clone())
                .filter(|k| keys.contains(k))
                .collect()
        })
        .collect();
    let mut placed: BTreeSet<String> = BTreeSet::new();
    let mut order = Vec::new();
    let mut left: Vec<usize> = (0..items.len()).collect();
    while let Some(pos) = left
        .iter()
        .position(|&i| deps[i].iter().all(|d| placed.contains(d)))
    {
        let i = left.remove(pos);
        placed.insert(key(&items[i]).to_string());
        order.push(i);
    }
    let circle: Vec<String> = left.iter().map(|&i| key(&items[i]).to_string()).collect();
    order.extend(left);
    let mut slots: Vec<Option<T>> = items.into_iter().map(Some).collect();
    (
        order.into_iter().filter_map(|i| slots[i].take()).collect(),
        circle,
    )
}

impl Distribution {
    fn resolve(d: &DistributionSpec) -> Distribution {
        match d {
            DistributionSpec::Uniform(RangeSpec { low, high }) => Distribution::Uniform {
                low: *low,
                high: *high,
            },
            DistributionSpec::LogUniform(RangeSpec { low, high }) => Distribution::LogUniform {
                low: *low,
                high: *high,
            },
            DistributionSpec::Int(IntRangeSpec { low, high }) => Distribution::Int {
                low: *low,
                high: *high,
            },
            DistributionSpec::Choice(c) => Distribution::Choice(c.values.clone()),
        }
    }
}

impl SlurmPlan {
    fn resolve(s: &SlurmSpec) -> SlurmPlan {
        SlurmPlan {
            partition: s.partition.clone(),
            time: s.time.clone(),
            cpus_per_task: s.cpus_per_task,
            mem: s.mem.clone(),
            gres: s.gres.clone(),
            account: s.account.clone(),
            max_parallel: s.max_parallel,
            signal_seconds: s.signal_seconds,
            extra: s.extra.clone(),
        }
    }
}

impl Default for SlurmPlan {
    /// The settings of `type = "slurm"` with no other keys.
    fn default() -> Self {
        SlurmPlan::resolve(&SlurmSpec::default())
    }
}

/// Check `[sweep]` against the experiment's metrics and return its plan
/// (`experiment_seed` seeds random draws when `sweep.seed` is not set;
/// `train_epochs` is early stopping's default budget). The plan is only
/// used when no check failed.
pub(super) fn check_sweep(
    ck: &mut Checker,
    s: &SweepSpec,
    metrics: &[String],
    has_validation: bool,
    experiment_seed: u64,
    train_epochs: usize,
) -> SweepPlan {
    check_monitor(ck, "sweep.metric", &s.metric, metrics, has_validation);
    if s.parallel == Some(0) {
        ck.fail("sweep.parallel", "must be at least 1 when set", None);
    }
    if let Some(p) = s.parallel {
        ck.at_most(
            "sweep.parallel",
            p,
            MAX_PARALLEL,
            "one process per trial at once",
        );
    }
    if let Some(n) = s.trials {
        ck.at_most("sweep.trials", n, MAX_TRIALS, "one folder per trial");
    }
    check_budget(ck, s);
    // The grid's trials: the product of its axes' lengths, times the zip's
    // (conditions can only make it smaller).
    let grid = s
        .grid
        .values()
        .map(|a| a.values.len())
        .chain(s.zip.values().next().map(Vec::len))
        .try_fold(1usize, |acc, n| acc.checked_mul(n.max(1)))
        .unwrap_or(usize::MAX);
    if s.strategy == Strategy::Grid && grid > MAX_TRIALS {
        ck.fail(
            "sweep.grid",
            format!("the grid has {grid} trials; at most {MAX_TRIALS} (one folder per trial)"),
            None,
        );
    }
    for (key, axis) in &s.grid {
        if axis.values.is_empty() {
            ck.fail_at(
                KeyPath::parse("sweep.grid").key(key),
                "an axis needs at least one value",
                None,
            );
        }
        // A value listed twice names the same points twice: the same
        // trials trained again (a typo, more often than not).
        for (i, v) in axis.values.iter().enumerate() {
            if let Some(j) = axis.values[..i].iter().position(|w| w == v) {
                let values = KeyPath::parse("sweep.grid").key(key);
                let values = if axis.table {
                    values.key("values")
                } else {
                    values
                };
                ck.fail_at(
                    values.index(i),
                    format!(
                        "{v} is listed twice (at [{j}] and [{i}]), so its trials would train twice"
                    ),
                    Some("list each value once; to repeat a trial, sweep `experiment.seed`".into()),
                );
            }
        }
    }
    let mut zip_len = None;
    for (key, values) in &s.zip {
        match zip_len {
            None => zip_len = Some(values.len()),
            Some(n) if n != values.len() => ck.fail_at(
                KeyPath::parse("sweep.zip").key(key),
                format!("zip axes vary together and need the same length; this one has {} values, the first has {n}", values.len()),
                None,
            ),
            _ => {}
        }
        if values.is_empty() {
            ck.fail_at(
                KeyPath::parse("sweep.zip").key(key),
                "an axis needs at least one value",
                None,
            );
        }
    }
    for key in s.grid.keys() {
        if s.zip.contains_key(key) || s.random.contains_key(key) {
            ck.fail_at(
                KeyPath::parse("sweep.grid").key(key),
                "this key is swept twice",
                None,
            );
        }
    }
    for (key, axis) in &s.random {
        for (i, case) in axis.cases().iter().enumerate() {
            let mut path = KeyPath::parse("sweep.random").key(key);
            if matches!(axis, crate::config::spec::RandomAxisSpec::Cases(_)) {
                path = path.index(i);
            }
            check_distribution(ck, path, &case.distribution);
        }
    }
    check_conditions(ck, s);
    match s.strategy {
        Strategy::Grid => {
            if !s.random.is_empty() {
                ck.fail(
                    "sweep.random",
                    "distributions need `strategy = \"random\"` or `\"tpe\"`",
                    Some("set sweep.strategy = \"random\" and sweep.trials".into()),
                );
            }
            if s.grid.is_empty() && s.zip.is_empty() {
                ck.fail(
                    "sweep.grid",
                    "a grid sweep needs at least one axis in [sweep.grid] or [sweep.zip]",
                    None,
                );
            }
        }
        Strategy::Random | Strategy::Tpe => {
            let name = if s.strategy == Strategy::Tpe {
                "tpe"
            } else {
                "random"
            };
            if s.trials.unwrap_or(0) == 0 {
                ck.fail(
                    "sweep.trials",
                    format!("a {name} sweep needs `trials` >= 1"),
                    None,
                );
            }
            if s.random.is_empty() && s.grid.is_empty() && s.zip.is_empty() {
                ck.fail(
                    "sweep.random",
                    format!("a {name} sweep needs at least one axis"),
                    None,
                );
            }
        }
    }
    if s.strategy == Strategy::Tpe {
        if !s.zip.is_empty() {
            ck.fail(
                "sweep.zip",
                "TPE models each axis on its own; zip axes need `strategy = \"grid\"` or `\"random\"`",
                Some("sweep the zipped keys as separate axes, or use strategy = \"random\"".into()),
            );
        }
    } else if s.tpe.is_some() {
        ck.fail(
            "sweep.tpe",
            "[sweep.tpe] sets up `strategy = \"tpe\"`",
            Some("set sweep.strategy = \"tpe\", or remove [sweep.tpe]".into()),
        );
    }
    if let Some(t) = &s.tpe {
        ck.at_most("sweep.tpe.n_startup", t.n_startup, MAX_TRIALS, "trials");
        ck.at_most(
            "sweep.tpe.n_candidates",
            t.n_candidates,
            MAX_TPE_CANDIDATES,
            "candidates scored per value",
        );
        if t.n_startup == 0 {
            ck.fail(
                "sweep.tpe.n_startup",
                "must be at least 1: the estimator needs trials to fit",
                None,
            );
        }
        if t.n_candidates == 0 {
            ck.fail("sweep.tpe.n_candidates", "must be at least 1", None);
        }
    }
    if let Some(e) = &s.early_stop {
        let r = match e {
            EarlyStopSpec::Asha(r) | EarlyStopSpec::Hyperband(r) => r,
        };
        let max = r.max_epochs.unwrap_or(train_epochs);
        if r.min_epochs == 0 {
            ck.fail("sweep.early_stop.min_epochs", "must be at least 1", None);
        }
        if r.reduction_factor < 2 {
            ck.fail(
                "sweep.early_stop.reduction_factor",
                format!("must be at least 2 (it keeps 1/reduction_factor of the trials at each rung), found {}", r.reduction_factor),
                None,
            );
        }
        if r.min_epochs >= max {
            let which = if r.max_epochs.is_some() {
                "sweep.early_stop.max_epochs"
            } else {
                "train.epochs"
            };
            ck.fail(
                "sweep.early_stop.min_epochs",
                format!("the first rung ({} epochs) must come before the end of a trial ({which} = {max})", r.min_epochs),
                None,
            );
        }
        if r.max_epochs == Some(0) {
            ck.fail("sweep.early_stop.max_epochs", "must be at least 1", None);
        }
        if r.max_epochs.is_some_and(|m| m > train_epochs) {
            ck.fail(
                "sweep.early_stop.max_epochs",
                format!("a trial trains train.epochs = {train_epochs} epochs; rungs past that would never be reached"),
                Some("leave max_epochs out (it defaults to train.epochs), or raise train.epochs".into()),
            );
        }
        ck.at_most(
            "sweep.early_stop.reduction_factor",
            r.reduction_factor,
            MAX_REDUCTION_FACTOR,
            "a rung keeps at least one trial in that many",
        );
    }
    SweepPlan::resolve(s, experiment_seed, train_epochs)
}

fn check_budget(ck: &mut Checker, s: &SweepSpec) {
    if matches!(s.launcher, LauncherSpec::Slurm(_)) && s.trials_per_gpu != 1 {
        ck.fail(
            "sweep.trials_per_gpu",
            "packing trials onto a GPU is done by the local launcher; Slurm places each task itself",
            Some("request a share of a GPU through [sweep.launcher] gres, or sweep locally".into()),
        );
    }
    if s.max_trials == Some(0) {
        ck.fail("sweep.max_trials", "must be at least 1 when set", None);
    }
    if let Some(h) = s.max_hours {
        if !(h.is_finite() && h > 0.0) {
            ck.fail(
                "sweep.max_hours",
                format!("must be a number of hours above 0, found {h}"),
                None,
            );
        }
    }
    if s.trials_per_gpu == 0 {
        ck.fail("sweep.trials_per_gpu", "must be at least 1", None);
    }
    ck.at_most(
        "sweep.trials_per_gpu",
        s.trials_per_gpu,
        MAX_TRIALS_PER_GPU,
        "processes sharing one GPU",
    );
}

fn check_distribution(ck: &mut Checker, path: KeyPath, dist: &DistributionSpec) {
    match dist {
        DistributionSpec::Uniform(RangeSpec { low, high })
            if low.is_nan() || high.is_nan() || low >= high =>
        {
            ck.fail_at(
                path,
                format!("uniform needs low < high, found {low} and {high}"),
                None,
            )
        }
        DistributionSpec::LogUniform(RangeSpec { low, high }) if !(*low > 0.0 && low < high) => ck
            .fail_at(
                path,
                format!("log_uniform needs 0 < low < high, found {low} and {high}"),
                None,
            ),
        DistributionSpec::Int(IntRangeSpec { low, high }) if low > high => ck.fail_at(
            path,
            format!("int needs low <= high, found {low} and {high}"),
            None,
        ),
        DistributionSpec::Choice(c) if c.values.is_empty() => {
            ck.fail_at(path, "choice needs at least one value", None)
        }
        _ => {}
    }
}

/// The `when` conditions: each names an axis that can be a parent, with
/// values that axis takes; no circles; a list of cases has a `when` in
/// each, and no two cases can apply to one trial.
fn check_conditions(ck: &mut Checker, s: &SweepSpec) {
    // Parents: grid lists for everyone; random choices for random axes.
    let grid_parents: BTreeMap<&str, Vec<toml::Value>> = s
        .grid
        .iter()
        .map(|(k, a)| (k.as_str(), a.values.clone()))
        .collect();
    let choice_parents: BTreeMap<&str, Vec<toml::Value>> = s
        .random
        .iter()
        .filter_map(|(k, a)| {
            let mut values = Vec::new();
            for c in a.cases() {
                match &c.distribution {
                    DistributionSpec::Choice(ch) => values.extend(ch.values.iter().cloned()),
                    _ => return None,
                }
            }
            Some((k.as_str(), values))
        })
        .collect();
    let all_keys: Vec<&str> = s
        .grid
        .keys()
        .chain(s.zip.keys())
        .chain(s.random.keys())
        .map(String::as_str)
        .collect();
    let check_when = |ck: &mut Checker, path: KeyPath, own: &str, when: &WhenSpec, random: bool| {
        for (parent, wanted) in when {
            let at = path.clone().key("when").key(parent);
            let values = grid_parents.get(parent.as_str()).or_else(|| {
                random
                    .then(|| choice_parents.get(parent.as_str()))
                    .flatten()
            });
            let Some(values) = values else {
                let what = if !all_keys.contains(&parent.as_str()) {
                    format!("`{parent}` is not a swept key")
                } else if s.zip.contains_key(parent) {
                    format!(
                        "`{parent}` is a zip axis; `when` can name grid axes and random choices"
                    )
                } else if random {
                    format!("`{parent}` is not drawn from a list of values; `when` can name a [sweep.grid] axis or a `choice` axis of [sweep.random]")
                } else {
                    format!("`{parent}` is not a [sweep.grid] axis; a grid axis's `when` can name only other grid axes")
                };
                ck.fail_at(at, what, did_you_mean(parent, &all_keys));
                continue;
            };
            if parent == own {
                ck.fail_at(at, "an axis cannot depend on itself", None);
                continue;
            }
            let wanted = match wanted {
                toml::Value::Array(vs) => vs.clone(),
                v => vec![v.clone()],
            };
            for w in &wanted {
                if !values.contains(w) {
                    let list = values
                        .iter()
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                        .join(", ");
                    ck.fail_at(
                        at.clone(),
                        format!("{w} is not one of the values of `{parent}` ({list}): the condition could never hold"),
                        None,
                    );
                }
            }
        }
    };
    for (key, axis) in &s.grid {
        check_when(
            ck,
            KeyPath::parse("sweep.grid").key(key),
            key,
            &axis.when,
            false,
        );
    }
    for (key, axis) in &s.random {
        let base = KeyPath::parse("sweep.random").key(key);
        match axis {
            crate::config::spec::RandomAxisSpec::One(c) => check_when(ck, base, key, &c.when, true),
            crate::config::spec::RandomAxisSpec::Cases(cases) => {
                if cases.is_empty() {
                    ck.fail_at(base.clone(), "a list of cases needs at least one", None);
                }
                for (i, c) in cases.iter().enumerate() {
                    let path = base.clone().index(i);
                    if c.when.is_empty() && cases.len() > 1 {
                        ck.fail_at(
                            path.clone(),
                            "each case of a list needs a `when` saying when it applies",
                            None,
                        );
                    }
                    check_when(ck, path, key, &c.when, true);
                }
                for i in 0..cases.len() {
                    for j in i + 1..cases.len() {
                        if can_both_hold(&cases[i].when, &cases[j].when) {
                            ck.fail_at(
                                base.clone().index(j),
                                format!("this case and case {i} can apply to the same trial; their `when` conditions must exclude each other"),
                                None,
                            );
                        }
                    }
                }
            }
        }
    }
    // Circles, within the grid and within the random axes.
    let grid: Vec<(String, Vec<Condition>)> = s
        .grid
        .iter()
        .map(|(k, a)| (k.clone(), conditions(&a.when)))
        .collect();
    let random: Vec<(String, Vec<Condition>)> = s
        .random
        .iter()
        .map(|(k, a)| {
            (
                k.clone(),
                a.cases().iter().flat_map(|c| conditions(&c.when)).collect(),
            )
        })
        .collect();
    for (table, items) in [("sweep.grid", grid), ("sweep.random", random)] {
        let (_, circle) = dependency_order(items, |i| i.0.as_str(), |i| i.1.iter().collect());
        if let Some(first) = circle.first() {
            ck.fail_at(
                KeyPath::parse(table).key(first),
                format!(
                    "the `when` conditions of {} depend on each other in a circle",
                    circle
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None,
            );
        }
    }
}

/// Whether two `when` tables can both hold: unless some key they share
/// asks for values that have none in common.
fn can_both_hold(a: &WhenSpec, b: &WhenSpec) -> bool {
    let values = |v: &toml::Value| match v {
        toml::Value::Array(vs) => vs.clone(),
        v => vec![v.clone()],
    };
    !a.iter().any(|(k, va)| {
        b.get(k)
            .is_some_and(|vb| !values(va).iter().any(|x| values(vb).contains(x)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_resolves_seed_monitor_and_launcher() {
        let p = SweepPlan::from_toml("metric = \"loss\"\n[grid]\n\"a.b\" = [1, 2]\n", 7);
        assert_eq!(p.seed, 7, "the experiment seed when sweep.seed is unset");
        assert!(!p.monitor.maximize, "auto mode minimises a loss");
        assert_eq!(p.launcher, LauncherPlan::Local);
        let p = SweepPlan::from_toml(
            "seed = 3\nstrategy = \"random\"\ntrials = 2\n[random]\n\"a.b\" = { distribution = \"int\", low = 1, high = 4 }\n",
            7,
        );
        assert_eq!(p.seed, 3);
        assert_eq!(p.trials, 2);
        assert_eq!(p.random[0].key, "a.b");
        assert_eq!(
            p.random[0].cases[0].distribution,
            Distribution::Int { low: 1, high: 4 }
        );
    }

    fn cond(key: &str) -> Condition {
        Condition {
            key: key.into(),
            values: vec![toml::Value::Integer(1)],
        }
    }

    /// Each item after those its conditions name, key order otherwise; a
    /// circle is reported and kept at the end.
    #[test]
    fn dependency_order_puts_parents_first_and_finds_circles() {
        let items = vec![
            ("a", vec![cond("c")]),
            ("b", vec![]),
            ("c", vec![cond("b")]),
            ("d", vec![]),
        ];
        let (order, circle) = dependency_order(items, |i| i.0, |i| i.1.iter().collect());
        let keys: Vec<&str> = order.iter().map(|i| i.0).collect();
        assert_eq!(keys, ["b", "c", "a", "d"]);
        assert!(circle.is_empty());
        let items = vec![
            ("a", vec![cond("b")]),
            ("b", vec![cond("a")]),
            ("c", vec![]),
        ];
        let (order, circle) = dependency_order(items, |i| i.0, |i| i.1.iter().collect());
        assert_eq!(circle, ["a", "b"]);
        assert_eq!(order.len(), 3);
        // Without conditions the order is the key order, so the draws of
        // sweeps written before conditions existed are unchanged.
        let items = vec![("x", vec![]), ("y", vec![]), ("z", vec![])];
        let (order, _) = dependency_order(
            items,
            |i| i.0,
            |i: &(&str, Vec<Condition>)| i.1.iter().collect(),
        );
        assert_eq!(
            order.iter().map(|i| i.0).collect::<Vec<_>>(),
            ["x", "y", "z"]
        );
    }

    #[test]
    fn cases_exclude_each_other_only_on_disjoint_values() {
        let when = |text: &str| -> WhenSpec { toml::from_str(text).expect("a table") };
        assert!(!can_both_hold(&when("t = \"sgd\""), &when("t = \"adam\"")));
        assert!(can_both_hold(
            &when("t = [\"sgd\", \"adam\"]"),
            &when("t = \"adam\"")
        ));
        // Different keys can both hold.
        assert!(can_both_hold(&when("t = \"sgd\""), &when("u = 1")));
        assert!(!can_both_hold(&when("t = \"sgd\"\nu = 1"), &when("u = 2")));
    }

    #[test]
    fn the_launcher_flag_overrides_the_file() {
        let local = SweepPlan::from_toml("[grid]\n\"a.b\" = [1]\n", 1);
        assert_eq!(
            local.launcher_with(None, None).ok(),
            Some(LauncherPlan::Local)
        );
        assert_eq!(
            local.launcher_with(Some("slurm"), None).ok(),
            Some(LauncherPlan::Slurm(SlurmPlan::default()))
        );
        assert_eq!(SlurmPlan::default().signal_seconds, 120);
        let slurm = SweepPlan::from_toml(
            "[grid]\n\"a.b\" = [1]\n[launcher]\ntype = \"slurm\"\npartition = \"gpu\"\n",
            1,
        );
        let LauncherPlan::Slurm(s) = slurm.launcher_with(Some("slurm"), None).unwrap() else {
            panic!("slurm");
        };
        assert_eq!(
            s.partition.as_deref(),
            Some("gpu"),
            "the file's settings stay"
        );
        assert_eq!(
            slurm.launcher_with(Some("local"), Some(3)).ok(),
            Some(LauncherPlan::Local)
        );
        assert_eq!(
            slurm
                .launcher_with(Some("pbs"), None)
                .unwrap_err()
                .to_string(),
            "--launcher pbs: use local or slurm"
        );
    }

    #[test]
    fn trials_at_once_throttle_a_slurm_array() {
        let throttle = |sweep: &str, flag: Option<usize>| {
            let plan = SweepPlan::from_toml(&format!("{sweep}[grid]\n\"a.b\" = [1]\n"), 1);
            match plan.launcher_with(Some("slurm"), flag).unwrap() {
                LauncherPlan::Slurm(s) => s.max_parallel,
                LauncherPlan::Local => panic!("slurm"),
            }
        };
        let launcher = "launcher = { type = \"slurm\", max_parallel = 4 }\n";
        assert_eq!(throttle("", None), None);
        assert_eq!(throttle("parallel = 2\n", None), Some(2));
        assert_eq!(throttle(launcher, None), Some(4));
        // The file's max_parallel over sweep.parallel; --parallel over both.
        assert_eq!(
            throttle(&format!("parallel = 2\n{launcher}"), None),
            Some(4)
        );
        assert_eq!(
            throttle(&format!("parallel = 2\n{launcher}"), Some(3)),
            Some(3)
        );
        assert_eq!(throttle("", Some(3)), Some(3));
    }
}
