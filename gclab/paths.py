"""Where things are: the installed package, and the checkout it may live in.

``PACKAGE`` is the ``gclab/`` directory. From a clone of the repository (the course's normal
set-up) ``ROOT`` is the checkout, with ``notebooks/``, ``data/`` and ``docs/`` beside
``gclab/``; from a wheel those directories do not exist, and the code that needs them says so.
"""

from __future__ import annotations

from pathlib import Path

#: the ``gclab/`` package directory
PACKAGE = Path(__file__).resolve().parent
#: the checkout that holds the package (``notebooks/``, ``data/``, ``docs/`` beside ``gclab/``)
ROOT = PACKAGE.parent
#: the course's notebooks: jupytext sources in ``src/``, learner copies, ``solutions/``
NOTEBOOKS = ROOT / "notebooks"
#: small data and precomputed results, each file reproducible by a documented command
DATA = ROOT / "data"
