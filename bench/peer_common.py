"""What the peer scripts share: thread pinning, which must run before
PyTorch or TensorFlow start their thread pools (they read the environment
once, at import), and the command-line options of the training-step and
time-to-accuracy scripts, which are the same for both frameworks."""

import argparse
import os
import sys


def pin(framework):
    """Read `--threads N` from the command line and set the thread variables
    for `framework` ("torch" or "keras"); return N."""
    n = "2"
    for i, a in enumerate(sys.argv):
        if a == "--threads" and i + 1 < len(sys.argv):
            n = sys.argv[i + 1]
        elif a.startswith("--threads="):
            n = a.split("=", 1)[1]
    if framework == "torch":
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = n
    else:
        os.environ["OMP_NUM_THREADS"] = n
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    return int(n)


def _parser(doc):
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def train_parser(doc, threads):
    """Options of train_torch.py / train_keras.py."""
    p = _parser(doc)
    p.add_argument("--workload", choices=["tutorial", "fashion", "both"], default="both")
    p.add_argument("--optimizer", choices=["rmsprop", "adam"], default=None,
                   help="default: rmsprop for tutorial, adam for fashion")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 10 tutorial, 30 fashion)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 2 tutorial, 5 fashion)")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--threads", type=int, default=threads)
    return p


def workloads(a):
    """(workload, timed steps, warm-up steps) for each workload asked for."""
    names = ["tutorial", "fashion"] if a.workload == "both" else [a.workload]
    for w in names:
        steps = a.steps or (10 if w == "tutorial" else 30)
        warmup = a.warmup if a.warmup is not None else (2 if w == "tutorial" else 5)
        yield w, steps, warmup


def tta_parser(doc, threads):
    """Options of tta_torch.py / tta_keras.py."""
    from idx import FASHION_DIR

    p = _parser(doc)
    p.add_argument("--target", type=float, default=0.90)
    p.add_argument("--epochs", type=int, default=15, help="give up after this many epochs")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--data", default=FASHION_DIR)
    p.add_argument("--threads", type=int, default=threads)
    p.add_argument("--keep-going", action="store_true", help="run all epochs even after reaching the target")
    return p
