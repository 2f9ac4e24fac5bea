"""h-DQN and its environments: the decision process's dynamics and known
returns, the key-and-door room, the goal interface, option bookkeeping, and
(slow) h-DQN beating flat DQN on the decision process."""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from jaxrl import envs
from jaxrl.agents import dqn, hdqn

# --------------------------------------------------------------------------- environments


def rollout(env, env_params, actions, key=0):
    """Plays ``actions`` from a reset; returns (rewards, terminated, truncated, final obs) per step."""
    key = jax.random.PRNGKey(key)
    obs, state = env.reset(key, env_params)
    out = []
    for i, action in enumerate(actions):
        obs, state, reward, terminated, truncated, info = env.step(
            jax.random.fold_in(key, i), state, jnp.int32(action), env_params)
        out.append((float(reward), bool(terminated), bool(truncated), np.asarray(info["final_observation"])))
    return out


def test_decision_process_left_is_deterministic_and_pays_a_hundredth():
    env, env_params = envs.make("DecisionProcess-v0")
    obs, _ = env.reset(jax.random.PRNGKey(0), env_params)
    np.testing.assert_array_equal(obs, [0, 1, 0, 0, 0, 0])  # starts in s2
    [(reward, terminated, truncated, final)] = rollout(env, env_params, [0])
    assert reward == pytest.approx(0.01) and (terminated, truncated) == (True, False)
    np.testing.assert_array_equal(final, [1, 0, 0, 0, 0, 0])


def test_decision_process_right_succeeds_half_the_time():
    env, env_params = envs.make("DecisionProcess-v0")
    _, state = env.reset(jax.random.PRNGKey(0), env_params)
    state = state.replace(position=jnp.int32(3))
    keys = jax.random.split(jax.random.PRNGKey(1), 4000)
    _, next_state, *_ = jax.vmap(env.step_env, in_axes=(0, None, None, None))(keys, state, 1, env_params)
    positions = np.asarray(next_state.position)
    assert set(np.unique(positions)) == {2, 4}
    assert abs((positions == 4).mean() - 0.5) < 0.03
    # In s6, right clamps: stays in s6 or falls back to s5.
    _, s6_next, *_ = jax.vmap(env.step_env, in_axes=(0, None, None, None))(
        keys, state.replace(position=jnp.int32(5)), 1, env_params)
    assert set(np.unique(np.asarray(s6_next.position))) == {4, 5}


def test_decision_process_bonus_needs_a_visit_to_s6():
    env, env_params = envs.make("DecisionProcess-v0")
    _, state = env.reset(jax.random.PRNGKey(0), env_params)
    state = state.replace(position=jnp.int32(5), visited_s6=jnp.asarray(True))
    rewards = []
    for _ in range(5):  # left, deterministically, from s6 to s1
        _, state, reward, terminated, _ = env.step_env(jax.random.PRNGKey(0), state, 0, env_params)
        rewards.append(float(reward))
    assert rewards == [0, 0, 0, 0, 1.0] and bool(terminated)


def test_decision_process_known_returns():
    """Monte Carlo returns of fixed policies against the analytic values:
    always right 0.208 (= ⅕·1 + ⅘·0.01, minus a sliver lost to the 100-step cap),
    always left 0.01."""
    env, env_params = envs.make("DecisionProcess-v0")
    n = 20_000
    run = jax.jit(lambda action, key: envs.episode_returns(
        env, env_params, lambda obs, k: jnp.full(obs.shape[:1], action, jnp.int32), key, n).returns)
    right = np.asarray(run(1, jax.random.PRNGKey(0)))
    standard_error = right.std() / np.sqrt(n)
    assert abs(right.mean() - 0.208) < 3 * standard_error + 0.002
    # A return of 1 is exactly a visit to s6: one in five episodes.
    assert abs((right == 1.0).mean() - 0.2) < 0.01
    np.testing.assert_allclose(run(0, jax.random.PRNGKey(1)), 0.01)


def test_key_door_needs_the_key_first():
    env, env_params = envs.make("KeyDoor-v0")
    up, down, left, right = 0, 1, 2, 3
    # Start (6, 1); door (1, 1); doorway (4, 7); key (6, 13). Straight to the door: nothing.
    no_key = rollout(env, env_params, [up] * 5)
    assert all(r == 0 and not t for r, t, _, _ in no_key)
    assert bool(env.goal_reached(jnp.asarray(no_key[-1][3]), 1))
    # Doorway, key, doorway, door: reward 1 and termination on the 33rd step (the shortest path).
    to_key = [up] * 2 + [right] * 12 + [down] * 2
    with_key = rollout(env, env_params, to_key + [up] * 2 + [left] * 12 + [up] * 3)
    rewards = [r for r, *_ in with_key]
    assert rewards == [0.0] * 32 + [1.0] and with_key[-1][1]
    assert bool(env.goal_reached(jnp.asarray(with_key[7][3]), 2))  # through the doorway
    key_obs = with_key[15][3]
    assert bool(env.goal_reached(jnp.asarray(key_obs), 0)) and key_obs[-1] == 1.0  # holding the key
    assert [bool(env.goal_reached(jnp.asarray(key_obs), g)) for g in (1, 2)] == [False, False]
    # Walls stop movement: the outer wall, and the wall between the rooms off the doorway.
    [(_, _, _, obs)] = rollout(env, env_params, [left])
    assert int(jnp.argmax(obs[:-1])) == 6 * env.width + 1
    along_wall = rollout(env, env_params, [right] * 8)
    assert int(jnp.argmax(along_wall[-1][3][:-1])) == 6 * env.width + 6


