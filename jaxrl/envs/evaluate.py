"""Returns of complete episodes of a policy, in one jittable call."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

PolicyFn = Callable[[Any, jax.Array], Any]


class EpisodeResults(NamedTuple):
    """One entry per evaluated episode."""

    returns: jax.Array
    """Undiscounted return of the first episode of each env, float32 ``[N]``."""
    lengths: jax.Array
    """Its number of steps, int32 ``[N]``."""
    completed: jax.Array
    """Whether it ended (terminated or truncated) within ``max_steps``, bool
    ``[N]``; where False, ``returns``/``lengths`` are of the partial episode."""


def episode_returns(
    env: Any,
    env_params: Any,
    policy_fn: PolicyFn,
    key: jax.Array,
    num_episodes: int,
    max_steps: int | None = None,
    policy_state: Any = None,
) -> EpisodeResults:
    """Runs ``num_episodes`` envs side by side (vmapped) and records each one's
    first episode.

    Args:
      env, env_params: a gymnax-compatible, unbatched env.
      policy_fn: ``policy_fn(obs_batch, key) -> action_batch`` for a batch of
        ``num_episodes`` observations; a closure over the policy's parameters.
        With ``policy_state``: ``policy_fn(obs_batch, key, state) -> (action_batch,
        state)``, a policy with memory (a recurrent core's carry).
      policy_state: None, or the initial state of a policy with memory, with a
        leading ``num_episodes`` axis on every leaf; each env's state is set
        back to it after a step that ends its episode.
      key: randomness. ``reset_key, run_key = jax.random.split(key)``; env
        ``i`` is reset with ``jax.random.split(reset_key, num_episodes)[i]``.
      num_episodes, max_steps: static. ``max_steps`` defaults to one more
        than the env's time limit (:func:`step_limit`), which every episode ends
        within because of the time limit (pass it explicitly when
        ``env_params`` is traced, e.g. vmapped over params).

    Returns:
      :class:`EpisodeResults` ``(returns, lengths, completed)``.

    The loop stops as soon as every env has finished its first episode (a
    ``lax.while_loop`` bounded by ``max_steps``), so short episodes cost few
    steps. Steps after an env's first episode are masked out.
    """
    if max_steps is None:
        max_steps = _default_max_steps(env, env_params)
    if num_episodes < 1 or max_steps < 1:
        raise ValueError(f"num_episodes and max_steps must be positive, got {num_episodes}, {max_steps}")

    reset_key, run_key = jax.random.split(key)
    obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(
        jax.random.split(reset_key, num_episodes), env_params
    )
    step_all = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def not_finished(carry):
        t, _, _, _, _, _, finished, _ = carry
        return jnp.logical_and(t < max_steps, ~jnp.all(finished))

    def act(obs, key, state):
        if policy_state is None:
            return policy_fn(obs, key), None
        return policy_fn(obs, key, state)

    def one_step(carry):
        t, obs, env_state, key, returns, lengths, finished, state = carry
        key, act_key, step_key = jax.random.split(key, 3)
        action, state = act(obs, act_key, state)
        obs, env_state, reward, terminated, truncated, _ = step_all(
            jax.random.split(step_key, num_episodes), env_state, action, env_params
        )
        running = ~finished
        returns = returns + jnp.where(running, reward.astype(jnp.float32), 0.0)
        lengths = lengths + running.astype(jnp.int32)
        if policy_state is not None:  # a new episode starts from the initial state
            state = reset_where(terminated | truncated, policy_state, state)
        finished = finished | terminated | truncated
        return t + 1, obs, env_state, key, returns, lengths, finished, state

    init = (
        jnp.zeros((), jnp.int32),
        obs,
        env_state,
        run_key,
        jnp.zeros((num_episodes,), jnp.float32),
        jnp.zeros((num_episodes,), jnp.int32),
        jnp.zeros((num_episodes,), bool),
        policy_state,
    )
    *_, returns, lengths, finished, _ = jax.lax.while_loop(not_finished, one_step, init)
    return EpisodeResults(returns=returns, lengths=lengths, completed=finished)


def reset_where(ended: jax.Array, initial: Any, state: Any) -> Any:
    """``state`` (leaves ``[N, ...]``) set back to ``initial`` where ``ended`` ``[N]``."""
    return jax.tree.map(
        lambda s0, s: jnp.where(ended.reshape(ended.shape + (1,) * (s.ndim - 1)), s0, s),
        initial, state)


def step_limit(env: Any, env_params: Any) -> int | None:
    """The most steps an episode of ``env`` takes (its time limit): the env's
    own ``step_limit`` (the families' adapters, through any wrapper), else
    gymnax's ``env_params.max_steps_in_episode``; None where neither exists."""
    own = getattr(env, "step_limit", None)
    if callable(own):
        return own(env_params)
    return getattr(env_params, "max_steps_in_episode", None)


def _default_max_steps(env: Any, env_params: Any) -> int:
    """One more than the env's time limit (:func:`step_limit`)."""
    limit = step_limit(env, env_params)
    if limit is None:
        raise ValueError(f"{getattr(env, 'name', type(env).__name__)} declares no time limit "
                         "(no max_steps_in_episode): pass max_steps explicitly")
    try:
        return int(limit) + 1
    except (TypeError, jax.errors.ConcretizationTypeError):
        raise ValueError(
            "the env's time limit is traced (env_params passed through jit/vmap): "
            "pass max_steps explicitly"
        ) from None
