"""Stopping on SIGTERM (what SLURM and Kubernetes send before they preempt):
a checkpoint at the next chunk boundary, a bounded exit with status 143 and
the command that resumes, and a resumed run that ends bit-identical. The
watchdog bounds what the main thread cannot: a wait that never returns.

The multi-process cases are in test_distributed.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import fake_agent
import jax
import numpy as np
import pytest
from cli_helpers import jaxrl_command

import jaxrl.run
from jaxrl.run import preemption
from jaxrl.run.checkpoint import Checkpointer
from jaxrl.run.loop import make_init_fn

REPO = Path(__file__).resolve().parents[1]
# A checkpoint after every chunk (0.1 s each) makes the run last a few seconds,
# so the signal lands mid-run; the batches stay small enough to compile fast.
ARGV = ["--total-steps", "100000", "--chunk-iterations", "2", "--checkpoint-every", "0",
        "--eval-episodes", "0", "--no-progress", "--set", "num_envs=64", "--set",
        "rollout_len=32", "--set", "eval_max_steps=8"]
# Time from SIGTERM to exit: a chunk, a checkpoint and the interpreter's exit.
EXIT_BOUND_SECONDS = 15


def _environ() -> dict[str, str]:
    return {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}


def _saved_iterations(run: Path) -> list[int]:
    return sorted(int(p.name) for p in (run / "checkpoints").glob("*") if p.name.isdigit())


def _wait_for_a_checkpoint(process: subprocess.Popen, run: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not _saved_iterations(run):
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)


def _sigterm_after_a_checkpoint(process: subprocess.Popen, run: Path) -> tuple[str, float]:
    """SIGTERM once ``run`` holds a checkpoint; (stderr, seconds from signal to exit)."""
    try:
        _wait_for_a_checkpoint(process, run)
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
        return err, time.monotonic() - signalled
    finally:
        process.kill()


def test_sigterm_checkpoints_exits_143_and_the_resumed_run_is_bit_identical(tmp_path):
    stopped, whole = tmp_path / "stopped", tmp_path / "whole"
    process = subprocess.Popen(jaxrl_command("train", "fake", "--out", stopped, *ARGV),
                               env=_environ(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    uninterrupted = subprocess.Popen(jaxrl_command("train", "fake", "--out", whole, *ARGV),
                                     env=_environ(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
    err, seconds = _sigterm_after_a_checkpoint(process, stopped)
    print(f"SIGTERM to exit: {seconds:.2f} s")
    assert process.returncode == preemption.EXIT_PREEMPTED == 143, err
    assert seconds < EXIT_BOUND_SECONDS
    last = err.strip().splitlines()[-1]
    assert last.startswith("jaxrl: stopped by SIGTERM after iteration"), err
    assert f"continue with: jaxrl train fake --out {stopped} --resume" in last
    assert not (stopped / "summary.json").exists(), "the run finished before the signal"
    iterations = jaxrl.run.rundir.read_json(stopped / "config.json")["iterations"]
    saved = _saved_iterations(stopped)[-1]
    # The stop saved a checkpoint at the boundary it announced, after every row
    # it wrote: a clean stop, where a kill may leave rows past the checkpoint.
    assert f"after iteration {saved}," in last and 0 < saved < iterations
    rows = len((stopped / "metrics.csv").read_text().splitlines()) - 1
    assert rows == saved

    resumed = subprocess.run(jaxrl_command("train", "fake", "--out", stopped, "--resume",
                                           "--no-progress"),
                             env=_environ(), capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert uninterrupted.wait(timeout=120) == 0, uninterrupted.stderr.read()
    summary = jaxrl.run.rundir.read_json(stopped / "summary.json")
    assert summary["resumed_from_iteration"] == saved
    assert (stopped / "metrics.csv").read_bytes() == (whole / "metrics.csv").read_bytes()
    with fake_agent.registered():
        agent, _ = jaxrl.run.load_agent(whole)
    abstract = jax.eval_shape(make_init_fn(agent, 1), jax.random.split(jax.random.PRNGKey(0), 1),
                              None)
    with Checkpointer(stopped / "checkpoints") as a, Checkpointer(whole / "checkpoints") as b:
        final_a, final_b = a.restore(iterations, abstract), b.restore(iterations, abstract)
    jax.tree.map(np.testing.assert_array_equal, final_a, final_b)


# The main thread never reaches a chunk boundary (as when it is blocked in a
# collective, a long compile or an evaluation): the watchdog ends the process.
BLOCKED_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, threading
    from jaxrl.run import preemption
    with preemption.stop_on_signals(grace_seconds=GRACE, resume_hint="continue with: RESUME"):
        print("ready", flush=True)
        if sys.argv[1] == "deadline":
            with preemption.deadline(GRACE, "jaxrl: error: waited more than GRACE s in a test"):
                threading.Event().wait()
        threading.Event().wait()
    """
)


