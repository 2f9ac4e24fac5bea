"""Environment families behind ``envs.make("<family>:<id>")``: the gymnax
step contract (spaces, auto-reset, final observations, time limits as
truncations), action masks, MultiDiscrete and Dict spaces, EnvPool's host
batch, and PPO running on a Brax and a Craftax task.

Each family's random-policy rollout is jitted once (a module-scoped fixture)
with tiny batches and time limits, and every check reads those arrays.
"""

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import spaces

from jaxrl import envs, run
from jaxrl.agents import ppo
from jaxrl.envs.families import craftax as craftax_family

KEY = jax.random.PRNGKey(0)
NUM_ENVS = 2
STEPS = 12

# id, keywords that shorten the episode to LIMIT steps
LIMIT = 4
CASES = {
    "brax": ("brax:inverted_pendulum", {"max_steps_in_episode": LIMIT}),
    "jumanji": ("jumanji:Snake-v1", {"time_limit": LIMIT}),
    "craftax": ("craftax:Craftax-Classic-Symbolic-v1", {"max_timesteps": LIMIT}),
    "xminigrid": ("xminigrid:MiniGrid-DoorKey-5x5", {"max_steps": LIMIT}),
}


def _policy(env, env_params):
    """Uniform random actions; legal ones only where the env masks them.
    Continuous actions are kept small so Brax's pendulum outlives the limit."""
    space = env.action_space(env_params)

    def act(key, obs):
        mask = envs.action_mask(env, obs, env_params)
        if mask is not None:
            return jax.random.categorical(key, jnp.where(mask, 0.0, -jnp.inf)).astype(space.dtype)
        if isinstance(space, spaces.Box):
            return 0.01 * jax.random.uniform(key, space.shape, minval=-1.0, maxval=1.0)
        return space.sample(key)

    return jax.vmap(act)


def _rollout(env, env_params, first_state=lambda state: state):
    """Jitted ``key -> (first obs, per-step arrays)`` of a random policy in
    ``BatchEnv(EpisodeStats(env))`` for STEPS steps, from ``first_state`` of
    the reset's (unbatched, unwrapped) env state."""
    batch = envs.BatchEnv(envs.EpisodeStats(env), NUM_ENVS)
    policy = _policy(env, env_params)

    def run(key):
        k_reset, k_run = jax.random.split(key)
        obs0, state = batch.reset(k_reset, env_params)
        state = state.replace(env_state=jax.vmap(first_state)(state.env_state))

        def body(carry, key):
            obs, state = carry
            k_act, k_step = jax.random.split(key)
            action = policy(jax.random.split(k_act, NUM_ENVS), obs)
            next_obs, state, reward, terminated, truncated, info = batch.step(k_step, state, action, env_params)
            out = dict(obs=obs, action=action, next_obs=next_obs, reward=reward, terminated=terminated,
                       truncated=truncated, final_obs=info["final_observation"],
                       length=info["episode_length"],
                       **{k: info[k] for k in ("achievements", "Achievements/collect_wood") if k in info})
            return (next_obs, state), out

        _, out = jax.lax.scan(body, (obs0, state), jax.random.split(k_run, STEPS))
        return obs0, out

    return jax.jit(run)


def _with_wood_collected(state):
    """A Craftax state whose episode has unlocked ``collect_wood`` already."""
    wood = craftax_family.achievement_names("Craftax-Classic-Symbolic-v1").index("collect_wood")
    return state.replace(achievements=state.achievements.at[wood].set(True))


# How each family's first episodes start: Craftax's with an achievement
# unlocked, so the rollout shows what its step reports of it.
FIRST_STATE = {"craftax": _with_wood_collected}


@pytest.fixture(scope="module", params=list(CASES))
def family_run(request):
    env_id, kwargs = CASES[request.param]
    env, env_params = envs.make(env_id, **kwargs)
    run = _rollout(env, env_params, **({"first_state": FIRST_STATE[request.param]}
                                       if request.param in FIRST_STATE else {}))
    obs0, out = run(KEY)
    return request.param, env, env_params, obs0, jax.tree.map(np.asarray, out), run


def _leaves_with_spaces(obs, space):
    if isinstance(space, spaces.Dict):
        return [pair for k in space.spaces for pair in _leaves_with_spaces(obs[k], space.spaces[k])]
    return [(obs, space)]


def test_observations_match_the_observation_space(family_run):
    _, env, env_params, obs0, out, _ = family_run
    space = env.observation_space(env_params)
    for obs, batch_shape in ((obs0, (NUM_ENVS,)), (out["obs"], (STEPS, NUM_ENVS)),
                             (out["final_obs"], (STEPS, NUM_ENVS))):
        for leaf, leaf_space in _leaves_with_spaces(obs, space):
            assert leaf.shape == (*batch_shape, *leaf_space.shape)
            assert leaf.dtype == jnp.dtype(leaf_space.dtype)
    assert out["reward"].shape == out["terminated"].shape == out["truncated"].shape == (STEPS, NUM_ENVS)
    assert out["reward"].dtype == np.float32
    assert out["terminated"].dtype == out["truncated"].dtype == np.bool_


