"""Drives a running `thrum serve` with the tritonclient package (HTTP with its default binary
tensors, HTTP with JSON, gRPC) and saves every answer, for the Rust test that compares them
with `thrum predict` (crates/cli/tests/serve.rs).

usage: tritonclient_check.py HTTP_ADDR GRPC_ADDR MODEL INPUTS_DIR OUT_DIR
       tritonclient_check.py --repository HTTP_ADDR GRPC_ADDR MODEL

INPUTS_DIR holds one NAME.npy per model input. For each way of calling (gRPC's bidirectional
stream included), OUT_DIR gets WAY__OUTPUT.npy per output; stdout gets a JSON report of the
metadata, config and errors seen.

--repository drives the model repository extension instead (a server started with
--model-control-mode explicit, MODEL loaded): index, unload and load over HTTP and gRPC, with
what each client sees in between; stdout gets the JSON report.
"""

import json
import os
import queue
import sys

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype


def main():
    http_addr, grpc_addr, model, inputs_dir, out_dir = sys.argv[1:6]
    inputs = {}
    for file in sorted(os.listdir(inputs_dir)):
        if file.endswith(".npy"):
            inputs[file[: -len(".npy")]] = np.load(os.path.join(inputs_dir, file), allow_pickle=True)
    report = {}
    h = httpclient.InferenceServerClient(url=http_addr, concurrency=4)
    report["live"] = h.is_server_live()
    report["ready"] = h.is_server_ready()
    report["model_ready"] = h.is_model_ready(model)
    report["server_metadata"] = h.get_server_metadata()
    report["metadata"] = h.get_model_metadata(model)
    report["config"] = h.get_model_config(model)
    outputs = [o["name"] for o in report["metadata"]["outputs"]]

    def http_inputs(binary):
        made = []
        for name, array in inputs.items():
            datatype = next(i["datatype"] for i in report["metadata"]["inputs"] if i["name"] == name)
            i = httpclient.InferInput(name, list(array.shape), datatype)
            i.set_data_from_numpy(array, binary_data=binary)
            made.append(i)
        return made

    def save(way, result, names):
        for name in names:
            a = result.as_numpy(name)
            if a.dtype == object:
                # BYTES come back as objects (bytes, or str from JSON): store them as numpy's
                # fixed-width bytes, which thrum reads.
                a = np.array([x if isinstance(x, bytes) else str(x).encode() for x in a.ravel()], dtype=np.bytes_).reshape(a.shape)
            np.save(os.path.join(out_dir, f"{way}__{name}.npy"), a)

    # tritonclient's defaults: binary inputs, binary outputs.
    r = h.infer(model, http_inputs(True), outputs=[httpclient.InferRequestedOutput(n) for n in outputs], request_id="b1")
    report["binary_id"] = r.get_response()["id"]
    save("http_binary", r, outputs)
    # JSON both ways (no binary extension at all).
    r = h.infer(model, http_inputs(False), outputs=[httpclient.InferRequestedOutput(n, binary_data=False) for n in outputs])
    report["json_outputs_have_data"] = all("data" in r.get_output(n) for n in outputs)
    save("http_json", r, outputs)
    # No outputs named: every output, in binary.
    save("http_all", h.infer(model, http_inputs(True)), outputs)
    # Concurrent requests on pooled connections.
    pending = [h.async_infer(model, http_inputs(True)) for _ in range(8)]
    for k, p in enumerate(pending):
        save(f"http_async{k}", p.get_result(), outputs)
    # Statistics after the calls above.
    report["stats"] = h.get_inference_statistics(model)
    try:
        h.get_model_metadata("no-such-model")
        report["unknown_model"] = None
    except InferenceServerException as e:
        report["unknown_model"] = [e.status(), e.message()]

    g = grpcclient.InferenceServerClient(url=grpc_addr)
    report["grpc_live"] = g.is_server_live()
    report["grpc_model_ready"] = g.is_model_ready(model)
    report["grpc_metadata"] = g.get_model_metadata(model, as_json=True)
    report["grpc_config"] = g.get_model_config(model, as_json=True)
    grpc_inputs = []
    for name, array in inputs.items():
        datatype = next(i["datatype"] for i in report["metadata"]["inputs"] if i["name"] == name)
        i = grpcclient.InferInput(name, list(array.shape), datatype)
        i.set_data_from_numpy(array)
        grpc_inputs.append(i)
    r = g.infer(model, grpc_inputs, outputs=[grpcclient.InferRequestedOutput(n) for n in outputs], request_id="g1")
    save("grpc", r, outputs)
    # The bidirectional stream (perf_analyzer's --streaming): answers come back on the stream
    # with their request ids; a bad request's error comes back too, and the stream goes on.
    answers = queue.Queue()
    g.start_stream(callback=lambda result, error: answers.put((result, error)))
    for k in range(8):
        g.async_stream_infer(model, grpc_inputs, outputs=[grpcclient.InferRequestedOutput(n) for n in outputs], request_id=f"s{k}")
    bad = grpcclient.InferInput(next(iter(inputs)), [1], "BOOL")
    bad.set_data_from_numpy(np.array([True]))
    g.async_stream_infer(model, [bad], request_id="bad")
    g.async_stream_infer(model, grpc_inputs, request_id="s8")
    g.stop_stream()
    stream = []
    while not answers.empty():
        result, error = answers.get()
        if error is not None:
            stream.append({"error": error.message()})
        else:
            rid = result.get_response().id
            stream.append({"id": rid})
            save(f"grpc_stream_{rid}", result, outputs)
    report["stream"] = stream
    report["grpc_stats"] = g.get_inference_statistics(model, as_json=True)
    try:
        g.get_model_metadata("no-such-model")
        report["grpc_unknown_model"] = None
    except InferenceServerException as e:
        report["grpc_unknown_model"] = [e.status(), e.message()]
    print(json.dumps(report, default=str))


def repository():
    http_addr, grpc_addr, model = sys.argv[2:5]
    report = {}
    h = httpclient.InferenceServerClient(url=http_addr)
    g = grpcclient.InferenceServerClient(url=grpc_addr)

    def error(call):
        try:
            call()
            return None
        except InferenceServerException as e:
            return [e.status(), e.message()]

    report["extensions"] = h.get_server_metadata()["extensions"]
    report["index"] = h.get_model_repository_index()
    h.unload_model(model)
    report["after_http_unload"] = {
        "ready": h.is_model_ready(model),
        "index": h.get_model_repository_index(),
        "infer": error(lambda: h.get_model_metadata(model)),
    }
    h.load_model(model)
    report["after_http_load"] = {"ready": h.is_model_ready(model)}
    g.unload_model(model)
    report["after_grpc_unload"] = {
        "ready": g.is_model_ready(model),
        "index": g.get_model_repository_index(as_json=True),
    }
    g.load_model(model)
    report["after_grpc_load"] = {"ready": g.is_model_ready(model), "index": g.get_model_repository_index(as_json=True)}
    report["http_load_unknown"] = error(lambda: h.load_model("no-such-model"))
    report["grpc_load_unknown"] = error(lambda: g.load_model("no-such-model"))
    print(json.dumps(report, default=str))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--repository"]:
        repository()
    else:
        main()
