"""What the generic detectors see of one case of a check, and the case's named quantities.

An :class:`Observation` holds the learner's output, the reference's, the case's inputs and its
named numbers (:func:`case_quantities`: ``C_i``, ``N``, ``H``, ...); :func:`factor_names` names
a factor by them ("sqrt(C_i)", "N'/C_i"). :func:`as_array` and :func:`close` are the numeric
vocabulary every detector (:mod:`gclab.exercises.diagnose`, :mod:`gclab.exercises.findings`)
shares.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np

__all__ = ["Observation", "as_array", "case_quantities", "close", "factor_names"]


@dataclass
class Observation:
    """One case of a check as the detectors see it.

    ``inputs``: the case's arguments (function) or forward inputs (module); ``quantities``: named
    numbers of the case (``{"C_i": 4, "N": 15, ...}``), see :func:`case_quantities`.
    """

    actual: Any
    expected: Any
    inputs: Sequence[Any] = ()
    quantities: Mapping[str, float] = field(default_factory=dict)
    passed: bool = False
    label: str = ""
    error: float = 0.0
    settings: Mapping[str, Any] = field(default_factory=dict)  # the case's str/bool arguments


def as_array(x: Any) -> np.ndarray | None:
    """A float64 NumPy copy of an array-like output, or None when it is not numeric."""
    try:
        import sys

        t = sys.modules.get("torch")
        if t is not None and isinstance(x, t.Tensor):
            x = x.detach().cpu().double().numpy()
        a = np.asarray(x)
    except Exception:  # noqa: BLE001
        return None
    if a.dtype == object or a.dtype.kind not in "biuf":
        return None
    return a.astype(np.float64)


def close(a: np.ndarray, b: np.ndarray, tol: float = 1e-6) -> bool:
    """Relative agreement of two arrays (scaled by the larger magnitude, so zeros are fine)."""
    if a.shape != b.shape or a.size == 0:
        return False
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return False
    scale = max(float(np.max(np.abs(a))), float(np.max(np.abs(b))), 1e-12)
    return float(np.max(np.abs(a - b))) <= tol * scale


def case_quantities(inputs: Sequence[Any], meta: Mapping[str, Any] | None = None
                    ) -> Dict[str, float]:
    """Named numbers of a case a wrong factor may be: the case's own ``meta`` (e.g. ``C_i``,
    ``N'``), plus what the first 4-d input (B, C, H, W) or 3-d input (B, N, .) tells."""
    q: Dict[str, float] = {}
    for x in inputs:
        a = np.shape(x) if hasattr(x, "shape") else None
        if a is None:
            continue
        if len(a) == 4:
            b, c, h, w = a
            q.update({"B": b, "C": c, "H": h, "W": w, "N": h * w})
            break
        if len(a) == 3:  # (B, N, .): the last size has no name the learner knows
            b, n, _ = a
            q.update({"B": b, "N": n})
            break
        if len(a) == 2 and min(a) > 1:
            h, w = a
            q.update({"H": h, "W": w, "N": h * w})
            break
    named: Dict[str, float] = {}
    for k, v in (meta or {}).items():  # the case's own names come first
        if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
            named[str(k)] = float(v)
    for k, v in q.items():
        named.setdefault(k, float(v))
    return named


def factor_names(k: float, quantities: Mapping[str, float]) -> List[str]:
    """Every name that fits ``k`` (two quantities may be equal on one case: N = N')."""
    found: List[str] = []
    cands: List[Tuple[str, float]] = []
    # B sizes the batch, not a formula: never a factor; N - 1 is (the pairs i != j)
    usable = [(n, float(v)) for n, v in quantities.items() if n != "B" and v and v > 0
              and v != 1]
    if "N" in quantities and quantities["N"] > 2:
        usable.append(("N-1", float(quantities["N"]) - 1))
    for name, v in usable:
        cands.append((name, v))
        cands.append((f"sqrt({name})", math.sqrt(v)))
    for (n1, v1), (n2, v2) in itertools.permutations(usable, 2):
        if v1 != v2:
            cands.append((f"{n1}/{n2}", v1 / v2))
            cands.append((f"sqrt({n1}/{n2})", math.sqrt(v1 / v2)))
    cands += [("2", 2.0), ("ln(10)", math.log(10.0))]  # the case's own quantities first
    for name, v in cands:
        inv = f"1/({name})" if "/" in name and not name.startswith("sqrt") else f"1/{name}"
        for val, label in ((v, f"{name}"), (1.0 / v, inv)):
            if abs(k - val) <= 1e-6 * abs(val) and label not in found:
                found.append(label)
    plain = [f for f in found if not f.startswith("1/(")]  # N'/C_i, not 1/(C_i/N')
    return plain or found