@pytest.mark.parametrize(
    "case, status, message",
    [
        ("sigterm", 143, "jaxrl: stopped: SIGTERM came 1 s ago and no chunk boundary since; "
                         "the latest checkpoint stays the latest; continue with: RESUME"),
        ("deadline", preemption.EXIT_STUCK, "jaxrl: error: waited more than 1 s in a test; "
                                            "continue with: RESUME"),
    ],
)
def test_the_watchdog_ends_a_process_whose_main_thread_never_returns(case, status, message):
    script = BLOCKED_SCRIPT.replace("GRACE", "1")
    process = subprocess.Popen([sys.executable, "-c", script, case], cwd=REPO, env=_environ(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline() == "ready\n"
        started = time.monotonic()
        if case == "sigterm":
            process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
        seconds = time.monotonic() - started
    finally:
        process.kill()
    assert process.returncode == status, err
    assert err.strip().splitlines()[-1] == message
    assert 0.9 < seconds < 5, seconds


@pytest.mark.parametrize("grace", [0, -1, float("inf"), float("nan"), "10"])
def test_bad_grace_periods_are_refused(grace):
    expected = rf"grace_seconds={grace!r} is invalid: expected a positive number"
    with pytest.raises(ValueError, match=expected):
        with preemption.stop_on_signals(grace_seconds=grace):
            pass


def test_a_stop_request_checkpoints_at_the_next_boundary_and_is_used_up(tmp_path):
    """The Python API: request_stop() (what the signal does) stops train() at
    the next chunk boundary with a checkpoint; the next train() runs whole."""
    with fake_agent.registered():
        agent = jaxrl.run.build_agent("fake", "CartPole-v1", {},
                                      {"num_envs": 2, "rollout_len": 4, "eval_max_steps": 8})
    key = jax.random.PRNGKey(0)
    preemption.request_stop("a test")
    with pytest.raises(preemption.Preempted, match="stopped by a test after iteration 1, "
                                                   "checkpoint saved") as stopped:
        jaxrl.run.train(agent, key, 32, out_dir=tmp_path / "run", chunk_iterations=1,
                        eval_episodes=0, progress=False, checkpoint_every_seconds=1e6)
    assert stopped.value.iteration == 1 and stopped.value.checkpointed
    assert _saved_iterations(tmp_path / "run") == [1]
    assert preemption.stop_reason() is None
    result = jaxrl.run.train(agent, key, 32, out_dir=tmp_path / "run", resume=True,
                             eval_episodes=0, progress=False)
    assert result.summary["resumed_from_iteration"] == 1 and result.summary["iterations"] == 4


def test_sigterm_to_an_async_impala_run_checkpoints_and_exits_143(tmp_path):
    out = tmp_path / "async"
    command = [sys.executable, "-m", "jaxrl", "train", "impala", "--async", "--out", str(out),
               "--total-steps", "100000000", "--checkpoint-every", "0", "--eval-episodes", "0",
               "--no-progress", "--set", "num_envs=2", "--set", "rollout_len=4",
               "--set", "hidden_sizes=8"]
    process = subprocess.Popen(command, env=_environ(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    err, seconds = _sigterm_after_a_checkpoint(process, out)
    assert process.returncode == preemption.EXIT_PREEMPTED, err
    assert seconds < EXIT_BOUND_SECONDS
    last = err.strip().splitlines()[-1]
    assert last.startswith("jaxrl: stopped by SIGTERM after iteration"), err
    # The final checkpoint holds the update the stop announced.
    assert f"after iteration {_saved_iterations(out)[-1]}," in last
