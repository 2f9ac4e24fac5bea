"""PPO and DDPG learning a Brax task on this CPU: ``jaxrl train`` on
``brax:inverted_pendulum`` (Brax's episode length, 1000 steps, so the most an
episode can return is 1000), evaluated every ``--eval-every`` env steps with
5 deterministic episodes per seed.

Prints, per agent and seed, the first evaluation at or above ``--target``
and the final one, with the run's env steps/s, and writes
``results/brax_learning.json`` (the settings, every evaluation row and each
run's summary.json).

    python benchmarks/brax_learning.py [--seeds 2] [--target 1000]
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = "brax:inverted_pendulum"

# PPO: 32 envs x 64 steps, 8 minibatches, Brax's own discount (0.97) and
# learning rate for this task, observations normalised as Brax's PPO does.
RUNS = {
    "ppo": {"total_steps": 1_000_000, "eval_every": 200_000,
            "settings": {"num_envs": 32, "rollout_len": 64, "num_minibatches": 8, "num_epochs": 4,
                         "learning_rate": 3e-4, "gamma": 0.97, "normalize_obs": True}},
    "ddpg": {"total_steps": 60_000, "eval_every": 10_000, "settings": {}},
}


def train(algo: str, spec: dict, seeds: int, out: Path) -> dict:
    argv = [sys.executable, "-m", "jaxrl", "train", algo, "--env", ENV, "--seeds", str(seeds),
            "--total-steps", str(spec["total_steps"]), "--eval-every", str(spec["eval_every"]),
            "--eval-episodes", "5", "--out", str(out), "--no-progress"]
    for key, value in spec["settings"].items():
        argv += ["--set", f"{key}={str(value).lower() if isinstance(value, bool) else value}"]
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - started
    with open(out / "eval.csv") as f:
        rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    return {"argv": argv[1:], "wall_seconds": wall, "eval": rows,
            "summary": json.loads((out / "summary.json").read_text())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--target", type=float, default=1000.0)
    parser.add_argument("--agents", default="ppo,ddpg")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    results = {}
    print(f"{'agent':6s} {'seed':>4s} {'first eval >= target (env steps)':>34s} {'final':>8s} "
          f"{'env steps/s':>12s} {'wall s':>7s}")
    with tempfile.TemporaryDirectory() as scratch:
        for algo in args.agents.split(","):
            result = train(algo, RUNS[algo], args.seeds, Path(scratch) / algo)
            results[algo] = result
            for seed in range(args.seeds):
                rows = [r for r in result["eval"] if int(r["seed"]) == seed]
                reached = next((int(r["env_steps"]) for r in rows if r["eval_return"] >= args.target), None)
                print(f"{algo:6s} {seed:4d} {str(reached or 'not reached'):>34s} {rows[-1]['eval_return']:8.1f} "
                      f"{result['summary']['env_steps_per_second']:12.0f} {result['wall_seconds']:7.1f}")
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"meta": {"env": ENV, "target": args.target, "seeds": args.seeds, "machine": platform.machine()},
              "runs": {algo: {**RUNS[algo], **result} for algo, result in results.items()}}
    (args.out / "brax_learning.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
