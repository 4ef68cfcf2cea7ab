"""torchvision ImageFolder + DataLoader(num_workers=2) with transforms
equivalent to the Keras CNN tutorial's augmentation (nearest resize to
128x128, one bilinear affine with rotation 90 and horizontal shift 0.5,
both flips, brightness factor in [0.1, 0.7], to [0, 1] floats), one epoch of
32 x 3 x 128 x 128 batches. Prints `RESULT <images> <seconds>`, timed from
the first batch on (worker start-up excluded).

Usage: python bench/data_torch.py FOLDER
"""
import sys
import time

import torch
from torchvision import datasets
from torchvision import transforms as T

folder = sys.argv[1]
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
ds = datasets.ImageFolder(folder, transform=tf)
dl = torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True, num_workers=2)
torch.manual_seed(42)
start = None
images = 0
for x, y in dl:
    assert tuple(x.shape[1:]) == (3, 128, 128) and x.dtype == torch.float32
    if start is None:
        start = time.perf_counter()
    else:
        images += x.shape[0]
print(f"RESULT {images} {time.perf_counter() - start:.4f}")
