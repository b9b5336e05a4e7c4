"""Sends files to a content-type model (zoo:magika) served by `thrum serve` from the Python
`tritonclient` package, unchanged: one BYTES input of the files' bytes over HTTP (binary) and
gRPC, with Triton's classification extension (`class_count=1`) on the model's output. Prints
one JSON object: each protocol's "score:index:label" string per file. Run with the venv-serve
interpreter of scripts/install-test-data.sh.

    python triton_files_check.py HTTP_HOST:PORT GRPC_HOST:PORT MODEL OUTPUT FILE...
"""
import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient


def files_input(module, blobs):
    data = np.array(blobs, dtype=np.object_)
    inp = module.InferInput("files", [len(blobs)], "BYTES")
    if module is httpclient:
        inp.set_data_from_numpy(data, binary_data=True)
    else:
        inp.set_data_from_numpy(data)
    return inp


def top(array):
    return [(row[0].decode("utf-8") if isinstance(row[0], bytes) else str(row[0])) for row in array]


def main():
    http_url, grpc_url, model, output, files = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
    blobs = [open(f, "rb").read() for f in files]
    http = httpclient.InferenceServerClient(http_url)
    grpc = grpcclient.InferenceServerClient(grpc_url)
    out = {}
    result = http.infer(model, [files_input(httpclient, blobs)],
                        outputs=[httpclient.InferRequestedOutput(output, binary_data=True, class_count=1)])
    out["http"] = top(result.as_numpy(output))
    result = grpc.infer(model, [files_input(grpcclient, blobs)],
                        outputs=[grpcclient.InferRequestedOutput(output, class_count=1)])
    out["grpc"] = top(result.as_numpy(output))
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
