#!/usr/bin/env bash
# The whole test suite: what CI runs (.ci/run calls this) and what the README shows.
#   1. formatting and lints (host and wasm32)
#   2. the Rust unit tests, natively, and a short run of each fuzz target
#   3. the JS entry type-checked against the protocol the module declares (tsc)
#   4. the real wasm build, run in workerd by wrangler dev, driven end to end by
#      node's test runner against real peers (tests/e2e/*.test.mjs)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/setup.sh --tests

echo "== cargo fmt --check"
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
echo "== cargo clippy (host, wasm32)"
cargo clippy --quiet --all-targets -- -D warnings
cargo clippy --quiet --all-targets --target wasm32-unknown-unknown -- -D warnings
echo "== cargo test"
cargo test --quiet
echo "== fuzz (short runs; scripts/fuzz.sh 600 for a long one)"
bash scripts/fuzz.sh 15
echo "== build the worker (wasm)"
bash scripts/build.sh
echo "== tsc: the JS entry against the module's declared protocol (src/wire.d.ts)"
node_modules/.bin/tsc -p tsconfig.entry.json
echo "== end to end in workerd"
node --test --test-concurrency=1 --test-timeout=300000 tests/e2e/
