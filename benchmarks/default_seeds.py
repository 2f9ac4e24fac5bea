"""Do the defaults learn the default task? Seeds solved out of N.

PPO (both objectives) on CartPole-v1 in 5·10^5 steps and IMPALA with actors
4 updates behind on CartPole-v1 in 10^6 steps, each with its Config defaults
and optionally with the settings they replaced, for comparison. A seed counts
as solved at a mean deterministic evaluation return >= 475 over 20 episodes.
All seeds of a row train as one vmapped program (PRNGKey(0..N-1)).

    python benchmarks/default_seeds.py              # 16 seeds, defaults and the old settings
    python benchmarks/default_seeds.py --seeds 4 --defaults-only

Prints a table and writes results/default_seeds.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl import envs
from jaxrl.agents import impala, ppo

SOLVED = 475.0
# (agent, row name, Config values, env steps); the old rows are the settings
# the defaults replaced.
ROWS = [
    ("ppo", "clip, defaults", dict(), 500_000),
    ("ppo", "kl_adaptive, defaults", dict(objective="kl_adaptive"), 500_000),
    ("ppo", "clip, old lr 2.5e-4", dict(learning_rate=2.5e-4), 500_000),
    ("ppo", "kl_adaptive, old lr 2.5e-4", dict(objective="kl_adaptive", learning_rate=2.5e-4), 500_000),
    ("impala", "policy_lag=4, defaults", dict(policy_lag=4), 1_000_000),
    ("impala", "policy_lag=4, old entropy 0.01", dict(policy_lag=4, entropy_cost=0.01), 1_000_000),
    ("impala", "policy_lag=4, norm 0.5, entropy 0.01",
     dict(policy_lag=4, entropy_cost=0.01, max_grad_norm=0.5), 1_000_000),
]
MODULES = {"ppo": ppo, "impala": impala}


def eval_returns(name: str, values: dict, total_steps: int, seeds: int) -> np.ndarray:
    module = MODULES[name]
    env, env_params = envs.make("CartPole-v1")
    agent = module.make(env, env_params, module.Config(total_steps=total_steps, **values))
    iterations = total_steps // agent.env_steps_per_step

    def run(key):
        state = agent.init(key)
        return jax.lax.scan(lambda s, _: agent.step(s), state, length=iterations)[0]

    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(seeds)])
    states = jax.jit(jax.vmap(run))(keys)
    evaluate = jax.vmap(lambda s: jnp.mean(agent.evaluate(s, jax.random.PRNGKey(123), 20)))
    return np.asarray(jax.jit(evaluate)(states))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--defaults-only", action="store_true")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "default_seeds.json")
    args = parser.parse_args()
    rows = [r for r in ROWS if not args.defaults_only or r[1].endswith("defaults")]
    results = []
    print(f"{'agent':8} {'setting':40} {'solved':>8}  returns per seed")
    for name, label, values, steps in rows:
        started = time.perf_counter()
        returns = eval_returns(name, values, steps, args.seeds)
        solved = int(np.sum(returns >= SOLVED))
        results.append(dict(agent=name, setting=label, config=values, env_steps=steps,
                            solved=solved, seeds=args.seeds, returns=returns.round(1).tolist(),
                            seconds=round(time.perf_counter() - started, 1)))
        print(f"{name:8} {label:40} {solved:>3} / {args.seeds:<3} {np.round(returns).astype(int).tolist()}",
              flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(dict(jax=jax.__version__, rows=results), indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
