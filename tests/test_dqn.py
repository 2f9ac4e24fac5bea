"""DQN / Double DQN: targets against a NumPy reference, ε schedule, probe
environments with known Q-values, seeds and sweeps, the CLI, and a short
CartPole learning run (slow)."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from jaxrl import envs, replay
from jaxrl.agents import REGISTRY, dqn, off_policy, q_learning
from jaxrl.cli import main


def train(agent, key, iterations, hparams=None):
    def run(key, hparams):
        return jax.lax.scan(lambda s, _: agent.step(s), agent.init(key, hparams), length=iterations)

    return jax.jit(run)(key, hparams)


# --------------------------------------------------------------------------- pure pieces


def numpy_targets(reward, discount, next_q_target, next_q_online, double):
    """y_i = r_i + Γ_i Q'(s'_i, a*_i), a* = argmax Q (double) or argmax Q' (DQN), one sample at a time."""
    targets = np.zeros(len(reward))
    for i in range(len(reward)):
        chooser = next_q_online[i] if double else next_q_target[i]
        best = int(np.argmax(chooser))
        targets[i] = reward[i] + discount[i] * next_q_target[i, best]
    return targets


@pytest.mark.parametrize("double", [False, True])
def test_q_learning_targets_match_numpy(double):
    rng = np.random.default_rng(0)
    n, a = 32, 5
    reward = rng.normal(size=n).astype(np.float32)
    discount = (0.9 * (rng.random(n) > 0.3)).astype(np.float32)
    next_q_target = rng.normal(size=(n, a)).astype(np.float32)
    next_q_online = rng.normal(size=(n, a)).astype(np.float32)
    got = dqn.q_learning_targets(reward, discount, next_q_target, next_q_online, double)
    want = numpy_targets(reward, discount, next_q_target, next_q_online, double)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_double_dqn_target_differs_from_max_where_the_networks_disagree():
    # Online prefers action 0, the target network values action 1 more.
    next_q_online = jnp.array([[2.0, 1.0]])
    next_q_target = jnp.array([[0.5, 3.0]])
    args = (jnp.array([0.0]), jnp.array([1.0]), next_q_target, next_q_online)
    assert float(dqn.q_learning_targets(*args, double=True)[0]) == pytest.approx(0.5)
    assert float(dqn.q_learning_targets(*args, double=False)[0]) == pytest.approx(3.0)


def test_linear_epsilon_schedule():
    steps = jnp.array([0, 50, 100, 200])
    eps = dqn.linear_epsilon(steps, 1.0, 0.1, 100.0)
    np.testing.assert_allclose(eps, [1.0, 0.55, 0.1, 0.1], rtol=1e-6)


def test_epsilon_greedy_frequencies():
    q = jnp.tile(jnp.array([0.0, 1.0, 0.0, 0.0]), (20_000, 1))
    greedy = dqn.epsilon_greedy(jax.random.PRNGKey(0), q, 0.0)
    assert bool(jnp.all(greedy == 1))
    actions = dqn.epsilon_greedy(jax.random.PRNGKey(1), q, 0.4)
    # P(a = 1) = 1 − ε + ε/4 = 0.7; the others ε/4 = 0.1 each.
    freq = np.bincount(np.asarray(actions), minlength=4) / len(actions)
    np.testing.assert_allclose(freq, [0.1, 0.7, 0.1, 0.1], atol=0.015)


@pytest.mark.parametrize(
    "field, value, fragment",
    [
        ("batch_size", 0, "batch_size=0"),
        ("gamma", 1.5, "gamma=1.5"),
        ("target_update", "polyak", "one of ('hard', 'soft')"),
        ("exploration_fraction", -0.1, "exploration_fraction"),
        ("activation", "sigmoid", "activation"),
    ],
)
def test_bad_config_names_the_field(field, value, fragment):
    env, env_params = envs.make("CartPole-v1")
    with pytest.raises(ValueError, match="dqn.Config") as info:
        dqn.make(env, env_params, dataclasses.replace(dqn.Config(), **{field: value}))
    assert fragment in str(info.value)


def test_continuous_actions_are_refused():
    env, env_params = envs.make("Pendulum-v1")
    with pytest.raises(ValueError, match="discrete actions only"):
        dqn.make(env, env_params)


# --------------------------------------------------------------------------- probes

GAMMA = 0.5
PROBE_CONFIG = dqn.Config(
    num_envs=4,
    rollout_len=1,
    batch_size=32,
    buffer_size=512,
    learning_starts=64,
    total_steps=1_000,
    learning_rate=1e-2,
    gamma=GAMMA,
    target_update_period=10,
    exploration_fraction=0.5,
    hidden_sizes=(16,),
)
PROBE_ITERATIONS = 400


