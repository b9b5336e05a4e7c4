"""Checks that an image model served by `thrum serve` takes encoded images over v2 from the
Python `tritonclient` package, unchanged: a BYTES input of JPEG/PNG bytes over HTTP (binary) and
gRPC, answered with the model's scores or, with Triton's classification extension
(`class_count`), with "score:index:label" strings, over HTTP (binary and JSON outputs) and gRPC;
and that an element that is not an image, and a class count beyond the classes, are refused
with errors. Prints one JSON object. Run with the venv-serve interpreter of
scripts/install-test-data.sh.

    python triton_image_check.py HTTP_HOST:PORT GRPC_HOST:PORT MODEL OUTPUT IMAGE...
"""
import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException


def images_input(module, blobs):
    data = np.array(blobs, dtype=np.object_)
    inp = module.InferInput("images", [len(blobs)], "BYTES")
    if module is httpclient:
        inp.set_data_from_numpy(data, binary_data=True)
    else:
        inp.set_data_from_numpy(data)
    return inp


def strings(array):
    # Binary outputs come back as bytes, JSON ones as str.
    return [[s.decode("utf-8") if isinstance(s, bytes) else str(s) for s in row] for row in array]


def main():
    http_url, grpc_url, model, output, files = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
    blobs = [open(f, "rb").read() for f in files]
    http = httpclient.InferenceServerClient(http_url)
    grpc = grpcclient.InferenceServerClient(grpc_url)
    out = {"extensions": http.get_server_metadata()["extensions"]}
    result = http.infer(model, [images_input(httpclient, blobs)],
                        outputs=[httpclient.InferRequestedOutput(output, binary_data=True)])
    out["scores"] = result.as_numpy(output).tolist()
    for label, binary in (("http_binary", True), ("http_json", False)):
        result = http.infer(model, [images_input(httpclient, blobs)],
                            outputs=[httpclient.InferRequestedOutput(output, binary_data=binary, class_count=5)])
        out[label] = strings(result.as_numpy(output))
    result = grpc.infer(model, [images_input(grpcclient, blobs)],
                        outputs=[grpcclient.InferRequestedOutput(output, class_count=5)])
    out["grpc"] = strings(result.as_numpy(output))
    errors = {}
    bad = [blobs[0], b"plain text, not an image"]
    for label, client, module in (("http", http, httpclient), ("grpc", grpc, grpcclient)):
        try:
            client.infer(model, [images_input(module, bad)])
            errors[label + "_not_an_image"] = None
        except InferenceServerException as e:
            errors[label + "_not_an_image"] = str(e)
        try:
            client.infer(model, [images_input(module, blobs[:1])],
                         outputs=[module.InferRequestedOutput(output, class_count=5000)])
            errors[label + "_class_count"] = None
        except InferenceServerException as e:
            errors[label + "_class_count"] = str(e)
    out["errors"] = errors
    print(json.dumps(out))


if __name__ == "__main__":
    main()
