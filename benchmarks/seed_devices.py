"""Seeds across CPU cores: aggregate training steps/s of several seeds.

    python benchmarks/seed_devices.py [--quick] [--out benchmarks/results]

For each agent (PPO at the classic CartPole config, DQN on CartPole, DDPG
and D4PG on Pendulum; their defaults otherwise, but for a warm-up of 10^3
steps instead of 10^4 so that short runs mostly update), in one process:

- ``vmap, 1 device``: the seeds vectorised in one program,
  ``jit(scan(vmap(agent.step)))``, what ``jaxrl.run.train`` ran on the CPU
  before seeds were mapped and split;
- ``map, 1 device``: ``jaxrl.run.train(..., seed_devices=1)``, each seed in
  turn inside the program;
- ``map, N devices``: ``jaxrl.run.train`` at its default, the seeds split over
  one host device per core (``import jaxrl`` asks JAX for them);
- ``1 seed``: ``jaxrl.run.train`` with one seed.

Times are training only (``train_seconds`` of the summary, and the same
after-compile call of the bare program), best of ``--repeats``. Writes
``<out>/seed_devices.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import jax

from jaxrl import envs, run  # importing jaxrl asks for one host device per core
from jaxrl.agents import d4pg, ddpg, dqn, ppo

HERE = Path(__file__).resolve().parent

# agent -> (module, env id, config values, env steps per seed, quick steps)
CASES = {
    "ppo": (ppo, "CartPole-v1", dict(num_envs=4, rollout_len=128, num_epochs=4, num_minibatches=4,
                                     learning_rate=2.5e-4), 131_072, 32_768),
    # Warm-ups shortened from 10^4 so that most of a short run updates.
    "dqn": (dqn, "CartPole-v1", dict(learning_starts=1_000), 10_000, 4_000),
    "ddpg": (ddpg, "Pendulum-v1", dict(warmup_steps=1_000), 3_000, 1_500),
    "d4pg": (d4pg, "Pendulum-v1", dict(warmup_steps=1_000), 3_000, 1_500),
}
TARGET_RATIO = 1.8  # split over the cores against vmapped on one device, 16 seeds


def make(name: str, steps: int):
    module, env_id, values, _, _ = CASES[name]
    env, env_params = envs.make(env_id)
    return module.make(env, env_params, module.Config(**values, total_steps=steps))


def vmapped_seconds(agent, seeds: int, iterations: int, repeats: int) -> float:
    """Best training time of the seeds vectorised in one program on one device."""

    def program(keys):
        states = jax.vmap(agent.init)(keys)
        return jax.lax.scan(lambda s, _: jax.vmap(agent.step)(s), states, length=iterations)

    keys = jax.random.split(jax.random.PRNGKey(0), seeds)
    # The init inside is negligible next to the iterations; timed whole.
    compiled = jax.jit(program).lower(keys).compile()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        jax.block_until_ready(compiled(keys))
        best = min(best, time.perf_counter() - started)
    return best


def train_seconds(agent, seeds: int, steps: int, repeats: int, seed_devices=None) -> float:
    best = float("inf")
    for _ in range(repeats):
        result = run.train(agent, jax.random.PRNGKey(0), steps, seeds=seeds, eval_episodes=0,
                           progress=False, seed_devices=seed_devices)
        best = min(best, result.summary["train_seconds"])
    return best


def measure(name: str, seeds: int, steps: int, repeats: int, with_vmap: bool) -> dict:
    agent = make(name, steps)
    iterations = -(-steps // agent.env_steps_per_step)
    done = iterations * agent.env_steps_per_step
    row = {"agent": name, "seeds": seeds, "env_steps_per_seed": done}
    rate = lambda seconds, n: n * done / seconds
    row["one_seed"] = rate(train_seconds(agent, 1, steps, repeats), 1)
    row["map_one_device"] = rate(train_seconds(agent, seeds, steps, repeats, seed_devices=1), seeds)
    row["map_all_devices"] = rate(train_seconds(agent, seeds, steps, repeats), seeds)
    if with_vmap:
        row["vmap_one_device"] = rate(vmapped_seconds(agent, seeds, iterations, repeats), seeds)
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller budgets, one repeat")
    p.add_argument("--agents", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--seeds", type=int, default=16)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--no-vmap", nargs="*", default=["d4pg"], metavar="AGENT",
                   help="agents whose vmapped baseline is skipped (default d4pg: hours at 16 seeds)")
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 2)
    devices = jax.local_devices()
    print(f"{len(devices)} {jax.default_backend()} devices, {os.cpu_count()} cores, "
          f"{args.seeds} seeds, best of {repeats}", flush=True)
    rows = []
    header = f"{'agent':6} {'steps/seed':>10} {'1 seed':>10} {'vmap 1 dev':>11} {'map 1 dev':>10} " \
             f"{'map all':>10} {'all/vmap':>9} {'all/map1':>9}"
    print(header)
    for name in args.agents:
        steps = CASES[name][4 if args.quick else 3]
        row = measure(name, args.seeds, steps, repeats, name not in args.no_vmap)
        rows.append(row)
        vmap = row.get("vmap_one_device")
        fmt = lambda x: "-" if x is None else f"{x / 1e3:.1f}k"
        ratio = lambda a, b: "-" if b is None else f"{a / b:.2f}"
        print(f"{name:6} {row['env_steps_per_seed']:>10} {fmt(row['one_seed']):>10} {fmt(vmap):>11} "
              f"{fmt(row['map_one_device']):>10} {fmt(row['map_all_devices']):>10} "
              f"{ratio(row['map_all_devices'], vmap):>9} "
              f"{ratio(row['map_all_devices'], row['map_one_device']):>9}", flush=True)
    ppo_row = next((r for r in rows if r["agent"] == "ppo" and "vmap_one_device" in r), None)
    if ppo_row is not None:
        ratio = ppo_row["map_all_devices"] / ppo_row["vmap_one_device"]
        verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
        print(f"target: PPO --seeds {args.seeds} over the cores >= {TARGET_RATIO}x the seeds vmapped "
              f"on one device: {ratio:.2f}x {verdict}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "seed_devices.json").write_text(json.dumps({
        "devices": len(devices), "backend": jax.default_backend(), "seeds": args.seeds,
        "repeats": repeats, "rows": rows, "argv": sys.argv[1:],
    }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
