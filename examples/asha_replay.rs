//! Replays `[sweep.early_stop]` settings on recorded learning curves.
//!
//! `make bench-sweep` trains the 27-point grid of bench/sweep/ on several
//! seeds and writes every trial's validation curve to
//! `bench/results/<stamp>-sweep.csv`. Training is deterministic for a seed,
//! so a random search over the same points trains the same curves; what an
//! early-stopping setting changes is only *which epochs get trained*. This
//! example replays a random search with early stopping on those curves: the
//! trials start in a random order, `--parallel` at a time, each epoch takes
//! the trial's measured `epoch_seconds` (1 for every trial when the file has
//! no such column), and every rung decision is made by runner's own
//! [`Asha`] (src/sweep/asha.rs), the code `runner sweep` runs. For each
//! setting it reports, over seeds x orders, how often a search gets within
//! `--within` points of the grid's best with at most `--budget` of the
//! grid's epochs.
//!
//! ```text
//! cargo run --example asha_replay -- bench/results/2026-12-05-0816-sweep.csv \
//!     bench/results/2026-12-05-0925-sweep.csv --setting asha:1:3 --setting asha:3:2
//! ```
//!
//! `--tpe FILE` replays TPE searches instead: the `[sweep]` of FILE
//! (bench/sweep/tpe-asha.toml) proposes every trial with runner's own code,
//! its startup draws and then [`tpe_next`], when a trial starts, from what
//! the search has seen by then (finished trials by their best value, pruned
//! ones at their rung, running ones pending), as `runner sweep` does. Each
//! search has its own `[sweep] seed`; `--orders` is the number of searches
//! per instance.
//!
//! `--promotion` replays the random orders with promotion-based ASHA
//! instead ([`Promotions`], src/sweep/promotion.rs): trials pause at each
//! rung and a free worker resumes the best promotable one before it starts
//! a new trial.
//!
//! `--check STRATEGY=SETTING` replays, instead of random orders, the trial
//! order that the file's `STRATEGY` sweeps really had (with `--tpe`: the
//! TPE search with the instance's seed, as bench-sweep runs it), and prints
//! the epochs and best value the replay gives next to the recorded ones
//! (with `--tpe`, also how many leading trials have the recorded point, and
//! the recorded epochs too): how far the timing model can be trusted.
//!
//! What a replay leaves out: the scheduler's polling delay (a decision is
//! made the moment an epoch ends, and a pruned trial counts as pruned from
//! then on), the partial epoch a pruned trial had begun, and the way epoch
//! times vary within a trial (each epoch takes the trial's mean). A TPE
//! search feels these too: a trial that ends at a slightly different
//! moment changes what the next proposal sees, and the searches part from
//! there.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::error::Error;
use std::path::{Path, PathBuf};

use clap::Parser;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use runner::config::{self, LoadOptions};
use runner::plan::{self, SweepPlan};
use runner::sweep::asha::{Asha, Decision, EarlyStop, EarlyStopKind};
use runner::sweep::promotion::{Next, Promotions};
use runner::sweep::tpe::{Observation, Outcome as TpeOutcome};
use runner::sweep::{tpe_next, tpe_startup, trial_id};
use runner::vocab::Strategy;

#[derive(Parser, Debug)]
#[command(about = "Replay early-stopping settings on the learning curves of bench-sweep grids")]
struct Args {
    /// CSV files written by bench/sweep.py (`<stamp>-sweep.csv`); their
    /// `grid` rows are the curves.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// A setting, `asha:MIN_EPOCHS:ETA`, `hyperband:MIN_EPOCHS:ETA` or
    /// `none` (no early stopping) (repeatable); without one, a fixed list
    /// of ASHA and Hyperband settings.
    #[arg(long = "setting")]
    settings: Vec<String>,
    /// Only these seeds (comma-separated); all seeds with a grid by default.
    #[arg(long, value_delimiter = ',')]
    seeds: Vec<u64>,
    /// Random trial orders per seed.
    #[arg(long, default_value_t = 200)]
    orders: usize,
    /// Trials at a time (`[sweep] parallel` of the bench: 2).
    #[arg(long, default_value_t = 2)]
    parallel: usize,
    /// The target's epoch budget, as a fraction of the grid's epochs.
    #[arg(long, default_value_t = 0.40)]
    budget: f64,
    /// The target's distance to the grid's best, in points.
    #[arg(long, default_value_t = 1.0)]
    within: f64,
    /// Seed of the random orders.
    #[arg(long, default_value_t = 1)]
    rng_seed: u64,
    /// `STRATEGY=SETTING`: replay the recorded order of the file's STRATEGY
    /// sweeps with SETTING and compare with what they recorded (repeatable).
    /// With `--tpe`, the STRATEGY sweeps are replayed as TPE searches with
    /// the instance's seed, as bench-sweep runs them, and their trials are
    /// compared with the recorded ones.
    #[arg(long)]
    check: Vec<String>,
    /// Trials per search (a random order's first N points; TPE's
    /// `trials`); all the grid's points, or the file's `trials`, by
    /// default.
    #[arg(long)]
    trials: Option<usize>,
    /// `MIN_EPOCHS:ETA`: instead of replaying searches, run synchronous
    /// successive halving on each seed's grid (repeatable): all points
    /// start, and at each rung (MIN_EPOCHS x ETA^k below the full budget)
    /// every point still running is ranked against all the others there,
    /// the best max(1, floor(n / ETA)) going on (ties with the last of
    /// them too), as runner's rule would rank a complete rung. No order is
    /// involved: one result per seed. Runner does not run this; it is the
    /// limit that the ASHA paper's promotion-based variant approaches.
    #[arg(long, value_name = "MIN_EPOCHS:ETA")]
    halving: Vec<String>,
    /// Replay TPE searches instead of random orders: the `[sweep]` of this
    /// experiment file (bench/sweep/tpe-asha.toml) proposes the trials, its
    /// `early_stop` replaced by each setting; `--orders` searches per seed,
    /// with `[sweep] seed` = `--rng-seed`, `--rng-seed` + 1, ...
    #[arg(long, value_name = "FILE")]
    tpe: Option<PathBuf>,
    /// Replay random orders (and `--check`'s recorded orders) with
    /// promotion-based ASHA (trials pause at rungs and are promoted)
    /// instead of the stopping variant.
    #[arg(long)]
    promotion: bool,
}

