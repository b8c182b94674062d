r"""The Non-local block's fast routes: the same :math:`y` without the (N, N') attention matrix.

The explicit path (:meth:`gclab.nn.non_local.NonLocal2d.context_modeling`) builds the
(B, N, N') matrix, which needs O(N N') memory: 2 GiB per sample at 128x128 in float32. These
functions compute the same :math:`y` from the token embeddings q (B, N, Cq), k (B, N', Cq),
v (B, N', Ci) (:meth:`~gclab.nn.non_local.NonLocal2d.embed_tokens`):

- ``gaussian`` / ``embedded_gaussian``: :func:`softmax_attend`,
  ``torch.nn.functional.scaled_dot_product_attention`` (``scale`` = :math:`1/\sqrt{C_i}` with
  ``use_scale`` in ``embedded_gaussian``, else 1), O(N) memory on CPU (its flash kernel) and
  flash / memory-efficient kernels on GPU;
- ``dot_product``: :func:`dot_product_attend`, associativity,
  :math:`y = \theta\,(\phi^\top g) / N'`, linear in N; in eager mode, without sub-sampling and
  with :math:`C \le 2 C_i`, the whole block is one C x C map of x built from x's Gram matrix
  (:func:`gram_dot_product`), which reads x twice and stores no embedding;
- ``concatenation``: :func:`concatenation_attend`, sort the key terms
  :math:`b_j = w_\phi^\top\phi_j` once; then
  :math:`\sum_j \mathrm{ReLU}(a_i + b_j)\, g_j = a_i G_i + (bG)_i` where :math:`G_i, (bG)_i`
  are prefix sums of :math:`g_j` and :math:`b_j g_j` over the keys with
  :math:`b_j > -a_i`: O((N + N') log(N + N') + (N + N') C_i) time, O((N + N') C_i) memory.

Every function here but :func:`gram_dot_product` is compiled by TorchScript when a block is
scripted. Importing this module registers the FLOP formulas of the CPU flash-attention kernel
(:mod:`gclab.nn.fast.flops`), so ``FlopCounterMode`` counts :func:`softmax_attend`.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from . import flops  # noqa: F401 - imported to register FLOP formulas for SDPA on CPU


def softmax_attend(q: Tensor, k: Tensor, v: Tensor, scale: float) -> Tensor:
    """softmax(q k^T * scale) v without the (N, N') matrix.

    Shapes: q (B, N, Cq), k (B, N', Cq), v (B, N', Ci) -> (B, N, Ci).
    """
    cq, ci = q.shape[-1], v.shape[-1]
    if ci != cq:  # fused kernels want one head size: zero-pad v's channels, drop them after
        v = F.pad(v, [0, cq - ci])
    out = F.scaled_dot_product_attention(
        q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1), scale=scale
    )
    return out[:, 0, :, :ci]


def dot_product_attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """(q k^T / N') v as q (k^T v) / N': a (Ci, Ci) matrix instead of (N, N').

    Shapes: q (B, N, Ci), k (B, N', Ci), v (B, N', Ci) -> (B, N, Ci).
    """
    return torch.bmm(q, torch.bmm(k.transpose(1, 2), v)) / k.shape[1]


def concatenation_attend(q: Tensor, k: Tensor, v: Tensor, w_theta: Tensor,
                         w_phi: Tensor) -> Tensor:
    """y_i = sum_j ReLU(a_i + b_j) v_j / N' with a = q w_theta, b = k w_phi, by sorting.

    ReLU(a_i + b_j) > 0  <=>  c_j < a_i  with c = -b: sort c once; the keys that count for
    query i are a prefix of the sorted order, of length L_i = #{j: c_j < a_i}, so
    y_i = (a_i * prefix_sum(v)[L_i] + prefix_sum(b v)[L_i]) / N'.
    Shapes: q (B, N, Ci), k (B, N', Ci), v (B, N', Ci), w_theta, w_phi (Ci,) -> (B, N, Ci).
    """
    a = torch.matmul(q, w_theta)  # (B, N)
    c_sorted, order = torch.sort(-torch.matmul(k, w_phi), dim=1)  # (B, N') ascending
    ci = v.shape[-1]
    v_sorted = torch.gather(v, 1, order.unsqueeze(2).expand(-1, -1, ci))
    zero = v.new_zeros(v.shape[0], 1, ci)
    sum_v = torch.cat([zero, torch.cumsum(v_sorted, dim=1)], dim=1)  # (B, N'+1, Ci)
    bv = -c_sorted.unsqueeze(2) * v_sorted
    sum_bv = torch.cat([zero, torch.cumsum(bv, dim=1)], dim=1)
    idx = count_below(a, c_sorted).unsqueeze(2).expand(-1, -1, ci)
    y = a.unsqueeze(2) * torch.gather(sum_v, 1, idx) + torch.gather(sum_bv, 1, idx)
    return y / k.shape[1]


def count_below(a: Tensor, c: Tensor) -> Tensor:
    """L_i = #{j: c_j < a_i} for (B, N) a and (B, N') c, as (B, N) int64.

    a and c are sorted together and the c's before each a counted (searchsorted would do, but
    ONNX has no such op). A tie a_i = c_j may count either way: its term (a_i + b_j) v_j is 0.
    """
    n = a.shape[1]
    order = torch.argsort(torch.cat([a, c], dim=1), dim=1)  # (B, N + N')
    is_c = (order >= n).to(torch.int64)
    c_before = torch.cumsum(is_c, dim=1) - is_c  # c's strictly before each sorted slot
    # slot of each a_i in the sorted order = inverse permutation of ``order``, first N
    slots = torch.arange(order.shape[1], device=a.device).expand_as(order)
    inverse = torch.scatter(torch.zeros_like(order), 1, order, slots)
    return torch.gather(c_before, 1, inverse[:, :n])


def gram_dot_product(x: Tensor, w_theta: Tensor, w_phi: Tensor, w_g: Tensor,
                     w_out: Tensor, b_out: Optional[Tensor]) -> Tuple[Tensor, Tensor]:  # noqa: UP045
    r"""The dot-product block's context modelling and transform as one C x C map of x.

    With :math:`\theta_i = W_\theta x_i + b_\theta` (and :math:`\phi, g` alike):

    .. math::

        y_i = \frac{1}{N}\sum_j (\theta_i^\top\phi_j)\, g_j = K\theta_i, \qquad
        K = \frac{1}{N}\sum_j g_j\phi_j^\top
          = \frac{1}{N}\hat W_g \Big(\sum_j \hat x_j \hat x_j^\top\Big)\hat W_\phi^\top

    (:math:`\hat x_j = [x_j; 1]`, :math:`\hat W = [W, b]`). **Context modelling**: K
    (B, C_i, C_i) from the Gram matrix of x; **transform**: :math:`A = W_z K W_\theta`,
    :math:`a = W_z K b_\theta + b_z`. The caller fuses: :math:`z = x + A x + a`. x is read
    once here (the Gram matrix) and no (B, N, C_i) embedding is stored.

    Args: x (B, C, *S); ``w_theta``, ``w_phi``, ``w_g`` the embeddings as (C_i, C + 1)
    matrices :math:`\hat W` (weight and bias column); ``w_out`` (C, C_i) and ``b_out`` (C,) or
    None, :math:`W_z`. Returns A (B, C, C) and a (B, C, 1).
    """
    b, c = x.shape[0], x.shape[1]
    xf = x.flatten(2)  # (B, C, N), a view
    n = xf.shape[2]
    gram = torch.bmm(xf, xf.transpose(1, 2))  # (B, C, C) = sum_j x_j x_j^T
    total = xf.sum(2, keepdim=True)  # (B, C, 1) = sum_j x_j
    corner = torch.full((b, 1, 1), float(n), dtype=gram.dtype, device=gram.device)
    gram_hat = torch.cat([torch.cat([gram, total], 2),
                          torch.cat([total.transpose(1, 2), corner], 2)], 1)
    k = torch.matmul(torch.matmul(w_g, gram_hat), w_phi.t()) / max(n, 1)  # (B, Ci, Ci)
    a_hat = torch.matmul(torch.matmul(w_out, k), w_theta)
    a, bias = a_hat[:, :, :c], a_hat[:, :, c:]  # (B, C, C), (B, C, 1)
    if b_out is not None:
        bias = bias + b_out.reshape(1, c, 1)
    return a, bias
