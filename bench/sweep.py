#!/usr/bin/env python3
"""`make bench-sweep`: one 27-trial search space, six ways, on several instances, with the epochs each spends.

The space (bench/sweep/base.toml, built-in synthetic shapes, no downloads) is
three axes of three values each: `optimizer.learning_rate` (1e-4 too small,
1e-3 good, 1e-2 too large for Adam), `model.dropout` (0, 0.25, 0.5) and
`train.batch_size` (16, 32, 64); every trial's full budget is
`train.epochs` = 27. It is searched by

  grid              bench/sweep/grid.toml: all 27 points, each for 27 epochs
  random-asha-3-4   bench/sweep/random-asha.toml: 27 uniform draws from the
                    same lists (no point twice while new ones are left), ASHA
                    early stopping with rungs at 3 and 12 (`min_epochs = 3`,
                    `reduction_factor = 4`), the setting that met the target
                    most often when replayed on the curves of seeds 1 to 8
                    (examples/asha_replay.rs), then run for real on seeds
                    9 to 20, held out from that choice
  tpe-asha-3-4      bench/sweep/tpe-asha.toml: 27 TPE trials (10 random, then
                    TPE), the same ASHA early stopping
  random-asha       random-asha.toml with rungs at 1, 3 and 9 (`min_epochs =
                    1`, `reduction_factor = 3`), the bench files' setting
                    before 2026-12-05 16:00, for comparison
  random-hyperband  bench/sweep/random-hyperband.toml: the random draws with
                    Hyperband (brackets with rungs from 1, 3, 9 and none)
  random-promotion-4-4
                    bench/sweep/random-asha-promotion.toml: the random draws
                    with promotion-based ASHA (`variant = "promotion"`),
                    rungs at 4 and 16, the promotion setting that met the
                    target most often when replayed on seeds 1 to 8, then
                    run for real on seeds 9 to 20

Row names keep their meaning from one results file to the next; results
before 2026-12-05 16:00 have more rows (ASHA from epoch 3, rungs at 4 and
16, TPE with rungs 1, 3, 9 as `tpe-asha`), described in their own .md files.

on each instance: a seed that sets `experiment.seed` (the synthetic data and
the initial weights) and `[sweep] seed` of all its sweeps. One instance is
one draw of the data and of the search; whether a search finds the grid's
best depends on it, so the benchmark runs several (`--seeds`, 7 first: the
seed of the earlier single-instance results; seeds chosen later, such as
4,5,6,8, are instances no setting was chosen on).

Each sweep runs to its end, one after the other, into its own folder under a
fresh temporary runs directory, with a copy of the release binary (so that a
rebuild during the benchmark cannot change it). From each sweep's
summary.csv and every trial's metrics.csv it prints, and writes to
bench/results/<date>-<time>-sweep.md (and every trial, with its curve and
its mean `epoch_seconds`, to the .csv beside it, which
examples/asha_replay.rs replays): trials done / pruned / failed, epochs trained
(metrics.csv rows over all trials), the best validation metric found, wall
time, epochs as a percentage of the grid's, the gap to the grid's best in
points, and whether the target holds on that instance: within 1 point of the
grid's best with at most 40% of its epochs; then, per search, on how many
instances it holds.

    python3 bench/sweep.py [--runner target/release/runner] [--keep-runs DIR]
        [--seeds 7,1,2,3] [--only grid,random-asha,...] [--note TEXT]
        [--set KEY=VALUE]... [--asha-set KEY=VALUE]...

`--set` overrides a key of all sweeps (`--set train.epochs=9` for a quick
try); `--asha-set` only of the early-stopping sweeps (an alternative setting
such as `--asha-set sweep.early_stop.min_epochs=3`). Both are written into
the results file. Standard library only.
"""

