#!/usr/bin/env python3
"""Optuna's samplers and pruners on bench-sweep's recorded curves: the peer beside examples/asha_replay.rs.

`make bench-sweep` writes every grid trial's validation curve (27 epochs,
3 x 3 x 3 points, one grid per seed) to bench/results/<stamp>-sweep.csv.
Training is deterministic for a seed, so any search over those points trains
those curves. This script lets Optuna search them: each Optuna trial picks
the three values, reports the recorded curve epoch by epoch with
`trial.report`, and stops when `trial.should_prune()` says so. Trials run one
at a time (Optuna's `n_jobs=1`), so compare with
`asha_replay --parallel 1`.

For every sampler x pruner it prints, over seeds x repetitions (each
repetition a different sampler seed): how often the search gets within 1
point of the grid's best (the best value over every epoch any trial
trained, as bench-sweep counts it) with at most 40% of the grid's epochs.

Samplers: Optuna's `GridSampler` (the 27 points in a random order, no point
twice: runner's `random` strategy over grid lists) and `TPESampler`
(defaults: 10 startup trials, 24 candidates; it can pick a point twice, a
trial the budget still pays for). Pruners: `SuccessiveHalvingPruner` with
Optuna's defaults (`min_resource="auto"`, `reduction_factor=4`) and with
runner's two bench settings (1/3: rungs 1, 3, 9; 3/4: rungs 3, 12),
`HyperbandPruner` with its defaults and `MedianPruner` with its defaults.

    bench/.venv-sweep/bin/python bench/sweep_optuna.py bench/results/A-sweep.csv [B-sweep.csv ...]
        [--seeds 1,2,...] [--repeats 50] [--trials 27]

Needs optuna (bench/requirements-sweep.txt; `make bench-sweep-replay` installs
it into bench/.venv-sweep); prints markdown.
"""

import argparse
import csv
import logging
import sys
from collections import defaultdict

import optuna

AXES = ("optimizer.learning_rate", "model.dropout", "train.batch_size")


def load(paths):
    grids = defaultdict(dict)
    metric = None
    for path in paths:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if metric is None:
                    metric = next(c for c in row if c.startswith("best_") and c != "best_epoch")[5:]
                if row["strategy"] != "grid":
                    continue
                key = tuple(row[a] for a in AXES)
                curve = [float(v) for v in row["curve"].split()]
                seed = int(row["seed"])
                # A grid recorded again (bench-sweep re-runs the grid of
                # every seed it searches) must have the same curves.
                if grids[seed].get(key, curve) != curve:
                    sys.exit(f"{path}: seed {seed}'s grid point {key} has another curve in an earlier file")
                grids[seed][key] = curve
    return grids, metric


def search(curves, space, sampler, pruner, n_trials, name):
    """One Optuna study over one seed's curves: (epochs trained, best value seen).

    The study is named: HyperbandPruner deals trials to brackets by a hash
    of the study's name, and an unnamed study gets a random one."""
    spent = {"epochs": 0, "best": float("-inf")}

    def objective(trial):
        key = tuple(trial.suggest_categorical(a, space[a]) for a in AXES)
        curve = curves[key]
        for epoch, value in enumerate(curve, start=1):
            spent["epochs"] += 1
            spent["best"] = max(spent["best"], value)
            trial.report(value, epoch)
            if epoch < len(curve) and trial.should_prune():
                raise optuna.TrialPruned()
        return max(curve)

    study = optuna.create_study(study_name=name, direction="maximize", sampler=sampler, pruner=pruner)
    study.optimize(objective, n_trials=n_trials)
    return spent["epochs"], spent["best"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--seeds", help="comma-separated; all seeds with a grid by default")
    ap.add_argument("--repeats", type=int, default=50, help="sampler seeds per bench seed")
    ap.add_argument("--trials", type=int, default=27)
    ap.add_argument("--budget", type=float, default=0.40)
    ap.add_argument("--within", type=float, default=1.0)
    args = ap.parse_args()
    optuna.logging.set_verbosity(logging.WARNING)

    grids, metric = load(args.files)
    if "loss" in metric:
        raise SystemExit(f"{metric}: only a metric to maximize is supported")
    if args.seeds:
        wanted = {int(s) for s in args.seeds.split(",")}
        grids = {s: g for s, g in grids.items() if s in wanted}
    scale = 100.0 if "accuracy" in metric else 1.0
    # Per seed, once: its curves, the values of each axis, the grid's epochs
    # and the grid's best value.
    instances = [
        (seed, curves,
         {a: sorted({k[i] for k in curves}, key=float) for i, a in enumerate(AXES)},
         sum(len(c) for c in curves.values()),
         max(max(c) for c in curves.values()))
        for seed, curves in sorted(grids.items())
    ]

    samplers = {
        "GridSampler (random order)": lambda seed, space: optuna.samplers.GridSampler(space, seed=seed),
        "TPESampler (defaults)": lambda seed, space: optuna.samplers.TPESampler(seed=seed),
    }
    pruners = {
        "SuccessiveHalving (Optuna's defaults: auto, 4)": lambda: optuna.pruners.SuccessiveHalvingPruner(),
        "SuccessiveHalving 1/3 (rungs 1, 3, 9)": lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
        "SuccessiveHalving 3/4 (rungs 3, 12)": lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=3, reduction_factor=4),
        "Hyperband (defaults: 1, auto, 3)": lambda: optuna.pruners.HyperbandPruner(),
        "Median (defaults)": lambda: optuna.pruners.MedianPruner(),
    }
    print(f"Optuna {optuna.__version__}; seeds {', '.join(map(str, sorted(grids)))}; "
          f"{args.repeats} sampler seeds each; {args.trials} trials, one at a time; target: within "
          f"{args.within:g} points of the grid's best with at most {100 * args.budget:.0f}% of its epochs.\n")
    print(f"| sampler | pruner | target met | within {args.within:g} points | epochs % of grid (mean; 90th pct; max) | target met per seed |")
    print("|---|---|---|---|---|---|")
    for sname, make_sampler in samplers.items():
        for pname, make_pruner in pruners.items():
            met = close = runs = 0
            fractions, per_seed = [], []
            for seed, curves, space, grid_epochs, reference in instances:
                seed_met = 0
                for rep in range(args.repeats):
                    epochs, best = search(curves, space, make_sampler(rep, space), make_pruner(), args.trials,
                                          f"seed{seed}-rep{rep}")
                    fraction = epochs / grid_epochs
                    within = (reference - best) * scale <= args.within + 1e-9
                    ok = within and fraction <= args.budget + 1e-12
                    met += ok
                    close += within
                    seed_met += ok
                    runs += 1
                    fractions.append(fraction)
                per_seed.append(f"{seed}: {100 * seed_met / args.repeats:.0f}%")
            fractions.sort()
            mean = sum(fractions) / len(fractions)
            p90 = fractions[min(len(fractions) * 9 // 10, len(fractions) - 1)]
            print(f"| {sname} | {pname} | {100 * met / runs:.0f}% | {100 * close / runs:.0f}% | "
                  f"{100 * mean:.1f} ({100 * p90:.1f}; {100 * fractions[-1]:.1f}) | {', '.join(per_seed)} |")


if __name__ == "__main__":
    main()
