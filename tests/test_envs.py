"""Environments: make/registry, wrappers, probe dynamics and episode evaluation.

Rollouts are jitted once in module-scoped fixtures and checked against plain
NumPy/Python references.
"""

import chex
import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl import envs
from jaxrl.envs import registry

KEY = jax.random.PRNGKey(0)
# MNISTBandit-bsuite downloads MNIST when constructed; tests stay offline.
OFFLINE_GYMNAX_IDS = [e for e in gymnax.registered_envs if e != "MNISTBandit-bsuite"]
PROBE_IDS = [
    "Probe-ConstantReward-v0",
    "Probe-ObsDependentReward-v0",
    "Probe-TwoStepDiscount-v0",
    "Probe-ActionDependentReward-v0",
    "Probe-ContinuousAction-v0",
    "Probe-Truncation-v0",
    "Probe-RememberCue-v0",
    "Probe-PixelCue-v0",
    "CartPole-v1-no-velocity",
]


# --------------------------------------------------------------------------
# make and the registry


@pytest.mark.parametrize("env_id", OFFLINE_GYMNAX_IDS + PROBE_IDS)
def test_every_env_id_constructs_with_supported_spaces(env_id):
    env, env_params = envs.make(env_id)
    assert envs.action_space_kind(env, env_params) in ("discrete", "continuous")
    assert isinstance(envs.observation_shape(env, env_params), tuple)


def test_list_envs_has_gymnax_and_probe_ids():
    listed = envs.list_envs()
    assert set(gymnax.registered_envs) <= set(listed)
    assert set(PROBE_IDS) <= set(listed)


def test_unknown_id_names_it_and_lists_close_ids():
    with pytest.raises(ValueError, match=r"unknown environment 'CartPole-v0'; closest: CartPole-v1"):
        envs.make("CartPole-v0")


def test_kwargs_override_params_or_go_to_the_constructor():
    _, params = envs.make("CartPole-v1", max_steps_in_episode=100, gravity=5.0)
    assert params.max_steps_in_episode == 100 and params.gravity == 5.0
    env, params = envs.make("Catch-bsuite", rows=6)
    assert envs.observation_shape(env, params) == (6, 5)
    _, params = envs.make("Probe-Truncation-v0", max_steps_in_episode=3)
    assert params.max_steps_in_episode == 3
    with pytest.raises(ValueError, match="not_a_setting"):
        envs.make("CartPole-v1", not_a_setting=1)


def test_register_rejects_duplicates_and_gymnax_ids():
    with pytest.raises(ValueError, match="already registered"):
        envs.register("Probe-ConstantReward-v0", lambda: None)
    with pytest.raises(ValueError, match="gymnax"):
        envs.register("CartPole-v1", lambda: None)


def test_register_factory_with_var_kwargs_routes_params_fields():
    from jaxrl.envs.probes import Truncation

    env_id = "Test-VarKwargsFactory-v0"
    envs.register(env_id, lambda **kwargs: Truncation(**kwargs))
    try:
        _, params = envs.make(env_id, max_steps_in_episode=7)
        assert params.max_steps_in_episode == 7
    finally:
        registry._OWN_ENVS.pop(env_id)


def test_space_helpers():
    cartpole = envs.make("CartPole-v1")
    pendulum = envs.make("Pendulum-v1")
    breakout = envs.make("Breakout-MinAtar")
    assert envs.action_space_kind(*cartpole) == "discrete"
    assert envs.action_space_kind(*pendulum) == "continuous"
    assert envs.action_space_kind(*breakout) == "discrete"
    assert envs.num_actions(*cartpole) == 2 and envs.num_actions(*breakout) == 3
    assert envs.action_shape(*cartpole) == () and envs.action_shape(*pendulum) == (1,)
    assert envs.observation_shape(*breakout) == (10, 10, 4)
    with pytest.raises(ValueError, match="Discrete"):
        envs.num_actions(*pendulum)


