#!/usr/bin/env bash
# Installs what thrum's tests use that thrum cannot build itself, all from PyPI with pip.
# Idempotent; everything lands in $(thrum_home)/testdata:
#   onnx-light/     the onnx wheel's "light" model architectures and their reference outputs
#   ort-1.20.1/     an ONNX Runtime too old for thrum, to test the version check
#   venv-ort/       a Python venv with the real onnxruntime package (same version thrum loads)
#                   and numpy, for reference outputs and the speed comparison
#   venv-serve/     a Python venv with tritonclient[http,grpc], the client `thrum serve` is
#                   checked with, the `openai` client (its embeddings endpoint), and
#                   jsonschema + PyYAML, which validate deploy/kserve/ against KServe's CRD
#                   schemas
#   venv-mlserver/  a Python venv with MLServer (a v2 server no one here wrote) and
#                   onnxruntime, which `thrum load` is checked against
#   venv-tf/        a Python venv with the real tensorflow-cpu package (the version thrum
#                   loads), which builds the SavedModel the TensorFlow engine is checked against
#   venv-text/      a Python venv with the Python `tokenizers` package (token ids the Rust
#                   tokenizer is checked against) and numpy + safetensors, for an independent
#                   numpy implementation of the BERT encoder (scripts/text_reference.py), and
#                   onnxruntime, for the fastembed-style peer of `thrum bench --text-file`
#                   (scripts/embed_python.py)
#   images/         photographs of known content from the scikit-image wheel (BSD-3-Clause code;
#                   the images are CC0 or public domain, see skimage/data/README.txt): a cat,
#                   a coffee cup, an astronaut, a rocket, a motorcycle
#   photos/         every colour and grey photograph of the same wheel (19: those above and
#                   bricks, grass, gravel, coins, the moon, a page, the Hubble deep field, a
#                   retina…), the real images `thrum quantize` is calibrated and judged on
#   quant/          calib/ and eval/: two disjoint sets of 190 crops of those photos
#                   (scripts/quant_reference.py photos)
#   venv-image/     a Python venv with Pillow (the pre-processing thrum's images are checked
#                   against), numpy and onnxruntime (top-5 classes of the same ONNX model on
#                   Pillow's tensors), for scripts/image_reference.py, Google's `magika`
#                   package (the content types zoo:magika is checked against), and `onnx` +
#                   `sympy`, which ONNX Runtime's quantization tools (the peer of `thrum
#                   quantize`) need
#   rapidocr/       PaddleOCR's text-direction classifier, recogniser and detector from the
#                   rapidocr-onnxruntime wheel (Apache-2.0, pinned by version and hash): real
#                   ONNX models whose dynamic dimensions are unnamed (`?`) or cannot be unified
#                   by tract without a call's shapes
#   silero-vad/     Silero VAD's ONNX models from the silero-vad wheel (MIT, pinned by version
#                   and hash): the standard one (ONNX `If` on the sample rate) and the
#                   `If`-free one
#   files/          the corpus the Magika test runs on (scripts/magika_corpus.py): real files of
#                   ~30 types from the venv-image packages and real encoders, and short files
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

ONNX_VERSION=1.23.2
ORT_VERSION=1.32.0   # must match the version `thrum engines install ort` installs
ORT_OLD_VERSION=1.20.1
TRITONCLIENT_VERSION=2.73.0
OPENAI_VERSION=3.63.0
MLSERVER_VERSION=1.7.1
TF_VERSION=2.21.0   # must match the version `thrum engines install tensorflow` installs
TOKENIZERS_VERSION=0.23.3
NUMPY_VERSION=2.4.6
SAFETENSORS_VERSION=0.8.0
SKIMAGE_VERSION=0.26.0
PILLOW_VERSION=13.0.0
SYMPY_VERSION=1.14.0
RAPIDOCR_VERSION=1.4.4
RAPIDOCR_SHA256=971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf
SILERO_VERSION=6.2.3
SILERO_SHA256=7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8
MAGIKA_VERSION=1.0.3   # must match zoo:magika's package (crates/zoo/src/pretrained.rs)
data="$(thrum_home)/testdata"

# The serve tests run docs/serve.md's curl lines as printed: curl comes from Debian's packages
# where a machine lacks it.
if ! command -v curl >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get install -y -q curl >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q curl >/dev/null; }
  else
    echo "curl is missing and cannot be installed here (needs apt-get as root): install curl" >&2
    exit 1
  fi
fi
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

dest="$data/rapidocr"
if [ ! -f "$dest/.installed-$RAPIDOCR_VERSION-all" ]; then
  pip_fetch_pinned "rapidocr-onnxruntime==$RAPIDOCR_VERSION" "$RAPIDOCR_SHA256" "$tmp/rapidocr"
  wheel_extract "$tmp"/rapidocr/rapidocr_onnxruntime-*.whl "$dest" \
    'rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx' \
    'rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx' \
    'rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx'
  touch "$dest/.installed-$RAPIDOCR_VERSION-all"
fi
echo "test data: rapidocr-onnxruntime $RAPIDOCR_VERSION's PaddleOCR classifier, recogniser and detector in $dest"

dest="$data/silero-vad"
if [ ! -f "$dest/.installed-$SILERO_VERSION" ]; then
  pip_fetch_pinned "silero-vad==$SILERO_VERSION" "$SILERO_SHA256" "$tmp/silero"
  wheel_extract "$tmp"/silero/silero_vad-*.whl "$dest" 'silero_vad/data/silero_vad.onnx' \
    'silero_vad/data/silero_vad_op18_ifless.onnx'
  touch "$dest/.installed-$SILERO_VERSION"
fi
echo "test data: silero-vad $SILERO_VERSION's ONNX models in $dest"

