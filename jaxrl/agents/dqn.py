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

An env with an action mask (:mod:`jaxrl.agents.masks`): the greedy and the
random ε-greedy actions are legal ones, each transition stores the mask of
its next observation, and the target's max over a' ranges over it.

Defaults are a CartPole-sized version of the paper's recipe (CleanRL's
``dqn.py`` settings: Adam 2.5e-4, batch 128, 120-84 ReLU layers, ε 1 → 0.05
over half the run, 10^4 warm-up steps, one update per 8 env steps, a hard
target copy every 50 updates), with Double-DQN targets on and a Huber δ of
1000 (see ``Config.huber_delta``).

The update itself (targets, loss, gradient step, target network, ε
schedules) is :mod:`jaxrl.agents.q_learning`, shared with h-DQN; its names
(:class:`QNetwork`, :func:`q_learning_targets`, :func:`epsilon_greedy`,
:func:`linear_epsilon`, :func:`soft_update`) are public here too. The steps
below are module-level functions of a static :class:`Spec`; :func:`make`
binds them into an :class:`Agent`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxrl import envs, replay
from jaxrl.agents import base, fields, masks, off_policy, q_learning
from jaxrl.agents.base import Agent, AgentConfig
from jaxrl.agents.q_learning import (  # noqa: F401  (public names of this module)
    TARGET_UPDATES, QNetwork, epsilon_greedy, linear_epsilon, q_learning_targets, soft_update,
)
from jaxrl.config import field, hparams_class, positive, unit_interval
from jaxrl.ops.counters import StepCounter

ACTION_SPACES = ("discrete",)

@dataclasses.dataclass(frozen=True)
class Config(AgentConfig):
    """DQN settings (CartPole-sized defaults; see the module docstring)."""

    num_envs: int = fields.num_envs(4)
    rollout_len: int = fields.rollout_len(2)
    updates_per_step: int = fields.updates_per_step(1)
    batch_size: int = fields.batch_size(128)
    buffer_size: int = fields.buffer_size(50_000)
    learning_starts: int = fields.learning_starts(10_000)
    total_steps: int = fields.total_steps(500_000)
    learning_rate: float = fields.learning_rate(2.5e-4, doc="Adam step size.")
    gamma: float = fields.gamma()
    double_dqn: bool = fields.double_dqn()
    target_update: str = fields.target_update()
    target_update_period: int = fields.target_update_period(50)
    tau: float = fields.tau()
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
    max_grad_norm: float = fields.max_grad_norm(10.0)
    hidden_sizes: tuple[int, ...] = fields.hidden_sizes((120, 84), allow_empty=True)
    activation: str = fields.activation("relu")
    torso: str = fields.torso("mlp")
    """Q network torso: mlp (dense layers over the flattened observation; the
    default, on images too) | auto (minatar_cnn for image observations, else
    mlp) | minatar_cnn | nature_cnn (the paper's encoder; images of at least
    36x36) | impala_resnet. The image torsos divide uint8 observations by 255;
    hidden_sizes are their dense layers after the convolutions (the paper's:
    (512,))."""

    def validate(self) -> None:
        """Raises ValueError naming the first field whose value is not allowed."""
        super().validate()
        off_policy.require_buffers_hold_one_step(self, "buffer_size")


# Read from the state at every update: a value changed mid-run applies at once.
HParams = hparams_class(Config)


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


@dataclasses.dataclass(frozen=True)
class Spec(off_policy.EnvSpec):
    """What is static about a DQN agent: config, environment, network, learner."""

    network: QNetwork
    learner: q_learning.QSpec
    mask: masks.MaskLayout = masks.NO_MASK
    """How observations carry an action mask (kind None: they don't)."""


def make_spec(env, env_params, config: Config) -> Spec:
    """Validates ``config`` and the action space, and builds the :class:`Spec`."""
    config.validate()
    envs.validate_env_for(ACTION_SPACES, getattr(env, "name", type(env).__name__), env, env_params, "dqn")
    obs_shape = masks.network_observation_shapes(env, env_params)
    if isinstance(obs_shape, dict):
        raise ValueError(
            f"observation: a Dict observation with keys {sorted(obs_shape)} needs one array; "
            "wrap the env in jaxrl.envs.FlattenObservation")
    network = q_learning.q_network(envs.num_actions(env, env_params), config, obs_shape, env, env_params)
    q_values = lambda params, obs: network.apply(params, off_policy.flatten_obs(obs, obs_shape))
    learner = q_learning.QSpec(
        apply=q_values, optimizer=off_policy.adam(), double=config.double_dqn,
        target_update=config.target_update, target_update_period=config.target_update_period,
        batch_size=config.batch_size, learning_starts=config.learning_starts,
    )
    train_env = envs.BatchEnv(envs.EpisodeStats(env), config.num_envs)
    return Spec(config=config, env=env, env_params=env_params, train_env=train_env, obs_shape=obs_shape,
                network=network, learner=learner, mask=masks.mask_layout(env, env_params))


def init(spec: Spec, key: jax.Array, hparams: HParams | None = None) -> State:
    """A fresh state: network and target copy, empty buffer, reset envs."""
    config = spec.config
    hparams = config.hparams() if hparams is None else hparams
    key, k_params, k_env = jax.random.split(key, 3)
    example = jnp.zeros((off_policy.flat_dim(spec.obs_shape),), jnp.float32)
    learner = q_learning.new_learner(spec.learner, k_params, example, spec.network, hparams.learning_rate)
    obs, env_state = spec.train_env.reset(k_env, spec.env_params)
    example_transition = off_policy.example_transition(spec.obs_shape, (), jnp.int32,
                                                       masks.example_mask(spec.mask))
    buffer = replay.uniform.init(example_transition, config.buffer_size)
    return State(
        params=learner.params,
        target_params=learner.target_params,
        opt_state=learner.opt_state,
        buffer=buffer,
        env_state=env_state,
        obs=float_observation(spec, obs),
        rng=key,
        hparams=hparams,
        iteration=jnp.zeros((), jnp.int32),
        env_steps=StepCounter.zeros(),
        updates=learner.updates,
    )


