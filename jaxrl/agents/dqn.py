"""Deep Q-Networks (Mnih et al. 2015) and Double DQN (van Hasselt et al. 2016).

One ``step``: every one of ``num_envs`` vmapped envs takes ``rollout_len``
ε-greedy actions, the one-step transitions go into a uniform replay buffer,
then (once ``learning_starts`` env steps have passed) ``updates_per_step``
minibatch updates minimise the Huber loss between Q(s, a) and

    DQN:         y = r + Γ · max_a' Q'(s', a')
    Double DQN:  y = r + Γ · Q'(s', argmax_a' Q(s', a'))

where Q' is the target network and Γ = γ·(1 − terminated). Time limits are
not terminal: on truncation the target bootstraps from
``info["final_observation"]``. The target network is copied every
``target_update_period`` updates (``target_update="hard"``) or trails the
online network by θ' ← τθ + (1 − τ)θ' after every update (``"soft"``).

ε decays linearly from ``epsilon_start`` to ``epsilon_end`` over the first
``exploration_fraction · total_steps`` env steps.

Defaults are a CartPole-sized version of the paper's recipe (CleanRL's
``dqn.py`` settings: Adam 2.5e-4, batch 128, 120-84 ReLU layers, ε 1 → 0.05
over half the run, 10^4 warm-up steps, one update per 8 env steps, a hard
target copy every 50 updates), with Double-DQN targets on and a Huber δ of
1000 (see ``Config.huber_delta``).

The pieces h-DQN reuses (:class:`QNetwork`, :func:`q_learning_targets`,
:func:`epsilon_greedy`, :func:`linear_epsilon`, :func:`soft_update`) are
public here.
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

from jaxrl import envs, ops, replay
from jaxrl.agents.base import Agent, AgentConfig, config_requirer
from jaxrl.config import Check, field, hparams_class, non_negative, one_of, positive, unit_interval
from jaxrl.networks import ACTIVATIONS
from jaxrl.ops.counters import StepCounter

ACTION_SPACES = ("discrete",)
TARGET_UPDATES = ("hard", "soft")


# Unlike config.sizes, an empty tuple is allowed: a Q function linear in the observation.
hidden_layer_sizes = Check(lambda v: all(h > 0 for h in v), "a tuple of positive integers")


@dataclasses.dataclass(frozen=True)
class Config(AgentConfig):
    """DQN settings (CartPole-sized defaults; see the module docstring)."""

    num_envs: int = field(4, check=positive)
    """Parallel environments (vmapped)."""
    rollout_len: int = field(2, check=positive)
    """Environment steps per environment per iteration."""
    updates_per_step: int = field(1, check=positive)
    """Gradient updates per iteration once learning has started."""
    batch_size: int = field(128, check=positive)
    """Minibatch size of each update."""
    buffer_size: int = field(50_000, check=positive)
    """Replay capacity in transitions."""
    learning_starts: int = field(10_000, check=non_negative)
    """Env steps (over all envs) before the first update."""
    total_steps: int = field(500_000, check=positive)
    """Env steps of the run (the ε schedule spans a fraction of them)."""
    learning_rate: float = field(2.5e-4, check=positive, swept=True)
    """Adam step size."""
    gamma: float = field(0.99, check=unit_interval, swept=True)
    """Discount factor γ."""
    double_dqn: bool = True
    """Double-DQN targets (online argmax, target evaluation) instead of max over Q'."""
    target_update: str = field("hard", check=one_of(*TARGET_UPDATES))
    """Target network update: hard (copy every target_update_period updates) | soft (Polyak, tau)."""
    target_update_period: int = field(50, check=positive)
    """Updates between hard target copies."""
    tau: float = field(0.005, check=unit_interval, swept=True)
    """Soft target update rate θ' ← τθ + (1 − τ)θ' (target_update=soft)."""
    epsilon_start: float = field(1.0, check=unit_interval, swept=True)
    """ε at the start of training."""
    epsilon_end: float = field(0.05, check=unit_interval, swept=True)
    """ε after the decay."""
    exploration_fraction: float = field(0.5, check=unit_interval, swept=True)
    """Fraction of total_steps over which ε decays linearly."""
    huber_delta: float = field(1000.0, check=positive, swept=True)
    """δ of the Huber loss. The paper's δ = 1 assumes rewards clipped to ±1. On
    CartPole-v1 with Adam, δ = 1 and 10 made Q diverge and δ = 100 collapsed
    after 2·10^5 steps in our runs (2 seeds each); δ = 1000, a squared loss in
    practice, with max_grad_norm bounding the step, reached 475."""
    max_grad_norm: float = field(10.0, check=positive, swept=True)
    """Global gradient-norm bound."""
    hidden_sizes: tuple[int, ...] = field((120, 84), check=hidden_layer_sizes)
    """Hidden layer sizes of the Q network (empty: linear in the observation)."""
    activation: str = field("relu", check=one_of(*ACTIVATIONS))
    """Hidden activation: tanh | relu | elu | gelu | silu | leaky_relu."""

    def validate(self) -> None:
        """Raises ValueError naming the first field whose value is not allowed."""
        super().validate()
        require = config_requirer(self)
        require(self.buffer_size >= self.num_envs, "buffer_size", f"at least num_envs = {self.num_envs}")


