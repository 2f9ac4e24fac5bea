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

The pieces that do not depend on where actors run (network, acting, the
V-trace targets and the update on a :class:`Trajectory`) are built by
:func:`make_learner`, so a threaded actor/learner split can reuse them.

Several devices: ``jaxrl.distributed.data_parallel(agent, mesh)`` splits the
environments (and so the actors' work and the learner's batch) over a device
mesh and replicates the parameters; its ``step`` is then a data-parallel
step in which XLA all-reduces the gradient, so every device applies the same
update and the parameters stay identical everywhere.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Callable

import chex
import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxrl import envs, ops
from jaxrl.agents.base import Agent, AgentConfig
from jaxrl.config import field, hparams_class, non_negative, one_of, positive, sizes, unit_interval
from jaxrl.mesh import check_divisible, state_shardings
from jaxrl.networks import ACTIVATIONS, ActorCritic
from jaxrl.ops.counters import StepCounter

ACTION_SPACES = ("discrete", "continuous")
CORRECTIONS = ("vtrace", "none")
OPTIMIZERS = ("adam", "rmsprop")
TORSOS = ("auto", "mlp", "minatar_cnn")


@dataclasses.dataclass(frozen=True)
class Config(AgentConfig):
    """IMPALA settings. Baseline cost, ρ̄ = c̄ = 1, γ, the unroll length and
    the gradient-norm bound are the paper's (Table G.1); batch, optimiser and
    entropy cost are scaled to small control tasks (Adam 1e-3, 8 envs x 20
    steps, entropy cost 0.001), which solve CartPole-v1 with policy_lag=4
    inside 10^6 env steps (benchmarks/README.md has the seed counts)."""

    num_envs: int = field(8, check=positive)
    """Parallel environments of the actors (vmapped); the learner's batch size."""
    rollout_len: int = field(20, check=positive)
    """Unroll length n: environment steps per environment per iteration."""
    policy_lag: int = field(4, check=non_negative)
    """Learner updates by which the actors' parameters trail the learner's (0: synchronous)."""
    correction: str = field("vtrace", check=one_of(*CORRECTIONS))
    """Off-policy correction: vtrace | none (importance weights ignored, ρ = c = 1)."""
    learning_rate: float = field(1e-3, check=positive, swept=True)
    """Optimiser step size (annealed linearly to 0 over total_steps if anneal_lr)."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to zero over total_steps."""
    total_steps: int = field(1_000_000, check=positive)
    """Environment steps the annealing schedule spans (the run's length)."""
    optimizer: str = field("adam", check=one_of(*OPTIMIZERS))
    """adam | rmsprop (the paper's: decay 0.99, momentum 0, ε = rmsprop_eps)."""
    rmsprop_eps: float = field(0.01, check=positive)
    """RMSProp ε (Table G.1)."""
    gamma: float = field(0.99, check=unit_interval, swept=True)
    """Discount factor γ."""
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
    max_grad_norm: float = field(40.0, check=positive, swept=True)
    """Global gradient-norm bound (the paper's). A tight bound such as 0.5 lets
    the value loss's large gradients crowd the policy's out of the clipped
    update, and lagged-actor runs on CartPole-v1 stall."""
    hidden_sizes: tuple[int, ...] = field((64, 64), check=sizes)
    """Hidden layer sizes of the actor and critic torsos."""
    activation: str = field("tanh", check=one_of(*ACTIVATIONS))
    """Hidden activation: tanh | relu | elu | gelu | silu | leaky_relu."""
    torso: str = field("auto", check=one_of(*TORSOS))
    """Network torso: auto (CNN for image observations) | mlp | minatar_cnn."""


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


@dataclasses.dataclass(frozen=True)
class Learner:
    """The parts of IMPALA that do not depend on where actors run.

    Attributes:
      network: the flax ``ActorCritic``.
      init_params: ``init_params(key) -> params``.
      init_opt_state: ``init_opt_state(params, hparams) -> opt_state``.
      policy: ``policy(params, obs, key) -> (action, log_prob)``; batched obs.
      act: ``act(params, obs, key, deterministic=False) -> action``.
      update: ``update(params, opt_state, hparams, trajectory, iteration)
        -> (params, opt_state, metrics)``: one learner step, pure.
      act_env: the env actions are taken in (``RescaleAction`` for continuous).
      learning_rate_at: ``learning_rate_at(hparams, iteration)``.
      targets: ``targets(params, trajectory, hparams) -> VTraceOutput``, the
        V-trace value targets and policy-gradient advantages the loss uses.
    """

    network: Any
    init_params: Callable
    init_opt_state: Callable
    policy: Callable
    act: Callable
    update: Callable
    act_env: Any
    learning_rate_at: Callable
    targets: Callable


