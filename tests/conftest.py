"""Shared pytest configuration.

Compile time dominates this suite: jitted functions are shared through
module-scoped fixtures, and shapes are kept small.
"""

import atexit
import os
import shutil
import tempfile

import hypothesis
import pytest

# Many tests build the same programs again (a fresh agent is a fresh closure,
# and the CLI, multi-process and notebook tests compile in child processes), so
# a persistent compilation cache private to this session turns those repeats
# into cache hits. It starts empty and is deleted at exit, so a run never
# depends on what an earlier one left on disk. Child processes inherit it
# through the environment; a cache the caller set up is respected.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _XLA_CACHE = tempfile.mkdtemp(prefix="jaxrl-tests-xla-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _XLA_CACHE
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
    atexit.register(shutil.rmtree, _XLA_CACHE, ignore_errors=True)

# The suite's programs are small and run briefly, so compiling them is most of
# its time. Every program here compiles at LLVM -O1 with XLA:CPU's older loop
# emitters, which compile in about 60 % of the time and run longer programs
# more slowly: the whole suite took 20 % less time (benchmarks/README.md, "The test
# suite's time"). jaxrl's own training programs keep the emitters outside the
# tests (jaxrl/compilation.py). A caller's own choice in XLA_FLAGS is
# respected, and child processes inherit these.
_FAST_COMPILE = {"xla_backend_optimization_level": "1", "xla_cpu_use_fusion_emitters": "false"}
for _flag, _value in _FAST_COMPILE.items():
    if _flag not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = " ".join(
            [os.environ.get("XLA_FLAGS", ""), f"--{_flag}={_value}"]).strip()

# Two host CPU devices in every test process, whatever the machine's cores,
# so that runs of several seeds split over devices (jaxrl.cpu) wherever the
# suite runs. Set in this process only: the child processes that tests start
# get jaxrl's own default (one device per core) unless they say otherwise.
# jax reads its environment settings (the cache above) when first imported,
# so it is imported only now.
import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 2)

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


@pytest.fixture
def no_training(monkeypatch):
    """Fails the test if the CLI gets as far as training, or compiles anything big."""
    import jax

    import jaxrl.run

    def refuse(*args, **kwargs):
        raise AssertionError("input errors must be reported before training starts")

    monkeypatch.setattr(jaxrl.run, "train", refuse)
    compiles = []

    def on_event(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration" and duration > 0.25:
            compiles.append((kwargs, duration))

    jax.monitoring.register_event_duration_secs_listener(on_event)
    yield compiles
    jax.monitoring.unregister_event_duration_listener(on_event)
    assert not compiles, compiles
