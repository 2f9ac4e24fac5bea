"""Time rejax's PPO on the classic CartPole configuration; print JSON.

Run with the python of the separate rejax environment (see setup_rejax.sh),
never with jaxrl's: rejax 0.1.3 unpacks the old 5-tuple gymnax step API, so it
needs gymnax < 1.0, which jaxrl cannot use.

    /tmp/rejax-venv/bin/python benchmarks/rejax_ppo.py [--num-envs 4 --rollout-len 128 ...]

What is timed is the same thing ppo_throughput.py times for jaxrl: one XLA
program ``lax.scan(train_iteration, init(key), length=n)`` with
``n = ceil(total_steps / (num_envs * rollout_len))``. rejax's own ``train``
wraps the iterations in an evaluation loop (128 evaluation episodes every
``eval_freq`` steps); that evaluation is not part of training throughput, so
it is left out here, exactly as jaxrl's evaluation is.

The last line printed on stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time

# No persistent compilation cache: the compile time must be a first compile.
os.environ.setdefault("JAX_ENABLE_COMPILATION_CACHE", "false")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--num-envs", type=int, default=4)
    p.add_argument("--rollout-len", type=int, default=128)
    p.add_argument("--num-epochs", type=int, default=4)
    p.add_argument("--num-minibatches", type=int, default=4)
    p.add_argument("--learning-rate", type=float, default=2.5e-4)
    p.add_argument("--total-steps", type=int, default=500_000)
    p.add_argument("--seeds", type=int, default=1, help="vmapped seeds (1 = no vmap)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs after the compile")
    args = p.parse_args(argv)

    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_compilation_cache", False)
    import rejax
    from rejax import PPO

    batch = args.num_envs * args.rollout_len
    iterations = max(1, math.ceil(args.total_steps / batch))
    algo = PPO.create(
        env=args.env,
        num_envs=args.num_envs,
        num_steps=args.rollout_len,
        num_epochs=args.num_epochs,
        num_minibatches=args.num_minibatches,
        learning_rate=args.learning_rate,
        max_grad_norm=0.5,
        gamma=0.99,
        gae_lambda=0.95,
        clip_eps=0.2,
        ent_coef=0.01,
        vf_coef=0.5,
        total_timesteps=iterations * batch,
        skip_initial_evaluation=True,
        agent_kwargs={"activation": "tanh", "hidden_layer_sizes": (64, 64)},
    )

    def train(key):
        ts = algo.init_state(key)
        ts, _ = jax.lax.scan(lambda s, _: (algo.train_iteration(s), None), ts, None, iterations)
        return ts

    fn = jax.vmap(train) if args.seeds > 1 else train
    key = jax.random.PRNGKey(0)
    keys = jax.random.split(key, args.seeds) if args.seeds > 1 else key

    t0 = time.perf_counter()
    lowered = jax.jit(fn).lower(keys)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()

    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        out = compiled(keys)
        jax.block_until_ready(out)
        times.append(time.perf_counter() - t)
    steps = iterations * batch * args.seeds
    # Sanity: the run really trained (global_step advanced by every env step).
    global_step = int(jnp.asarray(out.global_step).reshape(-1)[0])

    result = {
        "impl": "rejax",
        "rejax_version": getattr(rejax, "__version__", None) or _dist_version("rejax"),
        "jax_version": jax.__version__,
        "gymnax_version": _dist_version("gymnax"),
        "python": platform.python_version(),
        "backend": jax.default_backend(),
        "env": args.env,
        "num_envs": args.num_envs,
        "rollout_len": args.rollout_len,
        "num_epochs": args.num_epochs,
        "num_minibatches": args.num_minibatches,
        "seeds": args.seeds,
        "iterations": iterations,
        "env_steps_per_seed": iterations * batch,
        "global_step_check": global_step,
        "lower_s": t1 - t0,
        "compile_s": t2 - t1,
        "lower_plus_compile_s": t2 - t0,
        "run_s": times,
        "run_s_best": min(times),
        "run_s_median": statistics.median(times),
        "steps_per_s": steps / min(times),
        "steps_per_s_median": steps / statistics.median(times),
    }
    print(json.dumps(result))
    return 0


def _dist_version(name: str):
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # pragma: no cover - informational only
        return None


if __name__ == "__main__":
    sys.exit(main())
