"""IMPALA with V-trace (Espeholt et al. 2018, arXiv:1802.01561), actors and learner
in one jitted step.

Actors only collect experience; a learner trains on their trajectories. Here
both live in one jitted ``step`` (the "Anakin" shape): ``num_envs`` vmapped
gymnax environments run ``rollout_len`` steps with the *actors'* parameters,
then the learner does one update on that batch with its own forward pass.

The actors' parameters are ``policy_lag`` learner updates old: the state keeps
a ring of the last ``policy_lag`` parameter versions, and actors act with the
oldest. That is the lag a distributed IMPALA has between an actor pulling
parameters and the learner consuming its trajectory, made exact and
reproducible, so V-trace has real off-policy data to correct.
``policy_lag=0`` is the synchronous (A2C-shaped) case.

The loss is the paper's §4.2, with the behaviour log-probs stored with the
trajectory and the target policy π from the learner's forward pass:

    ρ_s = min(ρ̄, π(a_s|x_s)/μ(a_s|x_s)),  c_s = λ·min(c̄, π/μ)
    v_s = V(x_s) + δ_sV + γ_s c_s (v_{s+1} − V(x_{s+1}))                 (Eq. 1, Remark 1)
    L = −Σ ρ_s log π(a_s|x_s) (r_s + γ_s v_{s+1} − V(x_s))               policy gradient
        + baseline_cost · Σ ½ (v_s − V(x_s))²                            baseline
        − entropy_cost · Σ H[π(·|x_s)]                                   entropy bonus

(means over time and batch rather than sums, so the learning rate does not
scale with the batch). ``correction="none"`` ignores the importance weights
(ρ = c = 1), the paper's "no correction" baseline.

Time limits are not terminal states: on a step that is truncated and not
terminated the reward absorbs γ·V(final_observation), and the trace is cut at
every episode end (see ``jaxrl.ops.returns``).

Recurrent cores (``core`` of ``lstm`` or ``gru``): the actors keep the core's
state per environment in the state (:class:`RecurrentState`), reset after
each step that ends an episode, and every trajectory stores the state it
started from (``Trajectory.core_carry``). Under policy lag that state belongs
to the behaviour parameters that produced it, as do the actions. The learner
replays the trajectory from the stored start state with its *own* parameters,
resetting at the same episode ends (truncated BPTT over the unroll): only the
start state is the actors', every later state is the learner's. V-trace
corrects for the actions having come from μ; the start state's staleness (up
to ``policy_lag`` updates old) is left uncorrected, as with R2D2's stored
state (Kapturowski et al. 2019), and its influence fades along the unroll. The
actors' own states are never recomputed with newer parameters: they run on
with what their parameters produced. The threaded actors of
``jaxrl.distributed.async_impala`` do the same, each keeping its own
environments' states across its rollouts, whose lag is whatever the threads
produce rather than ``policy_lag``.

The steps are module-level pure functions over a static :class:`Spec`
(:func:`targets`, :func:`loss`, :func:`update`, :func:`rollout`,
:func:`step`, ...). The ones that do not depend on where actors run are
bound by :func:`make_learner` into a :class:`Learner`, which the threaded
actor/learner split (``jaxrl.distributed.async_impala``) reuses.

Several devices: ``jaxrl.distributed.data_parallel(agent, mesh)`` splits the
environments (and so the actors' work and the learner's batch) over a device
mesh and replicates the parameters; its ``step`` is then a data-parallel
step in which XLA all-reduces the gradient, so every device applies the same
update and the parameters stay identical everywhere.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import Any, Callable

import chex
import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxrl import envs, ops
from jaxrl.agents import actor_critic, fields
from jaxrl.agents.base import Agent, AgentConfig
from jaxrl.config import field, hparams_class, non_negative, one_of, positive, unit_interval
from jaxrl.mesh import check_divisible, state_shardings
from jaxrl.ops.counters import StepCounter

ACTION_SPACES = actor_critic.ACTION_SPACES
CORRECTIONS = ("vtrace", "none")
OPTIMIZERS = ("adam", "rmsprop")
TORSOS = fields.TORSOS


@dataclasses.dataclass(frozen=True)
class Config(AgentConfig):
    """IMPALA settings. Baseline cost, ρ̄ = c̄ = 1, γ, the unroll length and
    the gradient-norm bound are the paper's (Table G.1); batch, optimiser and
    entropy cost are scaled to small control tasks (Adam 1e-3, 8 envs x 20
    steps, entropy cost 0.001), which solve CartPole-v1 with policy_lag=4
    inside 10^6 env steps (benchmarks/README.md has the seed counts)."""

    num_envs: int = fields.num_envs(8)
    """Parallel environments of the actors (vmapped); the learner's batch size."""
    rollout_len: int = fields.rollout_len(20)
    """Unroll length n: environment steps per environment per iteration."""
    policy_lag: int = field(4, check=non_negative)
    """Learner updates by which the actors' parameters trail the learner's (0: synchronous)."""
    correction: str = field("vtrace", check=one_of(*CORRECTIONS))
    """Off-policy correction: vtrace | none (importance weights ignored, ρ = c = 1)."""
    learning_rate: float = fields.learning_rate(
        1e-3, doc="Optimiser step size (annealed linearly to 0 over total_steps if anneal_lr).")
    anneal_lr: bool = fields.anneal_lr()
    total_steps: int = fields.total_steps(1_000_000)
    optimizer: str = field("adam", check=one_of(*OPTIMIZERS))
    """adam | rmsprop (the paper's: decay 0.99, momentum 0, ε = rmsprop_eps)."""
    rmsprop_eps: float = field(0.01, check=positive)
    """RMSProp ε (Table G.1)."""
    gamma: float = fields.gamma()
    baseline_cost: float = field(0.5, check=non_negative, swept=True)
    """Weight of the baseline (value) loss."""
    entropy_cost: float = field(0.001, check=non_negative, swept=True)
    """Weight of the entropy bonus. The paper's 0.01 is tuned for Atari's
    clipped rewards; on CartPole's returns it holds the policy near uniform."""
    clip_rho_threshold: float = field(1.0, check=positive, swept=True)
    """ρ̄: truncation of the importance weights in the V-trace target."""
    clip_c_threshold: float = field(1.0, check=positive, swept=True)
    """c̄: truncation of the trace coefficients (the paper assumes ρ̄ >= c̄)."""
    clip_pg_rho_threshold: float = field(1.0, check=positive, swept=True)
    """ρ̄ of the policy-gradient advantages."""
    vtrace_lambda: float = field(1.0, check=unit_interval, swept=True)
    """λ of Remark 2 (c_i = λ·min(c̄, π/μ))."""
    max_grad_norm: float = fields.max_grad_norm(40.0)
    """Global gradient-norm bound (the paper's). A tight bound such as 0.5 lets
    the value loss's large gradients crowd the policy's out of the clipped
    update, and lagged-actor runs on CartPole-v1 stall."""
    hidden_sizes: tuple[int, ...] = fields.hidden_sizes((64, 64))
    activation: str = fields.activation("tanh")
    torso: str = fields.torso()
    core: str = fields.core()
    core_size: int = fields.core_size()


