"""A learner's module as data, and a data-only skeleton of it, for ``gclab grade``.

In a learner's ``check`` the engine builds the module in-process and runs the exercise's
``structure`` properties (and :func:`gclab.exercises.structure.describe_structure`) on it. The
trusted grader must not build it: the sandbox does, and sends back :func:`describe` -- the module
tree (each submodule's path, its class's ``__module__``/``__qualname__`` and those of its bases,
its own parameters and buffers as arrays). The grader turns that into :func:`rebuild`'s skeleton:
the real class where the type is trusted code (``torch.nn``, ``gclab``), a plain ``nn.Module``
placeholder named after the type otherwise (a subclass of the nearest trusted base, so that
``isinstance`` answers as it does in-process), with the reported tensors. No ``__init__`` and no
learner code runs in the grader; the skeleton only answers what the properties read
(types, children, parameters, buffers, state_dict).
"""

from __future__ import annotations

import importlib
import re
import sys
from typing import Any, List

MAX_MODULES = 2000
_TRUSTED = ("torch.nn", "torch.nn.", "gclab.")
_NAME = re.compile(r"^[A-Za-z_0-9]{1,200}$")
_QUAL = re.compile(r"^[A-Za-z_][\w.]{0,300}$")


class SkeletonError(ValueError):
    """The sandbox's description is not a module tree."""


# --------------------------------------------------------------------------- sandbox side
def _cls_name(cls: Any) -> List[str]:
    return [str(getattr(cls, "__module__", "") or ""), str(getattr(cls, "__qualname__", "") or "")]


def describe(module: Any) -> list:
    """The tree of ``module`` as data: one entry per submodule, in ``named_modules`` order:
    ``[path, [[module, qualname] for the class and its bases], {param: tensor|None},
    {buffer: tensor|None}, [non-persistent buffer names]]``."""
    import torch

    nn = torch.nn
    out = []
    for path, m in nn.Module.named_modules(module):
        if len(out) >= MAX_MODULES:
            break
        mro = [_cls_name(c) for c in type(m).__mro__ if c is not object][:32]
        params = {str(k): (None if v is None else v.detach().cpu())
                  for k, v in m.__dict__.get("_parameters", {}).items()}
        buffers = {str(k): (None if v is None else v.detach().cpu())
                   for k, v in m.__dict__.get("_buffers", {}).items()}
        transient = sorted(str(k) for k in m.__dict__.get("_non_persistent_buffers_set", ()))
        out.append([str(path), mro, params, buffers, transient])
    return out


# --------------------------------------------------------------------------- grader side
def _trusted_class(module: str, qualname: str):
    """The class at ``module``.``qualname`` when it is torch.nn's or gclab's, else None."""
    import torch

    if not (module.startswith(_TRUSTED) and _QUAL.match(qualname)) or "<" in qualname:
        return None
    mod = sys.modules.get(module)
    if mod is None:
        try:
            mod = importlib.import_module(module)
        except Exception:  # noqa: BLE001
            return None
    obj: Any = mod
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    if isinstance(obj, type) and issubclass(obj, torch.nn.Module):
        return obj
    return None


def _class_for(mro: Any):
    import torch

    if not isinstance(mro, list) or not mro:
        raise SkeletonError("a submodule without a type")
    names = [(str(e[0]), str(e[1])) for e in mro if isinstance(e, (list, tuple)) and len(e) == 2]
    own = _trusted_class(*names[0]) if names else None
    if own is not None:
        return own
    base = next((c for c in (_trusted_class(*n) for n in names[1:]) if c is not None),
                torch.nn.Module)
    qual = names[0][1] if names else "Module"
    short = re.sub(r"\W", "_", qual.rsplit(".", 1)[-1])[:80] or "Module"
    return type(short, (base,), {"__qualname__": short, "__module__": names[0][0][:200] or "?"})


def _tensor(v: Any, param: bool):
    import torch

    if v is None:
        return None
    if not isinstance(v, torch.Tensor):
        raise SkeletonError("a parameter that is not a tensor")
    v = v.detach()
    return torch.nn.Parameter(v, requires_grad=v.is_floating_point()) if param else v


def rebuild(entries: Any):
    """The skeleton (an ``nn.Module``) of a :func:`describe` tree."""
    import torch

    if not isinstance(entries, list) or not entries or len(entries) > MAX_MODULES:
        raise SkeletonError("not a module tree")
    by_path = {}
    root = None
    for entry in entries:
        if not isinstance(entry, list) or len(entry) != 5:
            raise SkeletonError("a malformed submodule")
        path, mro, params, buffers, transient = entry
        if not isinstance(path, str) or not isinstance(params, dict) or not isinstance(
                buffers, dict):
            raise SkeletonError("a malformed submodule")
        cls = _class_for(mro)
        m = cls.__new__(cls)
        torch.nn.Module.__init__(m)
        for k, v in params.items():
            if not isinstance(k, str) or not _NAME.match(k):
                raise SkeletonError("a malformed parameter name")
            m._parameters[k] = _tensor(v, True)
        for k, v in buffers.items():
            if not isinstance(k, str) or not _NAME.match(k):
                raise SkeletonError("a malformed buffer name")
            m._buffers[k] = _tensor(v, False)
            if isinstance(transient, list) and k in transient:
                m._non_persistent_buffers_set.add(k)
        if path == "":
            if root is not None:
                raise SkeletonError("two roots")
            root = m
        else:
            parent, _, name = path.rpartition(".")
            if parent not in by_path or not _NAME.match(name):
                raise SkeletonError(f"submodule {path[:80]!r} without its parent")
            by_path[parent]._modules[name] = m
        by_path[path] = m
    if root is None:
        raise SkeletonError("no root module")
    return root
