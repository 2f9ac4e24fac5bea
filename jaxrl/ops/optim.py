"""Gradient utilities that take their thresholds as arrays.

``optax.clip_by_global_norm`` bakes ``max_norm`` into the transformation at
construction time; these functions take it per call so it can be a leaf of
an agent's state and be vmapped over in a hyperparameter sweep.
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp

PyTree = Any


def global_norm(tree: PyTree) -> jax.Array:
    """√(Σ_leaves Σ x²), the L2 norm of all leaves taken together."""
    leaves = jax.tree_util.tree_leaves(tree)
    if not leaves:
        return jnp.zeros(())
    # Accumulate low-precision (bf16/f16) leaves in float32.
    squares = [jnp.sum(jnp.square(x.astype(jnp.promote_types(x.dtype, jnp.float32))))
               for x in leaves]
    return jnp.sqrt(sum(squares))


def clip_by_global_norm(grads: PyTree, max_norm: chex.Numeric) -> PyTree:
    """Scale ``grads`` by min(1, max_norm / ‖grads‖) (Pascanu et al. 2013).

    Leaves keep their dtypes; a zero gradient stays zero. ``max_norm`` may be
    a traced scalar.
    """
    norm = global_norm(grads)
    max_norm = jnp.asarray(max_norm, norm.dtype)
    # max() keeps the division finite at norm 0, where the scale is 1 anyway.
    scale = jnp.minimum(1.0, max_norm / jnp.maximum(norm, jnp.finfo(norm.dtype).tiny))
    return jax.tree_util.tree_map(lambda g: (g * scale).astype(g.dtype), grads)


def with_learning_rate(opt_state, learning_rate: chex.Numeric):
    """Set the step size of an ``optax.inject_hyperparams`` optimiser state.

    Agents keep the learning rate in their state (a vmappable leaf) and write
    it, possibly annealed, into the optimiser state before each update.
    """
    hyperparams = dict(opt_state.hyperparams)
    hyperparams["learning_rate"] = jnp.asarray(learning_rate, jnp.float32)
    return opt_state._replace(hyperparams=hyperparams)