# The swept fields of Config. Every step reads them from the state: a value
# changed between steps applies from the next update on.
HParams = hparams_class(Config)


# --------------------------------------------------------------------------- pieces


class QNetwork(nn.Module):
    """Q(s, ·): an MLP over the flattened input with one output per action."""

    num_actions: int
    hidden_sizes: Sequence[int] = (120, 84)
    activation: str = "relu"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for size in self.hidden_sizes:
            x = act(nn.Dense(size)(x))
        return nn.Dense(self.num_actions)(x)


def q_learning_targets(
    reward: jax.Array,
    discount: jax.Array,
    next_q_target: jax.Array,
    next_q_online: jax.Array,
    double: bool,
) -> jax.Array:
    """One-step Q-learning targets ``[N]`` from ``[N]`` rewards and discounts Γ
    and ``[N, A]`` action values at s'.

        double=False:  y = r + Γ · max_a Q'(s', a)                    (DQN)
        double=True:   y = r + Γ · Q'(s', argmax_a Q(s', a))          (Double DQN)

    Double DQN picks the action with the online network and evaluates it with
    the target network, which removes the max operator's upward bias.
    """
    chex.assert_rank([reward, discount, next_q_target, next_q_online], [1, 1, 2, 2])
    chex.assert_equal_shape([next_q_target, next_q_online])
    if double:
        best = jnp.argmax(next_q_online, axis=-1)
        next_value = jnp.take_along_axis(next_q_target, best[:, None], axis=-1)[:, 0]
    else:
        next_value = jnp.max(next_q_target, axis=-1)
    return jax.lax.stop_gradient(reward + discount * next_value)


def linear_epsilon(env_steps: StepCounter | jax.Array, start, end, decay_steps) -> jax.Array:
    """ε falling linearly from ``start`` to ``end`` over ``decay_steps`` env steps, then ``end``."""
    if isinstance(env_steps, StepCounter):
        progress = env_steps.fraction_of(decay_steps)
    else:
        progress = jnp.clip(env_steps.astype(jnp.float32) / jnp.maximum(decay_steps, 1.0), 0.0, 1.0)
    return start + progress * (end - start)


def epsilon_greedy(key: jax.Array, q_values: jax.Array, epsilon: jax.Array) -> jax.Array:
    """Per row of ``q_values [..., A]``: a uniform action with probability ε
    (broadcast against the batch), else the greedy one."""
    k_explore, k_random = jax.random.split(key)
    batch_shape = q_values.shape[:-1]
    explore = jax.random.uniform(k_explore, batch_shape) < epsilon
    random_action = jax.random.randint(k_random, batch_shape, 0, q_values.shape[-1])
    return jnp.where(explore, random_action, jnp.argmax(q_values, axis=-1)).astype(jnp.int32)


def soft_update(target, online, tau):
    """θ' ← τθ + (1 − τ)θ' (τ = 1 is a hard copy)."""
    return jax.tree.map(lambda t, o: (1.0 - tau) * t + tau * o, target, online)


def q_loss(params, target_params, apply_fn, batch: replay.Transition, hp, double: bool):
    """Huber loss of Q(s, a) against the (Double-)DQN targets; and stats."""
    q = apply_fn(params, batch.obs)
    q_taken = jnp.take_along_axis(q, batch.action[:, None].astype(jnp.int32), axis=-1)[:, 0]
    next_q_target = apply_fn(target_params, batch.next_obs)
    next_q_online = apply_fn(params, batch.next_obs)
    targets = q_learning_targets(batch.reward, batch.discount, next_q_target, next_q_online, double)
    loss = ops.huber_loss(q_taken, targets, hp.huber_delta)
    return loss, {"loss": loss, "q_mean": q_taken.mean()}


