#!/usr/bin/env bash
# thrum's test command (README.md): installs everything the tests need on a fresh machine, then
# runs every check. CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-data.sh

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
echo "all checks passed"
