"""Runs described by names and plain values: what the CLI and saved run
directories speak.

``build_agent("ppo", "CartPole-v1", config_values={...})`` resolves the
algorithm, makes the env, checks that the algorithm supports its action
space, and makes the agent; every mistake along the way is a ValueError
raised before anything is compiled. :func:`resume` and :func:`evaluate_run`
rebuild a run from its config.json.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jaxrl.run import rundir
from jaxrl.run.checkpoint import DEFAULT_CHECKPOINT_SECONDS
from jaxrl.run.config_io import config_fields, config_from_dict, key_from_json


def algorithm_module(name: str):
    """The module of algorithm ``name`` (ValueError listing the known ones)."""
    from jaxrl import agents

    return agents.get(name)


def make_config(module, values: Mapping[str, Any] | None = None):
    """``module.Config`` with ``values`` (typed, or lists where tuples are due), validated."""
    config = config_from_dict(module.Config, dict(values or {}))
    if hasattr(config, "validate"):
        config.validate()
    return config


def make_env(env_id: str, **env_kwargs):
    """``(env, env_params)`` for ``env_id`` (ValueError naming close ids if unknown)."""
    from jaxrl import envs

    return envs.make(env_id, **env_kwargs)


def check_env_for(module, algorithm: str, env_id: str, env, env_params) -> None:
    """ValueError unless ``module.ACTION_SPACES`` covers the env's action space."""
    from jaxrl import envs

    envs.validate_env_for(tuple(module.ACTION_SPACES), env_id, env, env_params, algorithm)


def build_agent(
    algorithm: str,
    env_id: str,
    env_kwargs: Mapping[str, Any] | None = None,
    config_values: Mapping[str, Any] | None = None,
):
    """Makes the agent a run describes. Raises ValueError/TypeError on bad input,
    before anything is compiled."""
    module = algorithm_module(algorithm)
    config = make_config(module, config_values)
    env, env_params = make_env(env_id, **dict(env_kwargs or {}))
    check_env_for(module, algorithm, env_id, env, env_params)
    # What make needs without the host (rm-ppo's human labeller: `jaxrl train` binds the run's).
    from jaxrl import agents

    return module.make(env, env_params, config, **agents.host_needs(algorithm, config).make_kwargs)


def with_total_steps(module, values: Mapping[str, Any], total_steps: int) -> dict[str, Any]:
    """Fills ``Config.total_steps`` (schedules such as learning-rate annealing
    span the run) from the run length, unless set explicitly."""
    values = dict(values)
    if "total_steps" in config_fields(module.Config) and "total_steps" not in values:
        values["total_steps"] = total_steps
    return values


def load_agent(out_dir: str | os.PathLike):
    """``(agent, config.json contents)`` of the run in ``out_dir``."""
    saved = rundir.load_config(out_dir)
    try:
        agent = build_agent(
            saved["algorithm"], saved["env_id"], saved["env_kwargs"], saved["agent_config"]
        )
    except (ValueError, TypeError) as e:
        raise rundir.RunDirError(f"{Path(out_dir) / rundir.CONFIG}: {e}") from None
    return agent, saved


def resume(
    out_dir: str | os.PathLike,
    *,
    progress: bool = True,
    sinks: Sequence[Any] = (),
    eval_episodes: int | None = None,
    checkpoint_every_seconds: float = DEFAULT_CHECKPOINT_SECONDS,
):
    """Continues the run in ``out_dir`` from its latest checkpoint; the result
    is bit-identical to a run that was never interrupted. Besides ``sinks``
    it writes to every sink the run had (metrics.jsonl, TensorBoard, and the
    W&B / MLflow runs named in tracking.json, which it continues)."""
    from jaxrl.run.loop import train
    from jaxrl.run.sinks import make_sinks, sinks_of_run

    agent, saved = load_agent(out_dir)
    if saved.get("hparams") is not None:
        raise rundir.RunDirError(
            f"{out_dir} was trained with custom hparams; resume it with "
            "jaxrl.run.train(..., hparams=..., resume=True)"
        )
    episodes = saved["eval_episodes"] if eval_episodes is None else eval_episodes
    return train(
        agent,
        key_from_json(saved["key"]),
        saved["total_steps"],
        seeds=saved["seeds"],
        out_dir=out_dir,
        sinks=[*make_sinks(out_dir, sinks_of_run(out_dir)), *sinks],
        chunk_iterations=saved["chunk_iterations"],
        eval_episodes=episodes,
        # Runs saved before periodic evaluation existed have no eval_every;
        # eval_episodes=0 switches all evaluation off.
        eval_every=saved.get("eval_every") if episodes else None,
        progress=progress,
        checkpoint_every_seconds=checkpoint_every_seconds,
        resume=True,
        env_id=saved["env_id"],
        env_kwargs=saved["env_kwargs"],
    )


def restore_latest(out_dir: str | os.PathLike, agent: Any, saved: dict[str, Any], *,
                   purpose: str) -> tuple[int, Any]:
    """``(iteration, states [seeds, ...])`` of the run's newest intact
    checkpoint; RunDirError naming ``purpose`` ("evaluate", ...) when it has
    none. Compiles nothing."""
    import jax

    from jaxrl.run.checkpoint import Checkpointer
    from jaxrl.run.loop import make_init_fn
    from jaxrl.run.seeds import ONE_DEVICE

    checkpoints = Path(out_dir) / rundir.CHECKPOINTS
    restored = None
    if checkpoints.is_dir():
        keys = jax.random.split(key_from_json(saved["key"]), saved["seeds"])
        abstract = ONE_DEVICE.restore_target(
            jax.eval_shape(make_init_fn(agent, saved["seeds"]), keys, None), agent)
        with Checkpointer(checkpoints) as checkpointer:
            restored = checkpointer.restore_latest_intact(abstract)
    if restored is None:
        raise rundir.RunDirError(f"{out_dir} has no checkpoints to {purpose}")
    return restored


def evaluate_run(out_dir: str | os.PathLike, episodes: int | None = None) -> dict[str, Any]:
    """Evaluates the latest checkpoint of the run in ``out_dir`` and writes eval.json.

    Uses the run's evaluation keys, so with the run's episode count and its
    final checkpoint the numbers equal summary.json's.
    """
    from jaxrl.run.evaluation import eval_summary, evaluate
    from jaxrl.run.loop import MAX_EVAL_EPISODES

    out_dir = Path(out_dir)
    agent, saved = load_agent(out_dir)
    episodes = saved["eval_episodes"] if episodes is None else episodes
    if not isinstance(episodes, int) or not 1 <= episodes <= MAX_EVAL_EPISODES:
        raise ValueError(f"episodes must be an integer in [1, {MAX_EVAL_EPISODES}], got {episodes!r}")
    key = key_from_json(saved["key"])
    iteration, state = restore_latest(out_dir, agent, saved, purpose="evaluate")
    returns = evaluate(agent, state, key, episodes)
    result = {
        **eval_summary(returns),
        "episode_returns": returns.tolist(),
        "iteration": iteration,
        "env_steps": iteration * agent.env_steps_per_step,
        "algorithm": saved["algorithm"],
        "env_id": saved["env_id"],
        "seeds": saved["seeds"],
    }
    rundir.write_json(out_dir / rundir.EVAL, result)
    return result
