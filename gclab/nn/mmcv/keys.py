"""The key tables between mmcv's parameter names and gclab's, and the renaming they drive.

A module of its own (no block is built here), so that the blocks (``framework``,
``non_local``: their load pre-hooks), the converters (:mod:`gclab.nn.mmcv.convert`) and the
checkpoint loader (:mod:`gclab.nn.mmcv.checkpoints`) all import it and not each other: the
imports inside gclab form a tree.

Each table is a sequence of ``(mmcv prefix, gclab prefix)`` pairs; the first that matches wins.
"""

from __future__ import annotations

from typing import MutableMapping, Sequence, Tuple

KeyTable = Sequence[Tuple[str, str]]

# mmcv ContextBlock -> gclab GCBlock (and every GlobalContextFramework)
CONTEXT_BLOCK_KEYS: KeyTable = (
    ("conv_mask.", "context_modeling.conv_mask."),
    ("channel_add_conv.", "transform.add."),
    ("channel_mul_conv.", "transform.mul."),
)
# mmcv NonLocal1d/2d/3d -> gclab NonLocal1d/2d/3d
NON_LOCAL_KEYS: KeyTable = (
    ("g.0.conv.", "g."),
    ("g.conv.", "g."),
    ("theta.conv.", "theta."),
    ("phi.0.conv.", "phi."),
    ("phi.conv.", "phi."),
    ("conv_out.conv.", "conv_out."),
    ("conv_out.bn.", "norm."),
    ("concat_project.conv.", "concat_project."),
)


def rename_key(rest: str, table: KeyTable) -> str | None:
    """gclab's name for the mmcv name ``rest`` (a key inside one block), None if no rule matches.

    Example: ``rename_key("conv_mask.weight", CONTEXT_BLOCK_KEYS)`` is
    ``'context_modeling.conv_mask.weight'``.
    """
    for old, new in table:
        if rest.startswith(old):
            return new + rest[len(old):]
    return None


def remap_state_dict_keys(state_dict: MutableMapping, prefix: str, table: KeyTable) -> None:
    """Rename, in place, keys ``prefix + old...`` to ``prefix + new...`` (first match wins).

    A state_dict that holds both names of one tensor (gclab's ``g.weight`` and mmcv's
    ``g.conv.weight``) is ambiguous: which of the two should load? Rather than keep one
    silently, this raises a ValueError naming both keys.
    """
    renames = {}
    for key in list(state_dict.keys()):
        if not key.startswith(prefix):
            continue
        new = rename_key(key[len(prefix):], table)
        if new is not None:
            renames[key] = prefix + new
    seen: dict = {}
    for key, new in renames.items():
        if new in state_dict and new not in renames:  # gclab's own key is there too
            raise ValueError(
                f"the state_dict holds two names for one parameter: {new!r} (gclab's name) and "
                f"{key!r} (mmcv's name for it); both would load into {new!r}, so keep one of them"
            )
        if new in seen:
            raise ValueError(
                f"the state_dict holds two mmcv names for one parameter: {seen[new]!r} and "
                f"{key!r} (both load into {new!r}); keep one of them"
            )
        seen[new] = key
    for key, new in renames.items():
        state_dict[new] = state_dict.pop(key)


def accept_context_block_keys(module, state_dict, prefix, *args) -> None:
    """A load_state_dict pre-hook: mmcv ``ContextBlock`` keys load into a
    :class:`~gclab.nn.framework.GlobalContextFramework` (GC, SE, SNL) under gclab's names."""
    remap_state_dict_keys(state_dict, prefix, CONTEXT_BLOCK_KEYS)


def accept_non_local_keys(module, state_dict, prefix, *args) -> None:
    """A load_state_dict pre-hook: mmcv ``NonLocal1d/2d/3d`` keys load into gclab's Non-local
    blocks under gclab's names."""
    remap_state_dict_keys(state_dict, prefix, NON_LOCAL_KEYS)