# Numeric hyperparameters carried in the state (leaves may be batched);
# shared with a2c, whose Config sweeps the same fields.
HParams = hparams_class(Config)


class Trajectory(struct.PyTreeNode):
    """What an actor hands the learner: time-major ``[T, B, ...]`` experience
    and the observation after it (``next_obs``, ``[B, ...]``).

    ``behaviour_log_prob`` is log μ(a_t|x_t) of the parameters that acted;
    ``final_obs[t]`` is the true next observation (before auto-reset), used to
    bootstrap on truncation. ``episode_return``/``episode_done`` are the
    :class:`jaxrl.envs.EpisodeStats` outputs, for logging only.
    ``obs``, ``final_obs`` and ``next_obs`` are what the network sees; an
    env's action mask is split off into ``action_mask`` (flat, ``[T, B, M]``;
    None for an env without one), under which the learner scores the policy.
    """

    obs: jax.Array
    action: jax.Array
    behaviour_log_prob: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    final_obs: jax.Array
    next_obs: jax.Array
    episode_return: jax.Array
    episode_done: jax.Array
    action_mask: jax.Array | None = None
    core_carry: Any = None
    """A recurrent core's state ``[B, ...]`` at the trajectory's start, from the
    parameters that acted (None without a core)."""


@struct.dataclass
class State:
    """Everything an on-device IMPALA run needs, as one pytree."""

    params: Any
    """The learner's parameters."""
    actor_params: Any
    """Ring of the last ``max(policy_lag, 1)`` parameter versions (leading axis);
    slot ``iteration % policy_lag`` holds the version the actors use now. Unused
    (a copy of ``params``) when ``policy_lag == 0``."""
    actor_versions: jax.Array
    """``[max(policy_lag, 1)]`` int32: the learner update count each ring slot's
    parameters were taken at (the measured lag is ``iteration`` minus it)."""
    opt_state: optax.OptState
    env_state: Any
    obs: jax.Array
    rng: jax.Array
    hparams: HParams
    iteration: jax.Array
    env_steps: StepCounter
    """Environment steps taken, exact past 2^31 (``int(state.env_steps)``)."""


