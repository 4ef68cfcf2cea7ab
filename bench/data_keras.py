"""Keras ImageDataGenerator.flow_from_directory with the Keras CNN tutorial's
augmentation, one epoch of 32 x 128 x 128 x 3 batches, read the way
`model.fit` reads it: through Keras's PyDataset adapter, with `workers`
threads when more than one. Prints `RESULT <images> <seconds> <workers>`,
timed from the first batch on.

    python bench/data_keras.py FOLDER [--workers N]

Keras's loader decodes every JPEG at full size (it has no draft mode).
"""
import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

try:  # Keras 3 keeps it only in the tf.keras namespace
    from keras._tf_keras.keras.preprocessing.image import ImageDataGenerator  # noqa: E402
except ImportError:  # Keras 2 / tf.keras
    from keras.preprocessing.image import ImageDataGenerator  # noqa: E402
from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("folder")
p.add_argument("--workers", type=int, default=1)
a = p.parse_args()

gen = ImageDataGenerator(
    rescale=1 / 255,
    brightness_range=[0.1, 0.7],
    width_shift_range=0.5,
    rotation_range=90,
    horizontal_flip=True,
    vertical_flip=True,
)
it = gen.flow_from_directory(
    a.folder, target_size=(128, 128), batch_size=32, class_mode="categorical", shuffle=True, seed=42
)
# PyDataset's documented knob; `fit` hands it to the same adapter.
it.workers = a.workers
start = None
images = 0
for x, y in PyDatasetAdapter(it, shuffle=False).get_numpy_iterator():
    assert x.shape[1:] == (128, 128, 3) and x.dtype.name == "float32"
    if start is None:
        start = time.perf_counter()
    else:
        images += x.shape[0]
print(f"RESULT {images} {time.perf_counter() - start:.4f} {a.workers}")
