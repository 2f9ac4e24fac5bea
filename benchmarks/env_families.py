"""Environment throughput of the families behind ``jaxrl.envs.make``.

    python benchmarks/env_families.py [--quick] [--out benchmarks/results]

Measures, on whatever JAX backend is present (here: CPU):

- in-jit families (Brax physics, Craftax, Jumanji, XLand-MiniGrid): env
  steps/s of ``BatchEnv(env).step`` with random actions, auto-reset
  included, as one jitted ``lax.scan`` of ``--steps`` steps per batch size
  (best of ``--repeats`` runs after a compile, which is reported apart);
- host envs: ``envpool:<task>`` (:class:`EnvPoolBatchEnv`) against the
  Gymnasium adapter (:class:`GymnasiumBatchEnv`, a synchronous vector env) at
  the same batch, random actions, same-step auto-reset both.

Writes ``<out>/env_families.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax
import numpy as np

from jaxrl import envs

HERE = Path(__file__).resolve().parent

JITTED = {
    "brax:inverted_pendulum": {},
    "brax:ant": {},
    "brax:reacher": {},
    "craftax:Craftax-Classic-Symbolic-v1": {},
    "jumanji:Snake-v1": {},
    "xminigrid:MiniGrid-DoorKey-8x8": {},
}
HOST = ("CartPole-v1", "HalfCheetah-v5")


def _random_actions(env, env_params, num_envs):
    space = env.action_space(env_params)
    mask_of = lambda obs: envs.action_mask(env, obs, env_params)

    def act(key, obs):
        mask = mask_of(obs)
        if mask is not None:  # legal actions only, as an agent would take
            return jax.random.categorical(key, jax.numpy.where(mask, 0.0, -jax.numpy.inf), axis=-1)
        return jax.vmap(space.sample)(jax.random.split(key, num_envs))

    return act


def jitted_steps_per_s(env_id, num_envs, steps, repeats):
    """``(env steps/s, compile seconds)`` of a random-policy scan."""
    env, env_params = envs.make(env_id, **JITTED[env_id])
    batch = envs.BatchEnv(env, num_envs)
    act = _random_actions(env, env_params, num_envs)

    def run(key):
        obs, state = batch.reset(key, env_params)

        def body(carry, key):
            obs, state = carry
            k_act, k_step = jax.random.split(key)
            obs, state, reward, *_ = batch.step(k_step, state, act(k_act, obs), env_params)
            # Consume the observations too: a constant reward (the pendulum's)
            # would otherwise let XLA drop the physics.
            checksum = reward.sum() + sum(leaf.astype(jax.numpy.float32).sum() for leaf in jax.tree.leaves(obs))
            return (obs, state), checksum

        _, checksums = jax.lax.scan(body, (obs, state), jax.random.split(key, steps))
        return checksums.sum()

    start = time.perf_counter()
    compiled = jax.jit(run).lower(jax.random.PRNGKey(0)).compile()
    compile_s = time.perf_counter() - start
    best = float("inf")
    for i in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(jax.random.PRNGKey(i + 1)))
        best = min(best, time.perf_counter() - start)
    return steps * num_envs / best, compile_s


def host_steps_per_s(make_env, num_envs, steps):
    env = make_env(num_envs)
    try:
        rng = np.random.default_rng(0)
        space = env.action_space()
        discrete = hasattr(space, "n")
        env.reset()
        start = time.perf_counter()
        for _ in range(steps):
            if discrete:
                action = rng.integers(0, space.n, num_envs)
            else:
                action = rng.uniform(-1.0, 1.0, (num_envs, *space.shape))
            env.step(action)
        return steps * num_envs / (time.perf_counter() - start)
    finally:
        env.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small batch, fewer steps")
    parser.add_argument("--steps", type=int, default=200, help="steps per timed scan (per batch copy)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    batches = (16,) if args.quick else (1, 16, 128)
    host_batches = (8,) if args.quick else (8, 64)
    steps = 50 if args.quick else args.steps

    from jaxrl.envs.envpool_env import EnvPoolBatchEnv
    from jaxrl.envs.gymnasium_env import GymnasiumBatchEnv

    results = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
               "jax": jax.__version__, "backend": jax.default_backend(), "jitted": [], "host": []}
    print(f"{'env':40s} {'batch':>6s} {'steps/s':>12s} {'compile s':>10s}")
    for env_id in JITTED:
        for num_envs in batches:
            rate, compile_s = jitted_steps_per_s(env_id, num_envs, steps, args.repeats)
            results["jitted"].append(dict(env=env_id, num_envs=num_envs, steps_per_s=rate, compile_s=compile_s))
            print(f"{env_id:40s} {num_envs:6d} {rate:12,.0f} {compile_s:10.1f}")
    print(f"\n{'host env':20s} {'batch':>6s} {'envpool/s':>12s} {'gymnasium/s':>12s} {'ratio':>6s}")
    for task in HOST:
        for num_envs in host_batches:
            host_steps = max(20, 20_000 // num_envs) if not args.quick else 200
            pool = host_steps_per_s(lambda n: EnvPoolBatchEnv(task, n, seed=0), num_envs, host_steps)
            gym = host_steps_per_s(lambda n: GymnasiumBatchEnv(task, n, seed=0), num_envs, host_steps)
            results["host"].append(dict(task=task, num_envs=num_envs, envpool_steps_per_s=pool,
                                        gymnasium_steps_per_s=gym))
            print(f"{task:20s} {num_envs:6d} {pool:12,.0f} {gym:12,.0f} {pool / gym:6.1f}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "env_families.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
