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
the DQN pieces of :mod:`jaxrl.agents.dqn` (Huber loss, Double-DQN targets
switchable, hard or soft target updates) with separate replay buffers.

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
:class:`HParams` like every other agent.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxrl import envs, ops, replay
from jaxrl.agents.base import Agent, AgentConfig, config_requirer
from jaxrl.agents.dqn import (
    TARGET_UPDATES,
    QNetwork,
    epsilon_greedy,
    hidden_layer_sizes,
    linear_epsilon,
    masked_mean,
    q_loss,
    soft_update,
)
from jaxrl.config import field, hparams_class, non_negative, one_of, positive, unit_interval
from jaxrl.networks import ACTIVATIONS
from jaxrl.ops.counters import StepCounter

ACTION_SPACES = ("discrete",)


class GoalSpec(NamedTuple):
    """An environment's goals: names (their number is static) and the critic's test."""

    names: tuple[str, ...]
    reached: Callable[[jax.Array, jax.Array], jax.Array]
    """``reached(obs, goal) -> bool`` for one observation and an int goal."""


def goal_spec(env) -> GoalSpec:
    """The :class:`GoalSpec` an environment declares (``goal_names``, ``goal_reached``)."""
    inner = getattr(env, "unwrapped", env)
    names = getattr(inner, "goal_names", None)
    reached = getattr(inner, "goal_reached", None)
    if not names or not callable(reached):
        name = getattr(inner, "name", type(inner).__name__)
        raise ValueError(
            f"algorithm 'hdqn' needs an environment with goals (goal_names and goal_reached), "
            f"but {name!r} declares none; use DecisionProcess-v0 or KeyDoor-v0, or pass "
            f"hdqn.make(..., goals=hdqn.GoalSpec(names, reached))"
        )
    return GoalSpec(tuple(names), reached)


@dataclasses.dataclass(frozen=True)
class Config(AgentConfig):
    """h-DQN settings. ε schedules follow the paper (1 → 0.1 over 5·10⁴ steps,
    Adam instead of RMSProp at the paper's 2.5e-4 is too slow for these small
    tasks, so 1e-3)."""

    num_envs: int = field(8, check=positive)
    """Parallel environments (vmapped), each with its own current option."""
    rollout_len: int = field(1, check=positive)
    """Environment steps per environment per iteration."""
    updates_per_step: int = field(1, check=positive)
    """Updates of each learner per iteration once learning has started."""
    batch_size: int = field(32, check=positive)
    """Minibatch size of both learners."""
    controller_buffer_size: int = field(50_000, check=positive)
    """Replay capacity of the controller (one transition per env step)."""
    meta_buffer_size: int = field(10_000, check=positive)
    """Replay capacity of the meta-controller (one transition per option)."""
    learning_starts: int = field(1_000, check=non_negative)
    """Env steps (over all envs) before the first update."""
    total_steps: int = field(200_000, check=positive)
    """Env steps of the run (informational for the CLI; schedules use the fields below)."""
    learning_rate: float = field(1e-3, check=positive, swept=True)
    """Adam step size of both learners."""
    meta_gamma: float = field(0.99, check=unit_interval, swept=True)
    """Discount per option of the meta-controller."""
    controller_gamma: float = field(0.99, check=unit_interval, swept=True)
    """Discount per step of the controller."""
    double_dqn: bool = True
    """Double-DQN targets for both learners."""
    target_update: str = field("hard", check=one_of(*TARGET_UPDATES))
    """Target networks: hard (copy every target_update_period updates) | soft (tau)."""
    target_update_period: int = field(100, check=positive)
    """Updates between hard target copies."""
    tau: float = field(0.005, check=unit_interval, swept=True)
    """Soft target update rate."""
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
    max_grad_norm: float = field(10.0, check=positive, swept=True)
    """Global gradient-norm bound."""
    hidden_sizes: tuple[int, ...] = field((64, 64), check=hidden_layer_sizes)
    """Hidden layers of both Q networks (empty: linear, tabular on one-hot observations)."""
    activation: str = field("relu", check=one_of(*ACTIVATIONS))
    """Hidden activation: tanh | relu | elu | gelu | silu | leaky_relu."""

    def validate(self) -> None:
        """Raises ValueError naming the first field whose value is not allowed."""
        super().validate()
        require = config_requirer(self)
        for name in ("controller_buffer_size", "meta_buffer_size"):
            require(getattr(self, name) >= self.num_envs, name, f"at least num_envs = {self.num_envs}")


# The swept fields of Config. Every step reads them from the state: a value
# changed between steps applies from the next update on.
HParams = hparams_class(Config)


@struct.dataclass
class Learner:
    """One Q-learner: online and target parameters, optimiser, update count."""

    params: Any
    target_params: Any
    opt_state: optax.OptState
    updates: jax.Array


