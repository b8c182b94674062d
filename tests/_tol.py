"""Float tolerances derived from the computation, not from what one machine printed.

Why: two correct float32 computations of the same sum differ by their rounding errors, and
those depend on the order of the additions, which depends on the kernel (AVX-512/AMX on Intel,
AVX2 on AMD, a different tiling in SDPA's flash kernel...). A tolerance copied from one
machine's output fails on the next (2.2e-5 was seen on Intel against a 1e-5 bar set on AMD).

The analysis. A quantity that is a sum of K products, each of size about ``s``, with random
signs, has size about ``sqrt(K)·s``. Each of the K roundings adds at most ``u·|partial sum|``
(``u`` the unit roundoff), and these errors have random signs too, so the total error is
about ``u·sqrt(K)·(sqrt(K)·s) = sqrt(K)·u·|quantity|``. A chain of reductions (a gradient
through a softmax through a conv) multiplies the term counts: K is the number of terms of the
fully expanded sum. The worst case is ``K·u·Σ|terms|``; we take the random-walk estimate with a
margin of 10. To see how close a test comes to its bar, run it with ``GCLAB_TOL_MARGIN=1``
(bars 10x tighter). Measured on the Intel CI machine (Sapphire Rapids, torch 2.13.0): every test
that uses these bars still passes with margin 1, natively (AVX-512) and, for the numerics files
(fast_paths, nn_numerics, nn_parity_mmcv, nn_properties, analysis, nn_framework, models), under
``ATEN_CPU_CAPABILITY=default`` and ``avx2`` too; so the errors stay below 1/10 of the bars. At
margin 0.3 the first one (fast paths, 3-D embedded Gaussian) fails: the estimate is the right
size, not a blanket.

``scale`` is the size of the terms' sum without cancellation: the largest |value| of the
quantity (normwise, the same bar for every element of a tensor, since a small element of a
gradient is a sum of the same big terms that happened to cancel).
"""

from __future__ import annotations

import math
import os

# unit roundoff (half the spacing of numbers at 1) of each floating type
UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24, "bfloat16": 2.0**-8, "float16": 2.0**-11}


MARGIN = float(os.environ.get("GCLAB_TOL_MARGIN", "10"))


def tol(n_terms: int, scale: float, dtype: str = "float32", margin: float | None = None) -> float:
    """Bar for |a - b| where a, b are two roundings of a sum of ``n_terms`` terms.

    ``margin·sqrt(n_terms)·u·max(scale, 1e-30)``; see the module docstring.

    >>> round(tol(1, 1.0, margin=10) / 2**-24)
    10
    >>> tol(100, 2.0, margin=10) == 10 * 10 * 2**-24 * 2.0
    True
    """
    if n_terms < 1:
        raise ValueError(f"n_terms is a count of summed terms, >= 1; got {n_terms!r}")
    if not scale >= 0:
        raise ValueError(f"scale is a magnitude, >= 0; got {scale!r}")
    if dtype not in UNIT_ROUNDOFF:
        raise ValueError(f"dtype is one of {sorted(UNIT_ROUNDOFF)}; got {dtype!r}")
    margin = MARGIN if margin is None else margin
    return margin * math.sqrt(n_terms) * UNIT_ROUNDOFF[dtype] * max(float(scale), 1e-30)


def f32_tol(n_terms: int, scale: float = 1.0, margin: float | None = None) -> float:
    """:func:`tol` for float32: ``margin·sqrt(n_terms)·2^-24·scale``."""
    return tol(n_terms, scale, "float32", margin)


def dtype_name(dtype) -> str:
    """'float32' for torch.float32 or np.float32."""
    return str(dtype).replace("torch.", "")


def chain_terms(*counts: int) -> int:
    """K for a chain of reductions whose stages sum ``counts`` terms each (a deep network).

    Each stage adds its own ~sqrt(K_l)·u relative error to what flows through, so the errors
    of a chain add: sqrt(K) = Σ sqrt(K_l). (The product of the counts, the fully expanded sum,
    is an upper bound of this once every K_l >= 4; a deep network needs the sum.)

    >>> chain_terms(4, 9, 16)
    81
    """
    if not counts or min(counts) < 1:
        raise ValueError(f"counts are numbers of summed terms, each >= 1; got {counts!r}")
    return math.ceil(sum(math.sqrt(k) for k in counts) ** 2)


def network_terms(model, n_positions: int) -> int:
    """:func:`chain_terms` over every conv/linear layer of ``model`` (its fan-in each) and one
    stage of ``n_positions`` for each pooling or attention sum over the spatial positions
    (counted once per module that has ``context_modeling`` or is a Non-local block)."""
    counts = []
    for module in model.modules():
        weight = getattr(module, "weight", None)
        kind = type(module).__name__
        if weight is not None and weight.dim() >= 2 and ("Conv" in kind or kind == "Linear"):
            counts.append(weight[0].numel())
        if hasattr(module, "context_modeling"):
            counts.append(n_positions)
    return chain_terms(*(counts or [1]))