dest="$data/images"
if [ ! -f "$dest/.installed-skimage-$SKIMAGE_VERSION" ]; then
  pip_fetch "scikit-image==$SKIMAGE_VERSION" "$tmp/skimage"
  wheel_extract "$tmp"/skimage/scikit_image-*.whl "$dest" 'skimage/data/chelsea.png' \
    'skimage/data/coffee.png' 'skimage/data/astronaut.png' 'skimage/data/rocket.jpg' \
    'skimage/data/motorcycle_left.png'
  touch "$dest/.installed-skimage-$SKIMAGE_VERSION"
fi
echo "test data: scikit-image $SKIMAGE_VERSION sample photographs in $dest"

dest="$data/photos"
if [ ! -f "$dest/.installed-skimage-$SKIMAGE_VERSION" ]; then
  pip_fetch "scikit-image==$SKIMAGE_VERSION" "$tmp/skimage"
  members=()
  for name in astronaut.png brick.png camera.png chelsea.png coffee.png coins.png color.png \
    grass.png gravel.png hubble_deep_field.jpg ihc.png logo.png moon.png motorcycle_left.png \
    motorcycle_right.png page.png retina.jpg rocket.jpg text.png; do
    members+=("skimage/data/$name")
  done
  wheel_extract "$tmp"/skimage/scikit_image-*.whl "$dest" "${members[@]}"
  touch "$dest/.installed-skimage-$SKIMAGE_VERSION"
fi
echo "test data: scikit-image $SKIMAGE_VERSION's 19 photographs in $dest"

venv="$data/venv-image"
stamp="$venv/.installed-pillow$PILLOW_VERSION-numpy$NUMPY_VERSION-ort$ORT_VERSION-magika$MAGIKA_VERSION-onnx$ONNX_VERSION-sympy$SYMPY_VERSION"
if [ ! -f "$stamp" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --only-binary :all: "pillow==$PILLOW_VERSION" \
    "numpy==$NUMPY_VERSION" "onnxruntime==$ORT_VERSION" "magika==$MAGIKA_VERSION" \
    "onnx==$ONNX_VERSION" "sympy==$SYMPY_VERSION"
  touch "$stamp"
fi
echo "test data: python pillow $PILLOW_VERSION, numpy $NUMPY_VERSION, onnxruntime $ORT_VERSION, magika $MAGIKA_VERSION, onnx $ONNX_VERSION, sympy $SYMPY_VERSION in $venv"

dest="$data/quant"
stamp="$dest/.installed-$(sha256sum "$here/quant_reference.py" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  rm -rf "$dest"
  "$venv/bin/python" "$here/quant_reference.py" photos "$dest/calib" "$dest/eval" "$data"/photos/*.*
  touch "$stamp"
fi
echo "test data: calibration and evaluation crops for thrum quantize in $dest"

dest="$data/files"
if [ ! -f "$dest/.installed-$(sha256sum "$here/magika_corpus.py" | cut -c1-16)" ]; then
  "$venv/bin/python" "$here/magika_corpus.py" "$data/images" "$dest"
  touch "$dest/.installed-$(sha256sum "$here/magika_corpus.py" | cut -c1-16)"
fi
echo "test data: the Magika corpus in $dest"

venv="$data/venv-ort"
if [ ! -f "$venv/.installed-$ORT_VERSION" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet "onnxruntime==$ORT_VERSION" numpy
  touch "$venv/.installed-$ORT_VERSION"
fi
echo "test data: python onnxruntime $ORT_VERSION in $venv"

venv="$data/venv-serve"
if [ ! -f "$venv/.installed-$TRITONCLIENT_VERSION-openai$OPENAI_VERSION" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet "tritonclient[http,grpc]==$TRITONCLIENT_VERSION" numpy \
    "jsonschema==4.*" "pyyaml==6.*" "openai==$OPENAI_VERSION"
  touch "$venv/.installed-$TRITONCLIENT_VERSION-openai$OPENAI_VERSION"
fi
echo "test data: python tritonclient $TRITONCLIENT_VERSION, openai $OPENAI_VERSION, jsonschema, pyyaml in $venv"

venv="$data/venv-mlserver"
if [ ! -f "$venv/.installed-$MLSERVER_VERSION-$ORT_VERSION" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  # uvloop 0.22 and later break MLServer 1.7's worker processes.
  "$venv/bin/python" -m pip install --quiet "mlserver==$MLSERVER_VERSION" "onnxruntime==$ORT_VERSION" numpy \
    "uvloop<0.22"
  touch "$venv/.installed-$MLSERVER_VERSION-$ORT_VERSION"
fi
echo "test data: python mlserver $MLSERVER_VERSION with onnxruntime $ORT_VERSION in $venv"

venv="$data/venv-tf"
if [ ! -f "$venv/.installed-$TF_VERSION" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet "tensorflow-cpu==$TF_VERSION" numpy
  touch "$venv/.installed-$TF_VERSION"
fi
echo "test data: python tensorflow-cpu $TF_VERSION in $venv"

venv="$data/venv-text"
stamp="$venv/.installed-$TOKENIZERS_VERSION-$NUMPY_VERSION-$SAFETENSORS_VERSION-ort$ORT_VERSION"
if [ ! -f "$stamp" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --only-binary :all: "tokenizers==$TOKENIZERS_VERSION" \
    "numpy==$NUMPY_VERSION" "safetensors==$SAFETENSORS_VERSION" "onnxruntime==$ORT_VERSION"
  touch "$stamp"
fi
echo "test data: python tokenizers $TOKENIZERS_VERSION, numpy $NUMPY_VERSION, safetensors $SAFETENSORS_VERSION, onnxruntime $ORT_VERSION in $venv"
