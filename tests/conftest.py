"""Shared pytest set-up."""

import os

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
