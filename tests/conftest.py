"""Shared pytest configuration.

Compile time dominates this suite: jitted functions are shared through
module-scoped fixtures, and shapes are kept small.
"""

import os

import hypothesis

# Hypothesis example counts are kept small because every new shape is a new
# XLA compilation; the kernels are checked on many values per shape instead.
hypothesis.settings.register_profile(
    "jaxrl",
    max_examples=int(os.environ.get("JAXRL_HYPOTHESIS_EXAMPLES", "15")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[hypothesis.HealthCheck.too_slow],
)
hypothesis.settings.load_profile("jaxrl")
