#!/usr/bin/env python3
"""`make bench-gpu` (through bench/gpu.sh): runner on a GPU against PyTorch on
the same GPU, side by side in one run, on the tutorial model (10,588,458
parameters, 128x128x3 generated images, RMSprop).

For each of runner's GPU kernel variants (RUNNER_GPU_FUSION, RUNNER_GPU_CONV)
and each batch size, two runs of 3 epochs share a kernel cache that starts
empty: the first is the cold start, the second the warm one. Reported:
  - steady img/s: the warm run's last epoch (images_per_second in metrics.csv,
    the training loop's own count: loader waits included, validation not);
  - first-epoch extra seconds, cold and warm: epoch 1's epoch_seconds minus
    the last epoch's, in each run;
  - peak GPU memory of the warm run (nvidia-smi, sampled every 0.1 s, minus
    the memory in use before).
PyTorch (bench/train_torch.py, one fixed batch, no loader): default fp32, and
tuned (cudnn.benchmark + channels_last); its peak is torch's own
max_memory_allocated, and nvidia-smi's sampled peak beside it.

    python3 bench/gpu_bench.py --runner target/release/runner [--device cuda]
        [--batches 32,256] [--variants fusion:autotune,nofusion:autotune,...]
        [--steps32 100] [--steps256 25] [--peer-python python3] [--out FILE]

Writes a markdown results file (default bench/results/gpu-<date>.md) with
the GPU, driver, versions and every figure, and prints it.
"""

import argparse
import csv
import datetime
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=60).stdout.strip()
    except Exception:
        return ""


class GpuMemory:
    """Peak nvidia-smi memory.used (MiB) while the block runs, minus the use before."""

    def __init__(self):
        self.available = bool(shutil.which("nvidia-smi"))
        self.peak = None

    def _used(self):
        out = sh("nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1")
        return int(out) if out.isdigit() else None

    def __enter__(self):
        if not self.available:
            return self
        self.base = self._used() or 0
        self.values = []
        self.stop = threading.Event()

        def sample():
            while not self.stop.is_set():
                v = self._used()
                if v is not None:
                    self.values.append(v)
                time.sleep(0.1)

        self.thread = threading.Thread(target=sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        if self.available:
            self.stop.set()
            self.thread.join()
            self.peak = max(self.values, default=self.base) - self.base
        return False


def metrics(run_root, name):
    latest = os.path.join(run_root, name, "latest")
    folder = os.path.join(run_root, name, open(latest).read().strip())
    rows = list(csv.DictReader(open(os.path.join(folder, "metrics.csv"))))
    return rows


def runner_variant(a, variant, batch, work):
    fusion, conv = variant.split(":")
    steps = a.steps32 if batch <= 32 else a.steps256
    cache = os.path.join(work, f"kernels-{fusion}-{conv}-{batch}")
    env = dict(os.environ, RUNNER_PLAIN="1", RUNNER_KERNEL_CACHE=cache,
               RUNNER_GPU_FUSION="on" if fusion == "fusion" else "off", RUNNER_GPU_CONV=conv)
    result = {"variant": f"fusion {'on' if fusion == 'fusion' else 'off'}, conv {conv}", "batch": batch}
    for phase in ("cold", "warm"):
        runs = os.path.join(work, f"runs-{fusion}-{conv}-{batch}-{phase}")
        cmd = [a.runner, "run", a.model, "--device", a.device,
               "--no-env", "--runs-dir", runs, "--set", f"train.batch_size={batch}",
               "--set", f"data.train_size={steps * batch}", "--set", "train.epochs=3",
               "--set", "data.validation_size=320", "--set", "data.test_size=320"]
        log = os.path.join(work, f"runner-{fusion}-{conv}-{batch}-{phase}.log")
        started = time.time()
        with GpuMemory() as mem, open(log, "w") as out:
            try:
                rc = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    timeout=a.timeout).returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
        result[f"{phase}_wall"] = time.time() - started
        if rc != 0:
            result["error"] = f"{phase} run exited {rc} (log {log})"
            return result
        rows = metrics(runs, a.name)
        first, last = float(rows[0]["epoch_seconds"]), float(rows[-1]["epoch_seconds"])
        result[f"{phase}_extra"] = first - last
        if phase == "warm":
            result["img_s"] = float(rows[-1]["images_per_second"])
            result["peak_mib"] = mem.peak
        first_step = re.search(r"First step: ([0-9.]+) s", open(log).read())
        result[f"{phase}_first_step"] = float(first_step.group(1)) if first_step else None
    return result


