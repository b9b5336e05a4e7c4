#!/usr/bin/env bash
# thrum's test command (README.md): installs everything the tests need on a fresh machine, then
# runs every check with every engine. CI runs exactly this (.ci/run). Each step prints its wall
# time, so the slow ones are easy to find.
set -euo pipefail
cd "$(dirname "$0")/.."

home="${THRUM_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/thrum}"
# One target directory that outlives the checkout (CI clones afresh each run): a second run of
# this command on the same machine rebuilds only what changed.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$home/target}"
# Every engine's tests must run: a missing engine fails them instead of being reported and
# skipped, as a plain `cargo test` does.
export THRUM_REQUIRE_ENGINES=all

step() {
    local name=$1
    shift
    local start=$SECONDS
    echo "== $name"
    "$@"
    echo "== $name: $((SECONDS - start)) s"
}

# Engines ship as PyPI wheels; `thrum engines install` fetches them with pip (the default build
# has ort and mxnet; installing needs no engine compiled in). Test data: the onnx wheel's light
# models, an old ONNX Runtime for the version check, and the onnxruntime Python package.
step "install engines" cargo run --quiet --locked -p thrum -- engines install ort ort-openvino torch mxnet tensorflow
step "install test data" bash scripts/install-test-data.sh

# thrum-torch links libtorch at build time (tch reads LIBTORCH); its tests and the `thrum`
# binary carry an rpath to it, doctests and unit tests take it from LD_LIBRARY_PATH. A missing
# libtorch stops here, loudly, rather than leaving torch untested.
export LIBTORCH="$home/engines/torch"
if [[ ! -f "$LIBTORCH/lib/libtorch_cpu.so" ]]; then
    echo "libtorch missing: $LIBTORCH/lib/libtorch_cpu.so (thrum engines install torch failed?)" >&2
    exit 1
fi
export LD_LIBRARY_PATH="$LIBTORCH/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# One feature set for every step below, so that each reuses what the previous one built.
features=(--workspace --locked --features thrum/torch)
step "fmt" cargo fmt --all --check
step "clippy" cargo clippy "${features[@]}" --all-targets -- -D warnings
step "test" cargo test "${features[@]}"
step "doc" env RUSTDOCFLAGS="-D warnings" cargo doc "${features[@]}" --no-deps
echo "all checks passed"
