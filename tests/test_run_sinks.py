"""Metric sinks (CSV, JSONL, TensorBoard) and learning-curve plots
(jaxrl.run.sinks, jaxrl.run.plots)."""

from __future__ import annotations

import numpy as np
import pytest

from jaxrl import run
from jaxrl.run.sinks import CSVSink, JSONLSink, MetricsChunk


def make_chunk(first_iteration, n, seeds=2, steps_per_iteration=10):
    iterations = np.arange(first_iteration, first_iteration + n)
    return MetricsChunk(
        env_steps=(iterations + 1) * steps_per_iteration,
        metrics={
            "loss": np.float32(0.1) * np.ones((n, seeds), np.float32),
            "episode_return": np.tile(iterations[:, None], (1, seeds)).astype(np.float32) / 3,
        },
    )


@pytest.mark.parametrize("sink_type", [CSVSink, JSONLSink])
def test_sinks_truncate_on_resume(tmp_path, sink_type):
    def write(path, chunks, resume_env_steps=None):
        sink = sink_type(path)
        sink.open(["loss", "episode_return"], 2, resume_env_steps)
        for chunk in chunks:
            sink.write(chunk)
        sink.close()

    whole, partial = tmp_path / "whole", tmp_path / "partial"
    write(whole, [make_chunk(0, 3), make_chunk(3, 3)])
    write(partial, [make_chunk(0, 3), make_chunk(3, 2)])
    with open(partial, "a") as f:
        f.write('{"env_steps": 6' if sink_type is JSONLSink else "60,0,0.3")
    write(partial, [make_chunk(3, 3)], resume_env_steps=30)
    assert partial.read_bytes() == whole.read_bytes()


def test_csv_format(tmp_path):
    sink = CSVSink(tmp_path / "m.csv")
    sink.open(["loss", "episode_return"], 2, None)
    sink.write(make_chunk(0, 1))
    sink.close()
    assert (tmp_path / "m.csv").read_text() == (
        "env_steps,seed,episode_return,loss\n10,0,0.0,0.1\n10,1,0.0,0.1\n"
    )


def test_csv_resume_refuses_other_columns(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("env_steps,seed,episode_return,other\n")
    sink = CSVSink(path)
    with pytest.raises(ValueError, match="different columns"):
        sink.open(["loss", "episode_return"], 2, 0)
    assert path.read_text() == "env_steps,seed,episode_return,other\n"


def test_plot_curves_from_columns(tmp_path):
    steps = np.repeat(np.arange(1, 101) * 10, 3)
    seeds = np.tile(np.arange(3), 100)
    columns = {
        "env_steps": steps,
        "seed": seeds,
        "episode_return": steps / 10.0 + seeds,
        "episodes_completed": (steps % 20 == 0).astype(np.float32),
    }
    out = run.plot_curves(columns, tmp_path / "curve.png", title="test")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_recent_return_weights_by_completed_episodes():
    from jaxrl.run.progress import recent_return

    metrics = {
        "episode_return": np.array([[0.0, 10.0], [30.0, 0.0]]),
        "episodes_completed": np.array([[0.0, 1.0], [3.0, 0.0]]),
    }
    assert recent_return(metrics) == pytest.approx(25.0)
    assert recent_return({**metrics, "episodes_completed": np.zeros((2, 2))}) is None


def test_smoothing_weights_by_completed_episodes():
    from jaxrl.run.plots import smoothed_returns

    returns = np.array([0.0, 10.0, 0.0, 20.0])
    episodes = np.array([0.0, 1.0, 0.0, 3.0])
    curve = smoothed_returns(returns, episodes, window=4)
    assert np.isnan(curve[0])
    np.testing.assert_allclose(curve[1:], [10.0, 10.0, 17.5])


def test_tensorboard_sink(tmp_path):
    pytest.importorskip("tensorboardX")
    from jaxrl.run.sinks import TensorBoardSink

    for first, resume_env_steps in ((0, None), (3, 30)):
        sink = TensorBoardSink(tmp_path)
        sink.open(["loss", "episode_return"], 2, resume_env_steps)
        sink.write(make_chunk(first, 3))
        sink.close()
    # One event file per seed per session; a resume never replaces the first.
    assert sorted(len(list((tmp_path / f"seed_{s}").iterdir())) for s in range(2)) == [2, 2]
