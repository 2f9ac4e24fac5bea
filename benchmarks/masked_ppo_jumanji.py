"""Masked PPO on Jumanji tasks against a random policy over the legal actions.

    python benchmarks/masked_ppo_jumanji.py [--quick] [--env jumanji:Knapsack-v1 ...]
        [--steps 200000] [--seeds 2] [--out benchmarks/results]

For each env: PPO (its Dict observation through the per-key encoder, its
action mask applied in sampling and in the loss) trains for ``--steps`` env
steps per seed; then its greedy and its sampling policy, and a uniformly random *legal* policy
(the masked distribution of all-zero logits: what the agent's machinery
samples before learning anything) each play ``--episodes`` episodes.
Masked PPO has learned something when its return clears the random one.

Writes ``<out>/masked_ppo_jumanji.json`` and prints a table.
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
from jaxrl.agents import actor_critic, ppo

HERE = Path(__file__).resolve().parent
DEFAULT_ENVS = ("jumanji:Knapsack-v1", "jumanji:Snake-v1")
MAX_EPISODE_STEPS = 1000  # evaluation cap: Jumanji params carry no time limit of their own


def ppo_config(total_steps: int) -> ppo.Config:
    return ppo.Config(num_envs=16, rollout_len=64, num_minibatches=4, num_epochs=4,
                      learning_rate=3e-4, hidden_sizes=(128, 128), activation="relu",
                      ent_coef=0.01, total_steps=total_steps)


def random_legal_policy(spec: ppo.Spec):
    """Uniform over the legal actions of each observation (per dimension for a
    MultiDiscrete with per-dimension masks)."""

    def policy(obs, key):
        _, mask = actor_critic.split_observation(spec.ac, obs)
        batch = jax.tree.leaves(obs)[0].shape[:1]
        logits = jnp.zeros(batch + (spec.ac.action_dim,))
        return actor_critic.distribution(spec.ac, logits, mask).sample(key)

    return policy


def returns_of(env, env_params, policy, key, episodes) -> np.ndarray:
    results = envs.episode_returns(env, env_params, policy, key, episodes, max_steps=MAX_EPISODE_STEPS)
    return np.asarray(results.returns)


def run_env(env_id: str, steps: int, seeds: int, episodes: int) -> dict:
    env, env_params = envs.make(env_id)
    config = ppo_config(steps)
    spec = ppo.make_spec(env, env_params, config)
    iterations = max(1, steps // spec.batch_size)

    def train(key):
        state = ppo.init(spec, key)
        state, metrics = jax.lax.scan(lambda s, _: ppo.step(spec, s), state, length=iterations)
        return state, metrics["episode_return"]

    start = time.perf_counter()
    states, curves = jax.jit(jax.vmap(train))(jax.random.split(jax.random.PRNGKey(0), seeds))
    jax.block_until_ready(curves)
    train_seconds = time.perf_counter() - start

    ppo_returns = {"greedy": [], "sampled": []}
    for seed in range(seeds):
        params = ppo.policy_params(jax.tree.map(lambda x: x[seed], states))
        for mode, deterministic in (("greedy", True), ("sampled", False)):
            policy = jax.jit(lambda obs, k: ppo.act(spec, params, obs, k, deterministic=deterministic))
            returns = returns_of(env, env_params, policy, jax.random.PRNGKey(100 + seed), episodes)
            ppo_returns[mode].append(float(returns.mean()))
    random_returns = returns_of(env, env_params, jax.jit(random_legal_policy(spec)),
                                jax.random.PRNGKey(7), episodes * seeds)
    return {
        "env": env_id,
        "action_space": repr(env.action_space(env_params)),
        "mask_kind": envs.action_mask_kind(env, env_params),
        "env_steps_per_seed": iterations * spec.batch_size,
        "seeds": seeds,
        "episodes_per_seed": episodes,
        "train_seconds_incl_compile": train_seconds,
        "ppo_greedy_return_per_seed": ppo_returns["greedy"],
        "ppo_greedy_return_mean": float(np.mean(ppo_returns["greedy"])),
        "ppo_sampled_return_per_seed": ppo_returns["sampled"],
        "ppo_sampled_return_mean": float(np.mean(ppo_returns["sampled"])),
        "random_legal_return_mean": float(random_returns.mean()),
        "random_legal_return_std": float(random_returns.std()),
        "training_curve_last_return_per_seed": [float(c[-1]) for c in np.asarray(curves)],
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(config).items()},
    }


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", nargs="+", default=list(DEFAULT_ENVS))
    parser.add_argument("--steps", type=int, default=200_000, help="env steps per seed")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--episodes", type=int, default=32, help="evaluation episodes per seed")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 4096 steps, 1 seed, 4 episodes")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.seeds, args.episodes = 4096, 1, 4

    rows = [run_env(env_id, args.steps, args.seeds, args.episodes) for env_id in args.env]
    print(f"{'env':<24} {'mask':<6} {'steps/seed':>10} {'seeds':>5} {'PPO greedy':>11} "
          f"{'PPO sampled':>12} {'random legal':>13} {'train s':>8}")
    for r in rows:
        print(f"{r['env']:<24} {str(r['mask_kind']):<6} {r['env_steps_per_seed']:>10} {r['seeds']:>5} "
              f"{r['ppo_greedy_return_mean']:>11.3f} {r['ppo_sampled_return_mean']:>12.3f} "
              f"{r['random_legal_return_mean']:>13.3f} {r['train_seconds_incl_compile']:>8.1f}")
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"backend": jax.default_backend(), "machine": platform.machine(), "rows": rows}
    (args.out / "masked_ppo_jumanji.json").write_text(json.dumps(result, indent=2))
    return rows


if __name__ == "__main__":
    main()