def test_key_door_is_rarely_solved_at_random():
    """The flat exploration problem: uniformly random actions open the door in
    none of 2,000 episodes (the shortest solution is 33 steps within a cap of 100)."""
    env, env_params = envs.make("KeyDoor-v0")
    returns = jax.jit(lambda k: envs.episode_returns(
        env, env_params, lambda obs, k: jax.random.randint(k, obs.shape[:1], 0, 4), k, 2000).returns)(
        jax.random.PRNGKey(0))
    assert float(returns.sum()) == 0.0
    with pytest.raises(ValueError, match="room_size"):
        envs.make("KeyDoor-v0", room_size=1)


def test_goal_specs_of_the_envs():
    dp, _ = envs.make("DecisionProcess-v0")
    spec = hdqn.goal_spec(dp)
    assert spec.names == ("s1", "s2", "s3", "s4", "s5", "s6")
    obs = jax.nn.one_hot(4, 6)
    assert [bool(spec.reached(obs, g)) for g in range(6)] == [False] * 4 + [True, False]
    assert hdqn.goal_spec(envs.make("KeyDoor-v0")[0]).names == ("key", "door", "doorway")


# --------------------------------------------------------------------------- pieces


def test_controller_input_is_tabular_in_state_and_goal():
    obs = jax.nn.one_hot(jnp.arange(6), 6)  # every state
    features = np.stack([np.asarray(hdqn.controller_input(obs, jnp.full((6,), g), 6)) for g in range(6)])
    # One distinct active feature per (state, goal) pair, plus the goal's own one-hot.
    pair_features = features[:, :, :36].reshape(36, 36)
    assert set(np.unique(pair_features)) == {0.0, 1.0}
    np.testing.assert_array_equal(pair_features.sum(axis=0), 1)
    np.testing.assert_array_equal(pair_features.sum(axis=1), 1)
    np.testing.assert_array_equal(features[:, 0, 36:], np.eye(6))


def test_controller_epsilon_per_goal():
    hp = hdqn.Config(controller_epsilon_decay=1e-3, epsilon_end=0.1).hparams()
    stats = hdqn.GoalStats(attempts=jnp.array([0.0, 500.0, 100.0, 5000.0]),
                           success_rate=jnp.array([0.0, 0.2, 0.8, 0.0]))
    want = np.clip(np.minimum(1 - np.array([0, 500, 100, 5000]) * 1e-3, 1 - np.array([0, 0.2, 0.8, 0])), 0.1, 1)
    np.testing.assert_allclose(hdqn.controller_epsilon(stats, hp), want, rtol=1e-6)


def test_needs_goals_and_valid_config():
    env, env_params = envs.make("CartPole-v1")
    with pytest.raises(ValueError, match="needs an environment with goals"):
        hdqn.make(env, env_params)
    dp, dp_params = envs.make("DecisionProcess-v0")
    with pytest.raises(ValueError, match=r"hdqn.Config.max_option_steps=0 is invalid"):
        hdqn.make(dp, dp_params, hdqn.Config(max_option_steps=0))
    with pytest.raises(ValueError, match=r"hdqn.Config.meta_gamma=2"):
        hdqn.make(dp, dp_params, hdqn.Config(meta_gamma=2.0))


# --------------------------------------------------------------------------- agent wiring

SHORT = hdqn.Config(num_envs=4, batch_size=16, learning_starts=64, controller_buffer_size=2048,
                    meta_buffer_size=512, meta_exploration_steps=400, hidden_sizes=(16,))
SHORT_ITERATIONS = 150


@pytest.fixture(scope="module")
def short_run():
    env, env_params = envs.make("DecisionProcess-v0")
    agent = hdqn.make(env, env_params, SHORT)
    run = jax.jit(jax.vmap(lambda k: jax.lax.scan(lambda s, _: agent.step(s), agent.init(k),
                                                  length=SHORT_ITERATIONS)))
    states, metrics = run(jax.random.split(jax.random.PRNGKey(0), 2))
    return agent, states, metrics


