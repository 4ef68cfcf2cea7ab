"""Feed images to an exported model with onnxruntime and compare with
`runner predict`'s predictions.csv (run with --top-k = the class count).

usage: onnx_check.py MODEL.onnx PREDICTIONS.csv

The images are the `path` column of the CSV. One not at the model's input
size is resized with PIL's NEAREST, which runner's `nearest` follows pixel
for pixel (a PNG; runner may decode a large JPEG at a reduced DCT scale),
so the run must use `nearest`.
Prints one line per image; exits 1 on a different top-1 class or a
probability more than 1e-4 away.
"""

import json
import sys

import numpy as np
import onnxruntime as ort
import pandas as pd
from PIL import Image

model_path, csv_path = sys.argv[1], sys.argv[2]
session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
meta = session.get_modelmeta().custom_metadata_map
classes = json.loads(meta["classes"])
pre = json.loads(meta["preprocessing"])
height, width = pre["resize"]
inp = session.get_inputs()[0]
channels = inp.shape[1]
assert inp.shape[2:] == [height, width], (inp.shape, pre)

rows = pd.read_csv(csv_path)
batch = []
for path in rows["path"]:
    img = Image.open(path).convert("L" if pre["color"] == "grayscale" else "RGB")
    if img.size != (width, height):
        assert pre["interpolation"] == "nearest", pre
        img = img.resize((width, height), Image.Resampling.NEAREST)
    x = np.asarray(img, dtype=np.float32).reshape(height, width, channels)
    x = x * np.float32(pre["rescale"])
    if pre["normalize"]:
        x = (x - np.array(pre["normalize"]["mean"], np.float32)) / np.array(
            pre["normalize"]["std"], np.float32
        )
    batch.append(x.transpose(2, 0, 1))
(probs,) = session.run(None, {inp.name: np.stack(batch)})

worst = 0.0
failed = False
k = len(classes)
for i, row in rows.iterrows():
    theirs = {row[f"top{j}_class"]: row[f"top{j}_probability"] for j in range(1, k + 1)}
    ours = probs[i]
    top = classes[int(np.argmax(ours))]
    diff = max(abs(float(ours[c]) - float(theirs[name])) for c, name in enumerate(classes))
    worst = max(worst, diff)
    ok = top == row["predicted"] and diff <= 1e-4
    failed |= not ok
    print(f"{row['path']}: onnxruntime {top} {ours.max():.6f}, runner {row['predicted']} "
          f"{row['probability']:.6f}, max diff {diff:.2e}{'' if ok else '  MISMATCH'}")
print(f"{len(rows)} images, largest probability difference {worst:.2e}")
sys.exit(1 if failed else 0)
