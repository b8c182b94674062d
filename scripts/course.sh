#!/usr/bin/env bash
# One command to set up and open the course: bash scripts/course.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh course
bash scripts/sandbox-deps.sh || echo "[gclab] bubblewrap unavailable; gclab grade will run notebooks without its sandbox (docs/instructors.md)"
extra=()
[ "$(id -u)" = 0 ] && extra+=(--allow-root)  # jupyter refuses root otherwise (containers, CI boxes)
exec .venv/bin/jupyter lab notebooks/ "${extra[@]}" "$@"
