"""Environments: ``make(id)`` over gymnax, our probe envs and the families
below, wrappers, and episode evaluation.

    from jaxrl import envs
    env, env_params = envs.make("CartPole-v1")
    train_env = envs.NormalizeObservation(envs.BatchEnv(envs.EpisodeStats(env), 8))

Importing this package registers the probe environments (``Probe-*-v0``) and the
sparse-reward goal environments ``DecisionProcess-v0`` and ``KeyDoor-v0``.

Ids ``"<family>:<id>"`` name other families, each an optional extra:
``brax:<task>`` (``[brax]``), ``jumanji:<id>`` (``[jumanji]``),
``craftax:<id>`` (``[craftax]``), ``xminigrid:<id>`` (``[minigrid]``). They
are gymnax environments like the rest: ``reset(key, params) -> (obs,
state)``, ``step(key, state, action, params) -> (obs, state, reward,
terminated, truncated, info)`` with auto-reset and
``info["final_observation"]``; a time limit is always ``truncated``, never
``terminated``. ``gymnasium:<id>`` and ``envpool:<task>`` are host envs for
the asynchronous actors: ``host_env_factory(env_id)(num_envs, seed)``.

Spaces: actions are ``Discrete``, ``Box`` or :class:`MultiDiscrete`
(``action_space_kind`` says which; ``action_dims`` gives the choices per
dimension). Observations are arrays or Dicts of arrays
(``observation_shapes``; :class:`FlattenObservation` makes one vector).

**Action masks.** An env whose legal actions depend on its state returns a
Dict observation with a bool ``"action_mask"`` (``True`` = legal): shape
``[n]`` for ``Discrete(n)``; ``tuple(nvec)`` (joint) or ``[len(nvec),
max(nvec)]`` (per dimension, padded) for a ``MultiDiscrete``
(``action_mask_kind``). The mask rides in the observation, so rollouts store
it and ``act(params, obs, key)`` sees it without the env state. Agents read it
with ``action_mask(env, obs, env_params)`` (None for an env without masks).
"""

from jaxrl.envs import probes  # noqa: F401  (registers the probe envs)
from jaxrl.envs import hierarchical  # noqa: F401  (registers DecisionProcess-v0, KeyDoor-v0)
from jaxrl.envs.evaluate import EpisodeResults, episode_returns, step_limit
from jaxrl.envs.families import FAMILIES, host_env_factory, list_family_ids
from jaxrl.envs.registry import (
    MULTI_DISCRETE,
    action_dims,
    action_shape,
    action_space_kind,
    list_envs,
    make,
    num_actions,
    observation_shape,
    register,
    validate_env_for,
)
from jaxrl.envs.spaces import (
    ACTION_MASK,
    MultiDiscrete,
    action_mask,
    action_mask_kind,
    has_action_mask,
    observation_shapes,
    without_action_mask,
)
from jaxrl.envs.wrappers import (
    BatchEnv,
    ClipAction,
    EpisodeStats,
    EpisodeStatsState,
    FlattenObservation,
    NormalizeObservation,
    ObsNormState,
    ObsNormStats,
    RescaleAction,
    Wrapper,
    normalize_obs,
    obs_norm_stats,
    update_obs_norm_stats,
    with_obs_norm_stats,
)

__all__ = [
    "make",
    "register",
    "list_envs",
    "action_space_kind",
    "action_shape",
    "num_actions",
    "observation_shape",
    "validate_env_for",
    "MULTI_DISCRETE",
    "action_dims",
    "FAMILIES",
    "list_family_ids",
    "host_env_factory",
    "ACTION_MASK",
    "MultiDiscrete",
    "action_mask",
    "action_mask_kind",
    "has_action_mask",
    "observation_shapes",
    "without_action_mask",
    "Wrapper",
    "EpisodeStats",
    "EpisodeStatsState",
    "BatchEnv",
    "FlattenObservation",
    "NormalizeObservation",
    "ObsNormState",
    "ObsNormStats",
    "RescaleAction",
    "ClipAction",
    "obs_norm_stats",
    "normalize_obs",
    "update_obs_norm_stats",
    "with_obs_norm_stats",
    "episode_returns",
    "step_limit",
    "EpisodeResults",
]