@struct.dataclass
class RecurrentState(State):
    """An on-device IMPALA run's state with a recurrent core (a feed-forward
    run's :class:`State` keeps its pytree unchanged)."""

    core_carry: Any
    """The actors' core state per environment ``[num_envs, ...]``, where the
    next trajectory starts."""


class Spec(actor_critic.OnPolicySpec):
    """What an IMPALA run holds fixed (``train_env`` is the on-device actors';
    actors elsewhere bring their own)."""


def make_spec(env, env_params, config: Config = Config()) -> Spec:
    """Validates ``config`` and the action space, and builds IMPALA's static parts."""
    config.validate()
    ac = actor_critic.build(env, env_params, config)
    if config.optimizer == "adam":
        optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=1.0)
    else:
        optimizer = optax.inject_hyperparams(optax.rmsprop)(learning_rate=1.0, decay=0.99,
                                                            eps=config.rmsprop_eps)
    train_env = envs.BatchEnv(envs.EpisodeStats(ac.act_env), config.num_envs)
    return Spec(config=config, ac=ac, optimizer=optimizer, train_env=train_env)


def learning_rate_at(spec: Spec, hp: HParams, iteration) -> jax.Array:
    """The (annealed) learning rate of learner update ``iteration``."""
    return actor_critic.annealed_learning_rate(hp.learning_rate, iteration, spec.total_iterations,
                                               spec.config.anneal_lr)


def init_opt_state(spec: Spec, params, hp: HParams):
    """The optimiser's state for ``params``, at the initial learning rate."""
    return ops.with_learning_rate(spec.optimizer.init(params), hp.learning_rate)