def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of ``values`` where ``mask``; 0 when nothing is masked in."""
    mask = mask.astype(jnp.float32)
    count = mask.sum()
    return jnp.where(count > 0, (values * mask).sum() / jnp.maximum(count, 1.0), 0.0)



# --------------------------------------------------------------------------- agent


@struct.dataclass
class State:
    """Everything a DQN run needs, as one pytree."""

    params: Any
    target_params: Any
    opt_state: optax.OptState
    buffer: replay.ReplayState
    env_state: Any
    obs: jax.Array
    rng: jax.Array
    hparams: HParams
    iteration: jax.Array
    env_steps: StepCounter
    updates: jax.Array


def make(env, env_params, config: Config = Config()) -> Agent:
    """Binds DQN to an environment with a discrete action space. Validates
    ``config`` and the action space before anything is traced."""
    config.validate()
    envs.validate_env_for(ACTION_SPACES, getattr(env, "name", type(env).__name__), env, env_params, "dqn")
    obs_shape = envs.observation_shape(env, env_params)
    obs_dim = max(1, math.prod(obs_shape))
    num_actions = envs.num_actions(env, env_params)
    num_envs = config.num_envs

    network = QNetwork(num_actions, tuple(config.hidden_sizes), config.activation)
    flat_obs = lambda obs: jnp.asarray(obs, jnp.float32).reshape(obs.shape[: obs.ndim - len(obs_shape)] + (obs_dim,))
    q_values = lambda params, obs: network.apply(params, flat_obs(obs))

    train_env = envs.BatchEnv(envs.EpisodeStats(env), num_envs)
    optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=1.0)

    def init(key: jax.Array, hparams: HParams | None = None) -> State:
        hparams = config.hparams() if hparams is None else hparams
        key, k_params, k_env = jax.random.split(key, 3)
        params = network.init(k_params, jnp.zeros((obs_dim,), jnp.float32))
        obs, env_state = train_env.reset(k_env, env_params)
        example = replay.Transition(
            obs=jnp.zeros(obs_shape, jnp.float32),
            action=jnp.zeros((), jnp.int32),
            reward=jnp.zeros((), jnp.float32),
            discount=jnp.zeros((), jnp.float32),
            next_obs=jnp.zeros(obs_shape, jnp.float32),
        )
        return State(
            params=params,
            target_params=params,
            opt_state=ops.with_learning_rate(optimizer.init(params), hparams.learning_rate),
            buffer=replay.uniform.init(example, config.buffer_size),
            env_state=env_state,
            obs=jnp.asarray(obs, jnp.float32),
            rng=key,
            hparams=hparams,
            iteration=jnp.zeros((), jnp.int32),
            env_steps=StepCounter.zeros(),
            updates=jnp.zeros((), jnp.int32),
        )

    def epsilon(state: State) -> jax.Array:
        hp = state.hparams
        decay_steps = hp.exploration_fraction * config.total_steps
        return linear_epsilon(state.env_steps, hp.epsilon_start, hp.epsilon_end, decay_steps)

    def env_step(state: State, _):
        rng, k_act, k_env = jax.random.split(state.rng, 3)
        eps = epsilon(state)
        action = epsilon_greedy(k_act, q_values(state.params, state.obs), eps)
        next_obs, env_state, reward, terminated, truncated, info = train_env.step(
            k_env, state.env_state, action, env_params
        )
        transition = replay.Transition(
            obs=state.obs,
            action=action,
            reward=reward.astype(jnp.float32),
            discount=state.hparams.gamma * (1.0 - terminated.astype(jnp.float32)),
            # The true next observation: differs from next_obs after auto-reset.
            next_obs=jnp.asarray(info["final_observation"], jnp.float32),
        )
        state = state.replace(
            buffer=replay.uniform.add(state.buffer, transition),
            env_state=env_state,
            obs=jnp.asarray(next_obs, jnp.float32),
            rng=rng,
            env_steps=state.env_steps.add(num_envs),
        )
        episode = {"done": info["episode_done"], "return": info["episode_return"], "epsilon": eps}
        return state, episode

    def learn(state: State, batch: replay.Transition):
        hp = state.hparams
        grads, stats = jax.grad(q_loss, has_aux=True)(
            state.params, state.target_params, q_values, batch, hp, config.double_dqn
        )
        grad_norm = ops.global_norm(grads)
        grads = ops.clip_by_global_norm(grads, hp.max_grad_norm)
        # Read every update, so a learning rate changed in the state applies at once.
        opt_state = ops.with_learning_rate(state.opt_state, hp.learning_rate)
        updates, opt_state = optimizer.update(grads, opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        n_updates = state.updates + 1
        if config.target_update == "soft":
            target_params = soft_update(state.target_params, params, hp.tau)
        else:
            copy = (n_updates % config.target_update_period) == 0
            target_params = jax.tree.map(
                lambda t, o: jnp.where(copy, o, t), state.target_params, params
            )
        state = state.replace(params=params, target_params=target_params, opt_state=opt_state,
                              updates=n_updates)
        return state, {**stats, "grad_norm": grad_norm}

    def update(state: State, key: jax.Array):
        learning = state.env_steps.at_least(config.learning_starts) & replay.uniform.can_sample(
            state.buffer, config.batch_size
        )
        batch = replay.uniform.sample(state.buffer, key, config.batch_size)

        def skip(state, batch):
            zero = jnp.zeros((), jnp.float32)
            return state, {"loss": zero, "q_mean": zero, "grad_norm": zero}

        # The buffer stays outside the cond: under vmap a cond becomes a
        # select, which would copy the whole buffer every update.
        buffer = state.buffer
        state, stats = jax.lax.cond(learning, learn, skip, state.replace(buffer=None), batch)
        return state.replace(buffer=buffer), {**stats, "learning": learning.astype(jnp.float32)}

    def step(state: State) -> tuple[State, dict[str, jax.Array]]:
        state, episodes = jax.lax.scan(env_step, state, length=config.rollout_len)
        rng, *k_updates = jax.random.split(state.rng, 1 + config.updates_per_step)
        state = state.replace(rng=rng)
        state, stats = jax.lax.scan(update, state, jnp.stack(k_updates))
        done = episodes["done"]
        metrics = {k: v.mean() for k, v in stats.items()}
        metrics.update(
            episode_return=masked_mean(episodes["return"], done),
            episodes_completed=done.sum(),
            epsilon=episodes["epsilon"][-1],
            buffer_size=state.buffer.size,
        )
        state = state.replace(iteration=state.iteration + 1)
        return state, jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), metrics)

    def policy_params(state: State):
        return {"network": state.params, "epsilon": state.hparams.epsilon_end}

    def act(params, obs: jax.Array, key: jax.Array, deterministic: bool = False) -> jax.Array:
        """Greedy action (``deterministic``) or ε-greedy with the final ε.
        One observation or a batch."""
        q = q_values(params["network"], jnp.asarray(obs, jnp.float32))
        if deterministic:
            return jnp.argmax(q, axis=-1).astype(jnp.int32)
        return epsilon_greedy(key, q, params["epsilon"])

    def evaluate(state: State, key: jax.Array, num_episodes: int) -> jax.Array:
        params = policy_params(state)
        policy = lambda obs, k: act(params, obs, k, deterministic=True)
        return envs.episode_returns(env, env_params, policy, key, num_episodes).returns

    agent = Agent(
        name="dqn",
        config=config,
        env=env,
        env_params=env_params,
        init=init,
        step=step,
        act=act,
        policy_params=policy_params,
        evaluate=evaluate,
        default_hparams=config.hparams,
        env_steps_per_step=num_envs * config.rollout_len,
    )
    return agent


def q_function(agent: Agent) -> Callable[[Any, jax.Array], jax.Array]:
    """``q(params, obs) -> [..., A]`` of the network ``agent`` was built with
    (``params`` is ``state.params``): for probes and analysis."""
    obs_shape = envs.observation_shape(agent.env, agent.env_params)
    obs_dim = max(1, math.prod(obs_shape))
    network = QNetwork(envs.num_actions(agent.env, agent.env_params),
                       tuple(agent.config.hidden_sizes), agent.config.activation)
    return lambda params, obs: network.apply(
        params, jnp.asarray(obs, jnp.float32).reshape(jnp.shape(obs)[: jnp.ndim(obs) - len(obs_shape)] + (obs_dim,))
    )
