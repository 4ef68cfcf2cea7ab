#!/usr/bin/env python3
"""Wall time for PyTorch to reach a test accuracy on Fashion-MNIST (CPU).

The 2-conv CNN of bench/train_torch.py, Adam 1e-3 (epsilon 1e-7), batch
128, pixels scaled to [0, 1], training set reshuffled every epoch; after
each epoch the whole 10,000-image test set is evaluated. The clock starts
after the data is in memory and the model is built, and includes the
evaluations (runner evaluates every epoch too).

    bench/.venv/bin/python bench/tta_torch.py [--target 0.90] [--epochs 15] [--threads 2]

Prints one line per epoch and a final line:
    TTA_RESULT framework=torch target=0.9 reached=true epoch=7 seconds=123.4 ...
"""

import os
import sys
import time


# Thread counts must be fixed before the framework starts its pools.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_common import pin, tta_parser  # noqa: E402

_THREADS = pin("torch")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from idx import load_fashion  # noqa: E402
from train_torch import fashion_model  # noqa: E402


def main():
    p = tta_parser(__doc__, _THREADS)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    xtr, ytr, xte, yte = load_fashion(a.data)
    xtr = torch.from_numpy(xtr.astype(np.float32) / 255.0).unsqueeze(1)
    xte = torch.from_numpy(xte.astype(np.float32) / 255.0).unsqueeze(1)
    ytr = torch.from_numpy(ytr.astype(np.int64))
    yte = torch.from_numpy(yte.astype(np.int64))

    model = fashion_model(a.dropout)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr, eps=1e-7)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(a.seed)

    reached = None
    t_start = time.perf_counter()
    train_s = 0.0
    for epoch in range(1, a.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(len(xtr), generator=gen)
        total_loss = 0.0
        for i in range(0, len(xtr), a.batch):
            idx = perm[i:i + a.batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
            total_loss += loss.item() * len(idx)
        train_s += time.perf_counter() - t0
        model.eval()
        correct = 0
        with torch.no_grad():
            for i in range(0, len(xte), 1000):
                correct += (model(xte[i:i + 1000]).argmax(1) == yte[i:i + 1000]).sum().item()
        acc = correct / len(xte)
        elapsed = time.perf_counter() - t_start
        print(f"epoch {epoch:2d}: loss {total_loss / len(xtr):.4f}  test_accuracy {acc:.4f}  "
              f"elapsed {elapsed:.1f} s  train {train_s:.1f} s", flush=True)
        if reached is None and acc >= a.target:
            reached = (epoch, elapsed, acc)
            if not a.keep_going:
                break
    head = f"TTA_RESULT framework=torch version={torch.__version__} threads={torch.get_num_threads()} target={a.target}"
    if reached:
        e, secs, acc = reached
        print(f"{head} reached=true epoch={e} seconds={secs:.1f} accuracy={acc:.4f}", flush=True)
    else:
        print(f"{head} reached=false epochs={a.epochs} seconds={time.perf_counter() - t_start:.1f}", flush=True)


if __name__ == "__main__":
    main()
