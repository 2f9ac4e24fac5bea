"""Data-parallel PPO over devices and processes (jaxrl.distributed).

Several CPU devices need XLA_FLAGS=--xla_force_host_platform_device_count=N
before jax is imported, and several processes need their own interpreters, so
those checks run in subprocesses; this process keeps its single device.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxrl import envs
from jaxrl.agents import ppo
from jaxrl.cli import main
from jaxrl.distributed import data_parallel, make_mesh, multihost

REPO = Path(__file__).resolve().parents[1]

# Tiny shapes: these tests check equality and plumbing, not learning.
TINY = dict(num_envs=4, rollout_len=4, num_epochs=2, num_minibatches=2, hidden_sizes=(8,),
            total_steps=64)
TINY_SET = ["--set", "num_envs=4", "--set", "rollout_len=4", "--set", "num_epochs=2",
            "--set", "num_minibatches=2", "--set", "hidden_sizes=8"]


def _environ(devices: int = 1) -> dict[str, str]:
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def _last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def _param_checksum(params) -> float:
    return float(sum(np.abs(np.asarray(x, np.float64)).sum() for x in jax.tree.leaves(params)))


# ---------------------------------------------------------------- validation (one device)

def test_more_devices_than_available_is_a_clear_error():
    with pytest.raises(ValueError, match=r"devices=2 is invalid: expected 1\.\.1"):
        make_mesh(2)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--devices", "2"], "devices=2 is invalid"),
        (["--devices", "0"], "--devices must be positive"),
        (["--coordinator", "localhost:1234"], "need --distributed"),
        (["--distributed", "--devices", "2"], "exclude each other"),
        (["--distributed", "--coordinator", "nohost", "--num-processes", "2", "--process-id", "0"],
         "coordinator='nohost' is invalid: expected HOST:PORT"),
        (["--distributed", "--coordinator", "localhost:1", "--num-processes", "2",
          "--process-id", "2"], "process_id=2 is invalid"),
    ],
)
def test_cli_scaling_errors_are_one_line(tmp_path, capsys, argv, message):
    code = main(["train", "ppo", "--out", str(tmp_path / "run"), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("jaxrl: error:") and message in err[-1]
    assert not (tmp_path / "run").exists()


def test_process_settings_from_arguments_then_environment():
    environ = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4",
               "JAX_PROCESS_ID": "3"}
    spec = multihost.resolve(environ=environ)
    assert (spec.coordinator, spec.num_processes, spec.process_id) == ("10.0.0.1:1234", 4, 3)
    spec = multihost.resolve("h:1", 2, 1, environ=environ)
    assert (spec.coordinator, spec.num_processes, spec.process_id) == ("h:1", 2, 1)
    # Nothing given: JAX's cluster detection (SLURM, ...) decides.
    assert multihost.resolve(environ={}) == multihost.ProcessSpec()
    with pytest.raises(ValueError, match="JAX_NUM_PROCESSES='two' is invalid"):
        multihost.resolve(environ={"JAX_NUM_PROCESSES": "two"})


# ---------------------------------------------------------------- several devices

EQUIVALENCE_SCRIPT = textwrap.dedent(
    """
    import json, jax, numpy as np
    from jaxrl import envs
    from jaxrl.agents import ppo
    from jaxrl.distributed import data_parallel, make_mesh

    env, env_params = envs.make("CartPole-v1")
    config = ppo.Config(**CONFIG)
    single = ppo.make(env, env_params, config)

    def train(agent):
        run = jax.jit(lambda k: jax.lax.scan(lambda s, _: agent.step(s), agent.init(k), length=3))
        compiled = run.lower(jax.random.PRNGKey(7)).compile()
        return compiled(jax.random.PRNGKey(7))[0], compiled.as_text()

    reference, _ = train(single)
    out = {"devices": jax.device_count(), "runs": {}}
    for n in (2, 4):
        agent = data_parallel(single, make_mesh(n))
        state, hlo = train(agent)
        out["runs"][n] = {
            "param_diff": max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                              for a, b in zip(jax.tree.leaves(reference.params),
                                              jax.tree.leaves(state.params))),
            "params_replicated": all(x.sharding.is_fully_replicated
                                     for x in jax.tree.leaves(state.params)),
            "obs_shard_rows": [s.data.shape[0] for s in state.obs.addressable_shards],
            "env_steps": int(state.env_steps),
            "all_reduce": "all-reduce" in hlo,
        }
    errors = []
    for bad in (dict(CONFIG, num_envs=6), dict(CONFIG, num_minibatches=16)):
        try:
            data_parallel(ppo.make(env, env_params, ppo.Config(**bad)), make_mesh(4))
        except ValueError as e:
            errors.append(str(e))
    out["errors"] = errors
    # `jaxrl train ppo --devices 2` (in this process: it already has 4 devices).
    from jaxrl.cli import main
    out["cli_code"] = main(["train", "ppo", "--env", "CartPole-v1", "--devices", "2",
                            "--out", OUT_DIR, "--total-steps", "64", "--eval-episodes", "0",
                            "--no-progress", *TINY_SET])
    print(json.dumps(out))
    """
)


def test_dppo_on_2_and_4_devices_equals_single_device_ppo_and_cli_devices(tmp_path):
    config = dict(TINY, num_envs=8)
    out_dir = tmp_path / "run"
    script = (EQUIVALENCE_SCRIPT.replace("CONFIG", repr(config))
              .replace("OUT_DIR", repr(str(out_dir))).replace("TINY_SET", repr(TINY_SET)))
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=_environ(4),
                            capture_output=True, text=True, timeout=110)
    assert result.returncode == 0, result.stderr[-3000:]
    out = _last_json(result.stdout)
    assert out["devices"] == 4
    for n, run in out["runs"].items():
        # Each device steps num_envs / n environments ...
        assert run["obs_shard_rows"] == [8 // int(n)] * int(n)
        # ... and one all-reduced gradient keeps the replicated parameters equal
        # to single-device PPO with the same global batch and seed.
        assert run["all_reduce"] and run["params_replicated"]
        assert run["param_diff"] < 1e-5, (n, run["param_diff"])
        assert run["env_steps"] == 3 * 8 * 4
    num_envs_error, minibatch_error = out["errors"]
    assert "ppo.Config.num_envs=6 is invalid" in num_envs_error and "(4)" in num_envs_error
    assert "ppo.Config.num_minibatches=16 is invalid" in minibatch_error
    assert "2 samples" in minibatch_error
    # The CLI trained data-parallel and wrote the run directory as usual.
    assert out["cli_code"] == 0
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["env_steps"] == 64 and summary["iterations"] == 4
    assert len((out_dir / "metrics.csv").read_text().splitlines()) == 1 + 4


IMPALA_SCRIPT = textwrap.dedent(
    """
    import json, jax, numpy as np
    from jaxrl import envs
    from jaxrl.agents import impala
    from jaxrl.distributed import data_parallel, make_mesh

    env, env_params = envs.make("CartPole-v1")
    single = impala.make(env, env_params, impala.Config(num_envs=4, rollout_len=4, policy_lag=2,
                                                        hidden_sizes=(8,)))
    def train(agent):
        run = jax.jit(lambda k: jax.lax.scan(lambda s, _: agent.step(s), agent.init(k), length=3))
        return run(jax.random.PRNGKey(0))[0]
    one, two = train(single), train(data_parallel(single, make_mesh(2)))
    print(json.dumps({
        "param_diff": max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                          for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(two.params))),
        "obs_shard_rows": [s.data.shape[0] for s in two.obs.addressable_shards],
    }))
    """
)


@pytest.mark.slow
def test_the_same_wrapper_makes_impala_data_parallel():
    result = subprocess.run([sys.executable, "-c", IMPALA_SCRIPT], cwd=REPO, env=_environ(2),
                            capture_output=True, text=True, timeout=110)
    assert result.returncode == 0, result.stderr[-3000:]
    out = _last_json(result.stdout)
    assert out["obs_shard_rows"] == [2, 2] and out["param_diff"] < 1e-5


# ---------------------------------------------------------------- several processes

def test_unreachable_coordinator_fails_fast_with_a_clear_error(tmp_path):
    port = multihost.free_port()  # nobody listens there
    argv = ["-m", "jaxrl", "train", "ppo", "--distributed", "--coordinator", f"127.0.0.1:{port}",
            "--num-processes", "2", "--process-id", "1", "--distributed-timeout", "2",
            "--out", str(tmp_path / "run")]
    started = time.monotonic()
    result = subprocess.run([sys.executable, *argv], cwd=REPO, env=_environ(),
                            capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode == 2
    assert f"cannot reach the coordinator at 127.0.0.1:{port} within 2 s" in result.stderr
    assert elapsed < 30


WORKER_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from jaxrl.distributed import multihost
    port, pid, out_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    multihost.initialize(multihost.resolve(f"127.0.0.1:{port}", 2, pid,
                                           initialization_timeout=60, heartbeat_timeout=10))
    import jax, numpy as np
    from jaxrl import envs, run
    from jaxrl.agents import ppo
    from jaxrl.distributed import data_parallel, make_mesh

    env, env_params = envs.make("CartPole-v1")
    agent = data_parallel(ppo.make(env, env_params, ppo.Config(**CONFIG)), make_mesh())
    result = run.train(agent, jax.random.PRNGKey(7), CONFIG["total_steps"], out_dir=out_dir,
                       eval_episodes=0, progress=False, chunk_iterations=2)
    params = jax.device_get(result.state.params)
    print(json.dumps({
        "process": jax.process_index(), "processes": jax.process_count(),
        "devices": jax.device_count(),
        "checksum": float(sum(np.abs(np.asarray(x, np.float64)).sum()
                              for x in jax.tree.leaves(params))),
        "env_steps": result.summary["env_steps"],
        "policy_loss": result.metrics["policy_loss"][:, 0].tolist(),
    }))
    """
)