/// One trial's recorded curve.
#[derive(Debug, Clone)]
struct Curve {
    id: String,
    values: Vec<f64>,
    epoch_seconds: f64,
}

/// One recorded sweep trial (for `--check`).
#[derive(Debug, Clone)]
struct Recorded {
    trial: usize,
    id: String,
    epochs: usize,
    best: f64,
}

/// What one replay gives.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    epochs: usize,
    best: f64,
}

fn parse_setting(text: &str, max_epochs: usize) -> Result<EarlyStop, String> {
    if text == "none" {
        // No rung lies below max_epochs: nothing is ever pruned.
        return Ok(EarlyStop {
            kind: EarlyStopKind::Asha,
            min_epochs: max_epochs,
            reduction_factor: 2,
            max_epochs,
        });
    }
    let parts: Vec<&str> = text.split(':').collect();
    let [kind, min, eta] = parts[..] else {
        return Err(format!("setting `{text}`: expected KIND:MIN_EPOCHS:ETA"));
    };
    let kind = match kind {
        "asha" => EarlyStopKind::Asha,
        "hyperband" => EarlyStopKind::Hyperband,
        other => return Err(format!("setting `{text}`: unknown kind `{other}`")),
    };
    let number = |s: &str| {
        s.parse::<usize>()
            .map_err(|e| format!("setting `{text}`: `{s}`: {e}"))
    };
    let plan = EarlyStop {
        kind,
        min_epochs: number(min)?,
        reduction_factor: number(eta)?,
        max_epochs,
    };
    if plan.min_epochs < 1 || plan.reduction_factor < 2 || plan.min_epochs >= max_epochs {
        return Err(format!(
            "setting `{text}`: needs MIN_EPOCHS >= 1, below the {max_epochs} epochs, and ETA >= 2"
        ));
    }
    Ok(plan)
}

fn describe(plan: &EarlyStop) -> String {
    if plan.brackets() == 1 && plan.rungs(0).is_empty() {
        return "none (no early stopping)".to_string();
    }
    let kind = match plan.kind {
        EarlyStopKind::Asha => "asha",
        EarlyStopKind::Hyperband => "hyperband",
    };
    let rungs: Vec<String> = (0..plan.brackets())
        .map(|b| {
            let r: Vec<String> = plan.rungs(b).iter().map(|e| e.to_string()).collect();
            if r.is_empty() {
                "none".to_string()
            } else {
                r.join(",")
            }
        })
        .collect();
    format!(
        "{kind}:{}:{} (rungs {})",
        plan.min_epochs,
        plan.reduction_factor,
        rungs.join(" / ")
    )
}

/// A pending epoch end, ordered by time, then by when it was scheduled.
#[derive(Debug, PartialEq)]
struct EpochEnd {
    time: f64,
    seq: usize,
    slot: usize,
}

impl Eq for EpochEnd {}

impl PartialOrd for EpochEnd {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for EpochEnd {
    fn cmp(&self, other: &Self) -> Ordering {
        self.time
            .total_cmp(&other.time)
            .then(self.seq.cmp(&other.seq))
    }
}

/// Pending epoch ends, earliest first.
#[derive(Debug, Default)]
struct Events {
    heap: BinaryHeap<Reverse<EpochEnd>>,
    seq: usize,
}

impl Events {
    fn push(&mut self, time: f64, slot: usize) {
        let seq = self.seq;
        self.seq += 1;
        self.heap.push(Reverse(EpochEnd { time, seq, slot }));
    }

