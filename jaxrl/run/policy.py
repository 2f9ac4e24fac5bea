"""The trained policy of a saved run: its latest checkpoint's parameters for
one seed, and its deterministic actions in the env's own units.

What ``jaxrl eval --video`` records and ``jaxrl export`` writes out::

    saved = load_saved_policy("runs/cp", seed=0)
    act = deterministic_policy(saved.agent)        # act(saved.params, obs_batch)
"""

from __future__ import annotations

import os
from typing import Any, Callable, NamedTuple

import jax

from jaxrl.agents.base import Agent
from jaxrl.run.experiment import load_agent, restore_latest

# Deterministic actions draw no randomness; the agents' ``act`` still takes a key.
_UNUSED_KEY_SEED = 0


class SavedPolicy(NamedTuple):
    """One seed's policy from a run directory."""

    agent: Agent
    saved: dict[str, Any]
    """The run's config.json."""
    params: Any
    """``agent.policy_params`` of the seed's state."""
    iteration: int
    """Iterations done at the checkpoint."""
    seed: int
    """Which of the run's seeds (0-based)."""

    @property
    def env_steps(self) -> int:
        return self.iteration * self.agent.env_steps_per_step


def check_seed(saved: dict[str, Any], seed: int, name: str = "seed") -> None:
    """ValueError unless ``seed`` numbers one of the run's seeds (``name``:
    the argument or flag it came from, for the message)."""
    seeds = saved["seeds"]
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < seeds:
        raise ValueError(f"{name} must be one of the run's seeds 0..{seeds - 1}, got {seed!r}")


def load_saved_policy(out_dir: str | os.PathLike, seed: int = 0) -> SavedPolicy:
    """The policy of seed ``seed`` at the latest checkpoint of the run in ``out_dir``."""
    agent, saved = load_agent(out_dir)
    check_seed(saved, seed)
    iteration, states = restore_latest(out_dir, agent, saved, purpose="load a policy from")
    state = jax.tree.map(lambda leaf: leaf[seed], states)
    return SavedPolicy(agent, saved, agent.policy_params(state), iteration, seed)


def env_action_fn(env: Any, env_params: Any) -> Callable[[jax.Array], jax.Array]:
    """The map from an agent's actions to the actions ``env`` takes: agents act
    in [-1, 1] on continuous spaces (:class:`jaxrl.envs.RescaleAction` maps
    that onto the env's bounds); discrete actions pass unchanged."""
    from jaxrl import envs

    if envs.action_space_kind(env, env_params) == "discrete":
        return lambda action: action
    rescale = envs.RescaleAction(env)
    return lambda action: rescale.env_action(action, env_params)


def deterministic_policy(agent: Agent) -> Callable[[Any, jax.Array], jax.Array]:
    """``policy(params, obs [B, ...]) -> env actions [B, ...]``: the agent's
    deterministic actions for a batch of observations of ``agent.env``, in the
    env's units. Pure and jittable; the same computation ``agent.evaluate`` runs.

    ValueError for a recurrent policy (``core`` not ``none``): its actions
    depend on a state this stateless function has no place for
    (:func:`deterministic_recurrent_policy` is its)."""
    if agent.initial_carry is not None:
        core = getattr(agent.config, "core", None)
        raise ValueError(f"{agent.name}.Config.core={core!r} is a recurrent policy: its actions depend on "
                         "a state; use deterministic_recurrent_policy")
    to_env = env_action_fn(agent.env, agent.env_params)

    def policy(params: Any, obs: jax.Array) -> jax.Array:
        key = jax.random.PRNGKey(_UNUSED_KEY_SEED)
        return to_env(agent.act(params, obs, key, deterministic=True))

    return policy


def deterministic_recurrent_policy(agent: Agent):
    """``(policy, initial_carry)`` of an agent with a recurrent core:
    ``policy(params, obs [B, ...], carry) -> (env actions [B, ...], carry)``,
    the same computation ``agent.evaluate`` runs, and ``initial_carry(batch)
    -> carry [batch, ...]``, the core's state at an episode's start.
    ValueError for a feed-forward agent (:func:`deterministic_policy` is its)."""
    if agent.initial_carry is None:
        raise ValueError(f"{agent.name} has no recurrent core: use deterministic_policy")
    to_env = env_action_fn(agent.env, agent.env_params)

    def policy(params: Any, obs: jax.Array, carry: Any) -> tuple[jax.Array, Any]:
        key = jax.random.PRNGKey(_UNUSED_KEY_SEED)
        action, carry = agent.act(params, obs, key, deterministic=True, carry=carry)
        return to_env(action), carry

    return policy, lambda batch: agent.initial_carry((batch,))
