"""``jaxrl report``: the statistics against the paper's definitions on fixed
data, and reports made from small fake run directories (no training)."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rliable")

from rliable import metrics as rliable_metrics  # noqa: E402

from jaxrl.run import report, rundir, stats  # noqa: E402
from jaxrl.run.sinks import MetricsFileError  # noqa: E402

REPS = 200

# ---------------------------------------------------------------- statistics


def test_iqm_is_the_mean_of_the_middle_half():
    scores = np.array([[9.0, 1.0], [3.0, 7.0], [5.0, 2.0], [8.0, 100.0]])
    middle = np.sort(scores.ravel())[2:6]  # 8 values: drop the lowest 2 and the highest 2
    assert stats.iqm(scores) == pytest.approx(middle.mean())
    assert stats.iqm(scores) == pytest.approx(rliable_metrics.aggregate_iqm(scores))


def test_iqm_per_point_pools_runs_and_tasks():
    curves = np.random.default_rng(0).normal(size=(5, 3, 4))
    # 15 values per point: cut 3 from each end.
    expected = [np.mean(np.sort(curves[..., k].ravel())[3:12]) for k in range(4)]
    np.testing.assert_allclose(stats.iqm(curves, axis=2), expected)


def test_mean_and_median_are_over_task_means():
    scores = np.array([[1.0, 10.0, 4.0], [3.0, 20.0, 6.0]])  # task means 2, 15, 5
    assert stats.mean(scores) == pytest.approx(22 / 3)
    assert stats.median(scores) == pytest.approx(5.0)


def test_optimality_gap_clips_scores_at_the_target():
    scores = np.array([[0.5, 1.2], [0.8, 1.0]])
    assert stats.optimality_gap(scores) == pytest.approx(1 - (0.5 + 1.0 + 0.8 + 1.0) / 4)
    expected = rliable_metrics.aggregate_optimality_gap(scores)
    assert stats.optimality_gap(scores) == pytest.approx(expected)


def test_probability_of_improvement_counts_ties_half():
    # task 0: pairs (3,2) (3,1) (1,2) (1,1): 2 wins, 1 tie of 4 -> 0.625; task 1: X always wins -> 1
    x = np.array([[3.0, 5.0], [1.0, 6.0]])
    y = np.array([[2.0, 0.0], [1.0, 4.0]])
    assert stats.probability_of_improvement(x, y) == pytest.approx((0.625 + 1.0) / 2)
    assert stats.probability_of_improvement(y, x) == pytest.approx(1 - (0.625 + 1.0) / 2)


def test_probability_of_improvement_matches_rliable():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 4, size=(6, 3)).astype(float)
    y = rng.integers(0, 4, size=(4, 3)).astype(float)
    assert stats.probability_of_improvement(x, y) == pytest.approx(
        rliable_metrics.probability_of_improvement(x, y)
    )


def test_performance_profile_is_the_fraction_of_runs_above_tau():
    scores = np.array([[0.1, 0.6], [0.4, 0.9], [0.7, 0.2]])
    profile = stats.score_distribution(scores, np.array([0.0, 0.5, 0.65, 1.0]))
    np.testing.assert_allclose(profile, [1.0, 3 / 6, 2 / 6, 0.0])


def test_intervals_bracket_their_estimates_and_are_reproducible():
    rng = np.random.default_rng(2)
    scores = {"a": rng.normal(size=(6, 2)), "b": rng.normal(0.5, 1, size=(6, 2))}
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    first = stats.aggregate_intervals(scores, reps=REPS, seed=0)
    # The caller's global generator is left as it was.
    np.testing.assert_array_equal(np.random.get_state()[1], before)
    assert first == stats.aggregate_intervals(scores, reps=REPS, seed=0)
    for intervals in first.values():
        assert list(intervals) == list(stats.AGGREGATES)
        for interval in intervals.values():
            assert interval.low <= interval.estimate <= interval.high
            assert interval.low < interval.high
    assert first["a"]["iqm"].estimate == pytest.approx(stats.iqm(scores["a"]))
    pair = stats.improvement_intervals(scores, reps=REPS, seed=0)[("a", "b")]
    expected = stats.probability_of_improvement(scores["a"], scores["b"])
    assert pair.estimate == pytest.approx(expected)
    assert 0 <= pair.low <= pair.estimate <= pair.high <= 1


def test_profile_and_curve_bands_bracket_their_estimates():
    rng = np.random.default_rng(3)
    scores = {"a": rng.random((5, 2))}
    taus = np.linspace(0, 1, 11)
    profile, low, high = stats.performance_profiles(scores, taus, reps=REPS, seed=0)["a"]
    np.testing.assert_allclose(profile, stats.score_distribution(scores["a"], taus))
    assert np.all(low <= profile) and np.all(profile <= high)
    curves = {"a": rng.random((5, 2, 7))}
    point, low, high = stats.iqm_curves(curves, reps=REPS, seed=0)["a"]
    np.testing.assert_allclose(point, stats.iqm(curves["a"], axis=2))
    assert np.all(low <= point + 1e-12) and np.all(point <= high + 1e-12)


# ---------------------------------------------------------------- fake runs


def make_run(path: Path, algorithm: str, env_id: str, finals, *, env_kwargs=None, iterations=10,
             steps_per_iteration=100, slope=1.0) -> Path:
    """A run directory as ``jaxrl train`` leaves it, with ``finals`` as the
    seeds' final evaluation returns and a training return rising by ``slope``
    per iteration."""
    seeds = len(finals)
    path.mkdir(parents=True)
    config = {
        "algorithm": algorithm, "env_id": env_id, "env_kwargs": env_kwargs or {},
        "agent_config": {"num_envs": 4}, "seeds": seeds,
        "total_steps": iterations * steps_per_iteration, "iterations": iterations,
        "chunk_iterations": 5, "env_steps_per_step": steps_per_iteration,
        "key": {"data": [0, 0], "impl": None}, "hparams": None, "eval_episodes": 2,
    }
    rundir.write_json(path / rundir.CONFIG, config)
    rows = ["env_steps,seed,episode_return,episodes_completed"]
    for i in range(1, iterations + 1):
        episodes = 1.0 if i > 1 else 0.0
        rows += [f"{i * steps_per_iteration},{s},{slope * i + s},{episodes}" for s in range(seeds)]
    (path / rundir.METRICS_CSV).write_text("\n".join(rows) + "\n")
    summary = {
        "algorithm": algorithm, "env_id": env_id, "seeds": seeds,
        "eval_return": [float(f) for f in finals], "eval_return_mean": float(np.mean(finals)),
        "eval_return_std": float(np.std(finals)), "eval_episodes": 2,
        "env_steps": iterations * steps_per_iteration, "status": "completed",
    }
    rundir.write_json(path / rundir.SUMMARY, summary)
    return path


FINALS = {
    ("ppo", "CartPole-v1"): [500.0, 480.0, 450.0],
    ("ppo", "Acrobot-v1"): [-90.0, -85.0, -100.0],
    ("a2c", "CartPole-v1"): [300.0, 200.0, 250.0],
    ("a2c", "Acrobot-v1"): [-150.0, -120.0, -499.0],
}


@pytest.fixture
def runs(tmp_path) -> list[Path]:
    """2 algorithms x 2 environments x 3 seeds; ppo's CartPole seeds split over two directories."""
    made = []
    for (algorithm, env_id), finals in FINALS.items():
        if (algorithm, env_id) == ("ppo", "CartPole-v1"):
            made.append(make_run(tmp_path / "ppo-cp-a", algorithm, env_id, finals[:2], slope=2.0))
            made.append(make_run(tmp_path / "ppo-cp-b", algorithm, env_id, finals[2:], slope=2.0))
        else:
            made.append(make_run(tmp_path / f"{algorithm}-{env_id}", algorithm, env_id, finals,
                                 slope=2.0 if algorithm == "ppo" else 1.0))
    return made


