#!/usr/bin/env python3
"""`make bench`: runner against PyTorch and Keras on the CPU, side by side, in one run.

Every contender runs on this machine, one process at a time, interleaved
round by round (so that drifting load hits all alike), with the same thread
count. The ratios come from figures measured in this run only.

  train   training throughput (images/s) on the same images: runner trains
          through the real `runner run` path (its loader makes the images,
          epochs after the first are timed); PyTorch and Keras step through
          exactly those images, exported once by `bench_data export`, from
          memory (no loader in their timed loop). Default and tuned rows for
          each peer: PyTorch eager NCHW, and channels_last + torch.compile;
          Keras as compiled by default, and jit_compile=True (XLA). Medians
          over ROUNDS runs. Peak RSS of each process, and peak RSS above the
          framework's idle process (`runner --version`, `import torch`,
          `import tensorflow, keras`).
  data    the loaders on 2,000 generated 512x384 JPEGs with the tutorial's
          augmentation, at 1 thread and at all cores each: runner (rayon
          threads), torchvision (DataLoader workers; default decoding and
          PIL draft mode, which decodes at a reduced DCT scale as runner
          does), Keras ImageDataGenerator (PyDataset workers; no draft mode).
  tta     wall time to 0.90 test accuracy on Fashion-MNIST, same model and
          optimizer (bench/models/fashion_tta.toml, bench/tta_*.py), for
          SEEDS seeds each, median: from the process's start (imports, data
          loading, checkpoints and logging included) to the moment the epoch
          that reached the target is reported (runner: its metrics.csv row,
          written after the checkpoint; peers: their epoch line).

    bench/.venv/bin/python bench/bench.py [--only train,data,tta] [--threads N]
    bench/bench.py --compare bench/results/A.md bench/results/B.md

Each results file (bench/results/<date>-<time>.md) records the CPU model and
its vector flags, the versions and every framework's settings, and ends in
a JSON block; `--compare` prints two runs side by side and refuses when they
were measured on different machines. `--smoke` trains a tiny model through
`runner run` only and checks that its figures parse (what CI runs).
"""

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FASHION = Path("/usr/share/datasets/fashion-mnist")
FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "amx_tile")


class Failed(Exception):
    pass


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def load():
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def machine():
    """What the figures depend on: CPU model, vector flags, cores, OS."""
    model, flags = "?", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "?":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {
        "cpu": model,
        "flags": [f for f in FLAGS if f in flags],
        "cores": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
    }


def fingerprint(m):
    """The part of `machine()` that must match for two runs to compare."""
    return (m["cpu"], tuple(m["flags"]), m["cores"])


def spawn(cmd, out_dir, name, env=None, on_line=None, poll=None):
    """Run `cmd` with stdout (and stderr) in files. `on_line(line, seconds)`
    sees each stdout line as it is printed; `poll(seconds)` is called every
    0.05 s. Either may return True to stop the process with SIGINT (runner
    then finishes its epoch and exits cleanly). Returns (rc, stdout, stderr,
    peak RSS MiB, seconds)."""
    out_path, err_path = out_dir / f"{name}.out", out_dir / f"{name}.err"
    log(f"  $ {shlex.join(str(c) for c in cmd)}")
    with open(out_path, "w") as out, open(err_path, "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=err, env=env,
                                cwd=ROOT, text=True, bufsize=1)
        stop = threading.Event()

        def reader():
            for line in proc.stdout:
                out.write(line)
                out.flush()
                if on_line and on_line(line, time.perf_counter() - start):
                    stop.set()

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        interrupted = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if not interrupted and (stop.is_set() or (poll and poll(time.perf_counter() - start))):
                proc.send_signal(signal.SIGINT)
                interrupted = True
            time.sleep(0.05)
        seconds = time.perf_counter() - start
        t.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return (proc.returncode, out_path.read_text(errors="replace"), err_path.read_text(errors="replace"),
            usage.ru_maxrss / 1024.0, seconds)


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
    import csv
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def only_run_dir(runs):
    dirs = [p.parent for p in runs.glob("*/v*/meta.json")]
    if len(dirs) != 1:
        raise Failed(f"expected one run folder under {runs}, found {len(dirs)}")
    return dirs[0]


def median(values):
    return statistics.median(values) if values else None


# --- training throughput -------------------------------------------------

