"""IMPALA throughput: on-device, asynchronous actor threads, and the
synchronous A2C-shaped baseline, plus two learning runs.

    python benchmarks/impala_async.py [--quick] [--out benchmarks/results]

Rows (CartPole-v1, the learner's default ``impala.Config``: 8 envs x 20
steps per actor trajectory):

* ``on-device``: ``jaxrl.agents.impala`` with ``policy_lag=4``, actors and
  learner in one jitted step (a ``lax.scan`` of steps; compile excluded).
* ``async gymnax``: ``jaxrl.distributed.async_impala`` with 1, 2, 4 actor
  threads stepping jitted gymnax envs.
* ``async gymnasium``: the same with Gymnasium's CartPole-v1 stepped on the
  host by 1, 2 actor threads.
* ``sync ...``: the same runtime with ``AsyncConfig(synchronous=True)``: every
  actor waits for the parameters its last trajectory produced (policy lag 0).

Async and sync rows use ``trajectories_per_update = actors``, so a learner
update consumes the same batch in both and only the waiting differs. Rates
are steady-state: measured between the learner's first update after 25% of
the run and its last, so jit compilation (inside the threads) is excluded.
Columns: actor env steps/s, learner updates/s and samples/s, mean policy lag
(learner version minus behaviour version); each async row's lag histogram is
printed below the table. The learning rows train CartPole-v1 with 2 actor
threads on gymnax and on Gymnasium (both with the configuration of the
gymnax slow test in ``tests/test_async_impala.py``) and report the greedy
evaluation return (20 episodes). Everything is written to ``<out>/impala_async.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import jax
import numpy as np

from jaxrl import envs
from jaxrl.agents import impala
from jaxrl.distributed import async_impala

ENV = "CartPole-v1"
HOST_ENV = "gymnasium:CartPole-v1"

# The learning runs: the gymnax one is tests/test_async_impala.py's slow test;
# the Gymnasium one takes about two minutes on 2 cores, longer than a test may.
GYMNAX_LEARNING = dict(
    config=impala.Config(total_steps=2_000_000, max_grad_norm=0.5),
    async_config=async_impala.AsyncConfig(num_actors=2),
)
GYMNASIUM_LEARNING = dict(
    config=impala.Config(total_steps=2_000_000, max_grad_norm=0.5),
    async_config=async_impala.AsyncConfig(num_actors=2),
)


def on_device_row(steps: int) -> dict:
    env, env_params = envs.make(ENV)
    config = impala.Config(policy_lag=4, total_steps=steps)
    agent = impala.make(env, env_params, config)
    iterations = max(1, steps // agent.env_steps_per_step)
    run = jax.jit(lambda s: jax.lax.scan(lambda s, _: agent.step(s), s, length=iterations))
    state = agent.init(jax.random.PRNGKey(0))
    compiled = run.lower(state).compile()
    started = time.perf_counter()
    _, metrics = jax.block_until_ready(compiled(state))
    seconds = time.perf_counter() - started
    return {
        "mode": "on-device", "env": ENV, "actors": "-",
        "actor_env_steps_per_s": iterations * agent.env_steps_per_step / seconds,
        "learner_updates_per_s": iterations / seconds,
        "learner_samples_per_s": iterations * agent.env_steps_per_step / seconds,
        "mean_lag": float(np.mean(metrics["policy_lag"])),
        "env_steps": iterations * agent.env_steps_per_step,
        "seconds": seconds,
    }


def steady_rates(result: async_impala.AsyncResult, steps_per_update: int) -> dict:
    """Rates between the first learner update after 25% of the run and the
    last (the metrics are cumulative since the start, compile included)."""
    m = result.metrics
    seconds = m["seconds"].astype(np.float64)
    actor_steps = m["actor_env_steps_per_s"].astype(np.float64) * seconds
    last = len(seconds) - 1
    first = min(int(0.25 * len(seconds)), max(last - 1, 0))
    span = max(seconds[last] - seconds[first], 1e-9)
    updates = last - first
    return {
        "actor_env_steps_per_s": (actor_steps[last] - actor_steps[first]) / span,
        "learner_updates_per_s": updates / span,
        "learner_samples_per_s": updates * steps_per_update / span,
    }


def async_row(env_id: str, actors: int, synchronous: bool, steps: int) -> dict:
    config = impala.Config(total_steps=steps)
    async_config = async_impala.AsyncConfig(
        num_actors=actors, trajectories_per_update=actors, synchronous=synchronous)
    result = async_impala.train(env_id, config, async_config, jax.random.PRNGKey(0), steps,
                      eval_episodes=0)
    histogram = result.lag_histogram
    total = sum(histogram.values())
    steps_per_update = config.num_envs * config.rollout_len * actors
    return {
        "mode": ("sync " if synchronous else "async ")
        + ("gymnasium" if env_id.startswith("gymnasium:") else "gymnax"),
        "env": env_id, "actors": actors,
        **steady_rates(result, steps_per_update),
        "mean_lag": sum(k * v for k, v in histogram.items()) / total,
        "lag_histogram": {str(k): v for k, v in histogram.items()},
        "env_steps": result.env_steps,
        "seconds": result.throughput["seconds"],
    }


def learning_row(env_id: str, config: impala.Config,
                 async_config: async_impala.AsyncConfig, seed: int = 0) -> dict:
    started = time.perf_counter()
    result = async_impala.train(env_id, config, async_config, jax.random.PRNGKey(seed),
                      config.total_steps, eval_episodes=20)
    return {
        "env": env_id, "actors": async_config.num_actors, "seed": seed,
        "env_steps": result.env_steps,
        "eval_return_mean": result.summary["eval_return_mean"],
        "eval_return_std": result.summary["eval_return_std"],
        "lag_histogram": {str(k): v for k, v in result.lag_histogram.items()},
        "seconds": time.perf_counter() - started,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--quick", action="store_true",
                        help="short throughput runs, no learning runs")
    args = parser.parse_args(argv)
    gymnax_steps, host_steps = (64_000, 16_000) if args.quick else (320_000, 64_000)

    report = {"meta": {"jax": jax.__version__, "backend": jax.devices()[0].platform,
                       "cpus": _cpus(), "machine": platform.machine(),
                       "python": sys.version.split()[0],
                       "argv": sys.argv[1:] if argv is None else list(argv)},
              "throughput": [], "learning": []}
    out = Path(args.out)

    print(f"IMPALA on {ENV}, {jax.devices()[0].platform}, {_cpus()} CPUs")
    header = (f"{'mode':<16} {'actors':>6} {'actor steps/s':>13} {'updates/s':>10} "
              f"{'samples/s':>10} {'mean lag':>8}")
    print(header)
    rows = report["throughput"]
    plan = [("on-device", None, None, gymnax_steps)]
    plan += [(ENV, n, sync, gymnax_steps) for sync in (False, True) for n in (1, 2, 4)]
    plan += [(HOST_ENV, n, sync, host_steps) for sync in (False, True) for n in (1, 2)]
    for env_id, actors, sync, steps in plan:
        row = on_device_row(steps) if env_id == "on-device" else async_row(env_id, actors, sync,
                                                                            steps)
        rows.append(row)
        print(f"{row['mode']:<16} {row['actors']:>6} {row['actor_env_steps_per_s']:>13.0f} "
              f"{row['learner_updates_per_s']:>10.1f} {row['learner_samples_per_s']:>10.0f} "
              f"{row['mean_lag']:>8.2f}", flush=True)
        _write(out, report)

    print("\npolicy lag histograms (lag: trajectories)")
    for row in rows:
        if row["mode"].startswith("async"):
            hist = " ".join(f"{k}:{v}" for k, v in row["lag_histogram"].items())
            print(f"{row['mode']:<16} {row['actors']:>2} actors  {hist}")

    if not args.quick:
        print(f"\nlearning, 2 actor threads, greedy evaluation over 20 episodes")
        print(f"{'env':<24} {'env steps':>10} {'eval return':>12} {'seconds':>8}")
        for env_id, setting in ((ENV, GYMNAX_LEARNING), (HOST_ENV, GYMNASIUM_LEARNING)):
            row = learning_row(env_id, **setting)
            report["learning"].append(row)
            print(f"{env_id:<24} {row['env_steps']:>10} {row['eval_return_mean']:>12.1f} "
                  f"{row['seconds']:>8.1f}", flush=True)
            _write(out, report)
    return 0


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _write(out: Path, report: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "impala_async.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    raise SystemExit(main())