def policy(spec: Spec, params, obs: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """A sampled action and its log-probability (the behaviour log μ); batched
    env observations (an action mask in them is obeyed)."""
    dist = actor_critic.policy_distribution(spec.ac, params,
                                            *actor_critic.split_observation(spec.ac, obs))
    action = dist.sample(key)
    return action, dist.log_prob(action)


def recurrent_policy(spec: Spec, params, carry, obs: jax.Array, key: jax.Array):
    """:func:`policy` of a recurrent core from its state ``carry``:
    ``(action, log μ, carry after)``."""
    network_obs, mask = actor_critic.split_observation(spec.ac, obs)
    carry, (policy_out, _) = spec.ac.network.apply(params, carry, network_obs)
    dist = actor_critic.distribution(spec.ac, policy_out, mask)
    action = dist.sample(key)
    return action, dist.log_prob(action), carry


def replay(spec: Spec, params, traj: Trajectory):
    """A recurrent learner's pass over ``traj`` from its stored start state:
    ``(policy_out, values, bootstrap value, final_values())``, the last a
    function (V of each step's true next observation from the state it left,
    which only truncated steps use)."""
    ac = spec.ac
    ends = jnp.logical_or(traj.terminated, traj.truncated)
    carry, hidden, carries = actor_critic.unroll(ac, params, traj.core_carry, traj.obs, ends)
    policy_out, values = actor_critic.heads(ac, params, hidden)
    bootstrap_value = actor_critic.next_step_values(ac, params, carry, traj.next_obs)
    final_values = lambda: actor_critic.next_step_values(ac, params, carries, traj.final_obs)
    return policy_out, values, bootstrap_value, final_values


def learner_outputs(spec: Spec, params, traj: Trajectory, hp: HParams):
    """The learner's own forward pass over a trajectory and its V-trace
    targets: ``(dist, log_prob, values, vtrace_output)``."""
    network = spec.ac.network
    chex.assert_rank(traj.reward, 2)  # [T, B]
    if traj.core_carry is None:
        policy_out, values = network.apply(params, traj.obs)
        bootstrap_value = network.apply(params, traj.next_obs)[1]
        final_values = lambda: network.apply(params, traj.final_obs)[1]
    else:
        policy_out, values, bootstrap_value, final_values = replay(spec, params, traj)
    dist = actor_critic.distribution(spec.ac, policy_out, traj.action_mask)
    log_prob = dist.log_prob(traj.action)
    chex.assert_equal_shape([log_prob, traj.behaviour_log_prob, values, traj.reward])

    # Truncation: bootstrap from V(final_obs) inside the reward, cut the trace.
    # gymnax sets both flags when an episode terminates at its last allowed
    # step; the terminal state has no future, so only a cut-off one bootstraps.
    cut_off = jnp.logical_and(traj.truncated, jnp.logical_not(traj.terminated))
    final_values = jax.lax.stop_gradient(final_values())
    rewards = traj.reward + cut_off.astype(jnp.float32) * hp.gamma * final_values
    ends = jnp.logical_or(traj.terminated, traj.truncated).astype(jnp.float32)
    discounts = hp.gamma * (1.0 - ends)

    log_rhos = jax.lax.stop_gradient(log_prob) - traj.behaviour_log_prob
    if spec.config.correction == "none":
        log_rhos = jnp.zeros_like(log_rhos)  # ρ = c = 1: treat μ as if it were π
    vtrace = ops.vtrace(
        log_rhos, discounts, rewards, jax.lax.stop_gradient(values),
        jax.lax.stop_gradient(bootstrap_value), clip_rho_threshold=hp.clip_rho_threshold,
        clip_c_threshold=hp.clip_c_threshold, clip_pg_rho_threshold=hp.clip_pg_rho_threshold,
        lambda_=hp.vtrace_lambda)
    return dist, log_prob, values, vtrace


def targets(spec: Spec, params, traj: Trajectory, hp: HParams) -> ops.VTraceOutput:
    """V-trace ``(vs, pg_advantages)`` of ``traj`` under ``params``."""
    return learner_outputs(spec, params, traj, hp)[3]


def loss(spec: Spec, params, traj: Trajectory, hp: HParams):
    """Policy gradient + baseline loss − entropy bonus on ``traj``: ``(total, stats)``."""
    dist, log_prob, values, vtrace = learner_outputs(spec, params, traj, hp)
    policy_loss = ops.policy_gradient_loss(log_prob, vtrace.pg_advantages)
    baseline_loss = ops.squared_loss(values, vtrace.vs)
    entropy = dist.entropy().mean()
    total = policy_loss + hp.baseline_cost * baseline_loss - hp.entropy_cost * entropy
    rhos = jnp.exp(jax.lax.stop_gradient(log_prob) - traj.behaviour_log_prob)
    return total, dict(
        policy_loss=policy_loss, baseline_loss=baseline_loss, entropy=entropy,
        mean_rho=rhos.mean(),
        clipped_rho_fraction=(rhos > hp.clip_rho_threshold).astype(jnp.float32).mean(),
        kl_behaviour=(traj.behaviour_log_prob - jax.lax.stop_gradient(log_prob)).mean(),
        explained_variance=actor_critic.explained_variance(values, vtrace.vs))


def update(spec: Spec, params, opt_state, hp: HParams, traj: Trajectory, iteration):
    """One learner step on ``traj``, pure: ``(params, opt_state, metrics)``."""
    grads, stats = jax.grad(functools.partial(loss, spec), has_aux=True)(params, traj, hp)
    grad_norm = ops.global_norm(grads)  # before clipping: shows when clipping bites
    grads = ops.clip_by_global_norm(grads, hp.max_grad_norm)
    learning_rate = learning_rate_at(spec, hp, iteration)
    opt_state = ops.with_learning_rate(opt_state, learning_rate)
    updates, opt_state = spec.optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    stats.update(grad_norm=grad_norm, learning_rate=learning_rate,
                 **actor_critic.episode_metrics(traj.episode_return, traj.episode_done))
    return params, opt_state, jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), stats)


@dataclasses.dataclass(frozen=True)
class Learner:
    """The parts of IMPALA that do not depend on where actors run: the
    module-level functions of the same names with ``spec`` bound
    (``init_params`` and ``act`` are :mod:`actor_critic`'s, on network
    parameters), the flax ``network`` and ``act_env``, the env actions are
    taken in (``RescaleAction`` for continuous actions)."""

    network: Any
    init_params: Callable
    init_opt_state: Callable
    policy: Callable
    act: Callable
    update: Callable
    act_env: Any
    learning_rate_at: Callable
    targets: Callable
    spec: Spec