WORKLOADS = {
    # name: (runner model, batch, training images, peer steps, peer warm-up)
    "tutorial": ("bench/models/tutorial.toml", 32, 192, 8, 2),
    "fashion": ("bench/models/fashion_cnn.toml", 128, 6400, 40, 5),
}

# contender: (framework, script flags, label)
CONTENDERS = {
    "runner": ("runner", [], "runner (flex)"),
    "torch": ("torch", [], "PyTorch (eager, NCHW)"),
    "torch_tuned": ("torch", ["--channels-last", "--compile"], "PyTorch tuned (channels_last, torch.compile)"),
    "keras": ("keras", [], "Keras (default compile)"),
    "keras_tuned": ("keras", ["--jit-compile"], "Keras tuned (jit_compile=True, XLA)"),
}


def export_inputs(args, work, workload):
    """The images runner trains on for `workload`, as .npy for the peers."""
    model, _, images, _, _ = WORKLOADS[workload]
    prefix = work / f"inputs-{workload}"
    rc, out, err, _, _ = spawn([args.bench_data, "export", model, prefix, images], work, f"export-{workload}")
    if rc != 0:
        raise Failed(f"bench_data export {model} exited {rc}:\n{err[-2000:]}")
    return prefix


def runner_train(args, work, workload, overrides, tag):
    model, _, images, _, _ = WORKLOADS[workload]
    runs = Path(tempfile.mkdtemp(prefix=f"runs-{workload}-", dir=work))
    cmd = [args.runner, "run", model, "--no-env", "--runs-dir", runs, "--threads", args.threads,
           "--set", f"data.train_size={images}"]
    for o in overrides:
        cmd += ["--set", o]
    rc, out, err, rss, secs = spawn(cmd, work, f"runner-{workload}-{tag}")
    if rc != 0:
        raise Failed(f"runner run {model} exited {rc}:\n{err[-3000:]}")
    rows = metrics_rows(only_run_dir(runs))
    rates = [float(r["images_per_second"]) for r in rows[1:]]  # epoch 1 is the warm-up
    if not rates:
        raise Failed(f"runner run {model}: need at least 2 epochs in metrics.csv, got {len(rows)}")
    return {"img_per_s": statistics.median(rates), "rss_mib": rss, "epochs": len(rows), "wall_s": secs}


def peer_train(args, work, contender, workload, inputs, tag):
    framework, flags, _ = CONTENDERS[contender]
    _, batch, _, steps, warmup = WORKLOADS[workload]
    script = HERE / f"train_{framework}.py"
    cmd = [args.python, script, "--workload", workload, "--steps", steps, "--warmup", warmup,
           "--threads", args.threads, "--data", inputs, *flags]
    rc, out, err, rss, secs = spawn(cmd, work, f"{contender}-{workload}-{tag}")
    if rc != 0:
        raise Failed(f"{script.name} {' '.join(flags)} exited {rc}:\n{err[-3000:]}")
    f = result_fields(out, "RESULT")
    return {"img_per_s": float(f["img_per_s"]), "rss_mib": rss, "version": f.get("version", "?"),
            "settings": {k: f[k] for k in ("threads", "interop", "tuning", "inputs") if k in f}}


def idle_rss(args, work):
    """Peak RSS of each framework's process doing nothing but start."""
    out = {}
    for who, cmd in (
        ("runner", [args.runner, "--version"]),
        ("torch", [args.python, "-c", "import torch"]),
        ("keras", [args.python, "-c", "import os; os.environ['TF_CPP_MIN_LOG_LEVEL']='3'; "
                                       "import tensorflow, keras"]),
    ):
        rc, _, err, rss, _ = spawn(cmd, work, f"idle-{who}")
        if rc != 0:
            raise Failed(f"idle {who} exited {rc}: {err[-500:]}")
        out[who] = rss
    return out


