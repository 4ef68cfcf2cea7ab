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
import logging

import optuna

from sweep_curves import AXES, Tally, load, only_seeds


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
    grids = only_seeds(grids, args.seeds)
    scale = 100.0 if "accuracy" in metric else 1.0
    # Per seed, once: its curves, the values of each axis, the grid's epochs
    # and the grid's best value.
    instances = []
    for seed, points in sorted(grids.items()):
        curves = {k: p.curve for k, p in points.items()}
        instances.append((seed, curves,
                          {a: sorted({k[i] for k in curves}, key=float) for i, a in enumerate(AXES)},
                          sum(len(c) for c in curves.values()),
                          max(max(c) for c in curves.values())))

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
            tally = Tally(args.within, args.budget, scale)
            for seed, curves, space, grid_epochs, reference in instances:
                tally.seed(seed, [search(curves, space, make_sampler(rep, space), make_pruner(), args.trials,
                                         f"seed{seed}-rep{rep}")
                                  for rep in range(args.repeats)], grid_epochs, reference)
            print("| " + " | ".join([sname, pname] + tally.cells()) + " |")


if __name__ == "__main__":
    main()
