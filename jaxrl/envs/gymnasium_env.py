"""Gymnasium environments on the host, batched, in the shape jaxrl's actors use.

gymnax environments run inside jitted code; Gymnasium environments are Python
and run on the host. :class:`GymnasiumBatchEnv` wraps a synchronous Gymnasium
vector env so that a host actor gets what a jitted ``BatchEnv(EpisodeStats(env))``
step gives it, as NumPy arrays:

    obs = env.reset()
    obs, reward, terminated, truncated, final_obs, episode_return, episode_done = env.step(action)

Auto-reset happens in the same step (Gymnasium's ``SAME_STEP`` mode): ``obs``
after a finished episode is the first observation of the next one, and
``final_obs`` is the true next observation of every env (the last observation
of a finished episode, else equal to ``obs``). As everywhere in jaxrl, a
truncated step bootstraps from ``final_obs`` and a terminated one does not.

``observation_space``/``action_space`` return gymnax spaces, so the network of
an agent (``impala.make_learner``) is built from this env exactly as from a
gymnax one. Continuous actions are taken in [-1, 1] and rescaled to the
env's bounds here (what ``RescaleAction`` does for gymnax envs).

Env ids with the prefix ``gymnasium:`` (e.g. ``gymnasium:CartPole-v1``) name
Gymnasium envs in the async IMPALA runtime and the CLI.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from gymnax.environments import spaces

PREFIX = "gymnasium:"


def is_gymnasium_id(env_id: str) -> bool:
    """Whether ``env_id`` names a host Gymnasium env (``gymnasium:<id>``)."""
    return env_id.startswith(PREFIX)


def gymnasium_name(env_id: str) -> str:
    """The Gymnasium id inside ``gymnasium:<id>``."""
    return env_id[len(PREFIX):] if is_gymnasium_id(env_id) else env_id


def _import_gymnasium():
    try:
        import gymnasium
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError(
            "Gymnasium environments need the gymnasium package: pip install 'jaxrl[gym]'"
        ) from e
    return gymnasium


def _to_gymnax_space(space) -> Any:
    gym = _import_gymnasium()
    if isinstance(space, gym.spaces.Discrete):
        return spaces.Discrete(int(space.n))
    if isinstance(space, gym.spaces.Box):
        return spaces.Box(np.asarray(space.low), np.asarray(space.high), space.shape, space.dtype)
    raise ValueError(
        f"unsupported Gymnasium space {type(space).__name__}: jaxrl handles Discrete and Box"
    )


class GymnasiumBatchEnv:
    """``num_envs`` copies of Gymnasium env ``env_id`` stepped together on the host.

    Args:
      env_id: a Gymnasium id (``"CartPole-v1"``; the ``gymnasium:`` prefix is allowed).
      num_envs: copies.
      seed: the copies are reset with seeds ``seed, seed + 1, ...``.
      **env_kwargs: passed to ``gymnasium.make``.
    """

    def __init__(self, env_id: str, num_envs: int, seed: int = 0, **env_kwargs):
        if not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        gym = _import_gymnasium()
        self.env_id = gymnasium_name(env_id)
        self.num_envs = int(num_envs)
        self.seed = int(seed)
        self._env = gym.make_vec(
            self.env_id,
            num_envs=self.num_envs,
            vectorization_mode="sync",
            vector_kwargs=dict(autoreset_mode=gym.vector.AutoresetMode.SAME_STEP),
            **env_kwargs,
        )
        self._obs_space = _to_gymnax_space(self._env.single_observation_space)
        self._action_space = _to_gymnax_space(self._env.single_action_space)
        self._returns = np.zeros(self.num_envs, np.float32)

    # gymnax-style spaces (``params`` is ignored): what make_learner reads.
    def observation_space(self, params: Any = None):
        return self._obs_space

    def action_space(self, params: Any = None):
        return self._action_space

    @property
    def default_params(self) -> None:
        return None

    def reset(self) -> np.ndarray:
        obs, _ = self._env.reset(seed=self.seed)
        self._returns[:] = 0.0
        return np.asarray(obs, np.float32)

    def _env_action(self, action) -> np.ndarray:
        action = np.asarray(action)
        if isinstance(self._action_space, spaces.Discrete):
            return action.astype(np.int64)
        low, high = np.asarray(self._action_space.low), np.asarray(self._action_space.high)
        return low + (np.clip(action, -1.0, 1.0) + 1.0) * 0.5 * (high - low)

    def step(self, action) -> tuple[np.ndarray, ...]:
        """``(obs, reward, terminated, truncated, final_obs, episode_return,
        episode_done)`` for a batch of actions; ``episode_return`` is the
        return of the episode that ended on this step (0 where none did)."""
        obs, reward, terminated, truncated, final_obs = self._step_and_reset(self._env_action(action))
        done = terminated | truncated
        self._returns += reward
        episode_return = np.where(done, self._returns, 0.0).astype(np.float32)
        self._returns[done] = 0.0
        return obs, reward, terminated, truncated, final_obs, episode_return, done

    def _step_and_reset(self, env_action) -> tuple[np.ndarray, ...]:
        """``(obs, reward, terminated, truncated, final_obs)`` with finished
        copies already reset (``obs``) and their last observation in ``final_obs``."""
        obs, reward, terminated, truncated, info = self._env.step(env_action)
        obs = np.asarray(obs, np.float32)
        terminated = np.asarray(terminated, bool)
        truncated = np.asarray(truncated, bool)
        final_obs = obs.copy()
        for i in np.flatnonzero(terminated | truncated):
            final_obs[i] = info["final_obs"][i]
        return obs, np.asarray(reward, np.float32), terminated, truncated, final_obs

    def close(self) -> None:
        self._env.close()


def host_episode_returns(
    make_env: Callable[[int], GymnasiumBatchEnv],
    policy_fn: Callable[[np.ndarray], np.ndarray],
    num_episodes: int,
    max_steps: int = 100_000,
) -> np.ndarray:
    """Returns of the first episode of each of ``num_episodes`` host envs
    (``make_env(num_envs)``), acting with ``policy_fn(obs_batch) -> actions``."""
    env = make_env(num_episodes)
    try:
        obs = env.reset()
        returns = np.zeros(num_episodes, np.float32)
        finished = np.zeros(num_episodes, bool)
        for _ in range(max_steps):
            obs, reward, terminated, truncated, *_ = env.step(policy_fn(obs))
            returns += np.where(finished, 0.0, reward)
            finished |= terminated | truncated
            if finished.all():
                break
        return returns
    finally:
        env.close()