@pytest.mark.slow
def test_two_processes_train_identical_parameters(tmp_path):
    config = dict(TINY, total_steps=64)
    script = WORKER_SCRIPT.replace("CONFIG", repr(config))
    port = multihost.free_port()
    out_dir = tmp_path / "run"
    procs = [subprocess.Popen([sys.executable, "-c", script, str(port), str(i), str(out_dir)],
                              cwd=REPO, env=_environ(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=110)
        assert p.returncode == 0, stderr[-3000:]
        outs.append(_last_json(stdout))
    assert [o["process"] for o in outs] == [0, 1]
    assert all(o["processes"] == 2 and o["devices"] == 2 for o in outs)
    # Training proceeded: 4 iterations, each with a (changing) loss.
    assert all(o["env_steps"] == 64 and len(o["policy_loss"]) == 4 for o in outs)
    assert outs[0]["checksum"] == outs[1]["checksum"]
    # ... and equals single-device PPO with the same global batch and seed.
    env, env_params = envs.make("CartPole-v1")
    single = ppo.make(env, env_params, ppo.Config(**config))
    # run.train starts seed 0 from split(key, 1)[0].
    key = jax.random.split(jax.random.PRNGKey(7), 1)[0]
    reference = jax.jit(lambda k: jax.lax.scan(lambda s, _: single.step(s), single.init(k),
                                               length=4))(key)[0]
    np.testing.assert_allclose(outs[0]["checksum"], _param_checksum(reference.params), rtol=1e-5)
    # Process 0 alone wrote the run directory.
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["env_steps"] == 64
    assert len((out_dir / "metrics.csv").read_text().splitlines()) == 1 + 4


DYING_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from jaxrl.distributed import multihost
    port, pid = sys.argv[1], int(sys.argv[2])
    multihost.initialize(multihost.resolve(f"127.0.0.1:{port}", 2, pid,
                                           initialization_timeout=60, heartbeat_timeout=3))
    import jax, jax.numpy as jnp
    from jaxrl.distributed import make_mesh, replicated
    total = jax.jit(lambda x: x.sum(), out_shardings=replicated(make_mesh()))
    print("step", float(total(jax.device_put(jnp.ones((2,)), replicated(make_mesh())))), flush=True)
    if pid == 1:
        os._exit(1)  # dies without saying goodbye, like a lost host
    time.sleep(120)  # process 0 would wait here for ever without the heartbeat check
    print("survived", flush=True)
    """
)


def test_survivor_exits_when_the_other_process_dies():
    port = multihost.free_port()
    procs = [subprocess.Popen([sys.executable, "-c", DYING_SCRIPT, str(port), str(i)],
                              cwd=REPO, env=_environ(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    started = time.monotonic()
    stdout, stderr = procs[0].communicate(timeout=100)
    elapsed = time.monotonic() - started
    procs[1].communicate(timeout=30)
    assert "step 2.0" in stdout and "survived" not in stdout
    assert procs[0].returncode != 0
    assert "another task died" in stderr
    assert elapsed < 60, elapsed
