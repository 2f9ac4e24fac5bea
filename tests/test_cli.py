"""The command line: input errors are one line, exit 2, fast and harmless;
train -> eval round trip; a run killed with SIGKILL resumes bit-exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import fake_agent
from cli_helpers import assert_usage_error, jaxrl_command, run_cli
import jax
import numpy as np
import pytest

import jaxrl.run
from jaxrl.cli import main
from jaxrl.run.checkpoint import Checkpointer
from jaxrl.run.loop import make_init_fn

TESTS = Path(__file__).parent
TINY = ["--set", "num_envs=2", "--set", "rollout_len=4", "--set", "eval_max_steps=8"]


@pytest.fixture(scope="module", autouse=True)
def fake_algorithm():
    with fake_agent.registered() as name:
        yield name


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["train", "nope"], ["unknown algorithm 'nope'", "fake"]),
        (["train", "fake", "--env", "CartPol-v1"], ["CartPol-v1", "CartPole-v1"]),
        (["train", "fake", "--set", "num_env=4"], ["num_env", "num_envs"]),
        (["train", "fake", "--set", "num_envs=four"], ["num_envs", "'four'", "int"]),
        (["train", "fake", "--set", "greedy=maybe"], ["greedy", "'maybe'", "bool"]),
        (["train", "fake", "--set", "hidden_sizes=64,x"], ["hidden_sizes", "64,x"]),
        (["train", "fake", "--set", "num_envs=0"], ["num_envs", "positive"]),
        (["train", "fake", "--set", "noise=cauchy"], ["noise", "cauchy"]),
        (["train", "fake", "--set", "num_envs"], ["key=value"]),
        (["train", "fake", "--env", "Pendulum-v1"], ["discrete", "Pendulum-v1"]),
        (["train", "fake", "--total-steps", "lots"], ["--total-steps", "lots"]),
        (["train", "fake", "--seeds", "0"], ["--seeds", "positive"]),
        (["train", "fake", "--resume"], ["--resume", "--out"]),
        (["train"], ["ALGO"]),
        (["eval"], ["DIR"]),
        (["fly"], ["fly"]),
    ],
)
def test_input_errors(capsys, tmp_path, no_training, argv, fragments):
    out_dir = tmp_path / "run"
    if argv[:1] == ["train"] and len(argv) > 1 and "--resume" not in argv:
        argv = argv + ["--out", out_dir]
    status, _, err, seconds = run_cli(capsys, *argv)
    assert_usage_error(status, err, seconds, *fragments)
    assert not out_dir.exists()


def existing_run(tmp_path):
    out_dir = tmp_path / "run"
    out_dir.mkdir()
    (out_dir / "config.json").write_text(json.dumps(fake_agent.saved_config(algorithm="fake")))
    (out_dir / "metrics.csv").write_text("precious\n")
    return out_dir


def contents(directory):
    return {
        str(p.relative_to(directory)): p.read_bytes() if p.is_file() else None
        for p in sorted(directory.rglob("*"))
    }


@pytest.mark.parametrize(
    "settings, fragments",
    [
        (["num_minibatches=3"], ["num_minibatches", "divisor"]),
        (["objective=trust_me"], ["objective", "trust_me"]),
        (["hidden_sizes=64,0"], ["hidden_sizes"]),
        (["learning_rate=-1"], ["learning_rate"]),
        (["clip_eps=wide"], ["clip_eps", "'wide'", "float"]),
    ],
)
def test_ppo_config_errors(capsys, tmp_path, no_training, settings, fragments):
    pytest.importorskip("jaxrl.agents.ppo")
    argv = ["train", "ppo", "--out", tmp_path / "run"]
    for setting in settings:
        argv += ["--set", setting]
    status, _, err, seconds = run_cli(capsys, *argv)
    assert_usage_error(status, err, seconds, *fragments)
    assert not (tmp_path / "run").exists()


def test_resume_needs_a_run(capsys, tmp_path, no_training):
    status, _, err, seconds = run_cli(
        capsys, "train", "fake", "--resume", "--out", tmp_path / "run"
    )
    assert_usage_error(status, err, seconds, "not a run directory")
    assert not (tmp_path / "run").exists()


def test_existing_run_needs_force(capsys, tmp_path, no_training):
    out_dir = existing_run(tmp_path)
    before = contents(out_dir)
    status, _, err, seconds = run_cli(capsys, "train", "fake", "--out", out_dir)
    assert_usage_error(status, err, seconds, "already holds a run", "--force")
    assert contents(out_dir) == before


def test_bad_input_with_force_keeps_the_old_run(capsys, tmp_path, no_training):
    out_dir = existing_run(tmp_path)
    before = contents(out_dir)
    status, _, err, seconds = run_cli(
        capsys, "train", "fake", "--out", out_dir, "--force", "--set", "num_envs=-1"
    )
    assert_usage_error(status, err, seconds, "num_envs")
    assert contents(out_dir) == before


def test_eval_errors(capsys, tmp_path, no_training):
    status, _, err, seconds = run_cli(capsys, "eval", tmp_path / "missing")
    assert_usage_error(status, err, seconds, "not a run directory")
    out_dir = existing_run(tmp_path)
    status, _, err, seconds = run_cli(capsys, "eval", out_dir)
    assert_usage_error(status, err, seconds)
    assert contents(out_dir)["metrics.csv"] == b"precious\n"


def test_help_is_fast():
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "jaxrl", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "train" in result.stdout
    assert time.perf_counter() - started < 3.0


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("cli") / "run"
    argv = [
        "train",
        "fake",
        "--out",
        out_dir,
        "--total-steps",
        "64",
        "--seeds",
        "2",
        "--eval-episodes",
        "2",
        "--no-progress",
        "--set",
        "hidden_sizes=4,4",
        *TINY,
    ]
    status = main([str(a) for a in argv])
    assert status == 0
    return out_dir


def test_train_writes_a_run(cli_run, capsys):
    config = json.loads((cli_run / "config.json").read_text())
    assert config["algorithm"] == "fake" and config["env_id"] == "CartPole-v1"
    assert config["agent_config"]["hidden_sizes"] == [4, 4]
    assert config["agent_config"]["num_envs"] == 2 and config["seeds"] == 2
    summary = json.loads((cli_run / "summary.json").read_text())
    assert len(summary["eval_return"]) == 2 and summary["env_steps"] == 64
    assert (cli_run / "curve.png").exists() and (cli_run / "metrics.csv").exists()


def test_eval_reproduces_the_summary(cli_run, capsys):
    summary_before = (cli_run / "summary.json").read_bytes()
    status, out, _, _ = run_cli(capsys, "eval", cli_run)
    assert status == 0 and "seed 1:" in out
    evaluation = json.loads((cli_run / "eval.json").read_text())
    assert evaluation["eval_return"] == json.loads(summary_before)["eval_return"]
    assert (cli_run / "summary.json").read_bytes() == summary_before


def test_resume_with_other_settings_is_refused(cli_run, capsys, no_training):
    before = contents(cli_run)
    status, _, err, seconds = run_cli(
        capsys, "train", "fake", "--out", cli_run, "--resume", "--seeds", "3"
    )
    assert_usage_error(status, err, seconds, "seeds=3")
    status, _, err, seconds = run_cli(
        capsys, "train", "fake", "--out", cli_run, "--resume", "--set", "num_envs=3"
    )
    assert_usage_error(status, err, seconds, "num_envs=3")
    assert contents(cli_run) == before


@pytest.mark.slow
def test_sigkilled_run_resumes_bit_exactly(tmp_path):
    # Big enough batches that the run lasts a few seconds, so the kill lands mid-run.
    argv = [
        "--total-steps",
        "100000",
        "--chunk-iterations",
        "2",
        "--checkpoint-every",
        "0",
        "--eval-episodes",
        "1",
        "--no-progress",
        "--set",
        "num_envs=64",
        "--set",
        "rollout_len=32",
        "--set",
        "eval_max_steps=8",
    ]
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}

    process = subprocess.Popen(
        jaxrl_command("train", "fake", "--out", killed, *argv),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    uninterrupted = subprocess.Popen(
        jaxrl_command("train", "fake", "--out", whole, *argv),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not any(p.name.isdigit() for p in (killed / "checkpoints").glob("*")):
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait()
    finally:
        process.kill()
    assert not (killed / "summary.json").exists(), "the run finished before it was killed"
    iterations = json.loads((killed / "config.json").read_text())["iterations"]

    resumed = subprocess.run(
        jaxrl_command("train", "fake", "--out", killed, "--resume", "--no-progress"),
        env=env,
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert uninterrupted.wait() == 0, uninterrupted.stderr.read().decode()

    summary = json.loads((killed / "summary.json").read_text())
    assert 0 < summary["resumed_from_iteration"] < iterations
    assert (killed / "metrics.csv").read_bytes() == (whole / "metrics.csv").read_bytes()
    assert summary["eval_return"] == json.loads((whole / "summary.json").read_text())["eval_return"]
    agent, _ = jaxrl.run.load_agent(whole)
    abstract = jax.eval_shape(
        make_init_fn(agent, 1), jax.random.split(jax.random.PRNGKey(0), 1), None
    )
    with Checkpointer(killed / "checkpoints") as a, Checkpointer(whole / "checkpoints") as b:
        assert a.latest_iteration() == b.latest_iteration() == iterations
        final_a, final_b = a.restore(iterations, abstract), b.restore(iterations, abstract)
    jax.tree.map(np.testing.assert_array_equal, final_a, final_b)


def test_host_needs_come_from_the_agent_registry():
    from jaxrl import agents
    from jaxrl.agents import impala, reward_model

    assert agents.host_needs("impala", impala.Config()).async_actors
    assert agents.host_needs("ppo") == agents.HostNeeds()
    assert not agents.host_needs("rm-ppo", reward_model.Config()).human_labels
    human = agents.host_needs("rm-ppo", reward_model.Config(labels="human", label_timeout=5.0))
    assert human.human_labels and human.label_timeout == 5.0 and callable(human.with_labeller)
    assert not agents.host_needs("fake").async_actors  # a module that declares nothing
