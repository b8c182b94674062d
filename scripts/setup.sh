#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv.
# Used by scripts/course.sh and scripts/test.sh; safe to run again (it only
# reinstalls when pyproject.toml or constraints.txt changed).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[gclab] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
# pip here prints a warning per missing local index folder; hide those, keep pip's exit status.
quiet() { "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }; }
stamp=.venv/.gclab-installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[gclab] installing gclab and its course/test dependencies (torch pinned by constraints.txt)"
  quiet .venv/bin/python -m pip install -q -c constraints.txt -e ".[dev]"
  .venv/bin/python -c "import gclab, torch; print('[gclab] torch', torch.__version__)"
  echo "$want" > "$stamp"
fi
