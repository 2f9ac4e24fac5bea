"""Wrappers that are themselves gymnax environments.

Every wrapper has ``reset(key, params) -> (obs, state)``,
``step(key, state, action, params) -> (obs, state, reward, terminated,
truncated, info)`` (the gymnax 1.0 step, auto-reset included),
``observation_space``, ``action_space`` and ``default_params``, and forwards
any other attribute to the env it wraps. Wrapper states are
``flax.struct`` dataclasses holding the inner state in ``env_state``, so whole
stacks run under ``jit``, ``vmap`` and ``lax.scan``.

``terminated`` and ``truncated`` pass through every wrapper untouched: a time
limit is never turned into a terminal state.

The usual training stack (statistics per env, normalisation shared across
the batch)::

    env = NormalizeObservation(BatchEnv(EpisodeStats(RescaleAction(env)), num_envs))
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import spaces

from jaxrl.envs.spaces import ACTION_MASK

StepResult = tuple[Any, Any, jax.Array, jax.Array, jax.Array, dict[str, Any]]


class Wrapper:
    """Forwards everything to ``env``; subclasses override what they change."""

    def __init__(self, env: Any):
        self._env = env

    def __getattr__(self, name: str) -> Any:
        # Dunder and private lookups must not recurse through a half-built
        # wrapper (copy/pickle create instances without calling __init__).
        if name.startswith("__") or name == "_env":
            raise AttributeError(name)
        return getattr(self._env, name)

    @property
    def unwrapped(self) -> Any:
        """The innermost (gymnax) environment."""
        return getattr(self._env, "unwrapped", self._env)

    @property
    def default_params(self) -> Any:
        return self._env.default_params

    def observation_space(self, params: Any) -> Any:
        return self._env.observation_space(params)

    def action_space(self, params: Any) -> Any:
        return self._env.action_space(params)

    def _params(self, params: Any) -> Any:
        return self.default_params if params is None else params

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._env!r})"


# --------------------------------------------------------------------------- #
# Episode statistics
# --------------------------------------------------------------------------- #


@struct.dataclass
class EpisodeStatsState:
    env_state: Any
    episode_return: jax.Array
    """Undiscounted return of the episode in progress (float32)."""
    episode_length: jax.Array
    """Steps taken in the episode in progress (int32)."""


class EpisodeStats(Wrapper):
    """Tracks each episode's return and length, and reports completed ones.

    ``info`` gains:
      - ``episode_done``: ``terminated | truncated`` (bool);
      - ``episode_return``: the completed episode's undiscounted return where
        ``episode_done``, else 0 (float32);
      - ``episode_length``: its number of steps where ``episode_done``, else 0
        (int32).

    So the mean return of the episodes that ended in a rollout is
    ``sum(episode_return) / max(sum(episode_done), 1)``, computable in jit.

    Usually wraps one unbatched env and sits inside a :class:`BatchEnv`; it
    also works on top of a batched env (its counters take the batch shape).
    """

    @partial(jax.jit, static_argnames=("self",))
    def reset(self, key: jax.Array, params: Any = None) -> tuple[Any, EpisodeStatsState]:
        params = self._params(params)
        obs, env_state = self._env.reset(key, params)
        batch_shape = _batch_shape(obs, self._env.observation_space(params))
        state = EpisodeStatsState(
            env_state=env_state,
            episode_return=jnp.zeros(batch_shape, jnp.float32),
            episode_length=jnp.zeros(batch_shape, jnp.int32),
        )
        return obs, state

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key: jax.Array, state: EpisodeStatsState, action: Any, params: Any = None) -> StepResult:
        params = self._params(params)
        obs, env_state, reward, terminated, truncated, info = self._env.step(
            key, state.env_state, action, params
        )
        done = jnp.logical_or(terminated, truncated)
        episode_return = state.episode_return + reward.astype(jnp.float32)
        episode_length = state.episode_length + 1
        info = {
            **info,
            "episode_done": done,
            "episode_return": jnp.where(done, episode_return, 0.0),
            "episode_length": jnp.where(done, episode_length, 0),
        }
        state = EpisodeStatsState(
            env_state=env_state,
            episode_return=jnp.where(done, 0.0, episode_return),
            episode_length=jnp.where(done, 0, episode_length),
        )
        return obs, state, reward, terminated, truncated, info


def _batch_shape(obs: jax.Array, observation_space: Any) -> tuple[int, ...]:
    """Leading axes of ``obs`` beyond one observation's shape (read from the
    first array of a Dict observation)."""
    if isinstance(observation_space, spaces.Dict):
        obs = jax.tree.leaves(obs)[0]
        observation_space = jax.tree.leaves(observation_space.spaces, is_leaf=_is_space)[0]
    obs_ndim = len(observation_space.shape)
    return tuple(jnp.shape(obs)[: jnp.ndim(obs) - obs_ndim])


# --------------------------------------------------------------------------- #
# Batching
# --------------------------------------------------------------------------- #


class BatchEnv(Wrapper):
    """``num_envs`` independent copies of ``env``, vmapped.

    ``reset`` and ``step`` split their key into one key per copy; ``step`` also
    takes ``[num_envs]`` keys, one per copy, from a caller that draws them
    ahead to keep PRNG work out of its loop. ``step``
    takes a batch of actions ``[num_envs, ...]`` and returns batched results
    (``reward``, ``terminated``, ``truncated`` of shape ``[num_envs]``).
    ``observation_space``/``action_space`` stay those of one copy.
    """

    def __init__(self, env: Any, num_envs: int):
        if not isinstance(num_envs, (int, np.integer)) or isinstance(num_envs, bool) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        super().__init__(env)
        self.num_envs = int(num_envs)

    @partial(jax.jit, static_argnames=("self",))
    def reset(self, key: jax.Array, params: Any = None) -> tuple[Any, Any]:
        params = self._params(params)
        keys = jax.random.split(key, self.num_envs)
        return jax.vmap(self._env.reset, in_axes=(0, None))(keys, params)

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key: jax.Array, state: Any, action: Any, params: Any = None) -> StepResult:
        params = self._params(params)
        keys = key if _is_key_batch(key) else jax.random.split(key, self.num_envs)
        return jax.vmap(self._env.step, in_axes=(0, 0, 0, None))(keys, state, action, params)

    def __repr__(self) -> str:
        return f"BatchEnv({self._env!r}, num_envs={self.num_envs})"


def _is_key_batch(key: jax.Array) -> bool:
    """True for a batch of keys: typed keys ``[N]`` or raw uint32 keys ``[N, 2]``."""
    typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    return key.ndim == (1 if typed else 2)


# --------------------------------------------------------------------------- #
# Observation normalisation
# --------------------------------------------------------------------------- #

DEFAULT_OBS_CLIP = 10.0
DEFAULT_OBS_EPSILON = 1e-8


@struct.dataclass
class ObsNormStats:
    """Running statistics of observations, per observation element.

    ``mean`` and ``var`` (population variance, ``ddof=0``) are exactly those
    of the ``count`` observations seen so far. ``clip`` and ``epsilon`` are
    static settings carried along so that :func:`normalize_obs` applies the
    same transform the wrapper did.
    """

    mean: jax.Array
    var: jax.Array
    count: jax.Array
    clip: float = struct.field(pytree_node=False, default=DEFAULT_OBS_CLIP)
    epsilon: float = struct.field(pytree_node=False, default=DEFAULT_OBS_EPSILON)


def initial_obs_norm_stats(
    obs_shape: tuple[int, ...], clip: float = DEFAULT_OBS_CLIP, epsilon: float = DEFAULT_OBS_EPSILON
) -> ObsNormStats:
    """Mean 0, variance 1, count 0: the identity transform until data arrive.

    A count of exactly 0 (not a small ε) makes the first update return the
    batch's own moments, so the statistics are always exact.
    """
    return ObsNormStats(
        mean=jnp.zeros(obs_shape, jnp.float32),
        var=jnp.ones(obs_shape, jnp.float32),
        count=jnp.zeros((), jnp.float32),
        clip=clip,
        epsilon=epsilon,
    )


def update_obs_norm_stats(stats: ObsNormStats, obs: jax.Array) -> ObsNormStats:
    """Merges a batch of observations into ``stats``.

    Every leading axis of ``obs`` beyond one observation's shape is a batch
    axis (so a single observation is a batch of one). The batch's moments are
    merged with the parallel-variance rule (Chan et al.):

        δ = m_B − m_A,  n = n_A + n_B,  m = m_A + δ n_B / n,
        M2 = var_A n_A + var_B n_B + δ² n_A n_B / n,  var = M2 / n.
    """
    obs = jnp.asarray(obs, jnp.float32)
    batch_axes = tuple(range(obs.ndim - stats.mean.ndim))
    batch_count = jnp.float32(np.prod([obs.shape[a] for a in batch_axes], dtype=np.int64))
    batch_mean = jnp.mean(obs, axis=batch_axes)
    batch_var = jnp.var(obs, axis=batch_axes)

    total = stats.count + batch_count
    delta = batch_mean - stats.mean
    mean = stats.mean + delta * (batch_count / total)
    m2 = stats.var * stats.count + batch_var * batch_count + delta**2 * (stats.count * batch_count / total)
    return stats.replace(mean=mean, var=m2 / total, count=total)


def normalize_obs(stats: ObsNormStats, obs: jax.Array, clip: float | None = None) -> jax.Array:
    """``clip((obs − mean) / sqrt(var + ε), −clip, clip)`` as float32.

    ``clip`` defaults to the one the statistics were gathered with. Use it to
    run a policy trained on normalised observations in a plain env with
    frozen statistics (``obs_norm_stats(train_state.env_state)``).
    """
    clip = stats.clip if clip is None else clip
    normalized = (jnp.asarray(obs, jnp.float32) - stats.mean) / jnp.sqrt(stats.var + stats.epsilon)
    return jnp.clip(normalized, -clip, clip)


@struct.dataclass
class ObsNormState:
    env_state: Any
    obs_norm: ObsNormStats


class NormalizeObservation(Wrapper):
    """Normalises observations with running statistics held in the env state.

    Wrap a :class:`BatchEnv` so one set of statistics is shared by the whole
    batch: each ``step`` merges every returned observation of the batch into
    the statistics, then normalises with the updated statistics both ``obs``
    and ``info["final_observation"]`` (so values bootstrapped on truncation
    see the same transform as the next step's observation). Unbatched use
    works too (a batch of one per step).

    - ``reset`` starts fresh statistics (mean 0, var 1, count 0) and merges the
      reset observations; auto-resets inside ``step`` do not reset them.
    - Only returned observations are counted: the pre-reset
      ``final_observation`` of an ended episode is normalised, not counted.
    - ``frozen=True`` never updates the statistics; install trained ones with
      :func:`with_obs_norm_stats` after ``reset``.

    The observation space becomes an unbounded float32 Box (values lie in
    ``[-clip, clip]``).
    """

    def __init__(
        self,
        env: Any,
        epsilon: float = DEFAULT_OBS_EPSILON,
        clip: float = DEFAULT_OBS_CLIP,
        frozen: bool = False,
    ):
        if not epsilon > 0 or not clip > 0:
            raise ValueError(f"epsilon and clip must be positive, got epsilon={epsilon}, clip={clip}")
        if isinstance(env.observation_space(env.default_params), spaces.Dict):
            raise ValueError(
                "NormalizeObservation needs array observations, got a Dict: "
                "its arrays differ in kind (images, counts, masks); normalise per key in the network"
            )
        super().__init__(env)
        self.epsilon = float(epsilon)
        self.clip = float(clip)
        self.frozen = bool(frozen)

    def observation_space(self, params: Any) -> spaces.Box:
        shape = tuple(self._env.observation_space(params).shape)
        return spaces.Box(-self.clip, self.clip, shape, jnp.float32)

    def _update(self, stats: ObsNormStats, obs: jax.Array) -> ObsNormStats:
        return stats if self.frozen else update_obs_norm_stats(stats, obs)

    @partial(jax.jit, static_argnames=("self",))
    def reset(self, key: jax.Array, params: Any = None) -> tuple[jax.Array, ObsNormState]:
        params = self._params(params)
        obs, env_state = self._env.reset(key, params)
        obs_shape = tuple(self._env.observation_space(params).shape)
        stats = self._update(initial_obs_norm_stats(obs_shape, self.clip, self.epsilon), obs)
        return normalize_obs(stats, obs), ObsNormState(env_state=env_state, obs_norm=stats)

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key: jax.Array, state: ObsNormState, action: Any, params: Any = None) -> StepResult:
        params = self._params(params)
        obs, env_state, reward, terminated, truncated, info = self._env.step(
            key, state.env_state, action, params
        )
        stats = self._update(state.obs_norm, obs)
        if "final_observation" in info:
            info = {**info, "final_observation": normalize_obs(stats, info["final_observation"])}
        state = ObsNormState(env_state=env_state, obs_norm=stats)
        return normalize_obs(stats, obs), state, reward, terminated, truncated, info


def obs_norm_stats(env_state: Any) -> ObsNormStats | None:
    """The :class:`ObsNormStats` inside a (possibly nested) wrapper state, or
    None when no :class:`NormalizeObservation` is in the stack."""
    while env_state is not None:
        if isinstance(env_state, ObsNormState):
            return env_state.obs_norm
        env_state = getattr(env_state, "env_state", None)
    return None


def with_obs_norm_stats(env_state: Any, stats: ObsNormStats) -> Any:
    """``env_state`` with the nested :class:`ObsNormStats` replaced by ``stats``
    (``ValueError`` if the stack has no :class:`NormalizeObservation`)."""
    if isinstance(env_state, ObsNormState):
        return env_state.replace(obs_norm=stats)
    inner = getattr(env_state, "env_state", None)
    if inner is None:
        raise ValueError("no NormalizeObservation state found in this env state")
    return env_state.replace(env_state=with_obs_norm_stats(inner, stats))


# --------------------------------------------------------------------------- #
# Continuous actions
# --------------------------------------------------------------------------- #


def _box_action_space(env: Any, wrapper: str) -> spaces.Box:
    space = env.action_space(env.default_params)
    if not isinstance(space, spaces.Box):
        raise ValueError(
            f"{wrapper} needs a continuous (Box) action space, but "
            f"{getattr(env, 'name', env)!s} has a {type(space).__name__} action space"
        )
    return space


def _bounds(space: spaces.Box) -> tuple[jax.Array, jax.Array]:
    # Bounds may depend on env params (Pendulum's max_torque), so they are
    # read from the space at trace time and may be tracers.
    shape = tuple(space.shape)
    low = jnp.broadcast_to(jnp.asarray(space.low, jnp.float32), shape)
    high = jnp.broadcast_to(jnp.asarray(space.high, jnp.float32), shape)
    return low, high


class ClipAction(Wrapper):
    """Clips continuous actions to the env's action bounds; the action space is
    unchanged (the bounds are still what the agent should aim for)."""

    def __init__(self, env: Any):
        _box_action_space(env, "ClipAction")
        super().__init__(env)

    def env_action(self, action: jax.Array, params: Any = None) -> jax.Array:
        """The action the wrapped env receives."""
        space = self._env.action_space(self._params(params))
        low, high = _bounds(space)
        return jnp.clip(jnp.asarray(action, jnp.float32), low, high).astype(space.dtype)

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key: jax.Array, state: Any, action: Any, params: Any = None) -> StepResult:
        params = self._params(params)
        return self._env.step(key, state, self.env_action(action, params), params)


class RescaleAction(Wrapper):
    """The agent acts in ``[low, high]`` (default ``[-1, 1]``); actions are
    clipped to that range and mapped linearly onto the env's bounds, so
    ``low`` ↦ env low and ``high`` ↦ env high."""

    def __init__(self, env: Any, low: float = -1.0, high: float = 1.0):
        space = _box_action_space(env, "RescaleAction")
        if not low < high:
            raise ValueError(f"RescaleAction needs low < high, got low={low}, high={high}")
        if not (np.all(np.isfinite(np.asarray(space.low))) and np.all(np.isfinite(np.asarray(space.high)))):
            raise ValueError(f"RescaleAction needs finite action bounds, got {space!r}")
        super().__init__(env)
        self.low = float(low)
        self.high = float(high)

    def action_space(self, params: Any) -> spaces.Box:
        inner = self._env.action_space(params)
        return spaces.Box(self.low, self.high, tuple(inner.shape), inner.dtype)

    def env_action(self, action: jax.Array, params: Any = None) -> jax.Array:
        """The action the wrapped env receives."""
        space = self._env.action_space(self._params(params))
        env_low, env_high = _bounds(space)
        action = jnp.clip(jnp.asarray(action, jnp.float32), self.low, self.high)
        fraction = (action - self.low) / (self.high - self.low)
        # Clip again: rounding must not push the action past the env's bounds.
        return jnp.clip(env_low + fraction * (env_high - env_low), env_low, env_high).astype(space.dtype)

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key: jax.Array, state: Any, action: Any, params: Any = None) -> StepResult:
        params = self._params(params)
        return self._env.step(key, state, self.env_action(action, params), params)


# --------------------------------------------------------------------------- #
# Dict observations
# --------------------------------------------------------------------------- #


class FlattenObservation(Wrapper):
    """Concatenates every array of a Dict observation (nested dicts too) into
    one float32 vector, for MLP torsos. Keys are taken in sorted order (JAX's
    order for dicts). An env's action mask is not flattened: with one, the
    observation becomes ``{"observation": vector, "action_mask": mask}``
    (still a Dict space), so the mask stays where :func:`jaxrl.envs.action_mask`
    looks. Array observations pass through unchanged, and leading batch axes
    are kept, so it also works on top of a ``BatchEnv``.
    """

    def _layout(self, params: Any) -> tuple[Any, bool]:
        space = self._env.observation_space(params)
        if not isinstance(space, spaces.Dict):
            return None, False
        rest = {k: s for k, s in space.spaces.items() if k != ACTION_MASK}
        return rest, ACTION_MASK in space.spaces

    def observation_space(self, params: Any) -> Any:
        rest, masked = self._layout(params)
        if rest is None:
            return self._env.observation_space(params)
        size = sum(int(np.prod(s.shape, dtype=np.int64)) for s in jax.tree.leaves(rest, is_leaf=_is_space))
        flat = spaces.Box(-jnp.inf, jnp.inf, (size,), jnp.float32)
        if not masked:
            return flat
        return spaces.Dict({"observation": flat, ACTION_MASK: self._env.observation_space(params).spaces[ACTION_MASK]})

    def flatten(self, obs: Any, params: Any = None) -> Any:
        """``obs`` (from the wrapped env, any batch axes) as this wrapper returns it."""
        rest, masked = self._layout(self._params(params))
        if rest is None:
            return obs
        leaves = jax.tree.leaves({k: obs[k] for k in rest})
        shapes = jax.tree.leaves(rest, is_leaf=_is_space)
        batch_shape = jnp.shape(leaves[0])[: jnp.ndim(leaves[0]) - len(shapes[0].shape)]
        flat = jnp.concatenate(
            [jnp.reshape(leaf, (*batch_shape, -1)).astype(jnp.float32) for leaf in leaves], axis=-1
        )
        return {"observation": flat, ACTION_MASK: obs[ACTION_MASK]} if masked else flat

    @partial(jax.jit, static_argnames=("self",))
    def reset(self, key: jax.Array, params: Any = None) -> tuple[Any, Any]:
        params = self._params(params)
        obs, state = self._env.reset(key, params)
        return self.flatten(obs, params), state

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key: jax.Array, state: Any, action: Any, params: Any = None) -> StepResult:
        params = self._params(params)
        obs, state, reward, terminated, truncated, info = self._env.step(key, state, action, params)
        if "final_observation" in info:
            info = {**info, "final_observation": self.flatten(info["final_observation"], params)}
        return self.flatten(obs, params), state, reward, terminated, truncated, info


def _is_space(x: Any) -> bool:
    return isinstance(x, spaces.Space)
