"""PPO on Craftax-Classic (symbolic observations) against the random policy.

    python benchmarks/craftax_ppo.py [--quick] [--steps 300000] [--seeds 2]
        [--episodes 32] [--out benchmarks/results]

PPO trains for ``--steps`` env steps per seed (the seeds vmapped in one
program, Craftax's own auto-reset: a fresh world beside every step); then its
sampling policy plays ``--episodes`` full episodes per seed and the uniformly
random policy plays as many episodes as all seeds together. Reported: the
training env steps/s (compile excluded, all seeds' steps counted), the
compile seconds, each policy's mean return per seed, and the achievement
rates: the fraction of episodes in which each of Craftax-Classic's 22
achievements was unlocked (``info["achievements"]`` at the episode's last
step).

Writes ``<out>/craftax_ppo.json`` and prints two tables.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl import envs
from jaxrl.agents import ppo
from jaxrl.envs.families import craftax as craftax_family

HERE = Path(__file__).resolve().parent
ENV = "craftax:Craftax-Classic-Symbolic-v1"
# Episodes end by death or at Craftax's 10,000-step limit; the cap only bounds
# the evaluation loop, and an episode it cuts counts as not completed.
MAX_EPISODE_STEPS = 10_000


def ppo_config(total_steps: int) -> ppo.Config:
    """32 envs x 64 steps per seed: Craftax's step (its world generation) costs
    the same per env at batch 64 as at 128 here, and smaller batches give a
    short run more updates. λ = 0.8 as in Craftax's PPO baseline."""
    return ppo.Config(num_envs=32, rollout_len=64, num_minibatches=4, num_epochs=4,
                      learning_rate=3e-4, gae_lambda=0.8, ent_coef=0.01,
                      hidden_sizes=(256, 256), activation="relu", total_steps=total_steps)


def play(env, env_params, policy, key, episodes: int, num_achievements: int):
    """``episodes`` envs side by side, each until its first episode ends:
    ``(returns, lengths, completed, achievements [N, num_achievements])``.
    ``policy(obs_batch, key) -> actions``."""
    reset_key, run_key = jax.random.split(key)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(reset_key, episodes), env_params)
    step_all = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def running(carry):
        t, *_, finished, _ = carry
        return (t < MAX_EPISODE_STEPS) & ~jnp.all(finished)

    def one_step(carry):
        t, obs, state, key, returns, lengths, finished, achieved = carry
        key, act_key, step_key = jax.random.split(key, 3)
        action = policy(obs, act_key)
        obs, state, reward, terminated, truncated, info = step_all(
            jax.random.split(step_key, episodes), state, action, env_params)
        live = ~finished
        returns = returns + jnp.where(live, reward, 0.0)
        lengths = lengths + live.astype(jnp.int32)
        # Unlocked-so-far, frozen once the episode has ended.
        achieved = jnp.where(live[:, None], info["achievements"], achieved)
        return t + 1, obs, state, key, returns, lengths, finished | terminated | truncated, achieved

    init = (jnp.zeros((), jnp.int32), obs, state, run_key, jnp.zeros(episodes), jnp.zeros(episodes, jnp.int32),
            jnp.zeros(episodes, bool), jnp.zeros((episodes, num_achievements), bool))
    *_, returns, lengths, finished, achieved = jax.lax.while_loop(running, one_step, init)
    return returns, lengths, finished, achieved


def train_program(spec: ppo.Spec, iterations: int):
    """``keys [S] -> (states, per-iteration mean episode return [S, I])``."""

    def train(key):
        state = ppo.init(spec, key)
        state, metrics = jax.lax.scan(lambda s, _: ppo.step(spec, s), state, length=iterations)
        return state, metrics["episode_return"]

    return jax.jit(jax.vmap(train))


def timed_compile(fn, *args):
    """``(compiled fn, seconds)``: compiled ahead of time so that the run's
    timing leaves the compile out."""
    start = time.perf_counter()
    compiled = fn.lower(*args).compile()
    return compiled, time.perf_counter() - start


def timed_run(compiled, *args):
    start = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    return out, time.perf_counter() - start


def achievement_rates(names: list[str], achieved: np.ndarray) -> dict[str, float]:
    return {name: float(rate) for name, rate in zip(names, achieved.mean(axis=0))}


def summary(returns: np.ndarray, lengths: np.ndarray, completed: np.ndarray) -> dict:
    return {"return_mean": float(returns.mean()), "return_std": float(returns.std()),
            "length_mean": float(lengths.mean()), "completed": int(completed.sum()),
            "episodes": int(returns.size)}