    fn pop(&mut self) -> Option<EpochEnd> {
        self.heap.pop().map(|Reverse(end)| end)
    }
}

/// Picks the curve of sweep trial `i`, given the trials started so far.
type Choose<'a> = dyn FnMut(usize, &[Started]) -> Result<usize, String> + 'a;

/// One trial of a replayed sweep.
#[derive(Debug, Clone)]
struct Started {
    /// Its curve, an index into the grid's curves.
    curve: usize,
    /// Epochs trained so far.
    trained: usize,
    /// The rung that pruned it: (epoch, value there).
    pruned: Option<(usize, f64)>,
    running: bool,
}

/// Replays a sweep of `trials` trials, `parallel` at a time, whose trial
/// `i`'s curve is `choose(i, trials started so far)`, asked when the trial
/// starts (TPE decides then, from what it has seen).
fn simulate(
    plan: &EarlyStop,
    maximize: bool,
    curves: &[Curve],
    trials: usize,
    parallel: usize,
    choose: &mut Choose,
) -> Result<(Outcome, Vec<Started>), String> {
    let mut asha = Asha::new(plan.clone(), maximize);
    let mut started: Vec<Started> = Vec::new();
    let mut events = Events::default();
    let mut start = |started: &mut Vec<Started>, now: f64, events: &mut Events| {
        let slot = started.len();
        let curve = choose(slot, started)?;
        started.push(Started {
            curve,
            trained: 0,
            pruned: None,
            running: true,
        });
        events.push(now + curves[curve].epoch_seconds, slot);
        Ok::<(), String>(())
    };
    while started.len() < trials.min(parallel.max(1)) {
        start(&mut started, 0.0, &mut events)?;
    }
    while let Some(end) = events.pop() {
        let trial = &mut started[end.slot];
        let curve = &curves[trial.curve];
        trial.trained += 1;
        let done = trial.trained;
        let records = asha.observe(end.slot, &curve.values[..done]);
        trial.pruned = records
            .iter()
            .find(|r| r.decision == Decision::Prune)
            .map(|r| (r.epoch, r.value));
        if trial.pruned.is_none() && done < curve.values.len() {
            events.push(end.time + curve.epoch_seconds, end.slot);
        } else {
            trial.running = false;
            if started.len() < trials {
                start(&mut started, end.time, &mut events)?;
            }
        }
    }
    let seen = started
        .iter()
        .flat_map(|t| curves[t.curve].values[..t.trained].iter().copied());
    let outcome = Outcome {
        epochs: started.iter().map(|t| t.trained).sum(),
        best: best_of(maximize, seen),
    };
    Ok((outcome, started))
}

/// Replays a sweep whose trial `i` is `curves[order[i]]`.
fn replay(
    plan: &EarlyStop,
    maximize: bool,
    curves: &[Curve],
    order: &[usize],
    parallel: usize,
) -> Result<Outcome, String> {
    let mut choose = |i: usize, _: &[Started]| match order.get(i) {
        Some(&c) if c < curves.len() => Ok(c),
        _ => Err(format!("trial {i}: no curve in the order")),
    };
    let (outcome, _) = simulate(plan, maximize, curves, order.len(), parallel, &mut choose)?;
    Ok(outcome)
}

/// Replays a sweep whose trial `i` is `curves[order[i]]`, `parallel` at a
/// time, with runner's promotion-based ASHA ([`Promotions`]): a trial
/// trains to its next rung and pauses; a free worker promotes the best
/// promotable paused trial, highest rung first, or else starts the next
/// trial; paused trials left at the end are pruned.
fn replay_promotion(
    plan: &EarlyStop,
    maximize: bool,
    curves: &[Curve],
    order: &[usize],
    parallel: usize,
) -> Result<Outcome, String> {
    let mut promotions = Promotions::new(plan.clone(), maximize);
    let n = order.len();
    let curve = |t: usize| -> Result<&Curve, String> {
        order
            .get(t)
            .and_then(|&c| curves.get(c))
            .ok_or_else(|| format!("trial {t}: no curve in the order"))
    };
    let mut trained = vec![0usize; n];
    let mut targets = vec![0usize; n];
    let mut next_trial = 0;
    let mut running = 0;
    let mut events = Events::default();
    let mut fill = |now: f64,
                    promotions: &mut Promotions,
                    events: &mut Events,
                    targets: &mut Vec<usize>,
                    running: &mut usize|
     -> Result<(), String> {
        while *running < parallel.max(1) {
            let trial = match promotions.next(next_trial < n, *running) {
                Next::Promote { trial, from, to } => {
                    promotions.promote(trial, from);
                    targets[trial] = to;
                    trial
                }
                Next::Start => {
                    let trial = next_trial;
                    next_trial += 1;
                    targets[trial] = promotions.target(trial, 0);
                    trial
                }
                Next::Wait => break,
            };
            events.push(now + curve(trial)?.epoch_seconds, trial);
            *running += 1;
        }
        Ok(())
    };
    fill(
        0.0,
        &mut promotions,
        &mut events,
        &mut targets,
        &mut running,
    )?;
    while let Some(end) = events.pop() {
        let t = end.slot;
        let c = curve(t)?;
        trained[t] += 1;
        if trained[t] < targets[t] {
            events.push(end.time + c.epoch_seconds, t);
            continue;
        }
        running -= 1;
        promotions.arrive(t, trained[t], c.values[trained[t] - 1]);
        fill(
            end.time,
            &mut promotions,
            &mut events,
            &mut targets,
            &mut running,
        )?;
    }
    promotions.finish();
    let mut seen = Vec::new();
    for (t, &e) in trained.iter().enumerate() {
        seen.extend_from_slice(&curve(t)?.values[..e]);
    }
    Ok(Outcome {
        epochs: trained.iter().sum(),
        best: best_of(maximize, seen.into_iter()),
    })
}

/// Synchronous successive halving over all `curves`, at the rungs of
/// `plan`'s one bracket: every point trains to the first rung; at each rung
/// the points still running are ranked by their value there and the best
/// `max(1, floor(n / eta))` go on (with any tied with the last of them);
/// the survivors of the last rung train to the end.
fn successive_halving(curves: &[Curve], plan: &EarlyStop, maximize: bool) -> Outcome {
    let full = curves.iter().map(|c| c.values.len()).max().unwrap_or(0);
    let mut trained = vec![0usize; curves.len()];
    let mut alive: Vec<usize> = (0..curves.len()).collect();
    for rung in plan.rungs(0) {
        if alive.len() <= 1 {
            break;
        }
        for &i in &alive {
            trained[i] = rung;
        }
        let mut values: Vec<f64> = alive.iter().map(|&i| curves[i].values[rung - 1]).collect();
        values.sort_by(|a, b| {
            if maximize {
                b.total_cmp(a)
            } else {
                a.total_cmp(b)
            }
        });
        let keep = (alive.len() / plan.reduction_factor.max(2)).max(1);
        let last = values[keep - 1];
        alive.retain(|&i| {
            let v = curves[i].values[rung - 1];
            if maximize {
                v >= last
            } else {
                v <= last
            }
        });
    }
    for &i in &alive {
        trained[i] = full;
    }
    let seen = curves
        .iter()
        .zip(&trained)
        .flat_map(|(c, &n)| c.values[..n].iter().copied());
    Outcome {
        epochs: trained.iter().sum(),
        best: best_of(maximize, seen),
    }
}

/// The trials so far as TPE sees them in `runner sweep`
/// (src/sweep/local.rs, `LocalDriver::history`): a running trial is
/// pending, a pruned one counts at the rung that pruned it, a finished one
/// by its best value; a maximized metric is negated into a loss. `params`
/// are the trials' values, in trial order.
fn tpe_history(
    started: &[Started],
    params: &[BTreeMap<String, toml::Value>],
    curves: &[Curve],
    maximize: bool,
) -> Vec<Observation> {
    let sign = if maximize { -1.0 } else { 1.0 };
    started
        .iter()
        .zip(params)
        .map(|(t, p)| {
            let values = &curves[t.curve].values[..t.trained];
            let outcome = match t.pruned {
                _ if t.running => TpeOutcome::Pending,
                Some((epochs, value)) => TpeOutcome::Pruned {
                    epochs,
                    loss: sign * value,
                },
                None => TpeOutcome::Complete {
                    loss: sign * best_of(maximize, values.iter().copied()),
                },
            };
            Observation {
                params: p.clone(),
                outcome,
            }
        })
        .collect()
}

/// A TPE search replayed: `sweep` (the experiment file's `[sweep]`, its
/// seed set per search) proposes each trial with runner's own code, the
/// startup draws of [`tpe_startup`] and then [`tpe_next`] from the history
/// `runner sweep` would build at that moment: finished trials by their
/// best value, pruned ones at the rung that pruned them, running ones as
/// pending (src/sweep/local.rs, `LocalDriver::history`).
fn replay_tpe(
    sweep: &SweepPlan,
    plan: &EarlyStop,
    maximize: bool,
    curves: &[Curve],
    parallel: usize,
) -> Result<(Outcome, Vec<Started>), String> {
    let startup = tpe_startup(sweep);
    let by_id: HashMap<&str, usize> = curves
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id.as_str(), i))
        .collect();
    let mut params: Vec<BTreeMap<String, toml::Value>> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut choose = |index: usize, so_far: &[Started]| {
        let p = match startup.get(index) {
            Some(t) => t.params.clone(),
            None => {
                let history = tpe_history(so_far, &params, curves, maximize);
                tpe_next(sweep, index, &history, &mut seen)
            }
        };
        let id = trial_id(&p);
        seen.insert(id.clone());
        params.push(p);
        by_id
            .get(id.as_str())
            .copied()
            .ok_or_else(|| format!("TPE proposed {id}, a point not in the grid"))
    };
    let trials = sweep.trials.min(sweep.max_trials.unwrap_or(usize::MAX));
    simulate(plan, maximize, curves, trials, parallel, &mut choose)
}

