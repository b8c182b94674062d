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
import time
import zipfile
from typing import Any, Dict, List

import numpy as np

#: Most bytes one message may carry (a larger reply is treated as a broken sandbox).
MAX_BYTES = 64 * 2**20
#: Limits on decoding one message: arrays in it, array bytes produced (every reference to an
#: array counts), nodes of its tree, nesting, and seconds.
MAX_ARRAYS = 4096
MAX_DECODED = 256 * 2**20
MAX_NODES = 200_000
MAX_DECODE_SECONDS = 10.0
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


class _Budget:
    """What one decoding may still use; :class:`WireError` once it is spent."""

    def __init__(self, archive: Any, deadline: float) -> None:
        self.archive = archive
        self.loaded: Dict[str, np.ndarray] = {}
        self.nodes = 0
        self.decoded = 0
        self.deadline = deadline

    def node(self) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise WireError(f"message has more than {MAX_NODES} values")
        if self.nodes % 512 == 0 and time.monotonic() > self.deadline:
            raise WireError("message took too long to decode")

    def array(self, i: Any) -> np.ndarray:
        key = f"a{int(i)}"
        arr = self.loaded.get(key)
        if arr is None:
            if key not in self.archive.files:
                raise WireError(f"message refers to a missing array {key}")
            arr = self.loaded[key] = self.archive[key]
        self.decoded += arr.nbytes
        if self.decoded > MAX_DECODED:
            raise WireError(f"message decodes to more than {MAX_DECODED} bytes of arrays")
        if time.monotonic() > self.deadline:
            raise WireError("message took too long to decode")
        return arr


def _decode(node: Any, budget: _Budget, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise WireError("message nested too deeply")
    budget.node()
    if node is None or isinstance(node, bool):
        return node
    if not isinstance(node, dict) or len(node) == 0:
        raise WireError("malformed node")
    if "s" in node:
        return str(node["s"])
    if "i" in node:
        return int(node["i"])
    if "bigint" in node:
        return int(str(node["bigint"])[:4000])
    if "f" in node:
        return float(node["f"])
    if "c" in node:
        return complex(float(node["c"][0]), float(node["c"][1]))
    if "npscalar" in node:
        return budget.array(node["npscalar"])[()]
    if "nd" in node:
        return budget.array(node["nd"]).copy()
    if "tensor" in node:
        t = _torch()
        if t is None:
            import torch as t
        out = t.from_numpy(budget.array(node["tensor"]).copy())
        if node.get("grad") is True and out.is_floating_point():
            out.requires_grad_(True)
        return out
    if "tuple" in node:
        return tuple(_decode(v, budget, depth + 1) for v in _items(node["tuple"]))
    if "list" in node:
        return [_decode(v, budget, depth + 1) for v in _items(node["list"])]
    if "dict" in node:
        out = {}
        for pair in _items(node["dict"]):
            if not isinstance(pair, list) or len(pair) != 2:
                raise WireError("malformed dict entry")
            key = _decode(pair[0], budget, depth + 1)
            if not isinstance(key, (str, int, bool, type(None))):
                raise WireError("malformed dict key")
            out[key] = _decode(pair[1], budget, depth + 1)
        if node.get("ordered") == "OrderedDict":
            from collections import OrderedDict

            return OrderedDict(out)
        return out
    if "module" in node:
        state = _decode(node["module"], budget, depth + 1)
        if not isinstance(state, dict):
            raise WireError("malformed module state")
        return ModuleState(state, str(node.get("type", ""))[:200])
    if "opaque" in node:
        name = str(node["opaque"])[:200]
        return _opaque_class(name)(name)
    raise WireError("malformed node")


def _items(value: Any) -> list:
    if not isinstance(value, list):
        raise WireError("malformed container")
    return value


def loads(data: bytes, deadline: float | None = None) -> Any:
    """The value in ``data`` (from :func:`dumps`); :class:`WireError` when malformed or over
    a limit (bytes, arrays, decoded bytes, values, nesting; ``deadline``, a
    ``time.monotonic()`` time, or :data:`MAX_DECODE_SECONDS` from now)."""
    if len(data) > MAX_BYTES:
        raise WireError(f"message of {len(data)} bytes is over the limit of {MAX_BYTES}")
    limit = time.monotonic() + MAX_DECODE_SECONDS
    deadline = limit if deadline is None else min(deadline, limit)
    try:
        _check_archive(data)
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            raw = arrays["__tree__"]
            if raw.dtype != np.uint8 or raw.ndim != 1:
                raise WireError("malformed tree")
            tree = json.loads(bytes(raw).decode())
            return _decode(tree, _Budget(arrays, deadline), 0)
    except WireError:
        raise
    except Exception as exc:  # noqa: BLE001 - anything unreadable is a malformed message
        raise WireError(f"malformed message ({type(exc).__name__})") from None


def _check_archive(data: bytes) -> None:
    """Only stored (uncompressed) members, at most :data:`MAX_ARRAYS` + 1 of them: what it
    decodes to is never more than what was sent."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        infos = zf.infolist()
        if len(infos) > MAX_ARRAYS + 1:
            raise WireError(f"message has more than {MAX_ARRAYS} arrays")
        for info in infos:
            if info.compress_type != zipfile.ZIP_STORED or info.file_size > MAX_BYTES:
                raise WireError("message has a compressed or oversized member")


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
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise WireError("malformed message header (not JSON)") from None
    if not isinstance(header, dict):
        raise WireError("malformed message header (not an object)")
    n = header.get("blob", 0)
    if not isinstance(n, int) or n < 0 or n > MAX_BYTES:
        what = f"{n} bytes" if isinstance(n, int) else f"a {type(n).__name__}"
        raise WireError(f"message announces {what} (expected 0 to {MAX_BYTES} bytes)")
    return header, _read_exact(fd, n, deadline) if n else b""
