"""Device meshes, the one data axis, and where a training state's leaves live.

Data parallelism here is one mesh axis, :data:`DATA_AXIS`: the environment
batch and every time-major ``[T, B, ...]`` trajectory are split along ``B``;
parameters and optimiser state are replicated. Under ``jax.jit`` with these
shardings XLA inserts the gradient all-reduce itself, so a data-parallel
learner is the single-device learner with its inputs placed, not a second
implementation.

This module sits below ``agents/``, ``run/`` and ``distributed/`` so that all
of them name the axis and place states the same way without importing each
other: an agent pins its minibatches with :func:`split_over_data_axis`,
``run/`` replicates the key of a multi-process run, and
:func:`jaxrl.distributed.data_parallel` places whole states with
:func:`state_shardings`.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"
"""The mesh axis that environments, trajectories and minibatches split over."""

ENV_FIELDS = ("env_state", "obs", "core_carry")
"""State fields that hold one entry per environment (PPO, IMPALA, A2C-style;
``core_carry``: a recurrent core's state)."""

PyTree = Any


def make_mesh(devices: int | Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis ``(DATA_AXIS,)`` mesh.

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


def batch_sharded(mesh: Mesh, batch_axis: int = 0, axis: str = DATA_AXIS) -> NamedSharding:
    """The array is split along ``batch_axis`` over the mesh axis ``axis``."""
    return NamedSharding(mesh, PartitionSpec(*([None] * batch_axis), axis))


def check_divisible(name: str, size: int, mesh: Mesh, axis: str | None = None) -> None:
    """Raise a clear error when a batch of ``size`` cannot split evenly over the
    devices of ``mesh`` (or of its axis ``axis``)."""
    n = mesh.devices.size if axis is None else mesh.shape[axis]
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


def state_shardings(
    state: PyTree, mesh: Mesh, num_envs: int, batch_axis: int = 0, axis: str = DATA_AXIS
) -> PyTree:
    """A pytree of NamedShardings for ``state``: per-environment leaves split on
    ``batch_axis`` over the mesh axis ``axis``, the rest replicated.

    ``batch_axis`` is 1 for states stacked over seeds (``jaxrl.run.train``).
    A leaf under ``env_state``/``obs`` counts as per-environment when its
    ``batch_axis`` has length ``num_envs``; anything else there (running
    observation statistics, ...) is replicated. Shardings only place data, so
    a misjudged leaf would cost communication, never correctness.
    """
    split = batch_sharded(mesh, batch_axis, axis)
    whole = replicated(mesh)

    def per_env(x):
        shape = np.shape(x)
        return split if len(shape) > batch_axis and shape[batch_axis] == num_envs else whole

    def place(path, x):
        top = path[0]
        name = getattr(top, "name", getattr(top, "key", None))
        return per_env(x) if name in ENV_FIELDS else whole

    return jax.tree_util.tree_map_with_path(place, state)


def split_over_data_axis(tree: PyTree, batch_axis: int) -> PyTree:
    """Pins ``batch_axis`` of every leaf to :data:`DATA_AXIS` when traced under a
    mesh context that has it (``jaxrl.distributed.data_parallel`` sets one), so
    each device computes the gradient of its share of a batch and XLA
    all-reduces the sum. Without such a mesh (one device) it returns ``tree``
    unchanged, which lets agents call it unconditionally."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or DATA_AXIS not in mesh.axis_names:
        return tree
    return jax.lax.with_sharding_constraint(
        tree, PartitionSpec(*([None] * batch_axis), DATA_AXIS)
    )
