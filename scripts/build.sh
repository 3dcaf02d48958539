#!/usr/bin/env bash
# Build the worker: Rust -> wasm32 -> wasm-bindgen (web target) -> wasm-opt.
# Output in build/, imported by src/entry.mjs; wrangler bundles the rest.
# Needs what scripts/setup.sh installs. Skips steps whose output is up to date.
# KEEP_NAMES=1 keeps the wasm's function names (for CPU profiles: tests/bench/run.mjs
# --profile); the default build strips them.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --quiet --release --target wasm32-unknown-unknown --lib
wasm=target/wasm32-unknown-unknown/release/mcp_edge_auth.wasm
out=build/mcp_edge_auth_bg.wasm
names=()
[ "${KEEP_NAMES:-0}" = 1 ] && names=(-g)
stamp="build/.kind"
kind="names=${KEEP_NAMES:-0}"
if [ ! -f "$out" ] || [ "$wasm" -nt "$out" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$kind" ]; then
  mkdir -p build
  wasm-bindgen --target web --out-dir build --out-name mcp_edge_auth --no-typescript "$wasm"
  if [ -x node_modules/binaryen/bin/wasm-opt ]; then
    node_modules/binaryen/bin/wasm-opt -Oz "${names[@]}" --converge --enable-bulk-memory --enable-nontrapping-float-to-int \
      --enable-sign-ext --enable-reference-types --enable-multivalue --enable-mutable-globals \
      "$out" -o "$out.opt"
    # Not `&&`: under `set -e` a failed wasm-opt must stop the build, or the
    # unoptimised module would be stamped fresh below.
    mv "$out.opt" "$out"
  fi
  touch "$out"
  echo "$kind" > "$stamp"
fi
