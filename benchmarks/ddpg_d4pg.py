"""DDPG vs D4PG: learning curves, steps and seconds to a target return, throughput.

- Learning: each algorithm trains all seeds as one vmapped XLA program, in
  chunks of ``--eval-every`` env steps; after each chunk a separately jitted
  evaluation (``--episodes`` deterministic episodes per seed) records the
  curve. Reported per seed: the first env step, and the training wall-clock
  (evaluation excluded), at which the evaluation return reached the target
  (−200 on Pendulum-v1), and the final return. MountainCarContinuous-v0 is
  run the same way (``--mountaincar``) and reported as it comes out.
- Throughput: DDPG env steps/s and updates/s for several ``num_envs`` at an
  update-to-data ratio of 1 (``updates_per_step = num_envs``), one seed,
  after compilation; with ``--rejax-python``, rejax's TD3 at the same
  ``num_envs`` and update-to-data ratio (``rejax_td3.py``, in its own
  environment: see setup_rejax.sh), and the ratio of the two.

    python benchmarks/ddpg_d4pg.py                         # Pendulum, 4 seeds, 5·10^4 steps
    python benchmarks/ddpg_d4pg.py --mountaincar --seeds 2
    python benchmarks/ddpg_d4pg.py --rejax-python /tmp/rejax-venv/bin/python
    python benchmarks/ddpg_d4pg.py --quick                 # a smoke run

Prints tables; writes ``results/ddpg_d4pg.json`` and ``results/ddpg_d4pg.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import subprocess
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl import envs
from jaxrl.agents import d4pg, ddpg

HERE = Path(__file__).resolve().parent

# The networks of the learning tests (64-64): on 2 CPU cores the paper-sized
# 256-256 ones cost several times more per update for the same curve here.
COMMON = dict(hidden_sizes=(64, 64), batch_size=128, warmup_steps=1000, buffer_size=100_000)
CONFIGS = {
    "Pendulum-v1": {
        "ddpg": ddpg.Config(**COMMON),
        # Pendulum's returns lie in about [−1650, 0]; per-step rewards ≥ −16.3.
        "d4pg": d4pg.Config(**COMMON, num_envs=8, updates_per_step=4, v_min=-1000.0, v_max=0.0),
    },
    "MountainCarContinuous-v0": {
        # Reward −0.1·a² per step and +100 at the goal; 999-step episodes.
        "ddpg": ddpg.Config(**COMMON, noise="ou", noise_std=0.3),
        "d4pg": d4pg.Config(**COMMON, num_envs=8, updates_per_step=4, noise="ou", noise_std=0.3,
                            v_min=-50.0, v_max=100.0),
    },
}
TARGETS = {"Pendulum-v1": -200.0, "MountainCarContinuous-v0": 90.0}
MODULES = {"ddpg": ddpg, "d4pg": d4pg}


def learning_curve(env_id, algo, seeds, total_steps, eval_every, episodes):
    env, env_params = envs.make(env_id)
    config = CONFIGS[env_id][algo]
    agent = MODULES[algo].make(env, env_params, config)
    chunk = max(1, eval_every // agent.env_steps_per_step)
    num_chunks = max(1, total_steps // (chunk * agent.env_steps_per_step))
    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(seeds)])

    advance = jax.jit(jax.vmap(lambda s: jax.lax.scan(lambda s, _: agent.step(s), s, length=chunk)[0]))
    # Evaluation is jitted apart from training (its while loop must not sit
    # inside the vmapped training scan).
    evaluate = jax.jit(jax.vmap(lambda s, k: agent.evaluate(s, k, episodes).mean()))
    states = jax.jit(jax.vmap(agent.init))(keys)
    t0 = time.perf_counter()
    advance = advance.lower(states).compile()
    compile_s = time.perf_counter() - t0

    steps, returns, train_clock = [], [], []
    train_s = 0.0
    for i in range(num_chunks):
        t0 = time.perf_counter()
        states = advance(states)
        jax.block_until_ready(states)
        train_s += time.perf_counter() - t0
        eval_keys = jax.random.split(jax.random.PRNGKey(10_000 + i), seeds)
        returns.append(np.asarray(evaluate(states, eval_keys)))
        steps.append((i + 1) * chunk * agent.env_steps_per_step)
        train_clock.append(train_s)

    returns = np.stack(returns, axis=1)  # [seeds, points]
    target = TARGETS[env_id]
    reached = [int(np.argmax(r >= target)) if np.any(r >= target) else None for r in returns]
    return {
        "env": env_id,
        "algo": algo,
        "config": dataclasses.asdict(config),
        "seeds": seeds,
        "eval_episodes": episodes,
        "target": target,
        "steps": steps,
        "train_seconds": train_clock,
        "eval_return": returns.round(2).tolist(),
        "steps_to_target": [steps[j] if j is not None else None for j in reached],
        "seconds_to_target": [round(train_clock[j], 2) if j is not None else None for j in reached],
        "final_return": returns[:, -1].round(2).tolist(),
        "compile_seconds": compile_s,
        "env_steps_per_second": steps[-1] * seeds / train_s,
    }


def throughput(num_envs_list, iterations_steps):
    env, env_params = envs.make("Pendulum-v1")
    rows = []
    for num_envs in num_envs_list:
        config = ddpg.Config(**{**COMMON, "warmup_steps": 0}, num_envs=num_envs, updates_per_step=num_envs)
        agent = ddpg.make(env, env_params, config)
        iterations = max(1, iterations_steps // num_envs)
        run = jax.jit(lambda s: jax.lax.scan(lambda s, _: agent.step(s), s, length=iterations)[0])
        state = agent.init(jax.random.PRNGKey(0))
        run = run.lower(state).compile()
        jax.block_until_ready(run(state))  # first call: buffers allocated
        t0 = time.perf_counter()
        jax.block_until_ready(run(state))
        seconds = time.perf_counter() - t0
        rows.append({
            "num_envs": num_envs,
            "updates_per_step": num_envs,
            "env_steps": iterations * num_envs,
            "seconds": seconds,
            "env_steps_per_s": iterations * num_envs / seconds,
            "updates_per_s": iterations * num_envs / seconds,
        })
    return rows


def rejax_throughput(python, num_envs_list, env_steps):
    if python is None:
        return {"available": False, "reason": "no --rejax-python given"}
    rows = []
    for num_envs in num_envs_list:
        out = subprocess.run(
            [python, str(HERE / "rejax_td3.py"), "--num-envs", str(num_envs), "--env-steps", str(env_steps)],
            capture_output=True, text=True,
        )
        if out.returncode != 0:
            return {"available": False, "reason": "rejax run failed: " + out.stderr.strip()[-2000:]}
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {"available": True, "rows": rows}


def plot(curves, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    env_ids = sorted({c["env"] for c in curves})
    fig, axes = plt.subplots(1, len(env_ids), figsize=(6 * len(env_ids), 4), squeeze=False)
    for ax, env_id in zip(axes[0], env_ids):
        for c in (c for c in curves if c["env"] == env_id):
            r = np.asarray(c["eval_return"])
            color = "C0" if c["algo"] == "ddpg" else "C1"
            for seed_curve in r:
                ax.plot(c["steps"], seed_curve, color=color, alpha=0.25)
            ax.plot(c["steps"], r.mean(0), color=color, label=f"{c['algo']} (mean of {len(r)} seeds)")
        ax.axhline(TARGETS[env_id], color="k", ls="--", lw=0.8)
        ax.set(title=env_id, xlabel="env steps", ylabel="evaluation return")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--total-steps", type=int, default=50_000)
    p.add_argument("--eval-every", type=int, default=2_000)
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--mountaincar", action="store_true", help="also run MountainCarContinuous-v0")
    p.add_argument("--num-envs", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--throughput-steps", type=int, default=4_096)
    p.add_argument("--rejax-python", default=None, help="python of the rejax environment (setup_rejax.sh)")
    p.add_argument("--skip-learning", action="store_true", help="throughput only")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks that the script runs")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.total_steps, args.eval_every, args.episodes = 1, 2_000, 1_000, 2
        args.num_envs, args.throughput_steps = [1, 4], 256

    env_ids = ["Pendulum-v1"] + (["MountainCarContinuous-v0"] if args.mountaincar else [])
    curves = []
    print(f"{'env':26} {'algo':5} {'steps to target (per seed)':34} {'train s to target':30} final return")
    for env_id in ([] if args.skip_learning else env_ids):
        for algo in ("ddpg", "d4pg"):
            c = learning_curve(env_id, algo, args.seeds, args.total_steps, args.eval_every, args.episodes)
            curves.append(c)
            print(f"{env_id:26} {algo:5} {str(c['steps_to_target']):34} {str(c['seconds_to_target']):30} "
                  f"{c['final_return']}", flush=True)

    rows = throughput(args.num_envs, args.throughput_steps)
    rejax = rejax_throughput(args.rejax_python, args.num_envs, args.throughput_steps)
    td3 = {r["num_envs"]: r for r in rejax.get("rows", [])}
    print(f"\n{'num_envs':>8} {'updates/step':>12} {'env steps/s':>12} {'updates/s':>10} "
          f"{'rejax TD3 steps/s':>18} {'ratio':>6}")
    for r in rows:
        other = td3.get(r["num_envs"])
        if other:
            r["rejax_td3_env_steps_per_s"] = other["env_steps_per_s"]
            r["ratio_vs_rejax_td3"] = r["env_steps_per_s"] / other["env_steps_per_s"]
        rj = f"{other['env_steps_per_s']:18.0f} {r['ratio_vs_rejax_td3']:6.2f}" if other else f"{'n/a':>18} {'':>6}"
        print(f"{r['num_envs']:8d} {r['updates_per_step']:12d} {r['env_steps_per_s']:12.0f} "
              f"{r['updates_per_s']:10.0f} {rj}")
    if not rejax["available"]:
        print(f"rejax: not available ({rejax['reason']})")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "meta": {"jax": jax.__version__, "backend": jax.default_backend(), "machine": platform.platform(),
                 "cpus": __import__("os").cpu_count(),
                 # Paths relative to the repository, so results name no machine's layout.
                 "args": {**vars(args), "out": _relative_to_repo(out)}},
        "learning": curves,
        "throughput": rows,
        "rejax_td3": rejax,
    }
    name = "ddpg_d4pg_quick" if args.quick else "ddpg_d4pg_throughput" if args.skip_learning else "ddpg_d4pg"
    (out / f"{name}.json").write_text(json.dumps(report, indent=1))
    if curves and not args.no_plot:
        plot(curves, out / f"{name}.png")
    print(f"\nwrote {out / (name + '.json')}")
    return 0


def _relative_to_repo(path: Path) -> str:
    path = path.resolve()
    repo = HERE.parent.resolve()
    return str(path.relative_to(repo)) if path.is_relative_to(repo) else str(path)


if __name__ == "__main__":
    raise SystemExit(main())