def bind_learner(spec: Spec) -> Learner:
    """The learner's functions with ``spec`` bound."""
    bind = lambda fn: functools.partial(fn, spec)
    network_bound = lambda fn: functools.partial(fn, spec.ac)
    return Learner(
        network=spec.ac.network, init_params=network_bound(actor_critic.init_params),
        init_opt_state=bind(init_opt_state), policy=bind(policy),
        act=network_bound(actor_critic.network_action), update=bind(update),
        act_env=spec.ac.act_env, learning_rate_at=bind(learning_rate_at), targets=bind(targets),
        spec=spec)


def make_learner(env, env_params, config: Config) -> Learner:
    """Network, acting and the V-trace update for ``env`` (validates ``config``)."""
    return bind_learner(make_spec(env, env_params, config))


def step_and_record(split, batch_env, env_params, env_state, obs, action, log_prob, key):
    """Steps ``batch_env`` with ``action`` (taken at ``obs`` with behaviour
    log-prob ``log_prob``): ``(next_obs, env_state, the step's Trajectory
    row)``; ``split`` separates an observation from its action mask."""
    next_obs, env_state, reward, terminated, truncated, info = batch_env.step(
        key, env_state, action, env_params)
    network_obs, mask = split(obs)
    transition = Trajectory(
        obs=network_obs, action=action, behaviour_log_prob=log_prob,
        reward=reward.astype(jnp.float32), terminated=terminated, truncated=truncated,
        final_obs=split(info["final_observation"])[0], next_obs=None,
        episode_return=info["episode_return"], episode_done=info["episode_done"],
        action_mask=mask)
    return next_obs, env_state, transition


def rollout(learner: Learner, batch_env, env_params, params, env_state, obs, key, length: int):
    """``length`` steps of ``batch_env`` with ``params``; returns
    ``(env_state, obs, Trajectory)``. Pure; used by on-device and async actors."""

    split = functools.partial(actor_critic.split_observation, learner.spec.ac)

    def one_step(carry, key):
        env_state, obs = carry
        k_act, k_env = jax.random.split(key)
        action, log_prob = learner.policy(params, obs, k_act)
        next_obs, env_state, transition = step_and_record(
            split, batch_env, env_params, env_state, obs, action, log_prob, k_env)
        return (env_state, next_obs), transition

    keys = jax.random.split(key, length)
    (env_state, next_obs), traj = jax.lax.scan(one_step, (env_state, obs), keys)
    return env_state, next_obs, traj.replace(next_obs=split(next_obs)[0])


def rollout_recurrent(spec: Spec, batch_env, env_params, params, env_state, obs, core_carry,
                      key, length: int):
    """:func:`rollout` of a recurrent core from its state ``core_carry``
    ``[B, ...]``, reset after each step that ends an episode; returns
    ``(env_state, obs, core_carry, Trajectory)`` (the trajectory holds the
    state it started from)."""
    split = functools.partial(actor_critic.split_observation, spec.ac)

    def one_step(carry, key):
        env_state, obs, core_carry = carry
        k_act, k_env = jax.random.split(key)
        action, log_prob, core_carry = recurrent_policy(spec, params, core_carry, obs, k_act)
        next_obs, env_state, transition = step_and_record(
            split, batch_env, env_params, env_state, obs, action, log_prob, k_env)
        ended = jnp.logical_or(transition.terminated, transition.truncated)
        core_carry = actor_critic.reset_carry(core_carry, ended)
        return (env_state, next_obs, core_carry), transition

    keys = jax.random.split(key, length)
    (env_state, next_obs, end_carry), traj = jax.lax.scan(
        one_step, (env_state, obs, core_carry), keys)
    return env_state, next_obs, end_carry, traj.replace(next_obs=split(next_obs)[0],
                                                        core_carry=core_carry)


def behaviour_params(state: State, policy_lag: int) -> tuple[Any, jax.Array]:
    """``(params, version)`` the actors act with in ``state``'s next step:
    θ_{iteration − policy_lag} (θ_0 during the first ``policy_lag`` steps), or
    the learner's own θ_iteration when ``policy_lag == 0`` (synchronous)."""
    if policy_lag == 0:
        return state.params, state.iteration
    slot = state.iteration % policy_lag
    return jax.tree.map(lambda ring: ring[slot], state.actor_params), state.actor_versions[slot]


