"""One host device per CPU core, so that a run's seeds use every core.

XLA:CPU runs a program's kernels one after another on about one core, and
jaxrl's programs (small networks, small batches) leave the rest of a
machine's cores idle. Given one host device per core, ``jaxrl.run.train``
splits its seeds (and a sweep's hyperparameter sets) over them, and each core
trains its share (:mod:`jaxrl.run.seeds`).

JAX fixes the CPU backend's device count when it first initialises a backend,
so ``import jaxrl`` asks for one device per core then (``JAXRL_CPU_DEVICES=N``
asks for N instead; ``1`` opts out), unless JAX's own settings decided already:

- the user's ``jax.config.update("jax_num_cpu_devices", N)`` or
  ``XLA_FLAGS=--xla_force_host_platform_device_count=N``;
- a backend that is already initialised (jax used before ``import jaxrl``):
  then nothing changes and the run uses the devices there are.

When jax is not imported yet, the count goes into ``JAX_NUM_CPU_DEVICES``
(which jax reads on import), so ``import jaxrl`` itself imports no jax.

In a notebook that imported jax and ran something first, put
``jax.config.update("jax_num_cpu_devices", os.cpu_count())`` in the first cell,
before anything runs.

Other backends are untouched: a GPU or TPU run never uses these host devices.
"""

from __future__ import annotations

import os
import sys

CPU_DEVICES_ENV = "JAXRL_CPU_DEVICES"
"""Environment variable: host CPU devices to ask for at import (``1``: opt out)."""

_FORCE_FLAG = "xla_force_host_platform_device_count"
_JAX_ENV = "JAX_NUM_CPU_DEVICES"
# Marks a JAX_NUM_CPU_DEVICES that jaxrl set, so that a child process which
# inherits it (with its own XLA_FLAGS, say) decides afresh instead of taking
# it for its user's choice.
_MARK_ENV = "JAXRL_SET_JAX_NUM_CPU_DEVICES"

# Whether the device count in force is the one import chose (one per core),
# rather than the user's: a multi-process job takes that default back.
_count_from_import = False


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def requested_cpu_devices() -> int | None:
    """``JAXRL_CPU_DEVICES`` as a positive int; None when unset. A bad value is a
    ValueError naming the variable."""
    raw = os.environ.get(CPU_DEVICES_ENV)
    if raw is None or not raw.strip():
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(
            f"{CPU_DEVICES_ENV}={raw!r} is invalid: expected a positive number of host CPU devices "
            "(1 keeps every seed on one device)")
    return value


def _count_decided_elsewhere() -> bool:
    """The user chose the CPU device count themselves, or it is fixed already."""
    if _FORCE_FLAG in os.environ.get("XLA_FLAGS", ""):
        return True
    if "jax" not in sys.modules:
        return _JAX_ENV in os.environ
    import jax
    from jax._src import xla_bridge

    return xla_bridge.backends_are_initialized() or jax.config.jax_num_cpu_devices >= 0


def use_cpu_cores(devices: int | None = None) -> int | None:
    """Gives JAX's CPU backend ``devices`` host devices (default: one per core).

    Returns the count set, or None when it could not be set here: the
    backends are already initialised, or (with ``devices=None``) the user
    chose a count through ``jax_num_cpu_devices`` or ``XLA_FLAGS``. An explicit
    ``devices`` (the CLI's ``--cpu-devices``) overrides the user's choice as
    long as no backend is initialised yet.
    """
    import jax
    from jax._src import xla_bridge

    if devices is not None and devices < 1:
        raise ValueError(f"devices={devices} is invalid: expected a positive number of host CPU devices")
    if xla_bridge.backends_are_initialized():
        return None
    global _count_from_import
    if devices is None:
        if _count_decided_elsewhere():
            return None
        devices = cpu_cores()
    else:
        _count_from_import = False
    jax.config.update("jax_num_cpu_devices", devices)
    return devices


def use_cpu_cores_at_import() -> None:
    """What ``import jaxrl`` does: ``JAXRL_CPU_DEVICES`` devices if set, else
    one per core, unless JAX's own settings (or an initialised backend)
    decided the count already.

    Importing jax takes over a second, and ``jaxrl --help`` needs none of it:
    when jax is not imported yet, the count goes into ``JAX_NUM_CPU_DEVICES``,
    which jax reads when it is imported."""
    global _count_from_import
    requested = requested_cpu_devices()
    inherited = os.environ.get(_MARK_ENV)
    if "jax" not in sys.modules and inherited is not None and os.environ.get(_JAX_ENV) == inherited:
        del os.environ[_JAX_ENV], os.environ[_MARK_ENV]
    if _count_decided_elsewhere():
        return
    if "jax" in sys.modules:
        use_cpu_cores(requested)
    else:
        os.environ[_JAX_ENV] = os.environ[_MARK_ENV] = str(requested or cpu_cores())
    _count_from_import = requested is None


def one_device_per_process() -> None:
    """A multi-process job (``jax.distributed``) keeps one CPU device per
    process, as it had before jaxrl asked for one per core, unless the user
    chose a count; its processes are the parallelism. Call before the backend
    initialises."""
    import jax
    from jax._src import xla_bridge

    if _count_from_import and not xla_bridge.backends_are_initialized():
        jax.config.update("jax_num_cpu_devices", 1)
