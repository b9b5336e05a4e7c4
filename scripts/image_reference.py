"""Reference image pre-processing and classes for thrum's image tests, from Pillow, numpy and
ONNX Runtime's Python API (no thrum code).

    python image_reference.py synth OUT_DIR PHOTO
        writes edge-case images made from PHOTO with Pillow into OUT_DIR: tiny, huge,
        panoramic, tall, grayscale, RGBA, palette GIF, lossless WebP, CMYK JPEG, progressive
        JPEG, JPEG with restart markers, and JPEGs whose EXIF orientation asks for a rotation or
        a mirror.

    python image_reference.py tensors OUT_DIR RESIZE CROP MEAN STD FILE...
        writes OUT_DIR/<index>.npy: each file as torchvision's Resize(RESIZE), CenterCrop(CROP),
        ToTensor(), Normalize(MEAN, STD) make it from a PIL image (Image.resize with Pillow's
        default antialiased bilinear filter), EXIF orientation applied first, float32 [3,H,W].
        MEAN and STD are one number for all three channels, on the 0-1 scale.

    python image_reference.py classes MODEL.onnx TENSOR.npy...
        prints JSON: each tensor's top-5 class indices and probabilities from ONNX Runtime.
"""

import json
import sys

import numpy as np
from PIL import Image, ImageOps


def synth(out_dir, photo):
    base = Image.open(photo).convert("RGB")
    made = {}

    def save(name, image, **kwargs):
        path = f"{out_dir}/{name}"
        image.save(path, **kwargs)
        made[name] = path

    save("tiny.png", base.resize((3, 2), Image.BILINEAR))
    save("huge.jpg", base.resize((4000, 3000), Image.BICUBIC), quality=92)
    save("panoramic.jpg", base.resize((2400, 120), Image.BILINEAR), quality=92)
    save("tall.png", base.resize((90, 700), Image.BILINEAR))
    save("grayscale.png", base.convert("L"))
    rgba = base.copy()
    rgba.putalpha(Image.linear_gradient("L").resize(base.size))
    save("rgba.png", rgba)
    save("palette.gif", base.convert("P", palette=Image.ADAPTIVE, colors=200))
    save("lossless.webp", base, lossless=True)
    save("cmyk.jpg", base.convert("CMYK"), quality=95)
    save("quality50.jpg", base, quality=50)
    save("progressive.jpg", base, quality=90, progressive=True)
    save("restarts.jpg", base, quality=90, restart_marker_rows=2)
    save("chroma422.jpg", base, quality=90, subsampling=1)
    save("grayscale.jpg", base.convert("L"), quality=90)
    for orientation in (3, 6, 8, 2):
        exif = Image.Exif()
        exif[0x0112] = orientation
        save(f"exif{orientation}.jpg", base, quality=95, exif=exif)
    print(json.dumps(made))


def tensors(out_dir, resize, crop, mean, std, files):
    for i, path in enumerate(files):
        image = ImageOps.exif_transpose(Image.open(path))
        image = image.convert("RGB")
        w, h = image.size
        # torchvision's Resize(int): the shorter side to `resize`, the longer truncated.
        if w <= h:
            size = (resize, int(resize * h / w))
        else:
            size = (int(resize * w / h), resize)
        image = image.resize(size, Image.BILINEAR)
        # torchvision's CenterCrop.
        top = int(round((size[1] - crop) / 2.0))
        left = int(round((size[0] - crop) / 2.0))
        image = image.crop((left, top, left + crop, top + crop))
        x = np.asarray(image, dtype=np.float32) / 255.0
        x = (x - mean) / std
        np.save(f"{out_dir}/{i}.npy", np.ascontiguousarray(x.transpose(2, 0, 1)))


def classes(model, files):
    import onnxruntime as ort

    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    result = []
    for path in files:
        x = np.load(path)[None]
        logits = session.run(None, {name: x})[0][0].astype(np.float64)
        p = np.exp(logits - logits.max())
        p /= p.sum()
        top = np.argsort(-p, kind="stable")[:5]
        result.append({"top5": [int(i) for i in top], "probabilities": [float(p[i]) for i in top]})
    print(json.dumps(result))


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "synth":
        synth(sys.argv[2], sys.argv[3])
    elif command == "tensors":
        out_dir, resize, crop, mean, std = sys.argv[2:7]
        tensors(out_dir, int(resize), int(crop), float(mean), float(std), sys.argv[7:])
    elif command == "classes":
        classes(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(f"unknown command {command}")
