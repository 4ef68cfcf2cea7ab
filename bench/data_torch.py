"""torchvision ImageFolder + DataLoader with transforms equivalent to the
Keras CNN tutorial's augmentation (nearest resize to 128x128, one bilinear
affine with rotation 90 and horizontal shift 0.5, both flips, brightness
factor in [0.1, 0.7], to [0, 1] floats), one epoch of 32 x 3 x 128 x 128
batches. Prints `RESULT <images> <seconds> <workers>`, timed from the first
batch on (worker start-up excluded).

    python bench/data_torch.py FOLDER [--workers N] [--draft]

--workers: DataLoader worker processes (0: decode in this process).
--draft: decode JPEGs with PIL's draft mode, at the smallest DCT scale that
still covers 128x128 (what runner's loader does); torchvision's default
loader decodes the full image.
"""
import argparse
import time

import torch
from PIL import Image
from torchvision import datasets
from torchvision import transforms as T

p = argparse.ArgumentParser()
p.add_argument("folder")
p.add_argument("--workers", type=int, default=2)
p.add_argument("--draft", action="store_true")
a = p.parse_args()


def draft_loader(path):
    with open(path, "rb") as f:
        img = Image.open(f)
        img.draft("RGB", (128, 128))
        return img.convert("RGB")


tf = T.Compose(
    [
        T.Resize((128, 128), interpolation=T.InterpolationMode.NEAREST),
        T.RandomAffine(degrees=90, translate=(0.5, 0.0), interpolation=T.InterpolationMode.BILINEAR),
        T.RandomHorizontalFlip(),
        T.RandomVerticalFlip(),
        T.ColorJitter(brightness=(0.1, 0.7)),
        T.ToTensor(),
    ]
)
kwargs = {"loader": draft_loader} if a.draft else {}
ds = datasets.ImageFolder(a.folder, transform=tf, **kwargs)
dl = torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True, num_workers=a.workers)
torch.manual_seed(42)
start = None
images = 0
for x, y in dl:
    assert tuple(x.shape[1:]) == (3, 128, 128) and x.dtype == torch.float32
    if start is None:
        start = time.perf_counter()
    else:
        images += x.shape[0]
print(f"RESULT {images} {time.perf_counter() - start:.4f} {a.workers}")
