"""The README's main job: relaunching without recompiling, where its seconds
go, and its training speed against the bare program. It is launched three
times in one fresh compilation cache.

1. ``--no-compile-cache``: compiles everything, as jaxrl did before the cache;
2. the first launch with the cache: compiles and writes the cache;
3. the relaunch: loads its programs from the cache.

Prints ``compile_seconds`` (summary.json: tracing, lowering and compiling the
training and init programs), the part of it that is tracing and lowering
(``lower_seconds``, which a cache cannot skip) and the end-to-end wall-clock
of each launch; where the relaunch's wall-clock goes (importing the CLI,
compile, train, evaluation, the rest); and the CLI's training steps/s
(summary.json) against the bare program, ``jit(lax.scan(agent.step))`` over
the same agent and iterations timed in a fresh process in the same run (best
of 3 calls after compiling; target: the CLI at >= 0.95x). Writes
``results/relaunch_compile.json``.

    python benchmarks/relaunch_compile.py [--algo ppo] [--env CartPole-v1] [--total-steps 500000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def launch(algo: str, env_id: str, total_steps: int, out: Path, cache: Path, *flags: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    env["JAXRL_COMPILATION_CACHE"] = str(cache)
    argv = [sys.executable, "-m", "jaxrl", "train", algo, "--env", env_id, "--total-steps",
            str(total_steps), "--out", str(out), "--force", "--no-progress", *flags]
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - started
    summary = json.loads((out / "summary.json").read_text())
    return {"wall_seconds": wall, "compile_seconds": summary["compile_seconds"],
            "lower_seconds": summary["lower_seconds"],
            "train_seconds": summary["train_seconds"],
            "eval_seconds": summary["eval_seconds"],
            "env_steps_per_second": summary["env_steps_per_second"]}


BARE = """
import json, sys, time
import jax
from jaxrl.run import experiment
algo, env_id, total_steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
module = experiment.algorithm_module(algo)
agent = experiment.build_agent(algo, env_id, {}, experiment.with_total_steps(module, {}, total_steps))
iterations = -(-total_steps // agent.env_steps_per_step)
program = jax.jit(lambda key: jax.lax.scan(lambda s, _: agent.step(s), agent.init(key), length=iterations))
key = jax.random.PRNGKey(0)
compiled = program.lower(key).compile()
best = float("inf")
for _ in range(3):
    started = time.perf_counter()
    jax.block_until_ready(compiled(key))
    best = min(best, time.perf_counter() - started)
print(json.dumps({"seconds": best, "env_steps_per_second": iterations * agent.env_steps_per_step / best}))
"""


def bare_program(algo: str, env_id: str, total_steps: int) -> dict:
    """The same agent's training as one plain jitted scan, in a fresh process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    env["JAX_ENABLE_COMPILATION_CACHE"] = "false"
    done = subprocess.run([sys.executable, "-c", BARE, algo, env_id, str(total_steps)], env=env,
                          check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def import_seconds() -> float:
    """Wall-clock of a fresh process that imports the CLI and exits."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import jaxrl.cli, jaxrl.run"], check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", default="ppo")
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--total-steps", type=int, default=500_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cache, out = tmp / "cache", tmp / "run"
        rows = {
            "no cache": launch(args.algo, args.env, args.total_steps, out, cache, "--no-compile-cache"),
            "first launch": launch(args.algo, args.env, args.total_steps, out, cache),
            "relaunch": launch(args.algo, args.env, args.total_steps, out, cache),
        }
        bare = bare_program(args.algo, args.env, args.total_steps)
        imports = min(import_seconds() for _ in range(3))
        cache_bytes = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file())
    print(f"jaxrl train {args.algo} --env {args.env} --total-steps {args.total_steps}")
    print(f"{'launch':<14} {'compile s':>10} {'of it lowering':>15} {'train s':>8} {'wall s':>7}")
    for name, row in rows.items():
        print(f"{name:<14} {row['compile_seconds']:>10.2f} {row['lower_seconds']:>15.2f} "
              f"{row['train_seconds']:>8.2f} {row['wall_seconds']:>7.1f}")
    print(f"cache size: {cache_bytes / 2**20:.1f} MiB")
    relaunch = rows["relaunch"]
    rest = relaunch["wall_seconds"] - imports - relaunch["compile_seconds"] - \
        relaunch["train_seconds"] - relaunch["eval_seconds"]
    print(f"relaunch wall {relaunch['wall_seconds']:.1f} s = import {imports:.1f} + compile "
          f"{relaunch['compile_seconds']:.1f} + train {relaunch['train_seconds']:.1f} + eval "
          f"{relaunch['eval_seconds']:.1f} + the rest (init, writing, exit) {rest:.1f}")
    ratios = {name: row["env_steps_per_second"] / bare["env_steps_per_second"]
              for name, row in rows.items()}
    print(f"bare program: {bare['env_steps_per_second'] / 1e3:.1f}k steps/s; CLI / bare: " +
          ", ".join(f"{name} {ratio:.2f}" for name, ratio in ratios.items()) +
          f" (target >= 0.95: {'PASS' if max(ratios.values()) >= 0.95 else 'FAIL'} at best)")
    result = {"command": vars(args), "launches": rows, "cache_bytes": cache_bytes,
              "bare_program": bare, "cli_over_bare": ratios, "import_seconds": imports,
              "machine": platform.platform(), "cpus": os.cpu_count()}
    path = ROOT / "benchmarks" / "results" / "relaunch_compile.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
