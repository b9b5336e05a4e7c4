"""The peer and the judge of `thrum quantize`: ONNX Runtime's own quantization tools and its
Python API (no thrum code).

    python quant_reference.py photos CALIB_DIR EVAL_DIR PHOTO...
        writes variants of each photo (crops at five places and two scales, mirrored or not,
        as PNG) alternately into CALIB_DIR and EVAL_DIR: two disjoint sets of real images, one
        to calibrate on and one to measure agreement on.

    python quant_reference.py peer FP32.onnx OUT.onnx RESIZE CROP MEAN STD CALIB_DIR [N]
        what a user does by hand: onnxruntime.quantization's quant_pre_process, then
        quantize_static (QDQ, per-channel weights, its default types and MinMax calibration)
        on the first N images of CALIB_DIR, pre-processed with Pillow as torchvision does.

    python quant_reference.py evaluate RESIZE CROP MEAN STD EVAL_DIR THREADS FP32.onnx MODEL...
        prints JSON: for each model, on every image of EVAL_DIR, top-1 and top-5 agreement with
        the fp32 model (fp32's class first / among its five first), the largest difference of
        the softmax, the mean cosine of the logits to fp32's, and images/s at batch 1 with THREADS intra-op threads (each model timed
        in alternation, three rounds, the best kept).

    python quant_reference.py optimized MODEL.onnx NODE...
        prints JSON: each NODE as ONNX Runtime's CPU provider has it after its basic graph
        optimizations (where it quantizes the float weights of Conv and Gemm nodes that read a
        DequantizeLinear): its operator, its weight input's name, and whether that is a float
        initializer.
"""

import glob
import json
import os
import sys
import tempfile
import time

import numpy as np
from PIL import Image, ImageOps


def photos(calib_dir, eval_dir, files):
    os.makedirs(calib_dir, exist_ok=True)
    os.makedirs(eval_dir, exist_ok=True)
    k = 0
    for path in files:
        base = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
        stem = os.path.splitext(os.path.basename(path))[0]
        w, h = base.size
        for scale in (0.9, 0.7):
            cw, ch = int(w * scale), int(h * scale)
            for (fx, fy) in ((0.5, 0.5), (0, 0), (1, 0), (0, 1), (1, 1)):
                left, top = int((w - cw) * fx), int((h - ch) * fy)
                crop = base.crop((left, top, left + cw, top + ch))
                for mirror in (False, True):
                    image = ImageOps.mirror(crop) if mirror else crop
                    name = f"{stem}-{int(scale * 100)}-{fx}-{fy}-{int(mirror)}.png"
                    out = calib_dir if k % 2 == 0 else eval_dir
                    image.save(os.path.join(out, name))
                    k += 1


def tensor(path, resize, crop, mean, std):
    image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    w, h = image.size
    size = (resize, int(resize * h / w)) if w <= h else (int(resize * w / h), resize)
    image = image.resize(size, Image.BILINEAR)
    top = int(round((size[1] - crop) / 2.0))
    left = int(round((size[0] - crop) / 2.0))
    image = image.crop((left, top, left + crop, top + crop))
    x = (np.asarray(image, dtype=np.float32) / 255.0 - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1))[None].astype(np.float32)


def images(directory):
    return sorted(p for p in glob.glob(os.path.join(directory, "*")) if os.path.isfile(p))


def peer(fp32, out, resize, crop, mean, std, calib_dir, n):
    import onnxruntime as ort
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    name = ort.InferenceSession(fp32, providers=["CPUExecutionProvider"]).get_inputs()[0].name
    samples = [tensor(p, resize, crop, mean, std) for p in images(calib_dir)[:n]]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(samples)

        def get_next(self):
            x = next(self.items, None)
            return None if x is None else {name: x}

    prepared = out + ".pre.onnx"
    started = time.perf_counter()
    quant_pre_process(fp32, prepared)
    quantize_static(prepared, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True)
    os.remove(prepared)
    print(json.dumps({"samples": len(samples), "seconds": time.perf_counter() - started}))


def evaluate(resize, crop, mean, std, eval_dir, threads, fp32, models):
    import onnxruntime as ort

    xs = [tensor(p, resize, crop, mean, std) for p in images(eval_dir)]

    def session(path):
        o = ort.SessionOptions()
        o.intra_op_num_threads = threads
        o.inter_op_num_threads = 1
        return ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])

    sessions = {path: session(path) for path in [fp32] + models}

    def run(s):
        name = s.get_inputs()[0].name
        return np.concatenate([s.run(None, {name: x})[0] for x in xs]).astype(np.float64)

    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    reference = run(sessions[fp32])
    ref_top1 = reference.argmax(axis=1)
    best = {path: 0.0 for path in sessions}
    for _ in range(3):
        for path, s in sessions.items():
            started = time.perf_counter()
            run(s)
            best[path] = max(best[path], len(xs) / (time.perf_counter() - started))
    result = {"samples": len(xs), "threads": threads, "models": []}
    for path in [fp32] + models:
        logits = run(sessions[path])
        top5 = np.argsort(-logits, axis=1, kind="stable")[:, :5]
        result["models"].append({
            "model": path,
            "top1_agreement": float((logits.argmax(axis=1) == ref_top1).mean()),
            "top5_agreement": float(np.mean([ref_top1[i] in top5[i] for i in range(len(xs))])),
            "max_abs_softmax_diff": float(np.abs(softmax(logits) - softmax(reference)).max()),
            "mean_logit_cosine": float(np.mean(
                (logits * reference).sum(axis=1)
                / np.linalg.norm(logits, axis=1) / np.linalg.norm(reference, axis=1))),
            "images_per_s": best[path],
            "speedup_over_fp32": best[path] / best[fp32],
        })
    print(json.dumps(result, indent=2))


def optimized(model, names):
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        o = ort.SessionOptions()
        o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        o.optimized_model_filepath = os.path.join(tmp, "basic.onnx")
        ort.InferenceSession(model, o, providers=["CPUExecutionProvider"])
        graph = onnx.load(o.optimized_model_filepath).graph
    floats = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    nodes = {n.name: n for n in graph.node}
    result = {}
    for name in names:
        n = nodes.get(name)
        result[name] = None if n is None else {
            "op_type": n.op_type,
            "weight": n.input[1] if len(n.input) > 1 else None,
            "float_weight": len(n.input) > 1 and n.input[1] in floats,
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "photos":
        photos(args[0], args[1], args[2:])
    elif command == "peer":
        n = int(args[7]) if len(args) > 7 else 100
        peer(args[0], args[1], int(args[2]), int(args[3]), float(args[4]), float(args[5]),
             args[6], n)
    elif command == "evaluate":
        evaluate(int(args[0]), int(args[1]), float(args[2]), float(args[3]), args[4],
                 int(args[5]), args[6], args[7:])
    elif command == "optimized":
        optimized(args[0], args[1:])
    else:
        sys.exit(f"unknown command {command}")