def test_meta_transitions_sum_the_extrinsic_reward(short_run):
    _, states, _ = short_run
    buffer = jax.tree.map(lambda x: x[0], states.meta_buffer)
    size = int(buffer.size)
    assert size > 50
    reward = np.asarray(buffer.storage.reward[:size])
    discount = np.asarray(buffer.storage.discount[:size])
    next_obs = np.asarray(buffer.storage.next_obs[:size])
    # F is 0 unless the option ended the episode in s1 (0.01 or 1); those
    # options, and only those, do not bootstrap.
    assert np.all(np.isclose(reward[:, None], [0.0, 0.01, 1.0]).any(axis=1))
    ended_in_s1 = next_obs[:, 0] == 1
    np.testing.assert_array_equal(discount == 0, ended_in_s1)
    np.testing.assert_array_equal(reward > 0, ended_in_s1)


def test_controller_reward_is_the_goal_critic(short_run):
    _, states, _ = short_run
    buffer = jax.tree.map(lambda x: x[0], states.controller_buffer)
    size = int(buffer.size)
    x, next_x = np.asarray(buffer.storage.obs[:size]), np.asarray(buffer.storage.next_obs[:size])
    reward = np.asarray(buffer.storage.reward[:size])
    goal = x[:, 36:].argmax(axis=1)
    next_state = next_x[:, :36].reshape(-1, 6, 6).sum(axis=2).argmax(axis=1)
    np.testing.assert_array_equal(reward == 1.0, next_state == goal)
    assert 0 < reward.mean() < 1


def test_goal_metrics_and_seeds(short_run):
    agent, states, metrics = short_run
    assert int(states.env_steps[0]) == SHORT_ITERATIONS * agent.env_steps_per_step
    chosen = sum(np.asarray(metrics[f"goal_s{i}_chosen"]).sum() for i in range(1, 7))
    np.testing.assert_allclose(chosen, np.asarray(states.goal_stats.attempts).sum())
    rates = np.asarray(states.goal_stats.success_rate)
    assert np.all((rates >= 0) & (rates <= 1)) and rates[:, 0].min() > 0  # s1 is reached by falling left
    assert float(np.asarray(metrics["meta_epsilon"])[0, -1]) == pytest.approx(0.1)
    # Different seeds, different networks.
    params = lambda i: ravel_pytree(jax.tree.map(lambda x: x[i], states.meta.params))[0]
    assert not np.array_equal(params(0), params(1))


def test_run_episodes_counts_goals(short_run):
    agent, states, _ = short_run
    state = jax.tree.map(lambda x: x[0], states)
    returns, chosen, reached, visits = jax.jit(
        lambda k: agent.run_episodes(agent.policy_params(state), k, 64, epsilon=1.0))(jax.random.PRNGKey(3))
    assert returns.shape == (64,) and chosen.shape == (64, 6) and visits.shape == (64, 6)
    # Every episode ends with one arrival in s1; a return of 1 needs a visit to s6.
    np.testing.assert_array_equal(np.asarray(visits)[:, 0], 1)
    np.testing.assert_array_equal(np.asarray(visits)[:, 5] > 0, np.isclose(np.asarray(returns), 1.0))
    assert np.all(np.isclose(np.asarray(returns)[:, None], [0.01, 1.0]).any(axis=1))
    assert np.all(np.asarray(reached) <= np.asarray(chosen)) and np.asarray(chosen).sum(axis=1).min() >= 1


# --------------------------------------------------------------------------- learning

ITERATIONS = 5_000  # x 8 envs = 4·10^4 env steps, about 5·10^3 episodes


def last_episodes_mean(metrics, n=1_000):
    """Mean extrinsic return of the last ``n`` completed training episodes."""
    returns = np.asarray(metrics["episode_return"]) * np.asarray(metrics["episodes_completed"])
    counts = np.asarray(metrics["episodes_completed"])
    k = int(np.searchsorted(np.cumsum(counts[::-1]), n)) + 1
    return returns[-k:].sum() / counts[-k:].sum()


