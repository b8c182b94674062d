"""What is wrong with a learner's module's layers, compared with the reference module's.

Reads only the two modules' leaf layers and state_dict shapes and names (a skeleton of the
learner's module, as ``gclab grade`` rebuilds it, serves as well as the module itself).
"""

from __future__ import annotations

import difflib
from typing import Any, List, Tuple

__all__ = ["describe_structure", "layer_types"]


def layer_types(module: Any) -> List[Tuple[str, str]]:
    """(qualified name, type name) of every leaf layer of ``module``, in registration order."""
    out = []
    for name, m in module.named_modules():
        if name and not any(True for _ in m.children()):
            out.append((name, type(m).__name__))
    return out


def describe_structure(learner: Any, reference: Any) -> str | None:
    """What is wrong with the learner's layers, compared with the reference module's: a layer
    missing, one too many, a different type, or the same layers in another order; None when the
    types in order agree (then the difference is in names or shapes)."""
    mine, ref = layer_types(learner), layer_types(reference)
    a, b = [t for _, t in mine], [t for _, t in ref]
    if a == b:
        shapes = _shape_difference(learner, reference)
        return shapes
    if sorted(a) == sorted(b):
        return (f"your module has the right layers in a different order: yours "
                f"{', '.join(a)}; expected {', '.join(b)}")
    parts = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "delete":
            parts.append("an extra " + ", ".join(f"{t} ({n})" for n, t in mine[i1:i2]))
        elif op == "insert":
            parts.append("no " + ", ".join(b[j1:j2]) + f" where the reference has one "
                         f"({', '.join(n for n, _ in ref[j1:j2])})")
        elif op == "replace":
            parts.append(f"{', '.join(a[i1:i2])} where the reference has {', '.join(b[j1:j2])}"
                         f" ({', '.join(n for n, _ in mine[i1:i2])})")
    return ("your module's layers differ from the reference's: " + "; ".join(parts)
            + f" (yours: {', '.join(a) or 'none'}; expected: {', '.join(b)})")


def _shape_difference(learner: Any, reference: Any) -> str | None:
    mine, ref = learner.state_dict(), reference.state_dict()
    for (k1, v1), (k2, v2) in zip(mine.items(), ref.items()):
        if tuple(v1.shape) != tuple(v2.shape):
            return (f"your parameter {k1} has shape {tuple(v1.shape)} where the reference's "
                    f"{k2} has {tuple(v2.shape)} (a channel count, e.g. planes = "
                    "int(C * ratio), differs)")
    if len(mine) != len(ref):
        return (f"your module has {len(mine)} parameters/buffers, the reference {len(ref)} "
                "(a bias=False, or an extra parameter)")
    names = [(k1, k2) for k1, k2 in zip(mine, ref) if k1 != k2]
    if names:
        k1, k2 = names[0]
        return (f"the layers are right, but named differently: yours {k1}, expected {k2} "
                "(use the attribute names and nesting the exercise asks for)")
    return None
