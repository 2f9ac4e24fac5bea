"""Proximal Policy Optimization (Schulman et al. 2017, arXiv:1707.06347).

One ``step`` is one PPO iteration: ``num_envs`` environments run for
``rollout_len`` steps with the current policy, GAE(λ) turns the rollout into
advantages, and ``num_epochs`` passes of ``num_minibatches`` minibatch updates
optimise one of the paper's objectives:

- ``"clip"``: L^CLIP = E[min(r Â, clip(r, 1-ε, 1+ε) Â)]                (§3)
- ``"kl_adaptive"``: L^KLPEN = E[r Â − β KL[π_old, π]], and after the
  update β ← β/2 if d < d_targ/1.5, β ← 2β if d > 1.5 d_targ          (§4)
- ``"kl_fixed"``: the same penalty with a constant β.

Time limits are not terminal states: on truncation the advantage bootstraps
from the value of ``info["final_observation"]``; on termination it does not.

Numeric hyperparameters (learning rate, γ, λ, ε, coefficients, KL target,
base β, gradient-norm bound) live in the state as :class:`HParams` arrays,
so seeds and hyperparameter sweeps vmap together without recompiling; only
shapes (``num_envs``, ``rollout_len``, layer sizes, ...) are static. Every
step reads them, so changing ``state.hparams`` mid-run (population-based
training) takes effect at the next step.

Recurrent policies (``core`` of ``lstm`` or ``gru``): the core's state is
kept per environment in the state (:class:`RecurrentState`), reset where an
episode ends inside the collection, and stored at the start of each rollout
(``Rollout.core_carry``). The update replays each environment's whole rollout
from that state with the current parameters (truncated BPTT over the
rollout), so minibatches are whole environments ``[T, B / num_minibatches]``,
never cuts along time.

Each step (:func:`collect`, :func:`advantages_and_returns`, :func:`loss`,
:func:`update_epoch`, :func:`update` of a collected rollout, ...) is a pure
function over a static :class:`Spec`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax.flatten_util import ravel_pytree

from jaxrl import envs, ops
from jaxrl.agents import actor_critic, fields
from jaxrl.agents.base import Agent, AgentConfig, config_requirer
from jaxrl.config import field, hparams_class, non_negative, one_of, positive, unit_interval
from jaxrl.mesh import split_over_data_axis
from jaxrl.ops.counters import StepCounter

ACTION_SPACES = actor_critic.ACTION_SPACES
OBJECTIVES = ("clip", "kl_adaptive", "kl_fixed")
TORSOS = fields.TORSOS


@dataclasses.dataclass(frozen=True)
class Config(AgentConfig):
    """PPO settings. Defaults are the classic CartPole configuration
    (4 envs x 128 steps, 4 epochs, 4 minibatches, ε = 0.2, λ = 0.95), which
    the paper's Atari settings scale down to, with Adam at 1e-3 annealed: with
    it both objectives solve CartPole-v1 in 5·10^5 steps."""

    num_envs: int = fields.num_envs(4)
    rollout_len: int = fields.rollout_len(128)
    num_epochs: int = field(4, check=positive)
    """Passes over each rollout."""
    num_minibatches: int = field(4, check=positive)
    """Minibatches per epoch; must divide num_envs * rollout_len (num_envs with
    a recurrent core, whose minibatches are whole environments' rollouts)."""
    learning_rate: float = fields.learning_rate(1e-3)
    """Adam step size (annealed linearly to 0 over total_steps if anneal_lr). At
    CleanRL's 2.5e-4 a KL per update far below kl_target halves the adaptive β
    to nothing, and both objectives leave some CartPole seeds unsolved."""
    anneal_lr: bool = fields.anneal_lr()
    total_steps: int = fields.total_steps(500_000)
    gamma: float = fields.gamma()
    gae_lambda: float = field(0.95, check=unit_interval, swept=True)
    """GAE λ."""
    clip_eps: float = field(0.2, check=positive, swept=True)
    """Clipping range ε of the clipped surrogate (and of the value clip)."""
    ent_coef: float = field(0.01, check=non_negative, swept=True)
    """Entropy bonus coefficient."""
    vf_coef: float = field(0.5, check=non_negative, swept=True)
    """Value-loss coefficient."""
    max_grad_norm: float = fields.max_grad_norm(0.5)
    objective: str = field("clip", check=one_of(*OBJECTIVES))
    """Policy objective: clip | kl_adaptive | kl_fixed."""
    kl_target: float = field(0.01, check=positive, swept=True)
    """d_targ of the adaptive KL penalty."""
    kl_beta: float = field(1.0, check=non_negative, swept=True)
    """KL coefficient β: constant (kl_fixed), or the base that kl_adaptive
    doubles and halves (β = kl_beta · 2^k); read every step, like every HParams field."""
    normalize_advantages: bool = True
    """Normalise advantages per minibatch to zero mean and unit std."""
    clip_value_loss: bool = False
    """Clip value updates to ±clip_eps around the rollout's values."""
    normalize_obs: bool = False
    """Normalise observations with running statistics held in the env state."""
    hidden_sizes: tuple[int, ...] = fields.hidden_sizes((64, 64))
    activation: str = fields.activation("tanh")
    torso: str = fields.torso()
    core: str = fields.core()
    core_size: int = fields.core_size()
    adam_eps: float = field(1e-5, check=positive)
    """Adam ε."""

    def validate(self) -> None:
        """Raises ValueError naming the first field whose value is not allowed."""
        super().validate()
        batch = self.num_envs * self.rollout_len
        config_requirer(self)(
            batch % self.num_minibatches == 0,
            "num_minibatches",
            f"a divisor of num_envs * rollout_len = {batch}",
        )
        config_requirer(self)(
            self.core == "none" or self.num_envs % self.num_minibatches == 0,
            "num_minibatches",
            f"a divisor of num_envs = {self.num_envs} (core={self.core!r} cuts minibatches "
            "along environments, never across time)",
        )


# Numeric hyperparameters carried in the state (leaves may be batched): the
# swept fields of Config, in declaration order.
HParams = hparams_class(Config)


@struct.dataclass
class State:
    """Everything a PPO run needs, as one pytree."""

    params: Any
    opt_state: optax.OptState
    env_state: Any
    obs: jax.Array
    rng: jax.Array
    hparams: HParams
    kl_beta_exponent: jax.Array
    """k of the current KL coefficient β = hparams.kl_beta · 2^k. The paper's
    rule only ever doubles or halves β, so kl_adaptive adapts k (state) while
    the base β stays a hyperparameter read every step: a population-based
    change of ``hparams.kl_beta`` takes effect at once (scaled by the
    adaptation so far). kl_fixed keeps k = 0, so β is ``hparams.kl_beta``."""
    iteration: jax.Array
    env_steps: StepCounter
    """Environment steps taken, exact past 2^31 (``int(state.env_steps)``)."""


@struct.dataclass
class RecurrentState(State):
    """A PPO run's state with a recurrent core (a feed-forward run's
    :class:`State` keeps its pytree unchanged)."""

    core_carry: Any
    """The core's state per environment ``[num_envs, ...]``, where the next
    rollout starts."""


class PolicyLossInputs(struct.PyTreeNode):
    """What a policy loss sees for one minibatch (flat ``[N]`` arrays).

    Attributes:
      log_prob: log π_θ(a|s) under the parameters being optimised.
      old_log_prob: log π_old(a|s) of the policy that collected the data.
      advantages: GAE advantages (normalised when ``normalize_advantages``).
      kl: KL[π_old(·|s) ‖ π_θ(·|s)] per sample.
      entropy: entropy of π_θ(·|s) per sample.
      hparams: the numeric hyperparameters (``clip_eps``, ...).
      kl_beta: the current KL-penalty coefficient β.
    """

    log_prob: jax.Array
    old_log_prob: jax.Array
    advantages: jax.Array
    kl: jax.Array
    entropy: jax.Array
    hparams: "HParams"
    kl_beta: jax.Array


def clip_objective(x: PolicyLossInputs) -> jax.Array:
    """L^CLIP of the paper's §3, as a loss to minimise."""
    return ops.ppo_clip_loss(x.log_prob, x.old_log_prob, x.advantages, x.hparams.clip_eps)


def kl_penalty_objective(x: PolicyLossInputs) -> jax.Array:
    """L^KLPEN of the paper's §4, as a loss to minimise."""
    return ops.kl_penalty_loss(x.log_prob, x.old_log_prob, x.advantages, x.kl, x.kl_beta)


class Rollout(struct.PyTreeNode):
    """Time-major ``[T, B, ...]`` experience from one iteration. ``obs`` and
    ``final_obs`` are what the network sees (an env's action mask split off
    into ``action_mask``)."""

    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    final_obs: jax.Array
    dist_params: Any
    episode_return: jax.Array
    episode_done: jax.Array
    extras: Any = None
    """What ``Spec.record_info`` keeps of each step's ``info`` (None without it)."""
    action_mask: jax.Array | None = None
    """The flat action mask the policy acted under (None for an env without one)."""
    core_carry: Any = None
    """A recurrent core's state ``[B, ...]`` at the rollout's start (None without a core)."""
    next_value: jax.Array | None = None
    """A recurrent policy's V of ``final_obs`` ``[T, B]``, seen from the core
    state its step left (None without a core: V(final_obs) needs no state)."""


class Minibatch(struct.PyTreeNode):
    """Flat ``[N, ...]`` samples the update trains on (a whole rollout, or one
    minibatch of it): what the policy saw and did, and the GAE targets."""

    # The fields' order is the leaves' order, which decides how XLA fuses the
    # minibatch gathers and so the last bits of every update: reordering them
    # changes results at rounding level.
    action: jax.Array
    advantages: jax.Array
    dist_params: Any
    log_prob: jax.Array
    obs: jax.Array
    returns: jax.Array
    value: jax.Array
    action_mask: jax.Array | None = None
    """Flat action mask (None without one): the loss scores the policy under it."""
    core_carry: Any = None
    """With a recurrent core, the samples are whole rollouts ``[T, B, ...]``
    of ``B`` environments, replayed from this start state ``[B, ...]`` (None:
    flat samples)."""
    episode_end: jax.Array | None = None
    """``[T, B]`` where an episode ended (the replay resets the core after
    those steps); None without a core."""


class Spec(actor_critic.OnPolicySpec):
    """What a PPO run holds fixed: an on-policy spec and the policy objective."""

    objective: Callable[[PolicyLossInputs], jax.Array] = actor_critic.static_field()
    record_info: Callable[[dict], Any] | None = struct.field(pytree_node=False, default=None)
    """``record_info(info)``: what :func:`collect` keeps of each step's ``info``
    in ``Rollout.extras`` (a learner built on PPO's steps reads it there)."""


def make_spec(env, env_params, config: Config = Config(), policy_loss=None) -> Spec:
    """Validates ``config`` and the action space before anything is traced, and
    builds the static parts of PPO on ``env`` (see :func:`make`)."""
    config.validate()
    if policy_loss is not None and not callable(policy_loss):
        raise TypeError(f"ppo.make: policy_loss must be callable, got {type(policy_loss).__name__}")
    ac = actor_critic.build(env, env_params, config)
    if config.normalize_obs and (ac.mask.masked or isinstance(ac.obs_shape, dict)):
        raise ValueError("normalize_obs: True needs an array observation (this env's is a Dict, "
                         "with no running statistics); allowed here: False")
    train_env = envs.BatchEnv(envs.EpisodeStats(ac.act_env), config.num_envs)
    if config.normalize_obs:
        train_env = envs.NormalizeObservation(train_env)
    optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=1.0, eps=config.adam_eps)
    default_objective = clip_objective if config.objective == "clip" else kl_penalty_objective
    return Spec(config=config, ac=ac, train_env=train_env, optimizer=optimizer,
                objective=policy_loss or default_objective)


