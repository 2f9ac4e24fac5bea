"""h-DQN against flat DQN on the sparse-reward goal environments.

    python benchmarks/hdqn_sparse.py [--envs DecisionProcess-v0,KeyDoor-v0]
        [--steps 80000] [--keydoor-steps 200000] [--seeds 3] [--keydoor-room-size 6]
        [--minigrid-steps 100000] [--minigrid-max-steps N]
        [--chunks 8] [--episodes 1000] [--out benchmarks/results]

For each environment, trains ``--seeds`` vmapped seeds of ``jaxrl.agents.hdqn``
and of ``jaxrl.agents.dqn`` with the same env-step budget (8 vmapped envs,
one update of each learner per 8 env steps, ε annealed over the first half;
``--steps`` on the decision process, ``--keydoor-steps`` in the key-and-door
rooms, where h-DQN's options may run 30 steps to cross a room,
``--minigrid-steps`` on XLand-MiniGrid's DoorKey layouts, e.g.
``--envs xminigrid:MiniGrid-DoorKey-5x5``, whose goals are ``key`` and
``door``; ``--minigrid-max-steps`` replaces its episode limit),
in ``--chunks`` jitted pieces; after each piece every seed is evaluated on
``--episodes`` episodes, greedily and with ε = 0.05 (jitted separately),
recording returns, success fractions and the mean observation sum per
episode (visits per state on the one-hot decision process, as in the
paper's Fig. 4). Prints a table, writes ``<out>/hdqn_sparse.json`` (entries
of environments not run this time are kept) and plots the curves of every
entry to ``<out>/hdqn_sparse.png``.

Reported per agent: the mean training return over the last 1000 episodes
(ε-greedy, as the paper's Fig. 3), the final evaluation returns and success
fractions (a return of 1: s6 visited on the decision process, the door opened
in the key-and-door room; on MiniGrid any positive return, the goal square
reached, which pays 1 - 0.9·steps/limit), the training curve (mean return
per window of training episodes), and for h-DQN the per-goal success rates,
goal-selection counts and, per evaluation, the fraction of episodes in which
an option pursuing each goal reached it.
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


def is_minigrid(env_id: str) -> bool:
    return env_id.startswith("xminigrid:")


def succeeded(env_id: str, returns: np.ndarray) -> np.ndarray:
    """Whether each episode reached its goal: a return of 1 on our envs (the
    decision process pays 0.01 for a failure), any positive return on
    MiniGrid (its goal pays 1 - 0.9·steps/limit, nothing else pays)."""
    return returns > 0 if is_minigrid(env_id) else np.isclose(returns, 1.0)


def configs(steps: int, env_id: str) -> tuple[hdqn.Config, dqn.Config]:
    half = steps // 2
    # Crossing a KeyDoor-v0 room toward a goal can take longer than the default 20-step option.
    option_steps = 30 if env_id == "KeyDoor-v0" else hdqn.Config.max_option_steps
    h = hdqn.Config(num_envs=NUM_ENVS, learning_starts=500, meta_exploration_steps=half, total_steps=steps,
                    max_option_steps=option_steps)
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
    steps = int(envs.step_limit(env, env_params)) + 1
    carry, _ = jax.lax.scan(one, carry, jax.random.split(key, steps))
    return carry[3], carry[4]


def train_and_evaluate(agent, kind: str, seeds: int, iterations: int, chunks: int, episodes: int,
                       env_id: str) -> dict:
    """Trains in ``chunks`` equal pieces; after each, evaluates every seed
    greedily and with ε = 0.05 (the paper tests with a small ε)."""
    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(seeds)])
    chunk = iterations // chunks
    run = jax.jit(jax.vmap(lambda s: jax.lax.scan(lambda s, _: agent.step(s), s, length=chunk)))
    if kind == "hdqn":
        evaluate = lambda s, k, eps: agent.run_episodes(agent.policy_params(s), k, episodes, epsilon=eps)
        evaluate = jax.jit(jax.vmap(evaluate, in_axes=(0, 0, None)), static_argnums=2)
        pick = lambda out: (out[0], out[3], out[2])  # returns, visits, goals reached [N, G]
    else:
        evaluate = jax.jit(jax.vmap(lambda s, k, eps: flat_episodes(agent, s, k, episodes, eps),
                                    in_axes=(0, 0, None)), static_argnums=2)
        pick = lambda out: (*out, None)
    states = jax.jit(jax.vmap(agent.init))(keys)
    history, evals, seconds = [], [], 0.0
    for i in range(chunks):
        started = time.perf_counter()
        states, metrics = jax.block_until_ready(run(states))
        seconds += time.perf_counter() - started
        history.append(jax.device_get(metrics))
        row = {"env_steps": int(states.env_steps[0])}  # one seed's count (all seeds step alike)
        for name, eps in (("greedy", 0.0), ("eps_0.05", 0.05)):
            eval_keys = jax.random.split(jax.random.PRNGKey(10_000 + i), seeds)
            returns, visits, reached = jax.device_get(pick(evaluate(states, eval_keys, eps)))
            row[f"{name}_return"] = returns.mean(axis=1).tolist()
            row[f"{name}_success"] = succeeded(env_id, returns).mean(axis=1).tolist()
            if not is_minigrid(env_id):  # sums of MiniGrid's symbolic views count nothing
                row[f"{name}_visits_per_episode"] = visits.mean(axis=1).tolist()
            if reached is not None:  # per goal: the fraction of episodes whose options reached it
                row[f"{name}_goal_reached"] = {goal: (reached[..., g] > 0).mean(axis=1).tolist()
                                               for g, goal in enumerate(agent.env.goal_names)}
        evals.append(row)
    metrics = {k: np.concatenate([h[k] for h in history], axis=1) for k in history[0]}
    return {"states": states, "metrics": metrics, "evals": evals, "seconds": seconds}


def run_env(env_id: str, steps: int, seeds: int, chunks: int, episodes: int,
            env_kwargs: dict | None = None) -> dict:
    env, env_params = envs.make(env_id, **(env_kwargs or {}))
    h_config, f_config = configs(steps, env_id)
    agents = {"hdqn": hdqn.make(env, env_params, h_config), "dqn": dqn.make(env, env_params, f_config)}
    iterations = steps // NUM_ENVS // chunks * chunks
    out = {"env": env_id, "env_kwargs": env_kwargs or {}, "env_steps": iterations * NUM_ENVS, "seeds": seeds}
    for name, agent in agents.items():
        result = train_and_evaluate(agent, name, seeds, iterations, chunks, episodes, env_id)
        metrics = result["metrics"]  # [seeds, iterations]
        per_seed = lambda i: {k: v[i] for k, v in metrics.items()}
        total_episodes = int(np.asarray(metrics["episodes_completed"]).sum(axis=1).min())
        window = max(1, min(WINDOW, total_episodes // 20))
        final = result["evals"][-1]
        out[name] = {
            "train_last_1000_mean": [last_mean(per_seed(i)) for i in range(seeds)],
            # fewer than 1000 on long-episode envs: then the mean above is over all of them
            "train_episodes": np.asarray(metrics["episodes_completed"]).sum(axis=1).tolist(),
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


def plot(results: list[dict], path: Path) -> None:
    """Training curves (mean return per window of episodes) and greedy success
    fraction over training, per environment, mean and range over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(results), figsize=(5 * len(results), 7), squeeze=False)
    for col, r in enumerate(results):
        for name, color in (("hdqn", "tab:blue"), ("dqn", "tab:orange")):
            a = r[name]
            n = min(len(c) for c in a["curve"])
            curves = np.array([c[:n] for c in a["curve"]])
            x = (np.arange(n) + 1) * a["curve_window"]
            ax = axes[0, col]
            ax.plot(x, curves.mean(axis=0), color=color, label=name)
            ax.fill_between(x, curves.min(axis=0), curves.max(axis=0), color=color, alpha=0.2)
            steps = [e["env_steps"] for e in a["evaluations"]]
            success = np.array([e["greedy_success"] for e in a["evaluations"]])
            ax = axes[1, col]
            ax.plot(steps, success.mean(axis=1), "o-", color=color, label=name)
            ax.fill_between(steps, success.min(axis=1), success.max(axis=1), color=color, alpha=0.2)
        axes[0, col].set(title=f"{r['env']} ({r['seeds']} seeds)", xlabel="training episodes",
                         ylabel="mean extrinsic return (ε-greedy)")
        axes[1, col].set(xlabel="env steps", ylabel="greedy success fraction", ylim=(-0.05, 1.05))
        axes[0, col].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", default="DecisionProcess-v0,KeyDoor-v0")
    parser.add_argument("--steps", type=int, default=80_000)
    parser.add_argument("--keydoor-steps", type=int, default=200_000, help="env steps on KeyDoor-v0")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--keydoor-room-size", type=int, default=6, help="side of each KeyDoor-v0 room")
    parser.add_argument("--minigrid-steps", type=int, default=100_000, help="env steps on xminigrid ids")
    parser.add_argument("--minigrid-max-steps", type=int, default=None,
                        help="episode limit on xminigrid ids (default: the layout's own)")
    parser.add_argument("--chunks", type=int, default=8, help="evaluations during training")
    parser.add_argument("--episodes", type=int, default=1000, help="episodes per evaluation and seed")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)

    env_ids = args.envs.split(",")
    kwargs = {"KeyDoor-v0": {"room_size": args.keydoor_room_size}}
    steps = {"KeyDoor-v0": args.keydoor_steps}
    for env_id in filter(is_minigrid, env_ids):
        steps[env_id] = args.minigrid_steps
        if args.minigrid_max_steps is not None:
            kwargs[env_id] = {"max_steps": args.minigrid_max_steps}
    results = [run_env(env_id, steps.get(env_id, args.steps), args.seeds, args.chunks, args.episodes,
                       kwargs.get(env_id))
               for env_id in env_ids]
    header = (f"{'env':<32} {'agent':<6} {'train last 1000':>16} {'greedy return':>14} {'greedy success':>15}"
              f" {'ε=0.05 success':>15}")
    print(header)
    print("-" * len(header))
    for r in results:
        for name in ("hdqn", "dqn"):
            a = r[name]
            print(f"{r['env']:<32} {name:<6} {np.mean(a['train_last_1000_mean']):>16.4f} "
                  f"{np.mean(a['greedy_eval_mean']):>14.4f} {np.mean(a['greedy_success_fraction']):>15.3f}"
                  f" {np.mean(a['eps_0.05_success_fraction']):>15.3f}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "hdqn_sparse.json"
    meta = {"platform": platform.platform(), "jax": jax.__version__, "device": str(jax.devices()[0])}
    for r in results:
        r["meta"] = meta
    # Keep earlier entries of the environments not run this time.
    earlier_report = json.loads(path.read_text()) if path.exists() else {"results": []}
    earlier = earlier_report["results"]
    for r in earlier:  # reports of older versions kept one top-level meta
        r.setdefault("meta", earlier_report.get("meta", {}))
    ran = {r["env"] for r in results}
    merged = [r for r in earlier if r["env"] not in ran] + results
    merged.sort(key=lambda r: r["env"])
    path.write_text(json.dumps({"results": merged}, indent=1))
    plot(merged, args.out / "hdqn_sparse.png")
    print(f"wrote {path} and {path.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
