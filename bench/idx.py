"""Read MNIST-format IDX files (gzip or plain) into numpy arrays."""

import gzip
import os
import struct

import numpy as np

FASHION_DIR = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _find(directory, stem):
    for name in (stem + ".gz", stem):
        p = os.path.join(directory, name)
        if os.path.exists(p):
            return p
    raise FileNotFoundError(os.path.join(directory, stem))


def load_fashion(directory=FASHION_DIR):
    """(train_images, train_labels, test_images, test_labels); images uint8 [N, 28, 28]."""
    return (
        read_idx(_find(directory, "train-images-idx3-ubyte")),
        read_idx(_find(directory, "train-labels-idx1-ubyte")),
        read_idx(_find(directory, "t10k-images-idx3-ubyte")),
        read_idx(_find(directory, "t10k-labels-idx1-ubyte")),
    )