def train(args, work, res, attempt):
    res["train"] = {}
    res["idle_rss"] = attempt("idle RSS", lambda: idle_rss(args, work)) or {}
    for w in WORKLOADS:
        log(f"training throughput: {w}")
        inputs = attempt(f"export {w}", lambda: export_inputs(args, work, w))
        runs = {c: [] for c in CONTENDERS}
        for r in range(args.rounds):
            for c in CONTENDERS:
                if c == "runner":
                    fn = lambda: runner_train(args, work, w, ["train.epochs=3"], r)  # noqa: E731
                elif inputs:
                    fn = lambda: peer_train(args, work, c, w, inputs, r)  # noqa: E731
                else:
                    continue
                got = attempt(f"{c} {w} round {r + 1}", fn)
                if got:
                    runs[c].append(got)
                    log(f"    {c}: {got['img_per_s']:.1f} img/s, peak RSS {got['rss_mib']:.0f} MiB")
        res["train"][w] = {
            c: {
                "img_per_s": median([g["img_per_s"] for g in got]),
                "runs": [round(g["img_per_s"], 2) for g in got],
                "rss_mib": median([g["rss_mib"] for g in got]),
                **({"version": got[0]["version"], "settings": got[0]["settings"]} if "version" in got[0] else {}),
            }
            for c, got in runs.items() if got
        }


# --- data loaders ----------------------------------------------------------

LOADERS = {
    # name: (label, command builder(args, jpegs, threads))
    "runner": ("runner loader (rayon threads; JPEGs decoded at a reduced DCT scale)",
               lambda a, d, t: [a.bench_data, "rust", d]),
    "torchvision": ("torchvision DataLoader (workers; full decode)",
                    lambda a, d, t: [a.python, HERE / "data_torch.py", d, "--workers", t]),
    "torchvision_draft": ("torchvision DataLoader (workers; PIL draft mode)",
                          lambda a, d, t: [a.python, HERE / "data_torch.py", d, "--workers", t, "--draft"]),
    "keras": ("Keras ImageDataGenerator (PyDataset workers; full decode, no draft mode)",
              lambda a, d, t: [a.python, HERE / "data_keras.py", d, "--workers", t]),
}


def data_loaders(args, work, res, attempt):
    jpegs = HERE / "work" / "jpegs"
    rc, _, err, _, _ = spawn([args.bench_data, "generate", jpegs, 2000], work, "data-generate")
    if rc != 0:
        raise Failed(f"bench_data generate exited {rc}:\n{err}")
    thread_counts = sorted({1, args.threads})
    got = {(name, t): [] for name in LOADERS for t in thread_counts}
    for r in range(args.rounds):
        for t in thread_counts:
            for name, (_, build) in LOADERS.items():
                env = dict(os.environ, RAYON_NUM_THREADS=str(t))

                def run_once():
                    rc, out, err, _, _ = spawn(build(args, jpegs, t), work, f"data-{name}-{t}-{r}", env=env)
                    if rc != 0:
                        raise Failed(f"{name} loader exited {rc}:\n{err[-2000:]}")
                    f = out.strip().splitlines()[-1].split()
                    if f[0] != "RESULT":
                        raise Failed(f"{name} loader printed no RESULT line")
                    return int(f[1]) / float(f[2])

                rate = attempt(f"data {name} {t} thread(s) round {r + 1}", run_once)
                if rate:
                    got[(name, t)].append(rate)
                    log(f"    {name}, {t} thread(s): {rate:.0f} img/s")
    res["data"] = {
        f"{name}@{t}": {"img_per_s": median(v), "runs": [round(x) for x in v]}
        for (name, t), v in got.items() if v
    }
    res["data_threads"] = thread_counts


# --- time to accuracy ----------------------------------------------------


def runner_tta(args, work, target, seed):
    runs = Path(tempfile.mkdtemp(prefix="runs-tta-", dir=work))
    cmd = [args.runner, "run", "bench/models/fashion_tta.toml", "--no-env", "--runs-dir", runs,
           "--threads", args.threads, "--set", f"experiment.seed={seed}"]
    state = {}

    def reached(seconds):
        if state:
            return True
        dirs = list(runs.glob("*/v*/metrics.csv"))
        if not dirs:
            return False
        train_s = 0.0
        for row in metrics_rows(dirs[0].parent):
            train_s += float(row["epoch_seconds"])
            if float(row["val_accuracy"]) >= target:
                # metrics.csv counts epochs from 0, as Keras's CSVLogger does.
                state.update(epoch=int(row["epoch"]) + 1, seconds=seconds, accuracy=float(row["val_accuracy"]),
                             epoch_seconds_sum=train_s)
                return True
        return False

    rc, out, err, rss, secs = spawn(cmd, work, f"runner-tta-{seed}", poll=reached)
    if not state:
        raise Failed(f"runner did not reach {target} test accuracy (exit {rc}):\n{err[-3000:]}")
    return state


