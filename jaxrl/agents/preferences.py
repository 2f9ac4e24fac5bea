"""Preferences between trajectory segments (Christiano et al. 2017,
arXiv:1706.03741): the pieces of rm-ppo that know nothing of PPO.

- :class:`Trajectory` and :class:`Segments`: time-major steps and the
  ``[N, L, ...]`` segments cut from them (:func:`sample_segments`), masked
  after the first episode end each contains (:func:`episode_mask`);
- :func:`oracle_preferences`: the synthetic labeller, and
  :func:`ask_labeller`: the host call to people's (``labels="human"``);
- :class:`RewardNet` and :class:`RewardModel`: an ensemble of r̂(s, a) MLPs,
  its normalisation (:func:`normalisation`), query selection by ensemble
  disagreement, and the Bradley–Terry fit (:func:`fit_ensemble`);
- :class:`LabelBuffer`: the labelled pairs a run has collected.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from flax import struct
from jax.experimental import io_callback

from jaxrl import ops
from jaxrl.networks import MLP

LEFT, RIGHT, EQUAL = 1.0, 0.0, 0.5
"""Preference μ = probability mass on "left preferred" for each answer."""


# --------------------------------------------------------------------------- #
# Segments
# --------------------------------------------------------------------------- #


class Trajectory(struct.PyTreeNode):
    """Time-major ``[T, B, ...]`` steps: s_t, a_t, true r_t and whether the
    episode ended at t (terminated or truncated)."""

    obs: jax.Array
    action: jax.Array
    true_reward: jax.Array
    done: jax.Array


class Segments(struct.PyTreeNode):
    """``[N, L, ...]`` segments. ``mask`` is 1 up to and including the first
    episode end in the segment, 0 after it. ``ids`` identify the segment's
    first step (see :func:`sample_segments`)."""

    obs: jax.Array
    action: jax.Array
    true_reward: jax.Array
    mask: jax.Array
    ids: jax.Array

    def true_return(self) -> jax.Array:
        return (self.true_reward * self.mask).sum(-1)


def episode_mask(done: jax.Array) -> jax.Array:
    """``[..., L]`` 1 up to and including the first ``done``, 0 after it."""
    done = done.astype(jnp.float32)
    ended_before = jnp.cumsum(done, axis=-1) - done
    return (ended_before == 0).astype(jnp.float32)


def sample_segments(key: jax.Array, traj: Trajectory, num: int, length: int,
                    id_offset: jax.Array | int = 0) -> Segments:
    """``num`` segments of ``length`` steps cut at random places of a
    time-major trajectory. A segment's id is
    ``id_offset + env_index * T + start`` (unique within one rollout; pass
    ``iteration * T * B`` as ``id_offset`` to make ids unique in a run).

    The segments are distinct while the rollout has ``num`` places to cut
    them, so no query compares a segment with itself and no round asks the
    same pair twice (a person's label would be spent on a duplicate)."""
    T, B = traj.done.shape[:2]
    chex.assert_axis_dimension_gteq(traj.done, 0, length)
    starts_per_env = T - length + 1
    place = jax.random.choice(key, B * starts_per_env, (num,), replace=num > B * starts_per_env)
    env, start = place // starts_per_env, place % starts_per_env
    steps = start[:, None] + jnp.arange(length)[None, :]  # [num, L]
    take = lambda x: x[steps, env[:, None]]
    return Segments(
        obs=take(traj.obs),
        action=take(traj.action),
        true_reward=take(traj.true_reward).astype(jnp.float32),
        mask=episode_mask(take(traj.done)),
        ids=(jnp.asarray(id_offset, jnp.int32) + env * T + start).astype(jnp.int32),
    )


def empty_segments(num: int, length: int, obs_dim: int, action_shape: tuple[int, ...],
                   action_dtype) -> Segments:
    """``num`` all-zero segments with flat observations (a buffer's initial content)."""
    zeros = jnp.zeros((num, length), jnp.float32)
    return Segments(obs=jnp.zeros((num, length, obs_dim), jnp.float32),
                    action=jnp.zeros((num, length) + action_shape, action_dtype),
                    true_reward=zeros, mask=zeros, ids=jnp.zeros((num,), jnp.int32))


# --------------------------------------------------------------------------- #
# The synthetic labeller
# --------------------------------------------------------------------------- #


def oracle_preferences(key: jax.Array, return_left: jax.Array, return_right: jax.Array,
                       temperature: jax.Array | float = 0.0,
                       tie_margin: jax.Array | float = 0.0) -> jax.Array:
    """Synthetic labeller: μ ∈ {1 (left), 0 (right), 0.5 (equal)} per pair.

    Returns within ``tie_margin`` of each other are equal. Otherwise, with
    ``temperature`` β = 0 the higher true return wins; with β > 0 the choice
    is Boltzmann-rational, P[left] = sigmoid((R¹ − R²) / β).
    """
    chex.assert_equal_shape([return_left, return_right])
    diff = return_left - return_right
    temperature = jnp.asarray(temperature, jnp.float32)
    safe_t = jnp.where(temperature > 0, temperature, 1.0)
    p_left = jnp.where(temperature > 0, jax.nn.sigmoid(diff / safe_t), (diff > 0).astype(jnp.float32))
    left = jax.random.uniform(key, diff.shape) < p_left
    choice = jnp.where(left, LEFT, RIGHT)
    return jnp.where(jnp.abs(diff) <= tie_margin, EQUAL, choice).astype(jnp.float32)


# --------------------------------------------------------------------------- #
# Labels from people: a host call inside the jitted step
# --------------------------------------------------------------------------- #


def _call_labeller(labeller: Callable, iteration, left, right, valid):
    to_np = lambda tree: jax.tree.map(np.asarray, tree)
    preference, answered = labeller(int(iteration), to_np(left), to_np(right), np.asarray(valid))
    return np.asarray(preference, np.float32), np.asarray(answered, bool)


def ask_labeller(labeller: Callable, iteration: jax.Array, left: Segments, right: Segments,
                 valid: jax.Array) -> tuple[jax.Array, jax.Array]:
    """μ and whether each of the ``[K]`` queries was answered, from ``labeller``:
    ``labeller(iteration, left, right, valid) -> (preference [K], answered [K])``
    with NumPy :class:`Segments` ``[K, L, ...]`` and ``valid [K]`` (the queries
    due); ``preference`` is μ (1 left, 0 right, 0.5 equal). Unordered
    io_callback: under ``vmap`` (one seed in ``run.train``) it is called once per seed."""
    K = valid.shape[0]
    shapes = (jax.ShapeDtypeStruct((K,), jnp.float32), jax.ShapeDtypeStruct((K,), jnp.bool_))
    return io_callback(functools.partial(_call_labeller, labeller), shapes, iteration, left, right, valid)


def no_labeller(iteration, left, right, valid):
    """The labeller of an agent built only to evaluate or export a run: asking it is an error."""
    raise RuntimeError(
        "this rm-ppo agent (labels='human') was made with no_labeller, to evaluate or export; "
        "to train it run `jaxrl train rm-ppo --labels human`, or make it with "
        "labeller=jaxrl.feedback.HumanLabeller(run_dir)")


# --------------------------------------------------------------------------- #
# Reward model: an ensemble of r(s, a) MLPs
# --------------------------------------------------------------------------- #


class RewardNet(nn.Module):
    """r̂(s, a): an MLP over the flattened observation and the action (one-hot
    for discrete actions)."""

    num_actions: int  # 0 for continuous actions
    hidden_sizes: tuple[int, ...] = (64, 64)
    activation: str = "tanh"

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        if self.num_actions:
            action = jax.nn.one_hot(action, self.num_actions)
        x = jnp.concatenate([obs.astype(jnp.float32), action.astype(jnp.float32)], axis=-1)
        x = MLP(self.hidden_sizes, self.activation)(x)
        return nn.Dense(1)(x)[..., 0]


@struct.dataclass
class RewardNorm:
    """r_norm = (r̂ − shift) / scale."""

    shift: jax.Array
    scale: jax.Array


class RewardModel(struct.PyTreeNode):
    """Pure functions of an ensemble of ``size`` reward nets (members vmapped)."""

    net: RewardNet = struct.field(pytree_node=False)
    size: int = struct.field(pytree_node=False)
    obs_dim: int = struct.field(pytree_node=False)
    action_shape: tuple = struct.field(pytree_node=False)

    @property
    def action_dtype(self):
        return jnp.int32 if self.net.num_actions else jnp.float32

    def init(self, key: jax.Array) -> Any:
        obs = jnp.zeros((self.obs_dim,), jnp.float32)
        action = jnp.zeros(self.action_shape, self.action_dtype)
        return jax.vmap(lambda k: self.net.init(k, obs, action))(jax.random.split(key, self.size))

    def members(self, ensemble, obs: jax.Array, action: jax.Array) -> jax.Array:
        """Per-member rewards ``[size, ...]`` for any batch of (s, a)."""
        batch = action.shape[: action.ndim - len(self.action_shape)]
        obs = obs.reshape(batch + (self.obs_dim,))  # flatten whatever the observation's shape
        return jax.vmap(lambda p: self.net.apply(p, obs, action))(ensemble)

    def reward(self, ensemble, norm: RewardNorm, obs: jax.Array, action: jax.Array) -> jax.Array:
        """The normalised ensemble-mean reward the policy is trained on."""
        return (self.members(ensemble, obs, action).mean(0) - norm.shift) / norm.scale

    def segment_returns(self, ensemble, seg: Segments) -> jax.Array:
        """Masked predicted returns Σ r̂ per member: ``[size, N]``."""
        return (self.members(ensemble, seg.obs, seg.action) * seg.mask).sum(-1)


def preference_probabilities(model: RewardModel, ensemble, left: Segments, right: Segments) -> jax.Array:
    """P[σ¹ ≻ σ²] = sigmoid(R¹ − R²) per member: ``[size, N]``."""
    return jax.nn.sigmoid(model.segment_returns(ensemble, left) - model.segment_returns(ensemble, right))


def select_by_disagreement(model: RewardModel, ensemble, left: Segments, right: Segments,
                           num: int) -> jax.Array:
    """Indices of the ``num`` candidate pairs on which the members' P[σ¹ ≻ σ²]
    have the highest variance (most disagreement first)."""
    variance = preference_probabilities(model, ensemble, left, right).var(0)
    return jax.lax.top_k(variance, num)[1]


def normalisation(kind: str, rewards: jax.Array) -> RewardNorm:
    """Statistics that map ``rewards`` to unit scale: "standard" to zero mean
    and unit std (the paper's choice, for tasks without termination), "rms"
    to unit root mean square without centring (keeps the sign, which matters
    when episodes can end early), "none" leaves them."""
    one, zero = jnp.ones((), jnp.float32), jnp.zeros((), jnp.float32)
    if kind == "standard":
        return RewardNorm(shift=rewards.mean(), scale=rewards.std() + 1e-6)
    if kind == "rms":
        return RewardNorm(shift=zero, scale=jnp.sqrt(jnp.mean(rewards**2)) + 1e-6)
    return RewardNorm(shift=zero, scale=one)


def bradley_terry_per_pair(model: RewardModel, ensemble, left: Segments, right: Segments,
                           preference: jax.Array, noise) -> jax.Array:
    """Bradley–Terry loss per member and pair, ``[size, N]``."""
    r_left = model.segment_returns(ensemble, left)
    r_right = model.segment_returns(ensemble, right)
    preference = jnp.broadcast_to(preference, r_left.shape)
    return ops.bradley_terry_loss_per_element(r_left, r_right, preference, noise)


def label_accuracy(model: RewardModel, ensemble, left: Segments, right: Segments,
                   preference: jax.Array, weight: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Share of non-tie labels (weighted by ``weight``) whose preferred side
    the ensemble-mean return ranks higher; and how many counted."""
    margin = (model.segment_returns(ensemble, left) - model.segment_returns(ensemble, right)).mean(0)
    decided = (preference != EQUAL).astype(jnp.float32) * weight
    correct = ((margin > 0) == (preference > EQUAL)).astype(jnp.float32)
    n = decided.sum()
    return jnp.where(n > 0, (correct * decided).sum() / jnp.maximum(n, 1.0), 0.0), n


def fit_ensemble(model: RewardModel, optimizer: optax.GradientTransformation, ensemble, opt_state,
                 left: Segments, right: Segments, preference: jax.Array, weight: jax.Array,
                 key: jax.Array, num_steps: int, batch_size: int, noise=0.0):
    """``num_steps`` Adam steps on the Bradley–Terry loss. Each member draws its
    own bootstrap minibatch of ``batch_size`` pairs among the first
    ``count`` = (last index with weight > 0) + 1 entries; entries of weight 0
    (held out, or empty) contribute nothing. Returns (ensemble, opt_state,
    mean loss)."""
    count = jnp.max(jnp.where(weight > 0, jnp.arange(weight.shape[0]) + 1, 1))
    single = model.replace(size=1)

    def member_loss(params, idx):
        take = lambda x: x[idx]
        losses = bradley_terry_per_pair(single, jax.tree.map(lambda x: x[None], params),
                                        jax.tree.map(take, left), jax.tree.map(take, right),
                                        preference[idx], noise)[0]
        w = weight[idx]
        return (losses * w).sum() / jnp.maximum(w.sum(), 1.0)

    def one_update(carry, k):
        ensemble, opt_state = carry
        idx = jax.random.randint(k, (model.size, batch_size), 0, count)
        loss_fn = lambda e: jax.vmap(member_loss)(e, idx).sum()
        loss, grads = jax.value_and_grad(loss_fn)(ensemble)
        updates, opt_state = optimizer.update(grads, opt_state, ensemble)
        return (optax.apply_updates(ensemble, updates), opt_state), loss / model.size

    (ensemble, opt_state), losses = jax.lax.scan(
        one_update, (ensemble, opt_state), jax.random.split(key, num_steps))
    return ensemble, opt_state, losses.mean()


def correlation(x: jax.Array, y: jax.Array) -> jax.Array:
    """Pearson correlation (0 when either side is constant)."""
    x, y = x - x.mean(), y - y.mean()
    denom = jnp.sqrt((x**2).sum() * (y**2).sum())
    return jnp.where(denom > 0, (x * y).sum() / jnp.maximum(denom, 1e-12), 0.0)


# --------------------------------------------------------------------------- #
# Labelled pairs
# --------------------------------------------------------------------------- #


@struct.dataclass
class LabelBuffer:
    """Fixed-capacity store of labelled pairs (capacity = label_budget)."""

    left: Segments
    right: Segments
    preference: jax.Array
    count: jax.Array

    @property
    def capacity(self) -> int:
        return self.preference.shape[-1]


def empty_label_buffer(capacity: int, empty: Segments) -> LabelBuffer:
    """A buffer of ``capacity`` pairs of segments shaped like ``empty``."""
    return LabelBuffer(left=empty, right=empty, preference=jnp.zeros((capacity,), jnp.float32),
                       count=jnp.zeros((), jnp.int32))


def add_labels(buf: LabelBuffer, left: Segments, right: Segments, preference: jax.Array,
               valid: jax.Array) -> LabelBuffer:
    """``buf`` with the ``valid`` pairs appended in order (those past the
    capacity are dropped)."""
    capacity = buf.capacity
    slot = buf.count + jnp.cumsum(valid) - 1
    slot = jnp.where(valid & (slot < capacity), slot, capacity)  # capacity = dropped
    put = lambda store, new: store.at[slot].set(new.astype(store.dtype), mode="drop")
    return LabelBuffer(left=jax.tree.map(put, buf.left, left),
                       right=jax.tree.map(put, buf.right, right),
                       preference=put(buf.preference, preference),
                       count=jnp.minimum(buf.count + valid.sum(), capacity))


def label_weights(buf: LabelBuffer, holdout_every: int) -> tuple[jax.Array, jax.Array]:
    """Weights ``[capacity]`` of the stored labels trained on, and of those
    held out (every ``holdout_every``-th; none when 0)."""
    idx = jnp.arange(buf.capacity)
    held = (idx % holdout_every == holdout_every - 1) if holdout_every else idx < 0
    stored = idx < buf.count
    return (stored & ~held).astype(jnp.float32), (stored & held).astype(jnp.float32)
