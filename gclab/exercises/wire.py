"""Data-only messages between ``gclab grade`` and its sandbox.

What crosses the trust boundary is data: numbers, strings, arrays, tensors (as arrays), and
containers of them -- never pickled code. :func:`dumps` turns such a value into the bytes of an
``.npz`` archive (a JSON tree in ``__tree__`` plus one array per leaf), :func:`loads` reads it
back with ``allow_pickle=False``. Anything else (a learner's own class, a function...) becomes an
:class:`Opaque` placeholder that carries only its type name, so the grader can say "got a Foo"
without ever holding the object.

    >>> loads(dumps({"a": (1, 2.5, None), "b": [True, "x"]}))
    {'a': (1, 2.5, None), 'b': [True, 'x']}
"""

from __future__ import annotations

import io
import json
import sys
from typing import Any, Dict, List

import numpy as np

#: Most bytes one message may carry (a larger reply is treated as a broken sandbox).
MAX_BYTES = 64 * 2**20
_MAX_DEPTH = 32


class WireError(ValueError):
    """A value that cannot be sent, or bytes that are not a valid message."""


class Opaque:
    """Stands for an object that cannot cross the boundary; only its type name does."""

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name

    def __repr__(self) -> str:
        return f"<a {self.type_name} object>"

    def __eq__(self, other: Any) -> bool:
        return False

    __hash__ = object.__hash__


class ModuleState(dict):
    """An ``nn.Module`` that crossed the boundary: its ``state_dict`` (data) and type name."""

    def __init__(self, state: Any, type_name: str = "") -> None:
        super().__init__(state if isinstance(state, dict) else {})
        self.type_name = type_name


def _opaque_class(name: str) -> type:
    # a class named like the learner's type, so "_typename" in the verdict says what came in
    return type(name[:80] or "object", (Opaque,), {})


def _torch():
    return sys.modules.get("torch")