def make_learner(env, env_params, config: Config) -> Learner:
    """Network, acting and the V-trace update for ``env`` (validates ``config``)."""
    config.validate()
    kind = envs.action_space_kind(env, env_params)
    obs_shape = envs.observation_shape(env, env_params)
    discrete = kind == "discrete"
    action_space = env.action_space(env_params)
    action_dim = action_space.n if discrete else int(jnp.prod(jnp.array(action_space.shape)))
    torso = config.torso
    if torso == "auto":
        torso = "minatar_cnn" if len(obs_shape) == 3 else "mlp"
    network = ActorCritic(
        action_dim=action_dim,
        discrete=discrete,
        hidden_sizes=tuple(config.hidden_sizes),
        activation=config.activation,
        torso=torso,
        obs_ndim=len(obs_shape),
    )

    def distribution(policy_out):
        return ops.Categorical(policy_out) if discrete else ops.DiagGaussian(*policy_out)

    if config.optimizer == "adam":
        optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=1.0)
    else:
        optimizer = optax.inject_hyperparams(optax.rmsprop)(
            learning_rate=1.0, decay=0.99, eps=config.rmsprop_eps
        )
    batch_size = config.num_envs * config.rollout_len
    total_updates = max(1, -(-config.total_steps // batch_size))

    def init_params(key):
        return network.init(key, jnp.zeros(obs_shape, jnp.float32))

    def learning_rate_at(hp: HParams, iteration):
        if not config.anneal_lr:
            return hp.learning_rate
        progress = jnp.asarray(iteration, jnp.float32) / total_updates
        return hp.learning_rate * jnp.maximum(1.0 - progress, 0.0)

    def init_opt_state(params, hp: HParams):
        return ops.with_learning_rate(optimizer.init(params), hp.learning_rate)

    def policy(params, obs, key):
        dist = distribution(network.apply(params, obs)[0])
        action = dist.sample(key)
        return action, dist.log_prob(action)

    def act(params, obs, key, deterministic: bool = False):
        dist = distribution(network.apply(params, obs)[0])
        return dist.mode() if deterministic else dist.sample(key)

    def forward(params, traj: Trajectory, hp: HParams):
        """The learner's own forward pass over a trajectory and its V-trace
        targets: ``(dist, log_prob, values, vtrace_output)``."""
        chex.assert_rank(traj.reward, 2)  # [T, B]
        policy_out, values = network.apply(params, traj.obs)
        bootstrap_value = network.apply(params, traj.next_obs)[1]
        dist = distribution(policy_out)
        log_prob = dist.log_prob(traj.action)
        chex.assert_equal_shape([log_prob, traj.behaviour_log_prob, values, traj.reward])

        # Truncation: bootstrap from V(final_obs) inside the reward, cut the trace.
        # gymnax sets both flags when an episode terminates at its last allowed
        # step; the terminal state has no future, so only a cut-off one bootstraps.
        cut_off = jnp.logical_and(traj.truncated, jnp.logical_not(traj.terminated))
        final_values = jax.lax.stop_gradient(network.apply(params, traj.final_obs)[1])
        rewards = traj.reward + cut_off.astype(jnp.float32) * hp.gamma * final_values
        ends = jnp.logical_or(traj.terminated, traj.truncated).astype(jnp.float32)
        discounts = hp.gamma * (1.0 - ends)

        log_rhos = jax.lax.stop_gradient(log_prob) - traj.behaviour_log_prob
        if config.correction == "none":
            log_rhos = jnp.zeros_like(log_rhos)  # ρ = c = 1: treat μ as if it were π
        vtrace = ops.vtrace(
            log_rhos, discounts, rewards, jax.lax.stop_gradient(values),
            jax.lax.stop_gradient(bootstrap_value),
            clip_rho_threshold=hp.clip_rho_threshold,
            clip_c_threshold=hp.clip_c_threshold,
            clip_pg_rho_threshold=hp.clip_pg_rho_threshold,
            lambda_=hp.vtrace_lambda,
        )
        return dist, log_prob, values, vtrace

    def targets(params, traj: Trajectory, hp: HParams) -> ops.VTraceOutput:
        """V-trace ``(vs, pg_advantages)`` of ``traj`` under ``params``."""
        return forward(params, traj, hp)[3]

    def loss_fn(params, traj: Trajectory, hp: HParams):
        dist, log_prob, values, vtrace = forward(params, traj, hp)
        policy_loss = ops.policy_gradient_loss(log_prob, vtrace.pg_advantages)
        baseline_loss = ops.squared_loss(values, vtrace.vs)
        entropy = dist.entropy().mean()
        total = policy_loss + hp.baseline_cost * baseline_loss - hp.entropy_cost * entropy
        rhos = jnp.exp(jax.lax.stop_gradient(log_prob) - traj.behaviour_log_prob)
        stats = {
            "policy_loss": policy_loss,
            "baseline_loss": baseline_loss,
            "entropy": entropy,
            "mean_rho": rhos.mean(),
            "clipped_rho_fraction": (rhos > hp.clip_rho_threshold).astype(jnp.float32).mean(),
            "kl_behaviour": (traj.behaviour_log_prob - jax.lax.stop_gradient(log_prob)).mean(),
            "explained_variance": 1.0 - jnp.var(vtrace.vs - values) / (jnp.var(vtrace.vs) + 1e-8),
        }
        return total, stats

    def update(params, opt_state, hp: HParams, traj: Trajectory, iteration):
        grads, stats = jax.grad(loss_fn, has_aux=True)(params, traj, hp)
        grad_norm = ops.global_norm(grads)  # before clipping: shows when clipping bites
        grads = ops.clip_by_global_norm(grads, hp.max_grad_norm)
        learning_rate = learning_rate_at(hp, iteration)
        opt_state = ops.with_learning_rate(opt_state, learning_rate)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        done = traj.episode_done.astype(jnp.float32)
        episodes = done.sum()
        stats.update(
            grad_norm=grad_norm,
            learning_rate=learning_rate,
            episodes_completed=episodes,
            episode_return=jnp.where(
                episodes > 0, (traj.episode_return * done).sum() / jnp.maximum(episodes, 1.0), 0.0
            ),
        )
        return params, opt_state, jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), stats)

    act_env = env if discrete else envs.RescaleAction(env)
    return Learner(network, init_params, init_opt_state, policy, act, update, act_env,
                   learning_rate_at, targets)


