"""Reward modelling from pairwise preferences (Christiano et al. 2017,
arXiv:1706.03741), with PPO as the policy learner.

What to do (a reward model r̂(s, a) trained on preferences between trajectory
segments) is learned apart from how to do it (PPO maximising r̂). One
``step`` of the ``rm-ppo`` agent is one iteration of the paper's loop:

1. PPO collects a rollout with the current policy on the *learned* reward
   (the :class:`LearnedReward` wrapper records the rollout's observations,
   actions and true rewards) and updates the policy;
2. candidate segment pairs are cut from that rollout, and queries are picked
   at random or by ensemble disagreement (variance of P[σ¹ ≻ σ²] across
   members), as many as the label schedule allows this iteration;
3. a labeller answers left / right / equal (here the synthetic oracle, which
   prefers the higher true return);
4. the ensemble takes gradient steps on the Bradley–Terry loss
   (:func:`jaxrl.ops.bradley_terry_loss`), each member on its own bootstrap
   minibatch, and the reward's normalisation is refreshed.

Segments end at the first episode end they contain: the steps after it
(auto-reset has started a new episode) are masked out of both the true and
the predicted segment return. So on CartPole, whose reward is +1 on every
step, a segment that falls over early has the lower return, and the model
learns a reward whose sign matters; that is why the default normalisation
("rms") rescales without centring. Every ``holdout_every``-th label is kept
out of training and gives ``label_accuracy``.

Labels from people (``labels="human"``) keep the step one jitted program:
step 3 becomes a host call (``jax.experimental.io_callback``) to the labeller
installed with :func:`use_labeller` (:class:`jaxrl.feedback.HumanLabeller`
writes the queries to the run directory and waits until they are answered in
its label store). Everything else stays on the device, so ``jaxrl.run.train``
chunks, checkpoints and resumes a human run like any other. A resumed run
replays from its checkpoint bit for bit, asks the same queries (same segment
ids) again, and finds their answers in the store without waiting.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Callable, Iterator

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from flax import struct
from jax.experimental import io_callback

from jaxrl import envs, ops
from jaxrl.agents import ppo
from jaxrl.agents.base import Agent, config_requirer
from jaxrl.config import Check, field, non_negative, one_of, positive, sizes, swept_fields
from jaxrl.envs.wrappers import StepResult, Wrapper
from jaxrl.networks import MLP

ACTION_SPACES = ("discrete", "continuous")
LABELLERS = ("synthetic", "human")
QUERY_SELECTIONS = ("disagreement", "random")
REWARD_NORMS = ("rms", "standard", "none")
LABEL_SCHEDULES = ("uniform", "decreasing")

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
    episode_true_return: jax.Array | None = None
    """True return of the episode that ended at t (where ``done``)."""


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


# --------------------------------------------------------------------------- #
# Labellers
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


@struct.dataclass
class RewardParams:
    """What :class:`LearnedReward` needs to compute rewards: the ensemble's
    stacked parameters and the normalisation."""

    ensemble: Any
    norm: RewardNorm


class RewardModel(struct.PyTreeNode):
    """Pure functions of an ensemble of ``size`` reward nets (members vmapped)."""

    net: RewardNet = struct.field(pytree_node=False)
    size: int = struct.field(pytree_node=False)
    obs_dim: int = struct.field(pytree_node=False)
    action_shape: tuple = struct.field(pytree_node=False)

    def init(self, key: jax.Array) -> Any:
        obs = jnp.zeros((self.obs_dim,), jnp.float32)
        action = jnp.zeros(self.action_shape, jnp.int32 if self.net.num_actions else jnp.float32)
        return jax.vmap(lambda k: self.net.init(k, obs, action))(jax.random.split(key, self.size))

    def members(self, ensemble, obs: jax.Array, action: jax.Array) -> jax.Array:
        """Per-member rewards ``[size, ...]`` for any batch of (s, a)."""
        batch = action.shape[: action.ndim - len(self.action_shape)]
        obs = obs.reshape(batch + (self.obs_dim,))  # flatten whatever the observation's shape
        return jax.vmap(lambda p: self.net.apply(p, obs, action))(ensemble)

    def reward(self, params: RewardParams, obs: jax.Array, action: jax.Array) -> jax.Array:
        """The normalised ensemble-mean reward the policy is trained on."""
        r = self.members(params.ensemble, obs, action).mean(0)
        return (r - params.norm.shift) / params.norm.scale

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
    single = RewardModel(net=model.net, size=1, obs_dim=model.obs_dim, action_shape=model.action_shape)

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
# The LearnedReward wrapper
# --------------------------------------------------------------------------- #


@struct.dataclass
class LearnedRewardState:
    env_state: Any
    obs: jax.Array
    """The last observation returned (s_t of the next step)."""
    reward_params: Any
    """Parameters ``reward_fn`` reads; replaced from outside as the model learns."""
    trace: Trajectory | None
    """Ring buffer of the last ``record_len`` steps ``[L, ...]`` (None if not recording)."""
    trace_pos: jax.Array
    true_return: jax.Array
    """True return of the episode in progress."""


class LearnedReward(Wrapper):
    """Replaces the env's reward by ``reward_fn(reward_params, obs, action)``
    of the observation the action was taken in. ``info["true_reward"]`` keeps
    the env's own reward for evaluation. ``reward_params`` live in the state,
    so a learner can swap them between iterations with
    :func:`with_reward_params`. With ``record_len > 0`` the last
    ``record_len`` steps (s_t, a_t, true r_t, episode end) are kept in the
    state; :func:`recorded_trajectory` reads them back time-major."""

    def __init__(self, env: Any, reward_fn: Callable[[Any, jax.Array, jax.Array], jax.Array],
                 initial_reward_params: Any, record_len: int = 0):
        super().__init__(env)
        self._reward_fn = reward_fn
        self._initial_reward_params = initial_reward_params
        self._record_len = record_len

    def reset(self, key: jax.Array, params: Any = None):
        params = self._params(params)
        obs, env_state = self._env.reset(key, params)
        trace = None
        if self._record_len:
            action = self._env.action_space(params).sample(jax.random.PRNGKey(0))
            empty = lambda x: jnp.zeros((self._record_len,) + jnp.shape(x), jnp.asarray(x).dtype)
            trace = Trajectory(obs=empty(obs), action=empty(action),
                               true_reward=jnp.zeros((self._record_len,), jnp.float32),
                               done=jnp.zeros((self._record_len,), bool),
                               episode_true_return=jnp.zeros((self._record_len,), jnp.float32))
        return obs, LearnedRewardState(env_state=env_state, obs=obs, reward_params=self._initial_reward_params,
                                       trace=trace, trace_pos=jnp.zeros((), jnp.int32),
                                       true_return=jnp.zeros((), jnp.float32))

    def step(self, key: jax.Array, state: LearnedRewardState, action: Any, params: Any = None) -> StepResult:
        params = self._params(params)
        obs = state.obs  # s_t, the observation the action was taken in
        next_obs, env_state, true_reward, terminated, truncated, info = self._env.step(
            key, state.env_state, action, params)
        reward = self._reward_fn(state.reward_params, obs, action)
        trace, pos = state.trace, state.trace_pos
        done = jnp.logical_or(terminated, truncated)
        episode_true_return = state.true_return + true_reward.astype(jnp.float32)
        if trace is not None:
            write = lambda buf, x: buf.at[pos].set(jnp.asarray(x, buf.dtype))
            trace = Trajectory(obs=write(trace.obs, obs), action=write(trace.action, action),
                               true_reward=write(trace.true_reward, true_reward),
                               done=write(trace.done, done),
                               episode_true_return=write(trace.episode_true_return, episode_true_return))
            pos = (pos + 1) % self._record_len
        info = {**info, "true_reward": true_reward}
        state = state.replace(env_state=env_state, obs=next_obs, trace=trace, trace_pos=pos,
                              true_return=jnp.where(done, 0.0, episode_true_return))
        return next_obs, state, reward.astype(jnp.float32), terminated, truncated, info


def _find(env_state, cls):
    while env_state is not None and not isinstance(env_state, cls):
        env_state = getattr(env_state, "env_state", None)
    return env_state


def _replace_nested(env_state, cls, fn):
    if isinstance(env_state, cls):
        return fn(env_state)
    return env_state.replace(env_state=_replace_nested(env_state.env_state, cls, fn))


def with_reward_params(env_state, reward_params, batch_shape: tuple[int, ...] = ()):
    """``env_state`` with the nested :class:`LearnedRewardState`'s parameters
    replaced (broadcast over ``batch_shape``, the :class:`BatchEnv` axis)."""
    tiled = jax.tree.map(lambda x: jnp.broadcast_to(x, batch_shape + jnp.shape(x)), reward_params)
    return _replace_nested(env_state, LearnedRewardState, lambda s: s.replace(reward_params=tiled))


def recorded_trajectory(env_state) -> Trajectory:
    """The recorded steps of a batched :class:`LearnedReward` stack,
    oldest first, as time-major ``[L, B, ...]``."""
    inner = _find(env_state, LearnedRewardState)
    trace, pos = inner.trace, inner.trace_pos  # trace leaves [B, L, ...], pos [B]
    L = trace.done.shape[1]
    order = (pos[:1] + jnp.arange(L)) % L  # every env has taken the same number of steps
    return jax.tree.map(lambda x: jnp.swapaxes(x[:, order], 0, 1), trace)


# --------------------------------------------------------------------------- #
# The rm-ppo agent
# --------------------------------------------------------------------------- #


_fraction = Check(lambda v: 0 < v <= 1, "a number in (0, 1]")
_noise = Check(lambda v: 0 <= v < 1, "a number in [0, 1)")
_holdout = Check(lambda v: v == 0 or v >= 2, "0 (no held-out labels) or an integer >= 2")
_seconds = Check(lambda v: v > 0, "a positive number of seconds")


@dataclasses.dataclass(frozen=True)
class Config(ppo.Config):
    """rm-ppo settings: every PPO field, plus the reward model's and the
    preference loop's. Defaults fit CartPole-v1 with 1,000 synthetic labels."""

    learning_rate: float = field(2.5e-4, check=positive, swept=True)
    """Adam step size of the policy (annealed linearly to 0 over total_steps if
    anneal_lr); rm-ppo's learned rewards were tuned at this rate."""
    labels: str = field("synthetic", check=one_of(*LABELLERS))
    """Labeller: synthetic (oracle preferring the higher true return) | human."""
    label_budget: int = field(1000, check=positive)
    """Total labels a run may ask for."""
    queries_per_iteration: int = field(16, check=positive)
    """Most queries labelled in one iteration (the schedule may ask fewer)."""
    label_schedule: str = field("decreasing", check=one_of(*LABEL_SCHEDULES))
    """uniform: budget spread evenly over the first label_fraction of the run;
    decreasing: cumulative labels ∝ sqrt(progress), more early (the paper
    lowers its label rate over time)."""
    label_fraction: float = field(1.0, check=_fraction)
    """Share of the run over which the label budget is spent (labels that keep
    coming late in the run keep the model right about the states a good
    policy visits: with 0.5, one CartPole seed in three fell back)."""
    num_candidates: int = field(64, check=positive)
    """Candidate pairs drawn per iteration for query selection."""
    query_selection: str = field("disagreement", check=one_of(*QUERY_SELECTIONS))
    """disagreement (highest ensemble variance of P[σ¹ ≻ σ²]) | random."""
    segment_len: int = field(25, check=positive)
    """Steps per segment (≤ rollout_len)."""
    ensemble_size: int = field(3, check=positive)
    """Reward networks in the ensemble."""
    reward_hidden_sizes: tuple[int, ...] = field((64, 64), check=sizes)
    """Hidden layers of each reward network."""
    reward_learning_rate: float = field(1e-3, check=positive, swept=True)
    """Adam step size of the reward model."""
    reward_updates_per_iteration: int = field(16, check=positive)
    """Bradley–Terry gradient steps per iteration."""
    reward_batch_size: int = field(32, check=positive)
    """Labelled pairs per member per gradient step (bootstrap-sampled)."""
    preference_noise: float = field(0.0, check=_noise, swept=True)
    """ε of the loss: assumed chance that a label is a random answer."""
    reward_norm: str = field("rms", check=one_of(*REWARD_NORMS))
    """rms (unit scale, sign kept) | standard (zero mean, unit std) | none."""
    holdout_every: int = field(5, check=_holdout)
    """Every k-th label is held out for label_accuracy (0: none)."""
    oracle_temperature: float = field(0.0, check=non_negative, swept=True)
    """Boltzmann temperature β of the synthetic oracle (0: always right)."""
    oracle_tie_margin: float = field(0.0, check=non_negative, swept=True)
    """Returns closer than this are labelled equal by the oracle."""
    label_timeout: float = field(3600.0, check=_seconds)
    """labels=human: seconds to wait for one iteration's queries to be
    answered before the run stops (resume it once they are labelled)."""

    def validate(self) -> None:
        super().validate()
        req = config_requirer(self)
        req(self.segment_len <= self.rollout_len, "segment_len", f"at most rollout_len = {self.rollout_len}")
        req(self.queries_per_iteration <= self.num_candidates, "queries_per_iteration",
            f"at most num_candidates = {self.num_candidates}")

    def ppo_config(self) -> ppo.Config:
        return ppo.Config(**{f.name: getattr(self, f.name) for f in dataclasses.fields(ppo.Config)})

    def hparams(self) -> "HParams":
        """PPO's hyperparameters nested under ``ppo`` (what the policy learner
        reads), then rm-ppo's own swept fields, as float32 arrays."""
        return HParams(ppo=self.ppo_config().hparams(),
                       **{n: jnp.float32(getattr(self, n)) for n in OWN_SWEPT_FIELDS})


