"""XLand-MiniGrid as gymnax environments: ``make("xminigrid:MiniGrid-DoorKey-5x5")``.

Every id of ``xminigrid.registered_environments()`` (the MiniGrid layouts
and the XLand-MiniGrid meta-RL ones). Observations are the agent's
``[view, view, 2]`` symbolic view (tile, colour) as uint8; actions are
``Discrete(6)``. XLand-MiniGrid ends an episode at ``max_steps`` with a
discount of 1 (``truncated``) and at the goal with 0 (``terminated``); on the
goal step at the time limit the goal wins. Keywords that are fields of its
``EnvParams`` (``max_steps=50``, ``view_size=5``) replace the defaults. The
XLand meta-RL ids take their task as ``ruleset=`` (one of
``xminigrid.load_benchmark(name)``'s rule sets, which that call downloads);
without one they run XLand-MiniGrid's placeholder rule set.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import xminigrid
from gymnax.environments import spaces

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
    return XMiniGridEnv(task, env, default_params), params
