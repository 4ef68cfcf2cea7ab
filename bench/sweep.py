#!/usr/bin/env python3
"""`make bench-sweep`: one 27-trial search space, three ways, with the epochs each spends.

The space (bench/sweep/base.toml, built-in synthetic shapes, no downloads) is
three axes of three values each: `optimizer.learning_rate` (1e-4 too small,
1e-3 good, 1e-2 too large for Adam), `model.dropout` (0, 0.25, 0.5) and
`train.batch_size` (16, 32, 64); every trial's full budget is
`train.epochs` = 27. It is searched by

  grid         bench/sweep/grid.toml: all 27 points, each for 27 epochs
  random+asha  bench/sweep/random-asha.toml: 27 uniform draws from the same
               lists (no point twice while new ones are left), ASHA early stopping (rungs at 1, 3, 9)
  tpe+asha     bench/sweep/tpe-asha.toml: 27 TPE trials (10 random, then
               TPE), the same ASHA early stopping

with the same seeds, data, `parallel` and threads per trial, one sweep after
the other, each into its own folder under a fresh temporary runs directory,
with a copy of the release binary (so that a rebuild during the benchmark
cannot change it). From each sweep's summary.csv and every trial's
metrics.csv it prints, and writes to bench/results/<date>-<time>-sweep.md:
trials done / pruned / failed, epochs trained (metrics.csv rows over all
trials), the best validation metric found (best over all trials' best
epoch), wall time, epochs as a percentage of the grid's, the gap to the
grid's best in points, and whether the target holds: an ASHA search within
1 point of the grid's best with at most 40% of its epochs.

    python3 bench/sweep.py [--runner target/release/runner] [--keep-runs DIR]
        [--only grid,random-asha,tpe-asha] [--set KEY=VALUE]... [--asha-set KEY=VALUE]...

`--set` overrides a key of all three sweeps (`--set train.epochs=9` for a
quick try); `--asha-set` only of the two ASHA sweeps (an alternative
setting such as `--asha-set sweep.early_stop.min_epochs=3`). Both are
written into the results file. Standard library only.
"""

