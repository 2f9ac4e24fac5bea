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

``build`` holds the machinery shared with D4PG (``jaxrl.agents.d4pg``), which
swaps the scalar critic for a categorical one through :class:`CriticSpec`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxrl import envs, ops, replay
from jaxrl.agents.base import Agent, AgentConfig, config_requirer
from jaxrl.config import (
    field, hparams_class, non_negative, one_of, positive, sizes, unit_interval,
)
from jaxrl.networks import ACTIVATIONS
from jaxrl.ops.counters import StepCounter

ACTION_SPACES = ("continuous",)
NOISES = ("gaussian", "ou")


@dataclasses.dataclass(frozen=True)
class Config(AgentConfig):
    """DDPG settings (see the module docstring for where they depart from the paper)."""

    num_envs: int = field(1, check=positive)
    """Parallel environments (vmapped); each step adds num_envs transitions."""
    updates_per_step: int = field(1, check=positive)
    """Gradient updates (critic, actor, targets) per step once warm-up is over."""
    batch_size: int = field(256, check=positive)
    """Minibatch size of each update."""
    buffer_size: int = field(1_000_000, check=positive)
    """Replay capacity in transitions (36 bytes each on Pendulum-v1)."""
    warmup_steps: int = field(10_000, check=non_negative)
    """Env steps (over all envs) of uniformly random actions before updates start."""
    total_steps: int = field(500_000, check=positive)
    """Env steps of the run (prioritised replay's β reaches 1 at the end)."""
    actor_learning_rate: float = field(1e-3, check=positive, swept=True)
    """Adam step size of the actor."""
    critic_learning_rate: float = field(1e-3, check=positive, swept=True)
    """Adam step size of the critic."""
    critic_weight_decay: float = field(0.0, check=non_negative, swept=True)
    """L2 penalty coefficient on the critic's weights (the paper uses 1e-2)."""
    gamma: float = field(0.99, check=unit_interval, swept=True)
    """Discount factor γ."""
    tau: float = field(0.005, check=unit_interval, swept=True)
    """Soft target update rate: θ' ← τθ + (1 − τ)θ'."""
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
    hidden_sizes: tuple[int, ...] = field((256, 256), check=sizes)
    """Hidden layer sizes of the actor and the critic."""
    activation: str = field("relu", check=one_of(*ACTIVATIONS))
    """Hidden activation: tanh | relu | elu | gelu | silu | leaky_relu."""

    def validate(self) -> None:
        """The declared checks, then the replay buffer must hold one step of every env."""
        super().validate()
        require = config_requirer(self)
        require(self.buffer_size >= self.num_envs, "buffer_size", f"at least num_envs = {self.num_envs}")


# The swept fields, carried in the state (leaves may be batched). Every step
# reads them from the state: a value changed between steps applies from the
# next update on.
HParams = hparams_class(Config)


# --------------------------------------------------------------------------- networks


def _final_init(key, shape, dtype=jnp.float32):
    # The paper's U[−3e-3, 3e-3] for the last layers: initial outputs near 0.
    return jax.random.uniform(key, shape, dtype, -3e-3, 3e-3)


class DeterministicActor(nn.Module):
    """μ(s) ∈ [−1, 1]^A: an MLP with a tanh output."""

    action_dim: int
    hidden_sizes: Sequence[int] = (256, 256)
    activation: str = "relu"

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        x = obs
        for size in self.hidden_sizes:
            x = act(nn.Dense(size)(x))
        return jnp.tanh(nn.Dense(self.action_dim, kernel_init=_final_init, bias_init=_final_init)(x))


class Critic(nn.Module):
    """Q(s, a): an MLP over ``[s, a]`` with ``num_outputs`` outputs (1 for a
    scalar Q, the atoms' logits for a categorical critic)."""

    num_outputs: int = 1
    hidden_sizes: Sequence[int] = (256, 256)
    activation: str = "relu"

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        x = jnp.concatenate([obs, action], axis=-1)
        for size in self.hidden_sizes:
            x = act(nn.Dense(size)(x))
        return nn.Dense(self.num_outputs, kernel_init=_final_init, bias_init=_final_init)(x)


# --------------------------------------------------------------------------- critic


class CriticSpec(NamedTuple):
    """What distinguishes a critic: DDPG's scalar Q or D4PG's categorical Z.

    Attributes:
      num_outputs: outputs of the critic network per (s, a).
      q_value: ``q_value(critic_out) -> Q [...]``, the value the actor ascends.
      td_loss: ``td_loss(critic_out, target_out, reward, discount) ->
        (loss [N], priority [N])``: the per-sample critic loss against the
        target ``R + Γ·Z'(s', μ'(s'))`` (target_out is the target critic's
        output at s') and the raw priority for prioritised replay.
    """

    num_outputs: int
    q_value: Callable[[jax.Array], jax.Array]
    td_loss: Callable[..., tuple[jax.Array, jax.Array]]


