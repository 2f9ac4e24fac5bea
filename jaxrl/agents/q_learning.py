"""The Q-learning update that DQN and h-DQN's two learners share.

A :class:`Learner` (online and target parameters, optimiser state, update
count) takes one gradient step on a replayed minibatch of
:class:`replay.Transition`: the Huber loss of Q(s, a) against

    DQN:         y = r + Γ · max_a' Q'(s', a')
    Double DQN:  y = r + Γ · Q'(s', argmax_a' Q(s', a'))

then a clipped Adam step, then the target update: a hard copy every
``target_update_period`` updates or θ' ← τθ + (1 − τ)θ' after every one.
What is static (network, optimiser, switches, sizes) is a :class:`QSpec`;
the numbers (learning rate, τ, Huber δ, gradient bound) are read from the
agent's ``hparams`` at every update, so a value changed in the state
applies at once. Exploration is ε-greedy on linear ε schedules.

Action masks (a flat bool ``mask [..., A]``, see :mod:`jaxrl.agents.masks`):
the greedy action, ε-greedy's random action (uniform over the legal ones)
and the bootstrap's max/argmax over a' range over legal actions only. A row
with no legal action falls back to all of them (:func:`masks.legal_or_all`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct
from gymnax.environments import spaces

from jaxrl import ops, replay
from jaxrl.agents import fields, masks
from jaxrl.agents.fields import TARGET_UPDATES  # noqa: F401  (public name of this module)
from jaxrl.agents.off_policy import soft_update
from jaxrl.networks import ACTIVATIONS, make_torso
from jaxrl.ops.counters import StepCounter


class QNetwork(nn.Module):
    """Q(s, ·) of flat input rows ``[..., D]``: a torso, then one output per action.

    ``torso="mlp"``: dense layers over the row. An image torso
    (:func:`jaxrl.networks.make_torso`: ``minatar_cnn``, ``nature_cnn``,
    ``impala_resnet``, whose ``hidden_sizes`` are the dense layers after the
    convolutions): the row's first ``prod(image_shape)`` entries are the
    image, reshaped to ``image_shape``; with ``pixels`` they are cast back to
    uint8 first (the agents keep observations as float32 rows, which hold
    0..255 exactly), so the torso divides them by 255.

    ``num_goals`` > 0 (h-DQN's controller on images): the row's last
    ``num_goals`` entries are the goal's one-hot, which gates the image
    features as :func:`jaxrl.agents.goals.controller_input` gates an MLP's
    observation: the output layer sees ``concat(features ⊗ onehot(g),
    onehot(g))``, i.e. one linear Q head per goal over shared features.
    """

    num_actions: int
    hidden_sizes: Sequence[int] = (120, 84)
    activation: str = "relu"
    torso: str = "mlp"
    image_shape: tuple[int, ...] = ()
    pixels: bool = False
    num_goals: int = 0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.torso == "mlp":
            act = ACTIVATIONS[self.activation]
            for size in self.hidden_sizes:
                x = act(nn.Dense(size)(x))
            return nn.Dense(self.num_actions)(x)
        image = x[..., :math.prod(self.image_shape)]
        image = image.reshape(image.shape[:-1] + tuple(self.image_shape))
        if self.pixels:
            image = image.astype(jnp.uint8)
        features = make_torso(self.torso, self.hidden_sizes, self.activation)(image)
        if self.num_goals:
            goal = x[..., -self.num_goals:]
            gated = features[..., :, None] * goal[..., None, :]
            features = jnp.concatenate([gated.reshape(features.shape[:-1] + (-1,)), goal], axis=-1)
        return nn.Dense(self.num_actions)(features)


def q_network(num_actions: int, config: Any, obs_shape: tuple[int, ...], env, env_params,
              num_goals: int = 0) -> QNetwork:
    """The :class:`QNetwork` of ``config.hidden_sizes``, ``config.activation`` and
    ``config.torso`` for ``env``'s observations of ``obs_shape``; ValueError
    naming ``torso`` when it cannot take them (before anything compiles)."""
    kind = fields.torso_for(config, obs_shape)
    if kind == "mlp":
        return QNetwork(num_actions, tuple(config.hidden_sizes), config.activation)
    return QNetwork(num_actions, tuple(config.hidden_sizes), config.activation, torso=kind,
                    image_shape=tuple(obs_shape), pixels=uint8_observations(env, env_params),
                    num_goals=num_goals)


def uint8_observations(env, env_params) -> bool:
    """Whether the env's observation space (its ``"observation"`` key beside an
    action mask) declares uint8 values: raw pixels."""
    space = env.observation_space(env_params)
    if isinstance(space, spaces.Dict):
        space = space.spaces.get("observation", space)
    return jnp.dtype(getattr(space, "dtype", jnp.float32)) == jnp.uint8


# --------------------------------------------------------------------------- targets and loss


def mask_q_values(q_values: jax.Array, mask: jax.Array | None) -> jax.Array:
    """``q_values`` with illegal actions at the dtype's lowest value, so no max
    or argmax picks them (unchanged when ``mask`` is None)."""
    if mask is None:
        return q_values
    return ops.masked_logits(q_values, masks.legal_or_all(mask))


def greedy_action(q_values: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """argmax over the legal actions of each row."""
    return jnp.argmax(mask_q_values(q_values, mask), axis=-1)


def q_learning_targets(
    reward: jax.Array,
    discount: jax.Array,
    next_q_target: jax.Array,
    next_q_online: jax.Array,
    double: bool,
    next_mask: jax.Array | None = None,
) -> jax.Array:
    """One-step Q-learning targets ``[N]`` from ``[N]`` rewards and discounts Γ
    and ``[N, A]`` action values at s'.

        double=False:  y = r + Γ · max_a Q'(s', a)                    (DQN)
        double=True:   y = r + Γ · Q'(s', argmax_a Q(s', a))          (Double DQN)

    Double DQN picks the action with the online network and evaluates it with
    the target network, which removes the max operator's upward bias.
    With ``next_mask [N, A]`` both range over the legal actions at s' only.
    """
    chex.assert_rank([reward, discount, next_q_target, next_q_online], [1, 1, 2, 2])
    chex.assert_equal_shape([next_q_target, next_q_online])
    next_q_target = mask_q_values(next_q_target, next_mask)
    next_q_online = mask_q_values(next_q_online, next_mask)
    if double:
        best = jnp.argmax(next_q_online, axis=-1)
        next_value = jnp.take_along_axis(next_q_target, best[:, None], axis=-1)[:, 0]
    else:
        next_value = jnp.max(next_q_target, axis=-1)
    return jax.lax.stop_gradient(reward + discount * next_value)


def q_loss(params, target_params, apply_fn, batch: replay.Transition, hp, double: bool):
    """Huber loss (δ = ``hp.huber_delta``) of Q(s, a) against the
    (Double-)DQN targets; and ``{"loss", "q_mean"}``."""
    q = apply_fn(params, batch.obs)
    q_taken = jnp.take_along_axis(q, batch.action[:, None].astype(jnp.int32), axis=-1)[:, 0]
    next_q_target = apply_fn(target_params, batch.next_obs)
    next_q_online = apply_fn(params, batch.next_obs)
    targets = q_learning_targets(batch.reward, batch.discount, next_q_target, next_q_online, double,
                                 batch.next_action_mask)
    loss = ops.huber_loss(q_taken, targets, hp.huber_delta)
    return loss, {"loss": loss, "q_mean": q_taken.mean()}


# --------------------------------------------------------------------------- exploration


def linear_epsilon(env_steps: StepCounter | jax.Array, start, end, decay_steps) -> jax.Array:
    """ε falling linearly from ``start`` to ``end`` over ``decay_steps`` env steps, then ``end``."""
    if isinstance(env_steps, StepCounter):
        progress = env_steps.fraction_of(decay_steps)
    else:
        progress = jnp.clip(env_steps.astype(jnp.float32) / jnp.maximum(decay_steps, 1.0), 0.0, 1.0)
    return start + progress * (end - start)


def epsilon_greedy(key: jax.Array, q_values: jax.Array, epsilon: jax.Array,
                   mask: jax.Array | None = None) -> jax.Array:
    """Per row of ``q_values [..., A]``: a uniform action with probability ε
    (broadcast against the batch), else the greedy one; both among the legal
    actions of ``mask [..., A]`` when given."""
    k_explore, k_random = jax.random.split(key)
    batch_shape = q_values.shape[:-1]
    explore = jax.random.uniform(k_explore, batch_shape) < epsilon
    if mask is None:
        random_action = jax.random.randint(k_random, batch_shape, 0, q_values.shape[-1])
    else:
        # Equal logits on the legal actions: uniform over them.
        uniform_logits = mask_q_values(jnp.zeros(q_values.shape, jnp.float32), mask)
        random_action = jax.random.categorical(k_random, uniform_logits, axis=-1)
    return jnp.where(explore, random_action, greedy_action(q_values, mask)).astype(jnp.int32)


# --------------------------------------------------------------------------- the learner


@struct.dataclass
class Learner:
    """One Q-learner: online and target parameters, optimiser, update count."""

    params: Any
    target_params: Any
    opt_state: optax.OptState
    updates: jax.Array


@dataclasses.dataclass(frozen=True)
class QSpec:
    """What is static about one Q-learner.

    Attributes:
      apply: ``apply(params, x) -> Q [..., A]`` on the buffer's inputs.
      optimizer: an ``optax.inject_hyperparams`` optimiser (its learning
        rate is set from ``hparams.learning_rate`` at every update).
      double: Double-DQN targets.
      target_update: ``"hard"`` | ``"soft"``.
      target_update_period: updates between hard copies.
      batch_size: minibatch size.
      learning_starts: env steps before the first update.
    """

    apply: Callable[[Any, jax.Array], jax.Array]
    optimizer: optax.GradientTransformation
    double: bool
    target_update: str
    target_update_period: int
    batch_size: int
    learning_starts: int


def new_learner(spec: QSpec, key: jax.Array, example_input: jax.Array, network: nn.Module,
                learning_rate) -> Learner:
    """Fresh online parameters, a target copy of them, and the optimiser state."""
    params = network.init(key, example_input)
    opt_state = ops.with_learning_rate(spec.optimizer.init(params), learning_rate)
    return Learner(params=params, target_params=params, opt_state=opt_state, updates=jnp.zeros((), jnp.int32))


def update_target(spec: QSpec, target_params, params, updates: jax.Array, tau):
    """The target network after the ``updates``-th update: Polyak-averaged, or
    a copy of the online one when ``updates`` is a multiple of the period."""
    if spec.target_update == "soft":
        return soft_update(target_params, params, tau)
    copy = (updates % spec.target_update_period) == 0
    return jax.tree.map(lambda t, o: jnp.where(copy, o, t), target_params, params)


def gradient_step(spec: QSpec, learner: Learner, batch: replay.Transition, hp) -> tuple[Learner, dict]:
    """One clipped Adam step on :func:`q_loss`, then the target update; and
    ``{"loss", "q_mean", "grad_norm"}``."""
    grads, stats = jax.grad(q_loss, has_aux=True)(
        learner.params, learner.target_params, spec.apply, batch, hp, spec.double
    )
    grad_norm = ops.global_norm(grads)
    grads = ops.clip_by_global_norm(grads, hp.max_grad_norm)
    # Read every update, so a learning rate changed in the state applies at once.
    opt_state = ops.with_learning_rate(learner.opt_state, hp.learning_rate)
    updates, opt_state = spec.optimizer.update(grads, opt_state, learner.params)
    params = optax.apply_updates(learner.params, updates)
    n_updates = learner.updates + 1
    target_params = update_target(spec, learner.target_params, params, n_updates, hp.tau)
    learner = Learner(params=params, target_params=target_params, opt_state=opt_state, updates=n_updates)
    return learner, {**stats, "grad_norm": grad_norm}


def maybe_update(spec: QSpec, learner: Learner, buffer: replay.ReplayState, key: jax.Array,
                 env_steps: StepCounter, hp) -> tuple[Learner, dict, jax.Array]:
    """:func:`gradient_step` on a minibatch sampled with ``key`` once
    ``learning_starts`` env steps have passed and the buffer holds a batch;
    else the learner unchanged with zero stats. Returns the learner, the
    stats and whether it learned."""
    learning = env_steps.at_least(spec.learning_starts) & replay.uniform.can_sample(buffer, spec.batch_size)
    batch = replay.uniform.sample(buffer, key, spec.batch_size)

    def skip(learner, batch):
        zero = jnp.zeros((), jnp.float32)
        return learner, {"loss": zero, "q_mean": zero, "grad_norm": zero}

    # Only the learner goes through the cond: under vmap a cond becomes a
    # select, which would copy a buffer passed through it every update.
    learner, stats = jax.lax.cond(
        learning, lambda l, b: gradient_step(spec, l, b, hp), skip, learner, batch
    )
    return learner, stats, learning


def rollout_then_update(state, env_step: Callable, update: Callable, rollout_len: int, updates_per_step: int):
    """An iteration of a Q-learning agent: ``rollout_len`` env steps
    (``env_step(state, _) -> (state, record)``), then ``updates_per_step``
    updates (``update(state, key) -> (state, stats)``) on keys split from
    ``state.rng``. Returns the state, the time-major records and the mean stats."""
    state, record = jax.lax.scan(env_step, state, length=rollout_len)
    rng, *k_updates = jax.random.split(state.rng, 1 + updates_per_step)
    state = state.replace(rng=rng)
    state, stats = jax.lax.scan(update, state, jnp.stack(k_updates))
    return state, record, {k: v.mean() for k, v in stats.items()}
