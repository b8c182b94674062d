r"""A fused forward + backward for the global-context blocks (GC, SE, SNL) in eager training.

Why: on CPU these blocks are memory-bound, and what costs most is not arithmetic but every
full-size (B, C, H, W) tensor that is *allocated* and *written*: a fresh tensor of tens of MiB
comes from the kernel as untouched pages, and first-touching them (page faults) costs more than
the pass itself (on a Sapphire Rapids VM: 32 MiB ``x + y`` 19 ms into a new tensor, 7.6 ms into an
existing one). Autograd of the plain formulation allocates 4-5 such tensors in the backward pass
(the gradient of ``x`` from each of its three uses, their sums, ``g * x`` for SE's gate), and one of
them comes out of a batched matrix product in transposed (B, N, C) order, so adding it to the
others is a strided pass (84 ms for 32 MiB on that machine: the reason the formulation that won
on AMD lost to mmcv on Intel).

What: one :class:`torch.autograd.Function` for pooling + transform + fusion, with the gradient
written out by hand (the transform, a few (B, C, 1, 1) ops, is differentiated by autograd inside
the backward, like activation checkpointing does):

.. math::

    z = x \odot s + a, \quad s = \sigma(\delta_{mul}(c)),\ a = \delta_{add}(c), \quad
    c = x\,\alpha, \quad \alpha = \mathrm{softmax}(w^\top x + b)

    \partial a = \textstyle\sum_j g_j, \quad \partial s = \sum_j g_j \odot x_j, \quad
    \partial\ell_j = \alpha_j\,(x_j^\top \partial c - c^\top \partial c)

    \partial x = g \odot s + \partial c\,\alpha^\top + w\,\partial\ell^\top

so the backward pass reads ``g`` once or twice and ``x`` once or twice, and writes one tensor,
``dx``, as a rank-2 update of ``g`` (or ``g * s``), one sample at a time so that x[i] is
read from memory once for :math:`\partial\ell`, :math:`\partial w` and dx
(:func:`_attention_pool_backward`, ``addmm``). :math:`\sum_j g_j \odot x_j` is
taken in cache-sized chunks, so ``g * x`` is never allocated. Average pooling
(:math:`\alpha = 1/N`) drops the :math:`w` term.

When: the blocks' ``impl=`` decides (:class:`gclab.nn.framework.GlobalContextFramework`).
``impl='auto'`` runs it only in eager mode with autograd recording (``torch.is_grad_enabled()``
and something requires grad) on a contiguous 4-D input (:func:`usable`); TorchScript, tracing,
``torch.compile`` / ``torch.export`` / ONNX and inference take the plain formulation.
``impl='fused'`` runs it wherever it can. Both compute the same values (to rounding:
tests/test_gc_impl.py, tests/test_fused.py, tests/test_fast_paths.py).

The hand-written backward is first-order (``once_differentiable``): a double backward through
a block (``create_graph=True``, e.g. a gradient penalty) raises. Build the block with
``impl='explicit'`` (or set ``block.impl = 'explicit'``) to train on the plain formulation then.
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

_CHUNK_ELEMS = 1 << 18  # 1 MiB of float32: a chunk of g * x that stays in cache


def compiling() -> bool:
    """Whether torch.compile, torch.export or dynamo is tracing the code that calls this."""
    compiler = getattr(torch, "compiler", None)
    if compiler is None:
        return False
    for name in ("is_compiling", "is_exporting", "is_dynamo_compiling"):
        fn = getattr(compiler, name, None)
        if fn is not None and fn():
            return True
    return False


def usable(x: Tensor, modules: Sequence[nn.Module]) -> bool:
    """Whether ``impl='auto'`` runs the fused Function: eager training on a contiguous 4-D
    input, with ``x`` or a parameter of ``modules`` requiring grad."""
    if not torch.is_grad_enabled() or torch.jit.is_tracing() or compiling():
        return False
    if x.dim() != 4 or not x.is_contiguous() or x.is_sparse or x.numel() == 0:
        return False
    if not x.dtype.is_floating_point:
        return False
    if x.requires_grad:
        return True
    return any(p.requires_grad for m in modules for p in m.parameters())


def rowdot(a: Tensor, b: Tensor) -> Tensor:
    """sum_n a[r, n] * b[r, n] for (R, N) tensors, without allocating a * b (chunks of rows)."""
    rows, n = a.shape
    out = a.new_empty(rows)
    chunk = _CHUNK_ELEMS
    if torch.get_num_threads() > 1:  # each op is a parallel region that ends in a barrier:
        chunk = max(chunk, rows * n // 8)  # at most 8 chunks (16 barriers), not 32 at 64x64
    step = max(1, chunk // max(n, 1))
    tmp = a.new_empty(min(step, rows), n)
    for i in range(0, rows, step):
        k = min(step, rows - i)
        t = tmp[:k]
        torch.mul(a[i:i + k], b[i:i + k], out=t)
        torch.sum(t, dim=1, out=out[i:i + k])
    return out


def _attention_pool_backward(x3, g3, gate, alpha, dctx3, cdot, weight, need_dx: bool,
                             need_dweight: bool):
    """The backward of attention pooling + fusion, one sample at a time.

    ``dl_j = alpha_j (x_j . dc - c . dc)``, ``dw = sum_j x_j dl_j``,
    ``dx = g * s + dc alpha^T + w dl^T``. Per sample, x[i] (C x N) is read from memory once:
    the products for dl and dw and the rank-2 update of dx reuse it (and g[i]) from the cache,
    and every product is a row vector times a matrix or a rank-2 update (no matrix-vector
    product with N-long rows, which torch's bmm runs several times slower).
    Returns dx (B, C, N) or None, dw (1, C) or None, dlogits (B, N)."""
    b, c, n = x3.shape
    dlogits = alpha.new_empty(b, n)
    dweight = x3.new_zeros(1, c) if need_dweight else None
    dx3 = g3.new_empty(b, c, n) if need_dx else None
    w = weight.reshape(c, 1).to(x3.dtype)
    for i in range(b):
        xi, dl = x3[i], dlogits[i:i + 1]
        sdot = torch.mm(dctx3[i].t(), xi)  # (1, N)
        torch.mul(alpha[i:i + 1], sdot - cdot[i], out=dl)
        if dweight is not None:
            dweight.addmm_(dl, xi.t())
        if dx3 is not None:
            u = torch.cat([dctx3[i], w], dim=1)  # (C, 2)
            v = torch.cat([alpha[i:i + 1], dl], dim=0)  # (2, N)
            if gate is not None:
                torch.mul(g3[i], gate[i].reshape(c, 1), out=dx3[i]).addmm_(u, v)
            else:
                torch.addmm(g3[i], u, v, out=dx3[i])
    return dx3, dweight, dlogits


class GlobalContextFunction(torch.autograd.Function):
    """pooling (attention or average) -> transform -> fusion, with a hand-written backward.

    ``apply(x, weight, bias, transform, *params)``: x (B, C, H, W); ``weight`` (1, C, 1, 1) and
    ``bias`` (1,) of attention pooling's ``conv_mask`` (``weight=None`` for average pooling;
    ``bias`` may be None), ``transform`` the block's ``nn.ModuleDict`` ({"mul"?, "add"?}),
    ``params`` its parameters, every one of them in ``transform.parameters()`` order (passed so
    that autograd hands their gradients back). Returns z (B, C, H, W).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, transform, *params):  # type: ignore[override]
        b, c, h, w = x.shape
        n = h * w
        x3 = x.reshape(b, c, n)
        alpha: Tensor | None = None
        if weight is not None:
            wv = weight.reshape(1, 1, c).expand(b, 1, c)
            logits = torch.bmm(wv, x3).reshape(b, n)
            if bias is not None:
                logits = logits + bias
            alpha = torch.softmax(logits, dim=1)
            context = torch.bmm(alpha.unsqueeze(1), x3.transpose(1, 2)).reshape(b, c, 1, 1)
        else:
            context = x.sum(dim=(2, 3), keepdim=True) * (1.0 / n)
        # the transform as a small graph of its own, differentiated in backward
        leaf = context.detach().requires_grad_()
        with torch.enable_grad():
            terms: Dict[str, Tensor] = {k: t(leaf) for k, t in transform.items()}
        add, mul = terms.get("add"), terms.get("mul")
        gate = torch.sigmoid(mul.detach()) if mul is not None else None
        if gate is not None:
            out = torch.addcmul(add.detach(), x, gate) if add is not None else x * gate
        elif add is not None:
            out = x + add.detach()
        else:
            out = x.clone()
        ctx.terms, ctx.leaf, ctx.params = terms, leaf, params
        ctx.save_for_backward(x, weight, alpha, context, gate)
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, g):  # type: ignore[override]
        x, weight, alpha, context, gate = ctx.saved_tensors
        b, c, h, w = x.shape
        n = h * w
        g3 = g.reshape(b, c, n)
        x3 = x.reshape(b, c, n)
        terms: Dict[str, Tensor] = ctx.terms
        outs: List[Tensor] = []
        grads: List[Tensor] = []
        if "mul" in terms:  # ds = sum_j g_j * x_j, through the sigmoid
            ds = rowdot(g3.reshape(b * c, n), x3.reshape(b * c, n)).reshape(b, c, 1, 1)
            outs.append(terms["mul"])
            grads.append(ds * gate * (1 - gate))
        if "add" in terms:
            outs.append(terms["add"])
            grads.append(g3.sum(dim=2).reshape(b, c, 1, 1))
        params = [p for p in ctx.params if p.requires_grad]
        with torch.enable_grad():
            # retain_graph: the transform's graph is tiny, and a caller may run this backward
            # again (backward(retain_graph=True), gradcheck); it goes with ctx
            got = torch.autograd.grad(
                outs, [ctx.leaf] + params, grads, allow_unused=True, retain_graph=True
            )
        dctx = got[0] if got[0] is not None else torch.zeros_like(context)
        it = iter(got[1:])
        dparams = [next(it) if p.requires_grad else None for p in ctx.params]

        dx = dweight = dbias = None
        dctx3 = dctx.reshape(b, c, 1)
        need_dx = ctx.needs_input_grad[0]
        if weight is not None:
            cdot = (context.reshape(b, c) * dctx.reshape(b, c)).sum(dim=1, keepdim=True)
            dx3, dweight, dlogits = _attention_pool_backward(
                x3, g3, gate, alpha, dctx3, cdot, weight, need_dx, ctx.needs_input_grad[1]
            )
            if dweight is not None:
                dweight = dweight.reshape(weight.shape)
            if ctx.has_bias and ctx.needs_input_grad[2]:
                dbias = dlogits.sum().reshape(1)
            if dx3 is not None:
                dx = dx3.reshape(b, c, h, w)
        elif need_dx:
            dmean = dctx3 * (1.0 / n)
            if gate is not None:
                dx3 = torch.addcmul(dmean, g3, gate.reshape(b, c, 1))
            else:
                dx3 = g3 + dmean
            dx = dx3.reshape(b, c, h, w)
        return (dx, dweight, dbias, None, *dparams)


def global_context(
    x: Tensor, weight: Tensor | None, bias: Tensor | None, transform: nn.ModuleDict
) -> Tensor:
    """z = fusion(x, transform(pool(x))) through :class:`GlobalContextFunction`."""
    params = list(transform.parameters())
    return GlobalContextFunction.apply(x, weight, bias, transform, *params)
