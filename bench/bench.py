#!/usr/bin/env python3
"""`make bench`: runner against PyTorch and Keras, side by side, in one run.

Every contender runs on this machine, one process at a time, with the same
thread count, model, batch and input, and the ratios come from figures
measured in this run only:

  train   training throughput (images/s, median over the timed part):
          runner through the real `runner run` path (its metrics.csv,
          epochs after the first; the loader runs too), PyTorch and Keras on
          one fixed random batch (bench/train_torch.py, bench/train_keras.py),
          warm-up steps excluded; plus each process's peak RSS
  data    the loader against Keras ImageDataGenerator and torchvision's
          2-worker DataLoader (target/release/bench_data compare)
  tta     wall time to 0.90 test accuracy on Fashion-MNIST, same model and
          optimizer (bench/models/fashion_tta.toml, bench/tta_*.py); the
          clock runs from the first training step and includes the test-set
          evaluation after every epoch, for all three

    bench/.venv/bin/python bench/bench.py --runner target/release/runner \\
        --bench-data target/release/bench_data [--only train,data,tta]

`--smoke` trains a tiny model through `runner run` only and checks that its
figures parse (what CI runs; no peers, no timing claims).

Results are printed as a table and written to bench/results/<date>.md.
"""

import argparse
import csv
import datetime
import os
import platform
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FASHION = Path("/usr/share/datasets/fashion-mnist")


class Failed(Exception):
    pass


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def load():
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def spawn(cmd, out_dir, name, env=None, poll=None):
    """Run `cmd` with stdout/stderr in files; return (rc, stdout, stderr,
    peak RSS MiB, seconds). `poll()` is called every half second while the
    process runs; when it returns True the process gets SIGINT (runner stops
    gracefully after the epoch)."""
    out_path, err_path = out_dir / f"{name}.out", out_dir / f"{name}.err"
    log(f"  $ {shlex.join(str(c) for c in cmd)}")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=ROOT)
        interrupted = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG if poll else 0)
            if pid:
                break
            if not interrupted and poll():
                proc.send_signal(signal.SIGINT)
                interrupted = True
            time.sleep(0.5)
        seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return (
        proc.returncode,
        out_path.read_text(errors="replace"),
        err_path.read_text(errors="replace"),
        usage.ru_maxrss / 1024.0,
        seconds,
    )


def result_fields(text, prefix):
    """The key=value pairs of the last line starting with `prefix`."""
    for line in reversed(text.splitlines()):
        if line.startswith(prefix):
            return dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
    raise Failed(f"no {prefix} line in:\n{text[-2000:]}")


def metrics_rows(run_dir):
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def only_run_dir(runs):
    dirs = [p.parent for p in runs.glob("*/v*/meta.json")]
    if len(dirs) != 1:
        raise Failed(f"expected one run folder under {runs}, found {len(dirs)}")
    return dirs[0]


# --- training throughput -------------------------------------------------

WORKLOADS = {
    # name: (runner model, batch, runner overrides, peer steps, peer warm-up)
    "tutorial": ("bench/models/tutorial.toml", 32, ["data.train_size=192", "train.epochs=3"], 8, 2),
    "fashion": ("bench/models/fashion_cnn.toml", 128, ["data.train_size=6400", "train.epochs=3"], 40, 5),
}


def runner_train(args, work, workload, overrides):
    model = WORKLOADS[workload][0]
    runs = Path(tempfile.mkdtemp(prefix=f"runs-{workload}-", dir=work))
    cmd = [args.runner, "run", model, "--no-env", "--runs-dir", runs, "--threads", str(args.threads)]
    for o in overrides:
        cmd += ["--set", o]
    rc, out, err, rss, secs = spawn(cmd, work, f"runner-{workload}")
    if rc != 0:
        raise Failed(f"runner run {model} exited {rc}:\n{err[-3000:]}")
    rows = metrics_rows(only_run_dir(runs))
    rates = [float(r["images_per_second"]) for r in rows[1:]]  # epoch 1 is the warm-up
    if not rates:
        raise Failed(f"runner run {model}: need at least 2 epochs in metrics.csv, got {len(rows)}")
    return {"img_per_s": statistics.median(rates), "rss_mib": rss, "epochs": len(rows), "wall_s": secs}


def peer_train(args, work, framework, workload):
    _, batch, _, steps, warmup = WORKLOADS[workload]
    script = HERE / f"train_{framework}.py"
    cmd = [args.python, script, "--workload", workload, "--steps", str(steps), "--warmup", str(warmup),
           "--threads", str(args.threads)]
    rc, out, err, rss, secs = spawn(cmd, work, f"{framework}-{workload}")
    if rc != 0:
        raise Failed(f"{script.name} exited {rc}:\n{err[-3000:]}")
    f = result_fields(out, "RESULT")
    return {"img_per_s": float(f["img_per_s"]), "rss_mib": rss, "version": f.get("version", "?")}


# --- time to accuracy ----------------------------------------------------


