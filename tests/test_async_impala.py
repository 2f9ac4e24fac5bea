"""Asynchronous IMPALA: the Gymnasium host adapter, the parameter store and
batching, the policy lag the threads produce (0 when synchronous), failures
in any thread reaching the caller with no thread left behind, Ctrl-C with a
final checkpoint, a data-parallel learner over two forced CPU devices, the
CLI, and learning CartPole-v1 with two actor threads (`slow`)."""

from __future__ import annotations

import _thread
import json
import signal
import textwrap
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from xla_env import run_on_two_devices
from gymnax.environments import spaces

from jaxrl.agents import impala
from jaxrl.cli import main
from jaxrl.distributed import async_impala as ai
from jaxrl.envs import gymnasium_env
from jaxrl.run.loop import TrainingDiverged

SMALL = impala.Config(num_envs=4, rollout_len=5, hidden_sizes=(16,), anneal_lr=False,
                      learning_rate=3e-3, entropy_cost=0.0, gamma=0.9)


class CountdownEnv:
    """A host batch env (the GymnasiumBatchEnv interface): observation [1.0],
    reward 1 on every step, episodes terminate after ``length`` steps, so the
    value of the observation is Σ_{k<length} γ^k. ``fail_after`` steps raise."""

    created = 0

    def __init__(self, num_envs, seed, length=1, fail_after=None):
        self.num_envs, self.length, self.fail_after = num_envs, length, fail_after
        self.t = np.zeros(num_envs, int)
        self.steps = 0
        self.failed_at = None

    def observation_space(self, params=None):
        return spaces.Box(-1.0, 1.0, (1,), np.float32)

    def action_space(self, params=None):
        return spaces.Discrete(2)

    def reset(self):
        return np.ones((self.num_envs, 1), np.float32)

    def step(self, action):
        self.steps += 1
        if self.fail_after is not None and self.steps > self.fail_after:
            self.failed_at = time.monotonic()
            raise RuntimeError("actor env broke")
        self.t += 1
        done = self.t >= self.length
        self.t[done] = 0
        obs = np.ones((self.num_envs, 1), np.float32)
        ep_ret = np.where(done, float(self.length), 0.0).astype(np.float32)
        return (obs, np.ones(self.num_envs, np.float32), done, np.zeros_like(done), obs, ep_ret,
                done)

    def close(self):
        pass


def countdown_factory(**kwargs):
    made = []

    def factory(num_envs, seed):
        env = CountdownEnv(num_envs, seed, **kwargs)
        made.append(env)
        return env

    factory.made = made
    return factory


def run(total_steps=400, async_config=ai.AsyncConfig(num_actors=2, trajectories_per_update=2),
        factory=None, **kwargs):
    return ai.train("probe", SMALL, async_config, jax.random.PRNGKey(0), total_steps,
                    host_env_factory=factory or countdown_factory(), eval_episodes=0, **kwargs)


# ---------------------------------------------------------------- pieces


def test_gymnasium_adapter_truncates_with_final_observation():
    env = gymnasium_env.GymnasiumBatchEnv("gymnasium:CartPole-v1", 2, seed=0,
                                          max_episode_steps=3)
    assert env.action_space().n == 2 and env.observation_space().shape == (4,)
    obs = env.reset()
    for t in range(3):
        prev = obs
        obs, reward, term, trunc, final_obs, ep_ret, ep_done = env.step(np.zeros(2, int))
        assert obs.shape == final_obs.shape == (2, 4) and reward.dtype == np.float32
    # Step 3 hits the time limit: truncated, not terminated; the final observation
    # is the true next one (close to the previous), obs is a fresh reset.
    assert trunc.all() and not term.any() and ep_done.all()
    np.testing.assert_allclose(ep_ret, [3.0, 3.0])
    assert np.abs(final_obs - prev).max() < 0.5
    assert not np.allclose(final_obs, obs)
    assert np.abs(obs).max() <= 0.05  # CartPole resets uniformly in [-0.05, 0.05]
    env.close()


