"""IMPALA: probe environments with known answers, the actors' policy lag, the
V-trace correction against no correction, config errors, a data-parallel
learner over two (forced CPU) devices, the CLI, and learning CartPole-v1 with
lagged actors (`slow`). The probes and the sweep it shares with PPO are in
test_actor_critic.py."""

from __future__ import annotations

import json
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_actor_critic import probe_agent, train, value_of
from xla_env import run_on_two_devices

from jaxrl import envs
from jaxrl.agents import impala
from jaxrl.cli import main



# ---------------------------------------------------------------- probes

@pytest.mark.parametrize(
    "env_id, observations, expected, iterations",
    [
        ("Probe-ConstantReward-v0", [[0.0]], [1.0], 300),
        ("Probe-ObsDependentReward-v0", [[-1.0], [1.0]], [-1.0, 1.0], 300),
        ("Probe-TwoStepDiscount-v0", [[0.0], [1.0]], [0.9, 1.0], 300),
        # Bootstrapping through the time limit: V = 1/(1 - γ) = 10, while an
        # agent that treats truncation as termination learns about 1..5.
        ("Probe-Truncation-v0", [[0.0]], [10.0], 1000),
    ],
)
def test_value_probes_learn_known_values(env_id, observations, expected, iterations):
    agent = probe_agent("impala", env_id)
    state, _ = train(agent, jax.random.PRNGKey(0), iterations)
    values = value_of(agent, state, observations)
    np.testing.assert_allclose(values, expected, atol=0.1 * max(1.0, max(map(abs, expected))))


# ---------------------------------------------------------------- lag

def lag_trace(policy_lag, iterations=8):
    """Per iteration i: the learner's θ_i, the parameters and version the
    actors act with, and the step's metrics."""
    env, env_params = envs.make("CartPole-v1")
    config = impala.Config(num_envs=4, rollout_len=4, policy_lag=policy_lag, hidden_sizes=(8,),
                           learning_rate=1e-2)
    agent = impala.make(env, env_params, config)

    def body(state, _):
        behaviour, version = impala.behaviour_params(state, policy_lag)
        new_state, metrics = agent.step(state)
        return new_state, (state.params, behaviour, version, metrics)

    run = jax.jit(lambda k: jax.lax.scan(body, agent.init(k), length=iterations)[1])
    return run(jax.random.PRNGKey(0))


def _leaf_equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("lag", [1, 3])
def test_actors_act_with_parameters_policy_lag_updates_old(lag):
    iterations = 8
    learner_params, behaviour, versions, metrics = lag_trace(lag, iterations)
    at = lambda tree, i: jax.tree.map(lambda x: x[i], tree)
    for i in range(iterations):
        old = max(i - lag, 0)
        assert _leaf_equal(at(behaviour, i), at(learner_params, old)), f"iteration {i}"
        assert int(versions[i]) == old
        if i > 0:  # the learner has moved on: the actors' policy really is stale
            assert not _leaf_equal(at(behaviour, i), at(learner_params, i)), f"iteration {i}"
    np.testing.assert_array_equal(metrics["policy_lag"], np.minimum(np.arange(iterations), lag))
    # The learner's own forward pass sees the stale actions as off-policy:
    # π/μ ≠ 1 once the parameters differ (and exactly 1 before they do).
    assert float(metrics["mean_rho"][0]) == 1.0
    assert np.all(np.abs(np.asarray(metrics["kl_behaviour"][1:])) > 0)


