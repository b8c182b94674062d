r"""Load GCNet/mmdet checkpoints (and plain ResNet weights) into a model with inserted blocks.

mmdet's GCNet checkpoints keep each ``ContextBlock`` inside its bottleneck, applied after
``bn3``: ``backbone.layer2.0.context_block.conv_mask.weight``,
``backbone.layer2.0.context_block.channel_add_conv.0.weight``, ... (mmdet's ``Bottleneck`` holds
``self.context_block``; mmdet 2.x/3.x plugins use the same name, and ``nonlocal_block`` for
Non-local plugins). A model built with ``insert_blocks(resnet, 'gc', (2, 3, 4))`` holds the same
computation under other names (see :mod:`gclab.nn.insert`):

=============================================  ===========================================
checkpoint key (``backbone.`` prefix removed)  gclab model key
=============================================  ===========================================
``layer2.0.bn3.weight``                        ``layer2.0.bn3.0.weight``
``layer2.0.context_block.conv_mask.weight``    ``layer2.0.bn3.1.context_modeling.conv_mask.weight``
``layer2.0.context_block.channel_add_conv.*``  ``layer2.0.bn3.1.transform.add.*``
``layer2.0.conv1.weight`` (unchanged units)    ``layer2.0.conv1.weight``
=============================================  ===========================================

:func:`load_mmdet_gcnet` does this renaming from the model's own structure, so it also loads
plain torchvision/timm ResNet weights into a model where blocks were inserted (the blocks'
keys are then reported missing).
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ..insert import InsertedBlock
from .keys import CONTEXT_BLOCK_KEYS, NON_LOCAL_KEYS, rename_key

# mmdet's name for a block inserted after the last conv of a unit, by gclab block class
_MMDET_PLUGIN_NAMES = {
    "GCBlock": "context_block",
    "NonLocal1d": "nonlocal_block",
    "NonLocal2d": "nonlocal_block",
    "NonLocal3d": "nonlocal_block",
}


@dataclass
class LoadReport:
    """What :func:`load_mmdet_gcnet` loaded.

    ``missing_keys``/``unexpected_keys`` are in the model's naming (after renaming);
    ``ignored_keys`` are checkpoint keys outside the backbone (a detector's neck and heads)
    that were left out on purpose; ``renamed`` maps checkpoint keys to the model keys they
    were loaded into, where the name changed.
    """

    loaded: int
    missing_keys: List[str] = field(default_factory=list)
    unexpected_keys: List[str] = field(default_factory=list)
    ignored_keys: List[str] = field(default_factory=list)
    renamed: Dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every model key was loaded and every backbone key was used."""
        return not self.missing_keys and not self.unexpected_keys

    def __str__(self) -> str:
        lines = [
            f"loaded {self.loaded} tensors ({len(self.renamed)} renamed to gclab's names), "
            f"{len(self.ignored_keys)} non-backbone keys ignored"
        ]
        for what, keys in (("missing", self.missing_keys), ("unexpected", self.unexpected_keys)):
            if keys:
                lines.append(f"{what} ({len(keys)} keys): {_group(keys)}")
        if self.ok:
            lines.append("no missing or unexpected keys")
        return "\n".join(lines)


def _group(keys: List[str], limit: int = 8) -> str:
    """``a.b.weight, a.b.bias`` -> ``a.b.{weight,bias}``, at most ``limit`` groups shown."""
    groups: OrderedDict[str, List[str]] = OrderedDict()
    for k in keys:
        head, _, leaf = k.rpartition(".")
        groups.setdefault(head, []).append(leaf)
    parts = [f"{h}.{{{','.join(v)}}}" if len(v) > 1 else f"{h}.{v[0]}" for h, v in groups.items()]
    more = f", ... and {len(parts) - limit} more modules" if len(parts) > limit else ""
    return ", ".join(parts[:limit]) + more


_EXPECTED = (
    "a torch checkpoint saved with torch.save: a state_dict (a dict of names to tensors) or "
    "an mmdet checkpoint {'state_dict': ...}"
)


def _load_file(path: Union[str, os.PathLike], weights_only: bool) -> object:
    """``torch.load`` of ``path`` with errors that name the path and what was expected."""
    name = os.fspath(path)
    if not os.path.exists(name):
        raise FileNotFoundError(f"no checkpoint file at {name!r}; expected {_EXPECTED}")
    if os.path.isdir(name):
        raise IsADirectoryError(
            f"checkpoint path {name!r} is a directory; expected a file: {_EXPECTED}"
        )
    if os.path.getsize(name) == 0:
        raise ValueError(f"checkpoint file {name!r} is empty (0 bytes); expected {_EXPECTED}")
    with open(name, "rb") as f:
        head = f.read(4)
    # torch.save writes a zip archive (the legacy format: a pickle, which starts with 0x80)
    if not (zipfile.is_zipfile(name) or head[:1] == b"\x80"):
        raise ValueError(
            f"checkpoint file {name!r} is not a torch checkpoint (it starts with {head!r}, "
            f"neither a zip archive nor a pickle); expected {_EXPECTED}"
        )
    try:
        return torch.load(name, map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError as err:
        text = str(err)
        # torch's own reason follows "WeightsUnpickler error:" (a refused global, or an
        # opcode it does not know: then the file is no checkpoint at all)
        detail = text.partition("WeightsUnpickler error:")[2].split("Check the documentation")[0]
        detail = " ".join(detail.split()) or text.splitlines()[0]
        if weights_only and "weights only" in text.lower() and "global" in detail.lower():
            raise pickle.UnpicklingError(
                f"checkpoint file {name!r} holds Python objects other than tensors and plain "
                "containers, and torch.load(weights_only=True) refuses them on purpose: "
                "unpickling them would run code from the file. If you trust the file, load it "
                f"yourself, sd = torch.load({name!r}, weights_only=False), and pass the "
                "state_dict (or the whole dict): load_mmdet_gcnet(model, sd); or call "
                "load_mmdet_gcnet(model, path, weights_only=False).\n"
                f"torch said: {detail}"
            ) from None
        raise ValueError(
            f"checkpoint file {name!r} is not a torch checkpoint ({detail}); "
            f"expected {_EXPECTED}"
        ) from None
    except Exception as err:  # torch.load on text, a truncated file, another format ...
        raise ValueError(
            f"checkpoint file {name!r} could not be read by torch.load "
            f"({type(err).__name__}: {err}); expected {_EXPECTED}"
        ) from None


def _read(checkpoint: Union[Mapping[str, Tensor], str, os.PathLike], weights_only: bool) -> dict:
    if isinstance(checkpoint, (str, os.PathLike)):
        checkpoint = _load_file(checkpoint, weights_only)
    if not isinstance(checkpoint, Mapping):
        raise TypeError(
            "checkpoint must be a state_dict (a mapping of names to tensors), an mmdet "
            f"checkpoint dict with 'state_dict', or a path; got {type(checkpoint).__name__}"
        )
    for wrapper in ("state_dict", "model"):  # mmdet/mmengine and some other trainers
        inner = checkpoint.get(wrapper)
        if isinstance(inner, Mapping) and not isinstance(inner, Tensor):
            checkpoint = inner
            break
    bad = [k for k, v in checkpoint.items() if not isinstance(v, Tensor)]
    if bad:
        raise TypeError(
            f"checkpoint entries must be tensors; these are not: {bad[:5]} (expected {_EXPECTED})"
        )
    return dict(checkpoint)


def _strip_prefixes(keys: List[str], model_keys: set) -> Dict[str, str | None]:
    """Drop ``module.`` (DataParallel); when the checkpoint has ``backbone.*`` keys and the model
    does not, keep those without the prefix and map every other key to None (ignored)."""
    out: Dict[str, str | None] = {k: k for k in keys}
    if keys and all(k.startswith("module.") for k in keys):
        out = {k: k[len("module."):] for k in keys}
    stripped = [v for v in out.values() if v is not None]
    if any(k.startswith("backbone.") for k in stripped) and not any(
        k.startswith("backbone.") for k in model_keys
    ):
        out = {
            k: (v[len("backbone."):] if v.startswith("backbone.") else None)
            for k, v in out.items()
        }
    return out


def _module_renames(model: nn.Module) -> Dict[str, str]:
    """Checkpoint module path -> model module path, for every module insert_blocks moved.

    Walks the tree and tracks each module's *plain* path (its path without the wrappers).
    """
    renames: Dict[str, str] = {}

    def walk(module: nn.Module, path: str, plain: str) -> None:
        for name, child in module.named_children():
            cpath = f"{path}.{name}" if path else name
            cplain = f"{plain}.{name}" if plain else name
            if isinstance(child, InsertedBlock):
                # the host keeps the plain name
                renames[cplain] = f"{cpath}.0"
                walk(child[0], f"{cpath}.0", cplain)
                block = child[1]
                unit_plain, _, _ = cplain.rpartition(".")
                plugin = _MMDET_PLUGIN_NAMES.get(type(block).__name__)
                if child.position == "after_conv3" and plugin is not None and unit_plain:
                    bplain = f"{unit_plain}.{plugin}"
                else:  # no official name: only gclab's own keys can load it
                    bplain = f"{cpath}.1"
                renames[bplain] = f"{cpath}.1"
                walk(block, f"{cpath}.1", bplain)
            else:
                walk(child, cpath, cplain)

    walk(model, "", "")
    return {k: v for k, v in renames.items() if k != v}


def _mmcv_tables(model: nn.Module) -> List[Tuple[str, Sequence[Tuple[str, str]]]]:
    """(prefix, table) for every block that accepts mmcv's parameter names."""
    from ..framework import GlobalContextFramework
    from ..non_local import NonLocal1d, NonLocal2d, NonLocal3d

    out = []
    for name, m in model.named_modules():
        if isinstance(m, GlobalContextFramework):
            out.append((name + ".", CONTEXT_BLOCK_KEYS))
        elif isinstance(m, (NonLocal1d, NonLocal2d, NonLocal3d)):
            out.append((name + ".", NON_LOCAL_KEYS))
    return out


def _mmcv_to_gclab(key: str, tables: List[Tuple[str, Sequence[Tuple[str, str]]]]) -> str:
    """mmcv's names inside a block (``conv_mask.*``) -> gclab's (``context_modeling...``)."""
    for prefix, table in tables:
        if key.startswith(prefix):
            new = rename_key(key[len(prefix):], table)
            if new is not None:
                return prefix + new
    return key


def _rename(key: str, renames: Dict[str, str]) -> str:
    """Replace the longest module-path prefix of ``key`` found in ``renames``."""
    parts = key.split(".")
    for i in range(len(parts) - 1, 0, -1):
        head = ".".join(parts[:i])
        if head in renames:
            return renames[head] + "." + ".".join(parts[i:])
    return key


def map_checkpoint_keys(model: nn.Module, keys: Iterable[str]) -> Dict[str, str | None]:
    """Where each checkpoint key loads in ``model``: the model's key, or None when the key lies
    outside the backbone (a detector's ``neck.*``/``*_head.*``) and is ignored.

    The renaming :func:`load_mmdet_gcnet` applies (table in :mod:`gclab.nn.mmcv.checkpoints`):
    ``backbone.`` (and ``module.``) dropped, wrapped hosts ``bn3`` -> ``bn3.0``, mmdet's
    ``context_block`` -> the inserted block ``bn3.1``, mmcv's names inside blocks -> gclab's.
    Keys that match no rule are returned unchanged (and would be reported unexpected).

    Example::

        >>> model, _ = insert_blocks(resnet50(), "gc", stages=(2, 3, 4))
        >>> map_checkpoint_keys(model, ["backbone.layer2.0.context_block.conv_mask.weight"])
        {'backbone.layer2.0.context_block.conv_mask.weight':
         'layer2.0.bn3.1.context_modeling.conv_mask.weight'}
    """
    keys = list(keys)
    model_keys = set(model.state_dict().keys())
    renames = _module_renames(model)
    tables = _mmcv_tables(model)
    out: Dict[str, str | None] = {}
    for key, stripped in _strip_prefixes(keys, model_keys).items():
        if stripped is None or stripped in model_keys:
            out[key] = stripped
        else:
            out[key] = _mmcv_to_gclab(_rename(stripped, renames), tables)
    return out


def load_mmdet_gcnet(
    model: nn.Module,
    checkpoint: Union[Mapping[str, Tensor], str, os.PathLike],
    strict: bool = True,
    weights_only: bool = True,
) -> LoadReport:
    r"""Load an mmdet/GCNet checkpoint into a ResNet where :func:`insert_blocks` placed blocks.

    The checkpoint is an mmdet ResNet's state_dict with ``ContextBlock`` weights under
    ``layerX.Y.context_block.*`` (``conv_mask``, ``channel_add_conv``, ``channel_mul_conv``),
    or a detector's (keys ``backbone.*``: the backbone is taken, the rest reported in
    ``ignored_keys``), or an mmdet checkpoint file/dict with a ``'state_dict'`` entry.
    Keys are renamed from the model's structure (table in :mod:`gclab.nn.mmcv.checkpoints`):
    the wrapped norm ``bn3`` -> ``bn3.0``, ``context_block`` -> ``bn3.1`` (mmcv's
    ``conv_mask``/``channel_add_conv`` -> gclab's ``context_modeling``/``transform.add`` is
    done by :class:`GCBlock` itself). Plain ResNet weights (torchvision keys) load the same way;
    the inserted blocks' keys are then missing.

    Args:
        model: the gclab model, e.g. ``insert_blocks(resnet50(), 'gc', (2, 3, 4),
            ratio=1/16)[0]`` for GCNet's r16 c3-c5 checkpoints (``ratio=1/4`` for r4).
        checkpoint: a state_dict, an mmdet checkpoint dict (``{'state_dict': ...}``, e.g. what
            you loaded yourself with ``torch.load``), or a path to a ``.pth`` file.
        strict: raise if any model key is missing or any backbone key is unexpected
            (non-backbone keys of a detector never count).
        weights_only: passed to ``torch.load`` for paths; set False only for files you trust
            whose metadata holds arbitrary Python objects.

    Returns:
        a :class:`LoadReport` (``print(report)`` lists missing and unexpected keys by module).

    Raises:
        RuntimeError: ``strict=True`` and keys are missing or unexpected (the message lists them).
        ValueError: a tensor's shape does not match (e.g. an r4 checkpoint into an r16 model);
            two checkpoint keys load into one parameter; the file is empty or not a torch
            checkpoint.
        FileNotFoundError, IsADirectoryError: the path is missing or a directory.
        pickle.UnpicklingError: ``weights_only=True`` refused the file's Python objects (on
            purpose: unpickling them runs code); load it yourself with
            ``torch.load(path, weights_only=False)`` if you trust it and pass the dict.

    Example::

        >>> model, _ = insert_blocks(resnet50(), "gc", stages=(2, 3, 4), ratio=1/16)
        >>> report = load_mmdet_gcnet(model, "mask_rcnn_r50_fpn_gcb_r16_c3-c5.pth", strict=False)
        >>> print(report)   # fc.* missing: a detector's backbone has no classifier
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    new_sd, renamed, ignored = _in_model_names(model, _read(checkpoint, weights_only))
    try:
        result = model.load_state_dict(new_sd, strict=False)
    except RuntimeError as err:
        raise ValueError(
            "the checkpoint's tensors do not fit the model's shapes; were the blocks inserted "
            "with the checkpoint's settings (GCNet r16 = ratio=1/16, r4 = ratio=1/4; the same "
            f"stages; the same ResNet depth)?\n{err}"
        ) from None
    report = LoadReport(
        loaded=len(new_sd) - len(result.unexpected_keys),
        missing_keys=list(result.missing_keys),
        unexpected_keys=list(result.unexpected_keys),
        ignored_keys=ignored,
        renamed=renamed,
    )
    if strict and not report.ok:
        raise RuntimeError(
            "load_mmdet_gcnet(strict=True): the checkpoint and the model do not match\n"
            f"{report}\n(pass strict=False to load what matches and inspect the report)"
        )
    return report


def _in_model_names(
    model: nn.Module, sd: Mapping[str, Tensor]
) -> Tuple[OrderedDict[str, Tensor], Dict[str, str], List[str]]:
    """The checkpoint ``sd`` under the model's key names (:func:`map_checkpoint_keys`), the
    renamed keys (checkpoint key -> model key) and the ignored (non-backbone) keys."""
    new_sd: OrderedDict[str, Tensor] = OrderedDict()
    renamed: Dict[str, str] = {}
    ignored: List[str] = []
    source: Dict[str, str] = {}  # model key -> the checkpoint key loaded into it
    for key, new in map_checkpoint_keys(model, sd).items():
        if new is None:
            ignored.append(key)
            continue
        if new in source:  # e.g. gclab's and mmcv's name for one tensor, both present
            raise ValueError(
                f"the checkpoint holds two keys for one model parameter: {source[new]!r} and "
                f"{key!r} both load into {new!r}; keep one of them"
            )
        source[new] = key
        if new != key:
            renamed[key] = new
        new_sd[new] = sd[key]
    return new_sd, renamed, ignored


__all__ = ["LoadReport", "load_mmdet_gcnet", "map_checkpoint_keys"]
