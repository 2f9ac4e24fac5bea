"""Hierarchical DQN (Kulkarni, Narasimhan, Saeedi, Tenenbaum 2016, arXiv:1604.06057).

Two Q-learners at two timescales:

- the **meta-controller** Q₂(s, g) picks a goal g from the environment's goal
  set (ε₂-greedy) whenever the previous option has ended, and learns from
  meta transitions (s₀, g, F, s') where F is the extrinsic reward summed while
  g was active:  y₂ = F + Γ₂ · Q₂'(s', ·)  (one discount per option);
- the **controller** Q₁(s, g, a) acts toward the current goal (ε₁,g-greedy)
  and learns from the internal critic's reward: 1 when g is reached, else 0;
  reaching g ends the controller's episode (no bootstrap), so
  y₁ = r + Γ₁ · Q₁'((s', g), ·) with Γ₁ = γ₁·(1 − reached − terminated).

An option ends when its goal is reached, the episode ends, or after
``max_option_steps`` steps (a time-out, which bootstraps). Both learners use
the Q-learning update of :mod:`jaxrl.agents.q_learning`, DQN's (Huber loss,
Double-DQN targets switchable, hard or soft target updates), with separate
replay buffers.

Exploration (paper §3 and Algorithm 1): ε₂ anneals linearly over
``meta_exploration_steps`` env steps; the controller's ε₁,g is per goal and
anneals with that goal's experience,

    ε₁,g = max(ε_end, min(1 − n_g · controller_epsilon_decay, 1 − success_g))

where n_g counts the options that pursued g and success_g is a running
average (rate ``success_rate_momentum``) of whether they reached it: a goal
the controller already reaches reliably is explored little, however new.

Goals come from the environment (see :mod:`jaxrl.envs.hierarchical`):
``env.goal_names`` and ``env.goal_reached(obs, goal)``; or pass a
:class:`GoalSpec` to :func:`make`. The controller sees the observation gated
by the goal's one-hot (``concat(obs ⊗ onehot(g), onehot(g))``), so with
one-hot observations and ``hidden_sizes=()`` it is exactly tabular in (s, g).

Everything (both learners, both buffers, option bookkeeping, per-goal
statistics) is one pytree: ``step`` jits and vmaps over seeds and
:class:`HParams` like every other agent. The steps are module-level functions
of a static :class:`Spec`; :func:`make` binds them into an :class:`Agent`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl import envs, replay
from jaxrl.agents import base, fields, off_policy, q_learning
from jaxrl.agents import goals as goals_lib
from jaxrl.agents.goals import (  # noqa: F401  (public names of this module)
    GoalSpec, GoalStats, Options, controller_epsilon, controller_input, goal_spec,
)
from jaxrl.agents.base import Agent, AgentConfig
from jaxrl.agents.q_learning import Learner, QNetwork, epsilon_greedy, linear_epsilon
from jaxrl.config import field, hparams_class, positive, unit_interval
from jaxrl.ops.counters import StepCounter

ACTION_SPACES = ("discrete",)


@dataclasses.dataclass(frozen=True)
class Config(AgentConfig):
    """h-DQN settings. ε schedules follow the paper (1 → 0.1 over 5·10⁴ steps,
    Adam instead of RMSProp at the paper's 2.5e-4 is too slow for these small
    tasks, so 1e-3)."""

    num_envs: int = fields.num_envs(8)
    """Parallel environments (vmapped), each with its own current option."""
    rollout_len: int = fields.rollout_len(1)
    updates_per_step: int = fields.updates_per_step(1)
    """Updates of each learner per iteration once learning has started."""
    batch_size: int = fields.batch_size(32)
    """Minibatch size of both learners."""
    controller_buffer_size: int = field(50_000, check=positive)
    """Replay capacity of the controller (one transition per env step)."""
    meta_buffer_size: int = field(10_000, check=positive)
    """Replay capacity of the meta-controller (one transition per option)."""
    learning_starts: int = fields.learning_starts(1_000)
    total_steps: int = fields.total_steps(200_000)
    """Env steps of the run (informational for the CLI; schedules use the fields below)."""
    learning_rate: float = fields.learning_rate(1e-3, doc="Adam step size of both learners.")
    meta_gamma: float = field(0.99, check=unit_interval, swept=True)
    """Discount per option of the meta-controller."""
    controller_gamma: float = field(0.99, check=unit_interval, swept=True)
    """Discount per step of the controller."""
    double_dqn: bool = fields.double_dqn()
    target_update: str = fields.target_update()
    target_update_period: int = fields.target_update_period(100)
    tau: float = fields.tau()
    meta_epsilon_start: float = field(1.0, check=unit_interval, swept=True)
    """ε₂ of the meta-controller at the start."""
    epsilon_end: float = field(0.1, check=unit_interval, swept=True)
    """Final ε of the meta-controller and floor of the controller's ε₁,g."""
    meta_exploration_steps: int = field(50_000, check=positive, swept=True)
    """Env steps over which ε₂ decays linearly."""
    controller_epsilon_decay: float = field(1 / 2000, check=unit_interval, swept=True)
    """Decrease of ε₁,g per option that pursued goal g."""
    success_rate_momentum: float = field(0.01, check=unit_interval, swept=True)
    """Weight of each finished option in goal g's running success rate."""
    max_option_steps: int = field(20, check=positive)
    """Steps after which an option times out."""
    huber_delta: float = field(1.0, check=positive, swept=True)
    """δ of the Huber loss."""
    max_grad_norm: float = fields.max_grad_norm(10.0)
    hidden_sizes: tuple[int, ...] = fields.hidden_sizes((64, 64), allow_empty=True)
    """Hidden layers of both Q networks (empty: linear, tabular on one-hot
    observations); with an image torso, its dense layers after the convolutions."""
    activation: str = fields.activation("relu")
    torso: str = fields.torso("mlp")
    """Torso of both Q networks: mlp (dense layers over the flattened
    observation; the default, on images too) | auto (minatar_cnn for image
    observations, else mlp) | minatar_cnn | nature_cnn (images of at least
    36x36) | impala_resnet. With an image torso the controller's goal gates
    the image features instead of the observation (see
    :class:`jaxrl.agents.q_learning.QNetwork`), and uint8 observations are
    divided by 255."""

    def validate(self) -> None:
        """Raises ValueError naming the first field whose value is not allowed."""
        super().validate()
        off_policy.require_buffers_hold_one_step(self, "controller_buffer_size", "meta_buffer_size")