@pytest.mark.parametrize("env_id", ["gymnasium:CartPole-v1", "envpool:CartPole-v1"])
def test_host_env_ids_reach_the_actors(env_id):
    # Both host families present the same batch interface to the actors and
    # to the final evaluation.
    result = ai.train(env_id, SMALL, ai.AsyncConfig(num_actors=1), jax.random.PRNGKey(0),
                      2 * SMALL.num_envs * SMALL.rollout_len, eval_episodes=2)
    assert result.version == 2
    assert len(result.summary["eval_return"]) == 1 and result.summary["eval_return"][0] >= 1


def test_param_store_versions_and_wait():
    store = ai.ParamStore("p0", None, 0)
    stop = threading.Event()
    got = []
    waiter = threading.Thread(target=lambda: got.append(store.wait_newer(0, stop)))
    waiter.start()
    time.sleep(0.1)
    assert not got  # nothing newer yet
    store.publish("p1", None, 1)
    waiter.join(2)
    assert got == [("p1", 1)] and store.get() == ("p1", 1)
    stop.set()
    assert store.wait_newer(5, stop) is None  # a stop ends the wait


def test_concatenate_joins_actors_along_batch():
    def traj(b, fill):
        tb = np.full((3, b), fill, np.float32)
        return impala.Trajectory(obs=np.full((3, b, 2), fill), action=tb, behaviour_log_prob=tb,
                                 reward=tb, terminated=tb, truncated=tb,
                                 final_obs=np.full((3, b, 2), fill),
                                 next_obs=np.full((b, 2), fill), episode_return=tb,
                                 episode_done=tb)

    batch = ai.concatenate([traj(2, 0.0), traj(3, 1.0)])
    assert batch.obs.shape == (3, 5, 2) and batch.reward.shape == (3, 5)
    assert batch.next_obs.shape == (5, 2)
    np.testing.assert_array_equal(batch.reward[:, :2], 0.0)
    np.testing.assert_array_equal(batch.next_obs[2:], 1.0)


@pytest.mark.parametrize(
    "async_config, message",
    [
        (ai.AsyncConfig(num_actors=0), "num_actors=0"),
        (ai.AsyncConfig(queue_size=0), "queue_size=0"),
        (ai.AsyncConfig(num_actors=2, trajectories_per_update=3, synchronous=True),
         "trajectories_per_update=3"),
    ],
)
def test_bad_async_config_is_rejected_before_anything_runs(async_config, message):
    with pytest.raises(ValueError, match=message):
        ai.validate(SMALL, async_config, 1000)


# ---------------------------------------------------------------- behaviour


def test_learner_learns_value_through_the_queue():
    """One-step episodes of reward 1: the value of the observation is 1."""
    result = run(total_steps=8000)
    learner = impala.make_learner(CountdownEnv(1, 0), None, SMALL)
    value = learner.network.apply(result.params, np.ones((1, 1), np.float32))[1]
    np.testing.assert_allclose(value, [1.0], atol=0.1)
    assert result.version == 8000 // (4 * 5 * 2) and result.env_steps == result.version * 40
    assert sum(result.lag_histogram.values()) == 2 * result.version
    assert min(result.lag_histogram) >= 0
    for name in ("actor_env_steps_per_s", "learner_updates_per_s", "learner_samples_per_s",
                 "queue_depth", "policy_lag"):
        assert np.all(np.isfinite(result.metrics[name])), name


def test_synchronous_baseline_has_no_policy_lag():
    result = run(total_steps=1200, async_config=ai.AsyncConfig(
        num_actors=2, trajectories_per_update=2, synchronous=True))
    assert result.lag_histogram == {0: result.version * 2}


def wait_for_thread_count(baseline, seconds=5.0):
    deadline = time.monotonic() + seconds
    while threading.active_count() > baseline and time.monotonic() < deadline:
        time.sleep(0.02)
    return threading.active_count()


def test_actor_exception_stops_the_run_and_reaches_the_caller():
    baseline = threading.active_count()
    factory = countdown_factory(fail_after=30)
    with pytest.raises(RuntimeError, match="actor env broke"):
        run(total_steps=10**9, factory=factory)
    returned = time.monotonic()
    failed_at = min(e.failed_at for e in factory.made if e.failed_at is not None)
    assert returned - failed_at < 5.0
    assert wait_for_thread_count(baseline) == baseline


