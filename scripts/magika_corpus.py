"""Writes the corpus thrum's Magika test runs on: real files of many types, each taken from a
package installed beside this script's Python (magika, numpy, Pillow, the standard library)
or written by a real encoder (Pillow's PDF, GIF, TIFF, WebP and BMP writers, zipfile, tarfile,
gzip, bz2, lzma, sqlite3, pydoc's HTML), plus the short files Magika decides without its model.

usage: python magika_corpus.py SAMPLE_IMAGES_DIR OUT_DIR
"""

import bz2
import csv
import gzip
import io
import lzma
import os
import pickle
import plistlib
import pydoc
import random
import shutil
import sqlite3
import sys
import tarfile
import zipfile
from pathlib import Path

import json as json_module
import magika
import numpy
from PIL import Image


def main() -> None:
    images, out = Path(sys.argv[1]), Path(sys.argv[2])
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    pkg = Path(magika.__file__).parent
    numpy_dir = Path(numpy.__file__).parent

    # Files as their packages ship them.
    shutil.copy(pkg / "magika.py", out / "source.py")
    shutil.copy(pkg / "config" / "content_types_kb.min.json", out / "kb.json")
    shutil.copy(pkg / "models" / "standard_v3_3" / "README.md", out / "readme.md")
    shutil.copy(pkg / "models" / "standard_v3_3" / "model.onnx", out / "model.onnx")
    header = numpy_dir / "_core" / "include" / "numpy" / "ndarraytypes.h"
    shutil.copy(header, out / "ndarraytypes.h")
    so = sorted(numpy_dir.glob("_core/_multiarray_umath*.so"))[0]
    shutil.copy(so, out / "library.so")
    shutil.copy(Path(sys.executable).parent / "activate", out / "activate.sh")
    shutil.copy(images / "chelsea.png", out / "chelsea.png")
    shutil.copy(images / "rocket.jpg", out / "rocket.jpg")

    # Written by real encoders.
    photo = Image.open(images / "coffee.png").convert("RGB")
    photo.save(out / "coffee.pdf")
    photo.save(out / "coffee.gif")
    photo.save(out / "coffee.tiff")
    photo.save(out / "coffee.webp")
    photo.save(out / "coffee.bmp")
    with zipfile.ZipFile(out / "archive.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.write(out / "source.py", "source.py")
        z.write(out / "kb.json", "kb.json")
    with tarfile.open(out / "archive.tar", "w") as t:
        t.add(out / "source.py", "source.py")
    (out / "source.py.gz").write_bytes(gzip.compress((out / "source.py").read_bytes(), mtime=0))
    (out / "source.py.bz2").write_bytes(bz2.compress((out / "source.py").read_bytes()))
    (out / "source.py.xz").write_bytes(lzma.compress((out / "source.py").read_bytes()))
    (out / "json.html").write_text(pydoc.HTMLDoc().page("json", pydoc.HTMLDoc().docmodule(json_module)))
    db = sqlite3.connect(out / "table.sqlite")
    db.execute("create table t (id integer primary key, name text)")
    db.executemany("insert into t (name) values (?)", [(f"row {i}",) for i in range(100)])
    db.commit()
    db.close()
    numpy.save(out / "array.npy", numpy.arange(1000, dtype=numpy.float32).reshape(10, 100))
    (out / "object.pickle").write_bytes(pickle.dumps({"a": list(range(100)), "b": "text"}))
    (out / "settings.plist").write_bytes(plistlib.dumps({"Name": "thrum", "Items": list(range(20))}))
    with open(out / "table.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "name", "score"])
        for i in range(50):
            w.writerow([i, f"name {i}", i * 0.5])
    (out / "random.bin").write_bytes(random.Random(0).randbytes(8192))

    # What Magika decides without its model: empty, under 8 bytes, or under 8 once stripped.
    (out / "empty").write_bytes(b"")
    (out / "one-byte").write_bytes(b"x")
    (out / "seven-bytes").write_bytes(b"hello!!")
    (out / "short-binary").write_bytes(b"\xff\xfe\x00\x01")
    (out / "padded-short").write_bytes(b" \t\n\x0b\x0c  ab\n\n   ")
    (out / "whitespace").write_bytes(b" " * 5000)
    print(f"{len(os.listdir(out))} files in {out}")


if __name__ == "__main__":
    main()
