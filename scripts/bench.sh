#!/usr/bin/env bash
# The benchmark (tests/bench/run.mjs): mcp-edge-auth against forwarding without auth
# and a JS authorizer on jose, under workerd, on loopback. Prints one table; figures
# from a run are kept in BENCHMARKS.md. Installs wrk (Debian) if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node tests/bench/run.mjs "$@"
