"""Spaces beyond gymnax's own, and helpers that read observation spaces.

- :class:`MultiDiscrete`: several discrete choices taken together (one
  integer per dimension, dimension ``i`` in ``[0, nvec[i])``), the action
  space of combinatorial tasks. gymnax has no such space.
- Dict observations are gymnax ``spaces.Dict``; :func:`observation_shapes`
  reports the shape of each key without compiling anything.
- **Action masks** follow one convention in jaxrl: an environment whose legal
  actions depend on its state returns a Dict observation with the key
  ``"action_mask"`` (see :data:`ACTION_MASK`), a bool array where ``True``
  marks a legal action. Its shape is ``[n]`` for ``Discrete(n)``;
  for ``MultiDiscrete(nvec)`` it is either ``tuple(nvec)`` (a joint mask over
  every combination) or ``[len(nvec), max(nvec)]`` (one row per dimension,
  padded with ``False``), see :func:`action_mask_kind`. The mask travels with
  the observation, so a rollout stores it with each step and ``act(params,
  obs, key)`` sees it without the env state.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments import spaces

ACTION_MASK = "action_mask"
"""The observation key of an environment's action mask."""

JOINT = "joint"
PER_DIMENSION = "per_dimension"


class MultiDiscrete(spaces.Space):
    """``len(nvec)`` discrete choices: ``action[i]`` in ``[0, nvec[i])``."""

    def __init__(self, nvec: Any, dtype: Any = jnp.int32):
        nvec = tuple(int(n) for n in np.ravel(np.asarray(nvec)))
        if not nvec or min(nvec) < 1:
            raise ValueError(f"MultiDiscrete needs at least one dimension, each >= 1, got {nvec}")
        self.nvec = nvec
        self.shape = (len(nvec),)
        self.dtype = dtype

    def __repr__(self) -> str:
        return f"MultiDiscrete(nvec={self.nvec})"

    def sample(self, key: jax.Array) -> jax.Array:
        """A uniformly random action (every dimension independent)."""
        return jax.random.randint(key, self.shape, 0, jnp.asarray(self.nvec)).astype(self.dtype)

    def contains(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        return jnp.all((x >= 0) & (x < jnp.asarray(self.nvec)))


def observation_shapes(env: Any, env_params: Any) -> Any:
    """Shape of one observation: a tuple for an array observation, a dict of
    shapes (nested as the space is) for a Dict observation."""
    return _space_shapes(env.observation_space(env_params))


def _space_shapes(space: Any) -> Any:
    if isinstance(space, spaces.Dict):
        return {k: _space_shapes(s) for k, s in space.spaces.items()}
    return tuple(int(d) for d in space.shape)


def has_action_mask(env: Any, env_params: Any) -> bool:
    """Whether ``env``'s observations carry an ``"action_mask"`` key."""
    space = env.observation_space(env_params)
    return isinstance(space, spaces.Dict) and ACTION_MASK in space.spaces


def action_mask(env: Any, obs: Any, env_params: Any) -> jax.Array | None:
    """The env's action mask in ``obs`` (any leading batch axes kept), or
    None when ``env`` supplies none. Decided from the space, so a None costs
    nothing inside jit."""
    return obs[ACTION_MASK] if has_action_mask(env, env_params) else None


def without_action_mask(env: Any, obs: Any, env_params: Any) -> Any:
    """``obs`` less its action mask: the array itself when the mask was the
    only other key (an ``{"observation", "action_mask"}`` pair), else the
    remaining dict."""
    if not has_action_mask(env, env_params):
        return obs
    rest = {k: v for k, v in obs.items() if k != ACTION_MASK}
    return rest["observation"] if set(rest) == {"observation"} else rest


def action_mask_kind(env: Any, env_params: Any) -> str | None:
    """``"joint"`` (one entry per action or per combination of a
    MultiDiscrete's choices), ``"per_dimension"`` (MultiDiscrete, one padded
    row per dimension), or None without a mask."""
    if not has_action_mask(env, env_params):
        return None
    mask_shape = tuple(env.observation_space(env_params).spaces[ACTION_MASK].shape)
    action_space = env.action_space(env_params)
    if isinstance(action_space, spaces.Discrete):
        expected = {JOINT: (int(action_space.n),)}
    elif isinstance(action_space, MultiDiscrete):
        expected = {JOINT: action_space.nvec, PER_DIMENSION: (len(action_space.nvec), max(action_space.nvec))}
    else:
        raise ValueError(f"an action mask needs a Discrete or MultiDiscrete action space, got {action_space!r}")
    for kind, shape in expected.items():  # joint first: it wins where both shapes agree
        if mask_shape == tuple(shape):
            return kind
    raise ValueError(f"action mask of shape {mask_shape} does not fit the action space {action_space!r}")