def shard_state(state: State, mesh: jax.sharding.Mesh, axis: str | None = None) -> State:
    """Deprecated: ``jaxrl.distributed.data_parallel(agent, mesh)`` places the
    state the same way (:func:`jaxrl.mesh.state_shardings`: the per-environment
    leaves split over ``axis``, default the mesh's first, the rest replicated)."""
    warnings.warn("impala.shard_state is deprecated: use "
                  "jaxrl.distributed.data_parallel(agent, mesh)", DeprecationWarning, stacklevel=2)
    axis = mesh.axis_names[0] if axis is None else axis
    num_envs = state.obs.shape[0]
    check_divisible("impala.Config.num_envs", num_envs, mesh, axis)
    return jax.device_put(state, state_shardings(state, mesh, num_envs, axis=axis))


def init(spec: Spec, key: jax.Array, hparams: HParams | None = None) -> State:
    """A fresh run: parameters (every ring slot a copy), optimiser state, reset environments."""
    hparams = spec.config.hparams() if hparams is None else hparams
    ring_size = max(spec.config.policy_lag, 1)
    key, k_params, k_env = jax.random.split(key, 3)
    params = actor_critic.init_params(spec.ac, k_params)
    obs, env_state = spec.train_env.reset(k_env, spec.ac.env_params)
    common = dict(
        params=params,
        actor_params=jax.tree.map(lambda x: jnp.stack([x] * ring_size), params),
        actor_versions=jnp.zeros((ring_size,), jnp.int32),
        opt_state=init_opt_state(spec, params, hparams),
        env_state=env_state, obs=obs, rng=key, hparams=hparams,
        iteration=jnp.zeros((), jnp.int32), env_steps=StepCounter.zeros(),
    )
    if spec.ac.recurrent:
        return RecurrentState(**common, core_carry=actor_critic.initial_carry(
            spec.ac, (spec.config.num_envs,)))
    return State(**common)


def remember_params(state: State, policy_lag: int) -> tuple[Any, jax.Array]:
    """The actors' ring after this step: θ_iteration replaces θ_{iteration−lag},
    which no actor needs any more; it is acted with ``policy_lag`` updates from now."""
    if policy_lag == 0:
        return state.actor_params, state.actor_versions
    slot = state.iteration % policy_lag
    actor_params = jax.tree.map(lambda ring, p: ring.at[slot].set(p),
                                state.actor_params, state.params)
    return actor_params, state.actor_versions.at[slot].set(state.iteration)


def step(spec: Spec, state: State) -> tuple[State, dict[str, jax.Array]]:
    """Actors unroll with their (lagged) parameters, then one learner update."""
    lag = spec.config.policy_lag
    # Actors: act with the parameters they hold, compute no gradients.
    behaviour, behaviour_version = behaviour_params(state, lag)
    rng, k_rollout = jax.random.split(state.rng)
    if spec.ac.recurrent:
        env_state, obs, core_carry, traj = rollout_recurrent(
            spec, spec.train_env, spec.ac.env_params, behaviour, state.env_state, state.obs,
            state.core_carry, k_rollout, spec.config.rollout_len)
        state = state.replace(core_carry=core_carry)
    else:
        env_state, obs, traj = rollout(bind_learner(spec), spec.train_env, spec.ac.env_params,
                                       behaviour, state.env_state, state.obs, k_rollout,
                                       spec.config.rollout_len)
    # Learner: its own forward pass on the actors' trajectory, one update.
    params, opt_state, metrics = update(spec, state.params, state.opt_state, state.hparams, traj,
                                        state.iteration)
    actor_params, actor_versions = remember_params(state, lag)
    metrics["policy_lag"] = (state.iteration - behaviour_version).astype(jnp.float32)
    state = state.replace(
        params=params, actor_params=actor_params, actor_versions=actor_versions,
        opt_state=opt_state, env_state=env_state, obs=obs, rng=rng,
        iteration=state.iteration + 1, env_steps=state.env_steps.add(spec.batch_size),
    )
    return state, metrics


policy_params = actor_critic.policy_params
act = actor_critic.act
evaluate = actor_critic.evaluate


def make(env, env_params, config: Config = Config()) -> Agent:
    """Binds on-device IMPALA to a gymnax environment. Validates ``config``
    and the action space before anything is traced."""
    spec = make_spec(env, env_params, config)
    return actor_critic.bind_agent("impala", spec, env, env_params, init=init, step=step)
