r"""Insert GC, NL, SNL or SE blocks into an existing ResNet-style backbone.

:func:`insert_blocks` works on any model whose residual stages are ``layer1`` ... ``layer4``
(torchvision's and timm's ResNets, mmdet's ResNet, gclab's own backbone) and whose residual
units name their convs ``conv1, conv2(, conv3)`` and norms ``bn1, bn2(, bn3)``.

Two placements, for a residual unit :math:`y = \mathrm{ReLU}(x + F(x))`:

- ``'after_conv3'`` (GCNet, SE): :math:`y = \mathrm{ReLU}(x + \mathrm{block}(F(x)))`, the block
  sees the residual branch after the last conv and its norm (``conv3/bn3`` of a Bottleneck,
  ``conv2/bn2`` of a BasicBlock), before the addition;
- ``'after_block'`` (Non-local): :math:`y = \mathrm{block}(\mathrm{ReLU}(x + F(x)))`, the block
  sees the unit's output.

No forward is patched: the module that is wrapped is replaced by
:class:`InsertedBlock` ``(host, block)``, an ``nn.Sequential`` of two, so the model still works
under ``torch.jit.script``/``trace``, ``torch.compile``, ``torch.export`` and ONNX export.
The state_dict keys change accordingly (``layer2.0`` a Bottleneck):

=================  =============================  ==================================
position           the host's keys become         the block's keys
=================  =============================  ==================================
``after_conv3``    ``layer2.0.bn3.0.weight`` ...  ``layer2.0.bn3.1.<block keys>``
``after_block``    ``layer2.0.0.conv1.weight`` .. ``layer2.0.1.<block keys>``
=================  =============================  ==================================

So load plain pretrained ResNet weights *before* inserting, or load any checkpoint
afterwards with :func:`gclab.nn.load_mmdet_gcnet`, which maps the plain names (and mmdet's
``layerX.Y.context_block.*``) onto the wrapped ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, List, Sequence, Tuple, Union

from torch import Tensor, nn

BLOCKS = ("gc", "nl", "snl", "se")
POSITIONS = ("after_conv3", "after_block")
UnitsSpec = Union[None, int, Sequence[int]]


class InsertedBlock(nn.Sequential):
    """``host`` followed by the inserted ``block``: ``forward(x) = block(host(x))``.

    ``self[0]`` is the module that was there before (a norm for ``'after_conv3'``, the whole
    residual unit for ``'after_block'``), ``self[1]`` the inserted block. ``position`` records
    which placement made it. Shapes: whatever the host takes; the block keeps the host's output
    shape (B, C, H, W).
    """

    def __init__(self, host: nn.Module, block: nn.Module, position: str) -> None:
        super().__init__(host, block)
        self.position = position

    def forward(self, x: Tensor) -> Tensor:  # written out so that TorchScript sees one Tensor
        out = self[1](self[0](x))
        assert isinstance(out, Tensor)
        return out

    @property
    def host(self) -> nn.Module:
        return self[0]

    @property
    def block(self) -> nn.Module:
        return self[1]

    __jit_unused_properties__ = ["host", "block"]


@dataclass
class Inserted:
    """One inserted block: where it sits, its channels, what it is and its parameter count."""

    path: str
    channels: int
    block: str
    params: int


@dataclass
class InsertionSummary:
    """What :func:`insert_blocks` inserted, one :class:`Inserted` per block."""

    position: str
    entries: List[Inserted] = field(default_factory=list)

    @property
    def params_added(self) -> int:
        return sum(e.params for e in self.entries)

    @property
    def paths(self) -> List[str]:
        return [e.path for e in self.entries]

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[Inserted]:
        return iter(self.entries)

    def __str__(self) -> str:
        if not self.entries:
            return f"inserted no blocks (position={self.position!r})"
        w = max(len("module path"), *(len(e.path) for e in self.entries))
        lines = [
            f"inserted {len(self.entries)} block(s) at position={self.position!r}",
            f"  {'module path':<{w}}  {'C':>5}  {'params':>10}  block",
        ]
        for e in self.entries:
            lines.append(f"  {e.path:<{w}}  {e.channels:>5}  {e.params:>10,}  {e.block}")
        lines.append(f"  {'total':<{w}}  {'':>5}  {self.params_added:>10,}")
        return "\n".join(lines)


def _make_factory(block: Union[str, Callable[..., nn.Module]], kwargs: dict) -> Callable:
    from .gc_block import GCBlock
    from .non_local import NonLocal2d
    from .se_block import SEBlock
    from .snl_block import SimplifiedNonLocal2d

    if isinstance(block, str):
        classes = {"gc": GCBlock, "nl": NonLocal2d, "snl": SimplifiedNonLocal2d, "se": SEBlock}
        if block not in classes:
            raise ValueError(
                f"block must be one of {list(BLOCKS)} or a callable taking the channel count, "
                f"got {block!r}"
            )
        cls = classes[block]
        return lambda c: cls(c, **kwargs)
    if callable(block):
        return lambda c: block(c, **kwargs)
    raise TypeError(
        f"block must be one of {list(BLOCKS)} or a callable taking the channel count, "
        f"got {type(block).__name__}"
    )


def _check_stages(stages: Union[int, Iterable[int]]) -> Tuple[int, ...]:
    if isinstance(stages, int) and not isinstance(stages, bool):
        stages = (stages,)
    try:
        out = tuple(stages)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"stages must be a tuple of stage numbers 1..4 such as (2, 3, 4), got {stages!r}"
        ) from None
    if not out:
        raise ValueError("stages must name at least one stage 1..4, got an empty tuple")
    for s in out:
        if isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= 4:
            raise ValueError(
                f"stages are torchvision's layer numbers 1..4 (the paper's c3-c5 is (2, 3, 4)), "
                f"got {s!r} in {stages!r}"
            )
    if len(set(out)) != len(out):
        raise ValueError(f"stages lists a stage twice: {stages!r}")
    return out


def select_units(units: UnitsSpec, n: int, stage: int) -> List[int]:
    """Indices of the units of a stage with ``n`` units that get a block."""
    if units is None:
        return list(range(n))
    if isinstance(units, int) and not isinstance(units, bool):
        if units < 1:
            raise ValueError(f"units=k means every k-th unit and needs k >= 1, got {units}")
        return [i for i in range(n) if i % units == units - 1]
    try:
        chosen = list(units)
    except TypeError:
        raise TypeError(
            "units must be None (all), an int k (every k-th unit: k-1, 2k-1, ...) or a list of "
            f"unit indices, got {units!r}"
        ) from None
    out = []
    for i in chosen:
        if isinstance(i, bool) or not isinstance(i, int) or not -n <= i < n:
            raise ValueError(f"unit index {i!r} is out of range for layer{stage}, which has {n}")
        out.append(i % n)
    return sorted(set(out))


def _last_conv_index(unit: nn.Module) -> int | None:
    k = 0
    while hasattr(unit, f"conv{k + 1}"):
        k += 1
    return k or None


def _unit_channels(unit: nn.Module, path: str) -> int:
    k = _last_conv_index(unit)
    conv = getattr(unit, f"conv{k}", None) if k else None
    channels = getattr(conv, "out_channels", None)
    if not isinstance(channels, int):
        raise ValueError(
            f"cannot tell the output channels of {path} ({type(unit).__name__}): insert_blocks "
            "expects residual units with conv1, conv2(, conv3) as torchvision/timm name them"
        )
    return channels


def _check_module(block: object, path: str) -> None:
    if not isinstance(block, nn.Module):
        raise TypeError(
            f"the block factory must return an nn.Module, got {type(block).__name__} for {path}"
        )


def _describe(block: nn.Module) -> str:
    extra = block.extra_repr()
    return f"{type(block).__name__}({extra})" if extra else type(block).__name__


def insert_blocks(
    model: nn.Module,
    block: Union[str, Callable[..., nn.Module]],
    stages: Union[int, Iterable[int]] = (2, 3, 4),
    position: str = "after_conv3",
    units: UnitsSpec = None,
    **block_kwargs: Any,
) -> Tuple[nn.Module, InsertionSummary]:
    r"""Insert a block into every chosen residual unit of ``layer1``..``layer4`` (in place).

    For a residual unit :math:`y = \mathrm{ReLU}(x + F(x))`:

    - ``position='after_conv3'``: :math:`y = \mathrm{ReLU}(x + \mathrm{block}(F(x)))`, after the
      last conv + norm (``bn3`` of a Bottleneck, ``bn2`` of a BasicBlock), as GCNet and SE;
    - ``position='after_block'``: :math:`y' = \mathrm{block}(y)`, as Non-local.

    Args:
        model: a ResNet-style model with attributes ``layer1``..``layer4`` (each an
            ``nn.Sequential`` of residual units with ``conv1, bn1, conv2, bn2(, conv3, bn3)``).
        block: ``'gc'`` (:class:`GCBlock`), ``'nl'`` (:class:`NonLocal2d`), ``'snl'``
            (:class:`SimplifiedNonLocal2d`), ``'se'`` (:class:`SEBlock`), or a callable that
            takes the channel count C and returns an ``nn.Module`` mapping (B, C, H, W) to
            (B, C, H, W).
        stages: torchvision's stage numbers; the paper's c3-c5 is ``(2, 3, 4)``.
        position: ``'after_conv3'`` or ``'after_block'``.
        units: which units of each chosen stage: ``None`` all, an int ``k`` every k-th
            (units ``k-1, 2k-1, ...``: ``units=2`` is the Non-local paper's "every other
            residual block"), or a list of unit indices (negative counts from the end).
        **block_kwargs: passed to the block, e.g. ``ratio=1/4`` for GC/SE, ``mode=...`` for NL.

    Returns:
        ``(model, summary)``: the same model object, modified in place, and an
        :class:`InsertionSummary` (``print(summary)`` shows path, channels, params per block;
        ``summary.params_added`` the total).

    The wrapped module becomes an :class:`InsertedBlock` (an ``nn.Sequential`` of the old module
    and the block), so keys ``layer2.0.bn3.weight`` become ``layer2.0.bn3.0.weight`` and the
    block's keys are ``layer2.0.bn3.1.*`` (``after_block``: ``layer2.0.0.*`` and
    ``layer2.0.1.*``). Use :func:`gclab.nn.load_mmdet_gcnet` to load checkpoints with the
    original names afterwards. The model is put in its current train/eval mode unchanged; new
    blocks take the dtype and device of the module they follow.

    Example::

        >>> model, summary = insert_blocks(resnet50(), "gc", stages=(2, 3, 4), ratio=1/16)
        >>> summary.params_added
        2521741
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(position, str) or position not in POSITIONS:
        raise ValueError(f"position must be one of {list(POSITIONS)}, got {position!r}")
    stages = _check_stages(stages)
    factory = _make_factory(block, block_kwargs)
    _check_stages_exist(model, stages)
    # check every unit first, so a bad model is refused before anything is changed
    plan = [_place(stage, i, s, position)
            for s, stage in ((s, getattr(model, f"layer{s}")) for s in stages)
            for i in select_units(units, len(stage), s)]
    summary = InsertionSummary(position)
    for parent, name, host, path, channels in plan:
        new = factory(channels)
        _check_module(new, path)
        ref = next(iter(host.parameters()), None)
        if ref is not None:
            new = new.to(device=ref.device, dtype=ref.dtype)
        new.train(host.training)
        setattr(parent, name, InsertedBlock(host, new, position))
        n = sum(p.numel() for p in new.parameters())
        summary.entries.append(Inserted(f"{path}.1", channels, _describe(new), n))
    return model, summary


