#!/usr/bin/env bash
# Which int8 form tract runs fast (docs/performance.md, "tract and int8"): fp32 against thrum's
# QDQ model and its QOperator form (`thrum quantize --format qoperator`: convolutions as
# standard QLinearConv), with per-channel and per-tensor weights, on zoo:resnet18
# (calibrated on 8 seeded samples) and the real EfficientNet-Lite0 (100 calibration crops);
# `thrum bench -e tract` with thrum's default split (workers × 1 thread = cores), DURATION s
# each. Prints markdown.
#   bash scripts/bench-tract-int8.sh   (THRUM_BIN, DURATION)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
thrum=${THRUM_BIN:-"${CARGO_TARGET_DIR:-$here/../target}/release/thrum"}
unset THRUM_BIN   # the script's own variable, not thrum's
duration=${DURATION:-8}
data="$(thrum_home)/testdata"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
machine_line
echo
"$thrum" zoo export resnet18 -o "$out/resnet18.onnx" >/dev/null
"$thrum" zoo export efficientnet-lite0 -o "$out/lite0.onnx" >/dev/null
for weights in per-channel per-tensor; do
  for format in qdq qoperator; do
    flag=(--format "$format")
    [ "$weights" = per-tensor ] && flag+=(--per-tensor)
    name=$format
    [ "$format" = qoperator ] && name=qlinear
    "$thrum" quantize -p "$out/resnet18.onnx" --samples 8 "${flag[@]}" \
      -o "$out/resnet18-$name-$weights.onnx" >/dev/null
    "$thrum" quantize -p zoo:efficientnet-lite0 --calibration-images "$data/quant/calib" \
      --samples 100 "${flag[@]}" -o "$out/lite0-$name-$weights.onnx" >/dev/null
  done
done
speed() {
  "$thrum" bench -q -e tract -p "$1" -d "$duration" --json - | python3 -c '
import json, sys; print("%.1f" % json.load(sys.stdin)["results"]["samples_per_s"])'
}
echo "| model | fp32 | QDQ, per-channel | QDQ, per-tensor | QLinearConv, per-channel | QLinearConv, per-tensor |"
echo "|---|---|---|---|---|---|"
for m in resnet18 lite0; do
  fp32=$(speed "$out/$m.onnx")
  row="| $m | $fp32"
  for f in qdq-per-channel qdq-per-tensor qlinear-per-channel qlinear-per-tensor; do
    s=$(speed "$out/$m-$f.onnx")
    row+=" | $s ($(python3 -c "print('%.2f' % ($s / $fp32))")×)"
  done
  echo "$row |"
done
