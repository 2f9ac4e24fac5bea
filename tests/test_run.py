"""The training loop (jaxrl.run.loop): chunked training equals one long scan,
seeds, bit-exact resume and the run directory. Sinks and plots are
test_run_sinks.py; config parsing is test_run_config_io.py.

The training runs share one tiny fake agent and are module-scoped, so the
whole file compiles a handful of small programs."""

from __future__ import annotations

import json
import time

import fake_agent
from stop_sink import StopAt
import jax
import numpy as np
import pytest

from jaxrl import run
from jaxrl.compilation import compiler_options
from jaxrl.run import config_io, rundir
from jaxrl.run.loop import make_init_fn

CONFIG = fake_agent.Config(num_envs=2, rollout_len=4, eval_max_steps=16)
KEY = jax.random.PRNGKey(7)
SEEDS = 2
CHUNK = 3
ITERATIONS = 17  # 6 chunks of 3; the last runs 2 iterations
EVAL_EPISODES = 2


@pytest.fixture(scope="module", autouse=True)
def fake_algorithm():
    with fake_agent.registered() as name:
        yield name


@pytest.fixture(scope="module")
def agent():
    return fake_agent.make_cartpole(CONFIG)


def total_steps(agent):
    return ITERATIONS * agent.env_steps_per_step


def train(agent, out_dir=None, **kwargs):
    options = dict(
        seeds=SEEDS,
        chunk_iterations=CHUNK,
        eval_episodes=EVAL_EPISODES,
        progress=False,
        checkpoint_every_seconds=0,
    )
    options.update(kwargs)
    return run.train(agent, KEY, total_steps(agent), out_dir=out_dir, **options)


@pytest.fixture(scope="module")
def uninterrupted(agent, tmp_path_factory):
    return train(agent, tmp_path_factory.mktemp("runs") / "uninterrupted")


def assert_trees_equal(a, b):
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a, b)


# ------------------------------------------------------------------ the loop


def test_chunked_training_equals_one_long_scan(agent, uninterrupted):
    def whole_run(keys):
        states = jax.vmap(agent.init)(keys)
        return jax.lax.scan(lambda s, _: jax.vmap(agent.step)(s), states, length=ITERATIONS)

    state, metrics = jax.jit(whole_run)(jax.random.split(KEY, SEEDS))
    assert_trees_equal(uninterrupted.state, state)
    assert set(uninterrupted.metrics) == set(metrics)
    for name in metrics:
        np.testing.assert_array_equal(uninterrupted.metrics[name], np.asarray(metrics[name]))


def test_metrics_have_a_row_per_iteration_and_seed(agent, uninterrupted):
    assert uninterrupted.env_steps.tolist() == [
        (i + 1) * agent.env_steps_per_step for i in range(ITERATIONS)
    ]
    for values in uninterrupted.metrics.values():
        assert values.shape == (ITERATIONS, SEEDS)
    # The fake counter advances by 1-3 per step, drawn from each seed's key.
    counter = uninterrupted.metrics["counter"]
    assert np.all(np.diff(counter, axis=0) >= 1) and np.all(np.diff(counter, axis=0) <= 3)


def test_seeds_differ(uninterrupted):
    w = np.asarray(uninterrupted.state.params["w"])
    assert not np.allclose(w[0], w[1])
    assert not np.array_equal(
        uninterrupted.metrics["counter"][:, 0], uninterrupted.metrics["counter"][:, 1]
    )


def test_hyperparameters_per_seed(agent):
    # A sweep is one run: seed 0 with learning rate 0 never moves its weights.
    hparams = {"learning_rate": np.array([0.0, 0.1], np.float32)}
    result = train(agent, hparams=hparams, eval_episodes=0)
    initial = make_init_fn(agent, SEEDS)(jax.random.split(KEY, SEEDS), None)
    w, w0 = np.asarray(result.state.params["w"]), np.asarray(initial.params["w"])
    np.testing.assert_array_equal(w[0], w0[0])
    assert not np.allclose(w[1], w0[1])
    assert result.summary["eval_return"] == [] and result.summary["eval_episodes"] == 0


