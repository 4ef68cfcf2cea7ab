#!/usr/bin/env python3
"""Wall time for Keras 3 (TensorFlow) to reach a test accuracy on Fashion-MNIST (CPU).

The 2-conv CNN of bench/train_keras.py, Adam 1e-3 (epsilon 1e-7), batch
128, pixels scaled to [0, 1], `fit` shuffling every epoch, the whole
10,000-image test set evaluated after each epoch (`validation_data`). The
clock starts after the data is in memory and the model is compiled, and
includes the evaluations.

    bench/.venv/bin/python bench/tta_keras.py [--target 0.90] [--epochs 15] [--threads 2]

Prints one line per epoch and a final TTA_RESULT line (see tta_torch.py).
"""

import os
import sys
import time


# Thread counts must be fixed before the framework starts its pools.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_common import pin, tta_parser  # noqa: E402

_THREADS = pin("keras")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(_THREADS)
tf.config.threading.set_inter_op_parallelism_threads(_THREADS)

import keras  # noqa: E402

from idx import load_fashion  # noqa: E402
from train_keras import fashion_model  # noqa: E402


class Tracker(keras.callbacks.Callback):
    def __init__(self, target, keep_going):
        super().__init__()
        self.target = target
        self.keep_going = keep_going
        self.t_start = None
        self.reached = None

    def on_train_begin(self, logs=None):
        self.t_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        elapsed = time.perf_counter() - self.t_start
        acc = logs["val_accuracy"]
        print(f"epoch {epoch + 1:2d}: loss {logs['loss']:.4f}  test_accuracy {acc:.4f}  elapsed {elapsed:.1f} s",
              flush=True)
        if self.reached is None and acc >= self.target:
            self.reached = (epoch + 1, elapsed, acc)
            if not self.keep_going:
                self.model.stop_training = True


def main():
    p = tta_parser(__doc__, _THREADS)
    a = p.parse_args()
    keras.utils.set_random_seed(a.seed)

    xtr, ytr, xte, yte = load_fashion(a.data)
    xtr = (xtr.astype(np.float32) / 255.0)[..., None]
    xte = (xte.astype(np.float32) / 255.0)[..., None]
    ytr = ytr.astype(np.int32)
    yte = yte.astype(np.int32)

    model = fashion_model(a.dropout)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=a.lr, epsilon=1e-7),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    tracker = Tracker(a.target, a.keep_going)
    t0 = time.perf_counter()
    model.fit(xtr, ytr, batch_size=a.batch, epochs=a.epochs, shuffle=True,
              validation_data=(xte, yte), validation_batch_size=1000, verbose=0, callbacks=[tracker])
    total = time.perf_counter() - t0
    version = f"{keras.__version__}/tf{tf.__version__}"
    threads = tf.config.threading.get_intra_op_parallelism_threads()
    if tracker.reached:
        e, s, acc = tracker.reached
        print(f"TTA_RESULT framework=keras version={version} threads={threads} target={a.target} "
              f"reached=true epoch={e} seconds={s:.1f} accuracy={acc:.4f}", flush=True)
    else:
        print(f"TTA_RESULT framework=keras version={version} threads={threads} target={a.target} "
              f"reached=false epochs={a.epochs} seconds={total:.1f}", flush=True)


if __name__ == "__main__":
    main()
