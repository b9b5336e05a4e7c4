#!/usr/bin/env bash
# thrum's test command (README.md): installs everything the tests need on a fresh machine, then
# runs every check with every engine that can be built here. CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

# Engines ship as PyPI wheels; `thrum engines install` fetches them with pip (no feature needed
# to install). Test data: the onnx wheel's light models, an old ONNX Runtime for the version
# check, and the onnxruntime Python package as a reference.
cargo run --quiet --locked -p thrum -- engines install ort
bash scripts/install-test-data.sh

features=(--features thrum/ort)
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked "${features[@]}" -- -D warnings
cargo test --workspace --locked "${features[@]}"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked "${features[@]}"
echo "all checks passed"
