"""The Python peer of serving images: Pillow + NumPy pre-processing (scripts/
image_preprocess_python.py's) and ONNX Runtime's Python API, THREADS threads
sharing one session (intra-op 1 each), every thread taking the files in turn, for SECONDS;
prints images per second.

    python image_pipeline_python.py THREADS SECONDS MODEL.onnx FILE...
"""

import io
import os
import sys
import threading
import time

import onnxruntime as ort

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from image_preprocess_python import preprocess as preprocess_file  # noqa: E402


def preprocess(data):
    return preprocess_file(io.BytesIO(data))[None]


threads, seconds, model, files = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4:]
options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
datas = [open(f, "rb").read() for f in files]
session.run(None, {name: preprocess(datas[0])})  # warm up
counts = [0] * threads
stop = time.perf_counter() + seconds


def work(k):
    i = k
    while time.perf_counter() < stop:
        session.run(None, {name: preprocess(datas[i % len(datas)])})
        counts[k] += 1
        i += 1


start = time.perf_counter()
pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
for t in pool:
    t.start()
for t in pool:
    t.join()
print(f"{sum(counts) / (time.perf_counter() - start):.1f}")
