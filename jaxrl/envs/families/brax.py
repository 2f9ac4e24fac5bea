"""Brax physics tasks as gymnax environments: ``make("brax:ant")``.

Observations are float32 vectors, actions a Box in ``[-1, 1]``. An episode
is cut after ``max_steps_in_episode`` steps (Brax's own ``episode_length``,
1000 by default) and that cut is reported as ``truncated``; ``terminated``
is Brax's ``done`` (the body fell, the pole tipped), never the time limit.
Constructor keywords (``backend="positional"``, ...) go to
``brax.envs.get_environment``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from brax import envs as brax_envs
from flax import struct
from gymnax.environments import spaces

from jaxrl.envs.families.base import FamilyEnv
from jaxrl.envs.families import split_params_kwargs

DEFAULT_EPISODE_LENGTH = 1000


@struct.dataclass
class BraxParams:
    max_steps_in_episode: int = DEFAULT_EPISODE_LENGTH
    """Steps before the episode is truncated (Brax's ``episode_length``)."""


@struct.dataclass
class BraxState:
    brax_state: Any
    time: jax.Array


class BraxEnv(FamilyEnv):
    """One Brax env (unbatched; ``BatchEnv`` vmaps it)."""

    family = "brax"

    def __init__(self, task: str, **kwargs: Any):
        super().__init__(task)
        self._brax = brax_envs.get_environment(task, **kwargs)
        if not isinstance(self._brax.observation_size, int):
            raise ValueError(f"brax:{task} has dict observations {self._brax.observation_size}; jaxrl handles vectors")

    @property
    def default_params(self) -> BraxParams:
        return BraxParams()

    def reset_env(self, key: jax.Array, params: BraxParams) -> tuple[jax.Array, BraxState]:
        brax_state = self._brax.reset(key)
        return brax_state.obs, BraxState(brax_state=brax_state, time=jnp.zeros((), jnp.int32))

    def step_env(self, key: jax.Array, state: BraxState, action: jax.Array, params: BraxParams):
        brax_state = self._brax.step(state.brax_state, jnp.asarray(action, jnp.float32))
        state = BraxState(brax_state=brax_state, time=state.time + 1)
        terminated = jnp.asarray(brax_state.done).astype(bool)
        return brax_state.obs, state, jnp.asarray(brax_state.reward, jnp.float32), terminated, {}

    def is_truncated(self, state: BraxState, params: BraxParams) -> jax.Array:
        return state.time >= params.max_steps_in_episode

    def observation_space(self, params: BraxParams) -> spaces.Box:
        return spaces.Box(-jnp.inf, jnp.inf, (self._brax.observation_size,), jnp.float32)

    def action_space(self, params: BraxParams) -> spaces.Box:
        return spaces.Box(-1.0, 1.0, (self._brax.action_size,), jnp.float32)


def ids() -> list[str]:
    """Brax's registered task names."""
    return sorted(brax_envs._envs)


def make(task: str, **kwargs: Any) -> tuple[BraxEnv, BraxParams]:
    constructor, params = split_params_kwargs(BraxParams(), kwargs)
    return BraxEnv(task, **constructor), params
