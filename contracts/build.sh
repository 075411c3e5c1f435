#!/usr/bin/env bash
# Rebuild the committed contract artifacts (grass/ledger/artifacts/*.json) from contracts/*.sol
# with the solcjs version pinned in package-lock.json. Usage: contracts/build.sh [OUT_DIR]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/../grass/ledger/artifacts}"
if [ ! -d "$here/node_modules/solc" ]; then
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi
node "$here/compile.js" "$out"
