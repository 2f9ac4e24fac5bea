"""How a run's seeds share the machine.

A run trains ``seeds`` independent copies of an agent: its init, step and
evaluation apply per seed to a state stacked on a leading ``[seeds]`` axis.

- **On an accelerator** the seeds are vectorised (``jax.vmap``): one wide
  program keeps the device busy.
- **On the CPU** they run one after another inside the program
  (``lax.map``). XLA:CPU runs a program's kernels one after another on about
  one core, so vectorising seeds bought no parallelism there; it cost time
  instead (a vectorised replay write becomes a scatter over the whole
  buffer), and it made a seed's floating-point result depend on how many
  seeds shared the program. Mapped, seed ``i`` computes the same bits
  whether it runs alone, beside fifteen others, or on another device.
- **Across CPU cores** the seeds axis is split over the process's host
  devices (one per core, :mod:`jaxrl.cpu`) with ``jax.shard_map``: each device
  maps its share, the devices run at once, and the result is the same bits
  as on one device.

:class:`SeedPlacement` is where a run's states live; ``jaxrl.run.train``
builds one per run and compiles its init, chunk and evaluation for it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec, SingleDeviceSharding

SEEDS_AXIS = "seeds"
"""The mesh axis a run's seeds split over."""


def seeds_in_sequence() -> bool:
    """Whether seeds run one after another in a program (the CPU) rather than vectorised."""
    return jax.default_backend() == "cpu"


def over_seeds(fn: Callable, in_axes: int | None | Sequence[int | None] = 0) -> Callable:
    """``fn`` applied to every seed along axis 0 of the arguments whose
    ``in_axes`` entry is 0 (the others are shared): ``jax.vmap`` on an
    accelerator, ``lax.map`` on the CPU (module docstring). Outputs gain a
    leading ``[seeds]`` axis either way."""
    if not seeds_in_sequence():
        return jax.vmap(fn, in_axes=in_axes)

    def mapped(*args):
        axes = tuple(in_axes) if isinstance(in_axes, (tuple, list)) else (in_axes,) * len(args)
        if len(axes) != len(args):
            raise ValueError(f"in_axes has {len(axes)} entries for {len(args)} arguments")
        if any(axis not in (0, None) for axis in axes):
            raise ValueError(f"in_axes entries must be 0 or None, got {axes}")
        per_seed = tuple(arg for arg, axis in zip(args, axes) if axis == 0)

        def one(seed_args):
            it = iter(seed_args)
            return fn(*(next(it) if axis == 0 else arg for arg, axis in zip(args, axes)))

        return jax.lax.map(one, per_seed)

    return mapped


@dataclasses.dataclass(frozen=True)
class SeedPlacement:
    """Where a run's ``[seeds, ...]`` states live: ``mesh`` is None for one
    device, else a one-axis (:data:`SEEDS_AXIS`) mesh whose devices each hold
    ``seeds / devices`` seeds."""

    mesh: Mesh | None = None

    @property
    def devices(self) -> int:
        return 1 if self.mesh is None else self.mesh.devices.size

    def split(self, seeds_axis: int = 0) -> NamedSharding | None:
        """The sharding of an array whose ``seeds_axis`` is the seeds axis."""
        if self.mesh is None:
            return None
        return NamedSharding(self.mesh, PartitionSpec(*([None] * seeds_axis), SEEDS_AXIS))

    def whole(self) -> NamedSharding | None:
        """The sharding of a value every device holds (a chunk's active count)."""
        return None if self.mesh is None else NamedSharding(self.mesh, PartitionSpec())

    def place(self, tree: Any) -> Any:
        """``tree`` (leaves ``[seeds, ...]``) on this placement's devices."""
        return tree if self.mesh is None else jax.device_put(tree, self.split())

    def restore_target(self, abstract_tree: Any, agent: Any = None) -> Any:
        """``abstract_tree`` (ShapeDtypeStructs of stacked states) with this
        placement's sharding, so that a checkpoint saved over any number of
        devices restores straight onto these. A multi-process job and an
        agent placed by its own mesh keep the tree as it is: their restore
        follows the layout they saved."""
        if jax.process_count() > 1 or getattr(agent, "mesh", None) is not None:
            return abstract_tree
        sharding = self.split() or SingleDeviceSharding(jax.local_devices()[0])
        return jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), abstract_tree)

    def shard(self, fn: Callable, in_specs: Any, out_specs: Any) -> Callable:
        """``fn`` run by every device on its share (``jax.shard_map``); ``fn``
        itself when there is one device. Specs name :data:`SEEDS_AXIS`."""
        if self.mesh is None:
            return fn
        # Every value inside is per device (no collectives), so the varying-
        # axes check has nothing to find and would reject an agent's lax.cond
        # whose branches differ only in that annotation.
        return jax.shard_map(
            fn, mesh=self.mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)


ONE_DEVICE = SeedPlacement()


def placement_of(tree: Any) -> SeedPlacement:
    """The placement of states that ``jaxrl.run.train`` placed (ONE_DEVICE for
    anything else: host arrays, one device, a data-parallel mesh)."""
    leaves = jax.tree.leaves(tree)
    sharding = getattr(leaves[0], "sharding", None) if leaves else None
    if isinstance(sharding, NamedSharding) and sharding.mesh.axis_names == (SEEDS_AXIS,):
        return SeedPlacement(sharding.mesh)
    return ONE_DEVICE


def seed_devices_for(seeds: int, available: int) -> int:
    """The devices ``seeds`` split over: the largest count up to ``available``
    that divides ``seeds`` (every device must hold as many seeds)."""
    return max(d for d in range(1, min(seeds, available) + 1) if seeds % d == 0)


def place_seeds(seeds: int, agent: Any, devices: int | None = None) -> SeedPlacement:
    """Where ``jaxrl.run.train`` puts ``seeds`` seeds of ``agent``.

    ``devices`` None (the default) splits them over every local host device
    on the CPU backend; an int caps the count (1: one device). Seeds stay on
    one device on accelerators, in multi-process jobs, and for an agent whose
    state a mesh already places (:func:`jaxrl.distributed.data_parallel`).
    """
    if devices is not None and (isinstance(devices, bool) or not isinstance(devices, int) or devices < 1):
        raise ValueError(
            f"seed_devices={devices!r} is invalid: expected None (every CPU core) or a positive int "
            "(1 keeps every seed on one device)")
    if (
        seeds < 2
        or not seeds_in_sequence()
        or jax.process_count() > 1
        or getattr(agent, "mesh", None) is not None
    ):
        return ONE_DEVICE
    local = jax.local_devices()
    count = seed_devices_for(seeds, len(local) if devices is None else min(devices, len(local)))
    if count == 1:
        return ONE_DEVICE
    return SeedPlacement(Mesh(np.asarray(local[:count]), (SEEDS_AXIS,)))
