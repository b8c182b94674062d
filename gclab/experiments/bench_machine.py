"""What ``gclab bench`` records about the machine and the code it measured."""

from __future__ import annotations

import os
import platform
import sys
from typing import Dict

import numpy as np
import torch

from gclab.experiments.bench_core import available_gib
from gclab.experiments.bench_groups import timm_layers
from gclab.experiments.bench_report import cpu_description

ENV_SETTINGS = ("THP_MEM_ALLOC_ENABLE", "LD_PRELOAD", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                "KMP_AFFINITY", "OMP_PROC_BIND")


def code_version() -> str | None:
    """The git commit of the gclab being measured (``+dirty`` with uncommitted changes under
    ``gclab/``; docs being edited do not change what is measured)."""
    import subprocess

    from gclab import paths

    root = str(paths.ROOT)
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, timeout=10,
                              capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                "gclab"], cwd=root, timeout=10, capture_output=True, text=True)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


# when this module (and with it gclab) was imported: what a run measures, even if the
# checkout moves on while a long ``--runs`` session is under way
CODE_VERSION = code_version()


def machine_description() -> Dict[str, object]:
    """CPU, cores, load and library versions."""
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    d: Dict[str, object] = dict(cpu_description())
    d.update({
        "cores": os.cpu_count(),
        "memory_available_gib": round(available_gib(), 1),
        "load_average_1_5_15": [round(v, 2) for v in load],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cuda": torch.cuda.is_available(),
        "code": CODE_VERSION,
        # allocator and threading settings that change the timings (page faults, threads)
        "environment": {k: v for k, v in os.environ.items()
                        if k.startswith("MALLOC_") or k in ENV_SETTINGS},
    })
    try:
        import mmcv

        d["mmcv"] = mmcv.__version__
    except Exception:  # noqa: BLE001
        d["mmcv"] = None
    timm = timm_layers()
    d["timm"] = getattr(sys.modules.get("timm"), "__version__", None) if timm else None
    return d
