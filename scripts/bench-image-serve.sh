#!/usr/bin/env bash
# Serving images (docs/performance.md, "Serving images"): `thrum serve` with the real
# EfficientNet-Lite0 on ONNX Runtime, 2 workers × 1 intra-op thread, at concurrency 8, fed
# (a) encoded JPEG photographs as a v2 BYTES input (`thrum load --image-dir`: the server
# decodes, resizes, crops and normalises) and (b) pre-made float tensors [1,3,224,224]
# (`thrum load`'s random input); and (c) the Python pipeline of Pillow + NumPy + ONNX
# Runtime's Python API with 2 threads on the same photographs, in process (no HTTP). Alternates
# ROUNDS times. Prints markdown.
#   scripts/bench-image-serve.sh   (THRUM_BIN, DURATION_MS, ROUNDS)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
thrum=${THRUM_BIN:-target/release/thrum}
unset THRUM_BIN # thrum warns about THRUM_* variables it does not know
window=${DURATION_MS:-5000}
rounds=${ROUNDS:-3}
python="$(thrum_home)/testdata/venv-image/bin/python"
images="$(thrum_home)/testdata/images"
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT

"$thrum" zoo install efficientnet-lite0 >/dev/null
"$thrum" zoo export efficientnet-lite0 -o "$work/model.onnx" >/dev/null
mkdir -p "$work/jpeg"
"$python" - "$images" "$work/jpeg" <<'PY'
import sys
from PIL import Image
src, dst = sys.argv[1], sys.argv[2]
for name in ["chelsea.png", "coffee.png", "astronaut.png", "motorcycle_left.png"]:
    Image.open(f"{src}/{name}").convert("RGB").save(f"{dst}/{name[:-4]}.jpg", quality=90)
PY
cp "$images/rocket.jpg" "$work/jpeg/"

out="$work/serve.out"
"$thrum" serve -p zoo:efficientnet-lite0 -e ort --workers 2 --intra-op-threads 1 \
  --http-port 0 --no-grpc --shutdown-grace-s 0 >"$out" 2>"$out.err" &
pids+=($!)
for _ in $(seq 600); do
  grep -q "listening" "$out" 2>/dev/null && break
  sleep 0.1
done
http=$(awk '/listening/ {print $6}' "$out")

# row LABEL ARGS...: one closed-loop step at concurrency 8, as a row.
row() {
  local label=$1
  shift
  "$thrum" load -m efficientnet-lite0 -u "$http" --concurrency-range 8 \
    --measurement-interval "$window" -q --json "$work/load.json" "$@"
  python3 - "$work/load.json" "$label" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["steps"][0]
errors = sum(s["errors"].values())
print(f"| {sys.argv[2]} | {s['throughput']:.1f} | {s['latency']['p50_us'] / 1000:.2f} | "
      f"{s['latency']['p99_us'] / 1000:.2f} | {errors} |")
PY
}

echo "| input (concurrency 8) | images/s | P50 ms | P99 ms | errors |"
echo "| --- | --- | --- | --- | --- |"
for round in $(seq "$rounds"); do
  row "round $round: JPEG bytes (v2 BYTES, decoded by the server)" --image-dir "$work/jpeg"
  row "round $round: float tensors [1,3,224,224]" --input-data random
  peer=$("$python" "$here/image_pipeline_python.py" 2 "$((window / 1000))" "$work/model.onnx" "$work"/jpeg/*.jpg)
  echo "| round $round: Python: Pillow + NumPy + onnxruntime, 2 threads, in process | $peer | | | |"
done
