#!/usr/bin/env bash
# Install anvil (a local EVM JSON-RPC node, npm @foundry-rs/anvil) into .tools/anvil for the
# web3 ledger tests, unless it is already there. Prints the binary's path.
# The npm package ships the binary inside a per-platform package; the tests run that binary
# directly (tests/ledger/evm.py) so that stopping it never leaves a node wrapper behind.
set -euo pipefail
cd "$(dirname "$0")/.."
version="1.7.1"
prefix=".tools/anvil"
find_binary() { ls "$prefix"/node_modules/@foundry-rs/anvil-*/bin/anvil 2>/dev/null | head -n 1; }
if [ -z "$(find_binary)" ] || [ "$(cat "$prefix/.version" 2>/dev/null)" != "$version" ]; then
  mkdir -p "$prefix"
  npm install --prefix "$prefix" --no-save --no-audit --no-fund --loglevel=error \
    "@foundry-rs/anvil@$version" >&2
  echo "$version" > "$prefix/.version"
fi
binary="$(find_binary)"
[ -n "$binary" ] || { echo "anvil: npm installed no binary for this platform" >&2; exit 1; }
case "$binary" in /*) echo "$binary" ;; *) echo "$(pwd)/$binary" ;; esac