def test_policy_lag_zero_is_on_policy():
    learner_params, behaviour, versions, metrics = lag_trace(0, 4)
    assert _leaf_equal(behaviour, learner_params)
    np.testing.assert_array_equal(metrics["policy_lag"], 0.0)
    np.testing.assert_allclose(metrics["mean_rho"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(metrics["kl_behaviour"], 0.0, atol=1e-6)


# ---------------------------------------------------------------- V-trace

def one_step_bandit_batch(num=8192, seed=0):
    """Probe-ActionDependentReward-v0 played by a uniform behaviour policy μ:
    reward 1 for action 1, episodes of one step, log μ(a) = log ½."""
    actions = jax.random.bernoulli(jax.random.PRNGKey(seed), 0.5, (1, num)).astype(jnp.int32)
    zeros_obs = jnp.zeros((1, num, 1), jnp.float32)
    return impala.Trajectory(
        obs=zeros_obs,
        action=actions,
        behaviour_log_prob=jnp.full((1, num), jnp.log(0.5)),
        reward=actions.astype(jnp.float32),
        terminated=jnp.ones((1, num), bool),
        truncated=jnp.zeros((1, num), bool),
        final_obs=zeros_obs,
        next_obs=zeros_obs[0],
        episode_return=jnp.zeros((1, num)),
        episode_done=jnp.zeros((1, num), bool),
    )


def bandit_params(learner, p_best, value):
    """Parameters with π(1) = p_best and V ≡ value (heads set by hand)."""
    params = learner.init_params(jax.random.PRNGKey(0))
    inner = dict(params["params"])
    inner["Dense_0"] = {"kernel": jnp.zeros_like(inner["Dense_0"]["kernel"]),
                        "bias": jnp.full_like(inner["Dense_0"]["bias"], value)}
    inner["Dense_1"] = {"kernel": jnp.zeros_like(inner["Dense_1"]["kernel"]),
                        "bias": jnp.array([0.0, np.log(p_best / (1 - p_best))], jnp.float32)}
    return {"params": inner}


@pytest.mark.parametrize(
    "correction, clip_rho, fixed_point",
    [
        # ρ̄ above every π/μ: V-trace's fixed point is V^π = π(1) = 0.9.
        ("vtrace", 10.0, 0.9),
        # ρ̄ = 1: the fixed point is V of π_ρ̄ ∝ min(ρ̄μ, π) (the paper's Theorem 1):
        # min(.5, .9) / (min(.5, .9) + min(.5, .1)) = 5/6.
        ("vtrace", 1.0, 5 / 6),
        # No correction: the targets estimate V^μ = 0.5 whatever π is.
        ("none", 10.0, 0.5),
    ],
)
def test_vtrace_targets_reach_the_target_policy_value(correction, clip_rho, fixed_point):
    env, env_params = envs.make("Probe-ActionDependentReward-v0")
    config = impala.Config(hidden_sizes=(8,), correction=correction, clip_rho_threshold=clip_rho,
                           clip_pg_rho_threshold=clip_rho)
    learner = impala.make_learner(env, env_params, config)
    traj = one_step_bandit_batch()
    hp = config.hparams()
    targets = jax.jit(learner.targets)
    # At the fixed point the mean V-trace correction vs − V vanishes; away
    # from it the correction points towards it.
    for value in (fixed_point - 0.2, fixed_point, fixed_point + 0.2):
        vs = targets(bandit_params(learner, 0.9, value), traj, hp).vs
        correction_mean = float(jnp.mean(vs)) - value
        if value == fixed_point:
            assert abs(correction_mean) < 0.03, (value, correction_mean)
        else:
            assert np.sign(correction_mean) == np.sign(fixed_point - value), (value, correction_mean)


def test_baseline_trained_off_policy_learns_the_target_policy_value():
    """Learner updates on one off-policy batch (μ uniform, π(1) = 0.9) until
    the baseline settles: with V-trace it lands on V^π = 0.9, without
    correction on V^μ = 0.5. The policy is held (nearly) still by a ~0
    policy-gradient weight (ρ̄_pg) and no entropy cost."""
    env, env_params = envs.make("Probe-ActionDependentReward-v0")
    results = {}
    for correction in ("vtrace", "none"):
        config = impala.Config(hidden_sizes=(8,), correction=correction, clip_rho_threshold=10.0,
                               clip_c_threshold=10.0, learning_rate=3e-2, anneal_lr=False,
                               entropy_cost=0.0)
        learner = impala.make_learner(env, env_params, config)
        hp = config.hparams().replace(clip_pg_rho_threshold=jnp.float32(1e-12))
        traj = one_step_bandit_batch(2048)
        params = bandit_params(learner, 0.9, 0.0)
        opt_state = learner.init_opt_state(params, hp)

        def body(carry, i):
            params, opt_state = carry
            params, opt_state, _ = learner.update(params, opt_state, hp, traj, i)
            return (params, opt_state), None

        (params, _), _ = jax.jit(lambda c: jax.lax.scan(body, c, jnp.arange(300)))((params, opt_state))
        results[correction] = float(learner.network.apply(params, jnp.zeros((1,)))[1])
    assert abs(results["vtrace"] - 0.9) < 0.05, results
    assert abs(results["none"] - 0.5) < 0.05, results


# ---------------------------------------------------------------- config

@pytest.mark.parametrize(
    "field, value",
    [
        ("num_envs", 0),
        ("policy_lag", -1),
        ("correction", "retrace"),
        ("optimizer", "sgd"),
        ("gamma", 1.5),
        ("clip_rho_threshold", 0.0),
        ("entropy_cost", -0.1),
        ("hidden_sizes", ()),
    ],
)
def test_config_errors_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        impala.Config(**{field: value}).validate()



@pytest.mark.parametrize(
    "field, value, allowed",
    [
        ("rollout_len", 0, "a positive integer"),
        ("policy_lag", -1, "an integer >= 0"),
        ("rmsprop_eps", 0.0, "a positive number"),
        ("baseline_cost", -0.5, "a number >= 0"),
        ("vtrace_lambda", 1.5, "a number in [0, 1]"),
        ("torso", "resnet", "one of ('auto', 'mlp', 'minatar_cnn', 'nature_cnn', 'impala_resnet')"),
    ],
)
def test_config_errors_say_what_is_allowed(field, value, allowed):
    with pytest.raises(ValueError) as error:
        impala.Config(**{field: value}).validate()
    assert str(error.value) == f"impala.Config.{field}={value!r} is invalid: expected {allowed}"


def test_hparams_are_the_swept_fields_in_order():
    hparams = impala.Config(gamma=0.9).hparams()
    assert impala.HParams.field_names() == (
        "learning_rate", "gamma", "baseline_cost", "entropy_cost", "clip_rho_threshold",
        "clip_c_threshold", "clip_pg_rho_threshold", "vtrace_lambda", "max_grad_norm")
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(hparams))
    assert float(hparams.gamma) == np.float32(0.9)

# ---------------------------------------------------------------- several devices

MULTI_DEVICE_SCRIPT = textwrap.dedent(
    """
    import json, warnings, jax, jax.numpy as jnp, numpy as np
    from jaxrl import envs
    from jaxrl.agents import impala
    from jaxrl.distributed import data_parallel, make_mesh

    env, env_params = envs.make("CartPole-v1")
    agent = impala.make(env, env_params, impala.Config(num_envs=4, rollout_len=4, policy_lag=2,
                                                       hidden_sizes=(8,)))
    run = jax.jit(lambda s: jax.lax.scan(lambda s, _: agent.step(s), s, length=3))
    state = agent.init(jax.random.PRNGKey(0))
    mesh = jax.make_mesh((2,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sharded = impala.shard_state(state, mesh)
    one, _ = run(jax.device_put(state, jax.devices()[0]))
    two, _ = run(sharded)
    diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
               for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(two.params)))
    hlo = jax.jit(agent.step).lower(sharded).compile().as_text()
    # The public wrapper (the one DPPO uses) places the state the same way.
    wrapped = data_parallel(agent, make_mesh(2))
    three, _ = jax.jit(lambda s: jax.lax.scan(lambda s, _: wrapped.step(s), s, length=3))(
        wrapped.init(jax.random.PRNGKey(0)))
    wrapper_diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                       for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(three.params)))
    try:
        impala.shard_state(impala.make(env, env_params, impala.Config(num_envs=3)).init(
            jax.random.PRNGKey(0)), mesh)
        error = ""
    except ValueError as e:
        error = str(e)
    print(json.dumps({
        "devices": jax.device_count(),
        "obs_devices": len(two.obs.sharding.device_set),
        "obs_shard_rows": [s.data.shape[0] for s in two.obs.addressable_shards],
        "params_replicated": all(x.sharding.is_fully_replicated for x in jax.tree.leaves(two.params)),
        "params_devices": len(jax.tree.leaves(two.params)[0].sharding.device_set),
        "param_diff": diff,
        "wrapper_diff": wrapper_diff,
        "wrapper_obs_shard_rows": [s.data.shape[0] for s in three.obs.addressable_shards],
        "all_reduce": "all-reduce" in hlo,
        "error": error,
        "deprecated": [str(w.message) for w in caught if w.category is DeprecationWarning],
    }))
    """
)


def test_learner_is_data_parallel_over_two_devices():
    out = json.loads(run_on_two_devices(MULTI_DEVICE_SCRIPT).strip().splitlines()[-1])
    assert out["devices"] == 2
    # Each device steps half of the environments ...
    assert out["obs_devices"] == 2 and out["obs_shard_rows"] == [2, 2]
    # ... and the learners stay synchronised: one all-reduced gradient, the
    # same replicated parameters, equal to the single-device run.
    assert out["params_replicated"] and out["params_devices"] == 2
    assert out["all_reduce"]
    assert out["param_diff"] < 1e-5
    # jaxrl.distributed.data_parallel, the wrapper DPPO uses, gives the same run.
    assert out["wrapper_obs_shard_rows"] == [2, 2] and out["wrapper_diff"] < 1e-5
    assert "num_envs=3" in out["error"] and "number of devices (2)" in out["error"]
    # shard_state is the deprecated spelling of data_parallel's placement.
    assert len(out["deprecated"]) == 1 and "data_parallel" in out["deprecated"][0]


# ---------------------------------------------------------------- CLI

def test_cli_trains_impala(tmp_path, capsys):
    out_dir = tmp_path / "run"
    argv = ["train", "impala", "--env", "CartPole-v1", "--out", str(out_dir),
            "--total-steps", "640", "--seeds", "1", "--eval-episodes", "2", "--no-progress",
            "--set", "num_envs=4", "--set", "rollout_len=8", "--set", "policy_lag=2",
            "--set", "hidden_sizes=8,8"]
    assert main(argv) == 0
    config = json.loads((out_dir / "config.json").read_text())
    assert config["algorithm"] == "impala" and config["agent_config"]["policy_lag"] == 2
    assert config["agent_config"]["total_steps"] == 640
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["env_steps"] == 640 and len(summary["eval_return"]) == 1
    assert "policy_lag" in (out_dir / "metrics.csv").read_text().splitlines()[0]


def test_cli_rejects_a_bad_setting_in_one_line(tmp_path, capsys):
    status = main(["train", "impala", "--out", str(tmp_path / "bad"), "--set", "correction=retrace"])
    err = capsys.readouterr().err
    assert status == 2 and "correction" in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------- learning

@pytest.mark.slow
def test_cartpole_solved_with_lagged_actors():
    """Actors 4 updates behind the learner, V-trace-corrected: CartPole-v1
    evaluates at >= 475 within 10^6 env steps on at least 3 of 4 seeds.
    (Measured with the default Config on seeds 0-7: 500 on six, 498.75 on
    one, 218 on seed 3; a single unlucky seed is not a regression.)"""
    config = impala.Config(policy_lag=4, total_steps=1_000_000)
    env, env_params = envs.make("CartPole-v1")
    agent = impala.make(env, env_params, config)
    iterations = config.total_steps // agent.env_steps_per_step

    def run(key):
        state = agent.init(key)
        state, metrics = jax.lax.scan(lambda s, _: agent.step(s), state, length=iterations)
        return state, metrics["policy_lag"]

    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(4)])
    states, lags = jax.jit(jax.vmap(run))(keys)
    assert np.all(np.asarray(lags)[:, 4:] == 4)
    evaluate = jax.jit(jax.vmap(lambda s: jnp.mean(agent.evaluate(s, jax.random.PRNGKey(123), 20))))
    returns = np.asarray(evaluate(states))
    assert np.sum(returns >= 475) >= 3, f"evaluation returns per seed {returns}"