def test_validate_env_for_names_algorithm_env_and_space():
    env, params = envs.make("Pendulum-v1")
    with pytest.raises(ValueError) as error:
        envs.validate_env_for(("discrete",), "Pendulum-v1", env, params, "dqn")
    assert str(error.value) == (
        "algorithm 'dqn' supports discrete actions only, "
        "but 'Pendulum-v1' has a continuous (Box) action space"
    )
    env, params = envs.make("CartPole-v1")
    with pytest.raises(ValueError, match=r"'ddpg' supports continuous actions only, but 'CartPole-v1' has a discrete \(Discrete\)"):
        envs.validate_env_for(("continuous",), "CartPole-v1", env, params, "ddpg")
    envs.validate_env_for(("discrete",), "CartPole-v1", env, params, "dqn")
    envs.validate_env_for(("discrete", "continuous"), "CartPole-v1", env, params, "ppo")


# --------------------------------------------------------------------------
# EpisodeStats and BatchEnv on CartPole under jit + scan

NUM_ENVS = 4
STEPS = 120
TIME_LIMIT = 15  # short, so the rollout holds both terminations and truncations


@pytest.fixture(scope="module")
def cartpole_rollout():
    env, params = envs.make("CartPole-v1", max_steps_in_episode=TIME_LIMIT)
    batch = envs.BatchEnv(envs.EpisodeStats(env), NUM_ENVS)

    @jax.jit
    def run(key):
        obs, state = batch.reset(key, params)

        def one_step(carry, key):
            obs, state = carry
            act_key, step_key = jax.random.split(key)
            action = jax.random.randint(act_key, (NUM_ENVS,), 0, 2)
            next_obs, state, reward, terminated, truncated, info = batch.step(step_key, state, action, params)
            return (next_obs, state), (obs, reward, terminated, truncated, info)

        return jax.lax.scan(one_step, (obs, state), jax.random.split(key, STEPS))[1]

    return jax.device_get(run(KEY))


def test_batch_env_shapes(cartpole_rollout):
    obs, reward, terminated, truncated, info = cartpole_rollout
    assert obs.shape == (STEPS, NUM_ENVS, 4)
    assert reward.shape == terminated.shape == truncated.shape == (STEPS, NUM_ENVS)
    assert info["final_observation"].shape == (STEPS, NUM_ENVS, 4)
    assert info["episode_return"].dtype == np.float32
    assert info["episode_length"].dtype == np.int32


def test_batch_env_keeps_per_env_spaces_and_forwards_attributes():
    env, params = envs.make("CartPole-v1")
    batch = envs.NormalizeObservation(envs.BatchEnv(envs.EpisodeStats(env), NUM_ENVS))
    assert batch.num_envs == NUM_ENVS and batch.name == "CartPole-v1"
    assert batch.observation_space(params).shape == (4,)
    assert batch.action_space(params).n == 2
    assert batch.unwrapped is env
    with pytest.raises(ValueError, match="num_envs"):
        envs.BatchEnv(env, 0)


def test_batch_env_step_takes_one_key_or_one_key_per_copy():
    env, params = envs.make("CartPole-v1")
    batch = envs.BatchEnv(envs.EpisodeStats(env), 3)
    key = jax.random.PRNGKey(2)
    _, state = batch.reset(key, params)
    action = jnp.array([0, 1, 1])
    from_one_key = batch.step(key, state, action, params)
    from_keys = batch.step(jax.random.split(key, 3), state, action, params)
    typed = batch.step(jax.random.wrap_key_data(jax.random.split(key, 3)), state, action, params)
    for other in (from_keys, typed):
        jax.tree.map(np.testing.assert_array_equal, from_one_key, other)


def test_episode_stats_match_manual_accumulation(cartpole_rollout):
    _, reward, terminated, truncated, info = cartpole_rollout
    done = terminated | truncated
    assert terminated.any() and truncated.any()
    np.testing.assert_array_equal(info["episode_done"], done)

    running_return = np.zeros(NUM_ENVS)
    running_length = np.zeros(NUM_ENVS, int)
    for t in range(STEPS):
        running_return += reward[t]
        running_length += 1
        expected_return = np.where(done[t], running_return, 0.0)
        expected_length = np.where(done[t], running_length, 0)
        np.testing.assert_allclose(info["episode_return"][t], expected_return, rtol=1e-6)
        np.testing.assert_array_equal(info["episode_length"][t], expected_length)
        running_return[done[t]] = 0.0
        running_length[done[t]] = 0
    # Time limits and terminations stay separate: a truncated episode is
    # exactly TIME_LIMIT long, a terminated one is shorter.
    assert (info["episode_length"][truncated] == TIME_LIMIT).all()
    assert (info["episode_length"][terminated & ~truncated] < TIME_LIMIT).all()