def float_observation(spec: Spec, obs):
    """Env observations with the network's part as float32 (a mask stays bool)."""
    if not spec.mask.masked:
        return jnp.asarray(obs, jnp.float32)
    return {k: v if k == envs.ACTION_MASK else jnp.asarray(v, jnp.float32) for k, v in obs.items()}


def epsilon(spec: Spec, state: State) -> jax.Array:
    """ε of the current env step on the linear schedule."""
    hp = state.hparams
    decay_steps = hp.exploration_fraction * spec.config.total_steps
    return linear_epsilon(state.env_steps, hp.epsilon_start, hp.epsilon_end, decay_steps)


def env_step(spec: Spec, state: State, _=None) -> tuple[State, dict[str, jax.Array]]:
    """One ε-greedy step of every env; its transitions go into the buffer."""
    rng, k_act, k_env = jax.random.split(state.rng, 3)
    eps = epsilon(spec, state)
    obs, mask = masks.split_observation(spec.mask, state.obs)
    action = epsilon_greedy(k_act, spec.learner.apply(state.params, obs), eps, mask)
    next_obs, env_state, reward, terminated, truncated, info = spec.train_env.step(
        k_env, state.env_state, action, spec.env_params
    )
    final_obs, final_mask = masks.split_observation(spec.mask, info["final_observation"])
    transition = off_policy.one_step_transition(
        obs, action, reward, terminated, {**info, "final_observation": final_obs}, state.hparams.gamma)
    transition = transition.replace(next_action_mask=final_mask)
    state = state.replace(
        buffer=replay.uniform.add(state.buffer, transition),
        env_state=env_state,
        obs=float_observation(spec, next_obs),
        rng=rng,
        env_steps=state.env_steps.add(spec.config.num_envs),
    )
    episode = {"done": info["episode_done"], "return": info["episode_return"], "epsilon": eps}
    return state, episode


def learner_of(state: State) -> q_learning.Learner:
    """The online/target parameters, optimiser and count of ``state`` as a Learner."""
    return q_learning.Learner(params=state.params, target_params=state.target_params,
                              opt_state=state.opt_state, updates=state.updates)


def update(spec: Spec, state: State, key: jax.Array) -> tuple[State, dict[str, jax.Array]]:
    """One minibatch update (once learning has started)."""
    learner, stats, learning = q_learning.maybe_update(
        spec.learner, learner_of(state), state.buffer, key, state.env_steps, state.hparams
    )
    state = state.replace(params=learner.params, target_params=learner.target_params,
                          opt_state=learner.opt_state, updates=learner.updates)
    return state, {**stats, "learning": learning.astype(jnp.float32)}


def step(spec: Spec, state: State) -> tuple[State, dict[str, jax.Array]]:
    """``rollout_len`` env steps of every env, then ``updates_per_step`` updates."""
    config = spec.config
    state, episodes, metrics = q_learning.rollout_then_update(
        state, functools.partial(env_step, spec), functools.partial(update, spec),
        config.rollout_len, config.updates_per_step)
    metrics.update(
        **off_policy.episode_metrics(episodes["return"], episodes["done"]),
        epsilon=episodes["epsilon"][-1],
        buffer_size=state.buffer.size,
    )
    state = state.replace(iteration=state.iteration + 1)
    return state, off_policy.as_float32(metrics)


def policy_params(state: State):
    """The network and the final ε: what :func:`act` needs."""
    return {"network": state.params, "epsilon": state.hparams.epsilon_end}


def act(spec: Spec, params, obs: jax.Array, key: jax.Array, deterministic: bool = False) -> jax.Array:
    """Greedy action (``deterministic``) or ε-greedy with the final ε, among
    the legal actions of an env with a mask. One observation or a batch."""
    obs, mask = masks.split_observation(spec.mask, float_observation(spec, obs))
    q = spec.learner.apply(params["network"], obs)
    if deterministic:
        return q_learning.greedy_action(q, mask).astype(jnp.int32)
    return epsilon_greedy(key, q, params["epsilon"], mask)


def evaluate(spec: Spec, state: State, key: jax.Array, num_episodes: int) -> jax.Array:
    """Returns of ``num_episodes`` greedy episodes."""
    params = policy_params(state)
    policy = lambda obs, k: act(spec, params, obs, k, deterministic=True)
    return envs.episode_returns(spec.env, spec.env_params, policy, key, num_episodes).returns


def make(env, env_params, config: Config = Config()) -> Agent:
    """Binds DQN to an environment with a discrete action space. Validates
    ``config`` and the action space before anything is traced."""
    spec = make_spec(env, env_params, config)
    return base.bind("dqn", spec, env, env_params, init=init, step=step, act=act,
                     evaluate=evaluate, policy_params=policy_params,
                     env_steps_per_step=config.num_envs * config.rollout_len)


def q_function(agent: Agent) -> Callable[[Any, jax.Array], jax.Array]:
    """``q(params, obs) -> [..., A]`` of the network ``agent`` was built with
    (``params`` is ``state.params``): for probes and analysis."""
    return make_spec(agent.env, agent.env_params, agent.config).learner.apply