# The swept fields of Config. Every step reads them from the state: a value
# changed between steps applies from the next update on.
HParams = hparams_class(Config)


@struct.dataclass
class State:
    """Everything an h-DQN run needs, as one pytree."""

    meta: Learner
    controller: Learner
    meta_buffer: replay.ReplayState
    controller_buffer: replay.ReplayState
    options: Options
    goal_stats: GoalStats
    env_state: Any
    obs: jax.Array
    rng: jax.Array
    hparams: HParams
    iteration: jax.Array
    env_steps: StepCounter


@dataclasses.dataclass(frozen=True)
class Spec(off_policy.EnvSpec):
    """What is static about an h-DQN agent: config, environment, goals, both learners."""

    goals: GoalSpec
    meta_net: QNetwork
    controller_net: QNetwork
    meta: q_learning.QSpec
    controller: q_learning.QSpec

    @property
    def num_goals(self) -> int:
        return len(self.goals.names)

    @property
    def obs_dim(self) -> int:
        return off_policy.flat_dim(self.obs_shape)

    @property
    def image_controller(self) -> bool:
        """The controller has an image torso, which gates the image features by the goal."""
        return self.controller_net.torso != "mlp"

    @property
    def controller_dim(self) -> int:
        """Features of :meth:`controller_x`."""
        return self.obs_dim + self.num_goals if self.image_controller else (
            self.obs_dim * self.num_goals + self.num_goals)

    def controller_x(self, obs: jax.Array, goal: jax.Array) -> jax.Array:
        """The controller's input for flat observations and goals:
        :func:`controller_input`, or ``concat(obs, onehot(g))`` for an image
        controller (:func:`jaxrl.agents.goals.image_controller_input`)."""
        make = goals_lib.image_controller_input if self.image_controller else controller_input
        return make(obs, goal, self.num_goals)

    def flat(self, obs: jax.Array) -> jax.Array:
        return off_policy.flatten_obs(obs, self.obs_shape)


