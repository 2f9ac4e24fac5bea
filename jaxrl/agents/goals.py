"""Goals and options for h-DQN (:mod:`jaxrl.agents.hdqn`): an environment's
goals, the controller's goal-gated input, per-goal statistics and ε₁,g, the
per-env option bookkeeping, and option-level episode rollouts."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl import envs
from jaxrl.agents import off_policy
from jaxrl.agents.q_learning import epsilon_greedy


class GoalSpec(NamedTuple):
    """An environment's goals: names (their number is static) and the critic's test."""

    names: tuple[str, ...]
    reached: Callable[[jax.Array, jax.Array], jax.Array]
    """``reached(obs, goal) -> bool`` for one observation and an int goal."""


def goal_spec(env) -> GoalSpec:
    """The :class:`GoalSpec` an environment declares (``goal_names``, ``goal_reached``)."""
    inner = getattr(env, "unwrapped", env)
    names = getattr(inner, "goal_names", None)
    reached = getattr(inner, "goal_reached", None)
    if not names or not callable(reached):
        name = getattr(inner, "name", type(inner).__name__)
        raise ValueError(
            f"algorithm 'hdqn' needs an environment with goals (goal_names and goal_reached), "
            f"but {name!r} declares none; use DecisionProcess-v0, KeyDoor-v0 or "
            f"xminigrid:MiniGrid-DoorKey-<size>, or pass "
            f"hdqn.make(..., goals=hdqn.GoalSpec(names, reached))"
        )
    return GoalSpec(tuple(names), reached)


@struct.dataclass
class Options:
    """Per-env option bookkeeping ``[B, ...]``."""

    goal: jax.Array
    start_obs: jax.Array
    extrinsic_return: jax.Array
    """F: extrinsic reward summed since the option started."""
    steps: jax.Array
    needs_goal: jax.Array
    """The previous option ended: the meta-controller picks before acting."""


@struct.dataclass
class GoalStats:
    """Per-goal statistics ``[G]``: options that pursued each goal and their running success rate."""

    attempts: jax.Array
    success_rate: jax.Array


def controller_input(obs: jax.Array, goal: jax.Array, num_goals: int) -> jax.Array:
    """``concat(obs ⊗ onehot(g), onehot(g))`` for ``[..., D]`` flat observations."""
    goal_one_hot = jax.nn.one_hot(goal, num_goals, dtype=jnp.float32)
    gated = (obs[..., :, None] * goal_one_hot[..., None, :]).reshape(obs.shape[:-1] + (-1,))
    return jnp.concatenate([gated, goal_one_hot], axis=-1)


def image_controller_input(obs: jax.Array, goal: jax.Array, num_goals: int) -> jax.Array:
    """``concat(obs, onehot(g))`` for ``[..., D]`` flat observations: the input
    of a controller with an image torso, which gates the image's features
    (not its pixels) by the goal (:class:`jaxrl.agents.q_learning.QNetwork`)."""
    return jnp.concatenate([obs, jax.nn.one_hot(goal, num_goals, dtype=jnp.float32)], axis=-1)


def controller_epsilon(stats: GoalStats, hp) -> jax.Array:
    """ε₁,g per goal ``[G]`` (see the module docstring)."""
    by_count = 1.0 - stats.attempts * hp.controller_epsilon_decay
    by_success = 1.0 - stats.success_rate
    return jnp.clip(jnp.minimum(by_count, by_success), hp.epsilon_end, 1.0)


class EpisodeCarry(NamedTuple):
    """:func:`run_episodes`' per-episode state ``[N, ...]``."""

    obs: jax.Array
    env_state: Any
    goal: jax.Array
    steps: jax.Array
    needs_goal: jax.Array
    finished: jax.Array
    returns: jax.Array
    chosen: jax.Array
    reached: jax.Array
    visits: jax.Array


def option_episodes(env, env_params, goals: GoalSpec, meta_q, controller_q, max_option_steps: int,
                    params, key: jax.Array, num_episodes: int, epsilon: float = 0.0, max_steps=None,
                    controller_x: Callable | None = None):
    """First episodes of ``num_episodes`` envs under the hierarchical
    policy (options kept across steps; ε-greedy at both levels with
    ``epsilon``). Returns ``(returns [N], goals chosen [N, G], goals
    reached [N, G], observation sums [N, D])``; the last is the sum of the
    observations arrived at, i.e. visit counts for one-hot observations.
    ``meta_q(params, obs)`` and ``controller_q(params, x)`` are the two Q
    functions on flat observations and ``controller_x(obs, goal)`` (default
    :func:`controller_input`), the controller's input."""
    obs_shape = envs.observation_shape(env, env_params)
    flat = lambda obs: off_policy.flatten_obs(obs, obs_shape)
    if controller_x is None:
        controller_x = lambda obs, goal: controller_input(obs, goal, len(goals.names))
    num_goals, n = len(goals.names), num_episodes
    max_steps = int(envs.step_limit(env, env_params)) + 1 if max_steps is None else max_steps
    k_reset, key = jax.random.split(key)
    obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_reset, n), env_params)
    zeros_g = jnp.zeros((n, num_goals), jnp.float32)
    carry = EpisodeCarry(flat(obs), env_state, jnp.zeros((n,), jnp.int32), jnp.zeros((n,), jnp.int32),
                         jnp.ones((n,), bool), jnp.zeros((n,), bool), jnp.zeros((n,), jnp.float32),
                         zeros_g, zeros_g, jnp.zeros((n, off_policy.flat_dim(obs_shape)), jnp.float32))

    def one_step(c: EpisodeCarry, key):
        k_goal, k_act, k_env = jax.random.split(key, 3)
        picked = epsilon_greedy(k_goal, meta_q(params["meta"], c.obs), epsilon)
        goal = jnp.where(c.needs_goal, picked, c.goal)
        steps = jnp.where(c.needs_goal, 0, c.steps)
        running = (~c.finished).astype(jnp.float32)
        goal_one_hot = jax.nn.one_hot(goal, num_goals)
        q = controller_q(params["controller"], controller_x(c.obs, goal))
        action = epsilon_greedy(k_act, q, epsilon)
        next_obs, env_state, reward, terminated, truncated, info = jax.vmap(
            env.step, in_axes=(0, 0, 0, None)
        )(jax.random.split(k_env, n), c.env_state, action, env_params)
        arrived = flat(info["final_observation"])
        reached = jax.vmap(goals.reached)(arrived, goal)
        steps = steps + 1
        return EpisodeCarry(
            obs=flat(next_obs), env_state=env_state, goal=goal, steps=steps,
            needs_goal=reached | terminated | truncated | (steps >= max_option_steps),
            finished=c.finished | terminated | truncated,
            returns=c.returns + reward * running,
            chosen=c.chosen + goal_one_hot * (c.needs_goal * running)[:, None],
            reached=c.reached + goal_one_hot * (reached * running)[:, None],
            visits=c.visits + arrived * running[:, None],
        ), None

    carry, _ = jax.lax.scan(one_step, carry, jax.random.split(key, max_steps))
    return carry.returns, carry.chosen, carry.reached, carry.visits
