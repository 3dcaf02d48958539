#!/usr/bin/env bash
# Install what building and testing mcp-edge-auth needs. Idempotent, and quick when
# everything is already there. Works offline from the public registries only:
#   - the wasm32-unknown-unknown Rust target (rustup)
#   - wasm-bindgen-cli at exactly the wasm-bindgen version in Cargo.lock (crates.io)
#   - the pinned JS tooling in package-lock.json (npm): wrangler/workerd, binaryen's
#     wasm-opt, and the real peers the end-to-end suite drives
# and, with --tests (scripts/test.sh), what only the test suite needs:
#   - nightly Rust and cargo-fuzz, for the fuzz targets in fuzz/ (scripts/fuzz.sh)
#   - the official MCP Python SDK, pinned in tests/e2e/python/requirements.txt (PyPI),
#     in .venv, for the Python client in the end-to-end suite
# worker-build is not used: it downloads wasm-bindgen, wasm-opt and esbuild from the
# web at run time; scripts/build.sh does the same three steps with these tools.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

need() { command -v "$1" >/dev/null 2>&1 || { echo "setup: $1 is required but not installed ($2)" >&2; exit 1; }; }
need cargo "install Rust with rustup"
need node "install Node.js 20 or later"
need npm "install Node.js 20 or later"

node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "setup: Node.js 20 or later is required (found $(node --version))" >&2
  exit 1
fi

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  echo "setup: adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
  echo "setup: installing wasm-bindgen-cli $want (found: ${have:-none}); this takes a few minutes once"
  cargo install wasm-bindgen-cli --version "$want" --locked --quiet \
    || cargo install wasm-bindgen-cli --version "$want" --quiet
fi

stamp=node_modules/.package-lock.json
if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ] || [ package.json -nt "$stamp" ]; then
  echo "setup: installing the pinned JS tooling (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
fi

[ "${1:-}" = "--tests" ] || exit 0

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "setup: installing nightly Rust (for cargo-fuzz)"
  rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "setup: installing cargo-fuzz (about a minute, once)"
  cargo install cargo-fuzz --locked --quiet
fi

venv=.venv
reqs=tests/e2e/python/requirements.txt
if [ ! -f "$venv/.installed" ] || [ "$reqs" -nt "$venv/.installed" ]; then
  need python3 "install Python 3.10 or later with venv"
  echo "setup: installing the MCP Python SDK into $venv (pip)"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$reqs"
  touch "$venv/.installed"
fi