def scalar_q_value(critic_out: jax.Array) -> jax.Array:
    return critic_out[..., 0]


def scalar_td_loss(critic_out, target_out, reward, discount):
    """½(Q(s, a) − y)² with y = R + Γ·Q'(s', μ'(s')); priority |y − Q|."""
    q = critic_out[..., 0]
    target = jax.lax.stop_gradient(reward + discount * target_out[..., 0])
    return ops.squared_loss_per_element(q, target), jnp.abs(target - q)


SCALAR_CRITIC = CriticSpec(num_outputs=1, q_value=scalar_q_value, td_loss=scalar_td_loss)


# --------------------------------------------------------------------------- state


@struct.dataclass
class Window:
    """The last ``n_step`` one-step transitions of every env, oldest first
    (``[n, B, ...]``), and how many steps have filled it."""

    steps: replay.Transition
    episode_end: jax.Array
    filled: jax.Array


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
    window: Window
    env_state: Any
    obs: jax.Array
    noise: jax.Array
    """Current OU noise per env ``[B, A]`` (zeros for Gaussian noise)."""
    rng: jax.Array
    hparams: HParams
    iteration: jax.Array
    env_steps: StepCounter
    updates: jax.Array


def make(env, env_params, config: Config = Config()) -> Agent:
    """Binds DDPG to an environment with a continuous (Box) action space.
    Validates ``config`` and the action space before anything is traced."""
    return build("ddpg", env, env_params, config, SCALAR_CRITIC)


def check_continuous(algo: str, env, env_params) -> None:
    """ValueError for discrete-action environments, which a deterministic
    policy gradient cannot handle (∇_a Q needs a continuous a)."""
    kind = envs.action_space_kind(env, env_params)
    if kind != "continuous":
        name = getattr(env, "name", type(env).__name__)
        raise ValueError(
            f"algorithm {algo!r} supports continuous (Box) action spaces only, but {name!r} has a "
            f"{type(env.action_space(env_params)).__name__} action space; use a discrete-action "
            f"algorithm (e.g. ppo) instead"
        )


