"""The peer of `thrum bench --text-file`: sentence embeddings the way fastembed computes them
in Python, on the same ONNX file. Hugging Face's `tokenizers` (padding per batch to the longest
text, truncation at MAX_TOKENS) → ONNX Runtime's Python API → mean pooling over the attention
mask → L2 normalisation; each call embeds the next BATCH lines of the file (wrapping around),
as `thrum bench --text-file` does. Prints one JSON line: sentences/s and the stage split. No thrum code is
involved. Run with the venv-text interpreter of scripts/install-test-data.sh.

    python embed_python.py MODEL.onnx MODEL_DIR SENTENCES.txt BATCH THREADS SECONDS [PROCESSES]

PROCESSES > 1 runs that many copies at once, each with its own session of THREADS threads, and
sums their sentences/s: fastembed's data-parallel mode (`embed(..., parallel=N)`).
"""
import json
import os
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

MAX_TOKENS = 256


def parallel(processes):
    children = [
        subprocess.Popen([sys.executable, __file__, *sys.argv[1:7]], stdout=subprocess.PIPE)
        for _ in range(processes)
    ]
    outputs = [c.communicate()[0] for c in children]
    if any(c.returncode for c in children):
        sys.exit("a copy failed")
    runs = [json.loads(out) for out in outputs]
    total = dict(runs[0])
    total["sentences_per_s"] = sum(r["sentences_per_s"] for r in runs)
    total["calls"] = sum(r["calls"] for r in runs)
    for key in ("tokenize_ms", "inference_ms", "pool_ms"):
        total[key] = sum(r[key] for r in runs) / len(runs)
    total["processes"] = processes
    print(json.dumps(total))


def main():
    if len(sys.argv) > 7 and int(sys.argv[7]) > 1:
        return parallel(int(sys.argv[7]))
    onnx_path, model_dir, sentences, batch, threads, seconds = sys.argv[1:7]
    batch, threads, seconds = int(batch), int(threads), float(seconds)
    lines = [l.strip() for l in open(sentences, encoding="utf-8") if l.strip()]
    turn = [0]  # each call embeds the next BATCH lines, wrapping around, as `thrum bench` does
    tokenizer = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tokenizer.enable_truncation(MAX_TOKENS)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest of each batch
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])

    def embed():
        first = turn[0] * batch
        turn[0] += 1
        texts = [lines[(first + i) % len(lines)] for i in range(batch)]
        t0 = time.perf_counter()
        encodings = tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        types = np.array([e.type_ids for e in encodings], dtype=np.int64)
        t1 = time.perf_counter()
        (hidden,) = session.run(
            None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        )
        t2 = time.perf_counter()
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
        pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
        t3 = time.perf_counter()
        return t1 - t0, t2 - t1, t3 - t2

    for _ in range(3):
        embed()
    calls, stages = 0, np.zeros(3)
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        stages += embed()
        calls += 1
    wall = time.perf_counter() - start
    print(json.dumps({
        "sentences_per_s": calls * batch / wall,
        "calls": calls,
        "batch": batch,
        "threads": threads,
        "tokenize_ms": 1e3 * stages[0] / calls,
        "inference_ms": 1e3 * stages[1] / calls,
        "pool_ms": 1e3 * stages[2] / calls,
        "onnxruntime": ort.__version__,
    }))


if __name__ == "__main__":
    main()
