# Sourced by scripts/test and scripts/demo: a virtualenv with the project installed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "error: Python 3.11 or newer is required ($("$python" --version 2>&1))" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$python" -m venv .venv
fi
# Re-install whenever what decides the installed set changes: the lock, or the project's own
# metadata (entry points, packages).
stamp=.venv/.installed-$(cat requirements.lock pyproject.toml setup.py | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "==> installing the locked dependencies and strava-ingest into .venv"
  # Exactly the lock (hash-checked); then the project itself, editable, built by the locked
  # setuptools, with nothing resolved on top. setuptools warns on every editable install of
  # a mapped folder (setup.py's migrations) that a same-named folder could shadow it: none can.
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes \
    -r requirements.lock
  PYTHONWARNINGS="ignore:Editable installation" .venv/bin/python -m pip install --quiet \
    --disable-pip-version-check --no-deps --no-build-isolation -e .
  rm -f .venv/.installed-*
  touch "$stamp"
fi
export PATH="$root/.venv/bin:$PATH"
