#!/usr/bin/env bash
# Installs the model files thrum's tests use that thrum cannot build itself: the "light"
# model architectures (ResNet-50, SqueezeNet, …) and their reference outputs shipped in the
# PyPI `onnx` wheel. Idempotent. Destination: $(thrum_home)/testdata/onnx-light.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

ONNX_VERSION=1.23.2
dest="$(thrum_home)/testdata/onnx-light"
stamp="$dest/.installed-onnx-$ONNX_VERSION"
if [ -f "$stamp" ]; then
  echo "test data: onnx $ONNX_VERSION light models already in $dest"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pip_fetch "onnx==$ONNX_VERSION" "$tmp"
wheel_extract "$tmp"/onnx-*.whl "$dest" 'onnx/backend/test/data/light/*.onnx' 'onnx/backend/test/data/light/*.pb'
touch "$stamp"