def torch_row(a, tuned, batch, work):
    steps = 200 if batch <= 32 else 50
    cmd = [a.peer_python, os.path.join(ROOT, "bench/train_torch.py"), "--workload", "tutorial",
           "--device", "cuda", "--batch", str(batch), "--steps", str(steps), "--warmup", "20",
           "--threads", str(os.cpu_count() or 1)]
    if tuned:
        cmd += ["--channels-last", "--cudnn-benchmark"]
    log = os.path.join(work, f"torch-{'tuned' if tuned else 'default'}-{batch}.log")
    with GpuMemory() as mem, open(log, "w") as out:
        try:
            rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=a.timeout).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    text = open(log).read()
    m = re.search(r"RESULT .*img_per_s=([0-9.]+).*gpu_peak_alloc_mib=([0-9]+)", text)
    row = {"variant": "PyTorch " + ("tuned (cudnn.benchmark, channels_last)" if tuned else "default fp32"),
           "batch": batch}
    if rc != 0 or not m:
        row["error"] = f"exited {rc} (log {log})"
        return row
    row["img_s"] = float(m.group(1))
    row["alloc_mib"] = int(m.group(2))
    row["peak_mib"] = mem.peak
    version = re.search(r"version=(\S+)", text)
    row["version"] = version.group(1) if version else "?"
    return row


def fmt(v, spec):
    return "n/a" if v is None else format(v, spec)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runner", required=True)
    p.add_argument("--model", default=os.path.join(ROOT, "bench/models/tutorial.toml"),
                   help="runner's experiment (PyTorch's rows are always the tutorial model)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--batches", default="32,256")
    p.add_argument("--variants", default="fusion:autotune,nofusion:autotune,nofusion:implicit_gemm")
    p.add_argument("--steps32", type=int, default=100, help="steps per epoch at batch <= 32")
    p.add_argument("--steps256", type=int, default=25, help="steps per epoch at larger batches")
    p.add_argument("--peer-python", default=sys.executable)
    p.add_argument("--no-peers", action="store_true")
    p.add_argument("--timeout", type=int, default=900, help="seconds per process")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    with open(a.model, "rb") as f:
        a.name = tomllib.load(f)["experiment"]["name"]
    batches = [int(b) for b in a.batches.split(",")]
    work = tempfile.mkdtemp(prefix="runner-bench-gpu.")

    rows = []
    for variant in a.variants.split(","):
        for batch in batches:
            r = runner_variant(a, variant, batch, work)
            print(r, flush=True)
            rows.append(r)
    peers = []
    if not a.no_peers:
        for tuned in (False, True):
            for batch in batches:
                r = torch_row(a, tuned, batch, work)
                print(r, flush=True)
                peers.append(r)

    gpu = sh("nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1") or a.device
    cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    version = sh(f"{a.runner} --version")
    commit = sh(f"git -C {ROOT} rev-parse --short HEAD")
    now = datetime.datetime.now(datetime.timezone.utc)
    lines = [
        f"# GPU benchmark, {now:%Y-%m-%d %H:%M} UTC",
        "",
        f"- GPU: {gpu}; device `{a.device}`",
        f"- host: {cpu}, {os.cpu_count()} cores, {platform.platform()}",
        f"- runner: {version} at {commit or '?'}; PyTorch: {next((r['version'] for r in peers if 'version' in r), 'n/a')}",
        f"- workload: runner {os.path.relpath(a.model, ROOT)} (default: the tutorial model, 128x128x3, RMSprop); runner {a.steps32} steps "
        f"per epoch at batch <= 32, {a.steps256} above, 3 epochs per run; PyTorch 200 (batch 32) or 50 timed steps after 20",
        f"- command: `{' '.join(sys.argv)}`; raw logs in {work}",
        "",
        "| what | batch | steady img/s | first epoch extra s, cold | warm | first step s, cold | warm | peak GPU MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| runner, {r['variant']} | {r['batch']} | failed: {r['error']} | | | | | |")
            continue
        lines.append(
            f"| runner, {r['variant']} | {r['batch']} | {fmt(r.get('img_s'), '.0f')} | {fmt(r.get('cold_extra'), '.1f')} "
            f"| {fmt(r.get('warm_extra'), '.1f')} | {fmt(r.get('cold_first_step'), '.1f')} | {fmt(r.get('warm_first_step'), '.1f')} "
            f"| {fmt(r.get('peak_mib'), 'd')} |")
    for r in peers:
        if "error" in r:
            lines.append(f"| {r['variant']} | {r['batch']} | failed: {r['error']} | | | | | |")
            continue
        lines.append(f"| {r['variant']} | {r['batch']} | {r['img_s']:.0f} | | | | | "
                     f"{fmt(r.get('peak_mib'), 'd')} (allocated {r['alloc_mib']}) |")
    ratios = []
    for batch in batches:
        base = next((r["img_s"] for r in peers if r["batch"] == batch and "default" in r["variant"] and "img_s" in r), None)
        for r in rows:
            if r["batch"] == batch and "img_s" in r and base:
                ratios.append(f"- batch {batch}, runner {r['variant']}: {r['img_s'] / base:.2f}x PyTorch default fp32")
    if ratios:
        lines += ["", *ratios]
    text = "\n".join(lines) + "\n"
    out = a.out or os.path.join(ROOT, "bench", "results", f"gpu-{now:%Y-%m-%d}.md")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        f.write(text)
    print(text)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
