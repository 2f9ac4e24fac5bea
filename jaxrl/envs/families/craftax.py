"""Craftax as gymnax environments: ``make("craftax:Craftax-Classic-Symbolic-v1")``.

Ids: ``Craftax-Classic-Symbolic-v1``, ``Craftax-Classic-Pixels-v1``,
``Craftax-Symbolic-v1``, ``Craftax-Pixels-v1``. Symbolic observations are
flat float32 vectors, pixel ones ``[H, W, 3]`` float32 images; actions are
``Discrete``. Craftax's ``done`` mixes death (and, in full Craftax, beating
the final boss) with its ``max_timesteps`` limit; here the limit alone is
``truncated`` and the rest ``terminated``. Keywords that are fields of
Craftax's ``EnvParams`` (``max_timesteps=100``) replace its defaults.
``info`` carries Craftax's achievement indicators (``"Achievements/<name>"``:
100 at the step that ends an episode, for each one it unlocked) and
``info["achievements"]``: bool ``[n]``, those unlocked so far in the episode
(order: :func:`achievement_names`), read before the auto-reset, so the step
that ends an episode reports all it unlocked.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from craftax.craftax_env import make_craftax_env_from_name
from gymnax.environments import spaces

from jaxrl.envs.families.base import FamilyEnv
from jaxrl.envs.families import split_params_kwargs

IDS = (
    "Craftax-Classic-Symbolic-v1",
    "Craftax-Classic-Pixels-v1",
    "Craftax-Symbolic-v1",
    "Craftax-Pixels-v1",
)

# A horizon no episode reaches: with it Craftax's own ``is_terminal`` leaves
# the time limit out.
_NO_TIME_LIMIT = 2**30


def _gymnax_space(space: Any) -> Any:
    """Craftax's copies of the gymnax spaces as gymnax's own."""
    if hasattr(space, "n"):
        return spaces.Discrete(int(space.n))
    return spaces.Box(space.low, space.high, tuple(space.shape), space.dtype)


class CraftaxEnv(FamilyEnv):
    """One Craftax env (unbatched; ``BatchEnv`` vmaps it)."""

    family = "craftax"

    def __init__(self, task: str):
        super().__init__(task)
        self._craftax = make_craftax_env_from_name(task, auto_reset=False)

    @property
    def default_params(self) -> Any:
        return self._craftax.default_params

    def reset_env(self, key: jax.Array, params: Any):
        return self._craftax.reset_env(key, params)

    def step_env(self, key: jax.Array, state: Any, action: Any, params: Any):
        obs, state, reward, _, info = self._craftax.step_env(key, state, action, params)
        # Taken before gymnax's auto-reset swaps in a fresh state, so an
        # evaluation can read what each finished episode unlocked.
        info = {**info, "achievements": state.achievements}
        return obs, state, jnp.asarray(reward, jnp.float32), self._terminated(state, params), info

    def _terminated(self, state: Any, params: Any) -> jax.Array:
        return jnp.asarray(self._craftax.is_terminal(state, params.replace(max_timesteps=_NO_TIME_LIMIT)))

    def step_limit(self, params: Any) -> int:
        return params.max_timesteps

    def is_truncated(self, state: Any, params: Any) -> jax.Array:
        return (state.timestep >= params.max_timesteps) & ~self._terminated(state, params)

    def observation_space(self, params: Any) -> spaces.Box:
        return _gymnax_space(self._craftax.observation_space(params))

    def action_space(self, params: Any) -> spaces.Discrete:
        return _gymnax_space(self._craftax.action_space(params))


def achievement_names(task: str) -> list[str]:
    """Names of ``info["achievements"]``'s entries (Craftax's ``Achievement``
    enum, lower case): Classic's 22 or full Craftax's."""
    if task.startswith("Craftax-Classic"):
        from craftax.craftax_classic.constants import Achievement
    else:
        from craftax.craftax.constants import Achievement
    return [a.name.lower() for a in sorted(Achievement, key=lambda a: a.value)]


def ids() -> list[str]:
    return list(IDS)


def make(task: str, **kwargs: Any) -> tuple[CraftaxEnv, Any]:
    env = CraftaxEnv(task)
    constructor, params = split_params_kwargs(env.default_params, kwargs)
    if constructor:
        raise ValueError(
            f"unknown keyword(s) {sorted(constructor)} for craftax:{task}; "
            f"params fields: {sorted(env.default_params.__dataclass_fields__)}"
        )
    return env, params
