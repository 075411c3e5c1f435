#!/usr/bin/env bash
# Exit non-zero if the committed artifacts differ from a fresh build of the sources (CI runs it).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
committed="$here/../grass/ledger/artifacts"
fresh="$(mktemp -d)"
trap 'rm -rf "$fresh"' EXIT
"$here/build.sh" "$fresh"
if ! diff -r "$committed" "$fresh" >/dev/null; then
  echo "contract artifacts are stale: run contracts/build.sh and commit grass/ledger/artifacts/" >&2
  diff -r "$committed" "$fresh" | head -n 40 >&2 || true
  exit 1
fi
echo "contract artifacts match the sources"
