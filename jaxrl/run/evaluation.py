"""Evaluation of the final policy of every seed of a run."""

from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np

from jaxrl.agents.base import Agent

# Evaluation draws from its own stream of the run key, so evaluating never
# changes training and ``jaxrl eval`` reproduces the summary's numbers.
_EVAL_STREAM = 0x6576616C  # "eval"


def evaluation_keys(run_key: jax.Array, seeds: int) -> jax.Array:
    """One evaluation key per seed, a fixed function of the run key."""
    return jax.random.split(jax.random.fold_in(run_key, _EVAL_STREAM), seeds)


def make_evaluator(agent: Agent):
    """``evaluator(states, keys, num_episodes) -> [seeds, num_episodes]`` returns, jitted
    (one jitted function per agent, so evaluating again does not recompile)."""
    return _evaluator(agent.evaluate)


@functools.lru_cache(maxsize=16)
def _evaluator(evaluate_fn):
    return jax.jit(jax.vmap(evaluate_fn, in_axes=(0, 0, None)), static_argnums=2)


def evaluate(agent: Agent, states: Any, run_key: jax.Array, num_episodes: int) -> np.ndarray:
    """Returns of ``num_episodes`` evaluation episodes per seed, ``[seeds, num_episodes]``."""
    seeds = jax.tree.leaves(states)[0].shape[0]
    returns = make_evaluator(agent)(states, evaluation_keys(run_key, seeds), num_episodes)
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
