"""Runs PPO's CartPole training program (4 seeds x 976 iterations) again and
again in fresh processes and counts the runs that never finish, taking the
native stacks of every thread of a hung one with gdb.

    python benchmarks/jax_hang.py --python /path/to/venv-with-jax-0.10/bin/python --runs 30 --mode vmap

``--mode map`` runs ``jaxrl.run.train`` (seeds mapped and split over the CPU
devices, what jaxrl runs); ``--mode vmap`` the program jaxrl ran before,
``jit(scan(vmap(agent.step)))`` with ``vmap(agent.init)`` inside. Run two of
these side by side to load the machine as the hangs were first seen.
Results go to ``results/jax_hang_<mode>.json`` and stacks to
``results/jax_hang_stacks_<mode>_<run>.txt``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROGRAM = """
import sys, time, jax
from jaxrl import envs, run
from jaxrl.agents import ppo
mode, seed = sys.argv[1], int(sys.argv[2])
env, params = envs.make("CartPole-v1")
agent = ppo.make(env, params, ppo.Config(total_steps=500_000))
if mode == "map":
    run.train(agent, jax.random.PRNGKey(seed), 500_000, seeds=4, progress=False,
              eval_episodes=0, compile_cache=False)
else:
    iterations = -(-500_000 // agent.env_steps_per_step)
    program = jax.jit(lambda keys: jax.lax.scan(
        lambda s, _: jax.vmap(agent.step)(s), jax.vmap(agent.init)(keys), length=iterations))
    jax.block_until_ready(program(jax.random.split(jax.random.PRNGKey(seed), 4)))
print("finished", jax.__version__, flush=True)
"""


def one_run(python: str, mode: str, seed: int, limit: float, stacks: Path) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = subprocess.Popen([python, "-c", PROGRAM, mode, str(seed)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        out, _ = process.communicate(timeout=limit)
        return "finished" if "finished" in out else f"failed (exit {process.returncode})"
    except subprocess.TimeoutExpired:
        done = subprocess.run(["gdb", "-p", str(process.pid), "-batch", "-ex", "thread apply all bt"],
                              capture_output=True, text=True)
        stacks.write_text(done.stdout)
        process.kill()
        process.wait()
        return "hung"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--python", default=sys.executable, help="interpreter of the jax to test")
    p.add_argument("--mode", choices=("map", "vmap"), default="vmap")
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--limit", type=float, default=150.0, help="seconds before a run counts as hung")
    args = p.parse_args()
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    outcomes = []
    for seed in range(1, args.runs + 1):
        started = time.perf_counter()
        outcome = one_run(args.python, args.mode, seed, args.limit,
                          results / f"jax_hang_stacks_{args.mode}_{seed}.txt")
        outcomes.append(outcome)
        print(f"run {seed}: {outcome} ({time.perf_counter() - started:.0f} s)", flush=True)
    hung = outcomes.count("hung")
    print(f"{args.mode}: {hung} hung of {args.runs}")
    (results / f"jax_hang_{args.mode}.json").write_text(
        json.dumps({"python": args.python, "mode": args.mode, "outcomes": outcomes}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
