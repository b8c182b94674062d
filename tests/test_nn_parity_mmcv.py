"""gclab.nn against the official OpenMMLab code (mmcv-lite, a test dependency: never skipped).

For every GC pooling x fusion combination and every Non-local mode x sub_sample x norm in 1-D,
2-D and 3-D, an mmcv module with random (non-zero-init) weights is loaded into the gclab block
three ways (``load_state_dict(strict=True)``, ``gclab.nn.from_mmcv``, nested inside a parent
module) and both must give the same float32 output and input gradient, within the rounding bar
of tests/_tol.py (``_bars``).
"""

from __future__ import annotations

import itertools

import pytest
import torch
from _tol import f32_tol
from mmcv.cnn import ContextBlock
from mmcv.cnn import NonLocal2d as MmcvNonLocal2d
from mmcv.cnn.bricks.non_local import NonLocal1d as MmcvNonLocal1d
from mmcv.cnn.bricks.non_local import NonLocal3d as MmcvNonLocal3d
from torch import nn

from gclab.nn import (
    GCBlock,
    NonLocal1d,
    NonLocal2d,
    NonLocal3d,
    from_mmcv,
    mmcv_to_gclab_state_dict,
)


def _bars(x: torch.Tensor, out: torch.Tensor) -> tuple:
    """float32 (forward, input-gradient) bars, tests/_tol.py: sqrt(K)·2^-24·|out|, ×10.
    x (B, C, *S), N = prod(S). Forward: NL sums N' <= N keys of C-term logits through two
    C-channel convs; GC/SE pool N positions of a C-term mask through a C -> P -> C bottleneck
    (P <= C): K = N·C^3 for both. The input gradient adds the N queries (pooled positions) and
    the softmax backward's N-term row sum: K = N^3·C^3. (The issue asked for 1e-5; that held on
    these shapes but is no bound: the kernels' summation order moves results by ~sqrt(K)·u.)"""
    c, n = x.shape[1], x[0, 0].numel()
    scale = max(out.abs().max().item(), 1.0)  # |x| ~ 1 flows through the residual
    return f32_tol(n * c**3, scale), f32_tol(n**3 * c**3, scale)


POOLINGS = ("att", "avg")
FUSIONS = (
    ("channel_add",),
    ("channel_mul",),
    ("channel_mul", "channel_add"),
    ("channel_add", "channel_mul"),
)
MODES = ("gaussian", "embedded_gaussian", "dot_product", "concatenation")
NL = {
    1: (MmcvNonLocal1d, NonLocal1d, "BN1d", (2, 8, 9)),
    2: (MmcvNonLocal2d, NonLocal2d, "BN", (2, 8, 5, 6)),
    3: (MmcvNonLocal3d, NonLocal3d, "BN3d", (2, 8, 3, 4, 5)),
}
LOADERS = ("strict", "from_mmcv", "nested")


class _Parent(nn.Module):
    """A model that holds the block under a prefix, as a backbone would."""

    def __init__(self, block: nn.Module, channels: int, dims: int) -> None:
        super().__init__()
        self.stem = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims](channels, channels, 1)
        self.layers = nn.ModuleDict({"ctx": block})

    def forward(self, x):
        return self.layers["ctx"](self.stem(x))


def _load(loader: str, ref: nn.Module, make_ours, dims: int):
    """Return (ref_callable, our_callable, our_block) after loading ref's weights."""
    if loader == "strict":
        ours = make_ours()
        ours.load_state_dict(ref.state_dict(), strict=True)
        return ref, ours, ours
    if loader == "from_mmcv":
        ours = from_mmcv(ref)
        return ref, ours, ours
    channels = ref.in_channels
    ref_parent = _Parent(ref, channels, dims)
    with torch.no_grad():
        ref_parent.stem.weight.normal_(0, 0.3)
        ref_parent.stem.bias.normal_(0, 0.3)
    ours = make_ours()
    our_parent = _Parent(ours, channels, dims)
    sd = ref_parent.state_dict()
    assert any(k.startswith("layers.ctx.") for k in sd)
    our_parent.load_state_dict(sd, strict=True)
    return ref_parent, our_parent, ours