def make_spec(env, env_params, config: Config, goals: GoalSpec | None = None) -> Spec:
    """Validates ``config``, the action space and the goals, and builds the :class:`Spec`."""
    config.validate()
    envs.validate_env_for(ACTION_SPACES, getattr(env, "name", type(env).__name__), env, env_params, "hdqn")
    goals = goal_spec(env) if goals is None else goals
    obs_shape = envs.observation_shape(env, env_params)
    meta_net = q_learning.q_network(len(goals.names), config, obs_shape, env, env_params)
    controller_net = q_learning.q_network(envs.num_actions(env, env_params), config, obs_shape, env,
                                          env_params, num_goals=len(goals.names))
    learner = functools.partial(
        q_learning.QSpec, optimizer=off_policy.adam(), double=config.double_dqn,
        target_update=config.target_update, target_update_period=config.target_update_period,
        batch_size=config.batch_size, learning_starts=config.learning_starts,
    )
    return Spec(
        config=config, env=env, env_params=env_params,
        train_env=envs.BatchEnv(envs.EpisodeStats(env), config.num_envs),
        goals=goals, obs_shape=obs_shape,
        meta_net=meta_net, controller_net=controller_net,
        meta=learner(apply=meta_net.apply), controller=learner(apply=controller_net.apply),
    )


def init(spec: Spec, key: jax.Array, hparams: HParams | None = None) -> State:
    """A fresh state: both learners, empty buffers, reset envs, no options yet."""
    config, num_envs, num_goals = spec.config, spec.config.num_envs, spec.num_goals
    hparams = config.hparams() if hparams is None else hparams
    key, k_meta, k_controller, k_env = jax.random.split(key, 4)
    obs, env_state = spec.train_env.reset(k_env, spec.env_params)
    obs = spec.flat(obs)
    meta_input = jnp.zeros((spec.obs_dim,), jnp.float32)
    controller_x = jnp.zeros((spec.controller_dim,), jnp.float32)
    return State(
        meta=q_learning.new_learner(spec.meta, k_meta, meta_input, spec.meta_net, hparams.learning_rate),
        controller=q_learning.new_learner(spec.controller, k_controller, controller_x, spec.controller_net,
                                          hparams.learning_rate),
        meta_buffer=replay.uniform.init(
            off_policy.example_transition(meta_input.shape, (), jnp.int32), config.meta_buffer_size),
        controller_buffer=replay.uniform.init(
            off_policy.example_transition(controller_x.shape, (), jnp.int32), config.controller_buffer_size),
        options=Options(
            goal=jnp.zeros((num_envs,), jnp.int32),
            start_obs=obs,
            extrinsic_return=jnp.zeros((num_envs,), jnp.float32),
            steps=jnp.zeros((num_envs,), jnp.int32),
            needs_goal=jnp.ones((num_envs,), bool),
        ),
        goal_stats=GoalStats(
            attempts=jnp.zeros((num_goals,), jnp.float32),
            success_rate=jnp.zeros((num_goals,), jnp.float32),
        ),
        env_state=env_state,
        obs=obs,
        rng=key,
        hparams=hparams,
        iteration=jnp.zeros((), jnp.int32),
        env_steps=StepCounter.zeros(),
    )


def meta_epsilon(state: State) -> jax.Array:
    """ε₂ of the meta-controller on its linear schedule."""
    hp = state.hparams
    return linear_epsilon(state.env_steps, hp.meta_epsilon_start, hp.epsilon_end, hp.meta_exploration_steps)