def init(spec: Spec, key: jax.Array, hparams: HParams | None = None) -> State:
    """A fresh run: parameters, optimiser state, reset environments."""
    hparams = spec.config.hparams() if hparams is None else hparams
    key, k_params, k_env = jax.random.split(key, 3)
    params = actor_critic.init_params(spec.ac, k_params)
    opt_state = spec.optimizer.init(ravel_pytree(params)[0])
    opt_state = ops.with_learning_rate(opt_state, hparams.learning_rate)
    obs, env_state = spec.train_env.reset(k_env, spec.ac.env_params)
    common = dict(params=params, opt_state=opt_state, env_state=env_state, obs=obs, rng=key,
                  hparams=hparams, kl_beta_exponent=jnp.zeros((), jnp.float32),
                  iteration=jnp.zeros((), jnp.int32), env_steps=StepCounter.zeros())
    if spec.ac.recurrent:
        return RecurrentState(**common, core_carry=actor_critic.initial_carry(
            spec.ac, (spec.config.num_envs,)))
    return State(**common)


def act_and_step(spec: Spec, env_state, network_obs, mask, policy_out, action_noise,
                 step_keys) -> tuple[Any, Any, Rollout]:
    """One step of every environment with the action sampled (from
    ``action_noise``) from the policy output ``policy_out`` under ``mask``:
    ``(next_obs, env_state, the step's Rollout row)``, its value left to the
    batched pass after the loop."""
    ac = spec.ac
    dist = actor_critic.distribution(ac, policy_out, mask)
    action = dist.sample_from_noise(action_noise)
    next_obs, env_state, reward, terminated, truncated, info = spec.train_env.step(
        step_keys, env_state, action, ac.env_params)
    transition = Rollout(
        obs=network_obs, action=action, log_prob=dist.log_prob(action), value=None,
        reward=reward.astype(jnp.float32), terminated=terminated, truncated=truncated,
        final_obs=actor_critic.split_observation(ac, info["final_observation"])[0],
        dist_params=policy_out,
        episode_return=info["episode_return"], episode_done=info["episode_done"],
        extras=None if spec.record_info is None else spec.record_info(info),
        action_mask=mask)
    return next_obs, env_state, transition