def test_time_limit_is_a_truncation_never_a_termination(family_run):
    _, _, _, _, out, _ = family_run
    done = out["terminated"] | out["truncated"]
    assert out["truncated"].any(), "the short time limit must end some episode"
    assert not (out["terminated"] & out["truncated"]).any()
    at_limit = done & (out["length"] == LIMIT)
    np.testing.assert_array_equal(out["truncated"], at_limit)
    assert (out["length"][done] <= LIMIT).all()


def test_every_family_declares_its_time_limit_through_wrappers(family_run):
    _, env, env_params, *_ = family_run
    assert envs.step_limit(envs.EpisodeStats(env), env_params) == LIMIT


def test_evaluation_is_bounded_by_a_family_time_limit():
    """Jumanji's params hold no max_steps_in_episode; evaluation reads the
    time limit from the env instead, and every episode ends within it."""
    env, env_params = envs.make(*CASES["jumanji"][:1], **CASES["jumanji"][1])
    act = _policy(env, env_params)
    policy = lambda obs, key: act(jax.random.split(key, jax.tree.leaves(obs)[0].shape[0]), obs)
    results = envs.episode_returns(env, env_params, policy, KEY, 3)
    assert np.asarray(results.completed).all()
    assert (np.asarray(results.lengths) <= LIMIT).all()


def test_auto_reset_keeps_the_final_observation(family_run):
    _, _, _, _, out, _ = family_run
    done = out["terminated"] | out["truncated"]
    obs_leaves = jax.tree.leaves(out["next_obs"])
    final_leaves = jax.tree.leaves(out["final_obs"])
    for next_obs, final_obs in zip(obs_leaves, final_leaves):
        # Where no episode ended, the final observation is the next one.
        np.testing.assert_array_equal(next_obs[~done], final_obs[~done])
    # Where one ended, the next observation is a fresh episode's first one.
    differs = np.zeros(done.shape, bool)
    for next_obs, final_obs in zip(obs_leaves, final_leaves):
        differs |= (next_obs != final_obs).reshape(*done.shape, -1).any(-1)
    assert differs[done].any()


def test_the_rollout_is_deterministic_and_keyed(family_run):
    *_, out, run = family_run
    again = jax.tree.map(np.asarray, run(KEY)[1])
    other = jax.tree.map(np.asarray, run(jax.random.PRNGKey(1))[1])
    for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(again)):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(other)))


def test_craftax_reports_what_each_episode_unlocked_at_its_last_step(family_run):
    """``info["achievements"]`` is read before the auto-reset: the step that
    ends an episode still shows what it unlocked, and the next episode starts
    with none."""
    name, *_, out, _ = family_run
    if name != "craftax":
        assert "achievements" not in out
        return
    names = craftax_family.achievement_names("Craftax-Classic-Symbolic-v1")
    assert len(names) == 22 and out["achievements"].shape == (STEPS, NUM_ENVS, 22)
    wood = out["achievements"][..., names.index("collect_wood")]
    first_end = LIMIT - 1  # the first episodes (wood unlocked at reset) are truncated here
    assert out["truncated"][first_end].all() and wood[:LIMIT].all()
    np.testing.assert_array_equal(out["Achievements/collect_wood"][first_end], 100.0)
    assert not wood[LIMIT].all(), "the next episodes start without the achievement"


# --------------------------------------------------------------------------
# masks, MultiDiscrete and Dict observations


def test_snake_presents_its_action_mask_and_masked_actions_are_never_taken(family_run):
    name, env, env_params, obs0, out, _ = family_run
    if name != "jumanji":
        assert not envs.has_action_mask(env, env_params)
        assert envs.action_mask(env, obs0, env_params) is None
        return
    assert envs.has_action_mask(env, env_params)
    assert envs.action_mask_kind(env, env_params) == "joint"
    mask = envs.action_mask(env, out["obs"], env_params)
    assert mask.shape == (STEPS, NUM_ENVS, 4) and mask.dtype == np.bool_
    assert not mask.all(), "Snake forbids turning back onto itself"
    taken = np.take_along_axis(mask, out["action"][..., None].astype(int), -1)[..., 0]
    assert taken.all()


