"""IMPALA on a MinAtar game: deep residual encoder + LSTM against the shallow
feed-forward encoder, at equal env steps.

    python benchmarks/impala_minatar_recurrent.py [--env Breakout-MinAtar]
        [--steps 1000000] [--seeds 1] [--chunks 10] [--eval-episodes 10]
        [--core-size 256] [--hidden 256] [--only deep,shallow]
        [--out benchmarks/results]

Two ``jaxrl.agents.impala`` configurations (default Config otherwise: 8 envs
x 20 steps, policy lag 4, V-trace):

- ``deep + lstm``: ``torso="impala_resnet"`` (IMPALA's 15-layer residual
  encoder), a ``--hidden``-unit dense layer, then an LSTM of ``--core-size``
  units (``core="lstm"``);
- ``shallow``: ``torso="minatar_cnn"`` (MinAtar's one 3x3 conv layer), the
  same dense layer, no core.

Each trains ``--seeds`` vmapped seeds for ``--steps`` env steps in
``--chunks`` jitted pieces (one compiled program reused); after each piece
the curve records the mean return of the training episodes that ended in it.
At the end every seed's policy is evaluated on ``--eval-episodes``
deterministic episodes. Prints a table, writes
``<out>/impala_minatar_recurrent.json`` (entries of other environments kept)
and plots the curves of the entries to ``<out>/impala_minatar_recurrent.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def configs(hidden: int, core_size: int) -> dict[str, dict]:
    return {
        "deep + lstm": dict(torso="impala_resnet", hidden_sizes=(hidden,), activation="relu",
                            core="lstm", core_size=core_size),
        "shallow": dict(torso="minatar_cnn", hidden_sizes=(hidden,), activation="relu",
                        core="none"),
    }


def train(env_id: str, values: dict, steps: int, seeds: int, chunks: int,
          eval_episodes: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxrl import envs
    from jaxrl.agents import impala

    env, env_params = envs.make(env_id)
    config = dataclasses.replace(impala.Config(), total_steps=steps, **values)
    agent = impala.make(env, env_params, config)
    batch = agent.env_steps_per_step
    per_chunk = max(1, steps // (batch * chunks))

    def piece(state):
        state, metrics = jax.lax.scan(lambda s, _: agent.step(s), state, length=per_chunk)
        done = metrics["episodes_completed"]
        total = (metrics["episode_return"] * done).sum()
        return state, total / jnp.maximum(done.sum(), 1.0), done.sum()

    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(seeds)])
    started = time.perf_counter()
    states = jax.jit(jax.vmap(agent.init))(keys)
    compiled = jax.jit(jax.vmap(piece)).lower(states).compile()
    compile_s = time.perf_counter() - started
    curve, episodes, train_s = [], [], 0.0
    for _ in range(chunks):
        started = time.perf_counter()
        states, ret, count = jax.block_until_ready(compiled(states))
        train_s += time.perf_counter() - started
        curve.append(np.asarray(ret).tolist())
        episodes.append(np.asarray(count).tolist())
    started = time.perf_counter()
    evaluate = jax.jit(jax.vmap(
        lambda s: jnp.mean(agent.evaluate(s, jax.random.PRNGKey(123), eval_episodes))))
    returns = np.asarray(evaluate(states))
    eval_s = time.perf_counter() - started
    env_steps = per_chunk * chunks * batch
    return {
        "values": {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()},
        "env_steps": env_steps,
        "seeds": seeds,
        "curve_env_steps": [per_chunk * batch * (i + 1) for i in range(chunks)],
        "curve_train_return": curve,  # [chunk][seed]
        "curve_episodes": episodes,
        "eval_return": returns.tolist(),
        "eval_return_mean": float(returns.mean()),
        "eval_episodes": eval_episodes,
        "compile_s": round(compile_s, 1),
        "train_s": round(train_s, 1),
        "eval_s": round(eval_s, 1),
        "steps_per_s": env_steps * seeds / train_s,
    }


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    envs = sorted(results)
    fig, axes = plt.subplots(1, len(envs), figsize=(6 * len(envs), 4), squeeze=False)
    for col, env_id in enumerate(envs):
        ax = axes[0, col]
        for name, r in results[env_id]["runs"].items():
            x = np.array(r["curve_env_steps"])
            y = np.array(r["curve_train_return"])
            line, = ax.plot(x, y.mean(axis=1), "o-", label=f"{name} (eval {r['eval_return_mean']:.1f})")
            if y.shape[1] > 1:
                ax.fill_between(x, y.min(axis=1), y.max(axis=1), color=line.get_color(), alpha=0.2)
        ax.set(title=f"IMPALA on {env_id} ({results[env_id]['seeds']} seed(s))",
               xlabel="env steps", ylabel="mean training episode return")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Breakout-MinAtar")
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--chunks", type=int, default=10)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--core-size", type=int, default=256)
    parser.add_argument("--only", default="deep,shallow",
                        help="comma-separated subset of: deep, shallow")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)

    import jax

    wanted = {"deep": "deep + lstm", "shallow": "shallow"}
    runs = {}
    for name, values in configs(args.hidden, args.core_size).items():
        if not any(wanted[w] == name for w in args.only.split(",")):
            continue
        r = train(args.env, values, args.steps, args.seeds, args.chunks, args.eval_episodes)
        runs[name] = r
        print(f"{args.env} {name:<12} {r['env_steps']} steps x {r['seeds']} seed(s): "
              f"eval {r['eval_return_mean']:.2f} {r['eval_return']}, "
              f"{r['steps_per_s']:.0f} steps/s, compile {r['compile_s']} s, "
              f"train {r['train_s']} s", flush=True)

    print(f"\n{'env steps':>10} " + " ".join(f"{n:>14}" for n in runs))
    first = next(iter(runs.values()))
    for i, x in enumerate(first["curve_env_steps"]):
        cells = [sum(r["curve_train_return"][i]) / r["seeds"] for r in runs.values()]
        print(f"{x:>10} " + " ".join(f"{c:>14.2f}" for c in cells))

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "impala_minatar_recurrent.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results[args.env] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "backend": jax.default_backend(), "platform": platform.platform(),
        "steps": args.steps, "seeds": args.seeds, "runs": runs,
    }
    path.write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.out / "impala_minatar_recurrent.png")
    print(f"wrote {path} and {path.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
