#!/usr/bin/env bash
# Fuzz the pure protocol code with cargo-fuzz (libFuzzer, nightly Rust): token and JWKS
# parsing with claim checks, the registration proxy, configuration parsing (with
# SCOPE_POLICY), and the policy's JSON-RPC/SSE inspection and filtering.
#   scripts/fuzz.sh [SECONDS] [TARGET...]   default: 15 s for each target
# The seed corpora in fuzz/corpus/ stay as checked in: new inputs go to a scratch
# directory. A crash or panic fails the run and leaves its input in fuzz/artifacts/.
# The test command runs the short default; run `scripts/fuzz.sh 600` for a long one.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
seconds=${1:-15}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(token registration config jsonrpc authorization ids dpop)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
command -v cargo-fuzz >/dev/null 2>&1 || bash scripts/setup.sh --tests
cd fuzz
for t in "${targets[@]}"; do
  mkdir -p "$work/$t"
  log="$work/$t.log"
  if ! cargo +nightly fuzz run "$t" "$work/$t" "corpus/$t" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 >"$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz: $t FAILED (input in fuzz/artifacts/$t/)" >&2
    exit 1
  fi
  runs=$(grep -o '^stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  echo "fuzz: $t: $runs executions in ${seconds} s, no crash"
done
