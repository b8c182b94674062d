"""Every block, and a ResNet with blocks inserted, under TorchScript, torch.compile,
torch.export and ONNX, with H and W dynamic (checked at a second resolution).

Weights are randomised first: GC, SNL and NL start as the identity, and an exported identity
would match eager whatever it computed. Cost control (the CI machines have 2 cores):
trace/script per block; torch.export once for a chain of all 2-D blocks, once for
NonLocal1d/3d together and once for the backbone, and ONNX from those same exported programs;
``torch.compile(fullgraph=True, dynamic=True)`` with ``backend='eager'`` (Dynamo graph capture)
for the chain, ``backend='aot_eager'`` (+ AOT autograd) for the backbone and
``backend='inductor'`` (generated C++ code, ~20 s of CPU on a fresh cache) for one GC block.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from _tol import f32_tol, network_terms
from resnet_layouts import TorchvisionResNet
from torch import nn
from torch.export import Dim

from gclab.nn import (
    GCBlock,
    NonLocal1d,
    NonLocal2d,
    NonLocal3d,
    SEBlock,
    SimplifiedNonLocal2d,
    insert_blocks,
)

# torch 2.13 deprecates torch.jit.*; it still works and users still ship TorchScript
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

C = 16
BLOCKS_2D = {
    "gc_att_add": lambda: GCBlock(C, 1 / 4),
    "gc_att_mul": lambda: GCBlock(C, 1 / 4, fusions=("mul",)),
    "gc_avg_add_mul": lambda: GCBlock(C, 1 / 4, pooling="avg", fusions=("add", "mul")),
    "gc_no_layernorm": lambda: GCBlock(C, 1 / 4, layer_norm=False),
    "se": lambda: SEBlock(C, 1 / 4),
    "snl": lambda: SimplifiedNonLocal2d(C),
    "nl_gaussian": lambda: NonLocal2d(C, mode="gaussian"),
    "nl_embedded_gaussian": lambda: NonLocal2d(C, mode="embedded_gaussian", sub_sample=True),
    "nl_dot_product": lambda: NonLocal2d(C, mode="dot_product", norm="bn"),
    "nl_concatenation": lambda: NonLocal2d(C, mode="concatenation", sub_sample=True),
}
# (factory, first input shape, second input shape): the second differs in every spatial dim
# that export keeps dynamic (T of NonLocal3d stays fixed)
BLOCKS_ND = {
    "nl1d_embedded_gaussian": (lambda: NonLocal1d(C, sub_sample=True), (2, C, 20), (2, C, 27)),
    "nl3d_dot_product": (
        lambda: NonLocal3d(C, mode="dot_product", sub_sample=True),
        (2, C, 3, 8, 6),
        (2, C, 3, 10, 12),
    ),
}
X1, X2 = (2, C, 8, 12), (2, C, 13, 10)  # H != W, odd sizes (sub-sampling floors them)


def randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random, moderate weights everywhere (zero-initialised convs included), eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            scale = p[0].numel() ** -0.5 if p.dim() > 1 else 0.1  # keeps activations O(1)
            p.copy_(torch.randn(p.shape, generator=g) * scale + (1.0 if "norm" in name else 0.0))
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.add_(1.0)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return module.eval()


# float32 bars (tests/_tol.py). A block: NL sums N' <= N keys of C-term logits through two
# C-channel convs, GC pools N positions of a C-term mask through C -> P -> C: K = N·C^3, with the
# largest N of these tests (3·10·12 = 360). Traced/exported graphs may reorder and fuse ops,
# onnxruntime runs its own kernels: either rounds the same sums differently, by <= the bar.
BLOCK_TERMS = 360 * C**3


def close(a: torch.Tensor, b: torch.Tensor, n_terms: int = BLOCK_TERMS) -> None:
    bar = f32_tol(n_terms, max(1.0, b.abs().max().item()))
    torch.testing.assert_close(a, b, rtol=0, atol=bar)


def backbone_terms(model: nn.Module, x: torch.Tensor) -> int:
    """K for a backbone: its convs' fan-ins and the blocks' position sums, as a chain."""
    return network_terms(model, x[0, 0].numel())


def close_backbone(model: nn.Module, x: torch.Tensor, got: torch.Tensor) -> None:
    close(got, model(x), backbone_terms(model, x))


def spatial_dims(n: int, first: int = 2, min: int = 4) -> dict:
    """Dynamic sizes for ``n`` spatial dims starting at dim ``first``: L, or H and W."""
    names = {1: ["L"], 2: ["H", "W"]}[n]
    return {first + i: Dim(name, min=min, max=1024) for i, name in enumerate(names)}


# the backbone downsamples by 32: its last map must stay larger than 1 x 1
BACKBONE_DIMS = {"x": spatial_dims(2, min=33)}


def block_cases():
    for name, make in BLOCKS_2D.items():
        yield pytest.param(make, X1, X2, id=name)
    for name, (make, s1, s2) in BLOCKS_ND.items():
        yield pytest.param(make, s1, s2, id=name)


# ------------------------------------------------------------------------- TorchScript
@pytest.mark.parametrize("make,shape1,shape2", list(block_cases()))
def test_trace_and_script_match_eager_at_two_resolutions(make, shape1, shape2):
    torch.manual_seed(0)
    block = randomize(make())
    x1, x2 = torch.randn(shape1), torch.randn(shape2)
    with torch.no_grad():
        traced = torch.jit.trace(block, (x1,))
        scripted = torch.jit.script(block)
        for x in (x1, x2):
            want = block(x)
            assert not torch.allclose(want, x)  # the block does something
            close(traced(x), want)
            close(scripted(x), want)
        out, attn = scripted(x2, True)  # the Union return under TorchScript
        want_out, want_attn = block(x2, return_attention=True)
        close(out, want_out)
        close(attn, want_attn)


def test_scripted_model_survives_save_and_load(tmp_path):
    block = randomize(GCBlock(C, 1 / 4, fusions=("add", "mul")))
    path = tmp_path / "gc.pt"
    torch.jit.script(block).save(str(path))
    loaded = torch.jit.load(str(path))
    x = torch.randn(X2)
    with torch.no_grad():
        close(loaded(x), block(x))


# ------------------------------------------------- one model holding every 2-D block
class Chain2d(nn.Module):
    """Every 2-D block on the same input; one output per block (in BLOCKS_2D's order)."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(make() for make in BLOCKS_2D.values())

    def forward(self, x: torch.Tensor):
        return tuple(b(x) for b in self.blocks)


def close_all(got, want) -> None:
    got, want = list(got), list(want)
    assert len(got) == len(want)
    for name, g, w in zip(BLOCKS_2D, got, want):
        try:
            close(torch.as_tensor(g), w)
        except AssertionError as err:
            raise AssertionError(f"block {name}: {err}") from None


class BlocksNd(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.nl1 = BLOCKS_ND["nl1d_embedded_gaussian"][0]()
        self.nl3 = BLOCKS_ND["nl3d_dot_product"][0]()

    def forward(self, a: torch.Tensor, v: torch.Tensor):
        return self.nl1(a), self.nl3(v)


def small_backbone() -> nn.Module:
    torch.manual_seed(0)
    model = TorchvisionResNet("basic", (1, 1, 1, 1), width=8, num_classes=5)
    insert_blocks(model, "se", stages=(1,), ratio=1 / 4)
    insert_blocks(model, "gc", stages=(2, 3), ratio=1 / 4, fusions=("add", "mul"))
    insert_blocks(model, "snl", stages=(4,))
    insert_blocks(model, "nl", stages=(3,), position="after_block", mode="concatenation")
    return randomize(model, seed=1)


IMG1, IMG2 = (2, 3, 64, 64), (2, 3, 96, 80)


@pytest.fixture(scope="module")
def chain():
    torch.manual_seed(0)
    return randomize(Chain2d())


@pytest.fixture(scope="module")
def blocks_nd():
    torch.manual_seed(0)
    return randomize(BlocksNd())


@pytest.fixture(scope="module")
def backbone():
    return small_backbone()


def test_backbone_with_blocks_traces_and_scripts(backbone):
    x1, x2 = torch.randn(IMG1), torch.randn(IMG2)
    with torch.no_grad():
        traced = torch.jit.trace(backbone, (x1,))
        scripted = torch.jit.script(backbone)
        for x in (x1, x2):
            close_backbone(backbone, x, traced(x))
            close_backbone(backbone, x, scripted(x))


# ---------------------------------------------------------------------- torch.export
@pytest.fixture(scope="module")
def chain_program(chain):
    return torch.export.export(chain, (torch.randn(X1),), dynamic_shapes={"x": spatial_dims(2)})


ND_SHAPES = [BLOCKS_ND["nl1d_embedded_gaussian"][1:], BLOCKS_ND["nl3d_dot_product"][1:]]
ND_DIMS = {"a": spatial_dims(1), "v": spatial_dims(2, first=3)}  # L; H and W (T fixed)


@pytest.fixture(scope="module")
def nd_program(blocks_nd):
    args = (torch.randn(ND_SHAPES[0][0]), torch.randn(ND_SHAPES[1][0]))
    return torch.export.export(blocks_nd, args, dynamic_shapes=ND_DIMS)


@pytest.fixture(scope="module")
def backbone_program(backbone):
    return torch.export.export(backbone, (torch.randn(IMG1),), dynamic_shapes=BACKBONE_DIMS)


def test_export_chain_of_2d_blocks_with_dynamic_h_w(chain, chain_program):
    with torch.no_grad():
        for shape in (X1, X2, (2, C, 24, 7)):
            x = torch.randn(shape)
            close_all(chain_program.module()(x), chain(x))


def test_export_nonlocal_1d_3d_with_dynamic_sizes(blocks_nd, nd_program):
    with torch.no_grad():
        for i in (0, 1):
            a, v = torch.randn(ND_SHAPES[0][i]), torch.randn(ND_SHAPES[1][i])
            for got, want in zip(nd_program.module()(a, v), blocks_nd(a, v)):
                close(got, want)


def test_export_backbone_with_dynamic_h_w(backbone, backbone_program):
    with torch.no_grad():
        for shape in (IMG1, IMG2):
            x = torch.randn(shape)
            close_backbone(backbone, x, backbone_program.module()(x))


# ----------------------------------------------------------------------- torch.compile
def compiled_matches(model, backend, shapes, compare=close_backbone) -> None:
    torch._dynamo.reset()
    compiled = torch.compile(model, backend=backend, dynamic=True, fullgraph=True)
    with torch.no_grad():
        for shape in shapes:
            x = torch.randn(shape)
            compare(model, x, compiled(x))


def test_compile_chain_of_2d_blocks_eager_backend(chain):
    compiled_matches(chain, "eager", (X1, X2), compare=lambda m, x, got: close_all(got, m(x)))


def test_compile_backbone_aot_eager_backend(backbone):
    compiled_matches(backbone, "aot_eager", (IMG1, IMG2))


def test_compile_gc_block_inductor():
    compiled_matches(randomize(GCBlock(C, 1 / 4)), "inductor", (X1, X2))


# ------------------------------------------------------------------------------ ONNX
def to_onnx(program, args, path, optimize: bool = True):
    """ONNX from an exported program; returns the ONNX graph and an onnxruntime session."""
    try:
        import onnx
        import onnxruntime
        import onnxscript  # noqa: F401  (the exporter needs it)
    except ImportError as err:
        pytest.skip(f"ONNX export test needs onnx, onnxscript and onnxruntime: {err}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onnx_program = torch.onnx.export(program, args, dynamo=True, optimize=optimize)
    onnx_program.save(str(path))
    graph = onnx.load(str(path)).graph
    return graph, onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def symbolic(graph_input) -> list:
    """Which dims of an ONNX graph input are symbolic (dynamic)."""
    return [bool(d.dim_param) for d in graph_input.type.tensor_type.shape.dim]


def test_onnx_chain_of_2d_blocks_runs_in_onnxruntime_at_two_resolutions(
    chain, chain_program, tmp_path
):
    x1 = torch.randn(X1)
    graph, sess = to_onnx(chain_program, (x1,), tmp_path / "chain.onnx", optimize=False)
    assert symbolic(graph.input[0]) == [False, False, True, True]  # H and W stay dynamic
    assert all(symbolic(out)[2:] == [True, True] for out in graph.output)
    name = sess.get_inputs()[0].name
    with torch.no_grad():
        for x in (x1, torch.randn(X2)):
            close_all(sess.run(None, {name: x.numpy()}), chain(x))


def test_onnx_nonlocal_1d_3d(blocks_nd, nd_program, tmp_path):
    args = (torch.randn(ND_SHAPES[0][0]), torch.randn(ND_SHAPES[1][0]))
    graph, sess = to_onnx(nd_program, args, tmp_path / "nd.onnx", optimize=False)
    assert symbolic(graph.input[0]) == [False, False, True]
    assert symbolic(graph.input[1]) == [False, False, False, True, True]
    names = [i.name for i in sess.get_inputs()]
    with torch.no_grad():
        for i in (0, 1):
            a, v = torch.randn(ND_SHAPES[0][i]), torch.randn(ND_SHAPES[1][i])
            got = sess.run(None, {names[0]: a.numpy(), names[1]: v.numpy()})
            for g, w in zip(got, blocks_nd(a, v)):
                close(torch.from_numpy(g), w)


def test_onnx_backbone_with_blocks(backbone, backbone_program, tmp_path):
    x1 = torch.randn(IMG1)
    graph, sess = to_onnx(backbone_program, (x1,), tmp_path / "r.onnx")  # default optimize
    assert symbolic(graph.input[0]) == [False, False, True, True]
    name = sess.get_inputs()[0].name
    with torch.no_grad():
        for x in (x1, torch.randn(IMG2)):
            (got,) = sess.run(None, {name: x.numpy()})
            close_backbone(backbone, x, torch.from_numpy(got))
