#!/usr/bin/env python3
"""Training-step throughput of Keras 3 (TensorFlow backend) on the CPU.

Same models, batch sizes, input shapes and optimizers as runner's
bench/models/*.toml and bench/train_torch.py. Keras's own `fit` loop runs
over the images of `--data PREFIX` (bench_data export: the images runner
trains on, transposed to channels-last) in order, or one fixed random batch
repeated; `--jit-compile` compiles the train step with XLA (off by default
on the CPU). A callback times every step
(`on_train_batch_begin` to `on_train_batch_end`), so each timed step is
forward + cross-entropy + backward + optimizer step inside the compiled
train function.

    bench/.venv/bin/python bench/train_keras.py --workload tutorial
    bench/.venv/bin/python bench/train_keras.py --workload fashion

Prints one RESULT line per workload (see train_torch.py).
"""

import os
import resource
import statistics
import sys
import time


# Thread counts must be fixed before the framework starts its pools.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_common import pin, train_parser, workloads  # noqa: E402

_THREADS = pin("keras")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(_THREADS)
tf.config.threading.set_inter_op_parallelism_threads(_THREADS)

import keras  # noqa: E402
from keras import layers  # noqa: E402


def tutorial_model(dropout=0.2):
    """The Keras CNN tutorial, verbatim: 10,588,458 parameters."""
    return keras.Sequential([
        keras.Input((128, 128, 3)),
        layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.Conv2D(32, 3, activation="relu"),
        layers.MaxPooling2D(2), layers.Dropout(dropout),
        layers.Conv2D(64, 3, padding="same", activation="relu"),
        layers.Conv2D(64, 3, activation="relu"),
        layers.MaxPooling2D(2), layers.Dropout(dropout),
        layers.Conv2D(128, 3, padding="same", activation="relu"),
        layers.Conv2D(128, 3, activation="relu"),
        layers.Activation("relu"),
        layers.MaxPooling2D(2), layers.Dropout(dropout),
        layers.Conv2D(512, 5, padding="same", activation="relu"),
        layers.Conv2D(512, 5, activation="relu"),
        layers.MaxPooling2D(4), layers.Dropout(dropout),
        layers.Flatten(),
        layers.Dense(1024, activation="relu"), layers.Dropout(dropout),
        layers.Dense(10, activation="softmax"),
    ])


def fashion_model(dropout=0.5):
    """The 2-conv Fashion-MNIST CNN: 225,034 parameters."""
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(2),
        layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(128, activation="relu"), layers.Dropout(dropout),
        layers.Dense(10, activation="softmax"),
    ])


WORKLOADS = {
    "tutorial": (tutorial_model, (128, 128, 3), 32, "rmsprop"),
    "fashion": (fashion_model, (28, 28, 1), 128, "adam"),
}


def make_optimizer(name, lr):
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=lr, rho=0.9, epsilon=1e-7, momentum=0.0)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=lr, epsilon=1e-7)
    raise SystemExit(f"unknown optimizer {name}")


class StepTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []
        self._t0 = None

    def on_train_batch_begin(self, batch, logs=None):
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter() - self._t0)


def max_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench(workload, optimizer, lr, steps, warmup, batch, data=None, jit_compile=False):
    build, hwc, default_batch, default_opt = WORKLOADS[workload]
    optimizer = optimizer or default_opt
    batch = batch or default_batch
    if lr is None:
        lr = 1e-4 if optimizer == "rmsprop" else 1e-3
    keras.utils.set_random_seed(42)
    model = build()
    # The softmax output with sparse categorical cross-entropy, as the tutorial compiles it.
    model.compile(optimizer=make_optimizer(optimizer, lr), loss="sparse_categorical_crossentropy",
                  jit_compile=jit_compile)
    if data:
        x = np.ascontiguousarray(np.load(data + ".x.npy").transpose(0, 2, 3, 1))
        y = np.load(data + ".y.npy").astype(np.int32)
        if x.shape[1:] != hwc:
            raise SystemExit(f"{data}.x.npy holds {x.shape[1:]} images, the model takes {hwc}")
        n = len(x) // batch * batch
        ds = tf.data.Dataset.from_tensor_slices((x[:n], y[:n])).batch(batch).cache().repeat()
        inputs = f"{n // batch}_batches_of_{data.rsplit('/', 1)[-1]}"
    else:
        rng = np.random.default_rng(42)
        x = rng.random((batch, *hwc), dtype=np.float32)
        y = rng.integers(0, 10, size=(batch,)).astype(np.int32)
        ds = tf.data.Dataset.from_tensors((x, y)).repeat()
        inputs = "one_random_batch"
    timer = StepTimer()
    model.fit(ds, steps_per_epoch=warmup + steps, epochs=1, verbose=0, callbacks=[timer])
    times = timer.times[warmup:]
    for i, dt in enumerate(times):
        print(f"step {i:3d}: {dt:.3f} s  {batch / dt:.2f} img/s", file=sys.stderr, flush=True)
    med = statistics.median(times)
    print(
        f"RESULT framework=keras version={keras.__version__}/tf{tf.__version__} workload={workload} "
        f"tuning={'jit_compile' if jit_compile else 'default'} inputs={inputs} "
        f"batch={batch} optimizer={optimizer} params={model.count_params()} "
        f"threads={tf.config.threading.get_intra_op_parallelism_threads()} "
        f"interop={tf.config.threading.get_inter_op_parallelism_threads()} steps={len(times)} "
        f"median_step_s={med:.4f} min_step_s={min(times):.4f} img_per_s={batch / med:.2f} "
        f"max_rss_mib={max_rss_mib():.0f}",
        flush=True,
    )


def main():
    p = train_parser(__doc__, _THREADS)
    p.add_argument("--data", default=None, help="PREFIX of PREFIX.x.npy and PREFIX.y.npy (bench_data export)")
    p.add_argument("--jit-compile", action="store_true", help="model.compile(jit_compile=True): XLA")
    a = p.parse_args()
    for w, steps, warmup in workloads(a):
        bench(w, a.optimizer, a.lr, steps, warmup, a.batch, a.data, a.jit_compile)


if __name__ == "__main__":
    main()