def build(algo: str, env, env_params, config: Config, critic_spec: CriticSpec) -> Agent:
    """The DDPG machinery around any :class:`CriticSpec`."""
    config.validate()
    check_continuous(algo, env, env_params)
    obs_shape = envs.observation_shape(env, env_params)
    action_shape = envs.action_shape(env, env_params)
    obs_dim = max(1, int(jnp.prod(jnp.array(obs_shape))))
    action_dim = int(jnp.prod(jnp.array(action_shape)))
    num_envs, n = config.num_envs, config.n_step

    actor = DeterministicActor(action_dim, tuple(config.hidden_sizes), config.activation)
    critic = Critic(critic_spec.num_outputs, tuple(config.hidden_sizes), config.activation)
    flat_obs = lambda obs: obs.reshape(obs.shape[: obs.ndim - len(obs_shape)] + (obs_dim,))
    policy = lambda params, obs: actor.apply(params, flat_obs(obs))
    critic_out = lambda params, obs, action: critic.apply(params, flat_obs(obs), action)

    # The agent acts in [-1, 1]; RescaleAction maps onto the env's bounds.
    act_env = envs.RescaleAction(env)
    train_env = envs.BatchEnv(envs.EpisodeStats(act_env), num_envs)
    optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=1.0)
    buffer_lib = replay.prioritized if config.prioritized else replay.uniform

    def init(key: jax.Array, hparams: HParams | None = None) -> State:
        hparams = config.hparams() if hparams is None else hparams
        key, k_actor, k_critic, k_env = jax.random.split(key, 4)
        dummy_obs = jnp.zeros((obs_dim,), jnp.float32)
        dummy_action = jnp.zeros((action_dim,), jnp.float32)
        actor_params = actor.init(k_actor, dummy_obs)
        critic_params = critic.init(k_critic, dummy_obs, dummy_action)
        obs, env_state = train_env.reset(k_env, env_params)
        example = replay.Transition(
            obs=jnp.zeros(obs_shape, jnp.float32),
            action=dummy_action.reshape(action_shape),
            reward=jnp.zeros((), jnp.float32),
            discount=jnp.zeros((), jnp.float32),
            next_obs=jnp.zeros(obs_shape, jnp.float32),
        )
        if config.prioritized:
            buffer = replay.prioritized.init(example, config.buffer_size, alpha=hparams.priority_alpha)
        else:
            buffer = replay.uniform.init(example, config.buffer_size)
        window_steps = jax.tree.map(lambda x: jnp.zeros((n, num_envs) + x.shape, x.dtype), example)
        return State(
            actor_params=actor_params,
            critic_params=critic_params,
            target_actor_params=actor_params,
            target_critic_params=critic_params,
            actor_opt_state=ops.with_learning_rate(optimizer.init(actor_params), hparams.actor_learning_rate),
            critic_opt_state=ops.with_learning_rate(optimizer.init(critic_params), hparams.critic_learning_rate),
            buffer=buffer,
            window=Window(
                steps=window_steps,
                episode_end=jnp.zeros((n, num_envs), bool),
                filled=jnp.zeros((), jnp.int32),
            ),
            env_state=env_state,
            obs=obs.astype(jnp.float32),
            noise=jnp.zeros((num_envs, action_dim), jnp.float32),
            rng=key,
            hparams=hparams,
            iteration=jnp.zeros((), jnp.int32),
            env_steps=StepCounter.zeros(),
            updates=jnp.zeros((), jnp.int32),
        )

    def exploration_action(state: State, key: jax.Array):
        """Noisy policy action, or a uniform one during warm-up; and the new OU state."""
        hp = state.hparams
        k_noise, k_random = jax.random.split(key)
        white = jax.random.normal(k_noise, (num_envs, action_dim))
        if config.noise == "ou":
            # Discretised OU (dt = 1): x ← x − θx + σε, temporally correlated.
            noise = state.noise - hp.ou_theta * state.noise + hp.noise_std * white
            perturbation = noise
        else:
            noise = state.noise  # stays zero: Gaussian noise has no memory
            perturbation = hp.noise_std * white
        action = jnp.clip(policy(state.actor_params, state.obs) + perturbation, -1.0, 1.0)
        random_action = jax.random.uniform(k_random, (num_envs, action_dim), minval=-1.0, maxval=1.0)
        warming_up = ~state.env_steps.at_least(config.warmup_steps)
        action = jnp.where(warming_up, random_action, action)
        return action.reshape((num_envs,) + action_shape), noise

    def collect(state: State, key: jax.Array):
        """One env step of every env; the n-step transition leaving the window."""
        k_act, k_env = jax.random.split(key)
        action, noise = exploration_action(state, k_act)
        next_obs, env_state, reward, terminated, truncated, info = train_env.step(
            k_env, state.env_state, action, env_params
        )
        step = replay.Transition(
            obs=state.obs,
            action=action.astype(jnp.float32),
            reward=reward.astype(jnp.float32),
            discount=state.hparams.gamma * (1.0 - terminated.astype(jnp.float32)),
            next_obs=info["final_observation"].astype(jnp.float32),
        )
        episode_end = jnp.logical_or(terminated, truncated)
        shift = lambda old, new: jnp.concatenate([old[1:], new[None]], axis=0)
        window = Window(
            steps=jax.tree.map(shift, state.window.steps, step),
            episode_end=shift(state.window.episode_end, episode_end),
            filled=jnp.minimum(state.window.filled + 1, n),
        )
        transition = jax.tree.map(
            lambda x: x[0], replay.n_step_transitions(window.steps, window.episode_end, n)
        )
        noise = jnp.where(episode_end[:, None], 0.0, noise)  # OU restarts with each episode
        state = state.replace(env_state=env_state, obs=next_obs.astype(jnp.float32), noise=noise,
                              window=window)
        return state, transition, window.filled >= n, info

    def critic_loss(critic_params, state: State, batch: replay.Transition, weights):
        hp = state.hparams
        next_action = policy(state.target_actor_params, batch.next_obs)
        target_out = critic_out(state.target_critic_params, batch.next_obs, next_action)
        out = critic_out(critic_params, batch.obs, batch.action.reshape(-1, action_dim))
        per_sample, priority = critic_spec.td_loss(out, target_out, batch.reward, batch.discount)
        loss = jnp.mean(weights * per_sample)
        l2 = sum(jnp.sum(jnp.square(w)) for w in _kernels(critic_params))
        total = loss + 0.5 * hp.critic_weight_decay * l2
        return total, (loss, priority, critic_spec.q_value(out))

    def actor_loss(actor_params, critic_params, obs):
        return -jnp.mean(critic_spec.q_value(critic_out(critic_params, obs, policy(actor_params, obs))))

    def learn(state: State, batch: replay.Transition, weights):
        """Algorithm 1's update: critic, then actor on the new critic, then targets."""
        hp = state.hparams
        grads, (loss, priority, q) = jax.grad(critic_loss, has_aux=True)(
            state.critic_params, state, batch, weights
        )
        critic_opt_state = ops.with_learning_rate(state.critic_opt_state, hp.critic_learning_rate)
        updates, critic_opt_state = optimizer.update(grads, critic_opt_state, state.critic_params)
        critic_params = optax.apply_updates(state.critic_params, updates)

        a_loss, a_grads = jax.value_and_grad(actor_loss)(state.actor_params, critic_params, batch.obs)
        actor_opt_state = ops.with_learning_rate(state.actor_opt_state, hp.actor_learning_rate)
        updates, actor_opt_state = optimizer.update(a_grads, actor_opt_state, state.actor_params)
        actor_params = optax.apply_updates(state.actor_params, updates)

        soft = lambda target, online: jax.tree.map(
            lambda t, o: (1.0 - hp.tau) * t + hp.tau * o, target, online
        )
        state = state.replace(
            actor_params=actor_params,
            critic_params=critic_params,
            target_actor_params=soft(state.target_actor_params, actor_params),
            target_critic_params=soft(state.target_critic_params, critic_params),
            actor_opt_state=actor_opt_state,
            critic_opt_state=critic_opt_state,
            updates=state.updates + 1,
        )
        stats = {"critic_loss": loss, "actor_loss": a_loss, "q_mean": jnp.mean(q)}
        return state, priority, stats

    def priority_beta(state: State) -> jax.Array:
        if not config.priority_beta_anneal:
            return state.hparams.priority_beta
        progress = state.env_steps.fraction_of(config.total_steps)
        return replay.prioritized.annealed_beta(state.hparams.priority_beta, progress)

    def update(state: State, key: jax.Array):
        """One gradient update if warm-up is over and the buffer holds a batch."""
        hp = state.hparams
        learning = state.env_steps.at_least(config.warmup_steps) & buffer_lib.can_sample(
            state.buffer, config.batch_size
        )
        if config.prioritized:
            batch, indices, weights = replay.prioritized.sample(
                state.buffer, key, config.batch_size, priority_beta(state)
            )
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
            learning, learn, skip, state.replace(buffer=None), batch, weights
        )
        if config.prioritized:
            buffer = replay.prioritized.update_priorities(
                buffer, indices, priority + hp.priority_eps,
                mask=jnp.broadcast_to(learning, indices.shape),
            )
        return state.replace(buffer=buffer), {**stats, "learning": learning.astype(jnp.float32)}

    def step(state: State) -> tuple[State, dict[str, jax.Array]]:
        rng, k_collect, *k_updates = jax.random.split(state.rng, 2 + config.updates_per_step)
        state, transition, ready, info = collect(state, k_collect)
        buffer = state.buffer
        if config.prioritized:
            buffer = replay.prioritized.set_alpha(buffer, state.hparams.priority_alpha)
        buffer = buffer_lib.add(buffer, transition, mask=jnp.broadcast_to(ready, (num_envs,)))
        state = state.replace(buffer=buffer, env_steps=state.env_steps.add(num_envs), rng=rng)
        state, stats = jax.lax.scan(update, state, jnp.stack(k_updates))

        done = info["episode_done"].astype(jnp.float32)
        episodes = done.sum()
        metrics = {k: v.mean() for k, v in stats.items()}
        metrics.update(
            episode_return=jnp.where(
                episodes > 0, (info["episode_return"] * done).sum() / jnp.maximum(episodes, 1.0), 0.0
            ),
            episodes_completed=episodes,
            buffer_size=state.buffer.size,
        )
        if config.prioritized:
            metrics["priority_beta"] = priority_beta(state)
        state = state.replace(iteration=state.iteration + 1)
        return state, jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), metrics)

    def policy_params(state: State):
        return {"actor": state.actor_params, "noise_std": state.hparams.noise_std}

    def act(params, obs: jax.Array, key: jax.Array, deterministic: bool = False) -> jax.Array:
        """μ(s) in [−1, 1] (which :class:`jaxrl.envs.RescaleAction` maps to the
        env's bounds), plus Gaussian noise of σ = ``noise_std`` unless
        ``deterministic``. One observation or a batch."""
        action = policy(params["actor"], jnp.asarray(obs, jnp.float32))
        if not deterministic:
            action = jnp.clip(action + params["noise_std"] * jax.random.normal(key, action.shape), -1, 1)
        return action.reshape(action.shape[:-1] + action_shape)

    def evaluate(state: State, key: jax.Array, num_episodes: int) -> jax.Array:
        params = policy_params(state)
        policy_fn = lambda obs, k: act(params, obs, k, deterministic=True)
        return envs.episode_returns(act_env, env_params, policy_fn, key, num_episodes).returns

    return Agent(
        name=algo,
        config=config,
        env=env,
        env_params=env_params,
        init=init,
        step=step,
        act=act,
        policy_params=policy_params,
        evaluate=evaluate,
        default_hparams=config.hparams,
        env_steps_per_step=num_envs,
    )



def _kernels(params) -> list[jax.Array]:
    """The weight matrices of ``params`` (the paper's L2 penalty spares biases)."""
    leaves = jax.tree_util.tree_leaves_with_path(params)
    return [x for path, x in leaves if getattr(path[-1], "key", None) == "kernel"]
