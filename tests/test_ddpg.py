"""DDPG and D4PG: probe environments with known answers (actor optimum,
discounting, bootstrapping through time limits), seeds, vmapped sweeps,
config and action-space errors, and Pendulum-v1 learning runs (`slow`)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import spaces

from jaxrl import envs, replay
from jaxrl.agents import d4pg, ddpg
from jaxrl.run import experiment


class ContinuousActions(envs.Wrapper):
    """A one-action probe presented with a Box[-1, 1] action space, whose
    action is ignored: the value probes then test a continuous agent's critic."""

    def action_space(self, params=None):
        return spaces.Box(-1.0, 1.0, (1,), jnp.float32)

    def step(self, key, state, action, params=None):
        return self._env.step(key, state, jnp.int32(0), params)


class RewardPlusOne(envs.Wrapper):
    """Probe-ContinuousAction-v0 with reward 1 − (a − 0.5)²: Q(0, a) is then
    1 − (a − 0.5)² only if the critic does not bootstrap past the terminal
    step (bootstrapping would give 1/(1 − γ) at the optimum)."""

    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self._env.step(key, state, action, params)
        return obs, state, reward + 1.0, terminated, truncated, info


def probe_env(env_id):
    if env_id == "Probe-ContinuousActionPlusOne":
        env, env_params = envs.make("Probe-ContinuousAction-v0")
        return RewardPlusOne(env), env_params
    env, env_params = envs.make(env_id)
    if envs.action_space_kind(env, env_params) == "discrete":
        env = ContinuousActions(env)
    return env, env_params


# Small nets, a short warm-up and fast target updates: probes answer in a few
# hundred updates.
PROBE_CONFIG = dict(
    num_envs=8,
    updates_per_step=2,
    batch_size=64,
    buffer_size=1024,
    warmup_steps=64,
    actor_learning_rate=3e-3,
    critic_learning_rate=3e-3,
    tau=0.1,
    noise_std=0.3,
    hidden_sizes=(32, 32),
    gamma=0.9,
)


def make_agent(module, env_id, **overrides):
    env, env_params = probe_env(env_id)
    return module.make(env, env_params, module.Config(**{**PROBE_CONFIG, **overrides}))


def train(agent, iterations):
    """``run(key, hparams)``: a whole run as one jitted, vmapped XLA program."""

    def run(key, hparams):
        state = agent.init(key, hparams)
        return jax.lax.scan(lambda s, _: agent.step(s), state, length=iterations)

    return jax.jit(jax.vmap(run))


def stacked_hparams(agent, n, **values):
    hp = jax.tree.map(lambda x: jnp.full((n,), x), agent.default_hparams())
    return hp.replace(**{k: jnp.asarray(v, jnp.float32) for k, v in values.items()})


def q_value(agent, state, obs, action):
    """Q(s, a) of one (unbatched) agent state: the scalar critic's output, or
    the mean of the categorical critic's distribution."""
    obs = jnp.asarray(obs, jnp.float32)
    action = jnp.asarray(action, jnp.float32)
    if agent.name == "d4pg":
        atoms, probs = d4pg.return_distribution(agent, state, obs, action)
        return jnp.sum(atoms * probs)
    config = agent.config
    critic = ddpg.Critic(1, tuple(config.hidden_sizes), config.activation)
    return critic.apply(state.critic_params, obs, action)[0]