def rollout(learner: Learner, batch_env, env_params, params, env_state, obs, key, length: int):
    """``length`` steps of ``batch_env`` with ``params``; returns
    ``(env_state, obs, Trajectory)``. Pure; used by on-device and async actors."""

    def one_step(carry, key):
        env_state, obs = carry
        k_act, k_env = jax.random.split(key)
        action, log_prob = learner.policy(params, obs, k_act)
        next_obs, env_state, reward, terminated, truncated, info = batch_env.step(
            k_env, env_state, action, env_params
        )
        out = (obs, action, log_prob, reward.astype(jnp.float32), terminated, truncated,
               info["final_observation"], info["episode_return"], info["episode_done"])
        return (env_state, next_obs), out

    (env_state, next_obs), out = jax.lax.scan(
        one_step, (env_state, obs), jax.random.split(key, length)
    )
    obs_t, action, log_prob, reward, terminated, truncated, final_obs, ep_ret, ep_done = out
    traj = Trajectory(obs=obs_t, action=action, behaviour_log_prob=log_prob, reward=reward,
                      terminated=terminated, truncated=truncated, final_obs=final_obs,
                      next_obs=next_obs, episode_return=ep_ret, episode_done=ep_done)
    return env_state, next_obs, traj


def behaviour_params(state: State, policy_lag: int) -> tuple[Any, jax.Array]:
    """``(params, version)`` the actors act with in ``state``'s next step:
    θ_{iteration − policy_lag} (θ_0 during the first ``policy_lag`` steps), or
    the learner's own θ_iteration when ``policy_lag == 0`` (synchronous)."""
    if policy_lag == 0:
        return state.params, state.iteration
    slot = state.iteration % policy_lag
    return jax.tree.map(lambda ring: ring[slot], state.actor_params), state.actor_versions[slot]


