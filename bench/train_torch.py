#!/usr/bin/env python3
"""Training-step throughput of PyTorch.

Same models, batch sizes, input shapes and optimizers as runner's
bench/models/*.toml (see bench/FINDINGS.md). With `--data PREFIX` the steps
go through the images of PREFIX.x.npy / PREFIX.y.npy in order (what
`bench_data export` writes: the images runner trains on), else through one
fixed random batch; either way they are in memory (no loading in the timed
loop). Each timed step is forward + cross-entropy + backward + optimizer
step.

    bench/.venv/bin/python bench/train_torch.py --workload tutorial
    bench/.venv/bin/python bench/train_torch.py --workload fashion --optimizer rmsprop

Prints one RESULT line per workload:
    RESULT framework=torch workload=tutorial batch=32 threads=2 ... img_per_s=10.4 max_rss_mib=...
max_rss_mib is the process's peak resident memory (getrusage) after the
run: run one workload per process to read the peak of that workload alone.
"""

import os
import resource
import statistics
import sys
import time

# Thread counts must be fixed before the framework starts its pools.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_common import pin, train_parser, workloads  # noqa: E402

_THREADS = pin("torch")

import torch  # noqa: E402
from torch import nn  # noqa: E402


def tutorial_model(dropout=0.2):
    """The Keras CNN tutorial: 10,588,458 parameters at 3x128x128."""
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 32, 3), nn.ReLU(),
        nn.MaxPool2d(2), nn.Dropout(dropout),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
        nn.Conv2d(64, 64, 3), nn.ReLU(),
        nn.MaxPool2d(2), nn.Dropout(dropout),
        nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(),
        nn.Conv2d(128, 128, 3), nn.ReLU(),
        nn.ReLU(),
        nn.MaxPool2d(2), nn.Dropout(dropout),
        nn.Conv2d(128, 512, 5, padding=2), nn.ReLU(),
        nn.Conv2d(512, 512, 5), nn.ReLU(),
        nn.MaxPool2d(4), nn.Dropout(dropout),
        nn.Flatten(),
        nn.Linear(2048, 1024), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(1024, 10),  # softmax folded into the cross-entropy
    )


def fashion_model(dropout=0.5):
    """The 2-conv Fashion-MNIST CNN: 225,034 parameters at 1x28x28."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(1600, 128), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(128, 10),
    )


WORKLOADS = {
    # name: (model builder, input CHW, batch, default optimizer)
    "tutorial": (tutorial_model, (3, 128, 128), 32, "rmsprop"),
    "fashion": (fashion_model, (1, 28, 28), 128, "adam"),
}


def make_optimizer(name, params, lr):
    if name == "rmsprop":
        # Keras's RMSprop: rho 0.9, epsilon 1e-7, no momentum.
        return torch.optim.RMSprop(params, lr=lr, alpha=0.9, eps=1e-7, momentum=0.0)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-7)
    raise SystemExit(f"unknown optimizer {name}")


def max_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench(workload, optimizer, lr, steps, warmup, batch, device="cpu",
          channels_last=False, compile_model=False, cudnn_benchmark=False, data=None):
    build, chw, default_batch, default_opt = WORKLOADS[workload]
    optimizer = optimizer or default_opt
    batch = batch or default_batch
    if lr is None:
        lr = 1e-4 if optimizer == "rmsprop" else 1e-3
    torch.manual_seed(42)
    torch.backends.cudnn.benchmark = cudnn_benchmark
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = build().to(device, memory_format=fmt)
    model.train()
    params = sum(p.numel() for p in model.parameters())
    opt = make_optimizer(optimizer, model.parameters(), lr)
    step_model = torch.compile(model) if compile_model else model
    loss_fn = nn.CrossEntropyLoss()
    if data:
        import numpy as np
        xs = torch.from_numpy(np.load(data + ".x.npy")).to(device).contiguous(memory_format=fmt)
        ys = torch.from_numpy(np.load(data + ".y.npy")).to(device)
        if tuple(xs.shape[1:]) != chw:
            raise SystemExit(f"{data}.x.npy holds {tuple(xs.shape[1:])} images, the model takes {chw}")
        batches = [(xs[i:i + batch], ys[i:i + batch]) for i in range(0, len(xs) - batch + 1, batch)]
    else:
        batches = [(torch.rand(batch, *chw, device=device).contiguous(memory_format=fmt),
                    torch.randint(0, 10, (batch,), device=device))]
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        x, y = batches[i % len(batches)]
        loss = loss_fn(step_model(x), y)
        loss.backward()
        opt.step()
        loss.item()  # waits for the step (also on the GPU)
        dt = time.perf_counter() - t0
        if i >= warmup:
            times.append(dt)
            print(f"step {i - warmup:3d}: {dt:.3f} s  {batch / dt:.2f} img/s", file=sys.stderr, flush=True)
    med = statistics.median(times)
    inputs = f"{len(batches)}_batches_of_{data.rsplit('/', 1)[-1]}" if data else "one_random_batch"
    tuning = ",".join(t for t, on in (("channels_last", channels_last), ("compile", compile_model),
                                     ("cudnn_benchmark", cudnn_benchmark)) if on) or "default"
    print(
        f"RESULT framework=torch version={torch.__version__} workload={workload} batch={batch} tuning={tuning} inputs={inputs} "
        f"optimizer={optimizer} params={params} threads={torch.get_num_threads()} "
        f"interop={torch.get_num_interop_threads()} steps={len(times)} median_step_s={med:.4f} "
        f"min_step_s={min(times):.4f} img_per_s={batch / med:.2f} max_rss_mib={max_rss_mib():.0f} device={device}"
        + (f" gpu_peak_alloc_mib={torch.cuda.max_memory_allocated() / 2**20:.0f}" if device.startswith("cuda") else ""),
        flush=True,
    )


def main():
    p = train_parser(__doc__, _THREADS)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format for model and input")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (inductor)")
    p.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark = True")
    p.add_argument("--data", default=None, help="PREFIX of PREFIX.x.npy and PREFIX.y.npy (bench_data export)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    try:
        # As TensorFlow's inter-op pool in train_keras.py: one thread per core used.
        torch.set_num_interop_threads(a.threads)
    except RuntimeError:
        pass
    for w, steps, warmup in workloads(a):
        bench(w, a.optimizer, a.lr, steps, warmup, a.batch, a.device,
              a.channels_last, a.compile, a.cudnn_benchmark, a.data)


if __name__ == "__main__":
    main()
