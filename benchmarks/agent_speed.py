"""Training steps/s of PPO, IMPALA, DDPG and DQN in this checkout against
another checkout of jaxrl (the code before a change), in one run.

    python benchmarks/agent_speed.py --before /tmp/jaxrl-before [--rounds 3] [--out benchmarks/results]

Each measurement is a fresh Python process that imports ``jaxrl`` from one
checkout, makes the agent at a fixed config, compiles
``lax.scan(agent.step)`` over one chunk of iterations, runs it once (past
any replay warm-up) and then times ``--repeats`` further chunks. The two
checkouts alternate (before, after, before, after, ...) so that drift in the
machine's load falls on both alike; the table gives each side's best
steps/s and the after/before ratio of the bests.

``--before`` is any directory holding a ``jaxrl/`` package, e.g. made with
``git archive REV | tar -x -C DIR``. Writes ``<out>/agent_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# algorithm -> (env id, config overrides, iterations per timed chunk). Replay
# warm-ups are shortened so that the timed chunks include the updates.
CASES: dict[str, tuple[str, dict, int]] = {
    "ppo": ("CartPole-v1", {}, 40),
    "impala": ("CartPole-v1", {}, 300),
    "ddpg": ("Pendulum-v1", {"warmup_steps": 256, "buffer_size": 50_000}, 1_000),
    "dqn": ("CartPole-v1", {"learning_starts": 256}, 1_000),
}


def measure(root: str, algo: str, repeats: int) -> dict:
    """Steps/s of ``algo`` with ``jaxrl`` imported from ``root`` (runs in a worker)."""
    sys.path.insert(0, root)
    import jax

    import jaxrl
    from jaxrl import agents, envs

    assert Path(jaxrl.__file__).resolve().is_relative_to(Path(root).resolve()), jaxrl.__file__
    env_id, overrides, length = CASES[algo]
    module = agents.get(algo)
    env, env_params = envs.make(env_id)
    agent = module.make(env, env_params, module.Config(**overrides))

    def chunk(state):
        return jax.lax.scan(lambda s, _: agent.step(s), state, length=length)

    run = jax.jit(chunk)
    state = agent.init(jax.random.PRNGKey(0))
    start = time.perf_counter()
    state, _ = jax.block_until_ready(run(state))
    compile_and_first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        state, _ = jax.block_until_ready(run(state))
        times.append(time.perf_counter() - start)
    steps = length * agent.env_steps_per_step
    return {"steps_per_s": [steps / t for t in times], "first_call_s": compile_and_first}


def run_worker(root: str, algo: str, repeats: int) -> dict:
    env = {**os.environ, "JAX_ENABLE_COMPILATION_CACHE": "false", "PYTHONPATH": root}
    out = subprocess.run(
        [sys.executable, __file__, "--worker", root, algo, str(repeats)],
        capture_output=True, text=True, env=env, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="checkout of jaxrl before the change")
    parser.add_argument("--algos", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--rounds", type=int, default=3, help="before/after pairs per agent")
    parser.add_argument("--repeats", type=int, default=3, help="timed chunks per process")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()

    sides = {"before": str(Path(args.before).resolve()), "after": str(ROOT)}
    results: dict[str, dict[str, list[float]]] = {}
    for algo in args.algos:
        results[algo] = {"before": [], "after": []}
        for _ in range(args.rounds):
            for side, root in sides.items():
                results[algo][side] += run_worker(root, algo, args.repeats)["steps_per_s"]

    print(f"{'agent':<8} {'env':<12} {'before (best)':>14} {'after (best)':>13} {'after/before':>13}")
    table = {}
    for algo, runs in results.items():
        before, after = max(runs["before"]), max(runs["after"])
        table[algo] = {"env": CASES[algo][0], "before_best": before, "after_best": after,
                       "ratio": after / before, "before_all": runs["before"],
                       "after_all": runs["after"]}
        print(f"{algo:<8} {CASES[algo][0]:<12} {before:>14,.0f} {after:>13,.0f} {after / before:>13.3f}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "agent_speed.json").write_text(json.dumps(
        {"cases": {a: {"env": e, "overrides": o, "chunk": n} for a, (e, o, n) in CASES.items()},
         "rounds": args.rounds, "repeats": args.repeats, "results": table}, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        print(json.dumps(measure(sys.argv[2], sys.argv[3], int(sys.argv[4]))))
    else:
        main()