def test_flatten_observation_keeps_the_mask_beside_one_vector(family_run):
    name, env, env_params, _, out, _ = family_run
    flat_env = envs.FlattenObservation(env)
    if name != "jumanji":
        assert flat_env.observation_space(env_params) is not None
        return
    shapes = envs.observation_shapes(env, env_params)
    assert shapes == {"grid": (12, 12, 5), "step_count": (), "action_mask": (4,)}
    with pytest.raises(ValueError, match="observation_shapes"):
        envs.observation_shape(env, env_params)
    space = flat_env.observation_space(env_params)
    assert isinstance(space, spaces.Dict) and space.spaces["observation"].shape == (12 * 12 * 5 + 1,)
    flat = flat_env.flatten(out["obs"], env_params)
    assert flat["observation"].shape == (STEPS, NUM_ENVS, 12 * 12 * 5 + 1)
    np.testing.assert_array_equal(flat["action_mask"], out["obs"]["action_mask"])
    np.testing.assert_array_equal(flat["observation"][..., :-1],
                                  out["obs"]["grid"].reshape(STEPS, NUM_ENVS, -1))
    np.testing.assert_array_equal(envs.without_action_mask(flat_env, flat, env_params), flat["observation"])


def test_jumanji_envs_without_a_time_limit_bound_their_episodes_by_their_rules():
    """Knapsack packs one item a step, TSP visits one city a step: evaluation
    is bounded by that. An env with no bound at all is refused before
    anything compiles when the run asks for evaluation episodes."""
    bounds = {"jumanji:Knapsack-v1": 50, "jumanji:TSP-v1": 20, "jumanji:Sudoku-very-easy-v0": 81,
              "jumanji:Game2048-v1": None}
    for env_id, bound in bounds.items():
        env, env_params = envs.make(env_id)
        assert envs.step_limit(envs.EpisodeStats(env), env_params) == bound, env_id
    agent = ppo.make(env, env_params, ppo.Config(num_envs=2, rollout_len=4, num_minibatches=1))
    with pytest.raises(ValueError, match=r"eval_episodes=2 needs .*jumanji:Game2048-v1 declares none"):
        run.train(agent, KEY, 64, eval_episodes=2, progress=False)


def test_multi_discrete_actions_and_their_joint_mask():
    env, env_params = envs.make("jumanji:BinPack-v2")
    assert envs.action_space_kind(env, env_params) == envs.MULTI_DISCRETE
    assert envs.action_dims(env, env_params) == (40, 20)
    assert envs.action_shape(env, env_params) == (2,)
    assert envs.action_mask_kind(env, env_params) == "joint"
    with pytest.raises(ValueError, match="Discrete action space"):
        envs.num_actions(env, env_params)


def test_per_dimension_masks_and_flattened_steps():
    env, env_params = envs.make("jumanji:Cleaner-v0")
    assert envs.action_dims(env, env_params) == (4, 4, 4)
    assert envs.action_mask_kind(env, env_params) == "per_dimension"
    with pytest.raises(ValueError, match="Dict"):
        envs.NormalizeObservation(env)
    flat_env = envs.BatchEnv(envs.FlattenObservation(env), NUM_ENVS)
    obs, state = flat_env.reset(KEY, env_params)
    action = jnp.zeros((NUM_ENVS, 3), jnp.int32)
    next_obs, *_, info = flat_env.step(KEY, state, action, env_params)
    size = flat_env.observation_space(env_params).spaces["observation"].shape[0]
    for o in (obs, next_obs, info["final_observation"]):
        assert o["observation"].shape == (NUM_ENVS, size) and o["observation"].dtype == jnp.float32
        assert o["action_mask"].shape == (NUM_ENVS, 3, 4)


def test_multi_discrete_space_samples_and_contains():
    space = envs.MultiDiscrete([3, 5])
    samples = jax.vmap(space.sample)(jax.random.split(KEY, 64))
    assert samples.shape == (64, 2) and samples.dtype == jnp.int32
    assert (samples[:, 0] < 3).all() and (samples[:, 1] < 5).all() and (samples[:, 1] >= 3).any()
    assert space.contains(jnp.array([2, 4])) and not space.contains(jnp.array([3, 0]))
    with pytest.raises(ValueError):
        envs.MultiDiscrete([])


def test_gymnax_envs_keep_their_spaces_and_have_no_mask():
    env, env_params = envs.make("CartPole-v1")
    assert envs.action_dims(env, env_params) == (2,)
    assert envs.observation_shapes(env, env_params) == (4,)
    assert envs.action_mask_kind(env, env_params) is None


# --------------------------------------------------------------------------
# ids and errors (nothing compiles)


def test_every_installed_family_lists_its_ids():
    listed = envs.list_family_ids()
    for env_id, _ in CASES.values():
        family = env_id.split(":")[0]
        assert env_id in listed[family]
    assert "craftax:Craftax-Classic-Pixels-v1" in listed["craftax"]
    assert "brax:ant" in listed["brax"]


