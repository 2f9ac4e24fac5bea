"""XLand-MiniGrid as gymnax environments: ``make("xminigrid:MiniGrid-DoorKey-5x5")``.

Every id of ``xminigrid.registered_environments()`` (the MiniGrid layouts
and the XLand-MiniGrid meta-RL ones). Observations are the agent's
``[view, view, 2]`` symbolic view (tile, colour) as uint8 (on the DoorKey
ids one status row more, below); actions are ``Discrete(6)``. XLand-MiniGrid
ends an episode at ``max_steps`` with a discount of 1 (``truncated``) and at
the goal with 0 (``terminated``); on the goal step at the time limit the goal
wins. Keywords that are fields of its
``EnvParams`` (``max_steps=50``, ``view_size=5``) replace the defaults. The
XLand meta-RL ids take their task as ``ruleset=`` (one of
``xminigrid.load_benchmark(name)``'s rule sets, which that call downloads);
without one they run XLand-MiniGrid's placeholder rule set.

**Goals of the DoorKey ids** (for h-DQN, :mod:`jaxrl.envs.hierarchical`):
``key`` (the agent carries the key) and ``door`` (the door is open). The
plain view cannot tell either: XLand-MiniGrid does not show the carried
object (MiniGrid draws it on the agent's cell; XLand-MiniGrid leaves that
out), and the door is in view only when the agent faces it. So on the
``MiniGrid-DoorKey-*`` ids the observation is the view with one status row
below it, ``[view + 1, view, 2]`` in the same (tile, colour) encoding: its
last two cells are the carried object (empty: tile 0) and the door as it is
now (locked, closed or open), the rest empty. It stays one uint8 Box, so every
torso takes it and ``goal_reached`` reads it from the observation alone,
also flattened. Every other id keeps the plain view and declares no goals.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import xminigrid
from gymnax.environments import spaces
from xminigrid.core.constants import Tiles

from jaxrl.envs.families.base import FamilyEnv
from jaxrl.envs.families import split_params_kwargs


class XMiniGridEnv(FamilyEnv):
    """One XLand-MiniGrid env (unbatched; ``BatchEnv`` vmaps it). Its state
    is XLand-MiniGrid's ``TimeStep``."""

    family = "xminigrid"

    def __init__(self, task: str, env: Any, default_params: Any):
        super().__init__(task)
        self._xminigrid = env
        self._default_params = default_params

    @property
    def default_params(self) -> Any:
        return self._default_params

    def reset_env(self, key: jax.Array, params: Any):
        timestep = self._xminigrid.reset(params, key)
        return timestep.observation, timestep

    def step_env(self, key: jax.Array, timestep: Any, action: Any, params: Any):
        timestep = self._xminigrid.step(params, timestep, action)
        terminated = timestep.last() & (timestep.discount == 0)
        return timestep.observation, timestep, jnp.asarray(timestep.reward, jnp.float32), terminated, {}

    def step_limit(self, params: Any) -> int:
        return params.max_steps

    def is_truncated(self, timestep: Any, params: Any) -> jax.Array:
        return timestep.last() & (timestep.discount > 0)

    def observation_space(self, params: Any) -> spaces.Box:
        shape = tuple(self._xminigrid.observation_shape(params))
        return spaces.Box(0, 255, shape, jnp.uint8)

    def action_space(self, params: Any) -> spaces.Discrete:
        return spaces.Discrete(int(self._xminigrid.num_actions(params)))


DOORKEY_PREFIX = "MiniGrid-DoorKey-"
DOOR_TILES = (Tiles.DOOR_LOCKED, Tiles.DOOR_CLOSED, Tiles.DOOR_OPEN)


def door_cell(grid: jax.Array) -> jax.Array:
    """The (tile, colour) ``[2]`` of the first door of an ``[H, W, 2]`` grid
    (DoorKey has exactly one), whatever its state."""
    cells = grid.reshape(-1, grid.shape[-1])
    is_door = jnp.isin(cells[:, 0], jnp.asarray(DOOR_TILES, cells.dtype))
    return cells[jnp.argmax(is_door)]


def status_row(pocket: jax.Array, door: jax.Array, width: int) -> jax.Array:
    """``[1, width, 2]``: empty cells, then the carried object and the door."""
    empty = jnp.zeros((width - 2, 2), jnp.uint8)
    return jnp.concatenate([empty, pocket[None].astype(jnp.uint8), door[None].astype(jnp.uint8)])[None]


def with_status(timestep: Any) -> jax.Array:
    """The view with :func:`status_row` below it, ``[view + 1, view, 2]``."""
    view = timestep.observation
    state = timestep.state
    row = status_row(state.agent.pocket, door_cell(state.grid), view.shape[1])
    return jnp.concatenate([view, row], axis=0)


class XMiniGridDoorKeyEnv(XMiniGridEnv):
    """A ``MiniGrid-DoorKey-*`` env whose observation carries a status row
    (see the module docstring) and which declares the goals ``key`` and ``door``."""

    goal_names = ("key", "door")

    def reset_env(self, key: jax.Array, params: Any):
        _, timestep = super().reset_env(key, params)
        return with_status(timestep), timestep

    def step_env(self, key: jax.Array, timestep: Any, action: Any, params: Any):
        _, timestep, reward, terminated, info = super().step_env(key, timestep, action, params)
        return with_status(timestep), timestep, reward, terminated, info

    def observation_space(self, params: Any) -> spaces.Box:
        view, width, layers = self._xminigrid.observation_shape(params)
        return spaces.Box(0, 255, (view + 1, width, layers), jnp.uint8)

    @staticmethod
    def goal_reached(obs: jax.Array, goal: jax.Array) -> jax.Array:
        """Goal 0 ``key``: the agent carries a key; goal 1 ``door``: the door
        is open. Reads the status row's last two cells, so ``obs`` may be the
        ``[view + 1, view, 2]`` observation or its flattening (any dtype)."""
        cells = obs.reshape(-1, 2)
        carries_key = cells[-2, 0] == Tiles.KEY
        door_open = cells[-1, 0] == Tiles.DOOR_OPEN
        return jnp.stack([carries_key, door_open])[goal]


def ids() -> list[str]:
    return list(xminigrid.registered_environments())


def make(task: str, **kwargs: Any) -> tuple[XMiniGridEnv, Any]:
    env, default_params = xminigrid.make(task)
    constructor, params = split_params_kwargs(default_params, kwargs)
    if constructor:
        raise ValueError(
            f"unknown keyword(s) {sorted(constructor)} for xminigrid:{task}; "
            f"params fields: {sorted(default_params.__dataclass_fields__)}"
        )
    if not task.startswith(DOORKEY_PREFIX):
        return XMiniGridEnv(task, env, default_params), params
    if params.view_size < 2:
        raise ValueError(f"xminigrid:{task} view_size={params.view_size} leaves no room for the status row "
                         f"(carried object, door): expected at least 2")
    return XMiniGridDoorKeyEnv(task, env, default_params), params
