"""Load an exported model.safetensors into a PyTorch nn.Sequential written
here by hand for the same stack, feed it images, and compare its logits
with `runner predict --logits`'s predictions.csv (run with --top-k = the
class count).

usage: torch_check.py STACK MODEL.safetensors PREDICTIONS.csv

STACK names the hand-written Sequential below: baseline, bn or gray. The
Python module runner writes beside the weights (MODEL.py) must build a
Sequential that loads the same file and gives the same logits, and its
preprocess() must give the input written here by hand: for an image at the
model's size, the pixels times rescale, normalized; for another (a PNG),
first PIL's NEAREST resize, which runner's `nearest` follows.

Prints one line per image; exits 1 on a different top-1 class, a logit more
than 1e-4 (relative to its size, at least 1) or a probability more than
1e-4 away.
"""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn


def baseline():
    """experiments/baseline.toml: the Keras tutorial's CNN, 128x128x3, 10 classes."""
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 32, 3), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Dropout(0.2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
        nn.Conv2d(64, 64, 3), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Dropout(0.2),
        nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(),
        nn.Conv2d(128, 128, 3), nn.ReLU(),
        nn.ReLU(),  # the stack's own activation layer
        nn.MaxPool2d(2),
        nn.Dropout(0.2),
        nn.Conv2d(128, 512, 5, padding=2), nn.ReLU(),
        nn.Conv2d(512, 512, 5), nn.ReLU(),
        nn.MaxPool2d(4),
        nn.Dropout(0.2),
        nn.Flatten(),
        nn.Linear(512 * 2 * 2, 1024), nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(1024, 10),  # logits: the softmax is left out
    )


def bn():
    """tests/cli/export.rs's batch-norm stack, 15x15x3, 3 classes."""
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(),
        nn.BatchNorm2d(6, eps=1e-3, momentum=0.01),
        # 2x2 `same` pooling of 15 pixels: a last window over the edge.
        nn.AvgPool2d(2, ceil_mode=True, count_include_pad=False),
        # stride-2 `same` convolution of 8 pixels: one pixel right and below.
        nn.ZeroPad2d((0, 1, 0, 1)),
        nn.Conv2d(6, 8, 3, stride=2), nn.GELU(),
        nn.MaxPool2d(3, stride=1, padding=1),
        nn.LeakyReLU(0.2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.BatchNorm1d(8, eps=1e-3, momentum=0.01),
        nn.Linear(8, 3),
    )


def gray():
    """tests/cli/export.rs's grayscale stack, 12x12x1, 2 classes."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.Tanh(),
        nn.MaxPool2d(2),
        nn.Dropout(0.3),
        nn.Flatten(),
        nn.Linear(4 * 5 * 5, 8), nn.Sigmoid(),
        nn.Linear(8, 2),
    )


stack, weights_path, csv_path = sys.argv[1], sys.argv[2], sys.argv[3]
weights = load_file(weights_path)
ours = {"baseline": baseline, "bn": bn, "gray": gray}[stack]()
# strict: every name of the Sequential's state dict is in the file, and no other.
ours.load_state_dict(weights, strict=True)
ours.eval()

# The module runner wrote beside the weights builds the same Sequential.
py_path = Path(weights_path).with_suffix(".py")
spec = importlib.util.spec_from_file_location("exported", py_path)
exported = importlib.util.module_from_spec(spec)
spec.loader.exec_module(exported)
theirs = exported.load()
assert not theirs.training
assert list(theirs.state_dict()) == list(ours.state_dict()), "state-dict names differ"
assert [type(m) for m in theirs] == [type(m) for m in ours], (theirs, ours)

with safe_open(weights_path, "pt") as f:
    meta = f.metadata()
classes = json.loads(meta["classes"])
assert classes == exported.CLASSES, (classes, exported.CLASSES)
pre = json.loads(meta["preprocessing"])
height, width = pre["resize"]
channels = 1 if pre["color"] == "grayscale" else 3

rows = pd.read_csv(csv_path)
batch = []
resized = 0
for path in rows["path"]:
    img = Image.open(path).convert("L" if channels == 1 else "RGB")
    if img.size != (width, height):
        assert pre["interpolation"] == "nearest", pre
        img = img.resize((width, height), Image.Resampling.NEAREST)
        resized += 1
    x = np.asarray(img, dtype=np.float32).reshape(height, width, channels)
    x = x * np.float32(pre["rescale"])
    if pre["normalize"]:
        x = (x - np.array(pre["normalize"]["mean"], np.float32)) / np.array(
            pre["normalize"]["std"], np.float32
        )
    batch.append(x.transpose(2, 0, 1))
x = torch.from_numpy(np.stack(batch))
# The generated preprocess(), from paths and from PIL images alike.
pre_x = exported.preprocess(*rows["path"])
assert pre_x.dtype == torch.float32 and pre_x.shape == x.shape, (pre_x.shape, x.shape)
assert torch.equal(pre_x, x), "preprocess() differs from the input written by hand"
assert torch.equal(exported.preprocess(*[Image.open(p) for p in rows["path"]]), x)
with torch.no_grad():
    logits = ours(x).numpy()
    generated = theirs(x).numpy()
assert np.array_equal(logits, generated), "the generated module computes something else"
probs = torch.softmax(torch.from_numpy(logits), 1).numpy()

worst_logit = worst_prob = 0.0
failed = False
k = len(classes)
for i, row in rows.iterrows():
    runner_logits = np.array([row[f"logit_{c}"] for c in classes], np.float64)
    logit_diff = float(np.max(np.abs(logits[i] - runner_logits) / np.maximum(1.0, np.abs(runner_logits))))
    theirs_p = {row[f"top{j}_class"]: row[f"top{j}_probability"] for j in range(1, k + 1)}
    prob_diff = max(abs(float(probs[i][c]) - float(theirs_p[name])) for c, name in enumerate(classes))
    worst_logit = max(worst_logit, logit_diff)
    worst_prob = max(worst_prob, prob_diff)
    top = classes[int(np.argmax(logits[i]))]
    ok = top == row["predicted"] and logit_diff <= 1e-4 and prob_diff <= 1e-4
    failed |= not ok
    print(f"{row['path']}: PyTorch {top} {probs[i].max():.6f}, runner {row['predicted']} "
          f"{row['probability']:.6f}, logit diff {logit_diff:.2e}{'' if ok else '  MISMATCH'}")
print(f"{len(rows)} images ({resized} resized), largest logit difference {worst_logit:.2e}, "
      f"largest probability difference {worst_prob:.2e}")
sys.exit(1 if failed else 0)