def choose_goals(spec: Spec, state: State, key: jax.Array) -> tuple[Options, jax.Array]:
    """New goals where the previous option ended (the rest keep theirs), and
    how many envs chose each goal ``[G]``."""
    opts = state.options
    picked = epsilon_greedy(key, spec.meta.apply(state.meta.params, state.obs), meta_epsilon(state))
    new = opts.needs_goal
    opts = Options(
        goal=jnp.where(new, picked, opts.goal),
        start_obs=jnp.where(new[:, None], state.obs, opts.start_obs),
        extrinsic_return=jnp.where(new, 0.0, opts.extrinsic_return),
        steps=jnp.where(new, 0, opts.steps),
        needs_goal=jnp.zeros_like(new),
    )
    chosen = jax.nn.one_hot(opts.goal, spec.num_goals) * new[:, None].astype(jnp.float32)
    return opts, chosen.sum(axis=0)


def env_step(spec: Spec, state: State, _=None) -> tuple[State, dict[str, jax.Array]]:
    """One step of every env under its option; the controller's transition,
    and the meta-controller's where an option ended, go into their buffers."""
    hp, num_goals = state.hparams, spec.num_goals
    rng, k_goal, k_act, k_env = jax.random.split(state.rng, 4)
    opts, chosen = choose_goals(spec, state, k_goal)
    goal_stats = state.goal_stats.replace(attempts=state.goal_stats.attempts + chosen)

    x = spec.controller_x(state.obs, opts.goal)
    eps = controller_epsilon(goal_stats, hp)[opts.goal]
    action = epsilon_greedy(k_act, spec.controller.apply(state.controller.params, x), eps)
    next_obs, env_state, reward, terminated, truncated, info = spec.train_env.step(
        k_env, state.env_state, action, spec.env_params
    )
    final_obs = spec.flat(info["final_observation"])
    reached = jax.vmap(spec.goals.reached)(final_obs, opts.goal)

    # The internal critic: reward 1 on reaching the goal, which ends the
    # controller's sub-episode; an option time-out does not.
    controller_transition = replay.Transition(
        obs=x,
        action=action,
        reward=reached.astype(jnp.float32),
        discount=hp.controller_gamma * (1.0 - (reached | terminated).astype(jnp.float32)),
        next_obs=spec.controller_x(final_obs, opts.goal),
    )
    extrinsic_return = opts.extrinsic_return + reward.astype(jnp.float32)
    steps = opts.steps + 1
    option_done = reached | terminated | truncated | (steps >= spec.config.max_option_steps)
    meta_transition = replay.Transition(
        obs=opts.start_obs,
        action=opts.goal,
        reward=extrinsic_return,
        discount=hp.meta_gamma * (1.0 - terminated.astype(jnp.float32)),
        next_obs=final_obs,
    )

    ended = jax.nn.one_hot(opts.goal, num_goals) * option_done[:, None].astype(jnp.float32)
    successes = (ended * reached[:, None].astype(jnp.float32)).sum(axis=0)
    ended = ended.sum(axis=0)
    rate = goal_stats.success_rate
    # Running average over finished options (several may finish at once).
    rate = jnp.clip(rate + hp.success_rate_momentum * (successes - ended * rate), 0.0, 1.0)

    state = state.replace(
        meta_buffer=replay.uniform.add(state.meta_buffer, meta_transition, mask=option_done),
        controller_buffer=replay.uniform.add(state.controller_buffer, controller_transition),
        options=opts.replace(extrinsic_return=extrinsic_return, steps=steps, needs_goal=option_done),
        goal_stats=goal_stats.replace(success_rate=rate),
        env_state=env_state,
        obs=spec.flat(next_obs),
        rng=rng,
        env_steps=state.env_steps.add(spec.config.num_envs),
    )
    record = {
        "done": info["episode_done"],
        "return": info["episode_return"],
        "goals_chosen": chosen,
        "options_ended": ended,
        "options_succeeded": successes,
        "option_length": off_policy.masked_mean(steps.astype(jnp.float32), option_done),
    }
    return state, record