def test_compiler_options_refuse_an_unknown_program():
    with pytest.raises(ValueError, match="program must be one of .*'evaluate'.*'init'.*'train'.*got 'eval'"):
        compiler_options("eval")
    for program in ("train", "init", "evaluate"):
        options = compiler_options(program)
        assert options is None or "xla_backend_optimization_level" in options
        # Every option is one XLA accepts: a program compiles with it.
        assert jax.jit(lambda x: x + 1, compiler_options=options)(1) == 2


def test_plan_chunks():
    plan = run.plan_chunks(total_steps=1000, env_steps_per_step=64, chunk_iterations=5)
    assert (plan.iterations, plan.num_chunks) == (16, 4)
    assert [plan.active_iterations(i) for i in range(plan.num_chunks)] == [5, 5, 5, 1]
    assert list(plan.chunks_after(10)) == [2, 3]
    assert list(plan.chunks_after(16)) == []
    with pytest.raises(ValueError, match="chunk boundary"):
        plan.chunks_after(7)
    assert run.plan_chunks(10, 64).iterations == 1  # at least one iteration
    assert run.plan_chunks(10**6, 1).num_chunks <= 32


# ------------------------------------------------------------------ resume


def test_resume_is_bit_exact(agent, uninterrupted, tmp_path):
    out = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        train(agent, out, sinks=[StopAt(4)])
    assert run.Checkpointer(out / "checkpoints").latest_iteration() == 3 * CHUNK
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 4 * CHUNK * SEEDS  # the 4th chunk's rows were written
    with open(out / "metrics.csv", "a") as f:
        f.write("100,0,1.5")  # and a half-written row, as a kill can leave

    resumed = train(agent, out, resume=True)

    assert resumed.summary["resumed_from_iteration"] == 3 * CHUNK
    assert (out / "metrics.csv").read_bytes() == (
        uninterrupted.out_dir / "metrics.csv"
    ).read_bytes()
    assert_trees_equal(resumed.state, uninterrupted.state)
    assert resumed.summary["eval_return"] == uninterrupted.summary["eval_return"]
    for name, values in resumed.metrics.items():
        np.testing.assert_array_equal(values, uninterrupted.metrics[name][3 * CHUNK :])


def test_resume_refuses_a_different_run(agent, uninterrupted):
    out = uninterrupted.out_dir
    before = snapshot(out)
    with pytest.raises(run.RunDirError, match="seeds"):
        train(agent, out, resume=True, seeds=SEEDS + 1)
    with pytest.raises(run.RunDirError, match="chunk_iterations"):
        train(agent, out, resume=True, chunk_iterations=CHUNK + 1)
    with pytest.raises(run.RunDirError, match="key"):
        run.train(
            agent,
            jax.random.PRNGKey(8),
            total_steps(agent),
            seeds=SEEDS,
            chunk_iterations=CHUNK,
            out_dir=out,
            resume=True,
            progress=False,
        )
    assert snapshot(out) == before


def test_existing_run_is_not_overwritten(agent, uninterrupted):
    out = uninterrupted.out_dir
    before = snapshot(out)
    started = time.perf_counter()
    with pytest.raises(run.RunDirError, match="already holds a run"):
        train(agent, out)
    assert time.perf_counter() - started < 1.0  # refused before compiling
    assert snapshot(out) == before


def test_resume_needs_a_run(agent, tmp_path):
    with pytest.raises(run.RunDirError, match="not a run directory"):
        train(agent, tmp_path / "nothing", resume=True)
    assert not (tmp_path / "nothing").exists()