import argparse
import csv
import datetime
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SPACE = HERE / "sweep"
# (key, label, file, overrides of that sweep)
STRATEGIES = [
    ("grid", "grid", "grid.toml", []),
    ("random-asha-3-4", "random + ASHA, rungs 3 and 12", "random-asha.toml", []),
    ("tpe-asha-3-4", "TPE + ASHA, rungs 3 and 12", "tpe-asha.toml", []),
    ("random-asha", "random + ASHA, rungs 1, 3, 9", "random-asha.toml",
     ["sweep.early_stop.min_epochs=1", "sweep.early_stop.reduction_factor=3"]),
    ("random-hyperband", "random + Hyperband", "random-hyperband.toml", []),
    ("random-promotion-4-4", "random + promotion ASHA, rungs 4 and 16", "random-asha-promotion.toml", []),
]
DEFAULT_SEEDS = [7, 1, 2, 3]
TARGET_GAP_POINTS = 1.0
TARGET_EPOCH_PCT = 40.0


def log(msg=""):
    print(msg, flush=True)


def loadavg():
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return "?"


def git_commit():
    def git(*args):
        r = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else None

    head = git("rev-parse", "--short", "HEAD")
    if head is None:
        return "?"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    if dirty:
        n = len(dirty.splitlines())
        return f"{head} + uncommitted changes to {n} tracked file(s)"
    return head


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def metric_rows(trial_dir):
    """The trial's metrics.csv rows (one per epoch trained); none if it has none."""
    path = Path(trial_dir) / "metrics.csv"
    if not path.exists():
        return []
    return read_csv(path)