def rollout_randomness(spec: Spec, rng: jax.Array):
    """``(rng, action noise [T, B, ...], env keys [T, B])`` of one rollout.

    Drawn in two calls before the loop: on a CPU each PRNG call inside the
    step is a small loop of its own and cost more than the policy's forward
    pass."""
    rng, k_noise, k_env = jax.random.split(rng, 3)
    shape = (spec.config.rollout_len, spec.config.num_envs)
    return (rng, actor_critic.sampling_noise(spec.ac, k_noise, shape),
            jax.random.split(k_env, shape))


def collect(spec: Spec, state: State) -> tuple[State, Rollout]:
    """``rollout_len`` steps of every environment with the current policy."""
    if spec.ac.recurrent:
        return collect_recurrent(spec, state)
    ac = spec.ac
    rng, noise, env_keys = rollout_randomness(spec, state.rng)

    def one_step(carry, step_randomness):
        params, env_state, obs = carry
        action_noise, step_keys = step_randomness
        network_obs, mask = actor_critic.split_observation(ac, obs)
        policy_out, _ = ac.network.apply(params, network_obs)  # the value head is dead code here
        next_obs, env_state, transition = act_and_step(
            spec, env_state, network_obs, mask, policy_out, action_noise, step_keys)
        return (params, env_state, next_obs), transition

    carry = (state.params, state.env_state, state.obs)
    (_, env_state, obs), rollout = jax.lax.scan(one_step, carry, (noise, env_keys))
    # V(s_t) for the whole rollout in one batched forward pass rather than
    # T small ones inside the loop (where the value head is dead code):
    # the same parameters give the same values, and on a CPU one large dot
    # beats many tiny ones.
    rollout = rollout.replace(value=actor_critic.values(ac, state.params, rollout.obs))
    return state.replace(env_state=env_state, obs=obs, rng=rng), rollout


