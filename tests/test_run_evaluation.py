"""Periodic evaluation during training (jaxrl.run.train(..., eval_every=N)):
its cadence, eval.csv, summary.json's best evaluation, the plot, and that it
changes neither training nor a resume."""

from __future__ import annotations

import json

import fake_agent
from stop_sink import StopAt
import jax
import numpy as np
import pytest

from jaxrl import run
from jaxrl.run.sinks import read_csv

CONFIG = fake_agent.Config(num_envs=2, rollout_len=4, eval_max_steps=16)
KEY = jax.random.PRNGKey(3)
# 11 iterations in 6 chunks of 2 (the last runs 1), 2 seeds, 2 episodes per evaluation.
SEEDS, CHUNK, ITERATIONS, EVAL_EPISODES = 2, 2, 11, 2


@pytest.fixture(scope="module")
def agent():
    return fake_agent.make_cartpole(CONFIG)


def eval_every(agent):
    # Crossed by chunks 2, 3 and 5 (at 4, 6 and 10 iterations), then the final point.
    return 3 * agent.env_steps_per_step


def train(agent, out_dir, **kwargs):
    options = dict(
        seeds=SEEDS, chunk_iterations=CHUNK, eval_episodes=EVAL_EPISODES, progress=False,
        checkpoint_every_seconds=0, eval_every=eval_every(agent),
    )
    options.update(kwargs)
    return run.train(agent, KEY, ITERATIONS * agent.env_steps_per_step, out_dir=out_dir, **options)


@pytest.fixture(scope="module")
def evaluated(agent, tmp_path_factory):
    return train(agent, tmp_path_factory.mktemp("runs") / "evaluated")


def test_evaluation_changes_no_training_number(agent, evaluated, tmp_path):
    plain = train(agent, tmp_path / "plain", eval_every=None)
    assert (tmp_path / "plain" / "metrics.csv").read_bytes() == (
        evaluated.out_dir / "metrics.csv"
    ).read_bytes()
    jax.tree.map(np.testing.assert_array_equal, plain.state, evaluated.state)
    assert plain.summary["eval_return"] == evaluated.summary["eval_return"]
    assert not (tmp_path / "plain" / "eval.csv").exists()
    assert "best_eval_return" not in plain.summary and plain.eval_curve is None


def test_eval_csv_has_a_row_per_point_and_seed(agent, evaluated):
    steps = agent.env_steps_per_step
    columns = read_csv(evaluated.out_dir / "eval.csv")
    assert (evaluated.out_dir / "eval.csv").read_text().splitlines()[0] == (
        "env_steps,seed,eval_return,eval_return_std,eval_return_min,eval_return_max"
    )
    points = [4 * steps, 6 * steps, 10 * steps, ITERATIONS * steps]
    np.testing.assert_array_equal(columns["env_steps"], np.repeat(points, SEEDS))
    np.testing.assert_array_equal(columns["seed"], np.tile(np.arange(SEEDS), len(points)))
    assert np.all(columns["eval_return_min"] <= columns["eval_return"])
    assert np.all(columns["eval_return"] <= columns["eval_return_max"])
    # The last point is the final evaluation of summary.json.
    np.testing.assert_array_equal(
        columns["eval_return"][-SEEDS:], np.float32(evaluated.summary["eval_return"])
    )
    np.testing.assert_array_equal(evaluated.eval_env_steps, points)
    np.testing.assert_array_equal(
        evaluated.eval_curve, columns["eval_return"].reshape(len(points), SEEDS)
    )


def test_summary_holds_the_best_evaluation_per_seed(evaluated):
    summary = json.loads((evaluated.out_dir / "summary.json").read_text())
    assert summary == evaluated.summary
    curve, points = evaluated.eval_curve, evaluated.eval_env_steps
    assert summary["best_eval_return"] == [float(v) for v in curve.max(axis=0)]
    assert summary["best_eval_step"] == [int(points[np.argmax(curve[:, s])]) for s in range(SEEDS)]
    assert summary["eval_seconds"] > 0


def test_periodic_points_differ_from_the_final_evaluation_keys():
    keys = [run.evaluation.periodic_evaluation_keys(KEY, SEEDS, i) for i in (4, 6)]
    final = run.evaluation_keys(KEY, SEEDS)
    assert len({k.tobytes() for k in [*map(np.asarray, keys), np.asarray(final)]}) == 3


def test_resume_continues_eval_csv_bit_exactly(agent, evaluated, tmp_path):
    out = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        train(agent, out, sinks=[StopAt(2, evaluation=True)])
    assert run.Checkpointer(out / "checkpoints").latest_iteration() == 2 * CHUNK
    assert len(read_csv(out / "eval.csv")["env_steps"]) == 2 * SEEDS  # one past the checkpoint
    with open(out / "eval.csv", "a") as f:
        f.write("200,0,1.5")  # and a half-written row

    resumed = train(agent, out, resume=True)

    assert (out / "eval.csv").read_bytes() == (evaluated.out_dir / "eval.csv").read_bytes()
    for name in ("best_eval_return", "best_eval_step", "eval_return"):
        assert resumed.summary[name] == evaluated.summary[name], name
    np.testing.assert_array_equal(resumed.eval_curve, evaluated.eval_curve)

    # Resuming the finished run evaluates the final policy again without a second row.
    again = train(agent, out, resume=True)
    assert (out / "eval.csv").read_bytes() == (evaluated.out_dir / "eval.csv").read_bytes()
    assert again.summary["best_eval_return"] == evaluated.summary["best_eval_return"]


@pytest.mark.parametrize(
    "changes, words",
    [
        (dict(eval_every=0), ["eval_every", "0", "[1,"]),
        (dict(eval_every=2.5), ["eval_every", "2.5"]),
        (dict(eval_every=10, eval_episodes=0), ["eval_every=10", "eval_episodes"]),
    ],
)
def test_bad_eval_every_is_refused(agent, tmp_path, changes, words):
    with pytest.raises(ValueError) as error:
        train(agent, tmp_path / "run", **changes)
    message = str(error.value)
    assert "\n" not in message and all(word in message for word in words), message
    assert not (tmp_path / "run").exists()


def test_plot_shows_training_and_evaluation(evaluated, tmp_path):
    from jaxrl.run.plots import plot_curves

    out = plot_curves(
        evaluated.out_dir / "metrics.csv", tmp_path / "curve.png",
        evaluations=evaluated.out_dir / "eval.csv",
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (evaluated.out_dir / "curve.png").stat().st_size > 0
