"""Shared pytest set-up."""

import os

import pytest
from hypothesis import HealthCheck, settings

# Property tests: no per-example deadline (2-core CI machines stall), fixed seed in CI.
settings.register_profile(
    "gclab",
    deadline=None,
    max_examples=40,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=bool(os.environ.get("CI")),
)
settings.load_profile("gclab")

# The tests run tiny tensors, one pytest worker per core (pytest -n 2 on 2 cores): extra
# intra-op threads only spin-wait on a busy machine (measured: tests/test_nn_numerics.py takes
# 16 s with one thread, 84 s with two). OMP_NUM_THREADS, when set, wins.
if "OMP_NUM_THREADS" not in os.environ:
    import torch

    torch.set_num_threads(1)


def _randomize(module, std=0.3, seed=0):
    """Give every parameter (and BatchNorm running stats) random, non-trivial values, in place,
    so a test cannot pass just because a block is the identity at init. Returns the module."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * std)
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=gen, dtype=torch.float64) * std)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=gen, dtype=torch.float64) + 0.5)
    return module


@pytest.fixture(scope="session")
def randomize():
    """``randomize(module, std=0.3, seed=0)``: random weights in place (see ``_randomize``)."""
    return _randomize

