#!/usr/bin/env bash
# Rebuild the committed contract artifacts (grass/ledger/artifacts/*.json) from contracts/*.sol
# with the solcjs version pinned in package-lock.json. Usage: contracts/build.sh [OUT_DIR]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/../grass/ledger/artifacts}"
# npm ci installs exactly package-lock.json; it runs again whenever the lock changed.
want="$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)"
if [ "$(cat "$here/node_modules/.installed" 2>/dev/null)" != "$want" ]; then
  command -v npm >/dev/null || {
    echo "contracts: npm is missing: install Node.js and npm (Debian: apt-get install nodejs npm)" >&2
    exit 1
  }
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" > "$here/node_modules/.installed"
fi
node "$here/compile.js" "$out"
