"""Recurrent PPO: its speed beside feed-forward PPO's, and memory on a POMDP.

    python benchmarks/recurrent_ppo.py [--total-steps 500000] [--repeats 3]
        [--hidden-total-steps 0] [--hidden-seeds 4] [--hidden-num-envs 4]
        [--hidden-rollout-len 128] [--hidden-learning-rate 1e-3]
        [--hidden-ent-coef 0.01] [--hidden-epochs 4] [--hidden-minibatches 4]
        [--hidden-recurrent-only] [--hidden-only] [--out benchmarks/results]

1. Speed on CartPole-v1 at the common reference configuration of recurrent
   PPO: a 128-unit Dense embedding (ReLU), a 128-unit GRU, then 128-unit
   actor and critic heads (``hidden_sizes=(128,)``, ``core="gru"``,
   ``core_size=128``); 4 envs x 128 steps, 4 epochs x 4 minibatches (with
   minibatches of whole environments: one environment's 128-step sequence
   each), ``--total-steps`` env steps. Feed-forward PPO's classic CartPole
   configuration (the same batch, epochs and minibatches; PPO's default
   (64, 64) tanh network) runs in the same process, and so does the
   recurrent configuration with ``core="none"`` (the same layers less the
   GRU), which isolates the core's cost. Each is one XLA program
   (``lax.scan`` of ``agent.step`` over the run) timed after an ahead-of-time
   compile; best and median of ``--repeats`` runs. Beside each: the
   network's analytic FLOPs per env step (collection's forward pass plus
   ``num_epochs`` forward and backward passes, a backward pass counted as
   two forwards), so that the core's cost in time can be read against its
   cost in arithmetic.
2. Memory (``--hidden-total-steps`` > 0): recurrent and feed-forward PPO on
   CartPole with the velocities hidden (``CartPole-v1-no-velocity``,
   :mod:`jaxrl.envs.probes`), ``--hidden-seeds`` vmapped seeds, the final
   deterministic evaluation return (10 episodes per seed) of each. The
   ``--hidden-*`` flags set the batch and optimiser of this section (both
   policies take them; the networks stay those of section 1);
   ``--hidden-only`` skips section 1 and keeps the speed rows already in
   the JSON file; a run without section 2 keeps its rows likewise.

Prints a table and writes ``<out>/recurrent_ppo.json``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

BATCH = dict(num_envs=4, rollout_len=128, num_epochs=4, num_minibatches=4)
CONFIGS = {
    # name -> ppo.Config values besides BATCH and total_steps
    "recurrent (gru 128)": dict(hidden_sizes=(128,), activation="relu", core="gru",
                                core_size=128),
    "same layers, no core": dict(hidden_sizes=(128,), activation="relu", core="none"),
    "feed-forward (classic)": dict(),
}
HIDDEN_ENV = "CartPole-v1-no-velocity"


def make_agent(env_id: str, total_steps: int, batch: dict | None = None, **values):
    from jaxrl import envs
    from jaxrl.agents import ppo

    env, env_params = envs.make(env_id)
    return ppo.make(env, env_params,
                    ppo.Config(**(batch or BATCH), total_steps=total_steps, **values))


def run_program(agent, iterations: int):
    """``key -> (state, metrics)``: a whole run of ``iterations`` PPO iterations."""
    import jax

    def run(key):
        return jax.lax.scan(lambda s, _: agent.step(s), agent.init(key), length=iterations)

    return run


def dense_flops(sizes: list[int]) -> int:
    """Multiply-adds x 2 of a chain of dense layers ``sizes[0] -> sizes[1] -> ...``."""
    return sum(2 * a * b for a, b in zip(sizes, sizes[1:]))


def forward_flops(config, obs_size: int, actions: int) -> dict[str, int]:
    """Analytic FLOPs of one forward pass of PPO's network for one observation,
    split into the core and the rest (biases and activations left out)."""
    hidden = list(config.hidden_sizes)
    if config.core == "none":  # separate actor and critic torsos
        torso = dense_flops([obs_size, *hidden])
        return {"core": 0, "rest": 2 * torso + dense_flops([hidden[-1], actions])
                + dense_flops([hidden[-1], 1])}
    gates = 4 if config.core == "lstm" else 3
    core = gates * (dense_flops([hidden[-1], config.core_size])
                    + dense_flops([config.core_size, config.core_size]))
    head = hidden[-1]
    rest = (dense_flops([obs_size, *hidden]) + dense_flops([config.core_size, head, actions])
            + dense_flops([config.core_size, head, 1]))
    return {"core": core, "rest": rest}


def speed(total_steps: int, repeats: int) -> list[dict]:
    import jax

    from jaxrl.compilation import compiler_options

    rows = []
    for name, values in CONFIGS.items():
        agent = make_agent("CartPole-v1", total_steps, **values)
        batch = agent.env_steps_per_step
        iterations = max(1, -(-total_steps // batch))
        key = jax.random.PRNGKey(0)
        t0 = time.perf_counter()
        compiled = jax.jit(run_program(agent, iterations),
                           compiler_options=compiler_options("train")).lower(key).compile()
        compile_s = time.perf_counter() - t0
        times = []
        for _ in range(max(1, repeats)):
            t = time.perf_counter()
            state, metrics = compiled(key)
            jax.block_until_ready((state, metrics))
            times.append(time.perf_counter() - t)
        steps = iterations * batch
        flops = forward_flops(agent.config, 4, 2)
        passes = 1 + 3 * agent.config.num_epochs
        rows.append({
            "config": name,
            "values": {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()},
            "env_steps": steps,
            "compile_s": round(compile_s, 2),
            "run_s": [round(t, 3) for t in times],
            "steps_per_s": steps / min(times),
            "steps_per_s_median": steps / statistics.median(times),
            "us_per_step": 1e6 * min(times) / steps,
            "core_flops_per_step": flops["core"] * passes,
            "other_flops_per_step": flops["rest"] * passes,
            "last_episode_return": float(metrics["episode_return"][-1]),
        })
    return rows


def memory(total_steps: int, seeds: int, batch: dict | None = None,
           names=("recurrent (gru 128)", "feed-forward (classic)"), **overrides) -> list[dict]:
    """Recurrent vs feed-forward PPO on CartPole without velocities."""
    import jax
    import numpy as np

    rows = []
    for name in names:
        agent = make_agent(HIDDEN_ENV, total_steps, batch, **CONFIGS[name], **overrides)
        iterations = max(1, -(-total_steps // agent.env_steps_per_step))

        def train(key):
            state, metrics = run_program(agent, iterations)(key)
            return agent.evaluate(state, jax.random.fold_in(key, 1), 10).mean(), metrics

        t = time.perf_counter()
        eval_return, metrics = jax.jit(jax.vmap(train))(
            jax.random.split(jax.random.PRNGKey(0), seeds))
        eval_return = np.asarray(eval_return)
        rows.append({
            "config": name, "env": HIDDEN_ENV, "env_steps": iterations * agent.env_steps_per_step,
            "batch": dict(batch or BATCH), "overrides": overrides,
            "seeds": seeds, "eval_return": [float(r) for r in eval_return],
            "eval_return_mean": float(eval_return.mean()),
            "last_train_return_mean": float(np.asarray(metrics["episode_return"])[:, -1].mean()),
            "wall_s": round(time.perf_counter() - t, 1),
        })
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total-steps", type=int, default=500_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hidden-total-steps", type=int, default=0,
                        help="env steps per seed on CartPole-v1-no-velocity (0: skip)")
    parser.add_argument("--hidden-seeds", type=int, default=4)
    parser.add_argument("--hidden-num-envs", type=int, default=BATCH["num_envs"])
    parser.add_argument("--hidden-rollout-len", type=int, default=BATCH["rollout_len"])
    parser.add_argument("--hidden-epochs", type=int, default=BATCH["num_epochs"])
    parser.add_argument("--hidden-minibatches", type=int, default=BATCH["num_minibatches"])
    parser.add_argument("--hidden-learning-rate", type=float, default=1e-3)
    parser.add_argument("--hidden-ent-coef", type=float, default=0.01)
    parser.add_argument("--hidden-recurrent-only", action="store_true",
                        help="train only the recurrent policy on the hidden-velocity task")
    parser.add_argument("--hidden-only", action="store_true",
                        help="skip the speed section (keep its rows in the JSON file)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)

    import jax

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "recurrent_ppo.json"
    if not args.hidden_only:
        rows = speed(args.total_steps, args.repeats)
        print(f"{'CartPole-v1, 4 envs x 128, 4x4':<26} {'steps/s':>10} {'median':>10} "
              f"{'us/step':>8} {'compile s':>9} {'core MFLOP/step':>15} {'other MFLOP/step':>16}")
        for r in rows:
            print(f"{r['config']:<26} {r['steps_per_s']:>10.0f} {r['steps_per_s_median']:>10.0f} "
                  f"{r['us_per_step']:>8.2f} {r['compile_s']:>9.1f} "
                  f"{r['core_flops_per_step'] / 1e6:>15.3f} "
                  f"{r['other_flops_per_step'] / 1e6:>16.3f}")
        rec, same = rows[0], rows[1]
        core_us = rec["us_per_step"] - same["us_per_step"]
        core_gflops = rec["core_flops_per_step"] / max(core_us, 1e-9) / 1e3
        print(f"the GRU costs {core_us:.2f} us per env step for "
              f"{rec['core_flops_per_step'] / 1e6:.3f} MFLOP: {core_gflops:.2f} GFLOP/s on the core")
        speed_meta = {
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
            "platform": platform.platform(), "batch": BATCH, "total_steps": args.total_steps,
            "load_avg_1_5_15min": [round(x, 2) for x in os.getloadavg()],
        }
    hidden = []
    if args.hidden_total_steps:
        batch = dict(num_envs=args.hidden_num_envs, rollout_len=args.hidden_rollout_len,
                     num_epochs=args.hidden_epochs, num_minibatches=args.hidden_minibatches)
        names = (("recurrent (gru 128)",) if args.hidden_recurrent_only
                 else ("recurrent (gru 128)", "feed-forward (classic)"))
        hidden = memory(args.hidden_total_steps, args.hidden_seeds, batch, names,
                        learning_rate=args.hidden_learning_rate, ent_coef=args.hidden_ent_coef)
    for r in hidden:
        print(f"{r['env']} {r['config']:<24} {r['env_steps']} steps x {r['seeds']} seeds: "
              f"eval return {r['eval_return_mean']:.1f} {r['eval_return']}")

    old = json.loads(path.read_text()) if path.exists() else {}
    if args.hidden_only:  # keep the speed section already written
        rows = old.get("speed", [])
        core_us, core_gflops = old.get("core_us_per_step"), old.get("core_gflop_per_s")
        speed_meta = {k: old.get(k) for k in ("date", "backend", "devices", "platform",
                                              "batch", "total_steps", "load_avg_1_5_15min")}
    if not hidden:  # keep the memory section already written
        hidden = old.get("hidden_velocity_cartpole", [])
    path.write_text(json.dumps({
        **speed_meta,
        "speed": rows, "core_us_per_step": core_us, "core_gflop_per_s": core_gflops,
        "hidden_velocity_cartpole": hidden,
    }, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
