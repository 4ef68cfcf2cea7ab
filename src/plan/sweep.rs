//! The sweep side of the plan: `[sweep]` checked, its ranking metric's
//! direction decided, its random axes as plain distributions and its
//! launcher resolved. The sweep module reads these, never the specs.

use std::collections::BTreeMap;

use super::{check_monitor, Checker, Monitor, MAX_PARALLEL, MAX_TRIALS};
use crate::config::spec::{
    DistributionSpec, IntRangeSpec, LauncherSpec, RangeSpec, SlurmSpec, SweepSpec,
};
use crate::config::KeyPath;
use crate::vocab::Strategy;

/// A validated `[sweep]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepPlan {
    pub strategy: Strategy,
    /// The metric that ranks trials, with its direction.
    pub monitor: Monitor,
    /// Trials at once; `None` leaves it to the launcher (one per GPU, or as
    /// many as CPU cores).
    pub parallel: Option<usize>,
    /// Draws of a random sweep (at least 1 there); a grid ignores it.
    pub trials: usize,
    /// Seed of the random draws: `sweep.seed`, else the experiment's seed.
    pub seed: u64,
    /// Axes combined as a cartesian product, by key path.
    pub grid: BTreeMap<String, Vec<toml::Value>>,
    /// Axes that vary together (all the same length), by key path.
    pub zip: BTreeMap<String, Vec<toml::Value>>,
    /// Axes drawn from distributions, by key path.
    pub random: BTreeMap<String, Distribution>,
    /// Where trials run.
    pub launcher: LauncherPlan,
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
    /// The plan of a `[sweep]` table, without checking it.
    fn resolve(s: &SweepSpec, experiment_seed: u64) -> SweepPlan {
        SweepPlan {
            strategy: s.strategy,
            monitor: Monitor::new(&s.metric, s.mode),
            parallel: s.parallel,
            trials: s.trials.unwrap_or(0),
            seed: s.seed.unwrap_or(experiment_seed),
            grid: s.grid.clone(),
            zip: s.zip.clone(),
            random: s
                .random
                .iter()
                .map(|(k, d)| (k.clone(), Distribution::resolve(d)))
                .collect(),
            launcher: match &s.launcher {
                LauncherSpec::Local(_) => LauncherPlan::Local,
                LauncherSpec::Slurm(slurm) => LauncherPlan::Slurm(SlurmPlan::resolve(slurm)),
            },
        }
    }

    /// The plan of a `[sweep]` table given as TOML, unchecked: for tests of
    /// the code below the plan.
    #[cfg(test)]
    pub(crate) fn from_toml(text: &str, experiment_seed: u64) -> SweepPlan {
        let spec: SweepSpec = toml::from_str(text).expect("a [sweep] table");
        SweepPlan::resolve(&spec, experiment_seed)
    }

    /// The launcher to use: the file's, or the one `flag` (`--launcher`)
    /// names. Choosing `slurm` keeps the file's Slurm settings when it has
    /// them.
    pub fn launcher_with(&self, flag: Option<&str>) -> Result<LauncherPlan, LauncherError> {
        match flag {
            None => Ok(self.launcher.clone()),
            Some("local") => Ok(LauncherPlan::Local),
            Some("slurm") => Ok(match &self.launcher {
                LauncherPlan::Slurm(s) => LauncherPlan::Slurm(s.clone()),
                LauncherPlan::Local => LauncherPlan::Slurm(SlurmPlan::default()),
            }),
            Some(other) => Err(LauncherError::Unknown(other.to_string())),
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
/// (`experiment_seed` seeds random draws when `sweep.seed` is not set). The
/// plan is only used when no check failed.
pub(super) fn check_sweep(
    ck: &mut Checker,
    s: &SweepSpec,
    metrics: &[String],
    has_validation: bool,
    experiment_seed: u64,
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
    // The grid's trials: the product of its axes' lengths, times the zip's.
    let grid = s
        .grid
        .values()
        .map(Vec::len)
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
    for (key, values) in &s.grid {
        if values.is_empty() {
            ck.fail_at(
                KeyPath::parse("sweep.grid").key(key),
                "an axis needs at least one value",
                None,
            );
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
    for (key, dist) in &s.random {
        let path = KeyPath::parse("sweep.random").key(key);
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
            DistributionSpec::LogUniform(RangeSpec { low, high })
                if !(*low > 0.0 && low < high) =>
            {
                ck.fail_at(
                    path,
                    format!("log_uniform needs 0 < low < high, found {low} and {high}"),
                    None,
                )
            }
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
    match s.strategy {
        Strategy::Grid => {
            if !s.random.is_empty() {
                ck.fail(
                    "sweep.random",
                    "distributions need `strategy = \"random\"`",
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
        Strategy::Random => {
            if s.trials.unwrap_or(0) == 0 {
                ck.fail("sweep.trials", "a random sweep needs `trials` >= 1", None);
            }
            if s.random.is_empty() && s.grid.is_empty() && s.zip.is_empty() {
                ck.fail(
                    "sweep.random",
                    "a random sweep needs at least one axis",
                    None,
                );
            }
        }
    }
    SweepPlan::resolve(s, experiment_seed)
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
        assert_eq!(p.random["a.b"], Distribution::Int { low: 1, high: 4 });
    }

    #[test]
    fn the_launcher_flag_overrides_the_file() {
        let local = SweepPlan::from_toml("[grid]\n\"a.b\" = [1]\n", 1);
        assert_eq!(local.launcher_with(None).ok(), Some(LauncherPlan::Local));
        assert_eq!(
            local.launcher_with(Some("slurm")).ok(),
            Some(LauncherPlan::Slurm(SlurmPlan::default()))
        );
        assert_eq!(SlurmPlan::default().signal_seconds, 120);
        let slurm = SweepPlan::from_toml(
            "[grid]\n\"a.b\" = [1]\n[launcher]\ntype = \"slurm\"\npartition = \"gpu\"\n",
            1,
        );
        let LauncherPlan::Slurm(s) = slurm.launcher_with(Some("slurm")).unwrap() else {
            panic!("slurm");
        };
        assert_eq!(
            s.partition.as_deref(),
            Some("gpu"),
            "the file's settings stay"
        );
        assert_eq!(
            slurm.launcher_with(Some("local")).ok(),
            Some(LauncherPlan::Local)
        );
        assert_eq!(
            slurm.launcher_with(Some("pbs")).unwrap_err().to_string(),
            "--launcher pbs: use local or slurm"
        );
    }
}