def peer_tta(args, work, framework, target, seed):
    script = HERE / f"tta_{framework}.py"
    cmd = [args.python, script, "--target", target, "--threads", args.threads, "--seed", seed]
    state = {}
    line_re = re.compile(r"epoch\s+(\d+):.*test_accuracy ([0-9.]+)")

    def on_line(line, seconds):
        m = line_re.search(line)
        if m and not state and float(m.group(2)) >= target:
            state.update(epoch=int(m.group(1)), seconds=seconds, accuracy=float(m.group(2)))
        return False

    rc, out, err, rss, secs = spawn(cmd, work, f"{framework}-tta-{seed}", on_line=on_line)
    if rc != 0:
        raise Failed(f"{script.name} exited {rc}:\n{err[-3000:]}")
    if not state:
        raise Failed(f"{script.name} did not reach {target}")
    f = result_fields(out, "TTA_RESULT")
    state["own_clock_seconds"] = float(f.get("seconds", "nan"))
    state["version"] = f.get("version", "?")
    return state


def tta(args, work, res, attempt):
    if not (FASHION / "train-images-idx3-ubyte.gz").is_file():
        raise Failed(f"Fashion-MNIST is not in {FASHION} (run `make data`)")
    seeds = list(range(1, args.seeds + 1))
    got = {"runner": [], "torch": [], "keras": []}
    for seed in seeds:
        for who in got:
            log(f"time to {args.target}: {who}, seed {seed}")
            if who == "runner":
                fn = lambda: runner_tta(args, work, args.target, seed)  # noqa: E731
            else:
                fn = lambda: peer_tta(args, work, who, args.target, seed)  # noqa: E731
            r = attempt(f"tta {who} seed {seed}", fn)
            if r:
                got[who].append(r)
                log(f"    {who}: {r['seconds']:.1f} s wall, epoch {r['epoch']}")
    res["tta"] = {
        who: {
            "seconds": median([r["seconds"] for r in rs]),
            "epochs": median([r["epoch"] for r in rs]),
            "runs": [{"seed": s, "seconds": round(r["seconds"], 1), "epoch": r["epoch"]} for s, r in zip(seeds, rs)],
        }
        for who, rs in got.items() if rs
    }


# --- report --------------------------------------------------------------


def fmt_ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "n/a"


def cell(v, spec=".1f"):
    return format(v, spec) if v is not None else "n/a"


