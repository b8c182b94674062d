r"""Non-local blocks (Wang et al., 2018) in 1-D, 2-D and 3-D, as mmcv computes them."""

from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_choice, check_input, check_int
from .mmcv_compat import NON_LOCAL_KEYS, remap_state_dict_keys

MODES = ("gaussian", "embedded_gaussian", "dot_product", "concatenation")
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
    ``gaussian``          :math:`\mathrm{softmax}_j(x_i^\top x_j)` (no :math:`\theta, \phi`, no scale)
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
        norm: Optional[str] = None,
    ) -> None:
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels)
        self.reduction = check_int("reduction", reduction)
        self.mode = check_choice("mode", mode, MODES)
        if norm is not None:
            check_choice("norm", norm, ("bn",))
        self.use_scale = bool(use_scale)
        self.sub_sample = bool(sub_sample)
        self.norm_type = norm
        self.inter_channels = max(in_channels // reduction, 1)
        conv = _CONV[self.spatial_dims]
        ci = self.inter_channels

        self.g = conv(in_channels, ci, kernel_size=1)
        if mode != "gaussian":
            self.theta = conv(in_channels, ci, kernel_size=1)
            self.phi = conv(in_channels, ci, kernel_size=1)
        if mode == "concatenation":
            # mmcv projects the concatenation with a 2-D conv whatever the block's dims
            self.concat_project = nn.Conv2d(2 * ci, 1, kernel_size=1, bias=False)
        self.conv_out = conv(ci, in_channels, kernel_size=1, bias=norm is None)
        if norm == "bn":
            self.norm = _BN[self.spatial_dims](in_channels)
        self.reset_parameters()
        self.register_load_state_dict_pre_hook(_accept_mmcv_keys)

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

    # ------------------------------------------------------- pairwise functions
    # theta_x: (B, N, Ci) [or (B, N, C) for gaussian]; phi_x: (B, Ci, N')  ->  (B, N, N')
    def gaussian(self, theta_x: Tensor, phi_x: Tensor) -> Tensor:
        return torch.softmax(torch.bmm(theta_x, phi_x), dim=-1)

    def embedded_gaussian(self, theta_x: Tensor, phi_x: Tensor) -> Tensor:
        logits = torch.bmm(theta_x, phi_x)
        if self.use_scale:
            logits = logits / math.sqrt(theta_x.shape[-1])
        return torch.softmax(logits, dim=-1)

    def dot_product(self, theta_x: Tensor, phi_x: Tensor) -> Tensor:
        return torch.bmm(theta_x, phi_x) / phi_x.shape[-1]

    def concatenation(self, theta_x: Tensor, phi_x: Tensor) -> Tensor:
        # w^T [theta_i; phi_j] = w_theta^T theta_i + w_phi^T phi_j: no (B, 2Ci, N, N') tensor
        ci = theta_x.shape[-1]
        w = self.concat_project.weight.reshape(2 * ci)
        a = theta_x @ w[:ci]  # (B, N)
        b = torch.einsum("bcn,c->bn", phi_x, w[ci:])  # (B, N')
        return torch.relu(a.unsqueeze(2) + b.unsqueeze(1)) / phi_x.shape[-1]

    def pairwise(self, theta_x: Tensor, phi_x: Tensor) -> Tensor:
        """Dispatch to the pairwise function named by ``self.mode``."""
        if self.mode == "gaussian":
            return self.gaussian(theta_x, phi_x)
        if self.mode == "embedded_gaussian":
            return self.embedded_gaussian(theta_x, phi_x)
        if self.mode == "dot_product":
            return self.dot_product(theta_x, phi_x)
        return self.concatenation(theta_x, phi_x)

    # ---------------------------------------------------------- the three steps
    def _pool(self, t: Tensor) -> Tensor:
        k = _POOL_KERNEL[self.spatial_dims]
        if self.spatial_dims == 1:
            return F.max_pool1d(t, k)
        if self.spatial_dims == 2:
            return F.max_pool2d(t, k)
        return F.max_pool3d(t, k)

    def embed(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """theta_x (B, N, Ci), phi_x (B, Ci, N'), g_x (B, N', Ci) (``C`` for gaussian's)."""
        b = x.shape[0]
        g_x = self.g(x)
        if self.mode == "gaussian":
            theta_x = x.reshape(b, self.in_channels, -1).transpose(1, 2)
            phi_x = x
        else:
            theta_x = self.theta(x).reshape(b, self.inter_channels, -1).transpose(1, 2)
            phi_x = self.phi(x)
        if self.sub_sample:
            g_x, phi_x = self._pool(g_x), self._pool(phi_x)
        g_x = g_x.reshape(b, self.inter_channels, -1).transpose(1, 2)
        phi_x = phi_x.reshape(b, phi_x.shape[1], -1)
        return theta_x, phi_x, g_x

    def context_modeling(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        r"""Step 1: :math:`y_i = \sum_j f(x_i, x_j) g(x_j) / \mathcal{C}(x)`.

        Returns y (B, Ci, *spatial) and the attention (B, N, N')."""
        theta_x, phi_x, g_x = self.embed(x)
        attention = self.pairwise(theta_x, phi_x)  # (B, N, N')
        y = torch.bmm(attention, g_x)  # (B, N, Ci)
        y = y.transpose(1, 2).reshape(x.shape[0], self.inter_channels, *x.shape[2:])
        return y, attention

    def transform(self, y: Tensor) -> Tensor:
        r"""Step 2: :math:`W_z y` (1x1 conv Ci -> C, then the norm if any)."""
        out = self.conv_out(y)
        if self.norm_type is not None:
            out = self.norm(out)
        return out

    def forward(
        self, x: Tensor, return_attention: bool = False
    ) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        if not torch.jit.is_scripting():
            self._check(x)
        y, attention = self.context_modeling(x)
        out = x + self.transform(y)  # step 3: fusion by addition
        if return_attention:
            return out, attention
        return out

    @torch.jit.unused
    def _check(self, x: Tensor) -> None:
        who = type(self).__name__
        check_input(x, self.in_channels, self.spatial_dims, who)
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


def _accept_mmcv_keys(module, state_dict, prefix, *args) -> None:
    remap_state_dict_keys(state_dict, prefix, NON_LOCAL_KEYS)


class NonLocal1d(_NonLocalNd):
    """Non-local block on (B, C, L) inputs. See :class:`_NonLocalNd` for the equations."""

    spatial_dims = 1


class NonLocal2d(_NonLocalNd):
    """Non-local block on (B, C, H, W) inputs; N = H*W. See :class:`_NonLocalNd`.

    Example::

        >>> nl = NonLocal2d(64, mode="embedded_gaussian")
        >>> out, attn = nl(torch.randn(2, 64, 8, 8), return_attention=True)
        >>> out.shape, attn.shape
        (torch.Size([2, 64, 8, 8]), torch.Size([2, 64, 64]))
    """

    spatial_dims = 2


class NonLocal3d(_NonLocalNd):
    """Non-local block on (B, C, T, H, W) inputs; sub-sampling pools H and W only."""

    spatial_dims = 3
