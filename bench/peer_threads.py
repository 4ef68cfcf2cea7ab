"""Thread pinning shared by the peer scripts: read `--threads N` from the
command line and set the environment before PyTorch or TensorFlow start their
thread pools (they read it once, at import)."""

import os
import sys


def pin(framework):
    """Set the thread variables for `framework` ("torch" or "keras"); return N."""
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