def _compare(ref, ours, x: torch.Tensor, grad: bool = True) -> None:
    xr = x.clone().requires_grad_(grad)
    xo = x.clone().requires_grad_(grad)
    out_ref, out_ours = ref(xr), ours(xo)
    assert out_ours.shape == out_ref.shape == x.shape
    bar, gbar = _bars(x, out_ref)
    diff = (out_ours - out_ref).abs().max().item()
    assert diff <= bar, f"max abs diff {diff:.3g} > {bar:.3g}"
    # random weights: the block must actually do something, or the test proves nothing
    assert (out_ref - x).abs().max().item() > 1e-2
    if not grad:
        return
    g = torch.randn_like(out_ref)
    (out_ref * g).sum().backward()
    (out_ours * g).sum().backward()
    gdiff = (xo.grad - xr.grad).abs().max().item()
    assert gdiff <= gbar, f"input-gradient max abs diff {gdiff:.3g} > {gbar:.3g}"


@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize("fusion_types", FUSIONS, ids="+".join)
@pytest.mark.parametrize("pooling", POOLINGS)
def test_context_block_parity(pooling, fusion_types, loader, randomize):
    torch.manual_seed(0)
    ref = randomize(ContextBlock(16, ratio=1 / 4, pooling_type=pooling, fusion_types=fusion_types))
    ref.eval()

    def make_ours():
        return GCBlock(16, ratio=1 / 4, pooling=pooling, fusions=fusion_types).eval()

    ref_c, ours_c, block = _load(loader, ref, make_ours, dims=2)
    assert isinstance(block, GCBlock)
    assert block.pooling == pooling and block.planes == ref.planes == 4
    assert set(block.fusions) == {f.replace("channel_", "") for f in fusion_types}
    _compare(ref_c, ours_c, torch.randn(2, 16, 5, 7))


def _nl_pair(dims, mode, sub_sample, norm, randomize, seed=0):
    mmcv_cls, our_cls, bn_type, shape = NL[dims]
    norm_cfg = None if norm is None else {"type": bn_type}
    ref = mmcv_cls(8, sub_sample=sub_sample, mode=mode, norm_cfg=norm_cfg)
    randomize(ref, seed=seed)

    def make_ours():
        return our_cls(8, mode=mode, sub_sample=sub_sample, norm=norm)

    return ref, make_ours, shape


@pytest.mark.parametrize("impl", ("explicit", "fast"))
@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize("norm", (None, "bn"), ids=("nonorm", "bn"))
@pytest.mark.parametrize("sub_sample", (False, True), ids=("full", "subsample"))
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dims", (1, 2, 3), ids=("1d", "2d", "3d"))
def test_non_local_parity(dims, mode, sub_sample, norm, loader, impl, randomize):
    """Both ways gclab computes y (the explicit (N, N') attention matrix, and the fast path
    that never builds it) must match mmcv."""
    torch.manual_seed(0)
    ref, make_ours, shape = _nl_pair(dims, mode, sub_sample, norm, randomize)
    ref.eval()
    ref_c, ours_c, block = _load(loader, ref, make_ours, dims)
    assert block.impl == "auto"
    block.impl = impl
    ref_c.eval()
    ours_c.eval()
    assert isinstance(block, NL[dims][1])
    assert (block.mode, block.sub_sample, block.norm_type) == (mode, sub_sample, norm)
    # mmcv's concatenation divides the output of an in-place ReLU in place, so mmcv itself
    # cannot back-propagate through it (autograd raises): compare forwards only there.
    _compare(ref_c, ours_c, torch.randn(*shape), grad=mode != "concatenation")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dims", (1, 2, 3), ids=("1d", "2d", "3d"))