def _check_stages_exist(model: nn.Module, stages: Sequence[int]) -> None:
    missing = [f"layer{s}" for s in stages if not isinstance(getattr(model, f"layer{s}", None),
                                                             nn.Sequential)]
    if missing:
        hint = ""
        if isinstance(getattr(model, "backbone", None), nn.Module):
            hint = "; this model has a .backbone: pass model.backbone"
        children = [name for name, _ in model.named_children()][:12]
        raise ValueError(
            f"insert_blocks expects a ResNet-style model with nn.Sequential stages "
            f"layer1..layer4 (torchvision/timm naming); {type(model).__name__} has no "
            f"{', '.join(missing)} (its children: {children}){hint}"
        )


def _place(stage: nn.Sequential, i: int, s: int, position: str) -> tuple:
    """Where unit ``i`` of stage ``s`` gets its block: (parent, attribute name, host module,
    host path, channels); a ValueError if it cannot get one."""
    path = f"layer{s}.{i}"
    unit = stage[i]
    if position == "after_block":
        if isinstance(unit, InsertedBlock):
            raise ValueError(f"{path} already has a block inserted after it")
        return (stage, str(i), unit, path, _unit_channels(unit, path))
    if isinstance(unit, InsertedBlock):  # a block after the unit: look inside
        unit, path = unit[0], path + ".0"
    k = _last_conv_index(unit)
    if k is None:
        raise ValueError(
            f"{path} ({type(unit).__name__}) has no conv1/conv2/conv3 attributes, so "
            "'after_conv3' cannot find the last conv; use position='after_block'"
        )
    host_name = f"bn{k}" if isinstance(getattr(unit, f"bn{k}", None), nn.Module) \
        else f"conv{k}"
    host = getattr(unit, host_name)
    if isinstance(host, InsertedBlock):
        raise ValueError(f"{path}.{host_name} already has a block inserted after it")
    return (unit, host_name, host, f"{path}.{host_name}", _unit_channels(unit, path))


def inserted_blocks(model: nn.Module) -> List[Tuple[str, InsertedBlock]]:
    """All :class:`InsertedBlock` wrappers of a model, as ``(path, wrapper)`` pairs."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, InsertedBlock)]


def count_parameters(model: nn.Module) -> int:
    """The number of parameters (shared ones counted once)."""
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "BLOCKS",
    "POSITIONS",
    "Inserted",
    "InsertedBlock",
    "InsertionSummary",
    "count_parameters",
    "insert_blocks",
    "inserted_blocks",
]
