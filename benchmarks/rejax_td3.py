"""Time rejax's TD3 on Pendulum-v1 at an update-to-data ratio of 1; print JSON.

Run with the python of the separate rejax environment (see setup_rejax.sh),
never with jaxrl's (rejax needs gymnax < 1.0):

    /tmp/rejax-venv/bin/python benchmarks/rejax_td3.py --num-envs 4 --env-steps 4096

What is timed matches ddpg_d4pg.py's throughput: one XLA program of training
iterations after compilation, no evaluation. One rejax TD3 iteration collects
``num_envs · policy_delay`` env steps and makes ``num_epochs`` critic updates
per ``num_envs`` steps; ``num_epochs = num_envs`` gives one critic update per
env step (and half as many actor updates, policy_delay = 2), against DDPG's
one critic and one actor update per env step. Both use 64-64 networks and
batch 128; the buffer is filled before timing starts.

The last line printed on stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

import jax


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-envs", type=int, default=1)
    p.add_argument("--env-steps", type=int, default=4096)
    args = p.parse_args(argv)

    import rejax

    algo = rejax.TD3.create(
        env="Pendulum-v1", num_envs=args.num_envs, num_epochs=args.num_envs, batch_size=128,
        buffer_size=100_000, fill_buffer=0, total_timesteps=args.env_steps,
    )
    steps_per_iteration = args.num_envs * algo.policy_delay
    iterations = max(1, args.env_steps // steps_per_iteration)

    def run(ts):
        return jax.lax.fori_loop(0, iterations, lambda _, ts: algo.train_iteration(ts), ts)

    ts = algo.init_state(jax.random.PRNGKey(0))
    run = jax.jit(run).lower(ts).compile()
    ts = jax.block_until_ready(run(ts))  # the buffer now holds data: updates run
    t0 = time.perf_counter()
    jax.block_until_ready(run(ts))
    seconds = time.perf_counter() - t0
    env_steps = iterations * steps_per_iteration
    print(json.dumps({
        "num_envs": args.num_envs,
        "env_steps": env_steps,
        "seconds": seconds,
        "env_steps_per_s": env_steps / seconds,
        "critic_updates_per_s": iterations * algo.policy_delay * algo.num_epochs / seconds,
        "rejax_version": getattr(rejax, "__version__", "unknown"),
        "jax_version": jax.__version__,
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