def test_non_local_bn_training_mode_parity(dims, mode, randomize):
    """In training mode BatchNorm uses batch statistics and updates its running stats: both
    must match mmcv too (and from_mmcv keeps the module's train/eval mode)."""
    torch.manual_seed(0)
    ref, _, shape = _nl_pair(dims, mode, True, "bn", randomize)
    ref.train()
    ours = from_mmcv(ref)
    assert ours.training
    x = torch.randn(*shape)
    out_ref = ref(x)
    diff = (ours(x) - out_ref).abs().max().item()
    assert diff <= _bars(x, out_ref)[0]
    ours_sd = ours.state_dict()
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        assert torch.allclose(ours_sd[f"norm.{name}"], ref.state_dict()[f"conv_out.bn.{name}"])


def _mmcv_cases():
    for pooling, fusion_types in itertools.product(POOLINGS, FUSIONS):
        yield f"gc-{pooling}-{'+'.join(fusion_types)}", "gc", (pooling, fusion_types)
    for dims, mode, sub_sample, norm in itertools.product(
        (1, 2, 3), MODES, (False, True), (None, "bn")
    ):
        yield f"nl{dims}d-{mode}-{sub_sample}-{norm}", "nl", (dims, mode, sub_sample, norm)


@pytest.mark.parametrize("kind,config", [c[1:] for c in _mmcv_cases()],
                         ids=[c[0] for c in _mmcv_cases()])
def test_every_gclab_key_receives_a_value(kind, config, randomize):
    """Reverse check: the renamed mmcv state_dict covers exactly gclab's keys with the right
    shapes, and after loading every gclab tensor holds the value of its mmcv source."""
    if kind == "gc":
        pooling, fusion_types = config
        ref = ContextBlock(16, 1 / 4, pooling_type=pooling, fusion_types=fusion_types)
        ours = GCBlock(16, 1 / 4, pooling=pooling, fusions=fusion_types)
    else:
        ref, make_ours, _ = _nl_pair(*config, randomize=randomize)
        ours = make_ours()
    randomize(ref, seed=1)
    renamed = mmcv_to_gclab_state_dict(ref.state_dict(), kind)
    ours_sd = ours.state_dict()
    assert set(renamed) == set(ours_sd), (
        f"missing in mmcv: {sorted(set(ours_sd) - set(renamed))}, "
        f"unexpected: {sorted(set(renamed) - set(ours_sd))}"
    )
    for k, v in renamed.items():
        assert v.shape == ours_sd[k].shape, k
    result = ours.load_state_dict(ref.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    loaded = ours.state_dict()
    for k, v in renamed.items():
        assert torch.equal(loaded[k], v), f"{k} did not receive mmcv's value"
    # and nothing was left at its init value: every float tensor differs from a fresh block's
    fresh = type(ours)(**_ctor_kwargs(ours)).state_dict()
    for k, v in loaded.items():
        if v.is_floating_point() and not k.endswith("num_batches_tracked"):
            assert not torch.equal(v, fresh[k]), f"{k} still holds its init value"


def _ctor_kwargs(block):
    if isinstance(block, GCBlock):
        return dict(in_channels=block.in_channels, ratio=block.ratio, pooling=block.pooling,
                    fusions=block.fusions)
    return dict(in_channels=block.in_channels, mode=block.mode, sub_sample=block.sub_sample,
                norm=block.norm_type)


def test_from_mmcv_refuses_other_modules():
    with pytest.raises(TypeError, match="expects an mmcv ContextBlock or NonLocal"):
        from_mmcv(nn.Conv2d(4, 4, 1))
    with pytest.raises(TypeError, match="got gclab"):
        from_mmcv(GCBlock(16))


def test_mmcv_to_gclab_state_dict_refuses_unknown_kind():
    with pytest.raises(ValueError, match="'gc' or 'nl'.*'se'"):
        mmcv_to_gclab_state_dict({}, "se")


def test_gclab_state_dict_round_trips():
    """gclab's own keys still load strictly (the mmcv renaming must not break them)."""
    a, b = GCBlock(16, 1 / 4, fusions=("add", "mul")), GCBlock(16, 1 / 4, fusions=("add", "mul"))
    with torch.no_grad():
        for p in a.parameters():
            p.normal_()
    b.load_state_dict(a.state_dict(), strict=True)
    x = torch.randn(1, 16, 3, 3)
    assert torch.equal(a(x), b(x))