def collect_recurrent(spec: Spec, state: RecurrentState) -> tuple[RecurrentState, Rollout]:
    """:func:`collect` for a recurrent policy: the core's state runs along the
    environments and is reset after each step that ends an episode."""
    ac = spec.ac
    rng, noise, env_keys = rollout_randomness(spec, state.rng)

    def one_step(carry, step_randomness):
        params, env_state, obs, core_carry = carry
        action_noise, step_keys = step_randomness
        network_obs, mask = actor_critic.split_observation(ac, obs)
        features = actor_critic.embed(ac, params, network_obs)
        core_carry, hidden = actor_critic.core_step(ac, params, core_carry, features)
        policy_out, _ = actor_critic.heads(ac, params, hidden)  # the value head is dead code here
        next_obs, env_state, transition = act_and_step(
            spec, env_state, network_obs, mask, policy_out, action_noise, step_keys)
        ended = jnp.logical_or(transition.terminated, transition.truncated)
        return ((params, env_state, next_obs, actor_critic.reset_carry(core_carry, ended)),
                (transition, hidden, core_carry))

    carry = (state.params, state.env_state, state.obs, state.core_carry)
    (_, env_state, obs, core_carry), (rollout, hidden, carries) = jax.lax.scan(
        one_step, carry, (noise, env_keys))
    # Values from the core outputs the policy acted on, batched after the loop.
    rollout = rollout.replace(
        value=actor_critic.heads(ac, state.params, hidden)[1],
        next_value=actor_critic.next_step_values(ac, state.params, carries, rollout.final_obs),
        core_carry=state.core_carry)
    return state.replace(env_state=env_state, obs=obs, rng=rng, core_carry=core_carry), rollout