def test_craftax_pixels_and_brax_defaults_have_their_spaces():
    env, env_params = envs.make("craftax:Craftax-Classic-Pixels-v1")
    assert envs.observation_shape(env, env_params) == (63, 63, 3)
    assert envs.num_actions(env, env_params) == 17
    env, env_params = envs.make("brax:inverted_pendulum")
    assert envs.observation_shape(env, env_params) == (4,)
    assert envs.action_space_kind(env, env_params) == "continuous"
    assert env_params.max_steps_in_episode == 1000


@pytest.mark.parametrize("env_id, message", [
    ("nope:thing", "unknown environment family 'nope'.*brax, jumanji, craftax, xminigrid"),
    ("brax:not_a_task", "unknown brax environment 'not_a_task'.*inverted_pendulum"),
    ("jumanji:", "names no task"),
    ("gymnasium:CartPole-v1", "host environment"),
    ("craftax:Craftax-Classic-Symbolic-v1", "unknown keyword"),
])
def test_bad_ids_raise_one_line_value_errors(env_id, message):
    kwargs = {"bogus": 1} if env_id.startswith("craftax") else {}
    with pytest.raises(ValueError, match=message) as e:
        envs.make(env_id, **kwargs)
    assert "\n" not in str(e.value)


def test_a_missing_package_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "xminigrid" else real(name, *a))
    with pytest.raises(ValueError, match=r"pip install 'jaxrl\[minigrid\]'"):
        envs.make("xminigrid:MiniGrid-Empty-5x5")


def test_plain_ids_stay_gymnax():
    env, _ = envs.make("CartPole-v1")
    assert type(env).__module__.startswith("gymnax")
    assert envs.host_env_factory("CartPole-v1") is None
    assert envs.host_env_factory("brax:ant") is None


# --------------------------------------------------------------------------
# EnvPool on the host


def test_envpool_batch_env_matches_the_gymnasium_interface():
    from jaxrl.envs.envpool_env import EnvPoolBatchEnv
    from jaxrl.envs.gymnasium_env import GymnasiumBatchEnv

    pool = envs.host_env_factory("envpool:CartPole-v1")(3, 0)
    gym = GymnasiumBatchEnv("CartPole-v1", 3, seed=0)
    try:
        assert isinstance(pool, EnvPoolBatchEnv)
        assert repr(pool.observation_space()) == repr(gym.observation_space())
        assert repr(pool.action_space()) == repr(gym.action_space())
        obs = pool.reset()
        assert obs.shape == (3, 4) and obs.dtype == np.float32
        ended = 0
        for t in range(60):
            obs, reward, terminated, truncated, final_obs, ep_return, done = pool.step(np.ones(3, np.int64))
            assert obs.shape == final_obs.shape == (3, 4)
            np.testing.assert_array_equal(obs[~done], final_obs[~done])
            if done.any():
                # Reset in the same step: a fresh episode starts near the origin.
                assert (np.abs(obs[done]) < 0.05).all() and (np.abs(final_obs[done]) > 0.1).any()
                assert (ep_return[done] > 0).all() and (ep_return[~done] == 0).all()
                ended += done.sum()
        # Pushing right ends an episode in ~10 steps: every action is used.
        assert ended >= 3 * 60 // 15
    finally:
        pool.close()
        gym.close()


def test_envpool_rejects_an_unknown_task():
    from jaxrl.envs.envpool_env import EnvPoolBatchEnv

    with pytest.raises(ValueError, match="unknown EnvPool task"):
        EnvPoolBatchEnv("envpool:NoSuchTask-v0", 1)


# --------------------------------------------------------------------------
# an agent runs on the new families


# Brax stands for the families here: their adapters share one base class and
# one step contract (checked for every family above). PPO compiled around
# Craftax's step and world generation takes about 90 s on 2 cores, more than
# the suite can spend on one test.
@pytest.mark.slow
def test_ppo_balances_brax_inverted_pendulum():
    """PPO learns a Brax task on the CPU: brax:inverted_pendulum at Brax's own
    episode length (1000 steps, so an episode returns at most 1000), Brax's
    discount and learning rate for it, 2.6·10^5 env steps, one seed. (Measured
    by benchmarks/brax_learning.py: 1000 on both seeds at its first
    evaluation, 2.3·10^5 steps; benchmarks/README.md.) The run stops with an
    error on any non-finite metric, so finishing also says every metric was finite."""
    env, env_params = envs.make("brax:inverted_pendulum")
    config = ppo.Config(num_envs=32, rollout_len=64, num_minibatches=8, num_epochs=4, learning_rate=3e-4,
                        gamma=0.97, normalize_obs=True, total_steps=262_144)
    result = run.train(ppo.make(env, env_params, config), KEY, config.total_steps, eval_episodes=5,
                       progress=False)
    assert min(result.summary["eval_return"]) >= 950.0, result.summary["eval_return"]
