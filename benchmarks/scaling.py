"""Data-parallel PPO scaling: env steps/s on 1, 2, 4 devices and 2 processes.

    python benchmarks/scaling.py [--quick] [--out benchmarks/results]

Each row runs in a fresh python process (a forced CPU device count must be set
before jax is imported):

- ``devices=1``: plain single-device PPO (the baseline);
- ``devices=2``, ``devices=4``: ``data_parallel(ppo.make(...), make_mesh(N))``
  on N forced CPU devices (``--xla_force_host_platform_device_count=N``);
- ``processes=2``: two local processes joined by ``jax.distributed`` (gloo
  collectives over loopback), one device each, one mesh over both.

Every row trains the same global batch (PPO on CartPole-v1, ``num_envs`` x 128
steps, 4 epochs x 4 minibatches) as one ``lax.scan`` of ``iterations`` steps,
compiled ahead of time; steps/s is the best of ``repeats`` timed runs.

On a machine with 2 CPU cores (this project's), the forced "devices" are
threads sharing those 2 cores, so the rows measure the overhead of
partitioning and all-reduces, not a speed-up. On several GPUs or hosts the
same program splits real work.

Writes ``<out>/scaling.json``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

CONFIG = dict(rollout_len=128, num_epochs=4, num_minibatches=4, total_steps=10_000_000)
FULL = dict(num_envs=64, iterations=20, repeats=3)
QUICK = dict(num_envs=32, iterations=8, repeats=2)
NOTE = (
    "2-core CPU machine: forced host devices and local processes share the same 2 cores, "
    "so these numbers show the overhead of data parallelism, not a speed-up"
)


def worker(args: argparse.Namespace) -> None:
    """One row: time ``iterations`` PPO steps; print a JSON line."""
    if args.process_id is not None:
        from jaxrl.distributed import multihost

        multihost.initialize(
            multihost.resolve(args.coordinator, 2, args.process_id, initialization_timeout=120)
        )
    import jax

    from jaxrl import envs
    from jaxrl.agents import ppo
    from jaxrl.distributed import data_parallel, make_mesh

    env, env_params = envs.make("CartPole-v1")
    agent = ppo.make(env, env_params, ppo.Config(num_envs=args.num_envs, **CONFIG))
    if jax.device_count() > 1:
        agent = data_parallel(agent, make_mesh())
    run = jax.jit(
        lambda state: jax.lax.scan(lambda s, _: agent.step(s), state, length=args.iterations)
    )
    state = jax.jit(agent.init)(jax.random.PRNGKey(0))
    started = time.perf_counter()
    compiled = run.lower(state).compile()
    compile_s = time.perf_counter() - started
    times = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        state, _ = compiled(state)
        jax.block_until_ready(state)
        times.append(time.perf_counter() - started)
    steps = args.iterations * agent.env_steps_per_step
    print(json.dumps({
        "devices": jax.device_count(),
        "processes": jax.process_count(),
        "compile_s": compile_s,
        "best_s": min(times),
        "steps_per_s": steps / min(times),
        "env_steps_timed": steps,
    }), flush=True)


def _environ(devices: int) -> dict[str, str]:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def _worker_argv(size: dict) -> list[str]:
    return [sys.executable, __file__, "--worker", "--num-envs", str(size["num_envs"]),
            "--iterations", str(size["iterations"]), "--repeats", str(size["repeats"])]


def _last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def run_devices(n: int, size: dict) -> dict:
    result = subprocess.run(_worker_argv(size), cwd=REPO, env=_environ(n), capture_output=True,
                            text=True, timeout=1800)
    if result.returncode:
        raise RuntimeError(f"devices={n} failed:\n{result.stderr[-3000:]}")
    return {"row": f"{n} device{'s' if n > 1 else ''}", **_last_json(result.stdout)}


def run_processes(n: int, size: dict) -> dict:
    from jaxrl.distributed.multihost import free_port

    coordinator = f"127.0.0.1:{free_port()}"
    procs = [
        subprocess.Popen(_worker_argv(size) + ["--coordinator", coordinator, "--process-id", str(i)],
                         cwd=REPO, env=_environ(1), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for i in range(n)
    ]
    outs = [p.communicate(timeout=1800) for p in procs]
    for p, (_, err) in zip(procs, outs):
        if p.returncode:
            raise RuntimeError(f"processes={n} failed:\n{err[-3000:]}")
    rows = [_last_json(out) for out, _ in outs]
    # Both processes ran the same SPMD program; process 0's clock is the row's.
    return {"row": f"{n} processes x 1 device", **rows[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller batch, fewer iterations")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--num-envs", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--iterations", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--coordinator", help=argparse.SUPPRESS)
    parser.add_argument("--process-id", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    size = QUICK if args.quick else FULL
    rows = [run_devices(n, size) for n in (1, 2, 4)] + [run_processes(2, size)]
    base = rows[0]["steps_per_s"]
    for row in rows:
        row["relative_to_1_device"] = row["steps_per_s"] / base

    print(f"PPO on CartPole-v1, global batch {size['num_envs']} envs x {CONFIG['rollout_len']} "
          f"steps, {size['iterations']} iterations timed (best of {size['repeats']})")
    print(f"{'setup':<26}{'env steps/s':>14}{'vs 1 device':>13}{'compile s':>11}")
    for row in rows:
        print(f"{row['row']:<26}{row['steps_per_s']:>14,.0f}{row['relative_to_1_device']:>13.2f}"
              f"{row['compile_s']:>11.1f}")
    print(f"note: {NOTE}")

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "scaling.json"
    path.write_text(json.dumps({
        "benchmark": "scaling",
        "quick": args.quick,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
        "config": {"env": "CartPole-v1", **CONFIG, **size},
        "note": NOTE,
        "rows": rows,
    }, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