def advantages_and_returns(spec: Spec, params, rollout: Rollout, hp: HParams):
    """GAE(λ) advantages and the value targets ``[T, B]`` of ``rollout``."""
    # V(s_{t+1}) from the true next observation: equals V(obs_{t+1}) except
    # at episode ends, where auto-reset has replaced it. Only truncated
    # steps use it (termination zeroes the discount).
    if rollout.next_value is not None:
        next_values = rollout.next_value
    else:
        next_values = actor_critic.values(spec.ac, params, rollout.final_obs)
    discounts = hp.gamma * (1.0 - rollout.terminated.astype(jnp.float32))
    episode_ends = jnp.logical_or(rollout.terminated, rollout.truncated)
    return ops.gae(rollout.reward, rollout.value, discounts, next_values[-1], hp.gae_lambda,
                   next_values=next_values, episode_ends=episode_ends)


def training_batch(rollout: Rollout, advantages: jax.Array, returns: jax.Array) -> Minibatch:
    """The rollout and its targets flattened over time and environments."""
    flat = lambda x: x.reshape((-1,) + x.shape[2:])
    return Minibatch(obs=jax.tree.map(flat, rollout.obs), action=flat(rollout.action),
                     log_prob=flat(rollout.log_prob), value=flat(rollout.value),
                     dist_params=jax.tree.map(flat, rollout.dist_params),
                     advantages=flat(advantages), returns=flat(returns),
                     action_mask=jax.tree.map(flat, rollout.action_mask))


def training_sequences(rollout: Rollout, advantages: jax.Array, returns: jax.Array) -> Minibatch:
    """The rollout and its targets as ``[T, B]`` sequences with the core's
    start state: what a recurrent policy's update replays."""
    return Minibatch(obs=rollout.obs, action=rollout.action, log_prob=rollout.log_prob,
                     value=rollout.value, dist_params=rollout.dist_params,
                     advantages=advantages, returns=returns, action_mask=rollout.action_mask,
                     core_carry=rollout.core_carry,
                     episode_end=jnp.logical_or(rollout.terminated, rollout.truncated))


def network_outputs(spec: Spec, params, batch: Minibatch):
    """``(policy_out, value, batch)`` of the network on ``batch``, all flat
    ``[N, ...]``: a recurrent policy replays the sequences from their start
    state, then they are flattened."""
    if batch.core_carry is None:
        return (*spec.ac.network.apply(params, batch.obs), batch)
    policy_out, value = actor_critic.sequence_outputs(spec.ac, params, batch.core_carry,
                                                      batch.obs, batch.episode_end)
    flat = lambda x: x.reshape((-1,) + x.shape[2:])
    batch = jax.tree.map(flat, batch.replace(core_carry=None, episode_end=None))
    return jax.tree.map(flat, policy_out), flat(value), batch


