#!/usr/bin/env bash
# thrum quantize against what a user gets by hand from ONNX Runtime's own tools, on the real
# EfficientNet-Lite0: `thrum quantize` and onnxruntime.quantization's quant_pre_process +
# quantize_static (QDQ, per-channel) on the same 100 calibration crops; both int8 models and
# fp32 judged by ONNX Runtime's Python API on 190 other crops (top-1 / top-5 agreement with
# fp32, logit cosine, images/s at batch 1 with all cores), and run by `thrum bench -e ort`
# (workers × threads = cores). Then `thrum quantize` on zoo:resnet50 with 100 calibration
# images: its time and peak memory, and the all-MiniLM-L6-v2 dynamic quantization.
#
#   bash scripts/bench-quantize.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
thrum=${THRUM_BIN:-"${CARGO_TARGET_DIR:-$here/../target}/release/thrum"}
unset THRUM_BIN   # the script's own variable, not thrum's
data="$(thrum_home)/testdata"
python="$data/venv-image/bin/python"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
machine_line
"$thrum" zoo export efficientnet-lite0 -o "$out/lite0.onnx" >/dev/null
recipe=(256 224 0.4980392 0.5019608)
echo "== thrum quantize (100 calibration crops; weights 7-bit where the CPU has no VNNI)"
"$thrum" quantize -p zoo:efficientnet-lite0 --calibration-images "$data/quant/calib" \
  --samples 100 -o "$out/thrum-int8.onnx" | sed -n '2,6p'
echo "== ONNX Runtime's quant_pre_process + quantize_static (QDQ, per-channel), same crops"
"$python" "$here/quant_reference.py" peer "$out/lite0.onnx" "$out/ort-int8.onnx" "${recipe[@]}" \
  "$data/quant/calib" 100 2>/dev/null
echo "== judged by ONNX Runtime's Python API on $(ls "$data/quant/eval" | wc -l) other crops"
"$python" "$here/quant_reference.py" evaluate "${recipe[@]}" "$data/quant/eval" \
  "$(nproc)" "$out/lite0.onnx" "$out/thrum-int8.onnx" "$out/ort-int8.onnx" 2>/dev/null \
  | "$python" -c '
import json, sys
r = json.load(sys.stdin)
for m in r["models"]:
    print("%-16s top-1 %.3f  top-5 %.3f  cosine %.4f  %6.1f images/s  %.2fx fp32" % (
        m["model"].split("/")[-1], m["top1_agreement"], m["top5_agreement"],
        m["mean_logit_cosine"], m["images_per_s"], m["speedup_over_fp32"]))'
echo "== thrum bench -e ort (20 s each, alternating, twice)"
for round in 1 2; do
  line="round $round:"
  for m in lite0 thrum-int8 ort-int8; do
    rate=$("$thrum" bench -e ort -p "$out/$m.onnx" --duration 20 --json - 2>/dev/null \
      | "$python" -c 'import json,sys; print("%.1f" % json.load(sys.stdin)["results"]["samples_per_s"])')
    line="$line $m $rate/s,"
  done
  echo "${line%,}"
done
echo "== thrum quantize zoo:resnet50, 100 calibration images (TorchServe's pre-processing)"
"$thrum" quantize -p zoo:resnet50 --calibration-images "$data/quant/calib" --samples 100 \
  -o "$out/resnet50-int8.onnx" | sed -n '3,5p'
echo "== thrum quantize --dynamic zoo:all-minilm-l6-v2"
"$thrum" quantize -p zoo:all-minilm-l6-v2 --dynamic -o "$out/minilm-int8.onnx" | sed -n '4,6p'
"$thrum" compare -p zoo:all-minilm-l6-v2 -e ort --precision int8 --int8-model "$out/minilm-int8.onnx" \
  --samples 50 | sed -n '3,5p'
