"""The persistent compilation cache: where it lives, how to opt out, and that a
relaunch of the same run loads its programs instead of compiling them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import jaxrl_command, run_cli

from jaxrl import agents, compilation


@pytest.mark.parametrize("environ, expected", [
    ({}, "HOME/.cache/jaxrl/xla"),
    ({"XDG_CACHE_HOME": "/xdg"}, "/xdg/jaxrl/xla"),
    ({"JAXRL_COMPILATION_CACHE": "/mine/xla"}, "/mine/xla"),
    ({"JAXRL_COMPILATION_CACHE": "off", "XDG_CACHE_HOME": "/xdg"}, None),
    ({"JAXRL_COMPILATION_CACHE": "0"}, None),
])
def test_the_cache_directory_follows_the_environment(monkeypatch, environ, expected):
    for name in ("XDG_CACHE_HOME", "JAXRL_COMPILATION_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", "/home/someone")
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    expected = expected and Path(expected.replace("HOME", "/home/someone"))
    assert compilation.persistent_cache_dir() == expected


def test_a_cache_the_user_configured_is_kept():
    # This test session configures its own (tests/conftest.py).
    configured = os.environ["JAX_COMPILATION_CACHE_DIR"]
    assert compilation.use_persistent_cache() == Path(configured)
    assert compilation.use_persistent_cache(enabled=False) == Path(configured)


def _launch(home: Path, out: Path, *flags: str, **environ: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    # Cache even the fake agent's sub-second programs, so that every program
    # of the run is either written to the cache or read from it.
    env.update(XDG_CACHE_HOME=str(home), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PLATFORMS="cpu", **environ)
    argv = ["train", "fake", "--out", out, "--total-steps", "256", "--no-progress",
            "--eval-episodes", "2", "--force", *flags]
    done = subprocess.run(jaxrl_command(*argv), env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads((out / "summary.json").read_text())


def _entries(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()} if directory.is_dir() else set()


def test_a_relaunch_loads_every_program_from_the_per_user_cache(tmp_path):
    cache = tmp_path / "home" / "jaxrl" / "xla"
    _launch(tmp_path / "home", tmp_path / "run")
    first = _entries(cache)
    assert first, "the first launch wrote no compiled program"
    _launch(tmp_path / "home", tmp_path / "run")
    assert _entries(cache) == first  # nothing compiled afresh


def test_no_compile_cache_reaches_the_cache_and_the_run(tmp_path, capsys, monkeypatch):
    import jaxrl.run

    monkeypatch.setitem(agents.REGISTRY, "fake", "fake_agent")
    calls = []
    monkeypatch.setattr(compilation, "use_persistent_cache", lambda enabled=True: calls.append(enabled))
    monkeypatch.setattr(jaxrl.run, "train", lambda *a, **kw: calls.append(kw["compile_cache"]) or 0)
    monkeypatch.setattr("jaxrl.cli._report", lambda train, *a, **kw: train() and 0)
    status, _, err, _ = run_cli(capsys, "train", "fake", "--out", tmp_path / "run",
                                "--no-compile-cache", "--no-progress")
    assert status == 0, err
    assert calls == [False, False]


def test_the_command_keeps_quiet_about_the_programs_it_loads(tmp_path):
    """jaxlib logs a false machine-mismatch error ("could lead to SIGILL") for
    every program it loads from the cache; the real `jaxrl` command, which
    imports jax only after its main() starts, hides XLA's C++ log
    (jaxrl.cli._quiet_xla_log), unless TF_CPP_MIN_LOG_LEVEL says otherwise."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("JAX_COMPILATION_CACHE") and k != "TF_CPP_MIN_LOG_LEVEL"}
    env.update(JAXRL_COMPILATION_CACHE=str(tmp_path / "cache"), JAX_PLATFORMS="cpu")
    tiny = ["--set", "num_envs=2", "--set", "rollout_len=8", "--set", "num_minibatches=2",
            "--set", "num_epochs=1", "--set", "hidden_sizes=8"]

    def launch(**extra):
        done = subprocess.run(
            [sys.executable, "-m", "jaxrl", "train", "ppo", "--total-steps", "64", "--eval-episodes", "0",
             "--no-progress", "--force", "--out", str(tmp_path / "run"), *tiny],
            env={**env, **extra}, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stderr

    launch()
    assert "cpu_aot_loader" not in launch()
    assert "cpu_aot_loader" in launch(TF_CPP_MIN_LOG_LEVEL="0")  # the lines it hides