def runner_tta(args, work, target):
    runs = Path(tempfile.mkdtemp(prefix="runs-tta-", dir=work))
    cmd = [args.runner, "run", "bench/models/fashion_tta.toml", "--no-env", "--runs-dir", runs,
           "--threads", str(args.threads)]
    state = {}

    def reached():
        dirs = list(runs.glob("*/v*/metrics.csv"))
        if not dirs:
            return False
        elapsed = 0.0
        for row in metrics_rows(dirs[0].parent):
            elapsed += float(row["epoch_seconds"])
            if float(row["val_accuracy"]) >= target:
                # metrics.csv counts epochs from 0, as Keras's CSVLogger does.
                state.update(epoch=int(row["epoch"]) + 1, seconds=elapsed, accuracy=float(row["val_accuracy"]))
                return True
        return False

    rc, out, err, rss, secs = spawn(cmd, work, "runner-tta", poll=reached)
    if not state:
        reached()
    if not state:
        raise Failed(f"runner did not reach {target} test accuracy (exit {rc}):\n{err[-3000:]}")
    return state


def peer_tta(args, work, framework, target):
    script = HERE / f"tta_{framework}.py"
    cmd = [args.python, script, "--target", str(target), "--threads", str(args.threads)]
    rc, out, err, rss, secs = spawn(cmd, work, f"{framework}-tta")
    if rc != 0:
        raise Failed(f"{script.name} exited {rc}:\n{err[-3000:]}")
    f = result_fields(out, "TTA_RESULT")
    if f.get("reached") != "true":
        raise Failed(f"{script.name} did not reach {target}: {f}")
    return {"epoch": int(f["epoch"]), "seconds": float(f["seconds"]), "accuracy": float(f.get("accuracy", "nan"))}


# --- data loader ---------------------------------------------------------


def data_loader(args, work):
    jpegs = HERE / "work" / "jpegs"
    rc, out, err, _, _ = spawn([args.bench_data, "generate", jpegs, "2000"], work, "data-generate")
    if rc != 0:
        raise Failed(f"bench_data generate exited {rc}:\n{err}")
    rc, out, err, _, _ = spawn([args.bench_data, "compare", jpegs, args.python, HERE], work, "data-compare")
    if rc != 0:
        raise Failed(f"bench_data compare exited {rc}:\n{err[-3000:]}")
    ours = re.search(r"medians of \d+ runs: runner ([\d.]+) img/s", out)
    keras = re.search(r"vs Keras ImageDataGenerator:\s+([\d.]+)x", out)
    torch = re.search(r"vs torchvision 2-worker loader:\s+([\d.]+)x", out)
    if not (ours and keras and torch):
        raise Failed(f"cannot read bench_data's figures:\n{out}")
    return {"runner": float(ours[1]), "vs_keras": float(keras[1]), "vs_torch": float(torch[1]), "text": out}


# --- report --------------------------------------------------------------


def fmt_ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "n/a"