def test_learner_exception_stops_the_run_and_reaches_the_caller():
    baseline = threading.active_count()

    class LearnerBroke(Exception):
        pass

    def on_update(version, metrics):
        if version == 3:
            raise LearnerBroke(f"at version {version}")

    started = time.monotonic()
    with pytest.raises(LearnerBroke, match="at version 3"):
        run(total_steps=10**9, on_update=on_update)
    assert time.monotonic() - started < 60
    assert wait_for_thread_count(baseline) == baseline


def test_keyboard_interrupt_writes_a_final_checkpoint_and_joins(tmp_path):
    from jaxrl.run.checkpoint import latest_iteration

    baseline = threading.active_count()
    # interrupt_main() raises KeyboardInterrupt only under Python's own SIGINT
    # handler, whatever an earlier test in this worker left installed.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)

    def on_update(version, metrics):
        # What Ctrl-C does to the main thread. Python delivers it at the main
        # thread's next bytecode, and code that swallows exceptions (a callback,
        # a __del__) can lose it there: it is repeated until it lands, and the
        # run ends by itself at update 1000 (failing here) rather than never.
        if version == 5 or version % 50 == 0:
            _thread.interrupt_main()

    out = tmp_path / "run"
    try:
        with pytest.raises(KeyboardInterrupt):
            run(total_steps=10**9, on_update=on_update, out_dir=out, checkpoint_every_seconds=1e9,
                stop_when=lambda version, params: version >= 1000)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert wait_for_thread_count(baseline) == baseline
    assert latest_iteration(out / "checkpoints") >= 5
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["updates"] >= 5
    assert (out / "config.json").is_file() and (out / "metrics.csv").is_file()


def test_data_parallel_learner_on_two_devices(tmp_path):
    """Actors on device 1, the learner's batch split over devices 0 and 1: a
    run with a recurrent core (start states in the batch) trains, and the
    data-parallel update equals the one-device update on the same batch."""
    script = textwrap.dedent(
        """
        import dataclasses, jax, numpy as np
        from jaxrl.agents import impala
        from jaxrl.distributed import async_impala as ai, make_mesh, replicate
        from jaxrl.envs import make
        cfg = impala.Config(num_envs=4, rollout_len=5, hidden_sizes=(16,))
        devices = jax.devices()
        assert len(devices) == 2
        result = ai.train("CartPole-v1", dataclasses.replace(cfg, core="gru", core_size=8),
                          ai.AsyncConfig(num_actors=2), jax.random.PRNGKey(0), 800,
                          actor_devices=[devices[1]], learner_devices=2, eval_episodes=0)
        leaf = jax.tree.leaves(result.params)[0]
        assert len(leaf.sharding.device_set) == 2, leaf.sharding
        env, env_params = make("CartPole-v1")
        learner = impala.make_learner(env, env_params, cfg)
        rng = np.random.default_rng(0)
        tb = lambda: np.zeros((5, 8), np.float32)
        obs = rng.normal(size=(5, 8, 4)).astype(np.float32)
        traj = impala.Trajectory(
            obs=obs, action=rng.integers(0, 2, (5, 8)),
            behaviour_log_prob=np.log(rng.uniform(0.3, 0.7, (5, 8))).astype(np.float32),
            reward=np.ones((5, 8), np.float32), terminated=rng.uniform(size=(5, 8)) < 0.2,
            truncated=rng.uniform(size=(5, 8)) < 0.1, final_obs=obs + 0.1,
            next_obs=rng.normal(size=(8, 4)).astype(np.float32), episode_return=tb(),
            episode_done=tb())
        params = learner.init_params(jax.random.PRNGKey(2))
        outs = []
        for n in (1, 2):
            mesh = make_mesh(n)
            hp = replicate(cfg.hparams(), mesh)
            p = replicate(params, mesh)
            update = ai.make_update(learner, mesh)
            outs.append(update(p, replicate(learner.init_opt_state(p, hp), mesh), hp, traj, 0)[0])
        for a, b in zip(jax.tree.leaves(outs[0]), jax.tree.leaves(outs[1])):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
        # A core's start states split with their environments (an LSTM's: both leaves).
        carry = tuple(rng.normal(size=(8, 8)).astype(np.float32) for _ in range(2))
        traj = traj.replace(core_carry=carry)
        placed = jax.device_put(traj, ai.trajectory_sharding(make_mesh(2), traj)).core_carry
        assert [s.data.shape for leaf in placed for s in leaf.addressable_shards] == [(4, 8)] * 4
        print("OK", result.version, result.lag_histogram)
        """
    )
    assert "OK 40" in run_on_two_devices(script)


