#!/usr/bin/env python3
"""Syne Tune's ASHA, promotion and stopping type, on bench-sweep's recorded curves: the peer of runner's `variant = "promotion"`.

Optuna (sweep_optuna.py) has only stopping pruners. Syne Tune's
`HyperbandScheduler(type="promotion")` is a well-kept implementation of the
ASHA paper's promotion rule (a trial pauses at each rung; a free worker
resumes a paused trial when it is in the top 1/eta of its rung, else starts
a new one), and `type="stopping"` of the stopping rule. This script drives
that scheduler with the Tuner's own calls (`suggest`, `on_trial_add`,
`on_trial_result`, `on_trial_remove`) in a simulated clock: two workers, as
bench-sweep runs (`--parallel`), each epoch taking the point's recorded
`epoch_seconds`, the value reported at each epoch the point's recorded
curve, and a resumed trial going on from its last epoch (a checkpoint), as
examples/asha_replay.rs models runner.

The trials come in a random order of the 27 points, no point twice
(`points_to_evaluate`, then the searcher is exhausted): runner's `random`
strategy over grid lists. When the scheduler has nothing to suggest, Syne
Tune's Tuner stops scheduling for good and waits for the running trials
(`config_space_exhausted`); rows marked "Tuner" do the same. Rows marked
"kept asking" ask again whenever a worker frees, so that trials paused at
a rung can still be promoted when later arrivals lower its cutoff (what
runner's end game does by its own rule).

Syne Tune's promotion rule differs from runner's in two documented ways:
its cutoff is the (1 - 1/eta) quantile of the values at the rung (numpy's
linear interpolation, from 2 values), where runner promotes the top
floor(n / eta) (from eta values); and it has no end game, where runner,
once nothing can start and nothing runs, promotes the best of a rung.

For each setting it prints, over seeds x orders: how often the search gets
within 1 point of the grid's best (the best value over every epoch any trial
trained) with at most 40% of the grid's epochs, as sweep_optuna.py does.

    bench/.venv-sweep/bin/python bench/sweep_synetune.py bench/results/A-sweep.csv [B-sweep.csv ...]
        [--seeds 1,2,...] [--orders 100] [--parallel 2] [--setting 4:4 ...]

Needs syne-tune 0.13.0 (bench/requirements-sweep.txt; newer releases
dropped the promotion type; `make bench-sweep-replay` installs it into
bench/.venv-sweep); prints markdown.
"""

import argparse
import contextlib
import datetime
import heapq
import logging
import random
import sys

# Syne Tune prints which optional dependencies it lacks (AWS, GP searchers)
# when imported: to stderr, out of the markdown.
with contextlib.redirect_stdout(sys.stderr):
    import syne_tune
    from syne_tune.backend.trial_status import Trial
    from syne_tune.config_space import choice
    from syne_tune.optimizer.scheduler import SchedulerDecision
    from syne_tune.optimizer.schedulers import HyperbandScheduler

from sweep_curves import Tally, load, only_seeds