def run(steps: int, seeds: int, episodes: int) -> dict:
    env, env_params = envs.make(ENV)
    names = craftax_family.achievement_names(ENV.split(":", 1)[1])
    config = ppo_config(steps)
    spec = ppo.make_spec(env, env_params, config)
    iterations = max(1, steps // spec.batch_size)
    keys = jax.random.split(jax.random.PRNGKey(0), seeds)

    train, compile_seconds = timed_compile(train_program(spec, iterations), keys)
    (states, curves), train_seconds = timed_run(train, keys)
    env_steps = seeds * iterations * spec.batch_size

    def evaluate_ppo(params, key):
        policy = lambda obs, k: ppo.act(spec, params, obs, k, deterministic=False)
        return play(env, env_params, policy, key, episodes, len(names))

    def evaluate_random(key):
        policy = lambda obs, k: jax.random.randint(k, obs.shape[:1], 0, env.action_space(env_params).n)
        return play(env, env_params, policy, key, episodes * seeds, len(names))

    eval_keys = jnp.stack([jax.random.PRNGKey(100 + seed) for seed in range(seeds)])
    ppo_out, ppo_eval_seconds = timed_run(jax.jit(jax.vmap(evaluate_ppo)), ppo.policy_params(states), eval_keys)
    random_out, random_eval_seconds = timed_run(jax.jit(evaluate_random), jax.random.PRNGKey(7))
    ppo_out, random_out = jax.tree.map(np.asarray, (ppo_out, random_out))

    per_seed = [summary(*(x[seed] for x in ppo_out[:3])) for seed in range(seeds)]
    return {
        "env": ENV,
        "seeds": seeds,
        "env_steps_per_seed": iterations * spec.batch_size,
        "episodes_per_seed": episodes,
        "compile_seconds": compile_seconds,
        "train_seconds": train_seconds,
        "train_env_steps_per_second": env_steps / train_seconds,
        "eval_seconds_incl_compile": {"ppo": ppo_eval_seconds, "random": random_eval_seconds},
        "ppo_per_seed": per_seed,
        "ppo_return_mean": float(np.mean([s["return_mean"] for s in per_seed])),
        "random": summary(*random_out[:3]),
        "ppo_achievement_rates_per_seed": [achievement_rates(names, ppo_out[3][seed]) for seed in range(seeds)],
        "ppo_achievement_rates": achievement_rates(names, ppo_out[3].reshape(-1, len(names))),
        "random_achievement_rates": achievement_rates(names, random_out[3]),
        "training_curve_per_seed": np.asarray(curves).tolist(),
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(config).items()},
    }


def print_tables(r: dict) -> None:
    print(f"{ENV}: {r['env_steps_per_seed']} env steps/seed, {r['seeds']} seeds, "
          f"{r['train_env_steps_per_second']:.0f} env steps/s training, compile {r['compile_seconds']:.0f} s")
    print(f"{'policy':<10} {'seed':>4} {'return':>8} {'± std':>7} {'length':>8} {'completed':>10}")
    for seed, s in enumerate(r["ppo_per_seed"]):
        print(f"{'PPO':<10} {seed:>4} {s['return_mean']:>8.2f} {s['return_std']:>7.2f} "
              f"{s['length_mean']:>8.0f} {s['completed']:>5}/{s['episodes']}")
    s = r["random"]
    print(f"{'random':<10} {'-':>4} {s['return_mean']:>8.2f} {s['return_std']:>7.2f} "
          f"{s['length_mean']:>8.0f} {s['completed']:>5}/{s['episodes']}")
    print(f"\n{'achievement':<20} {'PPO':>6} {'random':>7}")
    for name, rate in r["ppo_achievement_rates"].items():
        print(f"{name:<20} {rate:>6.2f} {r['random_achievement_rates'][name]:>7.2f}")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300_000, help="env steps per seed")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--episodes", type=int, default=32, help="evaluation episodes per seed")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 4096 steps, 1 seed, 4 episodes")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.seeds, args.episodes = 4096, 1, 4

    result = run(args.steps, args.seeds, args.episodes)
    print_tables(result)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"backend": jax.default_backend(), "machine": platform.machine(), **result}
    (args.out / "craftax_ppo.json").write_text(json.dumps(report, indent=1))
    return result


if __name__ == "__main__":
    main()