def unstack(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


def greedy_action(agent, state, obs):
    params = agent.policy_params(state)
    return agent.act(params, jnp.asarray(obs, jnp.float32), jax.random.PRNGKey(0), deterministic=True)


# --------------------------------------------------------------------------- DDPG probes


@pytest.fixture(scope="module")
def action_probe_run():
    """DDPG on the one-step probe with reward 1 − (a − 0.5)², seeds 0, 1, 0."""
    agent = make_agent(ddpg, "Probe-ContinuousActionPlusOne")
    iterations = 400
    keys = jnp.stack([jax.random.PRNGKey(0), jax.random.PRNGKey(1), jax.random.PRNGKey(0)])
    states, metrics = train(agent, iterations)(keys, stacked_hparams(agent, 3))
    return agent, iterations, states, metrics


def test_ddpg_actor_finds_the_optimal_action(action_probe_run):
    agent, _, states, _ = action_probe_run
    for i in range(2):
        state = unstack(states, i)
        action = float(greedy_action(agent, state, [0.0])[0])
        # The actor keeps moving with the critic's fit: within 0.1 of a* = 0.5
        # (it starts near 0).
        assert abs(action - 0.5) < 0.1, action
        # Q(0, a) = 1 − (a − 0.5)²: one-step episodes, no bootstrap past termination.
        np.testing.assert_allclose(q_value(agent, state, [0.0], [0.5]), 1.0, atol=0.05)
        # Near the policy, where the replayed actions are: Q(0, 0.2) = 1 − 0.3².
    np.testing.assert_allclose(q_value(agent, state, [0.0], [0.2]), 0.91, atol=0.05)




def test_ddpg_warms_up_then_updates_per_step(action_probe_run):
    agent, iterations, states, metrics = action_probe_run
    config = agent.config
    warmup_iterations = config.warmup_steps // config.num_envs
    learning = np.asarray(metrics["learning"][0])
    # Random actions for warmup_steps env steps; the first update follows the
    # step that completes them, then updates_per_step every step.
    assert learning[: warmup_iterations - 1].sum() == 0
    assert learning[warmup_iterations - 1 :].min() == 1.0
    expected = (iterations - warmup_iterations + 1) * config.updates_per_step
    assert int(states.updates[0]) == expected
    assert int(states.env_steps[0]) == iterations * config.num_envs
    assert int(states.buffer.size[0]) == min(iterations * config.num_envs, config.buffer_size)


def test_ddpg_metrics_are_flat_float_scalars(action_probe_run):
    _, iterations, _, metrics = action_probe_run
    for name, value in metrics.items():
        assert value.shape == (3, iterations) and value.dtype == jnp.float32, name
    assert {"critic_loss", "actor_loss", "q_mean", "episode_return", "episodes_completed"} <= set(metrics)
    # Episodes last one step: every env completes one per step.
    np.testing.assert_array_equal(metrics["episodes_completed"][0], PROBE_CONFIG["num_envs"])


def check_truncation_values_in_a_gamma_sweep(agent, seed):
    """Trains ``agent`` on Probe-Truncation-v0 at γ = 0.5 and 0.8 in one vmap
    and checks Q([0], [0]) = 1/(1 − γ) for each; returns the states and metrics."""
    gammas = [0.5, 0.8]
    keys = jax.random.split(jax.random.PRNGKey(seed), 2)
    states, metrics = train(agent, 250)(keys, stacked_hparams(agent, 2, gamma=gammas))
    for i, gamma in enumerate(gammas):
        q = float(q_value(agent, unstack(states, i), [0.0], [0.0]))
        np.testing.assert_allclose(q, 1.0 / (1.0 - gamma), rtol=0.05)
    return states, metrics


def test_ddpg_bootstraps_through_time_limits_in_a_gamma_sweep():
    """Probe-Truncation-v0: reward 1 forever, cut at 5 steps. Only bootstrapping
    from the final observation gives Q = 1/(1 − γ); treating the time limit
    as terminal would give at most (1 − γ⁵)/(1 − γ). γ is swept in one vmap;
    this run also takes the OU-noise and prioritised-replay paths."""
    agent = make_agent(ddpg, "Probe-Truncation-v0", noise="ou", prioritized=True)
    states, metrics = check_truncation_values_in_a_gamma_sweep(agent, seed=3)
    assert np.isfinite(np.asarray(metrics["critic_loss"])).all()
    # Priorities were written back: the stored items no longer share the initial one.
    buffer = unstack(states.buffer, 1)
    leaves = np.asarray(buffer.sum_tree[buffer.num_leaves :][: int(buffer.size)])
    assert leaves.min() > 0 and leaves.std() > 0


def test_critic_loss_on_a_hand_made_transition():
    """DDPG's steps are usable outside ``make``: with Γ = 0 the target is the
    reward, so the loss is ½(Q − r)² and the priority |r − Q|."""
    env, env_params = envs.make("Pendulum-v1")
    spec = ddpg.make_spec("ddpg", env, env_params, ddpg.Config(buffer_size=16, hidden_sizes=(8,)),
                          ddpg.SCALAR_CRITIC)
    state = ddpg.init(spec, jax.random.PRNGKey(0))
    obs = jax.random.normal(jax.random.PRNGKey(1), (4, 3))
    batch = replay.Transition(obs=obs, action=jnp.full((4, 1), 0.5), reward=jnp.arange(4.0),
                              discount=jnp.zeros(4), next_obs=obs)
    total, (loss, priority, q) = ddpg.critic_loss(spec, state.critic_params, state, batch, jnp.ones(4))
    np.testing.assert_allclose(loss, np.mean(0.5 * (np.asarray(q) - np.arange(4.0)) ** 2), rtol=1e-6)
    np.testing.assert_allclose(priority, np.abs(np.arange(4.0) - np.asarray(q)), rtol=1e-6)
    assert float(total) == float(loss)  # no weight decay by default
    trained, _, stats = ddpg.learn(spec, state, batch, jnp.ones(4))
    assert int(trained.updates) == 1 and float(stats["critic_loss"]) == float(loss)


# --------------------------------------------------------------------------- D4PG probes


def test_d4pg_n_step_categorical_critic_bootstraps_through_time_limits():
    """D4PG (3-step returns, prioritised replay, categorical critic on
    [0, 12]) on Probe-Truncation-v0: the mean of Z([0]) is 1/(1 − γ) for each
    γ of a sweep, which needs the n-step target R + γⁿ·Z'(s') to bootstrap
    from the final observation at the time limit."""
    agent = make_agent(d4pg, "Probe-Truncation-v0", n_step=3, v_min=0.0, v_max=12.0, num_atoms=51)
    check_truncation_values_in_a_gamma_sweep(agent, seed=5)


def test_d4pg_actor_finds_the_optimal_action():
    """The one-step probe with reward 1 − (a − 0.5)²: μ(0) = 0.5 and the
    return distribution at (0, μ(0)) concentrates on 1 (5-step returns stop
    at the terminal step)."""
    agent = make_agent(d4pg, "Probe-ContinuousActionPlusOne", v_min=-1.0, v_max=2.0)
    states, _ = train(agent, 400)(jax.random.split(jax.random.PRNGKey(6), 1), stacked_hparams(agent, 1))
    state = unstack(states, 0)
    assert abs(float(greedy_action(agent, state, [0.0])[0]) - 0.5) < 0.1
    atoms, probs = d4pg.return_distribution(agent, state, jnp.zeros(1))
    assert atoms.shape == probs.shape == (51,)
    np.testing.assert_allclose(probs.sum(), 1.0, rtol=1e-5)
    np.testing.assert_allclose(jnp.sum(atoms * probs), 1.0, atol=0.05)
    # Near the policy, where the replayed actions are: Q(0, 0.2) = 1 − 0.3².
    np.testing.assert_allclose(q_value(agent, state, [0.0], [0.2]), 0.91, atol=0.05)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("module", [ddpg, d4pg])
def test_discrete_action_envs_are_rejected_with_a_clear_message(module):
    env, env_params = envs.make("CartPole-v1")
    with pytest.raises(ValueError, match="continuous .*action spaces only.*CartPole-v1"):
        module.make(env, env_params, module.Config())
    # The CLI's check, before the agent is built.
    with pytest.raises(ValueError, match="supports continuous actions only"):
        experiment.check_env_for(module, module.__name__.rsplit(".", 1)[-1], "CartPole-v1", env, env_params)


@pytest.mark.parametrize(
    "module, field, value",
    [
        (ddpg, "num_envs", 0),
        (ddpg, "batch_size", -1),
        (ddpg, "tau", 1.5),
        (ddpg, "gamma", -0.1),
        (ddpg, "noise", "pink"),
        (ddpg, "n_step", 0),
        (ddpg, "buffer_size", 0),
        (d4pg, "num_atoms", 1),
        (d4pg, "v_min", 200.0),
    ],
)
def test_config_errors_name_the_field(module, field, value):
    env, env_params = envs.make("Pendulum-v1")
    algo = module.__name__.rsplit(".", 1)[-1]
    with pytest.raises(ValueError, match=rf"{algo}\.Config\.{field}="):
        module.make(env, env_params, dataclasses.replace(module.Config(), **{field: value}))


def test_d4pg_defaults_follow_the_paper():
    config = d4pg.Config()
    assert (config.num_atoms, config.n_step, config.prioritized) == (51, 5, True)
    assert config.num_envs > 1
    assert config.v_min is None and config.v_max is None  # derived from the environment


PENDULUM_WORST_REWARD = np.pi**2 + 0.1 * 8.0**2 + 0.001 * 2.0**2  # θ = π, |θ̇| = 8, |u| = 2


@pytest.mark.parametrize(
    "env_id, env_kwargs, overrides, expected",
    [
        ("Pendulum-v1", {}, {}, (-PENDULUM_WORST_REWARD / 0.01, 0.0)),
        ("Pendulum-v1", {}, {"gamma": 0.9}, (-PENDULUM_WORST_REWARD / 0.1, 0.0)),
        ("Pendulum-v1", {"max_speed": 4.0}, {}, (-(np.pi**2 + 1.6 + 0.004) / 0.01, 0.0)),
        ("MountainCarContinuous-v0", {}, {}, (-0.1 / 0.01, 100.0)),
        ("MountainCarContinuous-v0", {"max_action": 2.0}, {"gamma": 0.5}, (-0.4 / 0.5, 100.0)),
        ("Pendulum-v1", {}, {"v_min": -1000.0, "v_max": 0.0}, (-1000.0, 0.0)),  # given: kept
        ("Pendulum-v1", {}, {"v_min": -500.0}, (-500.0, 0.0)),
        ("Swimmer-misc", {}, {"v_min": -3.0, "v_max": 7.0}, (-3.0, 7.0)),
    ],
)
def test_d4pg_support_is_derived_from_the_environment(env_id, env_kwargs, overrides, expected):
    """The default support covers every discounted return the task allows:
    the paper's [−150, 150] would clip Pendulum's values, which reach −1627."""
    env, env_params = envs.make(env_id, **env_kwargs)
    agent = d4pg.make(env, env_params, d4pg.Config(**overrides))
    np.testing.assert_allclose((agent.config.v_min, agent.config.v_max), expected, rtol=1e-6)
    atoms = d4pg.support(agent.config)
    np.testing.assert_allclose((atoms[0], atoms[-1]), expected, rtol=1e-6)


@pytest.mark.parametrize(
    "env_id, wrap, overrides, message",
    [
        ("Swimmer-misc", False, {}, r"v_min=None .*'Swimmer-misc'.*set v_min and v_max"),
        ("Reacher-misc", False, {"v_min": -10.0}, r"v_max=None .*'Reacher-misc'.*set v_min and v_max"),
        ("PointRobot-misc", False, {"v_max": 10.0}, r"v_min=None .*set v_min and v_max"),
        ("Probe-ContinuousAction-v0", False, {}, r"v_min=None .*set v_min and v_max"),
        ("Pendulum-v1", True, {}, r"v_min=None .*unwrapped Pendulum-v1.*set v_min and v_max"),
        ("Pendulum-v1", False, {"gamma": 1.0}, r"v_min=None .*gamma=1.0.*set v_min and v_max"),
        ("Pendulum-v1", False, {"v_min": 5.0}, r"v_min=5.0 is invalid: .*below the v_max = 0.0 derived for 'Pendulum-v1'"),
        ("MountainCarContinuous-v0", False, {"v_max": -20.0}, r"v_max=-20.0 is invalid: .*above the v_min = -10.0"),
    ],
)
def test_d4pg_support_that_cannot_be_derived_names_what_to_set(env_id, wrap, overrides, message):
    env, env_params = envs.make(env_id)
    if wrap:  # a wrapper may change the rewards: the table no longer applies
        env = RewardPlusOne(env)
    with pytest.raises(ValueError, match=rf"^d4pg\.Config\.{message}"):
        d4pg.make(env, env_params, d4pg.Config(**overrides))


# --------------------------------------------------------------------------- learning


def evaluate_seeds(agent, states, num_episodes=10):
    keys = jax.random.split(jax.random.PRNGKey(100), len(states.iteration))
    return np.asarray(jax.jit(jax.vmap(lambda s, k: agent.evaluate(s, k, num_episodes)))(states, keys))


PENDULUM_SMALL = dict(hidden_sizes=(64, 64), batch_size=128, warmup_steps=1000, buffer_size=20_000)


@pytest.mark.slow
def test_ddpg_learns_pendulum():
    """Mean evaluation return (50 episodes) ≥ −200 on Pendulum-v1 after 12k env steps (1 env,
    one update per step), seeds 0 and 1 in one vmap."""
    env, env_params = envs.make("Pendulum-v1")
    agent = ddpg.make(env, env_params, ddpg.Config(**PENDULUM_SMALL))
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    states, _ = train(agent, 12_000)(keys, stacked_hparams(agent, 2))
    returns = evaluate_seeds(agent, states, num_episodes=50).mean(axis=-1)
    assert np.all(returns >= -200), returns


@pytest.mark.slow
def test_d4pg_learns_pendulum():
    """D4PG (8 actors, 5-step returns, prioritised replay, 51 atoms on the
    support derived from the env, [−1627, 0]) reaches a mean evaluation return (50 episodes)
    ≥ −200 on Pendulum-v1 in 12k env steps, seeds 0 and 1."""
    env, env_params = envs.make("Pendulum-v1")
    config = d4pg.Config(**PENDULUM_SMALL, num_envs=8, updates_per_step=4, total_steps=12_000)
    agent = d4pg.make(env, env_params, config)
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    states, _ = train(agent, 12_000 // 8)(keys, stacked_hparams(agent, 2))
    returns = evaluate_seeds(agent, states, num_episodes=50).mean(axis=-1)
    assert np.all(returns >= -200), returns
