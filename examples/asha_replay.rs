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
//! `--check STRATEGY=SETTING` replays, instead of random orders, the trial
//! order that the file's `STRATEGY` sweeps really had, and prints the epochs
//! and best value the replay gives next to the recorded ones: how far the
//! timing model can be trusted.
//!
//! What a replay leaves out: TPE (its order depends on the values it saw),
//! the scheduler's polling delay (a decision is made the moment an epoch
//! ends) and the partial epoch a pruned trial had begun.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};
use std::error::Error;
use std::path::PathBuf;

use clap::Parser;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use runner::sweep::asha::{Asha, Decision, EarlyStop, EarlyStopKind};

#[derive(Parser, Debug)]
#[command(about = "Replay early-stopping settings on the learning curves of bench-sweep grids")]
struct Args {
    /// CSV files written by bench/sweep.py (`<stamp>-sweep.csv`); their
    /// `grid` rows are the curves.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// A setting, `asha:MIN_EPOCHS:ETA` or `hyperband:MIN_EPOCHS:ETA`
    /// (repeatable); without one, a fixed list of ASHA and Hyperband settings.
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
    #[arg(long)]
    check: Vec<String>,
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

/// Replays a sweep whose trial `i` is `curves[order[i]]`.
fn replay(
    plan: &EarlyStop,
    maximize: bool,
    curves: &[Curve],
    order: &[usize],
    parallel: usize,
) -> Outcome {
    let mut asha = Asha::new(plan.clone(), maximize);
    // Per sweep trial index: the epochs it has trained.
    let mut trained = vec![0usize; order.len()];
    let mut events = BinaryHeap::new();
    let mut seq = 0;
    let mut next = 0;
    let mut start = |slot: usize, now: f64, events: &mut BinaryHeap<Reverse<EpochEnd>>| {
        let time = now + curves[order[slot]].epoch_seconds;
        events.push(Reverse(EpochEnd { time, seq, slot }));
        seq += 1;
    };
    while next < order.len().min(parallel.max(1)) {
        start(next, 0.0, &mut events);
        next += 1;
    }
    while let Some(Reverse(end)) = events.pop() {
        let curve = &curves[order[end.slot]];
        trained[end.slot] += 1;
        let done = trained[end.slot];
        let records = asha.observe(end.slot, &curve.values[..done]);
        let pruned = records.iter().any(|r| r.decision == Decision::Prune);
        if !pruned && done < curve.values.len() {
            start(end.slot, end.time, &mut events);
        } else if next < order.len() {
            start(next, end.time, &mut events);
            next += 1;
        }
    }
    let seen = order
        .iter()
        .zip(&trained)
        .flat_map(|(&c, &n)| curves[c].values[..n].iter().copied());
    Outcome {
        epochs: trained.iter().sum(),
        best: best_of(maximize, seen),
    }
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
                grids.entry(seed).or_default().push(Curve {
                    id,
                    values,
                    epoch_seconds,
                });
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

    if !args.check.is_empty() {
        println!("| strategy | seed | setting | epochs recorded | epochs replayed | best recorded | best replayed |");
        println!("|---|---|---|---|---|---|---|");
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
                let order = recorded
                    .iter()
                    .map(|r| {
                        curves
                            .iter()
                            .position(|c| c.id == r.id)
                            .ok_or_else(|| format!("seed {seed}: trial {} not in the grid", r.id))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let outcome = replay(&plan, maximize, curves, &order, args.parallel);
                let epochs: usize = recorded.iter().map(|r| r.epochs).sum();
                let best = best_of(maximize, recorded.iter().map(|r| r.best));
                println!(
                    "| {strategy} | {seed} | {} | {epochs} | {} | {best:.4} | {:.4} |",
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
    println!(
        "Replayed: seeds {}; {} random orders per seed; {} at a time; target: within {} points of the grid's best with at most {:.0}% of its epochs.\n",
        seeds.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", "),
        args.orders,
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
            let grid_epochs = (curves.len() * max_epochs) as f64;
            let mut seed_met = 0;
            for _ in 0..args.orders {
                let mut order: Vec<usize> = (0..curves.len()).collect();
                order.shuffle(&mut rng);
                let outcome = replay(&plan, maximize, curves, &order, args.parallel);
                let fraction = outcome.epochs as f64 / grid_epochs;
                let within = gap(outcome.best, reference) <= args.within + 1e-9;
                let ok = within && fraction <= args.budget + 1e-12;
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
        let outcome = replay(&asha(1, 2, 4), true, &curves, &[0, 1, 2], 1);
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
        let outcome = replay(&asha(1, 2, 4), true, &curves, &[0, 1], 2);
        assert_eq!(outcome.epochs, 8);
        assert_eq!(outcome.best, 0.95);
        let one_at_a_time = replay(&asha(1, 2, 4), true, &curves, &[0, 1], 1);
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
        let outcome = replay(&asha(1, 2, 3), false, &curves, &[0, 1], 1);
        assert_eq!((outcome.epochs, outcome.best), (4, 0.6));
    }

    #[test]
    fn settings_parse_and_bad_ones_are_named() {
        let plan = parse_setting("hyperband:1:3", 27).unwrap();
        assert_eq!(plan.kind, EarlyStopKind::Hyperband);
        assert_eq!(
            describe(&plan),
            "hyperband:1:3 (rungs 1,3,9 / 3,9 / 9 / none)"
        );
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
