"""Writes an MLServer (1.7) model repository that serves one ONNX file through onnxruntime with
onnx_runtime.py, for `mlserver start DIR`. Everything listens on 127.0.0.1.

    python repo.py MODEL.onnx NAME DIR --http-port P --grpc-port P --metrics-port P \
        [--workers N] [--intra N]

--workers is MLServer's parallel_workers (0: inference on the server's own event loop; N: N
worker processes, each with its own onnxruntime session). --intra is onnxruntime's
intra_op_num_threads per session.
"""

import argparse
import json
import os
import shutil


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("name")
    p.add_argument("dir")
    p.add_argument("--http-port", type=int, required=True)
    p.add_argument("--grpc-port", type=int, required=True)
    p.add_argument("--metrics-port", type=int, required=True)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--intra", type=int, default=1)
    a = p.parse_args()
    model_dir = os.path.join(a.dir, a.name)
    os.makedirs(model_dir, exist_ok=True)
    shutil.copy(os.path.join(os.path.dirname(os.path.abspath(__file__)), "onnx_runtime.py"), model_dir)
    target = os.path.join(model_dir, "model.onnx")
    if os.path.lexists(target):
        os.remove(target)
    os.symlink(os.path.abspath(a.model), target)
    settings = {
        "debug": False,
        "host": "127.0.0.1",
        "http_port": a.http_port,
        "grpc_port": a.grpc_port,
        "metrics_port": a.metrics_port,
        "parallel_workers": a.workers,
        "load_models_at_startup": True,
        "gzip_enabled": False,
        "metrics_dir": os.path.join(os.path.abspath(a.dir), ".metrics"),
    }
    model_settings = {
        "name": a.name,
        "implementation": "onnx_runtime.OnnxRuntimeModel",
        "parameters": {
            "uri": "./model.onnx",
            "extra": {"intra_op_num_threads": a.intra, "inter_op_num_threads": 1, "run_in_thread": False},
        },
    }
    with open(os.path.join(a.dir, "settings.json"), "w") as f:
        json.dump(settings, f, indent=2)
    with open(os.path.join(model_dir, "model-settings.json"), "w") as f:
        json.dump(model_settings, f, indent=2)


if __name__ == "__main__":
    main()