def shard_state(state: State, mesh: jax.sharding.Mesh, axis: str | None = None) -> State:
    """Deprecated: use ``jaxrl.distributed.data_parallel(agent, mesh)``, which
    places the state the same way inside ``init`` and ``step``.

    ``state`` placed on ``mesh`` by :func:`jaxrl.mesh.state_shardings` (the rule
    ``data_parallel`` uses): the per-environment leaves (``env_state``, ``obs``)
    split over the mesh axis ``axis`` (default: its first), everything else
    replicated, so ``jax.jit(agent.step)`` on it is a data-parallel step.
    """
    warnings.warn(
        "impala.shard_state is deprecated: use jaxrl.distributed.data_parallel(agent, mesh)",
        DeprecationWarning,
        stacklevel=2,
    )
    axis = mesh.axis_names[0] if axis is None else axis
    num_envs = state.obs.shape[0]
    check_divisible("impala.Config.num_envs", num_envs, mesh, axis)
    return jax.device_put(state, state_shardings(state, mesh, num_envs, axis=axis))


def make(env, env_params, config: Config = Config()) -> Agent:
    """Binds on-device IMPALA to a gymnax environment. Validates ``config``
    and the action space before anything is traced."""
    learner = make_learner(env, env_params, config)
    train_env = envs.BatchEnv(envs.EpisodeStats(learner.act_env), config.num_envs)
    lag = config.policy_lag
    ring_size = max(lag, 1)
    batch_size = config.num_envs * config.rollout_len

    def init(key: jax.Array, hparams: HParams | None = None) -> State:
        hparams = config.hparams() if hparams is None else hparams
        key, k_params, k_env = jax.random.split(key, 3)
        params = learner.init_params(k_params)
        obs, env_state = train_env.reset(k_env, env_params)
        return State(
            params=params,
            actor_params=jax.tree.map(lambda x: jnp.stack([x] * ring_size), params),
            actor_versions=jnp.zeros((ring_size,), jnp.int32),
            opt_state=learner.init_opt_state(params, hparams),
            env_state=env_state,
            obs=obs,
            rng=key,
            hparams=hparams,
            iteration=jnp.zeros((), jnp.int32),
            env_steps=StepCounter.zeros(),
        )

    def step(state: State) -> tuple[State, dict[str, jax.Array]]:
        # Actors: act with the parameters they hold, compute no gradients.
        behaviour, behaviour_version = behaviour_params(state, lag)
        rng, k_rollout = jax.random.split(state.rng)
        env_state, obs, traj = rollout(learner, train_env, env_params, behaviour,
                                       state.env_state, state.obs, k_rollout, config.rollout_len)
        # Learner: its own forward pass on the actors' trajectory, one update.
        params, opt_state, metrics = learner.update(
            state.params, state.opt_state, state.hparams, traj, state.iteration
        )
        actor_params, actor_versions = state.actor_params, state.actor_versions
        if lag > 0:
            # θ_iteration replaces θ_{iteration−lag}, which no actor needs any more;
            # it is acted with `lag` updates from now.
            slot = state.iteration % ring_size
            actor_params = jax.tree.map(
                lambda ring, p: ring.at[slot].set(p), actor_params, state.params
            )
            actor_versions = actor_versions.at[slot].set(state.iteration)
        metrics["policy_lag"] = (state.iteration - behaviour_version).astype(jnp.float32)
        state = state.replace(
            params=params,
            actor_params=actor_params,
            actor_versions=actor_versions,
            opt_state=opt_state,
            env_state=env_state,
            obs=obs,
            rng=rng,
            iteration=state.iteration + 1,
            env_steps=state.env_steps.add(batch_size),
        )
        return state, metrics

    def policy_params(state: State):
        return {"network": state.params, "obs_norm": None}

    def act(params, obs: jax.Array, key: jax.Array, deterministic: bool = False) -> jax.Array:
        """Action for ``agent.env``-shaped observations (continuous actions in
        [-1, 1]); one observation or a batch."""
        return learner.act(params["network"], obs, key, deterministic)

    def evaluate(state: State, key: jax.Array, num_episodes: int) -> jax.Array:
        params = policy_params(state)
        policy = lambda obs, k: act(params, obs, k, deterministic=True)
        return envs.episode_returns(learner.act_env, env_params, policy, key, num_episodes).returns

    return Agent(
        name="impala",
        config=config,
        env=env,
        env_params=env_params,
        init=init,
        step=step,
        act=act,
        policy_params=policy_params,
        evaluate=evaluate,
        default_hparams=config.hparams,
        env_steps_per_step=batch_size,
    )