def render(args, res, started):
    m = res["machine"]
    v = res.get("versions", {})
    lines = [
        f"# make bench, {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"- machine: {m['cpu']}, {m['cores']} cores, flags {' '.join(m['flags']) or 'none of ' + ', '.join(FLAGS)}, {m['os']}",
        f"- versions: runner {v.get('runner', '?')}; PyTorch {v.get('torch', '?')}; Keras/TensorFlow "
        f"{v.get('keras', '?')}; Python {platform.python_version()}",
        f"- threads: {args.threads} for every framework: runner `--threads` (one rayon pool); PyTorch "
        f"set_num_threads and set_num_interop_threads; TensorFlow intra- and inter-op pools",
        f"- load average at start: {res.get('load_start', '?')}, at end: {load()}",
        f"- every contender ran {args.rounds} times, interleaved; medians (runs in the JSON block)",
        "",
    ]
    train = res.get("train", {})
    if train:
        lines += [
            "## Training throughput (images/s), the same images for every framework",
            "",
            "runner trains through `runner run` (its loader makes the images; epochs 2 and 3 timed); "
            "the peers step through the same images, exported by `bench_data export`, from memory "
            "(warm-up steps excluded).",
            "",
            "| workload | " + " | ".join(CONTENDERS[c][2] for c in CONTENDERS) + " | runner / fastest peer |",
            "|---|" + "---|" * (len(CONTENDERS) + 1),
        ]
        for w, r in train.items():
            rates = {c: r.get(c, {}).get("img_per_s") for c in CONTENDERS}
            peers = [x for c, x in rates.items() if c != "runner" and x]
            lines.append(f"| {w} (batch {WORKLOADS[w][1]}) | " + " | ".join(cell(rates[c]) for c in CONTENDERS)
                         + f" | {fmt_ratio(rates['runner'], max(peers) if peers else None)} |")
        idle = res.get("idle_rss", {})
        lines += [
            "",
            "## Peak RSS (MiB): the process, and above the framework's idle process",
            "",
            f"Idle: runner {cell(idle.get('runner'), '.0f')} (`runner --version`), PyTorch "
            f"{cell(idle.get('torch'), '.0f')} (`import torch`), Keras {cell(idle.get('keras'), '.0f')} "
            "(`import tensorflow, keras`). runner's figure covers its loader, validation and report; the "
            "peers hold the exported images.",
            "",
            "| workload | " + " | ".join(CONTENDERS[c][2] for c in CONTENDERS) + " |",
            "|---|" + "---|" * len(CONTENDERS),
        ]
        for w, r in train.items():
            cells = []
            for c in CONTENDERS:
                rss = r.get(c, {}).get("rss_mib")
                base = idle.get(CONTENDERS[c][0])
                cells.append(f"{cell(rss, '.0f')} ({cell(rss - base, '+.0f') if rss and base else 'n/a'})")
            lines.append(f"| {w} | " + " | ".join(cells) + " |")
        lines.append("")
    d = res.get("data")
    if d:
        counts = res["data_threads"]
        lines += [
            "## Data loaders (2,000 generated 512x384 JPEGs to 32x3x128x128 batches, tutorial augmentation)",
            "",
            "images/s; threads are rayon threads for runner, worker processes for torchvision, "
            "PyDataset worker threads for Keras (1 = decoding in one thread).",
            "",
            "| loader | " + " | ".join(f"{t} thread(s)" for t in counts) + " |",
            "|---|" + "---|" * len(counts),
        ]
        for name, (label, _) in LOADERS.items():
            lines.append(f"| {label} | " + " | ".join(cell(d.get(f"{name}@{t}", {}).get("img_per_s"), ".0f")
                                                      for t in counts) + " |")
        for t in counts:
            ours = d.get(f"runner@{t}", {}).get("img_per_s")
            lines.append("")
            lines.append(f"At {t} thread(s): runner / torchvision {fmt_ratio(ours, d.get(f'torchvision@{t}', {}).get('img_per_s'))}, "
                         f"/ torchvision with draft mode {fmt_ratio(ours, d.get(f'torchvision_draft@{t}', {}).get('img_per_s'))}, "
                         f"/ Keras {fmt_ratio(ours, d.get(f'keras@{t}', {}).get('img_per_s'))}.")
        lines.append("")
    t = res.get("tta", {})
    if t:
        s = {k: x.get("seconds") for k, x in t.items()}
        e = {k: x.get("epochs") for k, x in t.items()}
        peers = [x for k, x in s.items() if k != "runner" and x]
        lines += [
            f"## Time to {args.target} test accuracy on Fashion-MNIST (wall seconds, median of {args.seeds} seeds)",
            "",
            "From the process's start to the report of the epoch that reached the target: imports, data "
            "loading, every epoch's test evaluation, and runner's checkpoints and logs included.",
            "",
            "| | runner | PyTorch | Keras | faster peer / runner |",
            "|---|---|---|---|---|",
            f"| seconds | {cell(s.get('runner'))} | {cell(s.get('torch'))} | {cell(s.get('keras'))} | "
            f"{fmt_ratio(min(peers) if peers else None, s.get('runner'))} |",
            f"| epochs | {cell(e.get('runner'), 'g')} | {cell(e.get('torch'), 'g')} | {cell(e.get('keras'), 'g')} | |",
            "",
        ]
    if res.get("errors"):
        lines += ["## Failed", ""] + [f"- {x}" for x in res["errors"]] + [""]
    lines += ["```json", json.dumps({k: v for k, v in res.items() if k != "errors"}, indent=1, default=str), "```"]
    return "\n".join(lines)


def read_results(path):
    text = Path(path).read_text()
    m = re.search(r"```json\n(.*)\n```\s*$", text, re.S)
    if not m:
        raise Failed(f"{path} has no JSON block (written before 2026-12-04?)")
    return json.loads(m.group(1))