/// The grids' curves per seed, and each non-grid sweep's recorded trials per
/// (strategy, seed); the metric's name.
type Loaded = (
    BTreeMap<u64, Vec<Curve>>,
    BTreeMap<(String, u64), Vec<Recorded>>,
    String,
);

fn load(files: &[PathBuf]) -> Result<Loaded, Box<dyn Error>> {
    let mut grids: BTreeMap<u64, Vec<Curve>> = BTreeMap::new();
    let mut sweeps: BTreeMap<(String, u64), Vec<Recorded>> = BTreeMap::new();
    let mut metric = String::new();
    for file in files {
        let mut reader =
            csv::Reader::from_path(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let headers = reader.headers()?.clone();
        let column = |name: &str| {
            headers
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| format!("{}: no `{name}` column", file.display()))
        };
        let best_col = headers
            .iter()
            .position(|h| h.starts_with("best_") && h != "best_epoch")
            .ok_or_else(|| format!("{}: no `best_<metric>` column", file.display()))?;
        metric = headers[best_col]["best_".len()..].to_string();
        let (seed_col, strategy_col, trial_col, id_col, epochs_col, curve_col) = (
            column("seed")?,
            column("strategy")?,
            column("trial")?,
            column("id")?,
            column("epochs")?,
            column("curve")?,
        );
        let seconds_col = headers.iter().position(|h| h == "epoch_seconds");
        for (line, row) in reader.records().enumerate() {
            let row = row?;
            let at = |what: &str| format!("{} row {}: {what}", file.display(), line + 2);
            let seed: u64 = row[seed_col].parse().map_err(|_| at("bad seed"))?;
            let strategy = row[strategy_col].to_string();
            let id = row[id_col].to_string();
            if strategy == "grid" {
                let values = row[curve_col]
                    .split_whitespace()
                    .map(|v| v.parse::<f64>().unwrap_or(f64::NAN))
                    .collect::<Vec<_>>();
                let epoch_seconds = match seconds_col {
                    Some(c) => row[c].parse::<f64>().map_err(|_| at("bad epoch_seconds"))?,
                    None => 1.0,
                };
                // A grid recorded again (bench-sweep re-runs the grid of
                // every seed it searches) counts once: training is
                // deterministic for a seed, so its curves must be the same.
                let grid = grids.entry(seed).or_default();
                match grid.iter().find(|c| c.id == id) {
                    Some(c) if c.values == values => {}
                    Some(_) => {
                        return Err(at(&format!(
                            "seed {seed}'s grid trial {id} has another curve in an earlier file"
                        ))
                        .into())
                    }
                    None => grid.push(Curve {
                        id,
                        values,
                        epoch_seconds,
                    }),
                }
            } else {
                let best = row[best_col].parse::<f64>().unwrap_or(f64::NAN);
                sweeps.entry((strategy, seed)).or_default().push(Recorded {
                    trial: row[trial_col].parse().map_err(|_| at("bad trial"))?,
                    id,
                    epochs: row[epochs_col].parse().map_err(|_| at("bad epochs"))?,
                    best,
                });
            }
        }
    }
    Ok((grids, sweeps, metric))
}

/// The best of `values` (NaNs left out): the highest when maximizing.
fn best_of(maximize: bool, values: impl Iterator<Item = f64>) -> f64 {
    if maximize {
        values.fold(f64::NEG_INFINITY, f64::max)
    } else {
        values.fold(f64::INFINITY, f64::min)
    }
}

fn grid_best(curves: &[Curve], maximize: bool) -> f64 {
    best_of(
        maximize,
        curves.iter().flat_map(|c| c.values.iter().copied()),
    )
}

