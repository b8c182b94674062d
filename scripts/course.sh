#!/usr/bin/env bash
# One command to set up and open the course: bash scripts/course.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh course
extra=()
[ "$(id -u)" = 0 ] && extra+=(--allow-root)  # jupyter refuses root otherwise (containers, CI boxes)
exec .venv/bin/jupyter lab notebooks/ "${extra[@]}" "$@"
