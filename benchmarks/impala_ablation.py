"""IMPALA ablation: policy lag x off-policy correction (V-trace or none).

    python benchmarks/impala_ablation.py [--env CartPole-v1] [--lags 0,4,16]
        [--steps 1000000] [--seeds 4] [--out benchmarks/results] [--quick]

For each (policy_lag, correction) cell, trains ``--seeds`` vmapped seeds of
``jaxrl.agents.impala`` (default Config otherwise) for ``--steps`` env steps
as one XLA program, then evaluates each seed's final policy on 20
deterministic episodes (jitted separately). Prints a table of the mean and
per-seed evaluation returns and the training throughput (env steps/s over
all seeds, compile excluded), and writes ``<out>/impala_ablation.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl import envs
from jaxrl.agents import impala


def run_cell(env_id: str, lag: int, correction: str, steps: int, seeds: int) -> dict:
    env, env_params = envs.make(env_id)
    config = dataclasses.replace(impala.Config(), policy_lag=lag, correction=correction,
                                 total_steps=steps)
    agent = impala.make(env, env_params, config)
    iterations = max(1, steps // agent.env_steps_per_step)

    def train(key):
        state = agent.init(key)
        state, metrics = jax.lax.scan(lambda s, _: agent.step(s), state, length=iterations)
        # KL(μ‖π) of the actors' against the learner's policy: the lag's size.
        return state, metrics["kl_behaviour"].mean()

    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(seeds)])
    started = time.perf_counter()
    compiled = jax.jit(jax.vmap(train)).lower(keys).compile()
    compile_s = time.perf_counter() - started
    started = time.perf_counter()
    states, kl_behaviour = jax.block_until_ready(compiled(keys))
    train_s = time.perf_counter() - started
    evaluate = jax.jit(jax.vmap(lambda s: jnp.mean(agent.evaluate(s, jax.random.PRNGKey(123), 20))))
    returns = np.asarray(evaluate(states))
    return {
        "env": env_id,
        "policy_lag": lag,
        "correction": correction,
        "env_steps": iterations * agent.env_steps_per_step,
        "seeds": seeds,
        "eval_return_mean": float(returns.mean()),
        "eval_return_per_seed": [float(r) for r in returns],
        "kl_behaviour": float(np.mean(kl_behaviour)),
        "compile_s": compile_s,
        "train_s": train_s,
        "steps_per_s": iterations * agent.env_steps_per_step * seeds / train_s,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--lags", default="0,4,16")
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--quick", action="store_true", help="tiny run: 20k steps, 1 seed, lags 0,4")
    args = parser.parse_args(argv)
    lags = [int(x) for x in args.lags.split(",")]
    if args.quick:
        args.steps, args.seeds, lags = 20_000, 1, [0, 4]

    cells = []
    header = f"{'lag':>4} {'correction':>10} {'eval return':>12} {'per seed':>32} {'KL(μ‖π)':>9} {'steps/s':>10}"
    print(f"{args.env}, {args.steps} env steps, {args.seeds} seeds, {jax.devices()[0].platform}")
    print(header)
    for lag in lags:
        for correction in ("vtrace", "none") if lag > 0 else ("vtrace",):
            cell = run_cell(args.env, lag, correction, args.steps, args.seeds)
            cells.append(cell)
            per_seed = " ".join(f"{r:.0f}" for r in cell["eval_return_per_seed"])
            print(f"{lag:>4} {correction:>10} {cell['eval_return_mean']:>12.1f} {per_seed:>32} "
                  f"{cell['kl_behaviour']:>9.2e} {cell['steps_per_s']:>10.0f}", flush=True)
            write_report(Path(args.out), cells, argv)  # after every cell: partial runs keep results
    return 0


def write_report(out: Path, cells: list, argv) -> None:
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "meta": {"jax": jax.__version__, "backend": jax.devices()[0].platform,
                 "machine": platform.machine(), "python": sys.version.split()[0],
                 "argv": sys.argv[1:] if argv is None else list(argv)},
        "cells": cells,
    }
    (out / "impala_ablation.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    raise SystemExit(main())
