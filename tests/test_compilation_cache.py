"""The persistent compilation cache: where it lives, how to opt out, and that a
relaunch of the same run loads its programs instead of compiling them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import run_cli

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


# A tiny PPO run of the real `jaxrl` command (`python -m jaxrl`), which
# imports jax only after its main() has set up the XLA log.
TINY_PPO = ["train", "ppo", "--total-steps", "64", "--eval-episodes", "2", "--no-progress", "--force",
            "--set", "num_envs=2", "--set", "rollout_len=8", "--set", "num_minibatches=2",
            "--set", "num_epochs=1", "--set", "hidden_sizes=8"]


def _launch(home: Path, out: Path, **environ: str) -> str:
    """Runs the tiny PPO job with ``home`` as XDG_CACHE_HOME; returns its stderr."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("JAX_COMPILATION_CACHE") and k != "TF_CPP_MIN_LOG_LEVEL"}
    # Cache even sub-second programs, so that every program of the run is
    # either written to the cache or read from it.
    env.update(XDG_CACHE_HOME=str(home), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PLATFORMS="cpu", **environ)
    done = subprocess.run([sys.executable, "-m", "jaxrl", *TINY_PPO, "--out", str(out)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((out / "summary.json").read_text())["env_steps"] == 64
    return done.stderr


def _entries(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()} if directory.is_dir() else set()


def test_a_relaunch_loads_every_program_from_the_per_user_cache_and_keeps_quiet(tmp_path):
    """The second launch compiles nothing afresh. jaxlib logs a false
    machine-mismatch error ("could lead to SIGILL") for every program it loads
    from the cache; the command hides XLA's C++ log (jaxrl.cli._quiet_xla_log)
    unless TF_CPP_MIN_LOG_LEVEL says otherwise, as the third launch does."""
    cache = tmp_path / "home" / "jaxrl" / "xla"
    _launch(tmp_path / "home", tmp_path / "run")
    first = _entries(cache)
    assert first, "the first launch wrote no compiled program"
    assert "cpu_aot_loader" not in _launch(tmp_path / "home", tmp_path / "run")
    assert _entries(cache) == first  # nothing compiled afresh
    assert "cpu_aot_loader" in _launch(tmp_path / "home", tmp_path / "run", TF_CPP_MIN_LOG_LEVEL="0")


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
