#!/usr/bin/env bash
# Run the local demo (see scripts/demo.mjs). Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
exec node scripts/demo.mjs "$@"
