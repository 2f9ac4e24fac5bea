"""Evaluation of every seed's policy: at the end of a run, and every
``eval_every`` env steps during it (rows of eval.csv)."""

from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np
from jax.sharding import PartitionSpec as P

from jaxrl.agents.base import Agent
from jaxrl.compilation import compiler_options
from jaxrl.run.seeds import ONE_DEVICE, SEEDS_AXIS, SeedPlacement, over_seeds, placement_of
from jaxrl.run.sinks import MetricsChunk

# Evaluation draws from its own stream of the run key, so evaluating never
# changes training and ``jaxrl eval`` reproduces the summary's numbers.
_EVAL_STREAM = 0x6576616C  # "eval"


def evaluation_keys(run_key: jax.Array, seeds: int) -> jax.Array:
    """One evaluation key per seed, a fixed function of the run key."""
    return jax.random.split(jax.random.fold_in(run_key, _EVAL_STREAM), seeds)


def make_evaluator(agent: Agent, placement: SeedPlacement = ONE_DEVICE):
    """``evaluator(states, keys, num_episodes) -> [seeds, num_episodes]`` returns, jitted
    (one jitted function per agent and placement, so evaluating again does not
    recompile), for states where ``placement`` puts them."""
    return _evaluator(agent.evaluate, placement)


@functools.lru_cache(maxsize=16)
def _evaluator(evaluate_fn, placement: SeedPlacement):
    def evaluate_all(states, keys, num_episodes):
        per_device = lambda s, k: over_seeds(evaluate_fn, (0, 0, None))(s, k, num_episodes)
        return placement.shard(
            per_device, in_specs=(P(SEEDS_AXIS), P(SEEDS_AXIS)), out_specs=P(SEEDS_AXIS))(states, keys)

    return jax.jit(evaluate_all, static_argnums=2, compiler_options=compiler_options("evaluate"))


def evaluate(agent: Agent, states: Any, run_key: jax.Array, num_episodes: int) -> np.ndarray:
    """Returns of ``num_episodes`` evaluation episodes per seed, ``[seeds, num_episodes]``."""
    seeds = jax.tree.leaves(states)[0].shape[0]
    return evaluate_with_keys(agent, states, evaluation_keys(run_key, seeds), num_episodes)


def evaluate_with_keys(agent: Agent, states: Any, keys: jax.Array, num_episodes: int) -> np.ndarray:
    """Returns of ``num_episodes`` episodes per seed drawn with ``keys [seeds]``,
    ``[seeds, num_episodes]``."""
    placement = placement_of(states)
    returns = make_evaluator(agent, placement)(states, placement.place(keys), num_episodes)
    return np.asarray(jax.device_get(returns), dtype=np.float64)


def eval_summary(returns: np.ndarray) -> dict[str, Any]:
    """``eval_return`` per seed (mean over episodes), their mean and std, and the episode count."""
    if returns.shape[1] == 0:  # evaluation switched off
        return {
            "eval_return": [],
            "eval_return_mean": None,
            "eval_return_std": None,
            "eval_episodes": 0,
        }
    per_seed = returns.mean(axis=1)
    return {
        "eval_return": [float(r) for r in per_seed],
        "eval_return_mean": float(per_seed.mean()),
        "eval_return_std": float(per_seed.std()),
        "eval_episodes": int(returns.shape[1]),
    }


# ---------------------------------------------------------------- during training


def periodic_evaluation_keys(run_key: jax.Array, seeds: int, iterations_done: int) -> jax.Array:
    """Evaluation keys of the evaluation after ``iterations_done`` iterations:
    a fixed function of the run key and that count, apart from the training
    stream and from the final evaluation's :func:`evaluation_keys`, so a
    resumed run draws the same episodes as an uninterrupted one."""
    return evaluation_keys(jax.random.fold_in(run_key, iterations_done), seeds)


def evaluation_due(steps_before: int, steps_after: int, eval_every: int | None) -> bool:
    """Whether a chunk that took a seed from ``steps_before`` to ``steps_after``
    env steps crossed a multiple of ``eval_every`` (None: never)."""
    return eval_every is not None and steps_before // eval_every < steps_after // eval_every


def evaluation_chunk(env_steps: int, returns: np.ndarray) -> MetricsChunk:
    """One eval.csv point from ``[seeds, episodes]`` returns: per seed the mean,
    std, min and max over episodes, as float32 (what eval.csv holds, so the
    best evaluation is the same whether read back from the file or not)."""
    stats = {
        "eval_return": returns.mean(axis=1),
        "eval_return_std": returns.std(axis=1),
        "eval_return_min": returns.min(axis=1),
        "eval_return_max": returns.max(axis=1),
    }
    return MetricsChunk(
        env_steps=np.asarray([env_steps], np.int64),
        metrics={name: v[None, :].astype(np.float32) for name, v in stats.items()},
    )


def best_evaluation(env_steps: np.ndarray, returns: np.ndarray) -> dict[str, Any]:
    """``best_eval_return`` and ``best_eval_step`` per seed (the earliest of
    ties) from ``env_steps [n]`` and mean returns ``[n, seeds]``; empty lists
    when there is no evaluation."""
    if len(env_steps) == 0:
        return {"best_eval_return": [], "best_eval_step": []}
    best = np.argmax(returns, axis=0)
    seeds = range(returns.shape[1])
    return {
        "best_eval_return": [float(returns[best[s], s]) for s in seeds],
        "best_eval_step": [int(env_steps[best[s]]) for s in seeds],
    }
