#!/usr/bin/env bash
# What each precision gives on this CPU, engine by engine, on the real models: `thrum compare
# --precision fp32,bf16,int8` on EfficientNet-Lite0 (real crops), all-MiniLM-L6-v2 (real
# sentences, compared as pooled embeddings) and zoo:resnet50 (random weights: agreement only),
# on each engine's default backend and on ONNX Runtime's OpenVINO provider (where its bf16
# runs). Speed-ups are over the same engine's fp32 at the same threads, batch 1, in the same
# run. int8 is the model `thrum quantize --for-engine ENGINE` writes for each engine (static,
# MinMax; dynamic for the text model).
#
#   bash scripts/bench-precision.sh [SAMPLES]      (default 100)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
thrum=${THRUM_BIN:-"${CARGO_TARGET_DIR:-$here/../target}/release/thrum"}
unset THRUM_BIN   # the script's own variable, not thrum's
samples=${1:-100}
data="$(thrum_home)/testdata/quant"
machine_line
"$thrum" engines | grep '^cpu:'
compare() {
  local what=$1
  shift
  echo "== $what"
  # A precision below the target exits 1: that is a result here, not a failure.
  "$thrum" compare --precision fp32,bf16,int8 --samples "$samples" "$@" 2>/dev/null | grep -v '^cpu:' || true
}
images=(--images "$data/eval" --calibration-images "$data/calib")
compare "zoo:efficientnet-lite0, real crops" -p zoo:efficientnet-lite0 -e tract,ort,torch,tensorflow "${images[@]}"
compare "zoo:efficientnet-lite0 on ONNX Runtime's OpenVINO provider" -p zoo:efficientnet-lite0 -e ort \
  --model-options ort.execution_providers=openvino "${images[@]}"
texts=(--texts "$here/data/sentences.txt")
compare "zoo:all-minilm-l6-v2, real sentences" -p zoo:all-minilm-l6-v2 -e ort,torch,tensorflow "${texts[@]}"
compare "zoo:all-minilm-l6-v2 on ONNX Runtime's OpenVINO provider" -p zoo:all-minilm-l6-v2 -e ort \
  --model-options ort.execution_providers=openvino "${texts[@]}"
compare "zoo:resnet50 (random weights), real crops" -p zoo:resnet50 -e ort,torch,tensorflow "${images[@]}"
compare "zoo:resnet50 on ONNX Runtime's OpenVINO provider" -p zoo:resnet50 -e ort \
  --model-options ort.execution_providers=openvino "${images[@]}"
