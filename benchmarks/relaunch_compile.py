"""Relaunching a run without recompiling: the README's main job launched three
times in one fresh compilation cache.

1. ``--no-compile-cache``: compiles everything, as jaxrl did before the cache;
2. the first launch with the cache: compiles and writes the cache;
3. the relaunch: loads its programs from the cache.

Prints ``compile_seconds`` (summary.json: tracing, lowering and compiling the
training and init programs), the part of it that is tracing and lowering
(``lower_seconds``, which a cache cannot skip) and the end-to-end wall-clock
of each launch, and
writes ``results/relaunch_compile.json``.

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
            "env_steps_per_second": summary["env_steps_per_second"]}


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
        cache_bytes = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file())
    print(f"jaxrl train {args.algo} --env {args.env} --total-steps {args.total_steps}")
    print(f"{'launch':<14} {'compile s':>10} {'of it lowering':>15} {'train s':>8} {'wall s':>7}")
    for name, row in rows.items():
        print(f"{name:<14} {row['compile_seconds']:>10.2f} {row['lower_seconds']:>15.2f} "
              f"{row['train_seconds']:>8.2f} {row['wall_seconds']:>7.1f}")
    print(f"cache size: {cache_bytes / 2**20:.1f} MiB")
    result = {"command": vars(args), "launches": rows, "cache_bytes": cache_bytes,
              "machine": platform.platform(), "cpus": os.cpu_count()}
    path = ROOT / "benchmarks" / "results" / "relaunch_compile.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
