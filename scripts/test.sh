#!/usr/bin/env bash
# One command to set up and run every test: bash scripts/test.sh
# (lint, unit and property tests, mmcv parity, notebooks, browser test; then the numerics tests
# a second time on torch's portable kernels, so a result that depends on the CPU's vector unit
# shows up on any one machine).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
bash scripts/browser-deps.sh || echo "[gclab] browser dependencies unavailable; the browser test will skip and say why"
bash scripts/sandbox-deps.sh || echo "[gclab] bubblewrap unavailable; the sandbox tests of gclab grade will skip and say why"
echo "[gclab] ruff"
.venv/bin/ruff check gclab tests scripts
echo "[gclab] pytest"
if [ "$#" != 0 ]; then
  .venv/bin/python -m pytest -n 2 --dist loadfile --nbval-lax tests notebooks/solutions "$@"
else
  # the notebooks (their kernels) in a phase of their own, after the sandboxes and the
  # grading tests: a kernel that starts beside them has died before answering, now and then
  NOTEBOOK_TESTS=(tests/test_notebooks.py tests/test_notebooks_execute.py notebooks/solutions)
  .venv/bin/python -m pytest -n 2 --dist loadfile tests \
    --ignore=tests/test_notebooks.py --ignore=tests/test_notebooks_execute.py
  echo "[gclab] pytest, the notebooks"
  .venv/bin/python -m pytest -n 2 --dist loadfile --nbval-lax "${NOTEBOOK_TESTS[@]}"
fi
if [ "$#" = 0 ]; then
  # AVX-512/AVX2 kernels sum in another order than the scalar ones: the float32 tolerances
  # (tests/_tol.py) must hold for both. The float32-heavy files only: 29 s of CPU, about 1 min
  # on the 2-core Intel CI machine while other jobs shared it (load average 6.8).
  echo "[gclab] pytest, numerics again under ATEN_CPU_CAPABILITY=default (no SIMD kernels)"
  ATEN_CPU_CAPABILITY=default .venv/bin/python -m pytest -q -n 2 -p no:cacheprovider \
    tests/test_fast_paths.py tests/test_nn_numerics.py tests/test_nn_parity_mmcv.py
fi
