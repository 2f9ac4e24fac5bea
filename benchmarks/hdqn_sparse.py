"""h-DQN against flat DQN on the sparse-reward goal environments.

    python benchmarks/hdqn_sparse.py [--envs DecisionProcess-v0,KeyDoor-v0]
        [--steps 80000] [--seeds 2] [--keydoor-size 7] [--chunks 8]
        [--episodes 1000] [--out benchmarks/results]

For each environment, trains ``--seeds`` vmapped seeds of ``jaxrl.agents.hdqn``
and of ``jaxrl.agents.dqn`` with the same env-step budget (8 vmapped envs,
one update of each learner per 8 env steps, ε annealed over the first half),
in ``--chunks`` jitted pieces; after each piece every seed is evaluated on
``--episodes`` episodes, greedily and with ε = 0.05 (jitted separately),
recording returns, success fractions and the mean observation sum per
episode (visits per state on the one-hot decision process, as in the
paper's Fig. 4). Prints a table and writes ``<out>/hdqn_sparse.json``.

Reported per agent: the mean training return over the last 1000 episodes
(ε-greedy, as the paper's Fig. 3), the final evaluation returns and success
fractions (a return of 1: s6 visited on the decision process, the door opened
in the key-and-door room), the training curve (mean return per window of
training episodes), and for h-DQN the per-goal success rates and
goal-selection counts.
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
from jaxrl.agents import dqn, hdqn

NUM_ENVS = 8
WINDOW = 1_000


def configs(steps: int) -> tuple[hdqn.Config, dqn.Config]:
    half = steps // 2
    h = hdqn.Config(num_envs=NUM_ENVS, learning_starts=500, meta_exploration_steps=half, total_steps=steps)
    f = dqn.Config(num_envs=NUM_ENVS, rollout_len=1, batch_size=32, learning_rate=1e-3, learning_starts=500,
                   total_steps=steps, exploration_fraction=0.5, epsilon_end=0.1,
                   target_update_period=100, hidden_sizes=(64, 64))
    return h, f


def windowed_curve(metrics, window: int = WINDOW) -> list[float]:
    """Mean return per block of ``window`` consecutive training episodes (one seed)."""
    counts = np.asarray(metrics["episodes_completed"])
    totals = np.asarray(metrics["episode_return"]) * counts
    cum_n, cum_r = np.cumsum(counts), np.cumsum(totals)
    edges = np.arange(window, cum_n[-1] + 1, window)
    at = np.searchsorted(cum_n, edges)
    r = np.concatenate([[0.0], cum_r[at]])
    n = np.concatenate([[0.0], cum_n[at]])
    return list(np.diff(r) / np.maximum(np.diff(n), 1.0))


def last_mean(metrics, n: int = WINDOW) -> float:
    counts = np.asarray(metrics["episodes_completed"])
    totals = np.asarray(metrics["episode_return"]) * counts
    k = int(np.searchsorted(np.cumsum(counts[::-1]), n)) + 1
    return float(totals[-k:].sum() / counts[-k:].sum())


def flat_episodes(agent, state, key, num_episodes: int, epsilon: float):
    """First episodes of a flat DQN policy (ε-greedy): returns [N] and
    observation sums [N, D] (visit counts for one-hot observations)."""
    env, env_params = agent.env, agent.env_params
    q = dqn.q_function(agent)
    k_reset, key = jax.random.split(key)
    obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_reset, num_episodes), env_params)

    def one(carry, key):
        obs, env_state, finished, returns, visits = carry
        k_act, k_env = jax.random.split(key)
        action = dqn.epsilon_greedy(k_act, q(state.params, obs), epsilon)
        obs, env_state, reward, terminated, truncated, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(k_env, num_episodes), env_state, action, env_params)
        running = (~finished).astype(jnp.float32)
        returns = returns + reward * running
        visits = visits + info["final_observation"].reshape(num_episodes, -1) * running[:, None]
        return (obs, env_state, finished | terminated | truncated, returns, visits), None

    carry = (obs, env_state, jnp.zeros((num_episodes,), bool), jnp.zeros((num_episodes,)),
             jnp.zeros((num_episodes, obs.reshape(num_episodes, -1).shape[1])))
    steps = int(env_params.max_steps_in_episode) + 1
    carry, _ = jax.lax.scan(one, carry, jax.random.split(key, steps))
    return carry[3], carry[4]


def train_and_evaluate(agent, kind: str, seeds: int, iterations: int, chunks: int, episodes: int) -> dict:
    """Trains in ``chunks`` equal pieces; after each, evaluates every seed
    greedily and with ε = 0.05 (the paper tests with a small ε)."""
    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(seeds)])
    chunk = iterations // chunks
    run = jax.jit(jax.vmap(lambda s: jax.lax.scan(lambda s, _: agent.step(s), s, length=chunk)))
    if kind == "hdqn":
        evaluate = lambda s, k, eps: agent.run_episodes(agent.policy_params(s), k, episodes, epsilon=eps)
        evaluate = jax.jit(jax.vmap(evaluate, in_axes=(0, 0, None)), static_argnums=2)
        pick = lambda out: (out[0], out[3])
    else:
        evaluate = jax.jit(jax.vmap(lambda s, k, eps: flat_episodes(agent, s, k, episodes, eps),
                                    in_axes=(0, 0, None)), static_argnums=2)
        pick = lambda out: out
    states = jax.jit(jax.vmap(agent.init))(keys)
    history, evals, seconds = [], [], 0.0
    for i in range(chunks):
        started = time.perf_counter()
        states, metrics = jax.block_until_ready(run(states))
        seconds += time.perf_counter() - started
        history.append(jax.device_get(metrics))
        row = {"env_steps": int(np.asarray(states.env_steps)[0])}
        for name, eps in (("greedy", 0.0), ("eps_0.05", 0.05)):
            eval_keys = jax.random.split(jax.random.PRNGKey(10_000 + i), seeds)
            returns, visits = (np.asarray(x) for x in pick(evaluate(states, eval_keys, eps)))
            row[f"{name}_return"] = returns.mean(axis=1).tolist()
            row[f"{name}_success"] = np.isclose(returns, 1.0).mean(axis=1).tolist()
            row[f"{name}_visits_per_episode"] = visits.mean(axis=1).tolist()
        evals.append(row)
    metrics = {k: np.concatenate([h[k] for h in history], axis=1) for k in history[0]}
    return {"states": states, "metrics": metrics, "evals": evals, "seconds": seconds}


def run_env(env_id: str, steps: int, seeds: int, chunks: int, episodes: int,
            env_kwargs: dict | None = None) -> dict:
    env, env_params = envs.make(env_id, **(env_kwargs or {}))
    h_config, f_config = configs(steps)
    agents = {"hdqn": hdqn.make(env, env_params, h_config), "dqn": dqn.make(env, env_params, f_config)}
    iterations = steps // NUM_ENVS // chunks * chunks
    out = {"env": env_id, "env_kwargs": env_kwargs or {}, "env_steps": iterations * NUM_ENVS, "seeds": seeds}
    for name, agent in agents.items():
        result = train_and_evaluate(agent, name, seeds, iterations, chunks, episodes)
        metrics = result["metrics"]  # [seeds, iterations]
        per_seed = lambda i: {k: v[i] for k, v in metrics.items()}
        total_episodes = int(np.asarray(metrics["episodes_completed"]).sum(axis=1).min())
        window = max(1, min(WINDOW, total_episodes // 20))
        final = result["evals"][-1]
        out[name] = {
            "train_last_1000_mean": [last_mean(per_seed(i)) for i in range(seeds)],
            "greedy_eval_mean": final["greedy_return"],
            "greedy_success_fraction": final["greedy_success"],
            "eps_0.05_eval_mean": final["eps_0.05_return"],
            "eps_0.05_success_fraction": final["eps_0.05_success"],
            "evaluations": result["evals"],
            "curve_window": window,
            "curve": [windowed_curve(per_seed(i), window) for i in range(seeds)],
            "train_seconds": result["seconds"],
        }
        if name == "hdqn":
            names = agent.env.goal_names
            rates = np.asarray(result["states"].goal_stats.success_rate)
            out[name]["goal_success_rate"] = {n: rates[:, g].tolist() for g, n in enumerate(names)}
            out[name]["goals_chosen_total"] = {
                n: np.asarray(metrics[f"goal_{n}_chosen"]).sum(axis=1).tolist() for n in names}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", default="DecisionProcess-v0,KeyDoor-v0")
    parser.add_argument("--steps", type=int, default=80_000)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--keydoor-size", type=int, default=7, help="side of the KeyDoor-v0 room")
    parser.add_argument("--chunks", type=int, default=8, help="evaluations during training")
    parser.add_argument("--episodes", type=int, default=1000, help="episodes per evaluation and seed")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)

    kwargs = {"KeyDoor-v0": {"size": args.keydoor_size}}
    results = [run_env(env_id, args.steps, args.seeds, args.chunks, args.episodes, kwargs.get(env_id))
               for env_id in args.envs.split(",")]
    header = (f"{'env':<20} {'agent':<6} {'train last 1000':>16} {'greedy return':>14} {'greedy success':>15}"
              f" {'ε=0.05 success':>15}")
    print(header)
    print("-" * len(header))
    for r in results:
        for name in ("hdqn", "dqn"):
            a = r[name]
            print(f"{r['env']:<20} {name:<6} {np.mean(a['train_last_1000_mean']):>16.4f} "
                  f"{np.mean(a['greedy_eval_mean']):>14.4f} {np.mean(a['greedy_success_fraction']):>15.3f}"
                  f" {np.mean(a['eps_0.05_success_fraction']):>15.3f}")
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"meta": {"steps": args.steps, "seeds": args.seeds, "platform": platform.platform(),
                       "jax": jax.__version__, "device": str(jax.devices()[0])}, "results": results}
    path = args.out / "hdqn_sparse.json"
    path.write_text(json.dumps(report, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
