"""Data-parallel PPO over devices and processes (jaxrl.distributed).

Several CPU devices need XLA_FLAGS=--xla_force_host_platform_device_count=N
before jax is imported, and several processes need their own interpreters, so
those checks run in subprocesses; this process keeps its single device.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from xla_env import with_host_devices

from jaxrl import envs
from jaxrl.agents import ppo
from jaxrl.cli import main
from jaxrl.distributed import make_mesh, multihost

REPO = Path(__file__).resolve().parents[1]

# Tiny shapes: these tests check equality and plumbing, not learning.
TINY = dict(num_envs=4, rollout_len=4, num_epochs=2, num_minibatches=2, hidden_sizes=(8,),
            total_steps=64)
TINY_SET = ["--set", "num_envs=4", "--set", "rollout_len=4", "--set", "num_epochs=2",
            "--set", "num_minibatches=2", "--set", "hidden_sizes=8"]


def _environ(devices: int = 1) -> dict[str, str]:
    return dict(with_host_devices(devices), JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")


def _last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def _param_checksum(params) -> float:
    return float(sum(np.abs(np.asarray(x, np.float64)).sum() for x in jax.tree.leaves(params)))


# ---------------------------------------------------------------- validation (this process's two devices)

def test_more_devices_than_available_is_a_clear_error():
    with pytest.raises(ValueError, match=r"devices=3 is invalid: expected 1\.\.2"):
        make_mesh(3)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--devices", "3"], "devices=3 is invalid"),
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


# ---------------------------------------------------------------- processes that disagree or stop

def _launch_cli(port: int, argvs: list[list[str]]) -> list[subprocess.Popen]:
    """``jaxrl train ppo --distributed`` as process i with ``argvs[i]`` appended."""
    return [subprocess.Popen(
        [sys.executable, "-m", "jaxrl", "train", "ppo", "--distributed", "--coordinator",
         f"127.0.0.1:{port}", "--num-processes", str(len(argvs)), "--process-id", str(i),
         "--distributed-timeout", "20", "--eval-episodes", "0", "--no-progress", *TINY_SET, *argv],
        cwd=REPO, env=_environ(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i, argv in enumerate(argvs)]


def _finish(procs: list[subprocess.Popen], timeout: float) -> list[tuple[int, str, float]]:
    """(status, stderr, seconds from now to its exit) of each process; kills stragglers."""
    started, results = time.monotonic(), []
    try:
        for p in procs:
            _, stderr = p.communicate(timeout=max(1.0, timeout - (time.monotonic() - started)))
            results.append((p.returncode, stderr, time.monotonic() - started))
    finally:
        for p in procs:
            p.kill()
    return results


@pytest.mark.parametrize(
    "identities, expected",
    [
        ([{"out_dir": "/a"}, {"out_dir": "/a"}], []),
        ([{"out_dir": "/a"}, {"out_dir": "/b"}], ['out_dir: process 0 "/a", process 1 "/b"']),
        ([{"seeds": 1}, {"seeds": 1}, {"seeds": 2}], ["seeds: process 0 1, process 2 2"]),
        ([{"out_dir": None}, {"out_dir": "/b"}], ['out_dir: process 0 null, process 1 "/b"']),
        ([{"resume": True}, {}], ['resume: process 0 true, process 1 "<missing>"']),
        ([{"agent_config": {"lr": 1, "n": 2}}, {"agent_config": {"lr": 2, "n": 2}}],
         ["agent_config.lr: process 0 1, process 1 2"]),
        ([{"hparams": list(range(40))}, {"hparams": list(range(41))}],
         ["hparams: process 0 <150 chars, sha256 "]),
        ([{"algorithm": "ppo", "key": {"data": [0, 0]}},
          {"algorithm": "a2c", "key": {"data": [0, 1]}}],
         ['algorithm: process 0 "ppo", process 1 "a2c"',
          "key.data: process 0 [0, 0], process 1 [0, 1]"]),
    ],
)
def test_run_differences_name_each_field_and_process(identities, expected):
    differences = multihost.describe_differences(identities)
    assert len(differences) == len(expected)
    for difference, start in zip(differences, expected):
        assert difference.startswith(start), (difference, start)


def test_processes_given_different_runs_are_refused_on_every_process_before_compiling(tmp_path):
    # Before the check, these two trained a few chunks, then waited on each other for ever.
    runs = [tmp_path / "run0", tmp_path / "run1"]
    procs = _launch_cli(multihost.free_port(), [
        ["--out", str(runs[0]), "--total-steps", "64", "--seed", "0"],
        ["--out", str(runs[1]), "--total-steps", "64", "--seed", "1"],
    ])
    results = _finish(procs, timeout=100)
    print("seconds to refusal:", [round(s, 1) for _, _, s in results])
    for status, stderr, seconds in results:
        last = stderr.strip().splitlines()[-1]
        assert status == 2, stderr[-3000:]
        assert last.startswith("jaxrl: error: the processes of this job were started with "
                               "different runs:"), last
        assert f'out_dir: process 0 "{runs[0]}", process 1 "{runs[1]}"' in last
        assert "key.data: process 0" in last
        assert seconds < 60
    assert not any(run.exists() for run in runs)  # refused before anything was written


def test_sigterm_to_one_process_stops_both_at_the_same_boundary_with_a_checkpoint(tmp_path):
    run = tmp_path / "run"
    # A checkpoint after every chunk makes the run last long enough to be signalled.
    argv = ["--out", str(run), "--total-steps", str(16 * 400), "--chunk-iterations", "2",
            "--checkpoint-every", "0"]
    procs = _launch_cli(multihost.free_port(), [argv, argv])
    try:
        deadline = time.monotonic() + 100
        while not any(p.name.isdigit() for p in (run / "checkpoints").glob("*")):
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.01)
        procs[1].send_signal(signal.SIGTERM)
    finally:
        results = _finish(procs, timeout=60)
    print("seconds from SIGTERM to exit:", [round(s, 1) for _, _, s in results])
    saved = sorted(int(p.name) for p in (run / "checkpoints").glob("*") if p.name.isdigit())
    for status, stderr, seconds in results:
        last = stderr.strip().splitlines()[-1]
        assert status == 143, stderr[-3000:]
        assert last.startswith(f"jaxrl: stopped by SIGTERM on process 1 after iteration "
                               f"{saved[-1]}, checkpoint saved; continue with: jaxrl train ppo "
                               f"--out {run} --resume"), last
        assert seconds < 30
    assert saved[-1] < 400 and not (run / "summary.json").exists()
    rows = len((run / "metrics.csv").read_text().splitlines()) - 1
    assert rows == saved[-1]


PEER_WAIT_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from jaxrl.distributed import multihost
    port, pid = sys.argv[1], int(sys.argv[2])
    multihost.initialize(multihost.resolve(f"127.0.0.1:{port}", 2, pid,
                                           initialization_timeout=60, heartbeat_timeout=30))
    if pid == 1:
        time.sleep(3)
        sys.exit(0)  # leaves without ever publishing
    for timeout in (1, 60):
        started = time.monotonic()
        try:
            multihost.exchange(f"test/{timeout}", "x", timeout=timeout, what="a test value")
        except multihost.PeerWaitError as e:
            print(f"{time.monotonic() - started:.1f} {e}", flush=True)
    """
)


def test_a_wait_on_a_peer_ends_at_its_timeout_or_when_the_peer_exits():
    port = multihost.free_port()
    procs = [subprocess.Popen([sys.executable, "-c", PEER_WAIT_SCRIPT, str(port), str(i)],
                              cwd=REPO, env=_environ(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    stdout, stderr = procs[0].communicate(timeout=60)
    procs[1].communicate(timeout=30)
    timed_out, exited = stdout.strip().splitlines()
    seconds, message = timed_out.split(" ", 1)
    assert 1 <= float(seconds) < 5
    assert message == ("process 0 waited 1 s for a test value from process(es) 1 in vain; "
                       "they are stuck or run something else")
    seconds, message = exited.split(" ", 1)
    assert float(seconds) < 10  # not the 60 s timeout: process 1 said it left
    assert message.startswith("process 0 waited for a test value, but process 1 exited first")
