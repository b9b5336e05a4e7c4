"""Times Pillow + NumPy pre-processing (torchvision's Resize(256) / CenterCrop(224) /
Normalize on a PIL image, as scripts/image_reference.py does it) over FILE..., one thread,
ROUNDS times; prints images per second.

    python image_preprocess_python.py ROUNDS FILE...
"""

import sys
import time

import numpy as np
from PIL import Image

MEAN, STD = 127.0 / 255.0, 128.0 / 255.0


def preprocess(source):
    """A path or a file object → the normalised float32 tensor [3, 224, 224]."""
    image = Image.open(source).convert("RGB")
    w, h = image.size
    size = (256, int(256 * h / w)) if w <= h else (int(256 * w / h), 256)
    image = image.resize(size, Image.BILINEAR)
    top, left = int(round((size[1] - 224) / 2.0)), int(round((size[0] - 224) / 2.0))
    image = image.crop((left, top, left + 224, top + 224))
    x = (np.asarray(image, dtype=np.float32) / 255.0 - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))


if __name__ == "__main__":
    import io

    rounds, files = int(sys.argv[1]), sys.argv[2:]
    datas = [open(f, "rb").read() for f in files]
    preprocess(io.BytesIO(datas[0]))  # warm up
    start = time.perf_counter()
    for _ in range(rounds):
        for data in datas:
            preprocess(io.BytesIO(data))
    elapsed = time.perf_counter() - start
    print(f"{rounds * len(files) / elapsed:.1f}")
