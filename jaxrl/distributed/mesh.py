"""Device meshes and the shardings of data-parallel training.

Data parallelism here is one mesh axis, ``"data"``: the environment batch and
every time-major ``[T, B, ...]`` trajectory are split along ``B``; parameters
and optimiser state are replicated. Under ``jax.jit`` with these shardings XLA
inserts the gradient all-reduce itself, so a data-parallel learner is the
single-device learner with its inputs placed, not a second implementation.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"

PyTree = Any


def make_mesh(devices: int | Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis ``("data",)`` mesh.

    Args:
      devices: ``None`` for every device of every process (``jax.devices()``),
        an int ``n`` for the first ``n`` local devices, or explicit devices.
    """
    if devices is None:
        chosen = jax.devices()
    elif isinstance(devices, int):
        available = jax.local_devices()
        if devices < 1 or devices > len(available):
            raise ValueError(
                f"devices={devices} is invalid: expected 1..{len(available)} "
                f"(this process sees {len(available)} {jax.default_backend()} device(s); "
                "on CPU, set XLA_FLAGS=--xla_force_host_platform_device_count=N before importing jax)"
            )
        chosen = available[:devices]
    else:
        chosen = list(devices)
        if not chosen:
            raise ValueError("devices=[] is invalid: expected at least one device")
    return Mesh(np.asarray(chosen), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array (parameters, optimiser state, counters)."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh, batch_axis: int = 0) -> NamedSharding:
    """The array is split along ``batch_axis`` over the mesh's data axis."""
    return NamedSharding(mesh, PartitionSpec(*([None] * batch_axis), DATA_AXIS))


def check_divisible(name: str, size: int, mesh: Mesh) -> None:
    """Raise a clear error when a batch of ``size`` cannot split evenly over the mesh."""
    n = mesh.devices.size
    if size % n:
        raise ValueError(
            f"{name}={size} is invalid: expected a multiple of the number of devices ({n}) "
            "so that every device gets the same share of the batch"
        )


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
    """Place every leaf of ``tree`` on all devices of ``mesh``."""
    return jax.device_put(tree, replicated(mesh))


def shard_batch(tree: PyTree, mesh: Mesh, batch_axis: int = 0) -> PyTree:
    """Split every leaf of ``tree`` along ``batch_axis`` over ``mesh``."""
    return jax.device_put(tree, batch_sharded(mesh, batch_axis))
