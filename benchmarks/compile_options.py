"""XLA:CPU compile options against compile and running time, for the options
jaxrl chooses per program kind (jaxrl/compilation.py) and the test suite's
(tests/conftest.py).

For each agent at its default Config on its usual task, three programs:
``init``, ``evaluate`` (``agent.evaluate`` over 10 episodes) and ``train`` (a
jitted scan of 8 ``agent.step`` iterations). Each is compiled under every
option set in one process (jax keys its compiled programs by their options,
and no persistent cache is on here), timing the compile in CPU seconds and
the compiled program's run (best of 5, after a first call). Writes
``results/compile_options.json``.

    python benchmarks/compile_options.py [--agents ppo,dqn,ddpg,impala]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from pathlib import Path

import jax

from jaxrl import agents, envs

ROOT = Path(__file__).resolve().parent.parent

OPTION_SETS = {
    "-O1": {"xla_backend_optimization_level": 1},
    "-O1, old emitters": {"xla_backend_optimization_level": 1, "xla_cpu_use_fusion_emitters": False},
    "-O0": {"xla_backend_optimization_level": 0},
    "-O0, old emitters": {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False},
}
TASKS = {"ppo": "CartPole-v1", "a2c": "CartPole-v1", "impala": "CartPole-v1", "dqn": "CartPole-v1",
         "hdqn": "KeyDoor-v0", "ddpg": "Pendulum-v1", "d4pg": "Pendulum-v1"}
TRAIN_ITERATIONS, EVAL_EPISODES, RUNS = 8, 10, 5


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def programs(agent):
    """name -> (function, example arguments)."""
    state = jax.jit(agent.init)(jax.random.PRNGKey(0))
    return {
        "init": (agent.init, (jax.random.PRNGKey(0),)),
        "evaluate": (lambda s, k: agent.evaluate(s, k, EVAL_EPISODES), (state, jax.random.PRNGKey(1))),
        "train": (lambda s: jax.lax.scan(lambda s, _: agent.step(s), s, length=TRAIN_ITERATIONS)[0],
                  (state,)),
    }


def measure(fn, args, options) -> dict:
    lowered = jax.jit(fn, compiler_options=options).lower(*args)
    before = cpu_seconds()
    compiled = lowered.compile()
    compile_cpu = cpu_seconds() - before
    jax.block_until_ready(compiled(*args))
    runs = []
    for _ in range(RUNS):
        started = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        runs.append(time.perf_counter() - started)
    return {"compile_cpu_s": compile_cpu, "run_ms": 1000 * min(runs)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", default="ppo,dqn,ddpg,impala")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    rows = []
    for name in args.agents.split(","):
        module = agents.get(name)
        env, env_params = envs.make(TASKS[name])
        agent = module.make(env, env_params, module.Config())
        for program, (fn, example) in programs(agent).items():
            for label, options in OPTION_SETS.items():
                row = {"agent": name, "env": TASKS[name], "program": program, "options": label,
                       **measure(fn, example, options)}
                rows.append(row)
                print(f"{name:7s} {program:9s} {label:18s} compile {row['compile_cpu_s']:5.2f} CPU-s"
                      f"  run {row['run_ms']:8.2f} ms", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"meta": {"jax": jax.__version__, "machine": platform.machine(), "backend": jax.default_backend(),
                       "train_iterations": TRAIN_ITERATIONS, "eval_episodes": EVAL_EPISODES},
              "rows": rows}
    (args.out / "compile_options.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
