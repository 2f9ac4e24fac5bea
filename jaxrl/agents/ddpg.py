"""Deep Deterministic Policy Gradient (Lillicrap et al. 2016, arXiv:1509.02971).

A deterministic actor μ(s) and a critic Q(s, a), each with a target copy
μ', Q' that trails it softly (θ' ← τθ + (1 − τ)θ'). One ``step``:

1. every one of ``num_envs`` vmapped envs takes one action
   ``clip(μ(s) + noise, −1, 1)`` (Gaussian or Ornstein–Uhlenbeck noise;
   uniformly random actions during the first ``warmup_steps`` env steps);
2. the transitions go into a replay buffer (n-step ones when ``n_step`` > 1,
   through a sliding window of the last n steps per env);
3. once warm-up is over, ``updates_per_step`` times (Algorithm 1 of the paper):
   sample a minibatch, regress Q(s, a) on
   ``y = R + Γ·Q'(s', μ'(s'))``, step the actor along ∇_a Q(s, a)|_{a=μ(s)}
   (minimise −Q(s, μ(s))), then move the targets by τ.

The update-to-data ratio is ``updates_per_step / num_envs``.

Time limits are not terminal: Γ = γ^m·(1 − terminated), and on truncation the
target bootstraps from ``info["final_observation"]``.

Defaults follow modern DDPG practice on low-dimensional control (CleanRL,
SB3 zoo) rather than the paper's §7, which is slower on Pendulum: both
learning rates 1e-3 (paper: actor 1e-4, critic 1e-3), τ = 0.005 (paper
1e-3), batch 256 (paper 64), Gaussian noise σ = 0.1 (paper: OU θ = 0.15,
σ = 0.2, available as ``noise="ou"``), no critic weight decay (paper 1e-2,
``critic_weight_decay``), 256-256 ReLU layers with the action concatenated to
the critic's input (paper: 400-300, action at the second layer). The final
layers are initialised in U[−3e-3, 3e-3] as in the paper.

Numeric hyperparameters live in the state (:class:`HParams`), so seeds and
sweeps vmap together; only shapes and switches are static. Every step reads
them from there, so a change to ``state.hparams`` between steps (as
population-based training makes) takes effect at the next update: the
learning rates, and prioritised replay's α (the priority trees are rebuilt
when it changes) and initial β.

With prioritised replay, β rises linearly from ``priority_beta`` to 1 over
``total_steps`` env steps (Schaul et al. 2016, §3.4), unless
``priority_beta_anneal`` is off.

The steps (:func:`exploration_action`, :func:`collect`, :func:`critic_loss`,
:func:`actor_loss`, :func:`learn`, :func:`update`, :func:`step`, ...) are
module-level functions of a static :class:`Spec`; :func:`build` makes the
spec and binds them into an :class:`Agent`. D4PG (``jaxrl.agents.d4pg``)
reuses them all, swapping the scalar critic for a categorical one through
:class:`CriticSpec`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxrl import envs, ops, replay
from jaxrl.agents import base, dpg, fields, off_policy
from jaxrl.agents.base import Agent, AgentConfig
from jaxrl.agents.dpg import (  # noqa: F401  (public names of this module)
    SCALAR_CRITIC, Critic, CriticSpec, DeterministicActor, check_continuous,
)
from jaxrl.config import field, hparams_class, non_negative, one_of, positive, unit_interval
from jaxrl.ops.counters import StepCounter

ACTION_SPACES = ("continuous",)
NOISES = ("gaussian", "ou")


@dataclasses.dataclass(frozen=True)
class Config(AgentConfig):
    """DDPG settings (see the module docstring for where they depart from the paper)."""

    num_envs: int = fields.num_envs(1)
    """Parallel environments (vmapped); each step adds num_envs transitions."""
    updates_per_step: int = fields.updates_per_step(1)
    """Gradient updates (critic, actor, targets) per step once warm-up is over."""
    batch_size: int = fields.batch_size(256)
    buffer_size: int = fields.buffer_size(1_000_000)
    """Replay capacity in transitions (36 bytes each on Pendulum-v1)."""
    warmup_steps: int = field(10_000, check=non_negative)
    """Env steps (over all envs) of uniformly random actions before updates start."""
    total_steps: int = fields.total_steps(500_000)
    """Env steps of the run (prioritised replay's β reaches 1 at the end)."""
    actor_learning_rate: float = fields.learning_rate(1e-3, doc="Adam step size of the actor.")
    critic_learning_rate: float = fields.learning_rate(1e-3, doc="Adam step size of the critic.")
    critic_weight_decay: float = field(0.0, check=non_negative, swept=True)
    """L2 penalty coefficient on the critic's weights (the paper uses 1e-2)."""
    gamma: float = fields.gamma()
    tau: float = fields.tau()
    noise: str = field("gaussian", check=one_of(*NOISES))
    """Exploration noise: gaussian | ou (Ornstein–Uhlenbeck, reset at episode ends)."""
    noise_std: float = field(0.1, check=non_negative, swept=True)
    """σ of the exploration noise, in the [-1, 1] action scale."""
    ou_theta: float = field(0.15, check=unit_interval, swept=True)
    """Mean-reversion rate θ of the OU noise."""
    n_step: int = field(1, check=positive)
    """Rewards summed before bootstrapping (n-step returns)."""
    prioritized: bool = False
    """Proportional prioritised replay (Schaul et al.) instead of uniform."""
    priority_alpha: float = field(0.6, check=non_negative, swept=True)
    """Priority exponent α of prioritised replay."""
    priority_beta: float = field(0.4, check=unit_interval, swept=True)
    """Importance-weight exponent β of prioritised replay at the start of the run."""
    priority_beta_anneal: bool = True
    """Anneal β linearly from priority_beta to 1 over total_steps (off: β stays constant)."""
    priority_eps: float = field(1e-6, check=positive, swept=True)
    """Added to |TD error| so that no stored item has priority 0."""
    hidden_sizes: tuple[int, ...] = fields.hidden_sizes((256, 256))
    """Hidden layer sizes of the actor and the critic."""
    activation: str = fields.activation("relu")

    def validate(self) -> None:
        """The declared checks, then the replay buffer must hold one step of every env."""
        super().validate()
        off_policy.require_buffers_hold_one_step(self, "buffer_size")


# The swept fields, carried in the state (leaves may be batched). Every step
# reads them from the state: a value changed between steps applies from the
# next update on.
HParams = hparams_class(Config)


# --------------------------------------------------------------------------- state and spec


@struct.dataclass
class State:
    """Everything a DDPG (or D4PG) run needs, as one pytree."""

    actor_params: Any
    critic_params: Any
    target_actor_params: Any
    target_critic_params: Any
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    buffer: Any
    """``replay.ReplayState`` or ``replay.PrioritizedState``."""
    window: replay.Window
    env_state: Any
    obs: jax.Array
    noise: jax.Array
    """Current OU noise per env ``[B, A]`` (zeros for Gaussian noise)."""
    rng: jax.Array
    hparams: HParams
    iteration: jax.Array
    env_steps: StepCounter
    updates: jax.Array


@dataclasses.dataclass(frozen=True)
class Spec(off_policy.EnvSpec):
    """What is static about a DDPG-family agent: its name, config,
    environment (acting in [−1, 1]), networks, critic and optimiser."""

    algo: str
    act_env: Any
    """``env`` under :class:`jaxrl.envs.RescaleAction`: [−1, 1] onto the env's bounds."""
    actor: DeterministicActor
    critic: Critic
    critic_spec: CriticSpec
    action_shape: tuple[int, ...]
    optimizer: optax.GradientTransformation

    @property
    def action_dim(self) -> int:
        return self.actor.action_dim

    @property
    def buffer_lib(self):
        return replay.prioritized if self.config.prioritized else replay.uniform


def make_spec(algo: str, env, env_params, config: Config, critic_spec: CriticSpec) -> Spec:
    """Validates ``config`` and the action space, and builds the :class:`Spec`."""
    config.validate()
    check_continuous(algo, env, env_params)
    action_shape = envs.action_shape(env, env_params)
    hidden = tuple(config.hidden_sizes)
    act_env = envs.RescaleAction(env)
    return Spec(
        algo=algo, config=config, env=env, env_params=env_params, act_env=act_env,
        train_env=envs.BatchEnv(envs.EpisodeStats(act_env), config.num_envs),
        actor=DeterministicActor(int(jnp.prod(jnp.array(action_shape))), hidden, config.activation),
        critic=Critic(critic_spec.num_outputs, hidden, config.activation),
        critic_spec=critic_spec, obs_shape=envs.observation_shape(env, env_params),
        action_shape=action_shape, optimizer=off_policy.adam(),
    )


def policy(spec: Spec, actor_params, obs: jax.Array) -> jax.Array:
    """μ(s) ``[..., A]`` for observations ``[..., *obs_shape]``."""
    return spec.actor.apply(actor_params, off_policy.flatten_obs(obs, spec.obs_shape))


def critic_out(spec: Spec, critic_params, obs: jax.Array, action: jax.Array) -> jax.Array:
    """The critic's outputs at (s, a) (Q, or a categorical critic's logits)."""
    return spec.critic.apply(critic_params, off_policy.flatten_obs(obs, spec.obs_shape), action)


# --------------------------------------------------------------------------- steps


def init(spec: Spec, key: jax.Array, hparams: HParams | None = None) -> State:
    """A fresh state: networks and their target copies, empty buffer and window, reset envs."""
    config = spec.config
    hparams = config.hparams() if hparams is None else hparams
    key, k_actor, k_critic, k_env = jax.random.split(key, 4)
    dummy_obs = jnp.zeros((off_policy.flat_dim(spec.obs_shape),), jnp.float32)
    dummy_action = jnp.zeros((spec.action_dim,), jnp.float32)
    actor_params = spec.actor.init(k_actor, dummy_obs)
    critic_params = spec.critic.init(k_critic, dummy_obs, dummy_action)
    obs, env_state = spec.train_env.reset(k_env, spec.env_params)
    example = off_policy.example_transition(spec.obs_shape, spec.action_shape)
    if config.prioritized:
        buffer = replay.prioritized.init(example, config.buffer_size, alpha=hparams.priority_alpha)
    else:
        buffer = replay.uniform.init(example, config.buffer_size)
    with_lr = lambda params, lr: ops.with_learning_rate(spec.optimizer.init(params), lr)
    return State(
        actor_params=actor_params,
        critic_params=critic_params,
        target_actor_params=actor_params,
        target_critic_params=critic_params,
        actor_opt_state=with_lr(actor_params, hparams.actor_learning_rate),
        critic_opt_state=with_lr(critic_params, hparams.critic_learning_rate),
        buffer=buffer,
        window=replay.nstep.empty_window(example, config.n_step, config.num_envs),
        env_state=env_state,
        obs=obs.astype(jnp.float32),
        noise=jnp.zeros((config.num_envs, spec.action_dim), jnp.float32),
        rng=key,
        hparams=hparams,
        iteration=jnp.zeros((), jnp.int32),
        env_steps=StepCounter.zeros(),
        updates=jnp.zeros((), jnp.int32),
    )


def exploration_action(spec: Spec, state: State, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Noisy policy action, or a uniform one during warm-up; and the new OU state."""
    hp, shape = state.hparams, (spec.config.num_envs, spec.action_dim)
    k_noise, k_random = jax.random.split(key)
    white = jax.random.normal(k_noise, shape)
    if spec.config.noise == "ou":
        # Discretised OU (dt = 1): x ← x − θx + σε, temporally correlated.
        noise = state.noise - hp.ou_theta * state.noise + hp.noise_std * white
        perturbation = noise
    else:
        noise = state.noise  # stays zero: Gaussian noise has no memory
        perturbation = hp.noise_std * white
    action = jnp.clip(policy(spec, state.actor_params, state.obs) + perturbation, -1.0, 1.0)
    random_action = jax.random.uniform(k_random, shape, minval=-1.0, maxval=1.0)
    warming_up = ~state.env_steps.at_least(spec.config.warmup_steps)
    action = jnp.where(warming_up, random_action, action)
    return action.reshape((spec.config.num_envs,) + spec.action_shape), noise


def collect(spec: Spec, state: State, key: jax.Array):
    """One env step of every env. Returns the state, the n-step transition
    leaving the window, whether it is complete, and the env's ``info``."""
    k_act, k_env = jax.random.split(key)
    action, noise = exploration_action(spec, state, k_act)
    next_obs, env_state, reward, terminated, truncated, info = spec.train_env.step(
        k_env, state.env_state, action, spec.env_params
    )
    step = off_policy.one_step_transition(
        state.obs, action.astype(jnp.float32), reward, terminated, info, state.hparams.gamma)
    episode_end = jnp.logical_or(terminated, truncated)
    window, transition, ready = replay.nstep.push(state.window, step, episode_end)
    noise = jnp.where(episode_end[:, None], 0.0, noise)  # OU restarts with each episode
    state = state.replace(env_state=env_state, obs=next_obs.astype(jnp.float32), noise=noise, window=window)
    return state, transition, ready, info


def critic_loss(spec: Spec, critic_params, state: State, batch: replay.Transition, weights: jax.Array):
    """Importance-weighted critic loss against the target networks' bootstrap,
    plus the L2 penalty; and ``(loss, priority [N], Q [N])``."""
    next_action = policy(spec, state.target_actor_params, batch.next_obs)
    target_out = critic_out(spec, state.target_critic_params, batch.next_obs, next_action)
    out = critic_out(spec, critic_params, batch.obs, batch.action.reshape(-1, spec.action_dim))
    per_sample, priority = spec.critic_spec.td_loss(out, target_out, batch.reward, batch.discount)
    loss = jnp.mean(weights * per_sample)
    l2 = sum(jnp.sum(jnp.square(w)) for w in dpg.kernels(critic_params))
    total = loss + 0.5 * state.hparams.critic_weight_decay * l2
    return total, (loss, priority, spec.critic_spec.q_value(out))


def actor_loss(spec: Spec, actor_params, critic_params, obs: jax.Array) -> jax.Array:
    """−E[Q(s, μ(s))]: the deterministic policy gradient's objective."""
    q = spec.critic_spec.q_value(critic_out(spec, critic_params, obs, policy(spec, actor_params, obs)))
    return -jnp.mean(q)


def learn(spec: Spec, state: State, batch: replay.Transition, weights: jax.Array):
    """Algorithm 1's update: critic, then actor on the new critic, then targets.
    Returns the state, the priorities ``[N]`` and the stats."""
    hp = state.hparams
    grads, (loss, priority, q) = jax.grad(functools.partial(critic_loss, spec), has_aux=True)(
        state.critic_params, state, batch, weights
    )
    critic_opt_state = ops.with_learning_rate(state.critic_opt_state, hp.critic_learning_rate)
    updates, critic_opt_state = spec.optimizer.update(grads, critic_opt_state, state.critic_params)
    critic_params = optax.apply_updates(state.critic_params, updates)

    a_loss, a_grads = jax.value_and_grad(functools.partial(actor_loss, spec))(
        state.actor_params, critic_params, batch.obs)
    actor_opt_state = ops.with_learning_rate(state.actor_opt_state, hp.actor_learning_rate)
    updates, actor_opt_state = spec.optimizer.update(a_grads, actor_opt_state, state.actor_params)
    actor_params = optax.apply_updates(state.actor_params, updates)

    state = state.replace(
        actor_params=actor_params,
        critic_params=critic_params,
        target_actor_params=off_policy.soft_update(state.target_actor_params, actor_params, hp.tau),
        target_critic_params=off_policy.soft_update(state.target_critic_params, critic_params, hp.tau),
        actor_opt_state=actor_opt_state,
        critic_opt_state=critic_opt_state,
        updates=state.updates + 1,
    )
    stats = {"critic_loss": loss, "actor_loss": a_loss, "q_mean": jnp.mean(q)}
    return state, priority, stats


def priority_beta(spec: Spec, state: State) -> jax.Array:
    """Prioritised replay's β now: annealed to 1 over ``total_steps``, or constant."""
    if not spec.config.priority_beta_anneal:
        return state.hparams.priority_beta
    progress = state.env_steps.fraction_of(spec.config.total_steps)
    return replay.prioritized.annealed_beta(state.hparams.priority_beta, progress)


def update(spec: Spec, state: State, key: jax.Array):
    """One gradient update if warm-up is over and the buffer holds a batch."""
    config = spec.config
    learning = state.env_steps.at_least(config.warmup_steps) & spec.buffer_lib.can_sample(
        state.buffer, config.batch_size
    )
    if config.prioritized:
        batch, indices, weights = replay.prioritized.sample(
            state.buffer, key, config.batch_size, priority_beta(spec, state))
    else:
        batch = replay.uniform.sample(state.buffer, key, config.batch_size)
        indices, weights = None, jnp.ones((config.batch_size,), jnp.float32)

    def skip(state, batch, weights):
        zero = jnp.zeros((), jnp.float32)
        stats = {"critic_loss": zero, "actor_loss": zero, "q_mean": zero}
        return state, jnp.zeros((config.batch_size,), jnp.float32), stats

    # The buffer stays outside the cond: under vmap a cond becomes a
    # select, which would copy the whole buffer every step.
    buffer = state.buffer
    state, priority, stats = jax.lax.cond(
        learning, functools.partial(learn, spec), skip, state.replace(buffer=None), batch, weights
    )
    if config.prioritized:
        buffer = replay.prioritized.update_priorities(
            buffer, indices, priority + state.hparams.priority_eps,
            mask=jnp.broadcast_to(learning, indices.shape),
        )
    return state.replace(buffer=buffer), {**stats, "learning": learning.astype(jnp.float32)}


def step(spec: Spec, state: State) -> tuple[State, dict[str, jax.Array]]:
    """One env step of every env into the buffer, then ``updates_per_step`` updates."""
    config = spec.config
    rng, k_collect, *k_updates = jax.random.split(state.rng, 2 + config.updates_per_step)
    state, transition, ready, info = collect(spec, state, k_collect)
    buffer = state.buffer
    if config.prioritized:
        buffer = replay.prioritized.set_alpha(buffer, state.hparams.priority_alpha)
    buffer = spec.buffer_lib.add(buffer, transition, mask=jnp.broadcast_to(ready, (config.num_envs,)))
    state = state.replace(buffer=buffer, env_steps=state.env_steps.add(config.num_envs), rng=rng)
    state, stats = jax.lax.scan(functools.partial(update, spec), state, jnp.stack(k_updates))

    metrics = {k: v.mean() for k, v in stats.items()}
    metrics.update(**off_policy.episode_metrics(info["episode_return"], info["episode_done"]),
                   buffer_size=state.buffer.size)
    if config.prioritized:
        metrics["priority_beta"] = priority_beta(spec, state)
    state = state.replace(iteration=state.iteration + 1)
    return state, off_policy.as_float32(metrics)


def policy_params(state: State):
    """The actor and the noise scale: what :func:`act` needs."""
    return {"actor": state.actor_params, "noise_std": state.hparams.noise_std}


def act(spec: Spec, params, obs: jax.Array, key: jax.Array, deterministic: bool = False) -> jax.Array:
    """μ(s) in [−1, 1] (which :class:`jaxrl.envs.RescaleAction` maps to the
    env's bounds), plus Gaussian noise of σ = ``noise_std`` unless
    ``deterministic``. One observation or a batch."""
    action = policy(spec, params["actor"], jnp.asarray(obs, jnp.float32))
    if not deterministic:
        action = jnp.clip(action + params["noise_std"] * jax.random.normal(key, action.shape), -1, 1)
    return action.reshape(action.shape[:-1] + spec.action_shape)


def evaluate(spec: Spec, state: State, key: jax.Array, num_episodes: int) -> jax.Array:
    """Returns of ``num_episodes`` noise-free episodes."""
    params = policy_params(state)
    policy_fn = lambda obs, k: act(spec, params, obs, k, deterministic=True)
    return envs.episode_returns(spec.act_env, spec.env_params, policy_fn, key, num_episodes).returns


def build(algo: str, env, env_params, config: Config, critic_spec: CriticSpec) -> Agent:
    """The DDPG steps around any :class:`CriticSpec`, bound into an :class:`Agent`."""
    spec = make_spec(algo, env, env_params, config, critic_spec)
    return base.bind(algo, spec, env, env_params, init=init, step=step, act=act,
                     evaluate=evaluate, policy_params=policy_params,
                     env_steps_per_step=config.num_envs)


def make(env, env_params, config: Config = Config()) -> Agent:
    """Binds DDPG to an environment with a continuous (Box) action space.
    Validates ``config`` and the action space before anything is traced."""
    return build("ddpg", env, env_params, config, SCALAR_CRITIC)
