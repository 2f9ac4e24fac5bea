"""DQN (Double-DQN targets, the default Config) on CartPole-v1.

    python benchmarks/dqn_cartpole.py [--steps 500000] [--seeds 2] [--evals 10]
        [--out benchmarks/results] [--set field=value ...]

Trains ``--seeds`` vmapped seeds for ``--steps`` env steps, cut into
``--evals`` equal chunks (one compiled program); after each chunk every seed's
greedy policy is evaluated on 20 episodes (jitted separately). The target is
the issue's: a mean greedy return ≥ 475 within 5·10^5 env steps. Prints the
curve and writes ``<out>/dqn_cartpole.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl import envs
from jaxrl.agents import dqn
from jaxrl.run import config_io

TARGET = 475.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500_000)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--evals", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)

    overrides = config_io.parse_overrides(dqn.Config, config_io.parse_assignments(args.set))
    config = dataclasses.replace(dqn.Config(), total_steps=args.steps, **overrides)
    env, env_params = envs.make("CartPole-v1")
    agent = dqn.make(env, env_params, config)
    chunk = max(1, args.steps // agent.env_steps_per_step // args.evals)

    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(args.seeds)])
    init = jax.jit(jax.vmap(agent.init))
    run_chunk = jax.jit(jax.vmap(lambda s: jax.lax.scan(lambda s, _: agent.step(s), s, length=chunk)))
    evaluate = jax.jit(jax.vmap(lambda s, k: agent.evaluate(s, k, 20)))
    states = init(keys)
    curve, seconds = [], 0.0
    print(f"{'env steps':>10} {'eval mean':>10}  per seed")
    for i in range(args.evals):
        started = time.perf_counter()
        states, _ = jax.block_until_ready(run_chunk(states))
        seconds += time.perf_counter() - started
        returns = np.asarray(evaluate(states, jax.random.split(jax.random.PRNGKey(1000 + i), args.seeds)))
        steps = int(np.asarray(states.env_steps)[0])
        per_seed = returns.mean(axis=1)
        curve.append({"env_steps": steps, "eval_return": per_seed.tolist()})
        print(f"{steps:>10} {per_seed.mean():>10.1f}  {np.round(per_seed, 1).tolist()}")

    best = max(np.mean(c["eval_return"]) for c in curve)
    reached = [c["env_steps"] for c in curve if np.mean(c["eval_return"]) >= TARGET]
    verdict = "PASS" if reached else "FAIL"
    print(f"target: mean greedy return >= {TARGET} within {args.steps} env steps: {verdict} "
          f"(best {best:.1f}{', first at ' + str(reached[0]) + ' steps' if reached else ''}); "
          f"training {seconds:.0f} s including compilation")
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "meta": {"platform": platform.platform(), "jax": jax.__version__, "device": str(jax.devices()[0])},
        "config": dataclasses.asdict(config), "seeds": args.seeds, "curve": curve,
        "target": TARGET, "verdict": verdict, "train_seconds": seconds,
    }
    path = args.out / "dqn_cartpole.json"
    path.write_text(json.dumps(report, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