def render(args, res, started, errors):
    lines = []
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    lines.append(f"# make bench, {started:%Y-%m-%d %H:%M} UTC")
    lines.append("")
    lines.append(f"- machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}")
    lines.append(f"- threads: {args.threads} for every framework (runner --threads, torch.set_num_threads, "
                 "TensorFlow intra/inter-op)")
    lines.append(f"- load average at start: {res.get('load_start', '?')}, at end: {load()}")
    lines.append("- medians over timed steps; warm-up excluded (runner: epoch 1; peers: the first steps)")
    lines.append("")
    train = res.get("train", {})
    if train:
        lines.append("## Training throughput (images/s)")
        lines.append("")
        lines.append("| workload | runner (flex) | PyTorch | Keras | runner / PyTorch | runner / Keras | target |")
        lines.append("|---|---|---|---|---|---|---|")
        targets = {"tutorial": ">= 1.0x both (flex >= 0.6x)", "fashion": ">= 1.0x the faster"}
        for w, r in train.items():
            ours, torch, keras = (r.get(k, {}).get("img_per_s") for k in ("runner", "torch", "keras"))
            cell = lambda v: f"{v:.1f}" if v else "n/a"
            lines.append(f"| {w} (batch {WORKLOADS[w][1]}) | {cell(ours)} | {cell(torch)} | {cell(keras)} | "
                         f"{fmt_ratio(ours, torch)} | {fmt_ratio(ours, keras)} | {targets[w]} |")
        lines.append("")
        lines.append("## Peak RSS (MiB), same processes")
        lines.append("")
        lines.append("| workload | runner | PyTorch | Keras | runner / PyTorch | target |")
        lines.append("|---|---|---|---|---|---|")
        for w, r in train.items():
            ours, torch, keras = (r.get(k, {}).get("rss_mib") for k in ("runner", "torch", "keras"))
            cell = lambda v: f"{v:.0f}" if v else "n/a"
            lines.append(f"| {w} | {cell(ours)} | {cell(torch)} | {cell(keras)} | {fmt_ratio(ours, torch)} | <= 1.5x |")
        lines.append("")
        lines.append("runner's RSS covers the whole `runner run` process (loader, validation, "
                     "report); the peers hold one random batch.")
        lines.append("")
    d = res.get("data")
    if d:
        lines.append("## Data loader (2,000 generated 512x384 JPEGs to 32x3x128x128 batches, tutorial augmentation)")
        lines.append("")
        lines.append(f"| runner img/s | runner / Keras ImageDataGenerator | runner / torchvision (2 workers) | target |")
        lines.append("|---|---|---|---|")
        lines.append(f"| {d['runner']:.0f} | {d['vs_keras']:.1f}x | {d['vs_torch']:.1f}x | >= 5x Keras, >= 2x torchvision |")
        lines.append("")
        lines.append("```")
        lines.append(d["text"].strip())
        lines.append("```")
        lines.append("")
    tta = res.get("tta", {})
    if tta:
        lines.append(f"## Time to {args.target} test accuracy on Fashion-MNIST (seconds)")
        lines.append("")
        lines.append("| | runner | PyTorch | Keras | faster peer / runner | target |")
        lines.append("|---|---|---|---|---|---|")
        s = {k: v.get("seconds") for k, v in tta.items()}
        e = {k: v.get("epoch") for k, v in tta.items()}
        peers = [v for k, v in s.items() if k != "runner" and v]
        best = min(peers) if peers else None
        cell = lambda v: f"{v:.1f}" if v else "n/a"
        lines.append(f"| seconds | {cell(s.get('runner'))} | {cell(s.get('torch'))} | {cell(s.get('keras'))} | "
                     f"{fmt_ratio(best, s.get('runner'))} | >= 1.0x |")
        lines.append(f"| epochs | {e.get('runner', 'n/a')} | {e.get('torch', 'n/a')} | {e.get('keras', 'n/a')} | | |")
        lines.append("")
    if errors:
        lines.append("## Failed")
        lines.append("")
        for e in errors:
            lines.append(f"- {e}")
        lines.append("")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runner", default=str(ROOT / "target/release/runner"))
    p.add_argument("--bench-data", default=str(ROOT / "target/release/bench_data"))
    p.add_argument("--python", default=sys.executable, help="interpreter with torch, torchvision, keras")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--only", default="train,data,tta", help="comma-separated: train, data, tta")
    p.add_argument("--target", type=float, default=0.90)
    p.add_argument("--results", default=str(HERE / "results"), help="folder for <date>.md")
    p.add_argument("--work", default=None, help="folder for raw outputs and run folders "
                   "(default bench/work/<timestamp>)")
    p.add_argument("--smoke", action="store_true", help="tiny runner-only run that checks the plumbing")
    args = p.parse_args()
    started = datetime.datetime.now(datetime.timezone.utc)
    work = Path(args.work) if args.work else HERE / "work" / started.strftime("%Y%m%d-%H%M%S")
    work.mkdir(parents=True, exist_ok=True)

    if args.smoke:
        r = runner_train(args, work, "fashion", ["data.train_size=256", "data.test_size=32", "train.epochs=2"])
        print(f"SMOKE runner fashion img_per_s={r['img_per_s']:.1f} rss_mib={r['rss_mib']:.0f} epochs={r['epochs']}")
        return 0

    only = set(args.only.split(","))
    res = {"load_start": load()}
    errors = []

    def attempt(what, fn):
        try:
            return fn()
        except (Failed, OSError) as e:
            errors.append(f"{what}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
            log(f"FAILED {what}: {e}")
            return None

    if "train" in only:
        res["train"] = {}
        for w in WORKLOADS:
            log(f"training throughput: {w}")
            r = res["train"][w] = {}
            # Interleave: runner, PyTorch, Keras, so drift hits all alike.
            for who, fn in (
                ("runner", lambda: runner_train(args, work, w, WORKLOADS[w][2])),
                ("torch", lambda: peer_train(args, work, "torch", w)),
                ("keras", lambda: peer_train(args, work, "keras", w)),
            ):
                got = attempt(f"{who} {w}", fn)
                if got:
                    r[who] = got
                    log(f"    {who}: {got['img_per_s']:.1f} img/s, peak RSS {got['rss_mib']:.0f} MiB")
    if "data" in only:
        log("data loader")
        got = attempt("data loader", lambda: data_loader(args, work))
        if got:
            res["data"] = got
    if "tta" in only:
        if not (FASHION / "train-images-idx3-ubyte.gz").is_file():
            errors.append(f"tta: Fashion-MNIST is not in {FASHION} (run `make data`)")
        else:
            res["tta"] = {}
            for who, fn in (
                ("runner", lambda: runner_tta(args, work, args.target)),
                ("torch", lambda: peer_tta(args, work, "torch", args.target)),
                ("keras", lambda: peer_tta(args, work, "keras", args.target)),
            ):
                log(f"time to {args.target}: {who}")
                got = attempt(f"tta {who}", fn)
                if got:
                    res["tta"][who] = got
                    log(f"    {who}: {got['seconds']:.1f} s, epoch {got['epoch']}")

    report = render(args, res, started, errors)
    print(report)
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{started:%Y-%m-%d}.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(report + "\n")
    tmp.replace(path)
    log(f"written to {path} (raw outputs in {work})")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