def loss(spec: Spec, params, batch: Minibatch, hp: HParams, kl_beta: jax.Array):
    """Policy objective + value loss − entropy bonus on ``batch``: ``(total, stats)``."""
    config = spec.config
    policy_out, value, batch = network_outputs(spec, params, batch)
    dist = actor_critic.distribution(spec.ac, policy_out, batch.action_mask)
    old_dist = actor_critic.distribution(spec.ac, batch.dist_params, batch.action_mask)
    log_prob = dist.log_prob(batch.action)
    adv = batch.advantages
    if config.normalize_advantages:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    kl = old_dist.kl(dist)
    entropy_per_sample = dist.entropy()
    inputs = PolicyLossInputs(log_prob=log_prob, old_log_prob=batch.log_prob, advantages=adv,
                              kl=kl, entropy=entropy_per_sample, hparams=hp, kl_beta=kl_beta)
    policy_loss = spec.objective(inputs)
    if config.clip_value_loss:
        value_loss = ops.clipped_value_loss(value, batch.value, batch.returns, hp.clip_eps)
    else:
        value_loss = ops.squared_loss(value, batch.returns)
    entropy = entropy_per_sample.mean()
    total = policy_loss + hp.vf_coef * value_loss - hp.ent_coef * entropy
    return total, dict(policy_loss=policy_loss, value_loss=value_loss, entropy=entropy,
                       approx_kl=kl.mean(),
                       clip_fraction=ops.clip_fraction(log_prob, batch.log_prob, hp.clip_eps))


def update_minibatch(spec: Spec, params, opt_state, batch: Minibatch, hp: HParams,
                     kl_beta: jax.Array):
    """One clipped Adam step on ``batch``: ``(params, opt_state, stats)``."""
    grads, stats = jax.grad(functools.partial(loss, spec), has_aux=True)(params, batch, hp, kl_beta)
    # Clipping and Adam run on one flat vector: a few large operations
    # instead of a few per parameter array, which on a CPU cuts about a
    # sixth of a small minibatch update's time.
    flat_grads, unravel = ravel_pytree(grads)
    grad_norm = ops.global_norm(flat_grads)  # logged before clipping: shows when clipping bites
    flat_grads = ops.clip_by_global_norm(flat_grads, hp.max_grad_norm)
    updates, opt_state = spec.optimizer.update(flat_grads, opt_state)
    params = optax.apply_updates(params, unravel(updates))
    return params, opt_state, {**stats, "grad_norm": grad_norm}


def update_epoch(spec: Spec, params, opt_state, data: Minibatch, hp: HParams,
                 kl_beta: jax.Array, key: jax.Array):
    """One pass over ``data`` in ``num_minibatches`` shuffled minibatches."""
    num_minibatches = spec.config.num_minibatches
    if data.core_carry is not None:
        minibatches = sequence_minibatches(spec, data, key)
        return scan_minibatches(spec, params, opt_state, minibatches, hp, kl_beta)
    size = spec.batch_size // num_minibatches
    permutation = jax.random.permutation(key, spec.batch_size)
    shuffled = lambda x: x[permutation].reshape((num_minibatches, size) + x.shape[1:])
    minibatches = split_over_data_axis(jax.tree.map(shuffled, data), batch_axis=1)
    return scan_minibatches(spec, params, opt_state, minibatches, hp, kl_beta)


def sequence_minibatches(spec: Spec, data: Minibatch, key: jax.Array) -> Minibatch:
    """``[T, B]`` sequences shuffled along environments and cut into
    ``num_minibatches`` of ``B / num_minibatches`` whole sequences each
    (leading minibatch axis), time order kept."""
    num_minibatches, num_envs = spec.config.num_minibatches, spec.config.num_envs
    size = num_envs // num_minibatches
    permutation = jax.random.permutation(key, num_envs)

    def sequences(x):  # [T, B, ...] -> [num_minibatches, T, size, ...]
        x = x[:, permutation].reshape((x.shape[0], num_minibatches, size) + x.shape[2:])
        return jnp.swapaxes(x, 0, 1)

    def start_states(x):  # [B, ...] -> [num_minibatches, size, ...]
        return x[permutation].reshape((num_minibatches, size) + x.shape[1:])

    seqs = jax.tree.map(sequences, data.replace(core_carry=None))
    carry = jax.tree.map(start_states, data.core_carry)
    return split_over_data_axis(seqs, batch_axis=2).replace(
        core_carry=split_over_data_axis(carry, batch_axis=1))


def scan_minibatches(spec: Spec, params, opt_state, minibatches: Minibatch, hp: HParams,
                     kl_beta: jax.Array):
    """One update per minibatch (leading axis), in order."""

    def one_minibatch(carry, batch):
        params, opt_state, stats = update_minibatch(spec, *carry, batch, hp, kl_beta)
        return (params, opt_state), stats

    (params, opt_state), stats = jax.lax.scan(one_minibatch, (params, opt_state), minibatches)
    return params, opt_state, stats


