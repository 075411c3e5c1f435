#!/usr/bin/env bash
# Install anvil (a local EVM JSON-RPC node, npm @foundry-rs/anvil) into .tools/anvil for the
# web3 ledger tests, exactly as pinned by scripts/anvil/package-lock.json (`npm ci`: nothing is
# resolved at install time), unless that lock is already installed. Prints the binary's path.
# The npm package ships the binary inside a per-platform package; the tests run that binary
# directly (tests/ledger/evm.py) so that stopping it never leaves a node wrapper behind.
set -euo pipefail
cd "$(dirname "$0")/.."
lock="scripts/anvil/package-lock.json"
prefix=".tools/anvil"
find_binary() { ls "$prefix"/node_modules/@foundry-rs/anvil-*/bin/anvil 2>/dev/null | head -n 1; }
want="$(sha256sum "$lock" | cut -d' ' -f1)"
if [ -z "$(find_binary)" ] || [ "$(cat "$prefix/.installed" 2>/dev/null)" != "$want" ]; then
  command -v npm >/dev/null || {
    echo "anvil: npm is missing: install Node.js and npm (Debian: apt-get install nodejs npm)" >&2
    exit 1
  }
  rm -rf "$prefix"
  mkdir -p "$prefix"
  cp scripts/anvil/package.json "$lock" "$prefix/"
  (cd "$prefix" && npm ci --no-audit --no-fund --loglevel=error >&2)
  echo "$want" > "$prefix/.installed"
fi
binary="$(find_binary)"
[ -n "$binary" ] || { echo "anvil: npm installed no binary for this platform" >&2; exit 1; }
case "$binary" in /*) echo "$binary" ;; *) echo "$(pwd)/$binary" ;; esac
