#!/usr/bin/env bash
# Installs what thrum's tests use that thrum cannot build itself, all from PyPI with pip.
# Idempotent; everything lands in $(thrum_home)/testdata:
#   onnx-light/     the onnx wheel's "light" model architectures and their reference outputs
#   ort-1.20.1/     an ONNX Runtime too old for thrum, to test the version check
#   venv-ort/       a Python venv with the real onnxruntime package (same version thrum loads)
#                   and numpy, for reference outputs and the speed comparison
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

ONNX_VERSION=1.23.2
ORT_VERSION=1.32.0   # must match the version `thrum engines install ort` installs
ORT_OLD_VERSION=1.20.1
data="$(thrum_home)/testdata"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

dest="$data/onnx-light"
if [ ! -f "$dest/.installed-onnx-$ONNX_VERSION" ]; then
  pip_fetch "onnx==$ONNX_VERSION" "$tmp/onnx"
  wheel_extract "$tmp"/onnx/onnx-*.whl "$dest" 'onnx/backend/test/data/light/*.onnx' 'onnx/backend/test/data/light/*.pb'
  touch "$dest/.installed-onnx-$ONNX_VERSION"
fi
echo "test data: onnx $ONNX_VERSION light models in $dest"

dest="$data/ort-$ORT_OLD_VERSION"
if [ ! -f "$dest/.installed" ]; then
  pip_fetch "onnxruntime==$ORT_OLD_VERSION" "$tmp/ort-old"
  wheel_extract "$tmp"/ort-old/onnxruntime-*.whl "$dest" 'onnxruntime/capi/libonnxruntime.so*'
  touch "$dest/.installed"
fi
echo "test data: onnxruntime $ORT_OLD_VERSION library in $dest"

venv="$data/venv-ort"
if [ ! -f "$venv/.installed-$ORT_VERSION" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet "onnxruntime==$ORT_VERSION" numpy
  touch "$venv/.installed-$ORT_VERSION"
fi
echo "test data: python onnxruntime $ORT_VERSION in $venv"
