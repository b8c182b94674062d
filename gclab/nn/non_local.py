r"""Non-local blocks (Wang et al., 2018) in 1-D, 2-D and 3-D, as mmcv computes them."""

from __future__ import annotations

import functools
import math
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..vocab import NON_LOCAL_MODES, check_bool, check_choice, check_int
from ._checks import check_input
from .fast.fused import compiling
from .fast.non_local import (
    concatenation_attend,
    dot_product_attend,
    gram_dot_product,
    softmax_attend,
)
from .fast.routes import call_key, choose_route, measurable, measured_routes_enabled
from .mmcv.keys import accept_non_local_keys

# which computation ``forward`` uses (see :class:`_NonLocalNd`, "Fast paths")
IMPLS = ("auto", "explicit", "fast")
# measured routes (gclab.nn.fast.routes) consider the explicit matrix up to N' <= 16 C_i only
MEASURED_MAX_KEYS = 16
_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_BN = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
# sub-sampling halves the spatial dims only (3-D keeps time, as mmcv does)
_POOL_KERNEL = {1: (2,), 2: (2, 2), 3: (1, 2, 2)}


class _NonLocalNd(nn.Module):
    r"""Non-local block: every position attends to every other.

    .. math::

        y_i = \frac{1}{\mathcal{C}(x)} \sum_{j} f(x_i, x_j)\, g(x_j), \qquad
        z_i = x_i + W_z\, y_i

    with :math:`\theta, \phi, g` 1x1 convs C -> C_i (``C_i = max(C // reduction, 1)``) and the
    pairwise function :math:`f` chosen by ``mode``:

    ===================== ====================================================================
    ``gaussian``          :math:`\mathrm{softmax}_j(x_i^\top x_j)` (no :math:`\theta, \phi`,
                          no scale)
    ``embedded_gaussian`` :math:`\mathrm{softmax}_j(\theta(x_i)^\top\phi(x_j) / \sqrt{C_i})`
                          (the division only when ``use_scale``)
    ``dot_product``       :math:`\theta(x_i)^\top\phi(x_j) / N'`
    ``concatenation``     :math:`\mathrm{ReLU}(w^\top[\theta(x_i); \phi(x_j)]) / N'`
    ===================== ====================================================================

    :math:`N'` is the number of key positions. In the framework's words: **context modelling**
    computes :math:`y` (:meth:`context_modeling`), **transform** is :math:`W_z` =
    ``conv_out`` (+ ``norm``) (:meth:`transform`), **fusion** adds it to :math:`x`.

    Args:
        in_channels: C.
        reduction: C_i = max(C // reduction, 1).
        mode: the pairwise function (table above).
        use_scale: divide by :math:`\sqrt{C_i}` in ``embedded_gaussian``.
        sub_sample: 2x max-pool ``g`` and ``phi`` after their convs (keys only; queries and
            the output keep the input's size). Needs every pooled dim >= 2.
        norm: ``None`` or ``'bn'`` (BatchNorm after ``conv_out``, which then has no bias).
        impl: ``'auto'`` (default), ``'explicit'`` or ``'fast'``: how :meth:`forward`
            computes :math:`y` (the plain attribute ``self.impl`` may be changed at any time).
        device, dtype: where and in which float type to create the parameters, as torch.nn's
            own modules (``device='meta'`` builds without storage; then
            ``to_empty(device=...)`` and :meth:`reset_parameters`).

    **Fast paths.** The explicit path (:meth:`context_modeling`) builds the (B, N, N')
    attention matrix, which needs O(N N') memory: 2 GiB per sample at 128x128 in float32.
    :meth:`fast_context_modeling` computes the same :math:`y` without it (SDPA in the softmax
    modes, :math:`\theta\,(\phi^\top g) / N'` for ``dot_product``, sort + prefix sums for
    ``concatenation``), and :meth:`fast_dot_product` the whole dot-product block from x's
    Gram matrix: :mod:`gclab.nn.fast.non_local` holds the routes and their maths.

    ``impl='auto'`` uses the fast path unless the attention map is asked for
    (``return_attention=True`` always takes the explicit path) or, in eager mode, the map has
    few keys: :math:`N' \le 5 C_i` in the softmax modes (up to 22x22 at C=256),
    :math:`N' \le C_i` in dot product and concatenation (8x8 at C=256). Then the (N, N')
    matrix is at most a few times the (N, C_i) embeddings, so memory stays O(N C_i), and it is
    faster: measured fwd+bwd at B=2, C=256, medians of 40 interleaved rounds on the idle
    2-core Intel Xeon, explicit / fast = 0.93-1.01 (1 thread) and 0.89-0.94 (2 threads) from
    8x8 to 24x24 in embedded-Gaussian mode, 1.19-1.20 at 32x32; in dot-product mode 0.95-0.99
    at 8x8, from 12x12 on the fast path is faster (``python scripts/nl_paths.py``;
    docs/benchmarks.md, "a measured size rule"). On another CPU the other route can win near
    the threshold; :func:`gclab.nn.fast.routes.set_measured_routes` (or the ``with
    measured_routes():`` block) makes ``'auto'`` time both routes on the first eager call per
    input configuration and keep the faster for the process (considered up to
    :math:`N' \le 16 C_i`; off by default, so ``'auto'`` is deterministic).
    Under tracing, TorchScript, ``torch.compile`` and ``torch.export`` ``'auto'`` stays on the
    fast path (no shape-dependent branch in the graph). ``'explicit'`` always builds
    the matrix (the reference, as mmcv computes it); ``'fast'`` always takes the fast path and
    refuses ``return_attention=True``. Both paths agree to rounding (tests/test_fast_paths.py).

    Init as mmcv: :math:`\theta, \phi, g` normal(std=0.01), bias 0; ``conv_out`` zero (or the
    norm's weight and bias when a norm is used), so the block is the identity at init.
    """

    spatial_dims = 2

    def __init__(
        self,
        in_channels: int,
        reduction: int = 2,
        mode: str = "embedded_gaussian",
        use_scale: bool = True,
        sub_sample: bool = False,
        norm: str | None = None,
        impl: str = "auto",
        device: Union[torch.device, str, int, None] = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels)
        self.reduction = check_int("reduction", reduction)
        self.mode = check_choice("mode", mode, NON_LOCAL_MODES)
        self.impl = check_choice("impl", impl, IMPLS)
        if norm is not None:
            check_choice("norm", norm, ("bn",))
        self.use_scale = check_bool("use_scale", use_scale)
        self.sub_sample = check_bool("sub_sample", sub_sample)
        self.norm_type = norm
        self.inter_channels = max(in_channels // reduction, 1)
        kw = {"device": device, "dtype": dtype}
        conv = _CONV[self.spatial_dims]
        ci = self.inter_channels

        self.g = conv(in_channels, ci, kernel_size=1, **kw)
        # unused parts are None (not missing), so torch.jit.script prunes their branches
        self.theta = None
        self.phi = None
        self.concat_project = None
        self.norm = None
        if mode != "gaussian":
            self.theta = conv(in_channels, ci, kernel_size=1, **kw)
            self.phi = conv(in_channels, ci, kernel_size=1, **kw)
        if mode == "concatenation":
            # mmcv projects the concatenation with a 2-D conv whatever the block's dims
            self.concat_project = nn.Conv2d(2 * ci, 1, kernel_size=1, bias=False, **kw)
        self.conv_out = conv(ci, in_channels, kernel_size=1, bias=norm is None, **kw)
        if norm == "bn":
            self.norm = _BN[self.spatial_dims](in_channels, **kw)
        self.reset_parameters()
        self.register_load_state_dict_pre_hook(accept_non_local_keys)

    # ------------------------------------------------------------------ init
    def reset_parameters(self, std: float = 0.01) -> None:
        for name in ("g", "theta", "phi"):
            m = getattr(self, name, None)
            if m is not None:
                nn.init.normal_(m.weight, std=std)
                nn.init.zeros_(m.bias)
        if self.mode == "concatenation":
            nn.init.kaiming_normal_(
                self.concat_project.weight, mode="fan_out", nonlinearity="relu"
            )
        if self.norm_type is None:
            nn.init.zeros_(self.conv_out.weight)
            nn.init.zeros_(self.conv_out.bias)
        else:
            nn.init.kaiming_normal_(self.conv_out.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(self.norm.weight)
            nn.init.zeros_(self.norm.bias)
            self.norm.reset_running_stats()  # mean 0, var 1 (after to_empty they are garbage)

    # ------------------------------------------------------- pairwise functions
    # theta_x: (B, N, Ci) [or (B, N, C) for gaussian]; phi_x: (B, Ci, N')  ->  (B, N, N')
    def gaussian(self, theta_x: Tensor, phi_x: Tensor) -> Tensor:
        """softmax_j(x_i^T x_j): (B, N, C), (B, C, N') -> (B, N, N')."""
        return torch.softmax(torch.bmm(theta_x, phi_x), dim=-1)

    def embedded_gaussian(self, theta_x: Tensor, phi_x: Tensor) -> Tensor:
        """softmax_j(theta_i^T phi_j [/ sqrt(Ci)]): (B, N, Ci), (B, Ci, N') -> (B, N, N').

        The scale multiplies theta (N x Ci values), not the logits (N x N')."""
        if self.use_scale:
            theta_x = theta_x * (1.0 / math.sqrt(theta_x.shape[-1]))
        return torch.softmax(torch.bmm(theta_x, phi_x), dim=-1)

    def dot_product(self, theta_x: Tensor, phi_x: Tensor) -> Tensor:
        """theta_i^T phi_j / N': (B, N, Ci), (B, Ci, N') -> (B, N, N')."""
        return torch.bmm(theta_x, phi_x) / phi_x.shape[-1]

    def concatenation(self, theta_x: Tensor, phi_x: Tensor) -> Tensor:
        """ReLU(w^T [theta_i; phi_j]) / N': (B, N, Ci), (B, Ci, N') -> (B, N, N')."""
        # w^T [theta_i; phi_j] = w_theta^T theta_i + w_phi^T phi_j: no (B, 2Ci, N, N') tensor
        w_theta, w_phi = self._concat_weights(theta_x.shape[-1])
        a = torch.matmul(theta_x, w_theta)  # (B, N)
        b = torch.matmul(phi_x.transpose(1, 2), w_phi)  # (B, N')
        return torch.relu(a.unsqueeze(2) + b.unsqueeze(1)) / phi_x.shape[-1]

    def _concat_weights(self, ci: int) -> Tuple[Tensor, Tensor]:
        if self.concat_project is not None:
            w = self.concat_project.weight.reshape(2 * ci)
            return w[:ci], w[ci:]
        raise RuntimeError("the concatenation pairwise function needs mode='concatenation'")

    def pairwise(self, theta_x: Tensor, phi_x: Tensor) -> Tensor:
        """Dispatch to the pairwise function named by ``self.mode``."""
        if self.mode == "gaussian":
            return self.gaussian(theta_x, phi_x)
        if self.mode == "embedded_gaussian":
            return self.embedded_gaussian(theta_x, phi_x)
        if self.mode == "dot_product":
            return self.dot_product(theta_x, phi_x)
        return self.concatenation(theta_x, phi_x)

    # ------------------------------------------------------------- embeddings
    def _pool_tokens(self, t: Tensor, x: Tensor) -> Tensor:
        # sub-sample keys held as tokens: (B, N, K) -> (B, N', K), unit stride on the last dim
        b, k = t.shape[0], t.shape[2]
        nd = x.dim()  # (B, *S, K) -> (B, K, *S) (channels-last layout) -> pool -> back
        to_grid = [0, nd - 1] + list(range(1, nd - 1))
        to_tokens = [0] + list(range(2, nd)) + [1]
        grid = t.reshape([b] + list(x.shape[2:]) + [k]).permute(to_grid)
        return self._pool(grid).permute(to_tokens).flatten(1, -2).contiguous()

    def _stacked_embeddings(self) -> Tuple[Tensor, Tensor]:
        # theta, phi, g as one (3 Ci, C) weight and (3 Ci,) bias: one product computes all three
        theta, phi = self.theta, self.phi
        if theta is None or phi is None:  # never: only gaussian lacks them, and it stacks none
            raise RuntimeError("theta and phi are needed to stack the embeddings")
        tb, pb, gb = theta.bias, phi.bias, self.g.bias
        if tb is None or pb is None or gb is None:  # never: the embeddings have biases
            raise RuntimeError("theta, phi and g must have biases")
        weight = torch.cat([theta.weight, phi.weight, self.g.weight])
        return weight.reshape(3 * self.inter_channels, self.in_channels), torch.cat([tb, pb, gb])

    def embed_tokens(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """theta, phi and g of x as tokens with a unit stride on the last dim (both paths).

        Returns q (B, N, Cq), k (B, N', Cq), v (B, N', Ci) with Cq = C in ``gaussian`` mode
        (q = k = x) and Ci otherwise. theta, phi and g are applied as one matrix product, so x
        is read once (in NCHW or channels_last layout alike).
        """
        c, ci = self.in_channels, self.inter_channels
        tokens = x.flatten(2).transpose(1, 2)  # (B, N, C): a view for both layouts
        if self.theta is None or self.phi is None:  # gaussian: q = k = x
            q = tokens.contiguous()
            v = F.linear(tokens, self.g.weight.reshape(ci, c), self.g.bias)
            if self.sub_sample:
                return q, self._pool_tokens(q, x), self._pool_tokens(v, x)
            return q, q, v
        weight, bias = self._stacked_embeddings()
        qkv = F.linear(tokens, weight, bias)  # (B, N, 3 Ci)
        # split: one backward writing into one tensor (slices: a zero-filled one each, added)
        if not self.sub_sample:
            q, k, v = qkv.split(ci, dim=-1)
            return q, k, v
        q, kv = qkv.split([ci, 2 * ci], dim=-1)
        k, v = self._pool_tokens(kv, x).split(ci, dim=-1)
        return q, k, v

    def _pool(self, t: Tensor) -> Tensor:
        # 2x max-pool of the spatial dims (3-D: H and W only); t is (B, K, *spatial)
        if t.dim() == 3:  # as a 2-D pool: torch.export specialises max_pool1d's length
            return F.max_pool2d(t.unsqueeze(-1), (2, 1)).squeeze(-1)
        if t.dim() == 4:
            return F.max_pool2d(t, 2)
        return F.max_pool3d(t, (1, 2, 2))

    def embed(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """theta_x (B, N, Ci), phi_x (B, Ci, N'), g_x (B, N', Ci) (``C`` for gaussian's).

        The embeddings of :meth:`embed_tokens` (theta, phi and g as one matrix product over
        all B N positions); phi_x is a transposed view."""
        theta_x, phi_x, g_x = self.embed_tokens(x)
        return theta_x, phi_x.transpose(1, 2), g_x

    # ------------------------------------------------- 1. context modelling
    def context_modeling(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        r"""Step 1, explicit: :math:`y_i = \sum_j f(x_i, x_j) g(x_j) / \mathcal{C}(x)`.

        Builds the attention matrix. Returns y (B, Ci, *spatial) and the attention (B, N, N').
        """
        theta_x, phi_x, g_x = self.embed(x)
        attention = self.pairwise(theta_x, phi_x)  # (B, N, N')
        y = torch.bmm(attention, g_x)  # (B, N, Ci)
        # (B, Ci, *S) as a view of the bmm's result: transform reads it without a copy
        return y.transpose(1, 2).unflatten(2, x.shape[2:]), attention

    def fast_context_modeling(self, x: Tensor) -> Tensor:
        r"""Step 1 without the (N, N') attention matrix; same :math:`y` as
        :meth:`context_modeling` (to rounding). The routes: :mod:`gclab.nn.fast.non_local`.

        Shapes: x (B, C, *spatial) -> y (B, Ci, *spatial).
        """
        q, k, v = self.embed_tokens(x)
        if self.mode == "dot_product":
            y = dot_product_attend(q, k, v)
        elif self.mode == "concatenation":
            w_theta, w_phi = self._concat_weights(q.shape[-1])
            y = concatenation_attend(q, k, v, w_theta, w_phi)
        else:
            scale = 1.0
            if self.mode == "embedded_gaussian" and self.use_scale:
                scale = 1.0 / math.sqrt(self.inter_channels)
            y = softmax_attend(q, k, v, scale)
        return y.transpose(1, 2).unflatten(2, x.shape[2:])

    # ---------------------------------------------------------- 2. transform
    def transform(self, y: Tensor) -> Tensor:
        r"""Step 2: :math:`W_z y` (1x1 conv Ci -> C, then the norm if any).

        The 1x1 conv runs as one matrix product on y's flattened positions (the same values
        as ``self.conv_out(y)``, without the im2col copy of torch's CPU convolution)."""
        w = self.conv_out.weight.reshape(self.in_channels, self.inter_channels)
        out = _conv1x1(w, self.conv_out.bias, y.flatten(2)).unflatten(2, y.shape[2:])
        if self.norm is not None:
            out = self.norm(out)
        return out

    # ------------------------------------------------------------- 3. fusion
    def forward(
        self, x: Tensor, return_attention: bool = False
    ) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        """z = x + W_z y (step 3, fusion by addition); y from the fast path unless the
        attention is requested or ``impl='explicit'``. Shapes: (B, C, *S) -> (B, C, *S)."""
        if not torch.jit.is_scripting():
            self._check(x, return_attention)
            check_choice("impl", self.impl, IMPLS)  # a plain attribute: catch typos set later
        if return_attention:
            if self.impl == "fast":
                raise ValueError(
                    "impl='fast' never builds the attention matrix; use impl='auto' or "
                    "'explicit' to get it with return_attention=True"
                )
            y, attention = self.context_modeling(x)
            return x + self.transform(y), attention
        use_matrix = self.impl == "explicit"
        if not torch.jit.is_scripting():
            use_matrix = use_matrix or (self.impl == "auto" and self._auto_takes_matrix(x))
            if not use_matrix and self._gram_path(x):
                return self.fast_dot_product(x)
        if use_matrix:
            y = self.context_modeling(x)[0]
        else:
            y = self.fast_context_modeling(x)
        return x + self.transform(y)

    # ------------------------------------------------ path choice, checks, repr
    def fast_dot_product(self, x: Tensor) -> Tensor:
        r"""The whole dot-product block as one input-dependent C x C map of x (no sub-sampling).

        **Context modelling** and **transform** give A (B, C, C) and a (B, C, 1) from the Gram
        matrix of x (:func:`gclab.nn.fast.non_local.gram_dot_product`); **fusion**:
        :math:`z = x + A x + a` (with a norm: :math:`x + \mathrm{BN}(A x + a)`). x is read twice
        and no (B, N, C_i) embedding is stored, so time grows as N and memory stays that of x.
        Used by ``impl='auto'``/``'fast'`` in eager mode when :math:`C \le 2 C_i` (then the
        C x C products cost no more than the embeddings') and :math:`N \ge 2C` (below that its
        fixed C x C products cost more than they save), without ``sub_sample`` (max-pooling
        does not commute with :math:`W_\phi`) and outside autocast. Shapes: (B, C, *S) ->
        (B, C, *S); equal to the explicit path to rounding (tests/test_fast_paths.py).
        """
        theta, phi, g = self.theta, self.phi, self.g
        if theta is None or phi is None:  # never: dot_product has theta and phi
            raise RuntimeError("dot_product needs theta and phi")
        c, ci = self.in_channels, self.inter_channels
        w_theta, w_phi, w_g = (torch.cat([m.weight.reshape(ci, c), m.bias.unsqueeze(1)], 1)
                               for m in (theta, phi, g))  # (C_i, C + 1) each
        a, bias = gram_dot_product(x, w_theta, w_phi, w_g,
                                   self.conv_out.weight.reshape(c, ci), self.conv_out.bias)
        xf = x.flatten(2)
        if self.norm is None:  # x + A x + a = (I + A) x + a: one product, the residual in it
            eye = torch.eye(c, dtype=a.dtype, device=a.device)
            return torch.baddbmm(bias, a + eye, xf).reshape(x.shape)
        return x + self.norm(torch.baddbmm(bias, a, xf).reshape(x.shape))

    @torch.jit.unused
    def _gram_path(self, x: Tensor) -> bool:
        # fast_dot_product's conditions (its docstring); eager only, so graphs stay one path
        return (self.mode == "dot_product" and not self.sub_sample
                and self.in_channels <= 2 * self.inter_channels
                and math.prod(x.shape[2:]) >= 2 * self.in_channels
                and not torch.is_autocast_enabled(x.device.type)
                and not (torch.jit.is_tracing() or compiling()))

    @torch.jit.unused
    def _auto_takes_matrix(self, x: Tensor) -> bool:
        # impl='auto' in eager mode: the size rule (class docstring), or with measured routes
        # switched on (gclab.nn.fast.routes) the faster route timed on this machine, for
        # N' <= 16 C_i (beyond, the matrix's memory rules it out: the fast path)
        if torch.jit.is_tracing() or compiling():
            return False
        dims = x.shape[2:]
        kernel = _POOL_KERNEL[self.spatial_dims] if self.sub_sample else (1,) * len(dims)
        n_keys = math.prod(s // k for s, k in zip(dims, kernel))
        few = 5 if self.mode in ("gaussian", "embedded_gaussian") else 1
        rule = n_keys <= few * self.inter_channels
        if not (measured_routes_enabled() and n_keys <= MEASURED_MAX_KEYS * self.inter_channels
                and measurable(x)):
            return rule
        names = ("explicit", "fast") if rule else ("fast", "explicit")  # a tie keeps the rule
        routes = {name: functools.partial(self._route, use_matrix=name == "explicit")
                  for name in names}
        settings = (type(self).__name__, self.in_channels, self.inter_channels, self.mode,
                    self.use_scale, self.sub_sample, self.norm_type, self.training)
        key = call_key(settings, x, list(self.parameters()))
        return choose_route(key, routes, x, self) == "explicit"

    @torch.jit.unused
    def _route(self, x: Tensor, use_matrix: bool) -> Tensor:
        # the block's output by one route (forward's choice, made by the caller)
        if not use_matrix and self._gram_path(x):
            return self.fast_dot_product(x)
        y = self.context_modeling(x)[0] if use_matrix else self.fast_context_modeling(x)
        return x + self.transform(y)

    @torch.jit.unused
    def _check(self, x: Tensor, return_attention: bool) -> None:
        who = type(self).__name__
        check_input(x, self.in_channels, self.spatial_dims, who, self)
        check_bool("return_attention", return_attention)
        if self.sub_sample:
            pooled = [s for s, k in zip(x.shape[2:], _POOL_KERNEL[self.spatial_dims]) if k == 2]
            if any(s < 2 for s in pooled):
                raise ValueError(
                    f"{who}(sub_sample=True) max-pools the keys by 2, so each pooled spatial dim "
                    f"must be >= 2; got an input of shape {tuple(x.shape)}"
                )

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, inter_channels={self.inter_channels}, "
            f"mode={self.mode!r}, use_scale={self.use_scale}, sub_sample={self.sub_sample}, "
            f"norm={self.norm_type!r}"
        )


def _conv1x1(weight: Tensor, bias: Optional[Tensor], xf: Tensor) -> Tensor:  # noqa: UP045
    """A 1x1 convolution as a matrix product (Optional: TorchScript compiles this function):
    weight (K, C), bias (K,) or None, xf (B, C, N)
    (any strides) -> (B, K, N) = weight @ xf + bias, the bias added inside the product."""
    w = weight.unsqueeze(0).expand(xf.shape[0], -1, -1)
    if bias is None:
        return torch.bmm(w, xf)
    return torch.baddbmm(bias.unsqueeze(1), w, xf)


class NonLocal1d(_NonLocalNd):
    r"""Non-local block on (B, C, L) inputs; N = L.

    .. math::  z_i = x_i + W_z \frac{1}{\mathcal{C}(x)} \sum_j f(x_i, x_j)\, g(x_j)

    (``f`` chosen by ``mode``; all arguments and the fast paths: :class:`_NonLocalNd`).

    Example::

        >>> nl = NonLocal1d(16, mode="dot_product", sub_sample=True)
        >>> out, attn = nl(torch.randn(2, 16, 10), return_attention=True)
        >>> out.shape, attn.shape  # 10 queries, 5 keys after 2x pooling
        (torch.Size([2, 16, 10]), torch.Size([2, 10, 5]))
    """

    spatial_dims = 1


class NonLocal2d(_NonLocalNd):
    r"""Non-local block on (B, C, H, W) inputs; N = H*W.

    .. math::  z_i = x_i + W_z \frac{1}{\mathcal{C}(x)} \sum_j f(x_i, x_j)\, g(x_j)

    (``f`` chosen by ``mode``; all arguments and the fast paths: :class:`_NonLocalNd`).
    Without ``return_attention`` the default ``impl='auto'`` builds the (N, N) matrix only when
    it is small (N' <= 5 C_i in the softmax modes, N' <= C_i otherwise; eager mode; see "Fast
    paths").

    Example::

        >>> nl = NonLocal2d(64, mode="embedded_gaussian")
        >>> out, attn = nl(torch.randn(2, 64, 8, 8), return_attention=True)
        >>> out.shape, attn.shape
        (torch.Size([2, 64, 8, 8]), torch.Size([2, 64, 64]))
        >>> nl(torch.randn(1, 64, 64, 64)).shape  # fast path: no 4096 x 4096 matrix
        torch.Size([1, 64, 64, 64])
    """

    spatial_dims = 2


class NonLocal3d(_NonLocalNd):
    r"""Non-local block on (B, C, T, H, W) inputs; N = T*H*W; sub-sampling pools H and W only.

    .. math::  z_i = x_i + W_z \frac{1}{\mathcal{C}(x)} \sum_j f(x_i, x_j)\, g(x_j)

    (``f`` chosen by ``mode``; all arguments and the fast paths: :class:`_NonLocalNd`).

    Example::

        >>> nl = NonLocal3d(16, sub_sample=True)
        >>> out, attn = nl(torch.randn(1, 16, 2, 4, 4), return_attention=True)
        >>> out.shape, attn.shape  # 32 queries; keys pooled over H and W: 2 * 2 * 2 = 8
        (torch.Size([1, 16, 2, 4, 4]), torch.Size([1, 32, 8]))
    """

    spatial_dims = 3