def normalised(algorithm: str) -> np.ndarray:
    columns = []
    for env_id in ("Acrobot-v1", "CartPole-v1"):  # tasks are sorted
        random, reference = report.REFERENCE_RETURNS[env_id]
        columns.append((np.array(FINALS[algorithm, env_id]) - random) / (reference - random))
    return np.stack(columns, axis=1)


def read_report_csv(path: Path) -> dict[tuple[str, str, str], list[float]]:
    with open(path / report.REPORT_CSV, newline="") as f:
        return {
            (r["statistic"], r["algorithm"], r["versus"]):
                [float(r["estimate"]), float(r["ci_low"]), float(r["ci_high"])]
            for r in csv.DictReader(f)
        }


def test_report_of_two_algorithms_on_two_environments(runs, tmp_path, capsys):
    out = tmp_path / "report"
    assert report.main([str(r) for r in runs], str(out), reps=REPS) == 0
    assert "ppo: Mean" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == sorted(report.REPORT_FILES)

    rows = read_report_csv(out)
    for algorithm in ("ppo", "a2c"):
        scores = normalised(algorithm)
        expected = {
            "mean": scores.mean(axis=0).mean(),
            "median": np.median(scores.mean(axis=0)),
            "iqm": np.sort(scores.ravel())[1:5].mean(),  # 6 values: drop 1 at each end
            "optimality_gap": 1 - np.minimum(scores, 1).mean(),
        }
        for name, value in expected.items():
            estimate, low, high = rows[name, algorithm, ""]
            assert estimate == pytest.approx(value)
            assert low <= estimate <= high
    # Every ppo run beats every a2c run on both environments.
    assert rows["probability_of_improvement", "ppo", "a2c"] == [1.0, 1.0, 1.0]

    markdown = (out / report.REPORT_MD).read_text()
    assert "Scores are normalised" in markdown
    assert "| ppo | 3 × 2 |" in markdown
    assert "| ppo | a2c | 1 [1, 1] |" in markdown
    assert f"{np.mean(FINALS['a2c', 'CartPole-v1']):.4g} ±" in markdown
    figures = (report.AGGREGATES_PNG, report.PROFILE_PNG, report.IMPROVEMENT_PNG, report.CURVES_PNG)
    for figure in figures:
        assert f"]({figure})" in markdown
        assert (out / figure).read_bytes().startswith(b"\x89PNG")
    saved = json.loads((out / report.REPORT_JSON).read_text())
    assert saved["normalised"] and saved["reps"] == REPS and len(saved["runs"]) == 5