@struct.dataclass
class Options:
    """Per-env option bookkeeping ``[B, ...]``."""

    goal: jax.Array
    start_obs: jax.Array
    extrinsic_return: jax.Array
    """F: extrinsic reward summed since the option started."""
    steps: jax.Array
    needs_goal: jax.Array
    """The previous option ended: the meta-controller picks before acting."""


@struct.dataclass
class GoalStats:
    """Per-goal statistics ``[G]``: options that pursued each goal and their running success rate."""

    attempts: jax.Array
    success_rate: jax.Array


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


def controller_input(obs: jax.Array, goal: jax.Array, num_goals: int) -> jax.Array:
    """``concat(obs ⊗ onehot(g), onehot(g))`` for ``[..., D]`` flat observations."""
    goal_one_hot = jax.nn.one_hot(goal, num_goals, dtype=jnp.float32)
    gated = (obs[..., :, None] * goal_one_hot[..., None, :]).reshape(obs.shape[:-1] + (-1,))
    return jnp.concatenate([gated, goal_one_hot], axis=-1)


def controller_epsilon(stats: GoalStats, hp: HParams) -> jax.Array:
    """ε₁,g per goal ``[G]`` (see the module docstring)."""
    by_count = 1.0 - stats.attempts * hp.controller_epsilon_decay
    by_success = 1.0 - stats.success_rate
    return jnp.clip(jnp.minimum(by_count, by_success), hp.epsilon_end, 1.0)