def search(points, order, kind, grace, eta, parallel, keep_asking, seed):
    """One search over `points` (a list of `Point`s) in `order`:
    `(epochs trained, best value seen)`."""
    full = max(len(p.curve) for p in points)
    scheduler = HyperbandScheduler(
        {"point": choice(list(range(len(points)))), "epochs": full},
        searcher="random",
        points_to_evaluate=[{"point": i} for i in order],
        type=kind,
        max_t=full,
        grace_period=grace,
        reduction_factor=eta,
        resource_attr="epoch",
        metric="accuracy",
        mode="max",
        random_seed=seed,
    )
    trials = {}  # trial_id -> [Trial, epochs trained]
    events = []  # (time, tie-break, trial_id): the end of a trial's next epoch
    tick = 0
    exhausted = False
    running = 0

    def schedule(now):
        nonlocal tick, exhausted, running
        while running < parallel and not exhausted:
            suggestion = scheduler.suggest(trial_id=len(trials))
            if suggestion is None:
                # The Tuner stops scheduling for good here.
                exhausted = not keep_asking
                return
            if suggestion.spawn_new_trial_id:
                trial = Trial(trial_id=len(trials), config=suggestion.config,
                              creation_time=datetime.datetime.now())
                trials[trial.trial_id] = [trial, 0]
                scheduler.on_trial_add(trial=trial)
                trial_id = trial.trial_id
            else:
                trial_id = suggestion.checkpoint_trial_id
            point = points[trials[trial_id][0].config["point"]]
            tick += 1
            heapq.heappush(events, (now + point.epoch_seconds, tick, trial_id))
            running += 1

    schedule(0.0)
    while events:
        now, _, trial_id = heapq.heappop(events)
        entry = trials[trial_id]
        trial, _ = entry
        point = points[trial.config["point"]]
        entry[1] += 1
        epoch = entry[1]
        decision = scheduler.on_trial_result(
            trial=trial, result={"epoch": epoch, "accuracy": point.curve[epoch - 1]})
        if decision == SchedulerDecision.CONTINUE and epoch < full:
            tick += 1
            heapq.heappush(events, (now + point.epoch_seconds, tick, trial_id))
            continue
        # STOP (pruned, or at max_t) or PAUSE (at a rung): the worker frees.
        scheduler.on_trial_remove(trial=trial)
        running -= 1
        schedule(now)
    epochs = sum(e for _, e in trials.values())
    best = max(v for t, e in trials.values() for v in points[t.config["point"]].curve[:e])
    return epochs, best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--seeds", help="comma-separated; all seeds with a grid by default")
    ap.add_argument("--orders", type=int, default=100, help="random orders of the points per seed")
    ap.add_argument("--parallel", type=int, default=2, help="workers (bench-sweep runs 2)")
    ap.add_argument("--setting", action="append",
                    help="GRACE:ETA, rungs at GRACE x ETA^k below the full budget (default: 4:4, 3:4, 3:3, 2:2)")
    ap.add_argument("--budget", type=float, default=0.40)
    ap.add_argument("--within", type=float, default=1.0)
    args = ap.parse_args()
    logging.disable(logging.WARNING)

    grids, metric = load(args.files)
    if "loss" in metric:
        raise SystemExit(f"{metric}: only a metric to maximize is supported")
    grids = only_seeds(grids, args.seeds)
    scale = 100.0 if "accuracy" in metric else 1.0
    settings = [tuple(int(x) for x in s.split(":")) for s in (args.setting or ["4:4", "3:4", "3:3", "2:2"])]

    print(f"Syne Tune {syne_tune.__version__}; seeds {', '.join(map(str, sorted(grids)))}; "
          f"{args.orders} random orders each (Python's random, seeded by order number); {args.parallel} workers; "
          f"target: within {args.within:g} points of the grid's best with at most {100 * args.budget:.0f}% of its "
          f"epochs.\n")
    print(f"| type | when nothing to suggest | grace:eta (rungs) | target met | within {args.within:g} points "
          f"| epochs % of grid (mean; 90th pct; max) | target met per seed |")
    print("|---|---|---|---|---|---|---|")
    for kind, keep_asking in (("promotion", False), ("promotion", True), ("stopping", False)):
        for grace, eta in settings:
            tally = Tally(args.within, args.budget, scale)
            full = 0
            for seed, by_key in sorted(grids.items()):
                points = [by_key[k] for k in sorted(by_key)]
                full = max(len(p.curve) for p in points)
                outcomes = []
                for n in range(args.orders):
                    order = list(range(len(points)))
                    random.Random(n).shuffle(order)
                    outcomes.append(search(points, order, kind, grace, eta, args.parallel, keep_asking, n))
                tally.seed(seed, outcomes, sum(len(p.curve) for p in points),
                           max(max(p.curve) for p in points))
            rungs = []
            r = grace
            while r < full:
                rungs.append(str(r))
                r *= eta
            when = "kept asking" if keep_asking else "Tuner: stop scheduling"
            print("| " + " | ".join([kind, when, f"{grace}:{eta} ({', '.join(rungs)})"] + tally.cells()) + " |")


if __name__ == "__main__":
    main()