def test_sample_efficiency_curves_follow_the_training_returns(runs):
    read = report.read_runs(runs)
    table = report.group_runs(read)
    grid, curves = report.curve_table(read, table, points=5)
    # Rows of iteration 1 finished no episode: the grid starts at iteration 2.
    np.testing.assert_allclose(grid, np.linspace(200, 1000, 5))
    assert curves["ppo"].shape == (3, 2, 5)
    # Rising returns, normalised by a positive scale.
    assert np.all(np.diff(curves["ppo"], axis=2) > 0)
    assert np.all(curves["ppo"][..., -1] > curves["a2c"][..., -1])


def test_undeclared_environments_keep_raw_returns(tmp_path):
    shorter = {"max_steps_in_episode": 200}  # not the settings the reference returns are for
    runs = [
        make_run(tmp_path / "a", "ppo", "CartPole-v1", [100.0, 200.0], env_kwargs=shorter),
        make_run(tmp_path / "b", "dqn", "CartPole-v1", [150.0, 150.0], env_kwargs=shorter),
    ]
    made = report.write_report(runs, tmp_path / "out", reps=REPS)
    assert not made.table.normalised
    assert made.table.tasks == ["CartPole-v1(max_steps_in_episode=200)"]
    # Raw returns have no common target for an optimality gap.
    assert list(made.aggregates["ppo"]) == ["mean", "median", "iqm"]
    assert made.aggregates["ppo"]["mean"].estimate == pytest.approx(150.0)
    assert made.improvement["ppo", "dqn"].estimate == pytest.approx(0.5)
    markdown = (tmp_path / "out" / report.REPORT_MD).read_text()
    assert "Scores are raw returns" in markdown and "Optimality gap" not in markdown


def test_raw_flag_and_uneven_seeds_are_noted(tmp_path):
    runs = [
        make_run(tmp_path / "a", "ppo", "CartPole-v1", [400.0, 450.0, 500.0]),
        make_run(tmp_path / "b", "ppo", "Acrobot-v1", [-100.0, -90.0]),
        make_run(tmp_path / "c", "dqn", "CartPole-v1", [100.0]),
        make_run(tmp_path / "d", "dqn", "Acrobot-v1", [-400.0]),
        make_run(tmp_path / "e", "dqn", "Pendulum-v1", [-400.0]),
    ]
    table = report.group_runs(report.read_runs(runs), raw=True)
    assert not table.normalised and table.tasks == ["Acrobot-v1", "CartPole-v1"]
    np.testing.assert_array_equal(table.scores["ppo"], [[-100.0, 400.0], [-90.0, 450.0]])
    notes = " ".join(table.notes)
    assert "Pendulum-v1 are left out" in notes
    assert "the first 2 of each are used" in notes
    assert "--raw" in notes


# ---------------------------------------------------------------- errors and the output directory