import argparse
import csv
import datetime
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SPACE = HERE / "sweep"
STRATEGIES = [
    ("grid", "grid", "grid.toml"),
    ("random-asha", "random + ASHA", "random-asha.toml"),
    ("tpe-asha", "TPE + ASHA", "tpe-asha.toml"),
]
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runner", default=str(ROOT / "target/release/runner"), help="the runner binary (copied before use)")
    ap.add_argument("--results-dir", default=str(HERE / "results"))
    ap.add_argument("--keep-runs", help="create the runs here (kept) instead of in a temporary folder")
    ap.add_argument("--only", help="comma-separated subset of grid,random-asha,tpe-asha (the grid is the reference)")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="KEY=VALUE for all three sweeps")
    ap.add_argument("--asha-set", dest="asha_sets", action="append", default=[], help="KEY=VALUE for the ASHA sweeps only")
    ap.add_argument("--no-results", action="store_true", help="print only; write no results file")
    args = ap.parse_args()

    wanted = [k for k, _, _ in STRATEGIES]
    if args.only:
        wanted = [k.strip() for k in args.only.split(",")]
        unknown = [k for k in wanted if k not in {k for k, _, _ in STRATEGIES}]
        if unknown:
            raise SystemExit(f"unknown strategy {unknown}; choose from grid, random-asha, tpe-asha")

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
    log(f"runs in {runs_root}; load average {load_start}")

    results = {}
    try:
        for key, label, toml in STRATEGIES:
            if key not in wanted:
                continue
            sets = list(args.sets) + (list(args.asha_sets) if key != "grid" else [])
            cmd, wall, code, sweep_dir, settings, rungs = run_sweep(
                bin_copy, key, SPACE / toml, runs_root / key, sets, tmp)
            if sweep_dir is None or not (sweep_dir / "summary.csv").exists():
                tail = (tmp / f"{key}.log").read_text().splitlines()[-30:]
                raise SystemExit(f"{key}: the sweep left no summary.csv (exit {code}):\n" + "\n".join(tail))
            metric, axes, trials = analyse(sweep_dir)
            results[key] = dict(label=label, toml=toml, cmd=cmd, sets=sets, wall=wall, code=code,
                                sweep_dir=sweep_dir, settings=settings, rungs=rungs, metric=metric, axes=axes, trials=trials)
    finally:
        bin_copy.unlink(missing_ok=True)
        if not args.keep_runs:
            shutil.rmtree(tmp / "runs", ignore_errors=True)
    total = time.monotonic() - t0
    load_end = loadavg()

    # The table.
    grid = results.get("grid")
    metric = next(iter(results.values()))["metric"]
    grid_best = best_trial(metric, grid["trials"]) if grid else None
    grid_epochs = sum(t["epochs"] for t in grid["trials"]) if grid else None
    header = ["strategy", "trials done / pruned / failed", "epochs trained", "epochs % of grid",
              f"best {metric}", "gap to grid best (points)", "wall time", "target"]
    table = []
    verdicts = []
    for key, r in results.items():
        trials = r["trials"]
        count = {s: sum(1 for t in trials if t["status"] == s) for s in ("done", "pruned", "failed")}
        other = len(trials) - sum(count.values())
        epochs = sum(t["epochs"] for t in trials)
        b = best_trial(metric, trials)
        r.update(epochs=epochs, best=b, count=count)
        pct = 100.0 * epochs / grid_epochs if grid_epochs else None
        gap = points(metric, grid_best["best"], b["best"]) if grid_best and b else None
        if key == "grid" or pct is None or gap is None:
            target = "(reference)" if key == "grid" else "?"
        else:
            ok = gap <= TARGET_GAP_POINTS and pct <= TARGET_EPOCH_PCT
            target = "met" if ok else "NOT met"
            verdicts.append((r["label"], ok, gap, pct))
        done = f"{count['done']} / {count['pruned']} / {count['failed']}" + (f" (+{other} other)" if other else "")
        table.append([
            r["label"], done, str(epochs),
            f"{pct:.1f}%" if pct is not None else "?",
            f"{b['best']:.4f}" if b else "?",
            f"{gap:+.1f}" if gap is not None else "?",
            fmt_time(r["wall"]), target,
        ])

    def text_table(rows):
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
        return "\n".join(lines)

    def md_table(head, rows):
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(out)

    target_line = (f"Target: an ASHA search within {TARGET_GAP_POINTS:g} point of the grid's best "
                   f"{metric} with at most {TARGET_EPOCH_PCT:g}% of the grid's epochs.")
    verdict_lines = [
        f"- {label}: {'met' if ok else 'NOT met'} (gap {gap:+.1f} points, {pct:.1f}% of the grid's epochs)"
        for label, ok, gap, pct in verdicts
    ]

    # Where each search found its best, and how the grid's best point looked at the rungs.
    notes = []
    if grid_best:
        notes.append(f"- grid's best: {grid_best['best']:.4f} by {grid_best['id']} ({params_str(grid_best['params'])}) "
                     f"at epoch {grid_best['best_epoch']} of {grid_best['epochs']}.")
        ties = [t for t in grid["trials"] if t["best"] is not None and points(metric, grid_best["best"], t["best"]) <= TARGET_GAP_POINTS]
        notes.append(f"- grid points within {TARGET_GAP_POINTS:g} point of the grid's best: {len(ties)} of {len(grid['trials'])}: "
                     + "; ".join(f"{t['id']} ({params_str(t['params'])}) {t['best']:.4f}" for t in sorted(ties, key=lambda t: -t['best'] if 'loss' not in metric else t['best'])) + ".")
        rung_ranks = []
        for e in (1, 3, 9):
            rk, n = rank_at(metric, grid["trials"], grid_best, e)
            if rk is not None:
                rung_ranks.append(f"{rk} of {n} after {e} epoch(s) ({grid_best['curve'][e - 1]:.4f})")
        if rung_ranks:
            notes.append(f"- in the grid, {grid_best['id']} ranked " + ", ".join(rung_ranks)
                         + " (ASHA with reduction factor 3 keeps about the top third at each rung).")
        good_ids = {t["id"] for t in ties}
        for key, r in results.items():
            if key == "grid":
                continue
            b = r["best"]
            uniq = len({t["id"] for t in r["trials"]})
            tried = [t for t in r["trials"] if t["id"] in good_ids]
            what = "; ".join(f"trial {t['trial']} {t['id']} {t['status']} after {t['epochs']} epoch(s), best {t['best']:.4f}" for t in tried) or "none"
            seen, repeats, repeat_epochs = set(), 0, 0
            for t in r["trials"]:
                if t["id"] in seen:
                    repeats += 1
                    repeat_epochs += t["epochs"]
                seen.add(t["id"])
            notes.append(f"- {r['label']}: {repeats} trial(s) repeat a point an earlier trial of the sweep had "
                         f"(training is deterministic, so a repeat gives the same curve); they trained "
                         f"{repeat_epochs} of its {r['epochs']} epochs.")
            notes.append(f"- {r['label']}: {uniq} distinct points of 27; best {b['best']:.4f} by trial {b['trial']} {b['id']} "
                         f"({params_str(b['params'])}, {b['status']}) at epoch {b['best_epoch']}; "
                         f"its trials of the grid's near-best points ({TARGET_GAP_POINTS:g} point): {what}.")

    log("")
    log(text_table(table))
    log("")
    log(target_line)
    for line in verdict_lines:
        log(line)
    log("")
    for line in notes:
        log(line)
    log(f"\ntotal {fmt_time(total)}; load average at start {load_start}, at end {load_end}")

    if args.no_results:
        return
    out_dir = Path(args.results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{started:%Y-%m-%d-%H%M}-sweep.md"
    first = next(iter(results.values()))
    md = [
        f"# make bench-sweep, {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"- machine: {cpu}, {cores} cores, Linux {os.uname().release}",
        f"- runner: {version} ({commit}), release build, copied to a temporary folder before the first sweep",
        f"- invoked as: `{shlex.join(['python3', 'bench/sweep.py', *sys.argv[1:]])}`",
        f"- load average at start: {load_start}, at end: {load_end}; total time {fmt_time(total)}",
        f"- scheduling: {first['settings'] or '?'} (`[sweep] parallel = 2`; threads per trial = cores / parallel)",
        "- space: bench/sweep/base.toml (built-in synthetic shapes: 10 classes, 3,000 train / 500 validation / 200 test "
        "images, 32x32x3, noise 0.1; a 2-conv CNN with Adam; `train.epochs = 27`, no early-stopping callback) and "
        "3 x 3 x 3 points: `optimizer.learning_rate` [1e-4, 1e-3, 1e-2], `model.dropout` [0.0, 0.25, 0.5], "
        "`train.batch_size` [16, 32, 64]",
        "- same `experiment.seed = 7` (data, weights) and `[sweep] seed = 1` for all three; "
        f"ranked by `{metric}` (max); random draws the grid lists uniformly, redrawing a point the sweep already has (as TPE does) while new ones are left; "
        "TPE: `n_startup = 10`, `n_candidates = 24`; ASHA: `min_epochs = 1`, `reduction_factor = 3`, "
        "`max_epochs = train.epochs`, so rungs at 1, 3 and 9 epochs (as in the files; overrides, if any, and the rungs as `--dry-run` states them, below)",
        "- epochs trained: the rows of every trial's metrics.csv, summed (a pruned trial may finish the "
        "epoch it is in when stopped, so it can show one epoch past its rung); best: the best `best_"
        f"{metric}` of summary.csv over all trials",
    ]
    if args.sets or args.asha_sets:
        md.append(f"- overrides: all sweeps {args.sets or 'none'}; ASHA sweeps only {args.asha_sets or 'none'}")
    for r in results.values():
        if r["rungs"]:
            md.append(f"- {r['label']}, as `--dry-run` states it: {r['rungs']}")
    md += ["", "## Commands", "", "```sh"]
    md += [shlex.join(["runner", *r["cmd"][1:]]).replace(str(runs_root), "$RUNS") for r in results.values()]
    md += ["```", "",
           f"(`runner` is the copy of target/release/runner; `$RUNS/<strategy>` a fresh temporary folder per sweep; "
           f"run from the repository root, one sweep after the other.)", "",
           "## Results", "", md_table(header, table), "", target_line, ""]
    md += verdict_lines + ["", "## Notes", ""] + notes
    for key, r in results.items():
        md += ["", f"## {r['label']}: every trial", "",
               md_table(["trial", "id", *r["axes"], "status", "epochs", f"best {metric}", "best epoch"],
                        [[str(t["trial"]), t["id"], *t["params"].values(), t["status"], str(t["epochs"]),
                          f"{t['best']:.4f}" if t["best"] is not None else "-", str(t["best_epoch"] or "-")]
                         for t in r["trials"]])]
    out.write_text("\n".join(md) + "\n")
    log(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


if __name__ == "__main__":
    main()
