# Sourced by scripts/serve, scripts/test, scripts/lock and .ci/run.
#
# Installs are reproducible: every Python dependency comes from the committed uv.lock (exact
# versions and hashes, for every supported Python), installed by `uv sync --frozen`, which never
# resolves. uv itself is pinned, with hashes, in scripts/uv-requirements.txt and installed into
# .tools/uv by pip. pyproject.toml keeps version ranges for people who `pip install` the package.
#
# uv's own variables choose another interpreter or environment: UV_PYTHON (default: python3)
# and UV_PROJECT_ENVIRONMENT (default: .venv). No interpreter is ever downloaded.

export UV_PYTHON_DOWNLOADS=never
export UV_NO_PROGRESS=1
UV=".tools/uv/bin/uv"

die() { echo "$*" >&2; exit 1; }

ensure_uv() {
  local want have
  want="$(sed -n 's/^uv==\([0-9.]*\).*/\1/p' scripts/uv-requirements.txt)"
  have="$("$UV" --version 2>/dev/null | cut -d' ' -f2 || true)"
  [ "$have" = "$want" ] && return 0
  local python=python3  # any Python installs uv: it is one binary
  command -v "$python" >/dev/null \
    || die "$python is missing: install Python 3.11, 3.12 or 3.13 (Debian: apt-get install python3 python3-venv)"
  "$python" -m pip --version >/dev/null 2>&1 \
    || die "pip is missing for $python: install it (Debian: apt-get install python3-pip)"
  rm -rf .tools/uv
  "$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    --no-deps --require-hashes \
    --target .tools/uv -r scripts/uv-requirements.txt >&2 \
    || die "could not install uv $want from PyPI (scripts/uv-requirements.txt)"
}

# ensure_venv EXTRA_ARGS...: make the environment hold exactly the lock (with --inexact:
# at least the lock's packages, keeping others, e.g. the dev extra when only serving).
ensure_venv() {
  ensure_uv
  local python="${UV_PYTHON:-python3}"
  command -v "$python" >/dev/null \
    || die "$python is missing: install Python 3.11, 3.12 or 3.13 (Debian: apt-get install python3 python3-venv)"
  UV_PROJECT_ENVIRONMENT="$(venv_dir)" "$UV" sync --frozen --quiet \
    --python "$(command -v "$python")" "$@" \
    || die "installing from uv.lock failed (see above)"
}

venv_dir() { echo "${UV_PROJECT_ENVIRONMENT:-.venv}"; }