def test_a_directory_that_is_not_a_run_is_named(runs, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(rundir.RunDirError, match=f"{tmp_path / 'empty'} is not a run directory"):
        report.write_report([runs[0], tmp_path / "empty"], tmp_path / "out", reps=REPS)
    assert not (tmp_path / "out").exists()  # nothing written before every input is read


@pytest.mark.parametrize(
    "damage, error, message",
    [
        (lambda p: (p / "summary.json").write_text("{"),
         report.ReportError, "summary.json is not valid JSON"),
        (lambda p: (p / "summary.json").unlink(), report.ReportError, "has no summary.json"),
        (lambda p: (p / "metrics.csv").write_text("env_steps,seed,episode_return\n100,0,abc\n"),
         MetricsFileError, "metrics.csv, line 2: column episode_return='abc'"),
        (lambda p: rundir.write_json(p / "summary.json", {"status": "diverged", "error": "nan"}),
         report.ReportError, "diverged"),
        (lambda p: rundir.write_json(p / "summary.json", {"eval_return": [1.0]}),
         report.ReportError, "holds 1 values for the run's 3 seeds"),
        (lambda p: (p / "config.json").write_text("[]"), rundir.RunDirError, "not an object"),
    ],
)
def test_a_damaged_run_is_one_clear_error(runs, tmp_path, damage, error, message):
    damaged = runs[-1]
    damage(damaged)
    with pytest.raises(error, match=message) as raised:
        report.write_report(runs, tmp_path / "out", reps=REPS)
    assert str(damaged) in str(raised.value) and "\n" not in str(raised.value)


def test_an_asynchronous_impala_run_is_read(tmp_path):
    # Its config.json (mode "async") has no chunk plan: only what a report reads is checked.
    path = make_run(tmp_path / "async", "impala", "CartPole-v1", [21.92])
    config = json.loads((path / rundir.CONFIG).read_text())
    for name in ("iterations", "chunk_iterations", "env_steps_per_step", "hparams"):
        del config[name]
    del config["eval_episodes"]
    rundir.write_json(path / rundir.CONFIG, {**config, "mode": "async"})
    run = report.read_run(path)
    assert (run.algorithm, run.task, run.final.tolist()) == ("impala", "CartPole-v1", [21.92])
    rundir.write_json(path / rundir.CONFIG, config)  # without its mode, it is a damaged config
    with pytest.raises(rundir.RunDirError, match="lacks iterations"):
        report.read_run(path)


def test_a_run_given_twice_is_refused(runs, tmp_path):
    with pytest.raises(report.ReportError, match="given twice"):
        report.read_runs([runs[0], Path(str(runs[0]) + "/")])


def test_out_must_be_new_empty_or_a_report(runs, tmp_path):
    used = tmp_path / "notes"
    used.mkdir()
    (used / "mine.txt").write_text("keep")
    with pytest.raises(report.ReportError, match="not empty and is not a jaxrl report"):
        report.write_report(runs, used, reps=REPS)
    with pytest.raises(report.ReportError, match="not empty and is not a jaxrl report"):
        report.write_report(runs, runs[0], reps=REPS)  # a run directory is not a report

    with pytest.raises(report.ReportError, match="not empty and is not a jaxrl report"):
        report.write_report(runs, used / "new" / "..", reps=REPS)  # names notes/ once new/ exists
    assert not (used / "new").exists()

    out = tmp_path / "out"
    report.write_report(runs, out, reps=REPS)
    (out / "mine.txt").write_text("keep")
    # A second report over the first replaces its files; a figure it no longer draws goes too.
    report.write_report(runs[1:3], out, reps=REPS)  # one algorithm: no probability of improvement
    assert not (out / report.IMPROVEMENT_PNG).exists()
    assert (out / "mine.txt").read_text() == "keep"
    assert len(json.loads((out / report.REPORT_JSON).read_text())["runs"]) == 2


def test_command_line_arguments():
    parser = argparse.ArgumentParser()
    report.add_arguments(parser)
    args = parser.parse_args(["a", "b", "--out", "r", "--reps", "500", "--raw"])
    assert (args.runs, args.out, args.reps, args.seed, args.raw) == (["a", "b"], "r", 500, 0, True)
    assert parser.parse_args(["a"]).reps == report.DEFAULT_REPS
    with pytest.raises(SystemExit):
        parser.parse_args(["a", "--reps", "0"])


def test_the_report_command(runs, tmp_path, capsys):
    from cli_helpers import assert_usage_error, run_cli

    status, out, err, _ = run_cli(capsys, "report", *runs, "--out", tmp_path / "r", "--reps", REPS)
    assert status == 0, err
    assert (tmp_path / "r" / "report.md").is_file() and (tmp_path / "r" / "report.csv").is_file()
    (tmp_path / "empty").mkdir()
    status, out, err, seconds = run_cli(capsys, "report", runs[0], tmp_path / "empty",
                                        "--out", tmp_path / "r2")
    assert_usage_error(status, err, seconds, str(tmp_path / "empty"), "not a run directory")
