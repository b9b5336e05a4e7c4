#!/usr/bin/env bash
# Image pre-processing (decode + resize + center crop + normalise) of real JPEG photographs:
# thrum (libjpeg-turbo + fast_image_resize) against Pillow + NumPy, one thread each, the same files
# in the same run. The photographs are scikit-image's samples (scripts/install-test-data.sh),
# re-encoded as JPEG at quality 90 by Pillow where they ship as PNG.
#
#   bash scripts/bench-image-preprocess.sh [ROUNDS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
rounds=${1:-20}
thrum=${THRUM_BIN:-"${CARGO_TARGET_DIR:-$here/../target}/release/thrum"}
python="$(thrum_home)/testdata/venv-image/bin/python"
images="$(thrum_home)/testdata/images"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" - "$images" "$work" <<'PY'
import sys
from PIL import Image
src, dst = sys.argv[1], sys.argv[2]
for name in ["chelsea.png", "coffee.png", "astronaut.png", "motorcycle_left.png"]:
    Image.open(f"{src}/{name}").convert("RGB").save(f"{dst}/{name[:-4]}.jpg", quality=90)
PY
cp "$images/rocket.jpg" "$work/"
files=("$work"/*.jpg)
"$thrum" zoo install efficientnet-lite0 >/dev/null
args=()
for _ in $(seq "$rounds"); do for f in "${files[@]}"; do args+=(--image "$f"); done; done
for attempt in 1 2 3; do
  ours=$(taskset -c 0 "$thrum" predict -e ort --intra-op-threads 1 -p zoo:efficientnet-lite0 --top-k 1 --json "${args[@]}" \
    | "$python" -c 'import json,sys; r=json.load(sys.stdin); n = len(r["images"]); print("%.1f" % (n / r["preprocess_ms"] * 1000))')
  theirs=$(taskset -c 0 "$python" "$here/image_preprocess_python.py" "$rounds" "${files[@]}")
  echo "round $attempt: thrum $ours images/s, Pillow + NumPy $theirs images/s, ratio $("$python" -c "print(f'{$ours / $theirs:.2f}')")"
done
