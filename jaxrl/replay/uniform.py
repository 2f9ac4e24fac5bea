"""Uniform experience replay as a pytree with pure functions.

    buffer = uniform.init(example_transition, capacity=100_000)
    buffer = uniform.add(buffer, batch)                  # batch: leading dim B
    batch = uniform.sample(buffer, key, batch_size=256)  # only from filled slots
    ready = uniform.can_sample(buffer, batch_size=256)   # bool array

The storage is a ring: item ``i`` of an ``add`` lands in slot
``(position + i) % capacity``, so once full the oldest items are overwritten
first. Slots ``[0, size)`` are always the filled ones (filling starts at slot
0 and the ring only wraps once full), which is what lets ``sample`` draw
indices from ``[0, size)`` without a validity mask.
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import struct

PyTree = Any


@struct.dataclass
class ReplayState:
    """A ring buffer of transitions.

    Attributes:
      storage: the example transition's pytree with a leading ``capacity`` axis
        on every leaf (same dtypes as the example).
      position: int32 slot the next item is written to.
      size: int32 number of filled slots (≤ capacity).
    """

    storage: PyTree
    position: jax.Array
    size: jax.Array

    @property
    def capacity(self) -> int:
        """Static: the leading dimension of the storage."""
        return capacity_of(self.storage)


def capacity_of(storage: PyTree) -> int:
    return int(jax.tree.leaves(storage)[0].shape[0])


def init(example_transition: PyTree, capacity: int) -> ReplayState:
    """An empty buffer for items shaped like ``example_transition`` (one item,
    no batch axis; arrays or shape-dtype structs). Memory is
    ``capacity × bytes(example)``; the storage is zero-filled."""
    if not isinstance(capacity, int) or capacity < 1:
        raise ValueError(f"replay capacity must be a positive int, got {capacity!r}")
    storage = jax.tree.map(
        lambda x: jnp.zeros((capacity,) + tuple(jnp.shape(x)), _dtype(x)), example_transition
    )
    return ReplayState(storage=storage, position=jnp.zeros((), jnp.int32), size=jnp.zeros((), jnp.int32))


def _dtype(x: Any):
    return x.dtype if hasattr(x, "dtype") else jnp.asarray(x).dtype


def write_slots(position: jax.Array, size: jax.Array, capacity: int, batch_size: int,
                mask: jax.Array | None = None):
    """Slots for a batch of ``batch_size`` items, and the new position and size.

    Items with ``mask`` False get slot ``capacity`` (out of range), which the
    scatter in :func:`add` drops; kept items fill consecutive slots.
    """
    if mask is None:
        offsets = jnp.arange(batch_size, dtype=jnp.int32)
        count = jnp.int32(batch_size)
        slots = (position + offsets) % capacity
    else:
        chex.assert_shape(mask, (batch_size,))
        keep = mask.astype(jnp.int32)
        offsets = jnp.cumsum(keep) - 1
        count = keep.sum()
        slots = jnp.where(mask, (position + offsets) % capacity, capacity)
    position = (position + count) % capacity
    size = jnp.minimum(size + count, capacity)
    return slots, position, size


def _check_batch(storage: PyTree, batch: PyTree) -> int:
    batch_size = jax.tree.leaves(batch)[0].shape[0]
    chex.assert_trees_all_equal_structs(storage, batch)
    for stored, new in zip(jax.tree.leaves(storage), jax.tree.leaves(batch)):
        if tuple(stored.shape[1:]) != tuple(new.shape[1:]) or new.shape[0] != batch_size:
            raise ValueError(
                f"replay add: item shape {tuple(new.shape)} does not match the buffer's "
                f"(B,) + {tuple(stored.shape[1:])}"
            )
    if batch_size > capacity_of(storage):
        # Two items of one batch would share a slot and the result would
        # depend on scatter order.
        raise ValueError(f"replay add: batch of {batch_size} exceeds capacity {capacity_of(storage)}")
    return batch_size


def scatter(storage: PyTree, slots: jax.Array, batch: PyTree) -> PyTree:
    return jax.tree.map(
        lambda s, x: s.at[slots].set(x.astype(s.dtype), mode="drop"), storage, batch
    )


def add(state: ReplayState, batch: PyTree, mask: jax.Array | None = None) -> ReplayState:
    """Writes a batch of items (leading dim ``B`` ≤ capacity on every leaf,
    e.g. one step of ``B`` vmapped envs).

    ``mask`` (bool ``[B]``, optional): only items where it is True are
    stored, packed into consecutive slots (so an agent can skip transitions
    that are not ready yet without a ``lax.cond`` copying the buffer).
    """
    batch_size = _check_batch(state.storage, batch)
    slots, position, size = write_slots(state.position, state.size, state.capacity, batch_size, mask)
    return state.replace(storage=scatter(state.storage, slots, batch), position=position, size=size)


def gather(storage: PyTree, indices: jax.Array) -> PyTree:
    return jax.tree.map(lambda s: s[indices], storage)


def sample_indices(state: ReplayState, key: jax.Array, batch_size: int) -> jax.Array:
    """``batch_size`` slots drawn uniformly, with replacement, from the filled
    slots ``[0, size)``. On an empty buffer every index is 0 (check
    :func:`can_sample`)."""
    return jax.random.randint(key, (batch_size,), 0, jnp.maximum(state.size, 1))


def sample(state: ReplayState, key: jax.Array, batch_size: int) -> PyTree:
    """A batch of ``batch_size`` items (leading dim ``batch_size``), uniform
    with replacement over the filled slots."""
    return gather(state.storage, sample_indices(state, key, batch_size))


def can_sample(state: ReplayState, batch_size: int) -> jax.Array:
    """Bool array: at least ``batch_size`` items are stored."""
    return state.size >= batch_size
