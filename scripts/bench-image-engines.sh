#!/usr/bin/env bash
# EfficientNet-Lite0 on every engine through the whole image pipeline (decode + resize +
# normalise, inference, top-k) on scikit-image's photographs re-encoded as JPEG, each engine
# with thrum's defaults (workers x intra-op threads = the usable cores), one after another in
# the same run; then what `thrum tune` picks on the same images.
#
#   bash scripts/bench-image-engines.sh [SECONDS_PER_ENGINE] [TUNE_BUDGET]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
seconds=${1:-20}
budget=${2:-300s}
thrum=${THRUM_BIN:-"${CARGO_TARGET_DIR:-$here/../target}/release/thrum"}
unset THRUM_BIN   # the script's own variable, not thrum's
python="$(thrum_home)/testdata/venv-image/bin/python"
images="$(thrum_home)/testdata/images"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/jpeg"
"$python" - "$images" "$work/jpeg" <<'PY'
import sys
from PIL import Image
src, dst = sys.argv[1], sys.argv[2]
for name in ["chelsea.png", "coffee.png", "astronaut.png", "motorcycle_left.png"]:
    Image.open(f"{src}/{name}").convert("RGB").save(f"{dst}/{name[:-4]}.jpg", quality=90)
PY
cp "$images/rocket.jpg" "$work/jpeg/"
"$thrum" zoo install efficientnet-lite0 >/dev/null
machine_line
echo "| engine | images/s | P50 ms | preprocess P50 ms (decode / resize) | inference P50 ms | RSS MiB (with predictors / peak) | threads |"
echo "|---|---|---|---|---|---|---|"
for engine in tract ort ort-openvino torch tensorflow mxnet; do
  case $engine in
    ort-openvino) engine_args=(-e ort --model-options ort.execution_providers=openvino) ;;
    *) engine_args=(-e "$engine") ;;
  esac
  "$thrum" bench -q "${engine_args[@]}" -p zoo:efficientnet-lite0 --image-dir "$work/jpeg" -b 1 -d "$seconds" --json "$work/$engine.json" >/dev/null 2>"$work/$engine.err" \
    || { echo "| $engine | failed: $(tail -1 "$work/$engine.err") | | | | | |"; continue; }
  "$python" - "$work/$engine.json" "$engine" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); res = r["results"]; lat = res["latency_ms"]; m = r["memory"]
parts = lat.get("parts", {})
t = r["threads"]
p50 = lambda d: d.get("p50_ms", 0.0)
print(f"| {sys.argv[2]} | {res['samples_per_s']:.1f} | {p50(lat['total']):.2f} | {p50(lat['preprocess']):.2f} ({p50(parts.get('decode', {})):.2f} / {p50(parts.get('resize', {})):.2f}) | {p50(lat['inference']):.2f} | {m['rss_after_predictors_mib']:.0f} / {m['rss_peak_run_mib']:.0f} | {r['plan']['workers']} x {t['engine']['intra_op']} |")
PY
done
"$thrum" tune -p zoo:efficientnet-lite0 --image-dir "$work/jpeg" --budget "$budget" -q -o "$work/tune" | grep -E "^Pick|^  " | head -20
