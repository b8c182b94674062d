"""Optional dependencies: import them late, and say which extra brings them when missing.

A bare ``pip install gclab`` has torch, numpy and tqdm only. Every command and module that needs
more imports it through :func:`require`, after its ``--help`` has been served, so that a missing
package gives one line naming the extra to install instead of a traceback. Without the
``course`` extra::

    >>> nbformat = require("nbformat", why="gclab grade")  # doctest: +SKIP
    MissingExtra: gclab grade needs the Python package 'nbformat', which is not installed:
    pip install "gclab[course]"
"""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


# import name -> the extra of pyproject.toml that declares it
EXTRA_OF = {
    "nbformat": "course",
    "IPython": "course",
    "traitlets": "course",
    "cloudpickle": "course",
    "nbclient": "course",
    "jupytext": "course",
    "matplotlib": "course",
    "ipywidgets": "course",
    "sklearn": "course",
    "scipy": "course",
    "onnx": "export",
    "onnxscript": "export",
    "onnxruntime": "export",
    "mmcv": "mmcv",
    "mmengine": "mmcv",
    "sphinx": "site",
    "myst_nb": "site",
    "furo": "site",
}


def require(module: str, extra: str | None = None, why: str = "this") -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtra` naming ``pip install "gclab[extra]"``."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.split(".")[0]
        extra = extra or EXTRA_OF.get(top, "course")
        raise MissingExtra(
            f"{why} needs the Python package {top!r}, which is not installed: "
            f'pip install "gclab[{extra}]"'
        ) from err