OWN_SWEPT_FIELDS = tuple(n for n in swept_fields(Config) if n not in swept_fields(ppo.Config))
"""The swept fields rm-ppo declares beyond PPO's, in declaration order."""

# Numeric hyperparameters carried in the state (leaves may be batched), nested
# so that PPO's part passes to the policy learner as a whole.
HParams = struct.dataclass(type("HParams", (), {
    "__annotations__": {"ppo": "ppo.HParams", **dict.fromkeys(OWN_SWEPT_FIELDS, "jax.Array")},
    "__module__": __name__,
}))


@struct.dataclass
class LabelBuffer:
    """Fixed-capacity store of labelled pairs (capacity = label_budget)."""

    left: Segments
    right: Segments
    preference: jax.Array
    count: jax.Array


@struct.dataclass
class State:
    ppo: ppo.State
    ensemble: Any
    reward_opt_state: optax.OptState
    norm: RewardNorm
    labels: LabelBuffer
    rng: jax.Array
    hparams: HParams
    iteration: jax.Array


def labels_due(config: Config, iteration: jax.Array, total_iterations: int) -> jax.Array:
    """Cumulative labels the schedule allows after ``iteration`` (0-based)."""
    span = max(1.0, config.label_fraction * total_iterations)
    progress = jnp.minimum((iteration.astype(jnp.float32) + 1.0) / span, 1.0)
    if config.label_schedule == "decreasing":
        progress = jnp.sqrt(progress)
    return jnp.ceil(progress * config.label_budget).astype(jnp.int32)


