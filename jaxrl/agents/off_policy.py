"""Pieces every replay-based agent (DDPG, D4PG, DQN, h-DQN) shares: the
buffer's example transition, the one-step transition of a vmapped env step,
flat observations, the optimiser, soft target updates, episode metrics and
the buffer-size check."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxrl import replay
from jaxrl.agents.base import config_requirer


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """What every replay agent's static spec holds: its config and the
    environment it trains on. Each agent's ``Spec`` extends it."""

    config: Any
    env: Any
    env_params: Any
    train_env: Any
    """The training env batched over ``num_envs``, with episode statistics."""
    obs_shape: tuple[int, ...]


def require_buffers_hold_one_step(config: Any, *buffer_fields: str) -> None:
    """ValueError naming the first buffer that cannot hold one step of every env."""
    require = config_requirer(config)
    for name in buffer_fields:
        require(getattr(config, name) >= config.num_envs, name, f"at least num_envs = {config.num_envs}")


def flat_dim(obs_shape: tuple[int, ...]) -> int:
    """Features of a flattened observation (1 for a scalar one)."""
    return max(1, math.prod(obs_shape))


def flatten_obs(obs: jax.Array, obs_shape: tuple[int, ...]) -> jax.Array:
    """``[..., *obs_shape]`` observations as float32 ``[..., D]`` feature vectors."""
    obs = jnp.asarray(obs, jnp.float32)
    return obs.reshape(obs.shape[: obs.ndim - len(obs_shape)] + (flat_dim(obs_shape),))


def example_transition(obs_shape, action_shape=(), action_dtype=jnp.float32,
                       next_action_mask=None) -> replay.Transition:
    """A zero :class:`replay.Transition` of one item: the buffer's layout
    (``next_action_mask``: an example mask, or None for an env without one)."""
    return replay.Transition(
        obs=jnp.zeros(obs_shape, jnp.float32),
        action=jnp.zeros(action_shape, action_dtype),
        reward=jnp.zeros((), jnp.float32),
        discount=jnp.zeros((), jnp.float32),
        next_obs=jnp.zeros(obs_shape, jnp.float32),
        next_action_mask=next_action_mask,
    )


def one_step_transition(obs, action, reward, terminated, info, gamma) -> replay.Transition:
    """The transition of one env step with Γ = γ·(1 − terminated); it
    bootstraps from ``info["final_observation"]``, the true next observation
    (which differs from the returned one after an auto-reset), so a time limit
    is not terminal."""
    return replay.Transition(
        obs=obs,
        action=action,
        reward=reward.astype(jnp.float32),
        discount=gamma * (1.0 - terminated.astype(jnp.float32)),
        next_obs=jnp.asarray(info["final_observation"], jnp.float32),
    )


def adam() -> optax.GradientTransformation:
    """Adam whose learning rate lives in its state, set from the agent's
    hyperparameters at every update (:func:`jaxrl.ops.with_learning_rate`)."""
    return optax.inject_hyperparams(optax.adam)(learning_rate=1.0)


def soft_update(target, online, tau):
    """θ' ← τθ + (1 − τ)θ' (τ = 1 is a hard copy)."""
    return jax.tree.map(lambda t, o: (1.0 - tau) * t + tau * o, target, online)


def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of ``values`` where ``mask``; 0 when nothing is masked in."""
    mask = mask.astype(jnp.float32)
    count = mask.sum()
    return jnp.where(count > 0, (values * mask).sum() / jnp.maximum(count, 1.0), 0.0)


def episode_metrics(episode_return: jax.Array, episode_done: jax.Array) -> dict[str, jax.Array]:
    """Mean return of the episodes that ended, and how many did."""
    return {"episode_return": masked_mean(episode_return, episode_done),
            "episodes_completed": episode_done.sum()}


def as_float32(metrics: dict[str, Any]) -> dict[str, jax.Array]:
    """Every metric as a float32 array, the type ``step`` returns them in."""
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), metrics)