def compare(a_path, b_path):
    a, b = read_results(a_path), read_results(b_path)
    if fingerprint(a["machine"]) != fingerprint(b["machine"]):
        print(f"refusing to compare: {a_path} was measured on {a['machine']}, {b_path} on {b['machine']}; "
              "a change of hardware is never a speed-up", file=sys.stderr)
        return 2
    print(f"{'figure':<40} {'A':>10} {'B':>10} {'B / A':>8}")
    for section in ("train", "data", "tta"):
        for key, va in a.get(section, {}).items():
            vb = b.get(section, {}).get(key)
            items = va.items() if isinstance(va, dict) and "img_per_s" not in va and "seconds" not in va else [("", va)]
            for sub, x in items:
                y = vb.get(sub) if sub and vb else vb
                field = "img_per_s" if "img_per_s" in x else "seconds"
                xa, xb = x.get(field), (y or {}).get(field)
                ratio = f"{xb / xa:.2f}" if xa and xb else "n/a"
                print(f"{section + ' ' + key + (' ' + sub if sub else ''):<40} {cell(xa):>10} {cell(xb):>10} {ratio:>8}")
    return 0


def versions(args, work):
    v = {}
    rc, out, _, _, _ = spawn([args.runner, "--version"], work, "version-runner")
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    v["runner"] = f"{out.strip().split()[-1] if out.strip() else '?'} ({commit.stdout.strip() or '?'})"
    probe = ("import importlib.metadata as m\n"
             "for p in ('torch', 'torchvision', 'keras', 'tensorflow-cpu', 'pillow'):\n"
             "    try: print(p, m.version(p))\n"
             "    except Exception: print(p, '?')\n")
    rc, out, _, _, _ = spawn([args.python, "-c", probe], work, "version-peers")
    got = dict(line.split() for line in out.splitlines() if len(line.split()) == 2)
    v["torch"] = f"{got.get('torch', '?')} (torchvision {got.get('torchvision', '?')})"
    v["keras"] = f"{got.get('keras', '?')}/{got.get('tensorflow-cpu', '?')}"
    v["pillow"] = got.get("pillow", "?")
    return v


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runner", default=str(ROOT / "target/release/runner"))
    p.add_argument("--bench-data", default=str(ROOT / "target/release/bench_data"))
    p.add_argument("--python", default=sys.executable, help="interpreter with torch, torchvision, keras")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--only", default="train,data,tta", help="comma-separated: train, data, tta")
    p.add_argument("--rounds", type=int, default=3, help="runs of each training and loader contender")
    p.add_argument("--seeds", type=int, default=3, help="seeds of each time-to-accuracy contender")
    p.add_argument("--target", type=float, default=0.90)
    p.add_argument("--results", default=str(HERE / "results"), help="folder for the results file")
    p.add_argument("--work", default=None, help="folder for raw outputs and run folders "
                   "(default bench/work/<timestamp>)")
    p.add_argument("--smoke", action="store_true", help="tiny runner-only run that checks the plumbing")
    p.add_argument("--compare", nargs=2, metavar=("A.md", "B.md"), help="two results files side by side")
    args = p.parse_args()
    if args.compare:
        try:
            return compare(*args.compare)
        except Failed as e:
            print(e, file=sys.stderr)
            return 2
    started = datetime.datetime.now(datetime.timezone.utc)
    work = Path(args.work) if args.work else HERE / "work" / started.strftime("%Y%m%d-%H%M%S")
    work.mkdir(parents=True, exist_ok=True)

    if args.smoke:
        r = runner_train(args, work, "fashion", ["data.train_size=256", "data.test_size=32", "train.epochs=2"], 0)
        print(f"SMOKE runner fashion img_per_s={r['img_per_s']:.1f} rss_mib={r['rss_mib']:.0f} epochs={r['epochs']}")
        return 0

    only = set(args.only.split(","))
    res = {"machine": machine(), "load_start": load(), "threads": args.threads, "errors": []}

    def attempt(what, fn):
        try:
            return fn()
        except (Failed, OSError) as e:
            res["errors"].append(f"{what}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
            log(f"FAILED {what}: {e}")
            return None

    res["versions"] = attempt("versions", lambda: versions(args, work)) or {}
    if "train" in only:
        train(args, work, res, attempt)
    if "data" in only:
        log("data loaders")
        attempt("data loaders", lambda: data_loaders(args, work, res, attempt))
    if "tta" in only:
        attempt("time to accuracy", lambda: tta(args, work, res, attempt))

    report = render(args, res, started)
    print(report)
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{started:%Y-%m-%d-%H%M}.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(report + "\n")
    tmp.replace(path)
    log(f"written to {path} (raw outputs in {work})")
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