def make(env, env_params, config: Config = Config()) -> Agent:
    """Binds rm-ppo to an environment (validates ``config`` first)."""
    config.validate()
    kind = envs.action_space_kind(env, env_params)
    discrete = kind == "discrete"
    obs_shape = envs.observation_shape(env, env_params)
    obs_dim = int(jnp.prod(jnp.array(obs_shape)))
    action_space = env.action_space(env_params)
    action_shape = () if discrete else tuple(action_space.shape)
    model = RewardModel(
        net=RewardNet(num_actions=action_space.n if discrete else 0,
                      hidden_sizes=tuple(config.reward_hidden_sizes), activation="tanh"),
        size=config.ensemble_size, obs_dim=obs_dim, action_shape=action_shape)

    template = RewardParams(ensemble=model.init(jax.random.PRNGKey(0)),
                            norm=normalisation("none", jnp.zeros(())))
    learned_env = LearnedReward(env, model.reward, template, record_len=config.rollout_len)
    ppo_config = config.ppo_config()
    policy = ppo.make(learned_env, env_params, ppo_config)
    eval_env = env if discrete else envs.RescaleAction(env)

    T, B, L = config.rollout_len, config.num_envs, config.segment_len
    total_iterations = max(1, -(-config.total_steps // (T * B)))
    capacity, K, C = config.label_budget, config.queries_per_iteration, config.num_candidates
    optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=1.0)

    def empty_segments(n):
        obs = jnp.zeros((n, L, obs_dim), jnp.float32)
        action = jnp.zeros((n, L) + action_shape, jnp.int32 if discrete else jnp.float32)
        z = jnp.zeros((n, L), jnp.float32)
        return Segments(obs=obs, action=action, true_reward=z, mask=z, ids=jnp.zeros((n,), jnp.int32))

    def init(key: jax.Array, hparams: HParams | None = None) -> State:
        hparams = config.hparams() if hparams is None else hparams
        k_ppo, k_rm, key = jax.random.split(key, 3)
        ensemble = model.init(k_rm)
        norm = normalisation("none", jnp.zeros(()))
        ppo_state = policy.init(k_ppo, hparams.ppo)
        ppo_state = ppo_state.replace(env_state=with_reward_params(
            ppo_state.env_state, RewardParams(ensemble, norm), (B,)))
        opt_state = optimizer.init(ensemble)
        opt_state.hyperparams["learning_rate"] = jnp.asarray(hparams.reward_learning_rate, jnp.float32)
        return State(
            ppo=ppo_state, ensemble=ensemble, reward_opt_state=opt_state, norm=norm,
            labels=LabelBuffer(left=empty_segments(capacity), right=empty_segments(capacity),
                               preference=jnp.zeros((capacity,), jnp.float32),
                               count=jnp.zeros((), jnp.int32)),
            rng=key, hparams=hparams, iteration=jnp.zeros((), jnp.int32))

    def flat_obs(seg: Segments) -> Segments:
        return seg.replace(obs=seg.obs.reshape(seg.obs.shape[:2] + (obs_dim,)).astype(jnp.float32))

    def add_labels(buf: LabelBuffer, left, right, preference, valid) -> LabelBuffer:
        slot = buf.count + jnp.cumsum(valid) - 1
        slot = jnp.where(valid & (slot < capacity), slot, capacity)  # capacity = dropped
        put = lambda store, new: store.at[slot].set(new.astype(store.dtype), mode="drop")
        return LabelBuffer(left=jax.tree.map(put, buf.left, left),
                           right=jax.tree.map(put, buf.right, right),
                           preference=put(buf.preference, preference),
                           count=jnp.minimum(buf.count + valid.sum(), capacity))

    def train_weights(buf: LabelBuffer) -> tuple[jax.Array, jax.Array]:
        """Weights [capacity] of the stored labels used for training, and of the held-out ones."""
        idx = jnp.arange(capacity)
        held = (idx % config.holdout_every == config.holdout_every - 1) if config.holdout_every else idx < 0
        return ((idx < buf.count) & ~held).astype(jnp.float32), ((idx < buf.count) & held).astype(jnp.float32)

    def reward_update(ensemble, opt_state, buf: LabelBuffer, key, noise):
        train_w, _ = train_weights(buf)
        return fit_ensemble(model, optimizer, ensemble, opt_state, buf.left, buf.right, buf.preference,
                            train_w, key, config.reward_updates_per_iteration,
                            config.reward_batch_size, noise)

    def step(state: State) -> tuple[State, dict[str, jax.Array]]:
        hp = state.hparams
        ppo_state, ppo_metrics = policy.step(state.ppo)
        traj = recorded_trajectory(ppo_state.env_state)
        rng, k_seg, k_pick, k_label, k_fit = jax.random.split(state.rng, 5)

        # Candidate pairs from this iteration's rollout, then the queries.
        segs = flat_obs(sample_segments(k_seg, traj, 2 * C, L, id_offset=state.iteration * T * B))
        left, right = jax.tree.map(lambda x: x[:C], segs), jax.tree.map(lambda x: x[C:], segs)
        pred_returns = model.segment_returns(state.ensemble, segs).mean(0)
        if config.query_selection == "disagreement":
            pick = select_by_disagreement(model, state.ensemble, left, right, K)
        else:
            pick = jax.random.permutation(k_pick, C)[:K]
        q_left, q_right = jax.tree.map(lambda x: x[pick], left), jax.tree.map(lambda x: x[pick], right)
        wanted = jnp.clip(labels_due(config, state.iteration, total_iterations) - state.labels.count, 0, K)
        valid = jnp.arange(K) < wanted
        preference = oracle_preferences(k_label, q_left.true_return(), q_right.true_return(),
                                        hp.oracle_temperature, hp.oracle_tie_margin)
        if config.labels == "human":
            preference, answered = ask_labeller(state.iteration, q_left, q_right, valid)
            valid = valid & answered  # skipped or unanswered queries teach nothing
        labels = add_labels(state.labels, q_left, q_right, preference, valid)

        # Fit the ensemble, refresh the normalisation on this rollout's (s, a).
        ensemble, opt_state, bt_loss = reward_update(state.ensemble, state.reward_opt_state, labels,
                                                     k_fit, hp.preference_noise)
        flat_traj_obs = traj.obs.reshape((T * B, obs_dim)).astype(jnp.float32)
        flat_traj_act = traj.action.reshape((T * B,) + action_shape)
        raw = model.members(ensemble, flat_traj_obs, flat_traj_act).mean(0)
        norm = normalisation(config.reward_norm, raw)
        ppo_state = ppo_state.replace(env_state=with_reward_params(
            ppo_state.env_state, RewardParams(ensemble, norm), (B,)))

        train_w, held_w = train_weights(labels)
        held_acc, held_n = label_accuracy(model, ensemble, labels.left, labels.right, labels.preference, held_w)
        train_acc, _ = label_accuracy(model, ensemble, labels.left, labels.right, labels.preference, train_w)
        metrics = {
            **ppo_metrics,
            "learned_episode_return": ppo_metrics["episode_return"],
            # True-reward return of the episodes that ended in this rollout.
            "episode_return": _true_episode_return(traj),
            "labels": labels.count.astype(jnp.float32),
            "label_accuracy": held_acc,
            "heldout_labels": held_n,
            "train_label_accuracy": train_acc,
            "bt_loss": bt_loss,
            # Candidates were not trained on when these returns were predicted.
            "reward_correlation": correlation(pred_returns, segs.true_return()),
            "reward_scale": norm.scale,
        }
        state = State(ppo=ppo_state, ensemble=ensemble, reward_opt_state=opt_state, norm=norm,
                      labels=labels, rng=rng, hparams=hp, iteration=state.iteration + 1)
        return state, jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), metrics)

    def policy_params(state: State):
        return policy.policy_params(state.ppo)

    def evaluate(state: State, key: jax.Array, num_episodes: int) -> jax.Array:
        """Returns under the env's TRUE reward (deterministic policy)."""
        params = policy_params(state)
        act = lambda obs, k: policy.act(params, obs, k, deterministic=True)
        return envs.episode_returns(eval_env, env_params, act, key, num_episodes).returns

    return Agent(
        name="rm-ppo", config=config, env=env, env_params=env_params, init=init, step=step,
        act=policy.act, policy_params=policy_params, evaluate=evaluate,
        default_hparams=config.hparams, env_steps_per_step=T * B)


