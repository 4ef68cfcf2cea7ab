#!/usr/bin/env python3
"""Write a small image folder of real Fashion-MNIST pictures (PNG files,
one sub-folder per class, train/ and test/), for checks that need real
images in the `image_folder` layout (bench/gpu_check.sh).

    python3 bench/fashion_folder.py OUT [TRAIN_PER_CLASS] [TEST_PER_CLASS]

Reads the IDX files from /usr/share/datasets/fashion-mnist (Debian's
dataset-fashion-mnist, `make data`) or FASHION_MNIST. The first images of
each class are taken, so the folder is the same every time. Standard
library only: it runs on a machine without numpy or PIL.
"""

import gzip
import os
import struct
import sys
import zlib

CLASSES = [
    "t-shirt", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle-boot",
]


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    _, _, ndim = struct.unpack(">HBB", data[:4])
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return dims, data[4 + 4 * ndim:]


def png_gray(width, height, pixels):
    """An 8-bit grayscale PNG of `pixels` (row-major bytes)."""
    rows = b"".join(b"\x00" + pixels[y * width:(y + 1) * width] for y in range(height))

    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def write_split(src, prefix, out, per_class):
    (n, h, w), images = read_idx(os.path.join(src, f"{prefix}-images-idx3-ubyte.gz"))
    _, labels = read_idx(os.path.join(src, f"{prefix}-labels-idx1-ubyte.gz"))
    taken = [0] * len(CLASSES)
    for i in range(n):
        c = labels[i]
        if taken[c] >= per_class:
            continue
        folder = os.path.join(out, CLASSES[c])
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"{i:05d}.png"), "wb") as f:
            f.write(png_gray(w, h, images[i * h * w:(i + 1) * h * w]))
        taken[c] += 1
        if min(taken) >= per_class:
            break


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    train = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    test = int(sys.argv[3]) if len(sys.argv) > 3 else 100
    src = os.environ.get("FASHION_MNIST", "/usr/share/datasets/fashion-mnist")
    write_split(src, "train", os.path.join(out, "train"), train)
    write_split(src, "t10k", os.path.join(out, "test"), test)
    print(f"{out}: {train} training and {test} test images per class, {len(CLASSES)} classes")


if __name__ == "__main__":
    main()