@pytest.mark.slow
def test_hdqn_beats_flat_dqn_on_the_decision_process():
    env, env_params = envs.make("DecisionProcess-v0")
    key = jax.random.PRNGKey(0)
    h_agent = hdqn.make(env, env_params, hdqn.Config(num_envs=8, learning_starts=500,
                                                      meta_exploration_steps=ITERATIONS * 4))
    h_state, h_metrics = jax.jit(lambda k: jax.lax.scan(
        lambda s, _: h_agent.step(s), h_agent.init(k), length=ITERATIONS))(key)
    flat = dqn.make(env, env_params, dqn.Config(
        num_envs=8, rollout_len=1, batch_size=32, learning_rate=1e-3, learning_starts=500,
        total_steps=ITERATIONS * 8, exploration_fraction=0.5, epsilon_end=0.1,
        target_update_period=100, hidden_sizes=(64, 64)))
    f_state, f_metrics = jax.jit(lambda k: jax.lax.scan(
        lambda s, _: flat.step(s), flat.init(k), length=ITERATIONS))(key)

    h_train, f_train = last_episodes_mean(h_metrics), last_episodes_mean(f_metrics)
    # Paper: about 0.13 against about 0.01 (ε-greedy training, last 1000 episodes).
    assert h_train > 0.10 and h_train > f_train + 0.05, (h_train, f_train)
    # Greedy: h-DQN goes for s6 (optimum 0.208, s6 in 1 of 5 episodes); flat DQN goes left.
    h_returns, _, _, _ = jax.jit(lambda k: h_agent.run_episodes(h_agent.policy_params(h_state), k, 2000))(
        jax.random.PRNGKey(1))
    f_returns = jax.jit(lambda k: flat.evaluate(f_state, k, 2000))(jax.random.PRNGKey(1))
    assert float((h_returns == 1.0).mean()) > 0.12
    assert float(f_returns.mean()) < 0.02


@pytest.mark.slow
def test_cli_trains_hdqn_with_goal_metrics(tmp_path):
    import json

    from jaxrl.cli import main

    out = tmp_path / "run"
    argv = ["train", "hdqn", "--env", "DecisionProcess-v0", "--out", out, "--total-steps", "4000",
            "--eval-episodes", "20", "--no-progress", "--set", "hidden_sizes=16"]
    assert main([str(a) for a in argv]) == 0
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    for name in ("s1", "s6"):
        assert f"goal_{name}_chosen" in header and f"goal_{name}_success_rate" in header
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env_steps"] == 4000 and 0.0 < summary["eval_return"][0] <= 1.0
    # A goal-less environment is refused in one line before anything runs.
    assert main(["train", "hdqn", "--env", "CartPole-v1", "--out", str(tmp_path / "cp")]) == 2


KEY_DOOR_STEPS = 200_000


def key_door_configs(steps: int = KEY_DOOR_STEPS) -> tuple[hdqn.Config, dqn.Config]:
    """The same budget for both: 8 envs, one update per iteration, ε annealed over half the run."""
    h = hdqn.Config(num_envs=8, learning_starts=500, meta_exploration_steps=steps // 2, max_option_steps=30,
                    total_steps=steps)
    f = dqn.Config(num_envs=8, rollout_len=1, batch_size=32, learning_rate=1e-3, learning_starts=500,
                   total_steps=steps, exploration_fraction=0.5, epsilon_end=0.1, target_update_period=100,
                   hidden_sizes=(64, 64))
    return h, f


@pytest.mark.slow
def test_hdqn_opens_the_door_where_flat_dqn_does_not():
    env, env_params = envs.make("KeyDoor-v0")
    h_config, f_config = key_door_configs()
    iterations = KEY_DOOR_STEPS // 8
    key = jax.random.PRNGKey(0)
    h_agent, flat = hdqn.make(env, env_params, h_config), dqn.make(env, env_params, f_config)
    h_state, h_metrics = jax.jit(lambda k: jax.lax.scan(
        lambda s, _: h_agent.step(s), h_agent.init(k), length=iterations))(key)
    f_state, f_metrics = jax.jit(lambda k: jax.lax.scan(
        lambda s, _: flat.step(s), flat.init(k), length=iterations))(key)
    # Greedy evaluation, jitted apart from training: a return of 1 is an opened door.
    h_returns = jax.jit(lambda k: h_agent.evaluate(h_state, k, 200))(jax.random.PRNGKey(1))
    f_returns = jax.jit(lambda k: flat.evaluate(f_state, k, 200))(jax.random.PRNGKey(1))
    assert float(h_returns.mean()) > 0.8, float(h_returns.mean())
    assert float(f_returns.mean()) < 0.2, float(f_returns.mean())
    # The controller learned every goal, and its training opened the door far
    # more often than flat DQN's ε-greedy training. Measured on seeds 0-3
    # (vmapped, the test suite's compile options): h-DQN 2471, 1934, 2450 and
    # 1712 doors in training, flat DQN 653, 89, 0 and 0; greedy returns 1 and
    # 0 on every seed.
    assert float(np.asarray(h_state.goal_stats.success_rate).min()) > 0.5
    flat_successes = float((np.asarray(f_metrics["episode_return"]) * np.asarray(f_metrics["episodes_completed"])).sum())
    h_successes = float((np.asarray(h_metrics["episode_return"]) * np.asarray(h_metrics["episodes_completed"])).sum())
    assert h_successes > 3 * max(flat_successes, 1.0), (h_successes, flat_successes)
