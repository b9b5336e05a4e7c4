#!/usr/bin/env python3
"""ONNX Runtime's own Python API, as thrum's peer in tests and benchmarks.

Runs in the venv that scripts/install-test-data.sh creates (onnxruntime pinned to the version
thrum loads, and numpy).

  ort_python.py reference OUT_DIR MODEL.onnx...
      Feeds each model arange(n)/n for every (float) input -- dynamic dimensions at 1 -- with
      one intra-op thread, and writes each output as raw little-endian float32 to
      OUT_DIR/<model>_<k>.bin; prints {"<model>": [[shape of output k], ...]} as JSON.

  ort_python.py bench MODEL.onnx --workers W --intra I --duration S [--batch B]
      W Python threads call run() on one shared session (ONNX Runtime releases the GIL) for S
      seconds after a warm-up call each; prints JSON with samples/s, calls/s, P50/P99 ms and
      the mean per-call time in microseconds.

  ort_python.py quantize MODEL.onnx OUT.onnx
      ONNX Runtime's static int8 quantization (QDQ, per-channel weights), calibrated on eight
      seeded random inputs: a model for measuring what int8 kernels gain, not for its
      accuracy. Needs the `onnx` package besides onnxruntime (`pip install onnx`).
"""
import argparse
import json
import os
import threading
import time

import numpy as np
import onnxruntime as ort


def session(path, intra, workers=1):
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def feeds(sess, batch=1, arange=True):
    out = {}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) else (batch if k == 0 else 1) for k, d in enumerate(i.shape)]
        n = int(np.prod(shape))
        if i.type == "tensor(float)":
            data = (np.arange(n) / n).astype(np.float32) if arange else np.random.default_rng(0).random(n, np.float32)
        elif i.type == "tensor(int64)":
            data = np.ones(n, np.int64)
        else:
            raise SystemExit(f"{i.name}: input type {i.type} is not supported by this script")
        out[i.name] = data.reshape(shape)
    return out


def reference(out_dir, models):
    shapes = {}
    for path in models:
        sess = session(path, intra=1)
        outputs = sess.run(None, feeds(sess))
        name = os.path.splitext(os.path.basename(path))[0]
        shapes[name] = []
        for k, value in enumerate(outputs):
            value = np.ascontiguousarray(value, dtype="<f4")
            value.tofile(os.path.join(out_dir, f"{name}_{k}.bin"))
            shapes[name].append(list(value.shape))
    print(json.dumps(shapes))


def bench(path, workers, intra, duration, batch):
    sess = session(path, intra)
    inputs = feeds(sess, batch, arange=False)
    for _ in range(workers):
        sess.run(None, inputs)
    latencies = [[] for _ in range(workers)]
    start = threading.Barrier(workers + 1)
    deadline = [0.0]

    def worker(k):
        sess.run(None, inputs)
        start.wait()
        while True:
            t = time.perf_counter()
            if t >= deadline[0]:
                break
            sess.run(None, inputs)
            latencies[k].append(time.perf_counter() - t)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(workers)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    deadline[0] = t0 + duration
    start.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    all_lat = np.array(sorted(x for lat in latencies for x in lat))
    calls = len(all_lat)
    print(json.dumps({
        "engine": "onnxruntime-python " + ort.__version__,
        "workers": workers, "intra": intra, "batch": batch, "calls": calls,
        "calls_per_s": calls / wall, "samples_per_s": calls * batch / wall,
        "p50_ms": float(np.percentile(all_lat, 50) * 1e3), "p99_ms": float(np.percentile(all_lat, 99) * 1e3),
        "mean_call_us": float(all_lat.mean() * 1e6),
    }))


def quantize(path, out):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    sess = session(path, intra=1)

    class Seeded(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(0)
            self.batches = iter([{k: rng.random(v.shape, np.float32) for k, v in feeds(sess).items()} for _ in range(8)])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(path, out, Seeded(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    print(json.dumps({"model": path, "quantized": out}))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("reference")
    r.add_argument("out_dir")
    r.add_argument("models", nargs="+")
    b = sub.add_parser("bench")
    b.add_argument("model")
    b.add_argument("--workers", type=int, default=1)
    b.add_argument("--intra", type=int, default=1)
    b.add_argument("--duration", type=float, default=10.0)
    b.add_argument("--batch", type=int, default=1)
    q = sub.add_parser("quantize")
    q.add_argument("model")
    q.add_argument("out")
    args = parser.parse_args()
    if args.command == "reference":
        reference(args.out_dir, args.models)
    elif args.command == "quantize":
        quantize(args.model, args.out)
    else:
        bench(args.model, args.workers, args.intra, args.duration, args.batch)


if __name__ == "__main__":
    main()
