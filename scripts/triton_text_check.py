"""Checks that a text model served by `thrum serve` takes its texts over v2 from the Python
`tritonclient` package, unchanged: a BYTES input of UTF-8 texts over HTTP (binary and JSON) and
gRPC, answered with the FP32 output `embedding`; and that bytes that are not UTF-8 are refused
with an error. Prints one JSON object. Run with the venv-serve interpreter of
scripts/install-test-data.sh.

    python triton_text_check.py HTTP_HOST:PORT GRPC_HOST:PORT MODEL TEXT...
"""
import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException


def texts_input(module, texts, binary=True):
    data = np.array([t.encode("utf-8") if isinstance(t, str) else t for t in texts], dtype=np.object_)
    inp = module.InferInput("text", [len(texts)], "BYTES")
    if module is httpclient:
        inp.set_data_from_numpy(data, binary_data=binary)
    else:
        inp.set_data_from_numpy(data)
    return inp


def main():
    http_url, grpc_url, model, texts = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    http = httpclient.InferenceServerClient(http_url)
    grpc = grpcclient.InferenceServerClient(grpc_url)
    out = {}
    for label, binary in (("http_binary", True), ("http_json", False)):
        result = http.infer(model, [texts_input(httpclient, texts, binary)],
                            outputs=[httpclient.InferRequestedOutput("embedding", binary_data=binary)])
        out[label] = result.as_numpy("embedding").tolist()
    result = grpc.infer(model, [texts_input(grpcclient, texts)])
    out["grpc"] = result.as_numpy("embedding").tolist()
    errors = {}
    for label, client, module in (("http", http, httpclient), ("grpc", grpc, grpcclient)):
        try:
            client.infer(model, [texts_input(module, [texts[0], b"caf\xe9 \xff"])])
            errors[label] = None
        except InferenceServerException as e:
            errors[label] = str(e)
    out["invalid_utf8"] = errors
    print(json.dumps(out))


if __name__ == "__main__":
    main()