@pytest.fixture(scope="module")
def probe_results():
    """Trained states of the probes, each once per module."""
    results = {}
    for env_id in ("Probe-TwoStepDiscount-v0", "Probe-Truncation-v0"):
        env, env_params = envs.make(env_id)
        # The truncation probe learns with soft target updates, the others hard.
        config = PROBE_CONFIG
        if env_id == "Probe-Truncation-v0":
            config = dataclasses.replace(config, target_update="soft", tau=0.1)
        agent = dqn.make(env, env_params, config)
        state, metrics = train(agent, jax.random.PRNGKey(0), PROBE_ITERATIONS)
        results[env_id] = (agent, state, metrics)
    return results


def q_at(results, env_id, obs):
    agent, state, _ = results[env_id]
    return np.asarray(dqn.q_function(agent)(state.params, jnp.asarray(obs, jnp.float32)))


def test_two_step_discount_probe(probe_results):
    # Q([1]) = 1 (terminal next), Q([0]) = γ·1: discounting and bootstrapping.
    q = q_at(probe_results, "Probe-TwoStepDiscount-v0", [[0.0], [1.0]])[:, 0]
    np.testing.assert_allclose(q, [GAMMA, 1.0], atol=0.05)


def test_truncation_is_bootstrapped(probe_results):
    # Never terminates, truncated after 5 steps: Q = 1/(1 − γ) = 2 only if the
    # time limit bootstraps. Treating it as terminal (1 step in 5 ends, and the
    # observation carries no time) gives Q = 1 + γ·(4/5)·Q, i.e. Q ≈ 1.67.
    q = q_at(probe_results, "Probe-Truncation-v0", [[0.0]])[0, 0]
    assert q == pytest.approx(1.0 / (1.0 - GAMMA), abs=0.1)


def test_metrics_and_schedule(probe_results):
    agent, state, metrics = probe_results["Probe-TwoStepDiscount-v0"]
    assert int(state.env_steps) == PROBE_ITERATIONS * agent.env_steps_per_step
    eps = np.asarray(metrics["epsilon"])
    assert eps[0] == pytest.approx(1.0, abs=0.01) and eps[-1] == pytest.approx(0.05)
    learning = np.asarray(metrics["learning"])
    # Updates start once learning_starts env steps (64 = 16 iterations) have passed.
    assert learning[:15].sum() == 0 and learning[16:].min() == 1
    # Every TwoStep episode lasts two steps and returns 1.
    done = np.asarray(metrics["episodes_completed"]) > 0
    np.testing.assert_allclose(np.asarray(metrics["episode_return"])[done], 1.0)


def test_soft_update_matches_polyak_average():
    target = {"w": jnp.array([0.0, 2.0])}
    online = {"w": jnp.array([4.0, -2.0])}
    got = dqn.soft_update(target, online, 0.25)
    np.testing.assert_allclose(got["w"], [1.0, 1.0])
    np.testing.assert_array_equal(dqn.soft_update(target, online, 1.0)["w"], online["w"])


def test_the_shared_q_learning_step_works_on_its_own():
    """One Q-learning step outside any agent, on a hand-made batch: with Γ = 0
    the targets are the rewards, the loss falls, and a period-1 hard target
    update copies the new parameters."""
    network = q_learning.QNetwork(2, ())
    spec = q_learning.QSpec(apply=network.apply, optimizer=off_policy.adam(), double=True,
                            target_update="hard", target_update_period=1, batch_size=4, learning_starts=0)
    learner = q_learning.new_learner(spec, jax.random.PRNGKey(0), jnp.zeros((3,)), network, 0.1)
    obs = jax.random.normal(jax.random.PRNGKey(1), (4, 3))
    batch = replay.Transition(obs=obs, action=jnp.array([0, 1, 0, 1]), reward=jnp.arange(4.0),
                              discount=jnp.zeros(4), next_obs=obs)
    hp = dqn.Config(learning_rate=0.1).hparams()
    loss = lambda params: float(q_learning.q_loss(params, params, network.apply, batch, hp, True)[0])
    trained, stats = q_learning.gradient_step(spec, learner, batch, hp)
    assert float(stats["loss"]) == loss(learner.params) and loss(trained.params) < loss(learner.params)
    assert int(trained.updates) == 1
    jax.tree.map(np.testing.assert_array_equal, trained.target_params, trained.params)


def test_hard_target_copies_every_period(probe_results):
    # Hard updates every 10 updates: the target equals the online network
    # exactly when the update count is a multiple of 10, and lags otherwise.
    agent = probe_results["Probe-TwoStepDiscount-v0"][0]

    def one(state, _):
        state, _ = agent.step(state)
        gap = jnp.abs(ravel_pytree(state.params)[0] - ravel_pytree(state.target_params)[0]).max()
        return state, (state.updates, gap)

    _, (updates, gaps) = jax.jit(lambda k: jax.lax.scan(one, agent.init(k), length=40))(jax.random.PRNGKey(0))
    updates, gaps = np.asarray(updates), np.asarray(gaps)
    assert updates[-1] >= 20
    copied = (updates % PROBE_CONFIG.target_update_period == 0)
    assert np.all(gaps[copied] == 0.0) and np.all(gaps[~copied] > 0.0)