def test_force_replaces_only_run_files(tmp_path):
    out = tmp_path / "run"
    rundir.start_new_run(out, fake_agent.saved_config(algorithm="a"), force=False)
    (out / "metrics.csv").write_text("old")
    (out / "checkpoints" / "3").mkdir(parents=True)
    (out / "checkpoints" / "mine.txt").write_text("a user's file")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(rundir.RunDirError):
        rundir.start_new_run(out, fake_agent.saved_config(algorithm="b"), force=False)
    rundir.start_new_run(out, fake_agent.saved_config(algorithm="b"), force=True)
    assert rundir.read_json(out / "config.json") == fake_agent.saved_config(algorithm="b")
    assert not (out / "metrics.csv").exists() and not (out / "checkpoints" / "3").exists()
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "checkpoints" / "mine.txt").read_text() == "a user's file"


def test_a_path_through_a_new_directory_and_back_is_checked_as_its_parent(tmp_path):
    # "mine/new/.." is "mine" once "new" exists: a run must not start in a
    # directory of someone else's files by way of a path that does not exist yet.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(rundir.RunDirError, match="not empty and is not a jaxrl run"):
        rundir.start_new_run(mine / "new" / "..", fake_agent.saved_config(), force=False)
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


def test_interrupted_checkpoint_save_is_ignored(tmp_path):
    # orbax writes <step>.orbax-checkpoint-tmp and renames it when complete: a
    # kill mid-save leaves only that, which is neither latest nor kept.
    tree = {"w": np.arange(3.0)}
    with run.Checkpointer(tmp_path) as checkpointer:
        checkpointer.save(3, tree)
    (tmp_path / "6.orbax-checkpoint-tmp").mkdir()
    (tmp_path / "6.orbax-checkpoint-tmp" / "junk").write_text("half")
    with run.Checkpointer(tmp_path) as checkpointer:
        assert checkpointer.latest_iteration() == 3
        restored = checkpointer.restore(3, jax.eval_shape(lambda: tree))
    np.testing.assert_array_equal(restored["w"], tree["w"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["3"]


def snapshot(directory):
    return {
        str(p.relative_to(directory)): p.read_bytes() if p.is_file() else None
        for p in sorted(directory.rglob("*"))
    }


# ------------------------------------------------------------------ run directory


def test_run_directory_contents(agent, uninterrupted):
    out = uninterrupted.out_dir
    assert {"config.json", "metrics.csv", "summary.json", "curve.png", "checkpoints"} <= {
        p.name for p in out.iterdir()
    }
    # The last two checkpoints, named by iterations done.
    assert sorted(int(p.name) for p in (out / "checkpoints").iterdir()) == [5 * CHUNK, ITERATIONS]

    config = json.loads((out / "config.json").read_text())
    assert config["algorithm"] == "fake" and config["env_id"] == "CartPole-v1"
    assert config["agent_config"] == config_io.config_to_dict(CONFIG)
    assert (config["seeds"], config["iterations"], config["chunk_iterations"]) == (
        SEEDS,
        ITERATIONS,
        CHUNK,
    )
    assert config_io.key_from_json(config["key"]).tolist() == KEY.tolist()

    summary = json.loads((out / "summary.json").read_text())
    assert summary == uninterrupted.summary
    for key in (
        "eval_return",
        "eval_return_mean",
        "eval_return_std",
        "eval_episodes",
        "env_steps",
        "env_steps_per_second",
        "compile_seconds",
        "train_seconds",
        "algorithm",
        "env_id",
        "seeds",
    ):
        assert key in summary, key
    assert len(summary["eval_return"]) == SEEDS and summary["eval_episodes"] == EVAL_EPISODES
    assert summary["eval_return_mean"] == pytest.approx(np.mean(summary["eval_return"]))
    assert summary["env_steps"] == total_steps(agent)
    assert summary["compile_seconds"] > 0 and summary["train_seconds"] > 0
    assert summary["env_steps_per_second"] == pytest.approx(
        SEEDS * total_steps(agent) / summary["train_seconds"]
    )

    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    columns = run.read_csv(out / "metrics.csv")
    assert list(columns)[:3] == ["env_steps", "seed", "episode_return"]
    assert len(columns["seed"]) == ITERATIONS * SEEDS
    np.testing.assert_array_equal(
        columns["episode_return"].reshape(ITERATIONS, SEEDS),
        uninterrupted.metrics["episode_return"],
    )