# ---------------------------------------------------------------- CLI


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--actors", "2"], "--actors needs --async"),
        (["--async", "--actors", "0"], "--actors must be positive"),
        (["--async", "--seeds", "2"], "--async trains one seed"),
        (["--async", "--resume"], "--async runs cannot be resumed"),
    ],
)
def test_cli_rejects_bad_async_flags(argv, message, tmp_path, capsys):
    code = main(["train", "impala", "--env", "CartPole-v1", "--out", str(tmp_path / "r"), *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "r").exists()


def test_cli_async_only_for_impala(tmp_path, capsys):
    code = main(["train", "ppo", "--async", "--out", str(tmp_path / "r")])
    assert code == 2 and "--async" in capsys.readouterr().err


def test_cli_async_run_writes_a_run_directory(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "impala", "--env", "CartPole-v1", "--async", "--actors", "2",
                 "--total-steps", "1600", "--set", "num_envs=4", "--set", "rollout_len=10",
                 "--set", "hidden_sizes=16", "--eval-episodes", "2", "--eval-every", "400",
                 "--log", "csv,jsonl", "--no-progress", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    for name in ("config.json", "metrics.csv", "metrics.jsonl", "summary.json", "curve.png"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_actors"] == 2 and summary["env_steps"] == 1600
    assert "eval_return_mean" in summary and summary["lag_histogram"]
    # Evaluations of the parameters published past each 400 env steps the
    # learner consumed (points passed between two looks share one), then the final one.
    rows = (out / "eval.csv").read_text().splitlines()
    steps = [int(row.split(",")[0]) for row in rows[1:]]
    assert steps == sorted(set(steps)) and steps[-1] == 1600, rows
    assert len(steps) >= 2 and steps[0] >= 400, rows
    assert summary["best_eval_step"][0] in steps
    assert summary["best_eval_return"][0] >= summary["eval_return"][0]
    jsonl_rows = (out / "metrics.jsonl").read_text().splitlines()
    assert len(jsonl_rows) == len((out / "metrics.csv").read_text().splitlines()) - 1
    config = json.loads((out / "config.json").read_text())
    assert config["mode"] == "async" and config["async_config"]["num_actors"] == 2
    assert (out / "checkpoints").is_dir()


# ---------------------------------------------------------------- learning


TARGET = 475.0
EVAL_EPISODES = 20
EVAL_EVERY = 100  # learner updates between evaluations (16k env steps)


def greedy_returns_fn(env_id: str, config: impala.Config):
    """``returns(params) -> [EVAL_EPISODES]`` of the greedy policy, on fixed
    episodes (a fixed key or seed): the same params always score the same."""
    from jaxrl import envs

    if envs.host_env_factory(env_id) is not None:
        env_id = "gymnasium:" + env_id.split(":", 1)[1]  # EnvPool's tasks score on Gymnasium's
        make_env = lambda n: gymnasium_env.GymnasiumBatchEnv(env_id, n, seed=123)
        spec = make_env(1)
        learner = impala.make_learner(spec, None, config)
        spec.close()
        greedy = jax.jit(lambda params, obs: learner.act(params, obs, jax.random.PRNGKey(0), True))
        return lambda params: gymnasium_env.host_episode_returns(
            make_env, lambda obs: np.asarray(greedy(params, obs)), EVAL_EPISODES)
    env, env_params = envs.make(env_id)
    learner = impala.make_learner(env, env_params, config)
    run = jax.jit(lambda params: envs.episode_returns(
        learner.act_env, env_params, lambda obs, k: learner.act(params, obs, k, True),
        jax.random.PRNGKey(123), EVAL_EPISODES).returns)
    return lambda params: np.asarray(run(params))


def solve_with_two_actor_threads(env_id: str, config: impala.Config):
    """Trains with 2 actor threads until the greedy policy's mean return over
    EVAL_EPISODES fixed episodes reaches TARGET (checked every EVAL_EVERY
    updates) or ``config.total_steps`` run out. "Solved within N steps" is
    what a thread-timed run can promise: its trajectory through parameter
    space changes with the lag the threads happen to produce, so the return
    at exactly N steps is not reproducible, while reaching the target is."""
    returns = greedy_returns_fn(env_id, config)
    evaluations = []

    def stop_when(version, params):
        if version % EVAL_EVERY:
            return False
        evaluations.append((version, float(np.mean(returns(params)))))
        return evaluations[-1][1] >= TARGET

    result = ai.train(env_id, config, ai.AsyncConfig(num_actors=2), jax.random.PRNGKey(0),
                      config.total_steps, eval_episodes=0, stop_when=stop_when)
    return result, evaluations, returns(result.params)


LEARNING = impala.Config()
"""Both learning tests: IMPALA's defaults, the target within their 10^6 env
steps. Measured under the suite's compile options, 2 actor threads, other
work on the machine: 16 gymnax runs all reached it, after 3.2·10^4 to
4.2·10^5 steps (a lag of up to 8-10 updates); in 8 earlier runs bounded at
5·10^5 steps, 7 did and one stood at 328. 6 Gymnasium runs reached it after
1.6·10^4 to 2.6·10^5 steps. A run stops as soon as it is solved; thread timing
changes the lag and so the run, hence "within" and not the return at exactly
N steps."""


@pytest.mark.slow
def test_cartpole_solved_with_two_gymnax_actor_threads():
    """Two actor threads, each trajectory one learner batch (8 envs x 20 steps);
    the threads leave the actors several updates behind."""
    result, evaluations, final = solve_with_two_actor_threads("CartPole-v1", LEARNING)
    assert max(result.lag_histogram) >= 4  # the threads really did produce lag
    assert np.mean(final) >= TARGET, evaluations
    assert result.env_steps <= LEARNING.total_steps


@pytest.mark.slow
@pytest.mark.parametrize("env_id", ["gymnasium:CartPole-v1", "envpool:CartPole-v1"])
def test_cartpole_solved_with_host_envs(env_id):
    """The actors step Gymnasium's or EnvPool's CartPole-v1 on the host; the
    greedy policy is scored on Gymnasium's (the same task). EnvPool, 12 runs
    measured: solved after 1.6·10^4 to 1.6·10^5 env steps (7 of them at the first check)."""
    result, evaluations, final = solve_with_two_actor_threads(env_id, LEARNING)
    assert np.mean(final) >= TARGET, evaluations
    assert result.env_steps <= LEARNING.total_steps


def test_a_non_finite_learner_statistic_stops_the_run_unpublished(tmp_path, monkeypatch):
    original = ai.make_update

    def poisoned_make_update(learner, mesh):
        update = original(learner, mesh)

        def poisoned(params, opt_state, hparams, batch, version):
            params, opt_state, stats = update(params, opt_state, hparams, batch, version)
            if version >= 3:
                stats = {**stats, "policy_loss": jnp.float32(jnp.nan)}
            return params, opt_state, stats

        return poisoned

    monkeypatch.setattr(ai, "make_update", poisoned_make_update)
    published = []
    with pytest.raises(TrainingDiverged, match=r"metric 'policy_loss' is nan for seed 0 at env step"):
        run(total_steps=4000, out_dir=tmp_path / "run", checkpoint_every_seconds=0.0,
            on_update=lambda version, stats: published.append(version))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["failure"]["metric"] == "policy_loss"
    assert published == [1, 2, 3]  # the poisoned fourth update never went out
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 4 and "nan" in rows[-1]
    saved = [int(p.name) for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.isdigit()]
    assert saved and max(saved) <= 3
