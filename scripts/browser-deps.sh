#!/usr/bin/env bash
# Best-effort install of what the browser test needs: Debian's chromium and
# Python's playwright (which drives it; it never downloads a browser here).
set -uo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || { echo "[gclab] apt-get could not install chromium"; exit 1; }
  else
    echo "[gclab] chromium missing and apt-get not usable (need root)"; exit 1
  fi
fi
.venv/bin/python -c "import playwright" || { echo "[gclab] playwright missing from .venv"; exit 1; }
