"""An MLServer (1.7) runtime that serves an ONNX file through onnxruntime: the peer thrum serve
is compared with (scripts/bench-serve.sh) and thrum load is checked against
(crates/cli/tests/load.rs).

model-settings.json:
    {"name": "mlp", "implementation": "onnx_runtime.OnnxRuntimeModel",
     "parameters": {"uri": "./model.onnx", "extra": {"intra_op_num_threads": 1}}}

Every request input is decoded with MLServer's NumpyCodec, whatever its name, and cast to the
dtype the graph declares; outputs keep the graph's names and exact shapes. MLServer 1.7's REST
front has no binary tensor data extension: call it with JSON (or over gRPC).
"""

from typing import Dict, List

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.errors import InferenceError
from mlserver.types import InferenceRequest, InferenceResponse, MetadataTensor
from mlserver.utils import get_model_uri

_ORT_TO_NUMPY = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int8)": np.int8, "tensor(int16)": np.int16, "tensor(int32)": np.int32,
    "tensor(int64)": np.int64, "tensor(uint8)": np.uint8, "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32, "tensor(uint64)": np.uint64, "tensor(bool)": np.bool_,
}
_NUMPY_TO_V2 = {
    np.dtype(np.float32): "FP32", np.dtype(np.float16): "FP16", np.dtype(np.float64): "FP64",
    np.dtype(np.int8): "INT8", np.dtype(np.int16): "INT16", np.dtype(np.int32): "INT32",
    np.dtype(np.int64): "INT64", np.dtype(np.uint8): "UINT8", np.dtype(np.uint16): "UINT16",
    np.dtype(np.uint32): "UINT32", np.dtype(np.uint64): "UINT64", np.dtype(np.bool_): "BOOL",
}


def _shape(dims) -> List[int]:
    return [d if isinstance(d, int) else -1 for d in dims]


class OnnxRuntimeModel(MLModel):
    async def load(self) -> bool:
        uri = await get_model_uri(self._settings, wellknown_filenames=["model.onnx"])
        extra = dict(self._settings.parameters.extra or {}) if self._settings.parameters else {}
        options = ort.SessionOptions()
        if extra.get("intra_op_num_threads") is not None:
            options.intra_op_num_threads = int(extra["intra_op_num_threads"])
        if extra.get("inter_op_num_threads") is not None:
            options.inter_op_num_threads = int(extra["inter_op_num_threads"])
        self._session = ort.InferenceSession(uri, sess_options=options, providers=["CPUExecutionProvider"])
        self._dtypes: Dict[str, np.dtype] = {
            i.name: np.dtype(_ORT_TO_NUMPY.get(i.type, np.float32)) for i in self._session.get_inputs()
        }
        self._outputs = [o.name for o in self._session.get_outputs()]
        self.inputs = [
            MetadataTensor(name=i.name, datatype=_NUMPY_TO_V2[self._dtypes[i.name]], shape=_shape(i.shape))
            for i in self._session.get_inputs()
        ]
        self.outputs = [
            MetadataTensor(
                name=o.name,
                datatype=_NUMPY_TO_V2.get(np.dtype(_ORT_TO_NUMPY.get(o.type, np.float32)), "FP32"),
                shape=_shape(o.shape),
            )
            for o in self._session.get_outputs()
        ]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {}
        for request_input in payload.inputs:
            if request_input.name not in self._dtypes:
                raise InferenceError(f"unknown input '{request_input.name}'; inputs: {list(self._dtypes)}")
            array = NumpyCodec.decode_input(request_input)
            feeds[request_input.name] = np.ascontiguousarray(array.astype(self._dtypes[request_input.name], copy=False))
        names = [o.name for o in payload.outputs] if payload.outputs else self._outputs
        try:
            results = self._session.run(names, feeds)
        except Exception as e:  # onnxruntime's errors (a bad shape) are the caller's
            raise InferenceError(f"onnxruntime: {e}") from e
        outputs = []
        for name, value in zip(names, results):
            out = NumpyCodec.encode_output(name=name, payload=value)
            out.shape = list(value.shape)
            outputs.append(out)
        return InferenceResponse(model_name=self.name, model_version=self.version, outputs=outputs)
