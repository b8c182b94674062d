#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv:
#
#   bash scripts/setup.sh [course|dev]
#     course (default, scripts/course.sh): gclab[course], what the notebooks, `gclab grade` and
#            `gclab notebooks` need (JupyterLab, matplotlib, scipy, onnx, mmcv-lite, ...)
#     dev    (scripts/test.sh): course + the test tools (pytest, nbval, ruff, playwright, ...)
#
# torch comes pinned to 2.13.0 by constraints.txt, from whatever index pip is set up to use.
# From the public PyPI on Linux that is the CUDA build, which pulls ~27 nvidia-*/triton
# packages (several GB). On a laptop without an NVIDIA GPU, ask for the CPU-only build:
#
#   GCLAB_TORCH=cpu bash scripts/course.sh      # torch from download.pytorch.org/whl/cpu (~190 MB)
#
# GCLAB_DRY_RUN=1 prints the install commands instead of running them. Safe to run again: it
# reinstalls only when pyproject.toml, constraints.txt or GCLAB_TORCH changed, or when dev is
# wanted and only course is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
CPU_INDEX=https://download.pytorch.org/whl/cpu
set_=${1:-course}
case "$set_" in
  course | dev) ;;
  *) echo "[gclab] setup.sh: expected 'course' or 'dev', got '$set_'" >&2; exit 2 ;;
esac
torch_src=${GCLAB_TORCH:-default}
case "$torch_src" in
  default | cpu) ;;
  *) echo "[gclab] GCLAB_TORCH: expected 'cpu' (or unset), got '$torch_src'" >&2; exit 2 ;;
esac
PY=${PYTHON:-python3}
dry=${GCLAB_DRY_RUN:-}
run() {  # run a command, or print it (GCLAB_DRY_RUN=1)
  if [ -n "$dry" ]; then printf '%s\n' "$*"; return 0; fi
  # pip prints a warning per missing local index folder on some machines: hide those lines,
  # keep pip's own per-package lines coming as they happen, and keep its exit status
  PYTHONUNBUFFERED=1 "$@" 2>&1 | { grep --line-buffered -v "^WARNING: Location" || true; }
}
pip_install=(.venv/bin/python -m pip install --progress-bar on -c constraints.txt)

if [ ! -x .venv/bin/python ]; then
  echo "[gclab] 1/3 creating .venv with $($PY --version)"
  [ -n "$dry" ] && echo "$PY -m venv .venv" || "$PY" -m venv .venv
fi
stamp=.venv/.gclab-installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)-torch=$torch_src
have_hash= have_set=
[ -f "$stamp" ] && read -r have_hash have_set < "$stamp" || true
if [ "$have_hash" = "$want" ] && { [ "$have_set" = "$set_" ] || [ "$have_set" = dev ]; }; then
  echo "[gclab] .venv is up to date (gclab[$have_set])"
  exit 0
fi
if [ "$torch_src" = cpu ]; then
  echo "[gclab] 2/3 torch (CPU-only build) from $CPU_INDEX"
  run "${pip_install[@]}" --index-url "$CPU_INDEX" torch
fi
echo "[gclab] 2/3 installing gclab[$set_] under constraints.txt (torch 2.13.0); pip names each"
echo "[gclab]     package as it goes; a first install downloads a few hundred MB (see README)"
run "${pip_install[@]}" -e ".[$set_]"
[ -n "$dry" ] && exit 0
echo "[gclab] 3/3 checking the install"
.venv/bin/python -c "import gclab, torch; print('[gclab] torch', torch.__version__, '(CUDA ' + torch.version.cuda + ')' if torch.version.cuda else '(CPU-only build)')"
echo "$want $set_" > "$stamp"