def test_episode_stats_on_probe_truncation():
    env, params = envs.make("Probe-Truncation-v0")
    wrapped = envs.EpisodeStats(env)
    obs, state = wrapped.reset(KEY, params)
    lengths, returns, truncations, terminations = [], [], [], []
    for _ in range(11):
        obs, state, _, terminated, truncated, info = wrapped.step(KEY, state, 0, params)
        lengths.append(int(info["episode_length"]))
        returns.append(float(info["episode_return"]))
        truncations.append(bool(truncated))
        terminations.append(bool(terminated))
    assert lengths == [0, 0, 0, 0, 5, 0, 0, 0, 0, 5, 0]
    assert returns == [0, 0, 0, 0, 5.0, 0, 0, 0, 0, 5.0, 0]
    assert truncations == [length == 5 for length in lengths]
    assert not any(terminations)


def test_episode_stats_also_works_on_a_batched_env():
    env, params = envs.make("Probe-ConstantReward-v0")
    wrapped = envs.EpisodeStats(envs.BatchEnv(env, 3))
    _, state = wrapped.reset(KEY, params)
    assert state.episode_return.shape == (3,)
    _, _, _, _, _, info = wrapped.step(KEY, state, jnp.zeros(3, jnp.int32), params)
    np.testing.assert_array_equal(info["episode_return"], [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(info["episode_length"], [1, 1, 1])


# --------------------------------------------------------------------------
# NormalizeObservation

NORM_ENVS = 8
NORM_STEPS = 200


@pytest.fixture(scope="module")
def normalized_rollout():
    """The same trajectories with and without normalisation (the random
    policy ignores observations and the wrapper passes keys through)."""
    env, params = envs.make("CartPole-v1", max_steps_in_episode=50)
    raw = envs.BatchEnv(env, NORM_ENVS)
    norm = envs.NormalizeObservation(envs.BatchEnv(env, NORM_ENVS))

    def rollout(batch, key):
        obs, state = batch.reset(key, params)

        def one_step(state, key):
            act_key, step_key = jax.random.split(key)
            action = jax.random.randint(act_key, (NORM_ENVS,), 0, 2)
            obs, state, _, _, _, info = batch.step(step_key, state, action, params)
            return state, (obs, info["final_observation"], envs.obs_norm_stats(state))

        final_state, (obs_seq, final_obs, stats) = jax.lax.scan(
            one_step, state, jax.random.split(key, NORM_STEPS)
        )
        all_obs = jnp.concatenate([obs[None], obs_seq])
        return all_obs, final_obs, stats, envs.obs_norm_stats(state), final_state

    run = jax.jit(lambda key: (rollout(raw, key), rollout(norm, key)))
    return jax.device_get(run(KEY))


def _reference_normalize(obs, mean, var, clip=10.0, eps=1e-8):
    return np.clip((obs - mean) / np.sqrt(var + eps), -clip, clip)


def test_obs_norm_stats_equal_numpy_moments_of_all_observations_seen(normalized_rollout):
    (raw_obs, *_), (_, _, stats, _, final_state) = normalized_rollout
    seen = raw_obs.reshape(-1, 4).astype(np.float64)
    final = envs.obs_norm_stats(final_state)
    assert float(final.count) == (NORM_STEPS + 1) * NORM_ENVS
    np.testing.assert_allclose(final.mean, seen.mean(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(final.var, seen.var(0), rtol=1e-4, atol=1e-7)
    # And at an intermediate step: everything up to and including step t.
    t = 20
    upto = raw_obs[: t + 2].reshape(-1, 4).astype(np.float64)
    np.testing.assert_allclose(stats.mean[t], upto.mean(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stats.var[t], upto.var(0), rtol=1e-4, atol=1e-7)


def test_obs_and_final_observation_use_the_current_stats(normalized_rollout):
    (raw_obs, raw_final, *_), (norm_obs, norm_final, stats, reset_stats, _) = normalized_rollout
    np.testing.assert_allclose(
        norm_obs[0], _reference_normalize(raw_obs[0], reset_stats.mean, reset_stats.var), rtol=1e-4, atol=1e-4
    )
    mean, var = stats.mean[:, None], stats.var[:, None]  # broadcast over envs
    np.testing.assert_allclose(norm_obs[1:], _reference_normalize(raw_obs[1:], mean, var), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(norm_final, _reference_normalize(raw_final, mean, var), rtol=1e-4, atol=1e-4)


def test_normalized_obs_have_zero_mean_unit_std_after_many_steps(normalized_rollout):
    _, (norm_obs, *_) = normalized_rollout
    late = norm_obs[NORM_STEPS // 2 :].reshape(-1, 4)
    np.testing.assert_allclose(late.mean(0), 0.0, atol=0.25)
    np.testing.assert_allclose(late.std(0), 1.0, atol=0.25)


def test_normalize_obs_matches_the_wrapper_and_clips(normalized_rollout):
    (raw_obs, *_), (norm_obs, _, stats, _, final_state) = normalized_rollout
    final = envs.obs_norm_stats(final_state)
    np.testing.assert_allclose(envs.normalize_obs(final, raw_obs[-1]), norm_obs[-1], rtol=1e-5, atol=1e-5)
    huge = envs.normalize_obs(final, jnp.full((4,), 1e6))
    np.testing.assert_allclose(huge, 10.0)
    np.testing.assert_allclose(envs.normalize_obs(final, jnp.full((4,), 1e6), clip=3.0), 3.0)


def test_update_obs_norm_stats_merges_uneven_batches_exactly():
    rng = np.random.default_rng(0)
    chunks = [rng.normal(size=(3,)), rng.normal(size=(4, 3)), rng.normal(size=(2, 5, 3)) * 4 + 2]
    stats = envs.wrappers.initial_obs_norm_stats((3,))
    for chunk in chunks:
        stats = envs.update_obs_norm_stats(stats, jnp.asarray(chunk, jnp.float32))
    seen = np.concatenate([c.reshape(-1, 3) for c in chunks])
    assert float(stats.count) == len(seen)
    np.testing.assert_allclose(stats.mean, seen.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats.var, seen.var(0), rtol=1e-5, atol=1e-6)


def test_obs_norm_stats_found_through_nested_wrappers():
    env, params = envs.make("Probe-ObsDependentReward-v0")
    nested = envs.EpisodeStats(envs.NormalizeObservation(envs.BatchEnv(env, 4)))
    _, state = nested.reset(KEY, params)
    stats = envs.obs_norm_stats(state)
    assert isinstance(stats, envs.ObsNormStats) and float(stats.count) == 4
    plain = envs.BatchEnv(envs.EpisodeStats(env), 4)
    assert envs.obs_norm_stats(plain.reset(KEY, params)[1]) is None


def test_frozen_stats_never_change_and_can_be_installed():
    env, params = envs.make("Probe-ObsDependentReward-v0")
    frozen = envs.NormalizeObservation(envs.BatchEnv(env, 4), frozen=True)
    _, state = frozen.reset(KEY, params)
    assert float(envs.obs_norm_stats(state).count) == 0.0
    trained = envs.obs_norm_stats(state).replace(mean=jnp.ones(1), var=jnp.full((1,), 4.0))
    state = envs.with_obs_norm_stats(state, trained)
    obs, state, reward, *_ = frozen.step(KEY, state, jnp.zeros(4, jnp.int32), params)
    chex.assert_trees_all_close(envs.obs_norm_stats(state), trained)
    # Raw observations are ±1, so (obs − 1) / 2 is −1 or 0.
    assert set(np.round(np.asarray(obs)[:, 0], 5).tolist()) <= {-1.0, 0.0}


# --------------------------------------------------------------------------
# Action wrappers


def test_rescale_action_maps_unit_box_to_pendulum_bounds_and_clips():
    env, params = envs.make("Pendulum-v1")
    wrapped = envs.RescaleAction(env)
    space = wrapped.action_space(params)
    assert (space.low, space.high, space.shape) == (-1.0, 1.0, (1,))
    actions = jnp.array([[-1.0], [0.0], [0.5], [1.0], [3.0], [-7.0]])
    np.testing.assert_allclose(wrapped.env_action(actions, params)[:, 0], [-2, 0, 1, 2, 2, -2], atol=1e-6)
    # Bounds are read from the params in use, not fixed at construction.
    weak = params.replace(max_torque=0.5)
    np.testing.assert_allclose(wrapped.env_action(jnp.array([1.0]), weak), [0.5])
    custom = envs.RescaleAction(env, low=0.0, high=1.0)
    np.testing.assert_allclose(custom.env_action(jnp.array([0.0, 1.0]), params), [-2.0, 2.0])

    _, state = env.reset(KEY, params)
    via_wrapper = wrapped.step(KEY, state, jnp.array([0.5]), params)
    direct = env.step(KEY, state, jnp.array([1.0]), params)
    chex.assert_trees_all_close(via_wrapper[:5], direct[:5])


def test_clip_action_clips_to_bounds():
    env, params = envs.make("Pendulum-v1")
    clipped = envs.ClipAction(env)
    np.testing.assert_allclose(clipped.env_action(jnp.array([-5.0, 1.5, 9.0]), params), [-2.0, 1.5, 2.0])
    assert clipped.action_space(params).high == 2.0


@pytest.mark.parametrize("wrapper", [envs.RescaleAction, envs.ClipAction])
def test_action_wrappers_reject_discrete_spaces(wrapper):
    env, _ = envs.make("CartPole-v1")
    with pytest.raises(ValueError, match=r"continuous \(Box\) action space.*Discrete"):
        wrapper(env)


# --------------------------------------------------------------------------
# Probe environments


def play(env_id, actions, **kwargs):
    """Steps a probe eagerly; per step: (obs acted on, reward, terminated,
    truncated, final observation)."""
    env, params = envs.make(env_id, **kwargs)
    obs, state = env.reset(KEY, params)
    steps = []
    for i, action in enumerate(actions):
        next_obs, state, reward, terminated, truncated, info = env.step(
            jax.random.PRNGKey(i), state, action, params
        )
        steps.append(
            (float(obs[0]), float(reward), bool(terminated), bool(truncated), float(info["final_observation"][0]))
        )
        obs = next_obs
    return steps


def test_probe_constant_reward():
    assert play("Probe-ConstantReward-v0", [0] * 3) == [(0.0, 1.0, True, False, 0.0)] * 3


def test_probe_obs_dependent_reward():
    steps = play("Probe-ObsDependentReward-v0", [0] * 12)
    assert {obs for obs, *_ in steps} == {-1.0, 1.0}
    assert all(reward == obs and terminated and not truncated for obs, reward, terminated, truncated, _ in steps)


def test_probe_two_step_discount():
    steps = play("Probe-TwoStepDiscount-v0", [0] * 4)
    assert steps == [(0.0, 0.0, False, False, 1.0), (1.0, 1.0, True, False, 1.0)] * 2


def test_probe_action_dependent_reward():
    steps = play("Probe-ActionDependentReward-v0", [0, 1, 1, 0])
    assert [reward for _, reward, *_ in steps] == [0.0, 1.0, 1.0, 0.0]
    assert all(terminated and not truncated for _, _, terminated, truncated, _ in steps)
    env, params = envs.make("Probe-ActionDependentReward-v0")
    assert envs.num_actions(env, params) == 2


def test_probe_continuous_action():
    steps = play("Probe-ContinuousAction-v0", [jnp.array([a]) for a in (0.5, -1.0, 1.0, 0.0)])
    np.testing.assert_allclose([reward for _, reward, *_ in steps], [0.0, -2.25, -0.25, -0.25])
    assert all(terminated for _, _, terminated, _, _ in steps)
    env, params = envs.make("Probe-ContinuousAction-v0")
    assert envs.action_space_kind(env, params) == "continuous"
    assert envs.action_shape(env, params) == (1,)


def test_probe_truncation_never_terminates_and_truncates_at_the_limit():
    steps = play("Probe-Truncation-v0", [0] * 10)
    assert [truncated for *_, truncated, _ in steps] == [False] * 4 + [True] + [False] * 4 + [True]
    assert all(reward == 1.0 and not terminated for _, reward, terminated, _, _ in steps)
    short = play("Probe-Truncation-v0", [0] * 3, max_steps_in_episode=3)
    assert [truncated for *_, truncated, _ in short] == [False, False, True]


# --------------------------------------------------------------------------
# Memory probes


def first_episodes(env_id, policy, num_episodes=64, **kwargs):
    """Returns ``[N]`` of the first episodes of ``policy(first_obs, obs) ->
    actions`` (a policy shown the episode's first observation at every step:
    perfect memory of it), and the observations it acted on ``[T, N, ...]``."""
    env, params = envs.make(env_id, **kwargs)
    step = jax.vmap(env.step, in_axes=(0, 0, 0, None))
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(KEY, num_episodes), params)
    first, returns, done, seen = obs, np.zeros(num_episodes), np.zeros(num_episodes, bool), []
    for t in range(20):
        seen.append(np.asarray(obs))
        keys = jax.random.split(jax.random.fold_in(KEY, t), num_episodes)
        obs, state, reward, terminated, truncated, _ = step(keys, state, policy(first, obs), params)
        returns += np.where(done, 0.0, np.asarray(reward))
        done |= np.asarray(terminated | truncated)
        if done.all():
            return returns, np.stack(seen)
    raise AssertionError(f"{env_id}: episodes still running after 20 steps")


def always(action):
    return lambda first, obs: jnp.full(obs.shape[0], action, jnp.int32)


def test_remember_cue_pays_memory_one_and_a_blind_policy_chance():
    remember = lambda first, obs: (first[:, 0] > 0).astype(jnp.int32)  # noqa: E731
    returns, seen = first_episodes("Probe-RememberCue-v0", remember, delay=3)
    np.testing.assert_array_equal(returns, 1.0)
    cue = seen[0, :, 0]
    assert set(cue.tolist()) == {-1.0, 1.0} and seen.shape[0] == 4  # cue, then 3 blanks
    # Every observation after the first is [0.] whatever the cue, so a
    # feed-forward policy's last action ignores the cue: it earns what a
    # constant policy does, 1 on the episodes whose cue it happens to name.
    np.testing.assert_array_equal(seen[1:], 0.0)
    left, _ = first_episodes("Probe-RememberCue-v0", always(0), delay=3)
    np.testing.assert_array_equal(left, cue < 0)
    assert 0.3 < left.mean() < 0.7


def test_pixel_cue_is_a_uint8_image_an_encoder_can_read():
    env, params = envs.make("Probe-PixelCue-v0")
    space = env.observation_space(params)
    assert space.shape == (36, 36, 1) and space.dtype == jnp.uint8
    right_lit = lambda first, obs: (obs[:, 0, -1, 0] > 0).astype(jnp.int32)  # noqa: E731
    returns, seen = first_episodes("Probe-PixelCue-v0", right_lit)
    np.testing.assert_array_equal(returns, 1.0)
    assert seen.dtype == np.uint8 and set(np.unique(seen).tolist()) == {0, 255}
    # One half lit: 18 columns of 255 in every first frame.
    np.testing.assert_array_equal((seen[0] == 255).sum(axis=(1, 2, 3)), 36 * 18)
    blind, _ = first_episodes("Probe-PixelCue-v0", always(1))
    np.testing.assert_array_equal(blind, seen[0, :, 0, -1, 0] > 0)
    # With a delay, later frames are black: the same memory task in pixels.
    remember = lambda first, obs: (first[:, 0, -1, 0] > 0).astype(jnp.int32)  # noqa: E731
    returns, seen = first_episodes("Probe-PixelCue-v0", remember, size=4, delay=2)
    np.testing.assert_array_equal(returns, 1.0)
    np.testing.assert_array_equal(seen[1:], 0)


def test_memory_chain_is_reachable_and_needs_memory():
    # bsuite's MemoryChain (gymnax): the context (±1 in obs[2]) is shown at
    # the start only; the last step pays +1 for naming it, −1 otherwise.
    remember = lambda first, obs: (first[:, 2] > 0).astype(jnp.int32)  # noqa: E731
    returns, seen = first_episodes("MemoryChain-bsuite", remember)
    np.testing.assert_array_equal(returns, 1.0)
    np.testing.assert_array_equal(seen[-1, :, 2], 0.0)  # the context is gone when it is asked for
    blind, _ = first_episodes("MemoryChain-bsuite", always(0))
    np.testing.assert_array_equal(blind, np.where(seen[0, :, 2] > 0, -1.0, 1.0))
    assert abs(blind.mean()) < 0.4


def test_cartpole_without_velocities_masks_obs_and_final_observation():
    masked, params = envs.make("CartPole-v1-no-velocity", max_steps_in_episode=5)
    full, _ = envs.make("CartPole-v1")
    assert masked.name == "CartPole-v1-no-velocity"
    assert envs.observation_shape(masked, params) == (2,)
    obs, state = masked.reset(KEY, params)
    full_obs, full_state = full.reset(KEY, params)
    np.testing.assert_array_equal(obs, full_obs[jnp.array([0, 2])])  # (x, theta)
    for t, action in enumerate([0, 1, 0, 1, 0]):
        key = jax.random.PRNGKey(t)
        obs, state, reward, terminated, truncated, info = masked.step(key, state, action, params)
        full_obs, full_state, *_, full_info = full.step(key, full_state, action, params)
        assert obs.shape == (2,) and info["final_observation"].shape == (2,)
        np.testing.assert_array_equal(obs, full_obs[jnp.array([0, 2])])
        np.testing.assert_array_equal(info["final_observation"],
                                      full_info["final_observation"][jnp.array([0, 2])])
    # The time limit truncates, never terminates; auto-reset replaced obs.
    assert bool(truncated) and not bool(terminated)
    assert not np.array_equal(obs, info["final_observation"])


# --------------------------------------------------------------------------
# episode_returns


def test_episode_returns_on_probes():
    env, params = envs.make("Probe-ConstantReward-v0")
    zeros = lambda obs, key: jnp.zeros(obs.shape[0], jnp.int32)  # noqa: E731
    results = envs.episode_returns(env, params, zeros, KEY, 5)
    np.testing.assert_array_equal(results.returns, np.ones(5))
    np.testing.assert_array_equal(results.lengths, np.ones(5))
    assert results.completed.all()

    env, params = envs.make("Probe-Truncation-v0")
    results = envs.episode_returns(env, params, zeros, KEY, 3)
    np.testing.assert_array_equal(results.returns, [5.0, 5.0, 5.0])
    np.testing.assert_array_equal(results.lengths, [5, 5, 5])
    # A step cap below the episode length leaves episodes incomplete.
    capped = envs.episode_returns(env, params, zeros, KEY, 3, max_steps=3)
    np.testing.assert_array_equal(capped.returns, [3.0, 3.0, 3.0])
    assert not capped.completed.any()


def test_episode_returns_jits_and_vmaps_over_keys():
    env, params = envs.make("Probe-ObsDependentReward-v0")
    zeros = lambda obs, key: jnp.zeros(obs.shape[0], jnp.int32)  # noqa: E731
    returns = jax.jit(jax.vmap(lambda k: envs.episode_returns(env, params, zeros, k, 6).returns))(
        jax.random.split(KEY, 3)
    )
    assert returns.shape == (3, 6)
    assert set(np.asarray(returns).ravel().tolist()) <= {-1.0, 1.0}


def test_episode_returns_cartpole_always_left_matches_eager_reference():
    env, params = envs.make("CartPole-v1")
    always_left = lambda obs, key: jnp.zeros(obs.shape[0], jnp.int32)  # noqa: E731
    num_episodes = 6
    results = jax.jit(lambda key: envs.episode_returns(env, params, always_left, key, num_episodes))(KEY)

    # Reference: the documented key schedule, then plain env.step calls.
    reset_key, _ = jax.random.split(KEY)
    expected_returns, expected_lengths = [], []
    for reset_key_i in jax.random.split(reset_key, num_episodes):
        _, state = env.reset(reset_key_i, params)
        total, length, done = 0.0, 0, False
        while not done:
            _, state, reward, terminated, truncated, _ = env.step(KEY, state, 0, params)
            total, length = total + float(reward), length + 1
            done = bool(terminated) or bool(truncated)
        expected_returns.append(total)
        expected_lengths.append(length)

    np.testing.assert_allclose(results.returns, expected_returns)
    np.testing.assert_array_equal(results.lengths, expected_lengths)
    assert results.completed.all()
    assert all(5 <= length <= 15 for length in expected_lengths)  # pushing left fails fast
