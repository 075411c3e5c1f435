# Sourced by scripts/serve and scripts/test: make .venv hold grass with the given extras.
# pip runs only when pyproject.toml changed since the last install (a no-op pip costs seconds).
ensure_venv() {
  local extras="$1"
  local stamp=".venv/.installed${extras}"
  local want
  [ -x .venv/bin/python ] || python3 -m venv .venv
  want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras}"
    echo "$want" > "$stamp"
  fi
}
