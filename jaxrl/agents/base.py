"""The agent protocol shared by every algorithm.

An agent is a frozen bundle of pure functions over one pytree state, in the
spirit of optax's ``GradientTransformation``::

    agent = ppo.make(env, env_params, ppo.Config(num_envs=8))
    state = agent.init(key)                    # params, opt state, env state, rng, counters
    state, metrics = agent.step(state)         # collect experience, then update; jittable
    action = agent.act(params, obs, key)       # acting for evaluation and deployment
    returns = agent.evaluate(state, key, 10)   # returns of 10 complete episodes

``init`` takes an optional ``hparams`` pytree of numeric hyperparameters
(learning rate, gamma, ...). They live in the state as arrays, so a sweep over
them is one ``jax.vmap(agent.init)(keys, hparams)`` with no recompilation.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax

PyTree = Any


@dataclasses.dataclass(frozen=True)
class Agent:
    """Pure functions of one algorithm bound to an environment and a config.

    Attributes:
      name: algorithm name as the CLI knows it (``"ppo"``).
      config: the frozen config the agent was made with.
      env, env_params: the (wrapped) training environment.
      init: ``init(key, hparams=None) -> state``.
      step: ``step(state) -> (state, metrics)``; one iteration, pure.
      act: ``act(params, obs, key, deterministic=False) -> action`` for one
        observation (vmap it for batches). ``params`` is ``policy_params(state)``.
      policy_params: ``policy_params(state) -> params`` the pytree ``act`` needs
        (network parameters and, where used, observation-normalisation stats).
      evaluate: ``evaluate(state, key, num_episodes) -> returns [num_episodes]``,
        the undiscounted true-reward return of complete episodes of the current
        policy (deterministic actions), jittable.
      default_hparams: ``default_hparams() -> hparams`` the numeric
        hyperparameters taken from ``config``.
      env_steps_per_step: environment steps that one ``step`` consumes.
    """

    name: str
    config: Any
    env: Any
    env_params: Any
    init: Callable[..., PyTree]
    step: Callable[[PyTree], tuple[PyTree, dict[str, jax.Array]]]
    act: Callable[..., jax.Array]
    policy_params: Callable[[PyTree], PyTree]
    evaluate: Callable[[PyTree, jax.Array, int], jax.Array]
    default_hparams: Callable[[], PyTree]
    env_steps_per_step: int


def require(ok: bool, algo: str, field: str, value: Any, allowed: str) -> None:
    """Raise the config error every agent's ``Config.validate`` gives.

    The message names the agent, the field, the value and what is allowed,
    e.g. ``ppo.Config.num_envs=0 is invalid: expected a positive integer``.
    """
    if not ok:
        raise ValueError(f"{algo}.Config.{field}={value!r} is invalid: expected {allowed}")


def config_requirer(config) -> Callable[[bool, str, str], None]:
    """``require(ok, field, allowed)`` bound to ``config``: the value is read from
    the field, the agent's name from the config's module (``ddpg.Config`` ...)."""
    algo = type(config).__module__.rsplit(".", 1)[-1]
    return lambda ok, field, allowed: require(ok, algo, field, getattr(config, field), allowed)