def fnum(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def fmt_time(seconds):
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m {s:02d}s" if m else f"{s}s"


def run_sweep(bin_path, key, toml, runs_dir, sets, logs_dir):
    """Run one sweep to its end; returns (command, wall seconds, exit code, sweep folder, settings line)."""
    cmd = [str(bin_path), "sweep", str(toml.relative_to(ROOT)), "--no-env", "--runs-dir", str(runs_dir)]
    for s in sets:
        cmd += ["--set", s]
    log_path = logs_dir / f"{key}.log"
    log(f"\n== {key}: {shlex.join(cmd)}")
    log(f"   (full output: {log_path})")
    settings, rungs = None, None
    # The rungs, as --dry-run states them (the sweep itself does not print them).
    dry = subprocess.run(cmd + ["--dry-run"], cwd=ROOT, capture_output=True, text=True)
    for line in dry.stdout.splitlines():
        if line.startswith("Early stopping:"):
            rungs = line.strip()
            log("   " + rungs)
    start = time.monotonic()
    with open(log_path, "w") as logf:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            logf.write(line)
            s = line.rstrip()
            if s.startswith("Running ") and "at a time" in s:
                settings = s
                log("   " + s)
            elif s.startswith("Early stopping") or re.match(r"^\[\d+/\d+\]", s):
                log("   " + s)
        code = proc.wait()
    wall = time.monotonic() - start
    sweeps = sorted((runs_dir).glob("*/sweeps/s[0-9]*"))
    sweep_dir = sweeps[-1] if sweeps else None
    log(f"   exit {code}, {fmt_time(wall)}")
    return cmd, wall, code, sweep_dir, settings, rungs


def analyse(sweep_dir):
    """Per-trial rows of a finished sweep, with the epochs counted from metrics.csv."""
    rows = read_csv(sweep_dir / "summary.csv")
    if not rows:
        raise SystemExit(f"{sweep_dir}/summary.csv has no trials")
    best_cols = [c for c in rows[0] if c.startswith("best_") and c != "best_epoch"]
    metric = best_cols[0][len("best_"):]
    fixed = {"trial", "id", "status", "epochs", "best_epoch", f"best_{metric}", f"last_{metric}",
             "test_accuracy", "wall_seconds", "exit_code", "message", "run_dir"}
    axes = [c for c in rows[0] if c not in fixed]
    trials = []
    for r in rows:
        run_dir = Path(r["run_dir"]) if r.get("run_dir") else None
        m = metric_rows(run_dir) if run_dir else []
        curve = [fnum(x.get(metric)) for x in m]
        seconds = [v for v in (fnum(x.get("epoch_seconds")) for x in m) if v is not None]
        trials.append({
            "trial": int(r["trial"]),
            "id": r["id"],
            "status": r["status"],
            "params": {a: r[a] for a in axes},
            "epochs": len(m),
            "summary_epochs": int(r["epochs"]) if r.get("epochs") else None,
            "best": fnum(r[f"best_{metric}"]),
            "best_epoch": int(r["best_epoch"]) + 1 if r.get("best_epoch") not in (None, "") else None,
            "curve": curve,
            "epoch_seconds": statistics.mean(seconds) if seconds else None,
            "message": r.get("message", ""),
        })
    return metric, axes, trials


def better(metric):
    return (lambda a, b: a < b) if "loss" in metric else (lambda a, b: a > b)


def best_trial(metric, trials):
    cmp = better(metric)
    best = None
    for t in trials:
        if t["best"] is None:
            continue
        if best is None or cmp(t["best"], best["best"]):
            best = t
    return best


def points(metric, grid_best, best):
    """How much worse than the grid's best, in points (percentage points for an accuracy)."""
    scale = 100.0 if "accuracy" in metric else 1.0
    gap = (grid_best - best) if "loss" not in metric else (best - grid_best)
    return gap * scale


def rank_at(metric, trials, trial, epoch):
    """Rank (1 = best) of `trial`'s value after `epoch` epochs among the trials that reached it."""
    vals = [(t["curve"][epoch - 1], t["id"]) for t in trials if len(t["curve"]) >= epoch and t["curve"][epoch - 1] is not None]
    if len(trial["curve"]) < epoch:
        return None, len(vals)
    mine = trial["curve"][epoch - 1]
    cmp = better(metric)
    return 1 + sum(1 for v, _ in vals if cmp(v, mine)), len(vals)


def params_str(params):
    return ", ".join(f"{k}={v}" for k, v in params.items())


def summarize(metric, r, grid):
    """Counts, epochs, best and gap of one sweep `r` against the grid of its instance."""
    trials = r["trials"]
    count = {s: sum(1 for t in trials if t["status"] == s) for s in ("done", "pruned", "failed")}
    r["other"] = len(trials) - sum(count.values())
    r["count"] = count
    r["epochs"] = sum(t["epochs"] for t in trials)
    r["best"] = best_trial(metric, trials)
    grid_best = best_trial(metric, grid["trials"]) if grid else None
    grid_epochs = sum(t["epochs"] for t in grid["trials"]) if grid else None
    r["pct"] = 100.0 * r["epochs"] / grid_epochs if grid_epochs else None
    r["gap"] = points(metric, grid_best["best"], r["best"]["best"]) if grid_best and r["best"] else None
    if r["key"] == "grid":
        r["ok"] = None
    elif r["pct"] is None or r["gap"] is None:
        r["ok"] = None
    else:
        r["ok"] = r["gap"] <= TARGET_GAP_POINTS and r["pct"] <= TARGET_EPOCH_PCT


def instance_notes(metric, results):
    """Where the grid's best point ranked at the rungs, and what each search did with it."""
    grid = results.get("grid")
    notes = []
    if not grid:
        return notes
    grid_best = best_trial(metric, grid["trials"])
    notes.append(f"grid's best: {grid_best['best']:.4f} by {grid_best['id']} ({params_str(grid_best['params'])}) "
                 f"at epoch {grid_best['best_epoch']} of {grid_best['epochs']}.")
    ties = [t for t in grid["trials"] if t["best"] is not None
            and points(metric, grid_best["best"], t["best"]) <= TARGET_GAP_POINTS]
    ties.sort(key=lambda t: t["best"] if "loss" in metric else -t["best"])
    notes.append(f"grid points within {TARGET_GAP_POINTS:g} point of the grid's best: {len(ties)} of "
                 f"{len(grid['trials'])}: " + "; ".join(f"{t['id']} ({params_str(t['params'])}) {t['best']:.4f}" for t in ties) + ".")
    for t in ties:
        ranks = []
        for e in (1, 3, 9):
            rk, n = rank_at(metric, grid["trials"], t, e)
            if rk is not None:
                ranks.append(f"{rk} of {n} after {e}")
        notes.append(f"in the grid, {t['id']} ranked " + ", ".join(ranks) + " epoch(s).")
    good = {t["id"] for t in ties}
    for key, r in results.items():
        if key == "grid":
            continue
        b = r["best"]
        uniq = len({t["id"] for t in r["trials"]})
        tried = [t for t in r["trials"] if t["id"] in good]
        what = "; ".join(f"trial {t['trial']} {t['id']} {t['status']} after {t['epochs']} epoch(s), best {t['best']:.4f}"
                         for t in tried) or "none drawn"
        notes.append(f"{r['label']}: {uniq} distinct points of {len(r['trials'])}; best {b['best']:.4f} by trial {b['trial']} "
                     f"{b['id']} ({params_str(b['params'])}, {b['status']}); the grid's near-best points: {what}.")
    return notes


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runner", default=str(ROOT / "target/release/runner"), help="the runner binary (copied before use)")
    ap.add_argument("--results-dir", default=str(HERE / "results"))
    ap.add_argument("--keep-runs", help="create the runs here (kept) instead of in a temporary folder")
    ap.add_argument("--only", help="comma-separated subset of " + ",".join(k for k, *_ in STRATEGIES) + " (the grid is the reference)")
    ap.add_argument("--seeds", default=",".join(str(s) for s in DEFAULT_SEEDS),
                    help="comma-separated seeds, one instance each (experiment.seed and sweep.seed)")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="KEY=VALUE for all sweeps")
    ap.add_argument("--asha-set", dest="asha_sets", action="append", default=[], help="KEY=VALUE for the early-stopping sweeps only")
    ap.add_argument("--no-results", action="store_true", help="print only; write no results files")
    ap.add_argument("--note", action="append", default=[], help="a line for the results file (why this run, which seeds are held out)")
    args = ap.parse_args()

    names = [k for k, *_ in STRATEGIES]
    wanted = names
    if args.only:
        wanted = [k.strip() for k in args.only.split(",")]
        unknown = [k for k in wanted if k not in names]
        if unknown:
            raise SystemExit(f"unknown strategy {unknown}; choose from {', '.join(names)}")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise SystemExit(f"--seeds {args.seeds!r}: expected comma-separated integers")
    if not seeds:
        raise SystemExit("--seeds: no seed given")

    runner = Path(args.runner)
    if not runner.is_file():
        raise SystemExit(f"{runner} is missing: run `make release` first (make bench-sweep does)")

    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.monotonic()
    load_start = loadavg()
    tmp = Path(tempfile.mkdtemp(prefix="runner-bench-sweep-"))
    runs_root = Path(args.keep_runs).resolve() if args.keep_runs else tmp / "runs"
    if args.keep_runs and runs_root.exists() and any(runs_root.iterdir()):
        raise SystemExit(f"--keep-runs {runs_root} is not empty")
    runs_root.mkdir(parents=True, exist_ok=True)
    bin_copy = tmp / "runner"
    shutil.copy2(runner, bin_copy)
    version = subprocess.run([str(bin_copy), "--version"], capture_output=True, text=True).stdout.strip()
    cpu, cores = cpu_model(), os.cpu_count()
    commit = git_commit()
    log(f"make bench-sweep, {started:%Y-%m-%d %H:%M} UTC: {cpu}, {cores} cores, {version} ({commit})")
    log(f"runs in {runs_root}; load average {load_start}; seeds {seeds}")

    # instances[seed][key] = the sweep's results
    instances = {}
    try:
        for seed in seeds:
            results = {}
            for key, label, toml, extra in STRATEGIES:
                if key not in wanted:
                    continue
                sets = [f"experiment.seed={seed}", f"sweep.seed={seed}", *extra, *args.sets]
                sets += list(args.asha_sets) if key != "grid" else []
                name = f"seed{seed}-{key}"
                cmd, wall, code, sweep_dir, settings, rungs = run_sweep(
                    bin_copy, name, SPACE / toml, runs_root / name, sets, tmp)
                if sweep_dir is None or not (sweep_dir / "summary.csv").exists():
                    tail = (tmp / f"{name}.log").read_text().splitlines()[-30:]
                    raise SystemExit(f"{name}: the sweep left no summary.csv (exit {code}):\n" + "\n".join(tail))
                metric, axes, trials = analyse(sweep_dir)
                if not args.keep_runs:
                    # Every trial keeps every epoch's checkpoint: keeping all
                    # the sweeps' folders to the end ran a disk full.
                    shutil.rmtree(runs_root / name, ignore_errors=True)
                results[key] = dict(key=key, label=label, toml=toml, cmd=cmd, sets=sets, wall=wall, code=code,
                                    settings=settings, rungs=rungs, metric=metric, axes=axes, trials=trials)
            instances[seed] = results
    finally:
        bin_copy.unlink(missing_ok=True)
        if not args.keep_runs:
            shutil.rmtree(tmp / "runs", ignore_errors=True)
    total = time.monotonic() - t0
    load_end = loadavg()

    first = next(iter(next(iter(instances.values())).values()))
    metric = first["metric"]
    for results in instances.values():
        for r in results.values():
            summarize(metric, r, results.get("grid"))

    header = ["seed", "strategy", "trials done / pruned / failed", "epochs trained", "epochs % of grid",
              f"best {metric}", "gap to grid best (points)", "wall time", "target"]
    table = []
    for seed, results in instances.items():
        for r in results.values():
            c = r["count"]
            done = f"{c['done']} / {c['pruned']} / {c['failed']}" + (f" (+{r['other']} other)" if r["other"] else "")
            target = "(reference)" if r["key"] == "grid" else ("?" if r["ok"] is None else ("met" if r["ok"] else "NOT met"))
            table.append([str(seed), r["label"], done, str(r["epochs"]),
                          f"{r['pct']:.1f}%" if r["pct"] is not None else "?",
                          f"{r['best']['best']:.4f}" if r["best"] else "?",
                          f"{r['gap']:+.1f}" if r["gap"] is not None else "?",
                          fmt_time(r["wall"]), target])

    # Over the instances, per search.
    agg_header = ["strategy", "instances meeting the target", "epochs % of grid (mean; range)",
                  "gap in points (median; range)", "instances within 1 point", "wall (mean)"]
    agg = []
    for key, label, *_ in STRATEGIES:
        rs = [res[key] for res in instances.values() if key in res]
        if not rs:
            continue
        pcts = [r["pct"] for r in rs if r["pct"] is not None]
        gaps = [r["gap"] for r in rs if r["gap"] is not None]
        n = len(rs)
        met = "(reference)" if key == "grid" else f"{sum(1 for r in rs if r['ok'])} of {n}"
        within = "-" if key == "grid" else f"{sum(1 for g in gaps if g <= TARGET_GAP_POINTS)} of {n}"
        agg.append([label, met,
                    f"{statistics.mean(pcts):.1f}% ({min(pcts):.1f}-{max(pcts):.1f})" if pcts else "?",
                    f"{statistics.median(gaps):+.1f} ({min(gaps):+.1f} to {max(gaps):+.1f})" if gaps else "?",
                    within, fmt_time(statistics.mean(r["wall"] for r in rs))])

    def text_table(head, rows):
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
        return "\n".join(lines)

    def md_table(head, rows):
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(out)

    target_line = (f"Target: a search with early stopping within {TARGET_GAP_POINTS:g} point of the grid's best "
                   f"{metric} with at most {TARGET_EPOCH_PCT:g}% of the grid's epochs, on the same instance (seed).")
    notes = {seed: instance_notes(metric, results) for seed, results in instances.items()}

    log("")
    log(text_table(header, table))
    log("")
    log(text_table(agg_header, agg))
    log("")
    log(target_line)
    for seed, lines in notes.items():
        log(f"\nseed {seed}:")
        for line in lines:
            log("- " + line)
    log(f"\ntotal {fmt_time(total)}; load average at start {load_start}, at end {load_end}")

    if args.no_results:
        return
    out_dir = Path(args.results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{started:%Y-%m-%d-%H%M}-sweep"
    out, out_csv = out_dir / f"{stem}.md", out_dir / f"{stem}.csv"

    # Every trial of every sweep, for pandas.
    axes = first["axes"]
    with open(out_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["seed", "strategy", "trial", "id", *axes, "status", "epochs", f"best_{metric}", "best_epoch", "curve",
                    "epoch_seconds"])
        for seed, results in instances.items():
            for r in results.values():
                for t in r["trials"]:
                    w.writerow([seed, r["key"], t["trial"], t["id"], *(t["params"].get(a, "") for a in axes),
                                t["status"], t["epochs"], "" if t["best"] is None else f"{t['best']:.4f}",
                                t["best_epoch"] or "",
                                " ".join("" if v is None else f"{v:.4f}" for v in t["curve"]),
                                "" if t["epoch_seconds"] is None else f"{t['epoch_seconds']:.3f}"])

    rungs = {}
    for results in instances.values():
        for r in results.values():
            if r["rungs"]:
                rungs.setdefault(r["label"], r["rungs"])
    md = [
        f"# make bench-sweep, {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"- machine: {cpu}, {cores} cores, Linux {os.uname().release}",
        f"- runner: {version} ({commit}), release build, copied to a temporary folder before the first sweep",
        f"- invoked as: `{shlex.join(['python3', 'bench/sweep.py', *sys.argv[1:]])}`",
        f"- load average at start: {load_start}, at end: {load_end}; total time {fmt_time(total)}",
        f"- scheduling: {first['settings'] or '?'} (`[sweep] parallel = 2`; threads per trial = cores / parallel)",
        "- space: bench/sweep/base.toml (built-in synthetic shapes: 10 classes, 3,000 train / 2,000 validation / 200 test "
        "images, 32x32x3, noise 0.1; a 2-conv CNN with Adam; `train.epochs = 27`, no early-stopping callback) and "
        "3 x 3 x 3 points: `optimizer.learning_rate` [1e-4, 1e-3, 1e-2], `model.dropout` [0.0, 0.25, 0.5], "
        "`train.batch_size` [16, 32, 64]",
        f"- instances: seeds {', '.join(str(s) for s in seeds)}; each sets `experiment.seed` (the synthetic data and the "
        "initial weights) and `[sweep] seed` (the draws) of every sweep of that instance, so the searches of an instance "
        "face the same data as its grid",
        f"- ranked by `{metric}` (max); random draws the grid lists uniformly, redrawing a point the sweep already has while "
        "new ones are left; TPE: `n_startup = 10`, `n_candidates = 24`; early stopping: each search's rungs as "
        "`--dry-run` states them, below (`max_epochs = train.epochs`; a search's overrides of its file: "
        + ("; ".join(f"{label}: " + ", ".join(f"`{o}`" for o in sets) for key, label, _, sets in STRATEGIES
                     if sets and key in wanted) or "none")
        + "; other overrides, if any, below)",
        "- epochs trained: the rows of every trial's metrics.csv, summed. A pruned trial is stopped with SIGUSR1 at the "
        "next batch after its rung's decision; the part of an epoch it had begun is not in this count (the wall time has it); "
        f"best: the best `best_{metric}` of summary.csv over all trials",
        f"- every trial of every sweep, with its curve: `{out_csv.name}`",
    ]
    for line in args.note:
        md.append(f"- note: {line}")
    if args.sets or args.asha_sets:
        md.append(f"- overrides: all sweeps {args.sets or 'none'}; early-stopping sweeps only {args.asha_sets or 'none'}")
    for label, line in rungs.items():
        md.append(f"- {label}, as `--dry-run` states it: {line}")
    md += ["", "## Commands", "", "```sh"]
    for r in next(iter(instances.values())).values():
        md.append(shlex.join(["runner", *r["cmd"][1:]]).replace(str(runs_root), "$RUNS"))
    md += ["```", "",
           f"(shown for the first seed; `runner` is the copy of target/release/runner; `$RUNS/<seed>-<strategy>` a fresh "
           f"temporary folder per sweep; run from the repository root, one sweep after the other.)", "",
           "## Over the instances", "", md_table(agg_header, agg), "", target_line, "",
           "## Each instance", "", md_table(header, table), ""]
    for seed, lines in notes.items():
        md += [f"### seed {seed}", ""] + ["- " + line for line in lines] + [""]
    out.write_text("\n".join(md))
    log(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out} and {out_csv.name}")


if __name__ == "__main__":
    main()
