"""``jaxrl train``'s --eval-every and --log: defaults, plumbing into the run,
resume, and one-line errors before anything compiles."""

from __future__ import annotations

import json
import sys

import fake_agent
import pytest
from cli_helpers import assert_usage_error, run_cli

from jaxrl.run.sinks import read_csv

TINY = ["--set", "num_envs=2", "--set", "rollout_len=4", "--set", "eval_max_steps=8",
        "--seeds", "2", "--eval-episodes", "1", "--no-progress", "--checkpoint-every", "0"]


@pytest.fixture(scope="module", autouse=True)
def fake_algorithm():
    with fake_agent.registered() as name:
        yield name


def test_eval_every_and_log_reach_the_run_and_its_resume(tmp_path, capsys):
    out = tmp_path / "run"
    # 8 env steps per iteration, 12 iterations in chunks of 2: points at 32, 64 and 96 env steps.
    argv = ["train", "fake", "--out", out, "--total-steps", "96", "--chunk-iterations", "2",
            "--eval-every", "30", *TINY]
    status, _, err, _ = run_cli(capsys, *argv, "--log", "csv,jsonl,tensorboard")
    assert status == 0, err
    assert json.loads((out / "config.json").read_text())["eval_every"] == 30
    assert sorted(set(read_csv(out / "eval.csv")["env_steps"].tolist())) == [32, 64, 96]
    assert (out / "metrics.jsonl").exists() and (out / "tensorboard" / "seed_0").is_dir()
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["best_eval_return"]) == len(summary["best_eval_step"]) == 2

    eval_csv = (out / "eval.csv").read_bytes()
    status, _, err, _ = run_cli(capsys, "train", "fake", "--out", out, "--resume", "--no-progress")
    assert status == 0, err
    assert (out / "eval.csv").read_bytes() == eval_csv
    # The resumed run kept its sinks: a second TensorBoard session file per seed.
    assert len(list((out / "tensorboard" / "seed_0").iterdir())) == 2


def test_cli_evaluates_periodically_by_default(tmp_path, capsys):
    from jaxrl.cli import DEFAULT_EVAL_EVERY, build_parser

    args = build_parser().parse_args(["train", "ppo"])
    assert args.eval_every is None and args.log == ()
    from jaxrl.cli import _eval_every

    assert _eval_every(None, DEFAULT_EVAL_EVERY, 10) == DEFAULT_EVAL_EVERY
    assert _eval_every(None, DEFAULT_EVAL_EVERY, 0) is None  # --eval-episodes 0: no evaluation
    assert _eval_every(0, DEFAULT_EVAL_EVERY, 10) is None
    assert _eval_every(500, None, 10) == 500


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["--log", "csv,neptune"], ["--log", "'neptune'", "tensorboard, wandb, mlflow"]),
        (["--eval-every", "-5"], ["--eval-every", "-5"]),
        (["--eval-every", "100", "--eval-episodes", "0"], ["eval_every=100", "eval_episodes"]),
    ],
)
def test_bad_flags_are_one_line_errors(tmp_path, capsys, argv, fragments):
    status, _, err, seconds = run_cli(capsys, "train", "fake", "--out", tmp_path / "run", *argv)
    assert_usage_error(status, err, seconds, *fragments)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("target, package", [("wandb", "wandb"), ("mlflow", "mlflow"),
                                             ("tensorboard", "tensorboardX")])
def test_missing_extra_names_its_pip_command(tmp_path, capsys, monkeypatch, target, package):
    monkeypatch.setitem(sys.modules, package, None)  # as if not installed
    status, _, err, seconds = run_cli(
        capsys, "train", "fake", "--out", tmp_path / "run", "--log", target
    )
    assert_usage_error(status, err, seconds, f"pip install 'jaxrl[{target}]'")
    assert not (tmp_path / "run").exists()


def test_unusable_mlflow_store_is_refused_before_compiling(tmp_path, capsys, monkeypatch):
    # The time bound is for jaxrl's own checks; importing mlflow alone can take
    # seconds on a loaded machine, so it is paid before the clock starts.
    import mlflow.tracking  # noqa: F401

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nosuchscheme://nowhere")
    status, _, err, seconds = run_cli(
        capsys, "train", "fake", "--out", tmp_path / "run", "--log", "mlflow"
    )
    assert_usage_error(status, err, seconds, "nosuchscheme://nowhere", "MLFLOW_TRACKING_URI")
    assert not (tmp_path / "run").exists()
