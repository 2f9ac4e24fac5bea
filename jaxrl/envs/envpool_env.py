"""EnvPool environments on the host: ``envpool:<task>`` (``envpool:CartPole-v1``,
``envpool:Pong-v5``, ``envpool:HalfCheetah-v5``, ...).

:class:`EnvPoolBatchEnv` presents exactly the interface of
:class:`~jaxrl.envs.gymnasium_env.GymnasiumBatchEnv` (so the asynchronous
IMPALA actors take either), with the copies stepped in EnvPool's C++ thread
pool instead of one after another in Python. EnvPool resets a finished copy
on the *next* step, ignoring that step's action; here finished copies are
reset at once through EnvPool's partial reset, so ``obs`` after an ended
episode is already the next episode's first observation and every action is
used, as in Gymnasium's ``SAME_STEP`` mode.
"""

from __future__ import annotations

import numpy as np

from jaxrl.envs.gymnasium_env import GymnasiumBatchEnv, _to_gymnax_space

PREFIX = "envpool:"


def _import_envpool():
    try:
        import envpool
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError("EnvPool environments need the envpool package: pip install 'jaxrl[envpool]'") from e
    return envpool


class EnvPoolBatchEnv(GymnasiumBatchEnv):
    """``num_envs`` copies of EnvPool task ``task`` stepped together on the host.

    Args:
      task: an EnvPool task id (``"CartPole-v1"``; the ``envpool:`` prefix is allowed).
      num_envs: copies.
      seed: EnvPool's seed (copy ``i`` is seeded from ``seed + i``).
      num_threads: EnvPool's worker threads (0: one per copy, up to the cores).
      **env_kwargs: passed to ``envpool.make``.
    """

    def __init__(self, task: str, num_envs: int, seed: int = 0, num_threads: int = 0, **env_kwargs):
        if not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        envpool = _import_envpool()
        self.env_id = task[len(PREFIX):] if task.startswith(PREFIX) else task
        if self.env_id not in envpool.list_all_envs():
            raise ValueError(f"unknown EnvPool task {self.env_id!r}; see envpool.list_all_envs()")
        self.num_envs = int(num_envs)
        self.seed = int(seed)
        self._env = envpool.make(
            self.env_id, env_type="gymnasium", num_envs=self.num_envs, seed=self.seed,
            num_threads=int(num_threads), **env_kwargs,
        )
        self._obs_space = _to_gymnax_space(self._env.observation_space)
        self._action_space = _to_gymnax_space(self._env.action_space)
        self._returns = np.zeros(self.num_envs, np.float32)

    def reset(self) -> np.ndarray:
        obs, _ = self._env.reset()
        self._returns[:] = 0.0
        return np.asarray(obs, np.float32)

    def _step_and_reset(self, env_action) -> tuple[np.ndarray, ...]:
        obs, reward, terminated, truncated, _ = self._env.step(env_action)
        obs = np.asarray(obs, np.float32)
        terminated = np.asarray(terminated, bool)
        truncated = np.asarray(truncated, bool)
        final_obs = obs.copy()
        finished = np.flatnonzero(terminated | truncated)
        if finished.size:
            obs[finished] = np.asarray(self._env.reset(env_id=finished)[0], np.float32)
        return obs, np.asarray(reward, np.float32), terminated, truncated, final_obs
