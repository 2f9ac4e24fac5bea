"""Jumanji tasks as gymnax environments: ``make("jumanji:Snake-v1")``.

Jumanji's structured observations become dicts of arrays (one key per field
of its observation, e.g. Snake's ``grid``, ``step_count``, ``action_mask``),
so an env with legal-action masks presents them under ``"action_mask"``, the
convention of :mod:`jaxrl.envs.spaces`. Actions are ``Discrete``,
``MultiDiscrete`` or ``Box`` as Jumanji's action spec says.

Jumanji ends an episode with a ``LAST`` time step, and most of its envs
(Snake, Maze, Tetris, ...) give a time-out the discount 0 of a terminal
state. Here an episode that ends with ``state.step_count`` at the env's
``time_limit``, or with a discount above 0 (Connector, LBF), is
``truncated``; any other end is ``terminated``. (A terminal state reached
on the very step of the time limit is reported as truncated: Jumanji's step
does not say which came first.) Keywords go to ``jumanji.make``
(``time_limit=50``).
"""

from __future__ import annotations

import builtins
import contextlib
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import spaces


@contextlib.contextmanager
def _as_outside_ipython():
    """Jumanji's import, in a Jupyter kernel, runs ``%matplotlib ipympl``
    (for its renderers): that fails where ipympl is not installed and
    changes the notebook's plotting backend where it is. Importing it with
    IPython's marker hidden leaves the user's backend alone."""
    marker = builtins.__dict__.pop("__IPYTHON__", None)
    try:
        yield
    finally:
        if marker is not None:
            builtins.__IPYTHON__ = marker


with _as_outside_ipython():
    import jumanji
    from jumanji import specs
    from jumanji.types import StepType

from jaxrl.envs.families.base import FamilyEnv
from jaxrl.envs.spaces import MultiDiscrete


# Jumanji envs without a time limit whose rules end every episode within a
# known number of steps: each step fills one item, city, node or cell, and an
# illegal choice ends the episode.
EPISODE_BOUNDS = {
    "Knapsack": lambda env: env.num_items,
    "TSP": lambda env: env.num_cities,
    "GraphColoring": lambda env: env.num_nodes,
    "Minesweeper": lambda env: env.num_rows * env.num_cols,
    "Sudoku": lambda env: 81,
}


@struct.dataclass
class JumanjiParams:
    """Jumanji envs take their settings at construction: nothing here."""


@struct.dataclass
class JumanjiState:
    jumanji_state: Any
    truncated: jax.Array


def to_gymnax_space(spec: Any) -> Any:
    """The gymnax space of a Jumanji spec (a structured spec becomes a Dict)."""
    if isinstance(spec, specs.MultiDiscreteArray):
        return MultiDiscrete(spec.num_values, spec.dtype)
    if isinstance(spec, specs.DiscreteArray) and spec.shape == ():
        return spaces.Discrete(int(spec.num_values), dtype=spec.dtype)
    if isinstance(spec, specs.BoundedArray):
        return spaces.Box(spec.minimum, spec.maximum, spec.shape, spec.dtype)
    if isinstance(spec, specs.Array):
        return spaces.Box(-jnp.inf, jnp.inf, spec.shape, spec.dtype)
    return spaces.Dict({name: to_gymnax_space(sub) for name, sub in spec._specs.items()})


def observation_dict(observation: Any) -> Any:
    """A Jumanji observation (NamedTuple or dataclass, maybe nested) as dicts of arrays."""
    if hasattr(observation, "_asdict"):
        return {k: observation_dict(v) for k, v in observation._asdict().items()}
    if hasattr(observation, "__dataclass_fields__"):
        return {k: observation_dict(getattr(observation, k)) for k in observation.__dataclass_fields__}
    return observation


class JumanjiEnv(FamilyEnv):
    """One Jumanji env (unbatched; ``BatchEnv`` vmaps it)."""

    family = "jumanji"

    def __init__(self, task: str, **kwargs: Any):
        super().__init__(task)
        self._jumanji = jumanji.make(task, **kwargs)
        self._observation_space = to_gymnax_space(self._jumanji.observation_spec)
        self._action_space = to_gymnax_space(self._jumanji.action_spec)

    @property
    def default_params(self) -> JumanjiParams:
        return JumanjiParams()

    def reset_env(self, key: jax.Array, params: JumanjiParams):
        jumanji_state, timestep = self._jumanji.reset(key)
        state = JumanjiState(jumanji_state=jumanji_state, truncated=jnp.zeros((), bool))
        return observation_dict(timestep.observation), state

    def step_env(self, key: jax.Array, state: JumanjiState, action: Any, params: JumanjiParams):
        jumanji_state, timestep = self._jumanji.step(state.jumanji_state, action)
        last = timestep.step_type == StepType.LAST
        truncated = last & ((timestep.discount > 0) | self._timed_out(jumanji_state))
        terminated = last & ~truncated
        state = JumanjiState(jumanji_state=jumanji_state, truncated=truncated)
        reward = jnp.asarray(timestep.reward, jnp.float32)
        return observation_dict(timestep.observation), state, reward, terminated, {}

    def _timed_out(self, jumanji_state: Any) -> jax.Array:
        time_limit = getattr(self._jumanji, "time_limit", None)
        step_count = getattr(jumanji_state, "step_count", None)
        if time_limit is None or step_count is None:
            return jnp.zeros((), bool)
        return step_count >= time_limit

    def step_limit(self, params: JumanjiParams) -> int | None:
        """The most steps an episode takes: the Jumanji env's ``time_limit``,
        else the bound its rules set (:data:`EPISODE_BOUNDS`); None for an env
        with neither (Game2048, BinPack, JobShop, ...)."""
        limit = getattr(self._jumanji, "time_limit", None)
        if limit is not None:
            return int(limit)
        bound = EPISODE_BOUNDS.get(type(self._jumanji).__name__)
        return None if bound is None else int(bound(self._jumanji))

    def is_truncated(self, state: JumanjiState, params: JumanjiParams) -> jax.Array:
        return state.truncated

    def observation_space(self, params: JumanjiParams) -> Any:
        return self._observation_space

    def action_space(self, params: JumanjiParams) -> Any:
        return self._action_space


def ids() -> list[str]:
    """Jumanji's registered ids."""
    return list(jumanji.registered_environments())


def make(task: str, **kwargs: Any) -> tuple[JumanjiEnv, JumanjiParams]:
    return JumanjiEnv(task, **kwargs), JumanjiParams()
