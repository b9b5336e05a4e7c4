#!/usr/bin/env bash
# thrum's test command (README.md): installs everything the tests need on a fresh machine, then
# runs every check with every engine that can be built here. CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

# Engines ship as PyPI wheels; `thrum engines install` fetches them with pip (no feature needed
# to install). Test data: the onnx wheel's light models, an old ONNX Runtime for the version
# check, and the onnxruntime Python package as a reference.
cargo run --quiet --locked -p thrum -- engines install ort torch mxnet
bash scripts/install-test-data.sh

# thrum-torch links libtorch at build time (tch reads LIBTORCH); its tests and the `thrum`
# binary carry an rpath to it, doctests and unit tests take it from LD_LIBRARY_PATH. A missing
# libtorch stops here, loudly, rather than leaving torch untested.
home="${THRUM_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/thrum}"
export LIBTORCH="$home/engines/torch"
if [[ ! -f "$LIBTORCH/lib/libtorch_cpu.so" ]]; then
    echo "libtorch missing: $LIBTORCH/lib/libtorch_cpu.so (thrum engines install torch failed?)" >&2
    exit 1
fi
export LD_LIBRARY_PATH="$LIBTORCH/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

features=(--features thrum/ort,thrum/torch,thrum/mxnet)
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked "${features[@]}" -- -D warnings
cargo test --workspace --locked "${features[@]}"
# The default build (tract only) answers for the engines it lacks with "not compiled in".
cargo test --locked -p thrum --test commands
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked "${features[@]}"
echo "all checks passed"