/// The `[sweep]` of an experiment file, which must be a TPE sweep.
fn tpe_plan(file: &Path) -> Result<SweepPlan, Box<dyn Error>> {
    let opts = LoadOptions {
        overrides: Vec::new(),
        use_env: false,
    };
    let loaded = config::load(file, &opts)?;
    let planned = plan::plan(&loaded)?;
    match planned.sweep {
        Some(sweep) if sweep.strategy == Strategy::Tpe => Ok(sweep),
        _ => Err(format!("--tpe {}: not a `strategy = \"tpe\"` sweep", file.display()).into()),
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    let (mut grids, sweeps, metric) = load(&args.files)?;
    if !args.seeds.is_empty() {
        grids.retain(|seed, _| args.seeds.contains(seed));
    }
    let Some(first) = grids.values().next() else {
        return Err("no grid rows for the chosen seeds".into());
    };
    let max_epochs = first.iter().map(|c| c.values.len()).max().unwrap_or(0);
    if grids
        .values()
        .flatten()
        .any(|c| c.values.len() != max_epochs || c.values.iter().any(|v| v.is_nan()))
    {
        return Err("every grid trial must have a full curve of numbers".into());
    }
    let maximize = !metric.contains("loss");
    let tpe_sweep = match &args.tpe {
        Some(file) => {
            let sweep = tpe_plan(file)?;
            Some(SweepPlan {
                trials: args.trials.unwrap_or(sweep.trials),
                ..sweep
            })
        }
        None => None,
    };
    let scale = if metric.contains("accuracy") {
        100.0
    } else {
        1.0
    };
    let gap = |best: f64, reference: f64| {
        scale
            * if maximize {
                reference - best
            } else {
                best - reference
            }
    };

    // A search's epochs as a fraction of the grid's, whether it came within
    // `--within` points of the grid's best, and whether it met the target.
    // `reference` is the grid's best.
    let judge = |outcome: &Outcome, curves: &[Curve], reference: f64| {
        let fraction = outcome.epochs as f64 / (curves.len() * max_epochs) as f64;
        let within = gap(outcome.best, reference) <= args.within + 1e-9;
        (fraction, within, within && fraction <= args.budget + 1e-12)
    };

    if !args.halving.is_empty() {
        println!(
            "Synchronous successive halving on each seed's grid; target: within {} points of the grid's best with at most {:.0}% of its epochs.\n",
            args.within,
            100.0 * args.budget
        );
        println!("| rungs | seeds meeting the target | within {} points | epochs % of grid | best minus the grid's best, points, per seed |", args.within);
        println!("|---|---|---|---|---|");
        for text in &args.halving {
            let plan = parse_setting(&format!("asha:{text}"), max_epochs)
                .map_err(|e| format!("--halving `{text}`: {e}"))?;
            let rungs: Vec<String> = plan.rungs(0).iter().map(|r| r.to_string()).collect();
            let (mut met, mut close) = (0, 0);
            let mut fractions = Vec::new();
            let mut per_seed = Vec::new();
            for (seed, curves) in &grids {
                let outcome = successive_halving(curves, &plan, maximize);
                let reference = grid_best(curves, maximize);
                let (fraction, within, ok) = judge(&outcome, curves, reference);
                met += ok as usize;
                close += within as usize;
                fractions.push(fraction);
                per_seed.push(format!("{seed}: {:+.1}", -gap(outcome.best, reference)));
            }
            let lo = fractions.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = fractions.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            println!(
                "| {} | {met} of {n} | {close} of {n} | {:.1} to {:.1} | {} |",
                rungs.join(", "),
                100.0 * lo,
                100.0 * hi,
                per_seed.join(", "),
                n = grids.len()
            );
        }
        return Ok(());
    }

    if !args.check.is_empty() {
        println!("| strategy | seed | setting | epochs recorded | epochs replayed | best recorded | best replayed | leading trials as recorded (point; point and epochs) |");
        println!("|---|---|---|---|---|---|---|---|");
        for check in &args.check {
            let (strategy, setting) = check
                .split_once('=')
                .ok_or_else(|| format!("--check `{check}`: expected STRATEGY=SETTING"))?;
            let plan = parse_setting(setting, max_epochs)?;
            for (seed, curves) in &grids {
                let Some(recorded) = sweeps.get(&(strategy.to_string(), *seed)) else {
                    continue;
                };
                let mut recorded = recorded.clone();
                recorded.sort_by_key(|r| r.trial);
                let epochs: usize = recorded.iter().map(|r| r.epochs).sum();
                let best = best_of(maximize, recorded.iter().map(|r| r.best));
                let (outcome, same) = match &tpe_sweep {
                    Some(sweep) => {
                        let sweep = SweepPlan {
                            seed: *seed,
                            ..sweep.clone()
                        };
                        let (outcome, started) =
                            replay_tpe(&sweep, &plan, maximize, curves, args.parallel)?;
                        // The leading trials with the recorded points, and
                        // with their epochs too.
                        let pairs = || recorded.iter().zip(&started);
                        let points = pairs()
                            .take_while(|(r, t)| r.id == curves[t.curve].id)
                            .count();
                        let both = pairs()
                            .take_while(|(r, t)| {
                                r.id == curves[t.curve].id && r.epochs == t.trained
                            })
                            .count();
                        (outcome, format!("{points}; {both} (of {})", recorded.len()))
                    }
                    None => {
                        let order = recorded
                            .iter()
                            .map(|r| {
                                curves.iter().position(|c| c.id == r.id).ok_or_else(|| {
                                    format!("seed {seed}: trial {} not in the grid", r.id)
                                })
                            })
                            .collect::<Result<Vec<_>, _>>()?;
                        let outcome = if args.promotion {
                            replay_promotion(&plan, maximize, curves, &order, args.parallel)?
                        } else {
                            replay(&plan, maximize, curves, &order, args.parallel)?
                        };
                        (outcome, "(replayed in that order)".to_string())
                    }
                };
                println!(
                    "| {strategy} | {seed} | {} | {epochs} | {} | {best:.4} | {:.4} | {same} |",
                    describe(&plan),
                    outcome.epochs,
                    outcome.best
                );
            }
        }
        return Ok(());
    }

    let settings: Vec<String> = if args.settings.is_empty() {
        let mut list = Vec::new();
        for kind in ["asha", "hyperband"] {
            for eta in [2, 3, 4] {
                for min in [1, 2, 3, 4, 6] {
                    list.push(format!("{kind}:{min}:{eta}"));
                }
            }
        }
        list
    } else {
        args.settings.clone()
    };
    let seeds: Vec<u64> = grids.keys().copied().collect();
    let searches = match (&args.tpe, &tpe_sweep) {
        (Some(file), Some(sweep)) => format!(
            "{} TPE searches per seed ({}: n_startup {}, n_candidates {}, {} trials; sweep seeds {} to {})",
            args.orders,
            file.display(),
            sweep.tpe.n_startup,
            sweep.tpe.n_candidates,
            sweep.trials.min(sweep.max_trials.unwrap_or(usize::MAX)),
            args.rng_seed,
            args.rng_seed + args.orders.saturating_sub(1) as u64
        ),
        _ => match args.trials {
            Some(n) => format!(
                "{} random orders per seed, the first {n} points of each",
                args.orders
            ),
            None => format!("{} random orders per seed", args.orders),
        },
    };
    println!(
        "Replayed: seeds {}; {searches}; {} at a time; target: within {} points of the grid's best with at most {:.0}% of its epochs.\n",
        seeds.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", "),
        args.parallel,
        args.within,
        100.0 * args.budget
    );
    println!(
        "| setting | target met | within {} points | epochs % of grid (mean; 90th pct; max) | target met per seed |",
        args.within
    );
    println!("|---|---|---|---|---|");
    for setting in &settings {
        let plan = parse_setting(setting, max_epochs)?;
        let mut rng = ChaCha8Rng::seed_from_u64(args.rng_seed);
        let (mut met, mut close, mut runs) = (0usize, 0usize, 0usize);
        let mut fractions = Vec::new();
        let mut per_seed = Vec::new();
        for (seed, curves) in &grids {
            let reference = grid_best(curves, maximize);
            let mut seed_met = 0;
            for search in 0..args.orders {
                let outcome = match &tpe_sweep {
                    Some(sweep) => {
                        let sweep = SweepPlan {
                            seed: args.rng_seed + search as u64,
                            ..sweep.clone()
                        };
                        replay_tpe(&sweep, &plan, maximize, curves, args.parallel)?.0
                    }
                    None => {
                        let mut order: Vec<usize> = (0..curves.len()).collect();
                        order.shuffle(&mut rng);
                        order.truncate(args.trials.unwrap_or(order.len()));
                        if args.promotion {
                            replay_promotion(&plan, maximize, curves, &order, args.parallel)?
                        } else {
                            replay(&plan, maximize, curves, &order, args.parallel)?
                        }
                    }
                };
                let (fraction, within, ok) = judge(&outcome, curves, reference);
                met += ok as usize;
                close += within as usize;
                seed_met += ok as usize;
                runs += 1;
                fractions.push(fraction);
            }
            per_seed.push(format!(
                "{seed}: {:.0}%",
                100.0 * seed_met as f64 / args.orders as f64
            ));
        }
        fractions.sort_by(f64::total_cmp);
        let mean = fractions.iter().sum::<f64>() / fractions.len() as f64;
        let p90 = fractions[(fractions.len() * 9 / 10).min(fractions.len() - 1)];
        let max = fractions[fractions.len() - 1];
        println!(
            "| {} | {:.0}% | {:.0}% | {:.1} ({:.1}; {:.1}) | {} |",
            describe(&plan),
            100.0 * met as f64 / runs as f64,
            100.0 * close as f64 / runs as f64,
            100.0 * mean,
            100.0 * p90,
            100.0 * max,
            per_seed.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(id: &str, values: &[f64], epoch_seconds: f64) -> Curve {
        Curve {
            id: id.to_string(),
            values: values.to_vec(),
            epoch_seconds,
        }
    }

    fn asha(min_epochs: usize, eta: usize, max_epochs: usize) -> EarlyStop {
        EarlyStop {
            kind: EarlyStopKind::Asha,
            min_epochs,
            reduction_factor: eta,
            max_epochs,
        }
    }

    /// Promotion-based, one at a time, the four trials of
    /// src/sweep/promotion.rs's hand computation: they train 1, 2, 1 and 4
    /// epochs; the best value seen is 0.9 (D's first and last). Two at a
    /// time, every epoch 1 s: at t = 1 A pauses (C starts) and B, the top 1
    /// of 2, is promoted; at t = 2 C pauses (third of 3: D starts) and B
    /// pauses at rung 2, where nobody is promoted while D runs; at t = 3 D
    /// is the top of 4 at rung 1 and at t = 4 the top of 2 at rung 2: it
    /// trains to 4 and the others are pruned. The same 8 epochs.
    #[test]
    fn promotion_matches_a_hand_computation() {
        let curves = [
            curve("a", &[0.5, 0.55, 0.6, 0.65], 1.0),
            curve("b", &[0.7, 0.8, 0.9, 0.95], 1.0),
            curve("c", &[0.6, 0.7, 0.8, 0.9], 1.0),
            curve("d", &[0.9, 0.85, 0.88, 0.9], 1.0),
        ];
        for parallel in [1, 2] {
            let outcome =
                replay_promotion(&asha(1, 2, 4), true, &curves, &[0, 1, 2, 3], parallel).unwrap();
            assert_eq!(outcome.epochs, 8, "{parallel} at a time");
            assert_eq!(outcome.best, 0.9);
        }
        // With B's epochs twice as slow, two at a time: A pauses at t = 1
        // and C starts; at t = 2 B (0.7) reaches rung 1 before C (it was
        // scheduled first), the top 1 of 2: promoted; C (0.6) is third of
        // 3: D starts; at t = 3 D (0.9) is the top of 4 (k = 2): promoted;
        // at t = 4 B reaches rung 2 first, alone there (k = 0, D runs),
        // then D, the top 1 of 2: promoted to 4; B is pruned at the end.
        // The same 8 epochs.
        let mut slow = curves.clone();
        slow[1].epoch_seconds = 2.0;
        let outcome = replay_promotion(&asha(1, 2, 4), true, &slow, &[0, 1, 2, 3], 2).unwrap();
        assert_eq!(outcome.epochs, 8);
    }

    /// Three trials of 4 epochs, rungs at 1 and 2 (eta 2), one at a time in
    /// the order A, B, C. By hand: A is first at both rungs and runs 4
    /// epochs; B's 0.4 at rung 1 is below A's 0.5 (n = 2, k = 1): pruned
    /// after 1; C's 0.6 is the best of 3 at rung 1 and its 0.7 the best of
    /// 2 at rung 2: 4 epochs. 9 epochs in all, best 0.8 (A's last).
    #[test]
    fn one_at_a_time_matches_a_hand_computation() {
        let curves = [
            curve("a", &[0.5, 0.6, 0.7, 0.8], 1.0),
            curve("b", &[0.4, 0.5, 0.9, 0.95], 1.0),
            curve("c", &[0.6, 0.7, 0.75, 0.76], 1.0),
        ];
        let outcome = replay(&asha(1, 2, 4), true, &curves, &[0, 1, 2], 1).unwrap();
        assert_eq!(outcome.epochs, 9);
        assert_eq!(outcome.best, 0.8);
    }

    /// The same A and B two at a time, B's epochs 3 times as fast: B reaches
    /// rung 1 (t = 1) and rung 2 (t = 2) before A (t = 3), is first there
    /// and runs to its end; A then meets B's 0.4 at rung 1 and 0.5 at
    /// rung 2 and goes on. 8 epochs, best 0.95: arrival order decides.
    #[test]
    fn the_first_to_reach_a_rung_goes_on() {
        let curves = [
            curve("a", &[0.5, 0.6, 0.7, 0.8], 3.0),
            curve("b", &[0.4, 0.5, 0.9, 0.95], 1.0),
        ];
        let outcome = replay(&asha(1, 2, 4), true, &curves, &[0, 1], 2).unwrap();
        assert_eq!(outcome.epochs, 8);
        assert_eq!(outcome.best, 0.95);
        let one_at_a_time = replay(&asha(1, 2, 4), true, &curves, &[0, 1], 1).unwrap();
        assert_eq!((one_at_a_time.epochs, one_at_a_time.best), (5, 0.8));
    }

    /// Minimizing, the lower value goes on: B's 1.2 at rung 1 is higher
    /// than A's 1.0, so B is pruned after 1 epoch, though it would end
    /// lowest. 4 epochs, best 0.6 (A's last).
    #[test]
    fn a_minimized_metric_keeps_the_lower_value() {
        let curves = [
            curve("a", &[1.0, 0.8, 0.6], 1.0),
            curve("b", &[1.2, 0.1, 0.05], 1.0),
        ];
        let outcome = replay(&asha(1, 2, 3), false, &curves, &[0, 1], 1).unwrap();
        assert_eq!((outcome.epochs, outcome.best), (4, 0.6));
    }

    /// bench/sweep/tpe-asha.toml with `trials` trials, and a curve for
    /// each of its 27 points: accuracy rising to a ceiling that grows with
    /// the point's index, so later points are better; epochs of 1 to 3
    /// seconds.
    fn tpe_bench(trials: usize) -> (SweepPlan, Vec<Curve>) {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/sweep/tpe-asha.toml");
        let sweep = tpe_plan(&file).unwrap();
        let grid = runner::sweep::expand(&SweepPlan {
            strategy: Strategy::Grid,
            ..sweep.clone()
        });
        assert_eq!(grid.len(), 27);
        let curves = grid
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let ceiling = 0.5 + 0.015 * i as f64;
                let values: Vec<f64> = (1..=27)
                    .map(|e| ceiling * (1.0 - (-(e as f64) / 4.0).exp()))
                    .collect();
                curve(&t.id, &values, 1.0 + (i % 3) as f64)
            })
            .collect();
        (SweepPlan { trials, ..sweep }, curves)
    }

    /// A TPE replay starts with the sweep's own startup draws, never runs
    /// a point twice while new ones are left, and gives the same search
    /// for the same seed and another for another seed; its epochs are
    /// those of its trials, a pruned one's ending at the rung that pruned
    /// it.
    #[test]
    fn a_tpe_replay_follows_the_sweeps_own_draws() {
        let (sweep, curves) = tpe_bench(18);
        let plan = asha(3, 4, 27);
        let (outcome, started) = replay_tpe(&sweep, &plan, true, &curves, 2).unwrap();
        assert_eq!(started.len(), 18);
        let ids: Vec<&str> = started
            .iter()
            .map(|t| curves[t.curve].id.as_str())
            .collect();
        let startup: Vec<String> = tpe_startup(&sweep).into_iter().map(|t| t.id).collect();
        assert_eq!(startup.len(), 10);
        assert_eq!(ids[..10], startup[..]);
        assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 18, "{ids:?}");
        assert_eq!(
            outcome.epochs,
            started.iter().map(|t| t.trained).sum::<usize>()
        );
        assert!(started.iter().all(|t| !t.running));
        for t in &started {
            match t.pruned {
                Some((epoch, value)) => {
                    assert_eq!(t.trained, epoch);
                    assert_eq!(value, curves[t.curve].values[epoch - 1]);
                }
                None => assert_eq!(t.trained, 27),
            }
        }
        assert!(started.iter().any(|t| t.pruned.is_some()));
        let (again, same) = replay_tpe(&sweep, &plan, true, &curves, 2).unwrap();
        assert_eq!(again.epochs, outcome.epochs);
        assert_eq!(
            same.iter().map(|t| t.curve).collect::<Vec<_>>(),
            started.iter().map(|t| t.curve).collect::<Vec<_>>()
        );
        let other = SweepPlan {
            seed: sweep.seed + 1,
            ..sweep.clone()
        };
        let (_, moved) = replay_tpe(&other, &plan, true, &curves, 2).unwrap();
        assert_ne!(
            moved.iter().map(|t| t.curve).collect::<Vec<_>>(),
            started.iter().map(|t| t.curve).collect::<Vec<_>>()
        );
    }

    /// By hand: A is running (pending), B was pruned at its rung 2 with
    /// 0.4 (loss -0.4, though it had 0.5 at epoch 1), C finished with its
    /// best 0.9 at epoch 2, not its last 0.7. Minimizing, C's best is its
    /// lowest value and the loss keeps its sign.
    #[test]
    fn tpe_sees_running_pruned_and_finished_trials_as_runner_does() {
        let curves = [
            curve("a", &[0.1, 0.2, 0.3], 1.0),
            curve("b", &[0.5, 0.4, 0.8], 1.0),
            curve("c", &[0.6, 0.9, 0.7], 1.0),
        ];
        let trial = |curve, trained, pruned, running| Started {
            curve,
            trained,
            pruned,
            running,
        };
        let started = [
            trial(0, 1, None, true),
            trial(1, 2, Some((2, 0.4)), false),
            trial(2, 3, None, false),
        ];
        let params: Vec<BTreeMap<String, toml::Value>> = ["a", "b", "c"]
            .iter()
            .map(|k| BTreeMap::from([("k".to_string(), toml::Value::from(*k))]))
            .collect();
        let outcomes = |maximize| -> Vec<TpeOutcome> {
            tpe_history(&started, &params, &curves, maximize)
                .into_iter()
                .map(|o| o.outcome)
                .collect()
        };
        assert_eq!(
            outcomes(true),
            [
                TpeOutcome::Pending,
                TpeOutcome::Pruned {
                    epochs: 2,
                    loss: -0.4
                },
                TpeOutcome::Complete { loss: -0.9 },
            ]
        );
        assert_eq!(outcomes(false)[2], TpeOutcome::Complete { loss: 0.6 });
        let history = tpe_history(&started, &params, &curves, true);
        assert_eq!(history[1].params, params[1]);
    }

    /// Two files with the same seed's grid give its 27 curves once, the
    /// first file's; a curve that differs is an error naming the trial.
    #[test]
    fn a_grid_recorded_twice_counts_once() {
        let dir = tempfile::tempdir().unwrap();
        let header = "seed,strategy,trial,id,epochs,best_val_accuracy,curve,epoch_seconds\n";
        let write = |name: &str, rows: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, format!("{header}{rows}")).unwrap();
            path
        };
        let first = write(
            "a.csv",
            "3,grid,0,aa,2,0.6,0.5 0.6,1.0\n3,grid,1,bb,2,0.7,0.4 0.7,2.0\n",
        );
        let again = write(
            "b.csv",
            "3,grid,0,aa,2,0.6,0.5 0.6,1.5\n3,grid,1,bb,2,0.7,0.4 0.7,2.5\n",
        );
        let (grids, _, metric) = load(&[first.clone(), again]).unwrap();
        assert_eq!(metric, "val_accuracy");
        let ids: Vec<&str> = grids[&3].iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["aa", "bb"]);
        assert_eq!(grids[&3][1].epoch_seconds, 2.0);
        let other = write("c.csv", "3,grid,1,bb,2,0.8,0.4 0.8,2.0\n");
        let err = load(&[first, other]).unwrap_err().to_string();
        assert!(err.contains("c.csv row 2") && err.contains("bb"), "{err}");
    }

    /// By hand, four points of 4 epochs, rungs 1 and 2 (eta 2), maximizing:
    /// at epoch 1 the values are 0.4, 0.3, 0.2, 0.3, so keep = 2 and the
    /// second best is 0.3: A, B and D (tied) go on; at epoch 2 (n = 3,
    /// keep 1) D's 0.9 leads and only D trains to epoch 4. Epochs: 2 + 2 +
    /// 1 + 4 = 9; best 0.95, D's last.
    #[test]
    fn successive_halving_matches_a_hand_computation() {
        let curves = [
            curve("a", &[0.4, 0.5, 0.6, 0.7], 1.0),
            curve("b", &[0.3, 0.35, 0.99, 0.99], 1.0),
            curve("c", &[0.2, 0.9, 0.9, 0.9], 1.0),
            curve("d", &[0.3, 0.9, 0.92, 0.95], 1.0),
        ];
        let outcome = successive_halving(&curves, &asha(1, 2, 4), true);
        assert_eq!((outcome.epochs, outcome.best), (9, 0.95));
        // Minimizing the same numbers: C's 0.2 and the tied 0.3s go on
        // after epoch 1, then B's 0.35 alone: A 1 + B 4 + C 2 + D 2 epochs,
        // best 0.2 (C's first).
        let low = successive_halving(&curves, &asha(1, 2, 4), false);
        assert_eq!((low.epochs, low.best), (9, 0.2));
    }

    #[test]
    fn settings_parse_and_bad_ones_are_named() {
        let plan = parse_setting("hyperband:1:3", 27).unwrap();
        assert_eq!(plan.kind, EarlyStopKind::Hyperband);
        assert_eq!(
            describe(&plan),
            "hyperband:1:3 (rungs 1,3,9 / 3,9 / 9 / none)"
        );
        let none = parse_setting("none", 27).unwrap();
        assert_eq!(describe(&none), "none (no early stopping)");
        assert!(none.rungs(0).is_empty());
        let curves = [
            curve("a", &[0.9, 0.9, 0.9], 1.0),
            curve("b", &[0.1, 0.1, 0.1], 1.0),
        ];
        let plan = parse_setting("none", 3).unwrap();
        let outcome = replay(&plan, true, &curves, &[0, 1], 1).unwrap();
        assert_eq!(outcome.epochs, 6, "nothing is pruned");
        for bad in [
            "asha:1",
            "median:1:3",
            "asha:x:3",
            "asha:0:3",
            "asha:1:1",
            "asha:27:3",
        ] {
            let err = parse_setting(bad, 27).unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
    }
}