@pytest.fixture(scope="module")
def action_probe_sweep():
    """Probe-ActionDependentReward-v0 trained in one vmap over (seed, learning
    rate) = (0, 1e-2), (0, 1e-2), (1, 1e-4)."""
    env, env_params = envs.make("Probe-ActionDependentReward-v0")
    agent = dqn.make(env, env_params, PROBE_CONFIG)
    hp = agent.default_hparams()
    hps = jax.tree.map(lambda x: jnp.stack([x, x, x]), hp).replace(
        learning_rate=jnp.array([1e-2, 1e-2, 1e-4]))
    keys = jnp.stack([jax.random.PRNGKey(0), jax.random.PRNGKey(0), jax.random.PRNGKey(1)])
    sweep = jax.jit(jax.vmap(lambda k, h: jax.lax.scan(
        lambda s, _: agent.step(s), agent.init(k, h), length=PROBE_ITERATIONS)))
    states, _ = sweep(keys, hps)
    return agent, states


def test_action_dependent_reward_probe(action_probe_sweep):
    agent, states = action_probe_sweep
    state = jax.tree.map(lambda x: x[0], states)
    q = np.asarray(dqn.q_function(agent)(state.params, jnp.zeros((1, 1))))[0]
    np.testing.assert_allclose(q, [0.0, 1.0], atol=0.05)
    params = agent.policy_params(state)
    assert int(agent.act(params, jnp.zeros((1,)), jax.random.PRNGKey(0), deterministic=True)) == 1


def test_seeds_and_sweep_lanes(action_probe_sweep):
    _, states = action_probe_sweep
    lane = lambda i: np.asarray(ravel_pytree(jax.tree.map(lambda x: x[i], states.params))[0])
    # Same seed and learning rate: identical lanes; another seed and rate: different.
    np.testing.assert_array_equal(lane(0), lane(1))
    assert not np.array_equal(lane(0), lane(2))
    # The learning rate is a traced leaf of the state, per lane.
    np.testing.assert_allclose(np.asarray(states.hparams.learning_rate), [1e-2, 1e-2, 1e-4])
    q_slow = np.asarray(states.params["params"]["Dense_1"]["bias"][2])
    q_fast = np.asarray(states.params["params"]["Dense_1"]["bias"][0])
    assert abs(q_fast[1] - 1.0) < abs(q_slow[1] - 1.0)


# --------------------------------------------------------------------------- CLI


@pytest.mark.slow
def test_registry_and_cli_train(tmp_path, capsys):
    assert REGISTRY["dqn"] == "jaxrl.agents.dqn" and REGISTRY["hdqn"] == "jaxrl.agents.hdqn"
    out = tmp_path / "run"
    argv = ["train", "dqn", "--env", "CartPole-v1", "--out", out, "--total-steps", "512",
            "--eval-episodes", "2", "--no-progress", "--set", "learning_starts=128",
            "--set", "batch_size=32", "--set", "hidden_sizes=16", "--set", "buffer_size=1000"]
    assert main([str(a) for a in argv]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["algorithm"] == "dqn" and config["agent_config"]["double_dqn"] is True
    # --total-steps fills Config.total_steps, which the ε schedule spans.
    assert config["agent_config"]["total_steps"] == 512
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env_steps"] == 512 and len(summary["eval_return"]) == 1
    assert "epsilon" in (out / "metrics.csv").read_text().splitlines()[0]


def test_cli_rejects_bad_dqn_setting(tmp_path, capsys):
    argv = ["train", "dqn", "--env", "CartPole-v1", "--out", str(tmp_path / "r"),
            "--set", "target_update=sometimes"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "dqn.Config.target_update='sometimes' is invalid" in err and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------- learning

CARTPOLE_STEPS = 40_000


@pytest.mark.slow
def test_cartpole_learns():
    """Two seeds, 4·10^4 env steps: greedy returns far above a random policy's
    ~22 (the full 475 within 5·10^5 steps is in benchmarks/dqn_cartpole.py)."""
    env, env_params = envs.make("CartPole-v1")
    config = dqn.Config(num_envs=4, rollout_len=2, batch_size=64, learning_rate=1e-3,
                        learning_starts=1_000, total_steps=CARTPOLE_STEPS, exploration_fraction=0.25,
                        hidden_sizes=(64, 64), target_update="soft", tau=0.01)
    agent = dqn.make(env, env_params, config)
    iterations = CARTPOLE_STEPS // agent.env_steps_per_step
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    states, _ = jax.jit(jax.vmap(lambda k: jax.lax.scan(
        lambda s, _: agent.step(s), agent.init(k), length=iterations)))(keys)
    returns = jax.jit(jax.vmap(lambda s, k: agent.evaluate(s, k, 10)))(
        states, jax.random.split(jax.random.PRNGKey(1), 2))
    assert float(returns.mean(axis=1).min()) >= 100.0, returns.mean(axis=1)
