#!/usr/bin/env bash
# One command to set up and open the course: bash scripts/course.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh course
bash scripts/sandbox-deps.sh || echo "[gclab] bubblewrap unavailable; gclab grade will run notebooks without its sandbox (docs/instructors.md)"
extra=()
[ "$(id -u)" = 0 ] && extra+=(--allow-root)  # jupyter refuses root otherwise (containers, CI boxes)
# no "Jupyter news" toast and no update check on every load (the course needs no network):
# scripts/jupyterlab/overrides.json sets the defaults (a learner's own settings still win)
exec .venv/bin/jupyter lab notebooks/ --LabApp.news_url=None \
    --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate \
    --LabApp.app_settings_dir="$PWD/scripts/jupyterlab" "${extra[@]}" "$@"