def _encode(x: Any, arrays: List[np.ndarray], depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise WireError("value nested too deeply")
    t = _torch()
    if x is None or isinstance(x, (bool, str)):
        return x if not isinstance(x, str) else {"s": x}
    if isinstance(x, int) and type(x) is int:
        if abs(x) < 2**63:
            return {"i": x}
        return {"bigint": str(x)}
    if isinstance(x, float) and type(x) is float:
        return {"f": repr(x)}
    if isinstance(x, complex) and type(x) is complex:
        return {"c": [repr(x.real), repr(x.imag)]}
    if isinstance(x, np.generic):
        arr = np.asarray(x)
        if arr.dtype.kind in "OVSUM":
            return {"opaque": type(x).__name__}
        arrays.append(arr.reshape(()))
        return {"npscalar": len(arrays) - 1}
    if isinstance(x, np.ndarray):
        if x.dtype.kind in "OV":
            return {"opaque": "numpy.ndarray(object)"}
        arrays.append(np.ascontiguousarray(x).reshape(x.shape))  # (keeps 0-d arrays 0-d)
        return {"nd": len(arrays) - 1}
    if t is not None and isinstance(x, t.Tensor):
        y = x.detach().cpu()
        if y.dtype == t.bfloat16:
            return {"opaque": "torch.Tensor(bfloat16)"}
        arr = (y.resolve_conj() if y.is_complex() else y).contiguous().numpy()
        arrays.append(arr)
        return {"tensor": len(arrays) - 1, "grad": bool(x.requires_grad)}
    if t is not None and isinstance(x, t.nn.Module):
        state = {k: v for k, v in x.state_dict().items()}
        return {"module": _encode(state, arrays, depth + 1), "type": _type_name(x)}
    if isinstance(x, tuple) and type(x) is tuple:
        return {"tuple": [_encode(v, arrays, depth + 1) for v in x]}
    if isinstance(x, list) and type(x) is list:
        return {"list": [_encode(v, arrays, depth + 1) for v in x]}
    if isinstance(x, dict):
        items = []
        for k, v in x.items():
            if not isinstance(k, (str, int, bool, type(None))):
                return {"opaque": type(x).__name__}
            items.append([_encode(k, arrays, depth + 1), _encode(v, arrays, depth + 1)])
        return {"dict": items, "ordered": type(x).__name__}
    return {"opaque": _type_name(x)}


def _type_name(x: Any) -> str:
    name = type(x).__name__
    return name if isinstance(name, str) else "object"


def dumps(value: Any) -> bytes:
    """The bytes of ``value`` (data only; other objects become :class:`Opaque`)."""
    arrays: List[np.ndarray] = []
    tree = _encode(value, arrays, 0)
    buf = io.BytesIO()
    named: Dict[str, np.ndarray] = {f"a{i}": a for i, a in enumerate(arrays)}
    named["__tree__"] = np.frombuffer(json.dumps(tree).encode(), dtype=np.uint8)
    np.savez(buf, **named)
    return buf.getvalue()


def _decode(node: Any, arrays: Any, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise WireError("message nested too deeply")
    if node is None or isinstance(node, bool):
        return node
    if not isinstance(node, dict) or len(node) == 0:
        raise WireError(f"malformed node {str(node)[:40]!r}")
    if "s" in node:
        return str(node["s"])
    if "i" in node:
        return int(node["i"])
    if "bigint" in node:
        return int(str(node["bigint"])[:5000])
    if "f" in node:
        return float(node["f"])
    if "c" in node:
        return complex(float(node["c"][0]), float(node["c"][1]))
    if "npscalar" in node:
        return _array(arrays, node["npscalar"])[()]
    if "nd" in node:
        return _array(arrays, node["nd"])
    if "tensor" in node:
        t = _torch()
        if t is None:
            import torch as t
        arr = _array(arrays, node["tensor"])
        out = t.from_numpy(arr.copy())
        if node.get("grad") and out.is_floating_point():
            out.requires_grad_(True)
        return out
    if "tuple" in node:
        return tuple(_decode(v, arrays, depth + 1) for v in node["tuple"])
    if "list" in node:
        return [_decode(v, arrays, depth + 1) for v in node["list"]]
    if "dict" in node:
        out = {}
        for k, v in node["dict"]:
            out[_decode(k, arrays, depth + 1)] = _decode(v, arrays, depth + 1)
        if node.get("ordered") == "OrderedDict":
            from collections import OrderedDict

            return OrderedDict(out)
        return out
    if "module" in node:
        return ModuleState(_decode(node["module"], arrays, depth + 1), str(node.get("type", "")))
    if "opaque" in node:
        return _opaque_class(str(node["opaque"]))(str(node["opaque"]))
    raise WireError(f"malformed node {str(node)[:40]!r}")


def _array(arrays: Any, i: Any) -> np.ndarray:
    key = f"a{int(i)}"
    if key not in arrays.files:
        raise WireError(f"message refers to a missing array {key}")
    return arrays[key]


def loads(data: bytes) -> Any:
    """The value in ``data`` (from :func:`dumps`); :class:`WireError` when malformed."""
    if len(data) > MAX_BYTES:
        raise WireError(f"message of {len(data)} bytes is over the limit of {MAX_BYTES}")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            tree = json.loads(bytes(arrays["__tree__"]).decode())
            return _decode(tree, arrays, 0)
    except WireError:
        raise
    except Exception as exc:  # noqa: BLE001 - anything unreadable is a malformed message
        raise WireError(f"malformed message ({type(exc).__name__}: {str(exc)[:80]})") from None


# --------------------------------------------------------------------------------------------
# Framing: a message is a 4-byte length + JSON header, then ``header["blob"]`` bytes
# --------------------------------------------------------------------------------------------
_MAX_HEADER = 1 << 20


def write_message(fd: int, header: Dict[str, Any], blob: bytes = b"") -> None:
    """Write one message (``header`` as JSON, then ``blob``) to the file descriptor ``fd``."""
    import os

    head = json.dumps({**header, "blob": len(blob)}).encode()
    data = len(head).to_bytes(4, "big") + head + blob
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class ChannelClosed(EOFError):
    """The other side closed the channel (or died)."""


class ChannelTimeout(TimeoutError):
    """No complete message arrived before the deadline."""


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    import os
    import select
    import time

    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChannelTimeout()
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if not ready:
                continue
        piece = os.read(fd, min(n - got, 1 << 20))
        if not piece:
            raise ChannelClosed()
        chunks.append(piece)
        got += len(piece)
    return b"".join(chunks)


def read_message(fd: int, deadline: float | None = None) -> tuple:
    """``(header, blob)`` of the next message on ``fd``; never waits past ``deadline``
    (``time.monotonic()`` seconds). Raises ChannelClosed, ChannelTimeout or WireError."""
    size = int.from_bytes(_read_exact(fd, 4, deadline), "big")
    if size > _MAX_HEADER:
        raise WireError(f"message header of {size} bytes is over the limit")
    try:
        header = json.loads(_read_exact(fd, size, deadline).decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(f"malformed message header ({exc})") from None
    if not isinstance(header, dict):
        raise WireError("malformed message header (not an object)")
    n = header.get("blob", 0)
    if not isinstance(n, int) or n < 0 or n > MAX_BYTES:
        raise WireError(f"message announces {n!r} bytes (limit {MAX_BYTES})")
    return header, _read_exact(fd, n, deadline) if n else b""