def current_kl_beta(hparams: HParams, exponent: jax.Array) -> jax.Array:
    """β = hparams.kl_beta · 2^exponent (see ``State.kl_beta_exponent``)."""
    return hparams.kl_beta * jnp.exp2(exponent)


def adapt_kl_beta_exponent(spec: Spec, params, data: Minibatch, hp: HParams,
                           exponent: jax.Array) -> jax.Array:
    """The paper's §4 rule on k: +1 (β doubles) if the batch's KL after the
    update exceeds 1.5 d_targ, −1 below d_targ/1.5; unchanged otherwise."""
    if data.core_carry is None:
        new_dist = actor_critic.policy_distribution(spec.ac, params, data.obs, data.action_mask)
    else:
        policy_out, _, data = network_outputs(spec, params, data)
        new_dist = actor_critic.distribution(spec.ac, policy_out, data.action_mask)
    d = actor_critic.distribution(spec.ac, data.dist_params, data.action_mask).kl(new_dist).mean()
    return exponent + jnp.log2(ops.adaptive_kl_beta(1.0, d, hp.kl_target))


def step(spec: Spec, state: State) -> tuple[State, dict[str, jax.Array]]:
    """One PPO iteration: collect, GAE, ``num_epochs`` epochs of minibatch updates."""
    state, rollout = collect(spec, state)
    return update(spec, state, rollout)


def update(spec: Spec, state: State, rollout: Rollout) -> tuple[State, dict[str, jax.Array]]:
    """GAE and ``num_epochs`` epochs of minibatch updates on a collected ``rollout``."""
    config, hp = spec.config, state.hparams
    advantages, returns = advantages_and_returns(spec, state.params, rollout, hp)
    if rollout.core_carry is None:
        data = training_batch(rollout, advantages, returns)
    else:
        data = training_sequences(rollout, advantages, returns)
    learning_rate = actor_critic.annealed_learning_rate(
        hp.learning_rate, state.iteration, spec.total_iterations, config.anneal_lr)
    opt_state = ops.with_learning_rate(state.opt_state, learning_rate)

    kl_beta = current_kl_beta(hp, state.kl_beta_exponent)
    rng, *epoch_keys = jax.random.split(state.rng, config.num_epochs + 1)

    def one_epoch(carry, key):
        params, opt_state, stats = update_epoch(spec, *carry, data, hp, kl_beta, key)
        return (params, opt_state), stats

    keys = jnp.stack(epoch_keys)
    (params, opt_state), stats = jax.lax.scan(one_epoch, (state.params, opt_state), keys)
    kl_beta_exponent = state.kl_beta_exponent
    if config.objective == "kl_adaptive":
        kl_beta_exponent = adapt_kl_beta_exponent(spec, params, data, hp, kl_beta_exponent)

    metrics = {k: v.mean() for k, v in stats.items()}
    metrics.update(
        **actor_critic.episode_metrics(rollout.episode_return, rollout.episode_done),
        kl_beta=current_kl_beta(hp, kl_beta_exponent),
        learning_rate=learning_rate,
        explained_variance=actor_critic.explained_variance(rollout.value, returns),
    )
    state = state.replace(params=params, opt_state=opt_state, rng=rng,
                          kl_beta_exponent=kl_beta_exponent, iteration=state.iteration + 1,
                          env_steps=state.env_steps.add(spec.batch_size))
    return state, jax.tree.map(lambda x: x.astype(jnp.float32), metrics)


policy_params = actor_critic.policy_params
act = actor_critic.act
evaluate = actor_critic.evaluate


def make(env, env_params, config: Config = Config(), policy_loss=None) -> Agent:
    """Binds PPO to an environment. Validates ``config`` and the action space
    before anything is traced, so bad input fails fast with a clear message.

    ``policy_loss``: optional ``fn(PolicyLossInputs) -> scalar`` replacing the
    objective that ``config.objective`` selects (the value loss, entropy bonus
    and, for ``"kl_adaptive"``, the β rule stay). Build it from ``jaxrl.ops``.
    """
    spec = make_spec(env, env_params, config, policy_loss)
    return actor_critic.bind_agent("ppo", spec, env, env_params, init=init, step=step)
