#!/usr/bin/env python3
"""PyTorch's per-convolution costs for the shapes of examples/conv_ops.rs:
forward, input gradient and weight gradient (aten.convolution_backward), ms and GFLOP/s.

    bench/.venv/bin/python bench/conv_ops_torch.py [tutorial|fashion] [--threads 2] [--reps 3]
"""
import argparse
import os
import sys
import time

n = "2"
for i, a in enumerate(sys.argv):
    if a == "--threads" and i + 1 < len(sys.argv):
        n = sys.argv[i + 1]
os.environ["OMP_NUM_THREADS"] = n
import torch  # noqa: E402

TUTORIAL = [(3, 32, 3, 1, 128), (32, 32, 3, 0, 128), (32, 64, 3, 1, 63), (64, 64, 3, 0, 63),
            (64, 128, 3, 1, 30), (128, 128, 3, 0, 30), (128, 512, 5, 2, 14), (512, 512, 5, 0, 14)]
FASHION = [(1, 32, 3, 0, 28), (32, 64, 3, 0, 13)]


def timed(reps, f):
    f()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model", nargs="?", default="tutorial", choices=["tutorial", "fashion"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--batch", type=int, default=None)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    convs = TUTORIAL if a.model == "tutorial" else FASHION
    batch = a.batch or (32 if a.model == "tutorial" else 128)
    print(f"conv_ops framework=torch {torch.__version__} model={a.model} batch={batch} threads={torch.get_num_threads()} "
          f"mkldnn={torch.backends.mkldnn.is_available()}")
    print(f"{'layer':<26} {'fwd ms':>9} {'dx ms':>9} {'dw ms':>9}   GFLOP/s fwd / dx / dw")
    tot = [0.0, 0.0, 0.0]
    tflops = 0.0
    with torch.no_grad():
        for cin, cout, k, pad, size in convs:
            o = size + 2 * pad - k + 1
            x = torch.rand(batch, cin, size, size)
            w = torch.rand(cout, cin, k, k)
            b = torch.rand(cout)
            g = torch.rand(batch, cout, o, o)
            fwd = timed(a.reps, lambda: torch.nn.functional.conv2d(x, w, b, padding=pad))
            bw = lambda mask: torch.ops.aten.convolution_backward(
                g, x, w, [cout], [1, 1], [pad, pad], [1, 1], False, [0, 0], 1, mask)
            dx = timed(a.reps, lambda: bw([True, False, False]))
            dw = timed(a.reps, lambda: bw([False, True, False]))
            f = 2.0 * batch * cin * cout * k * k * o * o
            tflops += f
            for i, t in enumerate((fwd, dx, dw)):
                tot[i] += t
            name = f"{cin}->{cout} {k}x{k} pad{pad} @{size}"
            print(f"{name:<26} {fwd*1e3:>9.1f} {dx*1e3:>9.1f} {dw*1e3:>9.1f}   "
                  f"{f/fwd/1e9:>6.1f} / {f/dx/1e9:>6.1f} / {f/dw/1e9:>6.1f}")
    s = sum(tot)
    print(f"{'all convs':<26} {tot[0]*1e3:>9.1f} {tot[1]*1e3:>9.1f} {tot[2]*1e3:>9.1f}   total {s:.2f} s for "
          f"{3*tflops/1e9:.1f} GFLOP = {3*tflops/s/1e9:.1f} GFLOP/s; conv-only bound {batch/s:.2f} img/s")


if __name__ == "__main__":
    main()
