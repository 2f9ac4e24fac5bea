"""N-step transitions from time-major rollouts.

One-step transitions ``(s_t, a_t, r_t, γ_t, s'_t)`` with
``γ_t = γ·(1 − terminated_t)`` and ``s'_t`` the true next observation
(``info["final_observation"]`` at episode ends) become

    R_t^(n) = Σ_{k=0}^{m−1} (Π_{i<k} γ_{t+i}) · r_{t+k}
    Γ_t^(n) = Π_{i<m} γ_{t+i}
    s'^(n)_t = s'_{t+m−1}

where ``m ≤ n`` stops at the first step that ends the episode
(``terminated`` or ``truncated``). The learner's target is then
``R + Γ·Q(s', π(s'))``: termination zeroes Γ (no bootstrap); truncation keeps
Γ = γ^m and bootstraps from the final observation, since the episode was cut
by a time limit, not ended by the MDP.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Transition:
    """What the replay buffers of the off-policy agents store.

    Attributes:
      obs: s_t.
      action: a_t.
      reward: R (the n-step discounted reward sum; r_t when n = 1).
      discount: Γ, the discount applied to the bootstrap value (γ^m, or 0
        after a termination).
      next_obs: the observation to bootstrap from.
      next_action_mask: the legal actions at ``next_obs`` (a flat bool mask,
        see :mod:`jaxrl.agents.masks`), which a bootstrap's max ranges over;
        None for an env without action masks.
    """

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    discount: jax.Array
    next_obs: jax.Array
    next_action_mask: jax.Array | None = None


def n_step_transitions(steps: Transition, episode_end: jax.Array, n: int) -> Transition:
    """Turns ``T`` one-step transitions ``[T, B, ...]`` into the ``T − n + 1``
    n-step transitions that start at ``t = 0 … T − n`` (``[T − n + 1, B, ...]``).

    Args:
      steps: one-step transitions, time-major; ``steps.discount`` is
        γ·(1 − terminated), ``steps.next_obs`` the true next observation.
      episode_end: ``terminated | truncated`` per step, ``[T, B]``.
      n: static int ≥ 1, ≤ T.

    A window that meets an episode end stops there (m < n), so every window
    of length n fits inside the chunk; the last n − 1 starts need the next
    chunk (an agent keeps a sliding :class:`Window` of n steps, see :func:`push`).
    """
    T = steps.reward.shape[0]
    if not isinstance(n, int) or not 1 <= n <= T:
        raise ValueError(f"n must be a static int in [1, T={T}], got {n!r}")
    chex.assert_equal_shape([steps.reward, steps.discount, episode_end])
    starts = T - n + 1
    window = lambda x, k: jax.lax.slice_in_dim(x, k, k + starts, axis=0)

    reward = jnp.zeros_like(window(steps.reward, 0))
    discount = jnp.ones_like(window(steps.discount, 0))
    next_obs = window(steps.next_obs, 0)
    alive = jnp.ones(reward.shape, bool)  # the window has not met an episode end yet
    for k in range(n):
        reward = reward + jnp.where(alive, discount * window(steps.reward, k), 0.0)
        next_obs = jnp.where(_expand(alive, next_obs), window(steps.next_obs, k), next_obs)
        discount = jnp.where(alive, discount * window(steps.discount, k), discount)
        alive = alive & ~window(episode_end, k).astype(bool)
    return Transition(
        obs=window(steps.obs, 0),
        action=window(steps.action, 0),
        reward=reward,
        discount=discount,
        next_obs=next_obs,
    )


def _expand(mask: jax.Array, like: jax.Array) -> jax.Array:
    return mask.reshape(mask.shape + (1,) * (like.ndim - mask.ndim))


@struct.dataclass
class Window:
    """The last ``n`` one-step transitions of every env, oldest first
    (``[n, B, ...]``), and how many steps have filled it: what an agent that
    collects one step at a time keeps to emit n-step transitions."""

    steps: Transition
    episode_end: jax.Array
    filled: jax.Array


def empty_window(example: Transition, n: int, num_envs: int) -> Window:
    """A window of ``n`` zero steps of ``num_envs`` envs shaped like ``example``."""
    return Window(
        steps=jax.tree.map(lambda x: jnp.zeros((n, num_envs) + x.shape, x.dtype), example),
        episode_end=jnp.zeros((n, num_envs), bool),
        filled=jnp.zeros((), jnp.int32),
    )


def push(window: Window, step: Transition, episode_end: jax.Array) -> tuple[Window, Transition, jax.Array]:
    """Slides ``window`` by one step ``[B, ...]``. Returns the new window, the
    n-step transition ``[B, ...]`` that starts at its oldest step, and whether
    that transition is complete (the window has been filled)."""
    n = window.episode_end.shape[0]
    shift = lambda old, new: jnp.concatenate([old[1:], new[None]], axis=0)
    window = Window(
        steps=jax.tree.map(shift, window.steps, step),
        episode_end=shift(window.episode_end, episode_end),
        filled=jnp.minimum(window.filled + 1, n),
    )
    transition = jax.tree.map(lambda x: x[0], n_step_transitions(window.steps, window.episode_end, n))
    return window, transition, window.filled >= n
