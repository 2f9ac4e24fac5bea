"""Proportional prioritised experience replay (Schaul et al. 2016, §3.3).

Item ``i`` is sampled with probability

    P(i) = p_i^α / Σ_k p_k^α

and its update is weighted by the importance-sampling weight

    w_i = (N · P(i))^−β / max_j w_j,

with ``N`` the number of stored items; ``max_j w_j`` is over the whole
buffer (it belongs to the item of smallest priority), so weights lie in
(0, 1].

    buffer = prioritized.init(example, capacity=100_000, alpha=0.6)
    buffer = prioritized.add(buffer, batch)            # new items: max priority seen
    batch, indices, weights = prioritized.sample(buffer, key, 256, beta=0.4)
    buffer = prioritized.update_priorities(buffer, indices, jnp.abs(td_errors))
    buffer = prioritized.set_alpha(buffer, 0.7)        # a new α: the trees are rebuilt

The exponents can change during a run (population-based training edits an
agent's hyperparameters between steps): the raw priorities ``p`` are kept
beside the trees, :func:`set_alpha` rebuilds the trees from them, and
:func:`annealed_beta` gives the paper's β schedule, rising linearly to 1.

Layout. Two complete binary trees over ``L = 2^⌈log2 capacity⌉`` leaves are
stored as flat arrays of length ``2L`` (node 1 is the root, node ``n`` has
children ``2n`` and ``2n+1``, leaves are nodes ``L … 2L−1``): a sum tree of
``p^α`` for sampling, and a min tree for the largest weight. Empty slots hold
0 in the sum tree and +inf in the min tree.

- Writing ``B`` leaves rewrites their ``log2 L`` ancestors level by level,
  each as the sum (min) of its two children, recomputed from the level below.
  Recomputing (instead of adding deltas) means no float drift accumulates,
  and duplicate indices in one batch are harmless: every write of a node
  stores the same value.
- Sampling is stratified: the total mass is cut into ``batch_size`` equal
  segments and one point is drawn uniformly in each (as in the paper), then
  each point descends from the root. A descent only enters children of
  positive mass, so empty slots (priority 0) are never returned, even when
  float rounding puts a point at the very edge of the total.

Cost: ``add``/``update_priorities`` are ``O(B log L)``, ``sample`` is
``O(batch_size log L)``, all fixed-shape gathers and scatters under jit.
Memory: the uniform storage plus ``2 × 2L`` float32 (16 MiB of trees for a
capacity of 10^6).
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import struct

from jaxrl.replay import uniform

PyTree = Any


@struct.dataclass
class PrioritizedState:
    """A ring buffer of items with sum and min trees over their ``p^α``.

    Attributes:
      storage, position, size: as in :class:`jaxrl.replay.uniform.ReplayState`.
      sum_tree: float32 ``[2L]``; node 0 is unused.
      min_tree: float32 ``[2L]``; +inf where no item is stored.
      max_priority: the largest raw priority ``p`` ever given (new items get it).
      alpha: the priority exponent α the trees hold (an array, so it can be vmapped).
      priorities: float32 ``[capacity]``, the raw priority ``p`` of every slot
        (0 where empty): what :func:`set_alpha` rebuilds the trees from.
    """

    storage: PyTree
    position: jax.Array
    size: jax.Array
    sum_tree: jax.Array
    min_tree: jax.Array
    max_priority: jax.Array
    alpha: jax.Array
    priorities: jax.Array

    @property
    def capacity(self) -> int:
        return uniform.capacity_of(self.storage)

    @property
    def num_leaves(self) -> int:
        return self.sum_tree.shape[0] // 2


def _num_leaves(capacity: int) -> int:
    return 1 << max(0, (capacity - 1).bit_length())


def init(example_transition: PyTree, capacity: int, alpha: float = 0.6) -> PrioritizedState:
    """An empty buffer of ``capacity`` items shaped like ``example_transition``
    (one item, no batch axis). ``alpha`` = 0 is uniform sampling; 1 is fully
    proportional."""
    base = uniform.init(example_transition, capacity)
    leaves = _num_leaves(capacity)
    return PrioritizedState(
        storage=base.storage,
        position=base.position,
        size=base.size,
        sum_tree=jnp.zeros((2 * leaves,), jnp.float32),
        min_tree=jnp.full((2 * leaves,), jnp.inf, jnp.float32),
        max_priority=jnp.ones((), jnp.float32),
        alpha=jnp.asarray(alpha, jnp.float32),
        priorities=jnp.zeros((capacity,), jnp.float32),
    )


def _set_leaves(sum_tree, min_tree, slots, values, capacity: int, num_leaves: int):
    """Writes ``values`` at leaf ``slots`` (slots ≥ capacity are skipped) and
    recomputes every ancestor from its children, level by level."""
    valid = slots < capacity
    nodes = jnp.where(valid, slots, 0) + num_leaves
    skip = 2 * num_leaves  # out of range: the scatter drops it
    sum_tree = sum_tree.at[jnp.where(valid, nodes, skip)].set(values, mode="drop")
    min_tree = min_tree.at[jnp.where(valid, nodes, skip)].set(values, mode="drop")

    def parent_level(_, carry):
        nodes, sum_tree, min_tree = carry
        nodes = nodes // 2
        left, right = 2 * nodes, 2 * nodes + 1
        targets = jnp.where(valid, nodes, skip)
        sum_tree = sum_tree.at[targets].set(sum_tree[left] + sum_tree[right], mode="drop")
        min_tree = min_tree.at[targets].set(jnp.minimum(min_tree[left], min_tree[right]), mode="drop")
        return nodes, sum_tree, min_tree

    # A loop rather than unrolled levels: the same work, a fraction of the
    # compile time (the depth is static, log2 L).
    depth = num_leaves.bit_length() - 1
    _, sum_tree, min_tree = jax.lax.fori_loop(0, depth, parent_level, (nodes, sum_tree, min_tree))
    return sum_tree, min_tree


def add(
    state: PrioritizedState,
    batch: PyTree,
    priorities: jax.Array | None = None,
    mask: jax.Array | None = None,
) -> PrioritizedState:
    """Writes a batch of items (leading dim ``B`` ≤ capacity). Their priority
    is ``priorities`` (``[B]``, ≥ 0) or, by default, the largest priority seen
    so far, so every new item is likely to be replayed at least once.
    ``mask`` as in :func:`jaxrl.replay.uniform.add`."""
    batch_size = uniform._check_batch(state.storage, batch)
    slots, position, size = uniform.write_slots(
        state.position, state.size, state.capacity, batch_size, mask
    )
    if priorities is None:
        priorities = jnp.full((batch_size,), state.max_priority, jnp.float32)
    chex.assert_shape(priorities, (batch_size,))
    priorities = jnp.asarray(priorities, jnp.float32)
    kept = priorities if mask is None else jnp.where(mask, priorities, 0.0)
    sum_tree, min_tree = _set_leaves(
        state.sum_tree, state.min_tree, slots, priorities**state.alpha, state.capacity, state.num_leaves
    )
    return state.replace(
        storage=uniform.scatter(state.storage, slots, batch),
        position=position,
        size=size,
        sum_tree=sum_tree,
        min_tree=min_tree,
        max_priority=jnp.maximum(state.max_priority, kept.max()),
        priorities=state.priorities.at[slots].set(priorities, mode="drop"),
    )


def update_priorities(
    state: PrioritizedState,
    indices: jax.Array,
    priorities: jax.Array,
    mask: jax.Array | None = None,
) -> PrioritizedState:
    """Sets the raw priorities ``p`` (``[K]``, > 0, e.g. ``|δ| + ε``) of the
    items at ``indices`` (as returned by :func:`sample`). With duplicate
    indices one of the given priorities wins. Entries where ``mask`` (bool
    ``[K]``, optional) is False are left unchanged."""
    chex.assert_equal_shape([indices, priorities])
    priorities = jnp.asarray(priorities, jnp.float32)
    if mask is not None:
        chex.assert_equal_shape([indices, mask])
        indices = jnp.where(mask, indices, state.capacity)  # out of range: skipped
        priorities = jnp.where(mask, priorities, 0.0)
    sum_tree, min_tree = _set_leaves(
        state.sum_tree, state.min_tree, indices, priorities**state.alpha, state.capacity, state.num_leaves
    )
    return state.replace(
        sum_tree=sum_tree,
        min_tree=min_tree,
        max_priority=jnp.maximum(state.max_priority, priorities.max()),
        priorities=state.priorities.at[indices].set(priorities, mode="drop"),
    )


def set_alpha(state: PrioritizedState, alpha) -> PrioritizedState:
    """The buffer with priority exponent ``alpha``: where it differs from the
    buffer's, the trees are rebuilt from the raw priorities (``O(capacity)``);
    otherwise nothing is done, so an agent may call this before every sample."""
    sum_tree, min_tree, alpha = _trees_for_alpha(
        state.sum_tree, state.min_tree, state.priorities, state.size, state.alpha,
        jnp.asarray(alpha, jnp.float32),
    )
    return state.replace(sum_tree=sum_tree, min_tree=min_tree, alpha=alpha)


@jax.custom_batching.custom_vmap
def _trees_for_alpha(sum_tree, min_tree, priorities, size, old_alpha, alpha):
    return jax.lax.cond(
        alpha != old_alpha,
        lambda: _build_trees(priorities, size, alpha, sum_tree.shape[0] // 2),
        lambda: (sum_tree, min_tree),
    ) + (alpha,)


@_trees_for_alpha.def_vmap
def _trees_for_alpha_vmap(axis_size, in_batched, *args):
    # vmap would turn the cond's per-buffer condition into a select that
    # rebuilds every tree on every call (milliseconds per step for 10^6
    # items); one unbatched condition over all buffers skips that.
    args = [x if batched else jnp.broadcast_to(x, (axis_size,) + jnp.shape(x))
            for x, batched in zip(args, in_batched)]
    sum_tree, min_tree, priorities, size, old_alpha, alpha = args
    changed = alpha != old_alpha

    def rebuild():
        build = lambda p, n, a: _build_trees(p, n, a, sum_tree.shape[1] // 2)
        new_sum, new_min = jax.vmap(build)(priorities, size, alpha)
        pick = lambda new, old: jnp.where(changed[:, None], new, old)
        return pick(new_sum, sum_tree), pick(new_min, min_tree)

    sum_tree, min_tree = jax.lax.cond(jnp.any(changed), rebuild, lambda: (sum_tree, min_tree))
    return (sum_tree, min_tree, alpha), (True, True, True)


def _build_trees(priorities: jax.Array, size: jax.Array, alpha: jax.Array, num_leaves: int):
    """Sum and min trees of ``priorities^alpha`` over the filled slots, built bottom-up."""
    filled = jnp.arange(priorities.shape[0]) < size  # filled slots are [0, size)
    powered = priorities**alpha
    padding = num_leaves - priorities.shape[0]
    sums = jnp.pad(jnp.where(filled, powered, 0.0), (0, padding))
    mins = jnp.pad(jnp.where(filled, powered, jnp.inf), (0, padding), constant_values=jnp.inf)
    sum_levels, min_levels = [sums], [mins]
    while sum_levels[0].shape[0] > 1:
        # Pairwise, left + right: the sums _set_leaves computes.
        sum_levels.insert(0, sum_levels[0][0::2] + sum_levels[0][1::2])
        min_levels.insert(0, jnp.minimum(min_levels[0][0::2], min_levels[0][1::2]))
    return (
        jnp.concatenate([jnp.zeros((1,), jnp.float32), *sum_levels]),
        jnp.concatenate([jnp.full((1,), jnp.inf, jnp.float32), *min_levels]),
    )


def annealed_beta(initial_beta, progress) -> jax.Array:
    """The importance-sampling exponent at ``progress`` ∈ [0, 1] of the run:
    linear from ``initial_beta`` to 1 (Schaul et al. 2016, §3.4), so that the
    updates are unbiased by the end, when it matters most."""
    progress = jnp.clip(jnp.asarray(progress, jnp.float32), 0.0, 1.0)
    return initial_beta + progress * (1.0 - initial_beta)


def total_priority(state: PrioritizedState) -> jax.Array:
    """Σ_k p_k^α over the stored items."""
    return state.sum_tree[1]


def leaf_priorities(state: PrioritizedState) -> jax.Array:
    """``p^α`` of every slot, ``[capacity]`` (0 where empty)."""
    return state.sum_tree[state.num_leaves : state.num_leaves + state.capacity]


def _descend(sum_tree: jax.Array, targets: jax.Array, num_leaves: int) -> jax.Array:
    """Leaf index whose cumulative-mass interval holds each target, entering
    only children of positive mass."""

    def child_level(_, carry):
        nodes, targets = carry
        left_mass = sum_tree[2 * nodes]
        right_mass = sum_tree[2 * nodes + 1]
        go_right = ((targets >= left_mass) & (right_mass > 0)) | (left_mass <= 0)
        targets = jnp.where(go_right, targets - left_mass, targets)
        return 2 * nodes + go_right.astype(jnp.int32), targets

    nodes = jnp.ones(targets.shape, jnp.int32)
    depth = num_leaves.bit_length() - 1
    nodes, _ = jax.lax.fori_loop(0, depth, child_level, (nodes, targets))
    return nodes - num_leaves


def sample_indices(state: PrioritizedState, key: jax.Array, batch_size: int,
                   stratified: bool = True) -> jax.Array:
    """``batch_size`` slots drawn with probability ``P(i) ∝ p_i^α``.

    ``stratified`` draws one point per equal-mass segment (the paper's
    choice: lower variance); otherwise the points are independent."""
    total = total_priority(state)
    u = jax.random.uniform(key, (batch_size,), jnp.float32)
    if stratified:
        u = (jnp.arange(batch_size, dtype=jnp.float32) + u) / batch_size
    targets = u * total
    indices = _descend(state.sum_tree, targets, state.num_leaves)
    # An empty buffer has no positive leaf; point at slot 0 (see can_sample).
    return jnp.where(state.size > 0, jnp.minimum(indices, state.capacity - 1), 0)


def importance_weights(state: PrioritizedState, indices: jax.Array, beta) -> jax.Array:
    """w_i = (N·P(i))^−β / max_j w_j for the items at ``indices``."""
    total = total_priority(state)
    probs = state.sum_tree[indices + state.num_leaves] / total
    min_prob = state.min_tree[1] / total
    # (N P_i)^−β / (N P_min)^−β = (P_min / P_i)^β
    weights = (min_prob / probs) ** beta
    return jnp.where(state.size > 0, weights, 0.0).astype(jnp.float32)


def sample(
    state: PrioritizedState, key: jax.Array, batch_size: int, beta=0.4, stratified: bool = True
) -> tuple[PyTree, jax.Array, jax.Array]:
    """``(batch, indices, importance_weights)``: ``batch_size`` items drawn
    with probability ∝ ``p^α``, their slots (for :func:`update_priorities`),
    and their weights ``w_i`` in (0, 1] for exponent ``beta``."""
    indices = sample_indices(state, key, batch_size, stratified)
    batch = uniform.gather(state.storage, indices)
    return batch, indices, importance_weights(state, indices, beta)


def can_sample(state: PrioritizedState, batch_size: int) -> jax.Array:
    """Bool array: at least ``batch_size`` items are stored."""
    return state.size >= batch_size
