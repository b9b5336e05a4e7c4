#!/usr/bin/env bash
# thrum-ort against ONNX Runtime's own Python API (same ONNX Runtime 1.32.0 library), in one
# run, alternating the two for each configuration. Prints markdown rows for docs/performance.md.
#   scripts/bench-ort-vs-python.sh MODEL.onnx DURATION_S "WORKERSxINTRA ..." [EXTRA THRUM ARGS]
# e.g. scripts/bench-ort-vs-python.sh light_resnet50.onnx 10 "1x1 1x2 2x1"
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
model=$1 duration=$2 configs=$3
shift 3
thrum=${THRUM_BIN:-target/release/thrum}
python="$(thrum_home)/testdata/venv-ort/bin/python"
echo "| config (workers × intra) | ORT Python samples/s | thrum-ort samples/s | thrum / Python | Python P50 ms | thrum P50 ms | Python mean µs/call | thrum mean µs/call | thrum / Python per call |"
echo "|---|---|---|---|---|---|---|---|---|"
for config in $configs; do
  w=${config%x*} i=${config#*x}
  py=$("$python" "$here/ort_python.py" bench "$model" --workers "$w" --intra "$i" --duration "$duration")
  th=$("$thrum" bench -q -e ort -p "$model" -t "$w" --intra-op-threads "$i" -d "$duration" -w 1 --json - "$@")
  python3 -c '
import json, sys
config, py, th = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
t = th["results"]
tl = t["latency_ms"]["total"]
call_us = tl["mean_ms"] * 1000
print("| {} | {:.2f} | {:.2f} | {:.2f}x | {:.3f} | {:.3f} | {:.2f} | {:.2f} | {:.3f}x |".format(
    config, py["samples_per_s"], t["samples_per_s"], t["samples_per_s"] / py["samples_per_s"],
    py["p50_ms"], tl["p50_ms"], py["mean_call_us"], call_us, call_us / py["mean_call_us"]))' "$config" "$py" "$th"
done