def update(spec: Spec, state: State, key: jax.Array) -> tuple[State, dict[str, jax.Array]]:
    """One update of each learner (once learning has started)."""
    k_meta, k_controller = jax.random.split(key)
    meta, meta_stats, _ = q_learning.maybe_update(
        spec.meta, state.meta, state.meta_buffer, k_meta, state.env_steps, state.hparams)
    controller, controller_stats, _ = q_learning.maybe_update(
        spec.controller, state.controller, state.controller_buffer, k_controller, state.env_steps, state.hparams)
    stats = {f"{name}_{k}": s[k] for name, s in (("meta", meta_stats), ("controller", controller_stats))
             for k in ("loss", "q_mean")}
    return state.replace(meta=meta, controller=controller), stats


def step(spec: Spec, state: State) -> tuple[State, dict[str, jax.Array]]:
    """``rollout_len`` env steps of every env, then ``updates_per_step`` updates of each learner."""
    config = spec.config
    state, record, metrics = q_learning.rollout_then_update(
        state, functools.partial(env_step, spec), functools.partial(update, spec),
        config.rollout_len, config.updates_per_step)
    metrics.update(**off_policy.episode_metrics(record["return"], record["done"]),
                   meta_epsilon=meta_epsilon(state))
    chosen = record["goals_chosen"].sum(axis=0)
    ended = record["options_ended"].sum(axis=0)
    succeeded = record["options_succeeded"].sum(axis=0)
    controller_eps = controller_epsilon(state.goal_stats, state.hparams)
    for g, name in enumerate(spec.goals.names):
        metrics[f"goal_{name}_chosen"] = chosen[g]
        metrics[f"goal_{name}_reached"] = succeeded[g]
        metrics[f"goal_{name}_success_rate"] = state.goal_stats.success_rate[g]
        metrics[f"goal_{name}_epsilon"] = controller_eps[g]
    metrics["options_ended"] = ended.sum()
    state = state.replace(iteration=state.iteration + 1)
    return state, off_policy.as_float32(metrics)


def policy_params(state: State):
    """Both networks' parameters: what :func:`act` and :func:`run_episodes` need."""
    return {"meta": state.meta.params, "controller": state.controller.params}


def act(spec: Spec, params, obs: jax.Array, key: jax.Array, deterministic: bool = False, goal=None) -> jax.Array:
    """The controller's action toward ``goal`` (default: the meta-controller's
    greedy goal for ``obs``, i.e. re-chosen every step); greedy if
    ``deterministic``, else ε = 0.05. Options that persist across steps are
    what :func:`evaluate` (via :func:`run_episodes`) runs."""
    obs = spec.flat(obs)
    if goal is None:
        goal = jnp.argmax(spec.meta.apply(params["meta"], obs), axis=-1)
    q = spec.controller.apply(params["controller"], spec.controller_x(obs, goal))
    return jnp.argmax(q, axis=-1).astype(jnp.int32) if deterministic else epsilon_greedy(key, q, 0.05)


def run_episodes(spec: Spec, params, key: jax.Array, num_episodes: int, epsilon: float = 0.0, max_steps=None):
    """:func:`jaxrl.agents.goals.option_episodes` of this agent's networks:
    ``(returns [N], goals chosen [N, G], goals reached [N, G], observation sums [N, D])``."""
    return goals_lib.option_episodes(
        spec.env, spec.env_params, spec.goals, spec.meta.apply, spec.controller.apply,
        spec.config.max_option_steps, params, key, num_episodes, epsilon, max_steps,
        controller_x=spec.controller_x)


def evaluate(spec: Spec, state: State, key: jax.Array, num_episodes: int) -> jax.Array:
    """Returns of ``num_episodes`` greedy hierarchical episodes."""
    return run_episodes(spec, policy_params(state), key, num_episodes)[0]


def make(env, env_params, config: Config = Config(), goals: GoalSpec | None = None) -> Agent:
    """Binds h-DQN to a discrete-action environment with goals (declared by the
    env or given as ``goals``). Validates everything before tracing."""
    spec = make_spec(env, env_params, config, goals)
    agent = base.bind("hdqn", spec, env, env_params, init=init, step=step, act=act,
                      evaluate=evaluate, policy_params=policy_params,
                      env_steps_per_step=config.num_envs * config.rollout_len)
    # Not part of the Agent protocol: option-level rollouts for analysis.
    object.__setattr__(agent, "run_episodes", functools.partial(run_episodes, spec))
    return agent
