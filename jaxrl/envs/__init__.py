"""Environments: ``make(id)`` over gymnax and our probe envs, wrappers, and
episode evaluation.

    from jaxrl import envs
    env, env_params = envs.make("CartPole-v1")
    train_env = envs.NormalizeObservation(envs.BatchEnv(envs.EpisodeStats(env), 8))

Importing this package registers the probe environments (``Probe-*-v0``) and the
sparse-reward goal environments ``DecisionProcess-v0`` and ``KeyDoor-v0``.
"""

from jaxrl.envs import probes  # noqa: F401  (registers the probe envs)
from jaxrl.envs import hierarchical  # noqa: F401  (registers DecisionProcess-v0, KeyDoor-v0)
from jaxrl.envs.evaluate import EpisodeResults, episode_returns
from jaxrl.envs.registry import (
    action_shape,
    action_space_kind,
    list_envs,
    make,
    num_actions,
    observation_shape,
    register,
    validate_env_for,
)
from jaxrl.envs.wrappers import (
    BatchEnv,
    ClipAction,
    EpisodeStats,
    EpisodeStatsState,
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
    "Wrapper",
    "EpisodeStats",
    "EpisodeStatsState",
    "BatchEnv",
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
    "EpisodeResults",
]
