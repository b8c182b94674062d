#!/usr/bin/env bash
# Best-effort install of bubblewrap (bwrap), the sandbox `gclab grade` runs learner notebooks
# in (no network, own PID namespace, nothing of the host but the interpreter and an answer-free
# gclab, capped tmpfs, empty HOME). Without it grading
# still works, with fewer protections, and `gclab grade` says which ones are off.
set -uo pipefail
if command -v bwrap >/dev/null 2>&1; then
  exit 0
fi
if [ "$(uname -s)" != Linux ]; then
  echo "[gclab] bubblewrap is Linux-only: gclab grade runs without its sandbox here (docs/instructors.md)"; exit 1
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null) \
    || { echo "[gclab] apt-get could not install bubblewrap"; exit 1; }
else
  echo "[gclab] bubblewrap (bwrap) missing and apt-get not usable (need root): install it with your package manager"; exit 1
fi