# --------------------------------------------------------------------------- #
# Labels from people: a host call inside the jitted step
# --------------------------------------------------------------------------- #

_labeller: list[Callable] = []
"""The installed labeller (a stack, so :func:`use_labeller` nests)."""


@contextlib.contextmanager
def use_labeller(labeller: Callable) -> Iterator[Callable]:
    """Installs the host labeller a ``labels="human"`` agent's ``step`` calls:
    ``labeller(iteration, left, right, valid) -> (preference [K], answered [K])``
    with NumPy :class:`Segments` ``[K, L, ...]`` and ``valid [K]`` (the
    queries due); ``preference`` is μ (1 left, 0 right, 0.5 equal)."""
    _labeller.append(labeller)
    try:
        yield labeller
    finally:
        _labeller.remove(labeller)


def _call_labeller(iteration, left, right, valid):
    if not _labeller:
        raise RuntimeError(
            "rm-ppo with labels='human' needs a labeller: run it with "
            "`jaxrl train rm-ppo --labels human`, or inside "
            "`with reward_model.use_labeller(jaxrl.feedback.HumanLabeller(run_dir)):`")
    to_np = lambda tree: jax.tree.map(np.asarray, tree)
    preference, answered = _labeller[-1](int(iteration), to_np(left), to_np(right), np.asarray(valid))
    return np.asarray(preference, np.float32), np.asarray(answered, bool)


def ask_labeller(iteration: jax.Array, left: Segments, right: Segments,
                 valid: jax.Array) -> tuple[jax.Array, jax.Array]:
    """μ and whether each of the ``[K]`` queries was answered, from the
    installed labeller. Unordered io_callback: under ``vmap`` (one seed in
    ``run.train``) it is called once per seed."""
    K = valid.shape[0]
    shapes = (jax.ShapeDtypeStruct((K,), jnp.float32), jax.ShapeDtypeStruct((K,), jnp.bool_))
    return io_callback(_call_labeller, shapes, iteration, left, right, valid)


def _true_episode_return(traj: Trajectory) -> jax.Array:
    """Mean true return of the episodes that ended in ``traj`` (0 if none)."""
    done = traj.done.astype(jnp.float32)
    episodes = done.sum()
    total = (traj.episode_true_return * done).sum()
    return jnp.where(episodes > 0, total / jnp.maximum(episodes, 1.0), 0.0)
