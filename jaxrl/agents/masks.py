"""The agent side of an environment's action mask, shared by the actor-critic
agents (PPO, A2C, IMPALA) and the Q-learners (DQN).

An env with masks returns a Dict observation whose ``"action_mask"`` key marks
the legal actions (see :mod:`jaxrl.envs.spaces`). Agents split each
observation once, where it enters (:func:`split_observation`), into what the
network sees and a *flat* bool mask over the policy's outputs:

- ``Discrete(n)``: ``[..., n]``;
- ``MultiDiscrete(nvec)`` with a per-dimension mask: ``[..., sum(nvec)]``,
  dimension ``i``'s block after those of dimensions ``< i`` (padding dropped),
  the layout of a factorised categorical's logits;
- ``MultiDiscrete(nvec)`` with a joint mask: ``[..., prod(nvec)]``, every
  combination in row-major order, the layout of a joint categorical's logits.

The mask is then stored in trajectories and transitions as a typed field of
its own. An env without a mask has a :class:`MaskLayout` of kind None, and
every function here passes its observations through untouched, so agents on
such envs trace exactly the program they traced before masks existed.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from jaxrl import envs

JOINT = "joint"
PER_DIMENSION = "per_dimension"


@dataclasses.dataclass(frozen=True)
class MaskLayout:
    """Static: how an env's observations carry its action mask.

    Attributes:
      kind: None (no mask), ``"joint"`` or ``"per_dimension"``
        (:func:`jaxrl.envs.action_mask_kind`).
      mask_shape: one observation's mask shape (``()`` without a mask).
      nvec: a MultiDiscrete's choices per dimension (None otherwise).
      only_observation: the observation less its mask is the array under
        ``"observation"`` (else the remaining dict).
    """

    kind: str | None = None
    mask_shape: tuple[int, ...] = ()
    nvec: tuple[int, ...] | None = None
    only_observation: bool = False

    @property
    def masked(self) -> bool:
        return self.kind is not None

    @property
    def flat_size(self) -> int:
        """Entries of the flat mask (0 without a mask)."""
        if not self.masked:
            return 0
        if self.kind == PER_DIMENSION:
            return sum(self.nvec)
        return math.prod(self.mask_shape)


NO_MASK = MaskLayout()


def mask_layout(env: Any, env_params: Any) -> MaskLayout:
    """The :class:`MaskLayout` of ``env``'s observations (ValueError from
    :func:`jaxrl.envs.action_mask_kind` for a mask that does not fit the actions)."""
    kind = envs.action_mask_kind(env, env_params)
    if kind is None:
        return NO_MASK
    shapes = envs.observation_shapes(env, env_params)
    rest = [k for k in shapes if k != envs.ACTION_MASK]
    action_space = env.action_space(env_params)
    nvec = tuple(action_space.nvec) if isinstance(action_space, envs.MultiDiscrete) else None
    return MaskLayout(kind=kind, mask_shape=tuple(shapes[envs.ACTION_MASK]), nvec=nvec,
                      only_observation=rest == ["observation"])


def network_observation_shapes(env: Any, env_params: Any) -> Any:
    """One observation's shape as the network sees it (the mask removed): a
    tuple, or a dict of shapes for a Dict observation with other keys."""
    shapes = envs.observation_shapes(env, env_params)
    if not envs.has_action_mask(env, env_params):
        return shapes
    rest = {k: v for k, v in shapes.items() if k != envs.ACTION_MASK}
    return rest["observation"] if set(rest) == {"observation"} else rest


def split_observation(layout: MaskLayout, obs: Any) -> tuple[Any, jax.Array | None]:
    """``(network input, flat bool mask or None)`` of observations with any
    leading batch axes. Without a mask, ``obs`` itself and None."""
    if not layout.masked:
        return obs, None
    rest = {k: v for k, v in obs.items() if k != envs.ACTION_MASK}
    network_obs = rest["observation"] if layout.only_observation else rest
    return network_obs, flat_mask(layout, obs[envs.ACTION_MASK])


def flat_mask(layout: MaskLayout, mask: jax.Array) -> jax.Array:
    """An env's mask (leading batch axes kept) in the flat layout of the
    policy's outputs (see the module docstring)."""
    mask = jnp.asarray(mask).astype(bool)
    batch_shape = mask.shape[: mask.ndim - len(layout.mask_shape)]
    if layout.kind == PER_DIMENSION:
        # Each row is padded to max(nvec) with False: keep only its real choices.
        rows = [mask[..., i, :n] for i, n in enumerate(layout.nvec)]
        return jnp.concatenate(rows, axis=-1)
    return mask.reshape(batch_shape + (-1,))


def legal_or_all(mask: jax.Array) -> jax.Array:
    """``mask`` where some action is legal, else all actions: a row with no
    legal action (an env's terminal step) must not leave a max or argmax
    over nothing."""
    return jnp.logical_or(mask, ~jnp.any(mask, axis=-1, keepdims=True))


def example_mask(layout: MaskLayout) -> jax.Array | None:
    """A zero flat mask of one observation (None without a mask): a buffer's layout."""
    return jnp.zeros((layout.flat_size,), bool) if layout.masked else None
