"""The grid curves that `make bench-sweep` recorded, as the peer replays read them.

bench/sweep.py writes every trial of every sweep to
bench/results/<stamp>-sweep.csv, a grid trial with its whole validation
curve and its mean `epoch_seconds`. Training is deterministic for a seed, so
any search over the 27 points trains those curves; the peer scripts
(sweep_optuna.py, sweep_synetune.py) search them as examples/asha_replay.rs
does. Standard library only, so that each peer's environment can import it.
"""

import csv
import sys
from collections import defaultdict
from dataclasses import dataclass

AXES = ("optimizer.learning_rate", "model.dropout", "train.batch_size")


@dataclass(frozen=True)
class Point:
    """One grid point of one seed: its curve (one value per epoch) and the
    mean seconds of its epochs (1.0 where the file has no such column)."""

    curve: tuple
    epoch_seconds: float


def load(paths):
    """`({seed: {(lr, dropout, batch): Point}}, metric)` from the grid rows of
    `paths`. A grid recorded again (bench-sweep re-runs the grid of every
    seed it searches) must have the same curves; the first file's epoch time
    counts, as in examples/asha_replay.rs."""
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
                curve = tuple(float(v) for v in row["curve"].split())
                seed = int(row["seed"])
                seconds = float(row["epoch_seconds"]) if row.get("epoch_seconds") else 1.0
                known = grids[seed].get(key)
                if known is None:
                    grids[seed][key] = Point(curve, seconds)
                elif known.curve != curve:
                    sys.exit(f"{path}: seed {seed}'s grid point {key} has another curve in an earlier file")
    return grids, metric


def only_seeds(grids, seeds):
    """`grids` restricted to the comma-separated `seeds` (all when empty)."""
    if not seeds:
        return grids
    wanted = {int(s) for s in seeds.split(",")}
    return {s: g for s, g in grids.items() if s in wanted}


class Tally:
    """How often searches meet the target (within `within` points of the
    grid's best with at most `budget` of its epochs), as a markdown row."""

    def __init__(self, within, budget, scale):
        self.within, self.budget, self.scale = within, budget, scale
        self.met = self.close = self.runs = 0
        self.fractions = []
        self.per_seed = []

    def seed(self, seed, outcomes, grid_epochs, reference):
        """Count one seed's searches, each `(epochs, best)`."""
        seed_met = 0
        for epochs, best in outcomes:
            fraction = epochs / grid_epochs
            within = (reference - best) * self.scale <= self.within + 1e-9
            ok = within and fraction <= self.budget + 1e-12
            self.met += ok
            self.close += within
            seed_met += ok
            self.runs += 1
            self.fractions.append(fraction)
        self.per_seed.append(f"{seed}: {100 * seed_met / max(len(outcomes), 1):.0f}%")

    def cells(self):
        """`[target met, within, epochs % (mean; 90th pct; max), per seed]`."""
        f = sorted(self.fractions)
        mean = sum(f) / len(f)
        p90 = f[min(len(f) * 9 // 10, len(f) - 1)]
        return [f"{100 * self.met / self.runs:.0f}%", f"{100 * self.close / self.runs:.0f}%",
                f"{100 * mean:.1f} ({100 * p90:.1f}; {100 * f[-1]:.1f})", ", ".join(self.per_seed)]