def make(env, env_params, config: Config = Config(), goals: GoalSpec | None = None) -> Agent:
    """Binds h-DQN to a discrete-action environment with goals (declared by the
    env or given as ``goals``). Validates everything before tracing."""
    config.validate()
    envs.validate_env_for(ACTION_SPACES, getattr(env, "name", type(env).__name__), env, env_params, "hdqn")
    goals = goal_spec(env) if goals is None else goals
    num_goals = len(goals.names)
    obs_shape = envs.observation_shape(env, env_params)
    obs_dim = max(1, math.prod(obs_shape))
    num_actions = envs.num_actions(env, env_params)
    num_envs = config.num_envs
    hidden = tuple(config.hidden_sizes)

    meta_net = QNetwork(num_goals, hidden, config.activation)
    controller_net = QNetwork(num_actions, hidden, config.activation)
    flat = lambda obs: jnp.asarray(obs, jnp.float32).reshape(obs.shape[: obs.ndim - len(obs_shape)] + (obs_dim,))
    meta_q = lambda params, obs: meta_net.apply(params, obs)
    controller_q = lambda params, x: controller_net.apply(params, x)
    goal_reached = jax.vmap(goals.reached)

    train_env = envs.BatchEnv(envs.EpisodeStats(env), num_envs)
    optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=1.0)
    controller_dim = obs_dim * num_goals + num_goals

    def new_learner(key, network, input_dim, learning_rate) -> Learner:
        params = network.init(key, jnp.zeros((input_dim,), jnp.float32))
        opt_state = ops.with_learning_rate(optimizer.init(params), learning_rate)
        return Learner(params=params, target_params=params, opt_state=opt_state, updates=jnp.zeros((), jnp.int32))

    def empty_buffer(input_dim, capacity):
        example = replay.Transition(
            obs=jnp.zeros((input_dim,), jnp.float32),
            action=jnp.zeros((), jnp.int32),
            reward=jnp.zeros((), jnp.float32),
            discount=jnp.zeros((), jnp.float32),
            next_obs=jnp.zeros((input_dim,), jnp.float32),
        )
        return replay.uniform.init(example, capacity)

    def init(key: jax.Array, hparams: HParams | None = None) -> State:
        hparams = config.hparams() if hparams is None else hparams
        key, k_meta, k_controller, k_env = jax.random.split(key, 4)
        obs, env_state = train_env.reset(k_env, env_params)
        obs = flat(obs)
        return State(
            meta=new_learner(k_meta, meta_net, obs_dim, hparams.learning_rate),
            controller=new_learner(k_controller, controller_net, controller_dim, hparams.learning_rate),
            meta_buffer=empty_buffer(obs_dim, config.meta_buffer_size),
            controller_buffer=empty_buffer(controller_dim, config.controller_buffer_size),
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
        hp = state.hparams
        return linear_epsilon(state.env_steps, hp.meta_epsilon_start, hp.epsilon_end, hp.meta_exploration_steps)

    def choose_goals(state: State, key: jax.Array) -> tuple[Options, jax.Array]:
        """New goals where the previous option ended; the rest keep theirs."""
        opts = state.options
        picked = epsilon_greedy(key, meta_q(state.meta.params, state.obs), meta_epsilon(state))
        new = opts.needs_goal
        opts = Options(
            goal=jnp.where(new, picked, opts.goal),
            start_obs=jnp.where(new[:, None], state.obs, opts.start_obs),
            extrinsic_return=jnp.where(new, 0.0, opts.extrinsic_return),
            steps=jnp.where(new, 0, opts.steps),
            needs_goal=jnp.zeros_like(new),
        )
        chosen = jax.nn.one_hot(opts.goal, num_goals) * new[:, None].astype(jnp.float32)
        return opts, chosen.sum(axis=0)

    def env_step(state: State, _):
        hp = state.hparams
        rng, k_goal, k_act, k_env = jax.random.split(state.rng, 4)
        opts, chosen = choose_goals(state, k_goal)
        goal_stats = state.goal_stats.replace(attempts=state.goal_stats.attempts + chosen)

        x = controller_input(state.obs, opts.goal, num_goals)
        eps = controller_epsilon(goal_stats, hp)[opts.goal]
        action = epsilon_greedy(k_act, controller_q(state.controller.params, x), eps)
        next_obs, env_state, reward, terminated, truncated, info = train_env.step(
            k_env, state.env_state, action, env_params
        )
        final_obs = flat(info["final_observation"])
        next_obs = flat(next_obs)
        reached = goal_reached(final_obs, opts.goal)

        # The internal critic: reward 1 on reaching the goal, which ends the
        # controller's sub-episode; an option time-out does not.
        controller_transition = replay.Transition(
            obs=x,
            action=action,
            reward=reached.astype(jnp.float32),
            discount=hp.controller_gamma * (1.0 - (reached | terminated).astype(jnp.float32)),
            next_obs=controller_input(final_obs, opts.goal, num_goals),
        )
        extrinsic_return = opts.extrinsic_return + reward.astype(jnp.float32)
        steps = opts.steps + 1
        option_done = reached | terminated | truncated | (steps >= config.max_option_steps)
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
            obs=next_obs,
            rng=rng,
            env_steps=state.env_steps.add(num_envs),
        )
        record = {
            "done": info["episode_done"],
            "return": info["episode_return"],
            "goals_chosen": chosen,
            "options_ended": ended,
            "options_succeeded": successes,
            "option_length": masked_mean(steps.astype(jnp.float32), option_done),
        }
        return state, record

    def learn(learner: Learner, batch: replay.Transition, apply_fn, hp: HParams):
        grads, stats = jax.grad(q_loss, has_aux=True)(
            learner.params, learner.target_params, apply_fn, batch, hp, config.double_dqn
        )
        grads = ops.clip_by_global_norm(grads, hp.max_grad_norm)
        # Read every update, so a learning rate changed in the state applies at once.
        opt_state = ops.with_learning_rate(learner.opt_state, hp.learning_rate)
        updates, opt_state = optimizer.update(grads, opt_state, learner.params)
        params = optax.apply_updates(learner.params, updates)
        n_updates = learner.updates + 1
        if config.target_update == "soft":
            target_params = soft_update(learner.target_params, params, hp.tau)
        else:
            copy = (n_updates % config.target_update_period) == 0
            target_params = jax.tree.map(lambda t, o: jnp.where(copy, o, t), learner.target_params, params)
        return Learner(params=params, target_params=target_params, opt_state=opt_state, updates=n_updates), stats

    def maybe_learn(learner: Learner, buffer, key, apply_fn, state: State):
        ready = state.env_steps.at_least(config.learning_starts) & replay.uniform.can_sample(buffer, config.batch_size)
        batch = replay.uniform.sample(buffer, key, config.batch_size)
        skip = lambda learner, batch: (learner, {"loss": jnp.float32(0), "q_mean": jnp.float32(0)})
        return jax.lax.cond(ready, lambda l, b: learn(l, b, apply_fn, state.hparams), skip, learner, batch)

    def update(state: State, key: jax.Array):
        k_meta, k_controller = jax.random.split(key)
        meta, meta_stats = maybe_learn(state.meta, state.meta_buffer, k_meta, meta_q, state)
        controller, controller_stats = maybe_learn(
            state.controller, state.controller_buffer, k_controller, controller_q, state
        )
        stats = {f"meta_{k}": v for k, v in meta_stats.items()}
        stats.update({f"controller_{k}": v for k, v in controller_stats.items()})
        return state.replace(meta=meta, controller=controller), stats

    def step(state: State) -> tuple[State, dict[str, jax.Array]]:
        state, record = jax.lax.scan(env_step, state, length=config.rollout_len)
        rng, *k_updates = jax.random.split(state.rng, 1 + config.updates_per_step)
        state = state.replace(rng=rng)
        state, stats = jax.lax.scan(update, state, jnp.stack(k_updates))
        done = record["done"]
        metrics = {k: v.mean() for k, v in stats.items()}
        metrics.update(
            episode_return=masked_mean(record["return"], done),
            episodes_completed=done.sum(),
            meta_epsilon=meta_epsilon(state),
        )
        chosen = record["goals_chosen"].sum(axis=0)
        ended = record["options_ended"].sum(axis=0)
        succeeded = record["options_succeeded"].sum(axis=0)
        controller_eps = controller_epsilon(state.goal_stats, state.hparams)
        for g, name in enumerate(goals.names):
            metrics[f"goal_{name}_chosen"] = chosen[g]
            metrics[f"goal_{name}_reached"] = succeeded[g]
            metrics[f"goal_{name}_success_rate"] = state.goal_stats.success_rate[g]
            metrics[f"goal_{name}_epsilon"] = controller_eps[g]
        metrics["options_ended"] = ended.sum()
        state = state.replace(iteration=state.iteration + 1)
        return state, jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), metrics)

    def policy_params(state: State):
        return {"meta": state.meta.params, "controller": state.controller.params}

    def act(params, obs: jax.Array, key: jax.Array, deterministic: bool = False, goal=None) -> jax.Array:
        """The controller's action toward ``goal`` (default: the meta-controller's
        greedy goal for ``obs``, i.e. re-chosen every step); greedy if
        ``deterministic``, else ε = 0.05. Options that persist across steps are
        what :func:`evaluate` (via :func:`run_episodes`) runs."""
        obs = flat(jnp.asarray(obs, jnp.float32))
        if goal is None:
            goal = jnp.argmax(meta_q(params["meta"], obs), axis=-1)
        q = controller_q(params["controller"], controller_input(obs, goal, num_goals))
        return jnp.argmax(q, axis=-1).astype(jnp.int32) if deterministic else epsilon_greedy(key, q, 0.05)

    def run_episodes(params, key: jax.Array, num_episodes: int, epsilon: float = 0.0, max_steps=None):
        """First episodes of ``num_episodes`` envs under the hierarchical
        policy (options kept across steps; ε-greedy at both levels with
        ``epsilon``). Returns ``(returns [N], goals chosen [N, G], goals
        reached [N, G], observation sums [N, D])``; the last is the sum of the
        observations arrived at, i.e. visit counts for one-hot observations."""
        max_steps = int(env_params.max_steps_in_episode) + 1 if max_steps is None else max_steps
        k_reset, key = jax.random.split(key)
        obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_reset, num_episodes), env_params)
        obs = flat(obs)
        zeros_g = jnp.zeros((num_episodes, num_goals), jnp.float32)
        carry = (obs, env_state, jnp.zeros((num_episodes,), jnp.int32), jnp.zeros((num_episodes,), jnp.int32),
                 jnp.ones((num_episodes,), bool), jnp.zeros((num_episodes,), bool),
                 jnp.zeros((num_episodes,), jnp.float32), zeros_g, zeros_g,
                 jnp.zeros((num_episodes, obs_dim), jnp.float32))

        def one_step(carry, key):
            obs, env_state, goal, steps, needs_goal, finished, returns, chosen, reached_counts, visits = carry
            k_goal, k_act, k_env = jax.random.split(key, 3)
            picked = epsilon_greedy(k_goal, meta_q(params["meta"], obs), epsilon)
            goal = jnp.where(needs_goal, picked, goal)
            steps = jnp.where(needs_goal, 0, steps)
            running = (~finished).astype(jnp.float32)
            chosen = chosen + jax.nn.one_hot(goal, num_goals) * (needs_goal * running)[:, None]
            q = controller_q(params["controller"], controller_input(obs, goal, num_goals))
            action = epsilon_greedy(k_act, q, epsilon)
            next_obs, env_state, reward, terminated, truncated, info = jax.vmap(
                env.step, in_axes=(0, 0, 0, None)
            )(jax.random.split(k_env, num_episodes), env_state, action, env_params)
            arrived = flat(info["final_observation"])
            reached = goal_reached(arrived, goal)
            visits = visits + arrived * running[:, None]
            reached_counts = reached_counts + jax.nn.one_hot(goal, num_goals) * (reached * running)[:, None]
            returns = returns + reward * running
            steps = steps + 1
            needs_goal = reached | terminated | truncated | (steps >= config.max_option_steps)
            finished = finished | terminated | truncated
            return (flat(next_obs), env_state, goal, steps, needs_goal, finished, returns, chosen,
                    reached_counts, visits), None

        carry, _ = jax.lax.scan(one_step, carry, jax.random.split(key, max_steps))
        return carry[6], carry[7], carry[8], carry[9]

    def evaluate(state: State, key: jax.Array, num_episodes: int) -> jax.Array:
        return run_episodes(policy_params(state), key, num_episodes)[0]

    agent = Agent(
        name="hdqn",
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
    # Not part of the Agent protocol: option-level rollouts for analysis.
    object.__setattr__(agent, "run_episodes", run_episodes)
    return agent
