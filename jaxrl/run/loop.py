"""The chunked training loop.

A run of ``n`` iterations over ``seeds`` seeds is ``lax.scan`` of the vmapped
``agent.step``, cut into chunks of ``chunk_iterations``: one jitted function
runs a chunk on the device, and between chunks the host writes metrics,
updates the progress bar and checkpoints. Chunk boundaries depend only on
the run's config, so a resumed run executes exactly the same programs on
exactly the same states as an uninterrupted one, and ends bit-identical.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl.agents.base import Agent
from jaxrl.compilation import compiler_options
from jaxrl.distributed.mesh import make_mesh, replicate
from jaxrl.run import rundir
from jaxrl.run.checkpoint import (
    DEFAULT_CHECKPOINT_SECONDS,
    Checkpointer,
    latest_iteration,
)
from jaxrl.run.config_io import config_to_dict, key_to_json
from jaxrl.run.evaluation import eval_summary, evaluate
from jaxrl.run.plots import plot_curves
from jaxrl.run.progress import Progress
from jaxrl.run.sinks import CSVSink, MetricsChunk, Sink

# Chunks per run when the caller does not choose: often enough for a lively
# progress bar and frequent checkpoints, rarely enough that the host's work
# between chunks (a few ms to write rows and save a small state) stays noise.
DEFAULT_NUM_CHUNKS = 32


@dataclasses.dataclass(frozen=True)
class ChunkPlan:
    """How a run's iterations are cut into chunks of equal (compiled) length.

    The last chunk may have fewer active iterations; it runs the same compiled
    program with the surplus iterations switched off, so a run compiles once.
    """

    iterations: int
    chunk_iterations: int

    @property
    def num_chunks(self) -> int:
        return -(-self.iterations // self.chunk_iterations)

    def active_iterations(self, chunk_index: int) -> int:
        start = chunk_index * self.chunk_iterations
        return min(self.chunk_iterations, self.iterations - start)

    def chunks_after(self, iterations_done: int) -> range:
        """Indices of the chunks still to run once ``iterations_done`` have run."""
        if iterations_done == self.iterations:
            return range(self.num_chunks, self.num_chunks)
        if iterations_done % self.chunk_iterations or not 0 <= iterations_done < self.iterations:
            raise ValueError(
                f"{iterations_done} iterations done is not a chunk boundary of this run "
                f"({self.iterations} iterations in chunks of {self.chunk_iterations})"
            )
        return range(iterations_done // self.chunk_iterations, self.num_chunks)


def plan_chunks(
    total_steps: int, env_steps_per_step: int, chunk_iterations: int | None = None
) -> ChunkPlan:
    """``ceil(total_steps / env_steps_per_step)`` iterations in chunks of ``chunk_iterations``
    (default: about :data:`DEFAULT_NUM_CHUNKS` chunks)."""
    iterations = max(1, -(-total_steps // env_steps_per_step))
    if chunk_iterations is None:
        chunk_iterations = -(-iterations // DEFAULT_NUM_CHUNKS)
    return ChunkPlan(iterations, min(chunk_iterations, iterations))


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
      state: final state of every seed, stacked on a leading ``[seeds]`` axis.
      metrics: name -> ``[iterations, seeds]`` metrics of the iterations this call ran
        (a resumed call holds only those after the checkpoint).
      env_steps: ``[iterations]`` env steps per seed after each of those iterations.
      eval_returns: ``[seeds, eval_episodes]`` evaluation returns of the final policy.
      summary: the summary.json contents.
      out_dir: the run directory, if any.
    """

    state: Any
    metrics: dict[str, np.ndarray]
    env_steps: np.ndarray
    eval_returns: np.ndarray
    summary: dict[str, Any]
    out_dir: Path | None = None


def make_chunk_fn(agent: Agent, chunk_iterations: int):
    """``chunk(states, active) -> (states, metrics [chunk_iterations, seeds])``, jitted,
    running the first ``active`` iterations (the rest return zero metrics).

    The same agent and chunk length give the same jitted function, so a
    notebook that trains one agent again, or resumes it, does not recompile."""
    return _chunk_fn(agent.step, chunk_iterations)


@functools.lru_cache(maxsize=16)
def _chunk_fn(step, chunk_iterations: int):
    # Jitted so that its trace is cached: eval_shape below and the cond's
    # branch then trace the step once between them, not twice.
    vstep = jax.jit(jax.vmap(step))

    def chunk(states, active):
        metric_shapes = jax.eval_shape(vstep, states)[1]

        def skip(s):
            return s, jax.tree.map(lambda m: jnp.zeros(m.shape, m.dtype), metric_shapes)

        def body(s, i):
            # The predicate is one scalar for all seeds, so this is a real
            # branch: switched-off iterations cost nothing.
            return jax.lax.cond(i < active, vstep, skip, s)

        return jax.lax.scan(body, states, jnp.arange(chunk_iterations))

    # Donating the states lets XLA update them in place.
    return jax.jit(chunk, donate_argnums=0, compiler_options=compiler_options("train"))


def make_init_fn(agent: Agent, seeds: int, hparams: Any = None):
    """``init(keys [seeds], hparams) -> stacked states``, jitted. ``hparams`` is None
    (the config's), one set for all seeds or, with a leading ``[seeds]`` axis on
    every leaf, one set per seed."""
    leaves = jax.tree.leaves(hparams)
    per_seed = bool(leaves) and all(jnp.ndim(x) >= 1 and jnp.shape(x)[0] == seeds for x in leaves)
    return _init_fn(agent.init, per_seed)


@functools.lru_cache(maxsize=16)
def _init_fn(init, per_seed_hparams: bool):
    def init_all(keys, hparams):
        if hparams is None:
            return jax.vmap(init)(keys)
        return jax.vmap(init, in_axes=(0, 0 if per_seed_hparams else None))(keys, hparams)

    return jax.jit(init_all, compiler_options=compiler_options("init"))


def train(
    agent: Agent,
    key: jax.Array,
    total_steps: int,
    *,
    seeds: int = 1,
    out_dir: str | os.PathLike | None = None,
    sinks: Sequence[Sink] = (),
    chunk_iterations: int | None = None,
    eval_episodes: int = 10,
    progress: bool = True,
    checkpoint_every_seconds: float = DEFAULT_CHECKPOINT_SECONDS,
    resume: bool = False,
    force: bool = False,
    hparams: Any = None,
    env_id: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> TrainResult:
    """Trains ``seeds`` independent copies of ``agent`` for ``total_steps`` env steps each.

    Seed ``i`` starts from ``jax.random.split(key, seeds)[i]``. With ``out_dir``
    the run writes config.json, metrics.csv, checkpoints/, summary.json and
    curve.png there; ``resume=True`` continues it from its latest checkpoint
    (with the same agent, key and settings) and ends bit-identical to a run
    that was never interrupted. ``sinks`` receive the metrics as well.
    ``env_id``/``env_kwargs`` are recorded in config.json so the agent can be
    rebuilt (``jaxrl eval``); ``env_id`` defaults to the env's ``name``.
    Checkpoints are taken at chunk boundaries at most every
    ``checkpoint_every_seconds`` (0: after every chunk) and after the last chunk.
    """
    _check_arguments(
        total_steps, seeds, eval_episodes, chunk_iterations, checkpoint_every_seconds, resume, force
    )
    if resume and out_dir is None:
        raise ValueError("resume=True needs the out_dir of the run to continue")
    plan = plan_chunks(total_steps, agent.env_steps_per_step, chunk_iterations)
    run_config = describe_run(
        agent, key, total_steps, seeds, plan, eval_episodes, hparams, env_id, env_kwargs
    )
    out_dir = None if out_dir is None else Path(out_dir)
    # Several processes (jax.distributed): all run the same program, process 0
    # alone writes the run directory; the key is placed on every device so the
    # jitted init and step see one global array.
    primary = jax.process_index() == 0
    if jax.process_count() > 1:
        key = replicate(key, make_mesh())
    # Every check happens before anything is compiled or written.
    start_iteration = 0
    if resume:
        rundir.check_resumable(out_dir, run_config)
        start_iteration = latest_iteration(out_dir / rundir.CHECKPOINTS) or 0
    elif out_dir is not None and primary:
        rundir.check_new_run(out_dir, force=force)
    try:
        remaining_chunks = plan.chunks_after(start_iteration)
    except ValueError as e:
        raise rundir.RunDirError(f"cannot resume {out_dir}: {e}") from None

    keys = jax.random.split(key, seeds)
    init_fn = make_init_fn(agent, seeds, hparams)
    abstract_state = jax.eval_shape(init_fn, keys, hparams)
    compiled = compile_run(
        agent, plan, init_fn, (keys, hparams), abstract_state, need_init=start_iteration == 0
    )

    if out_dir is not None and not resume and primary:
        rundir.start_new_run(out_dir, run_config, force=force)
    writes = out_dir is not None and primary
    all_sinks = ([CSVSink(out_dir / rundir.METRICS_CSV)] if writes else []) + list(
        sinks if primary else ()
    )
    checkpointer = Checkpointer(out_dir / rundir.CHECKPOINTS) if out_dir is not None else None
    bar = Progress(
        plan.iterations * agent.env_steps_per_step,
        start_iteration * agent.env_steps_per_step,
        seeds,
        progress and primary,
    )
    try:
        if start_iteration:
            state = checkpointer.restore(start_iteration, abstract_state)
        else:
            state = compiled.init(keys, hparams)
        resume_env_steps = start_iteration * agent.env_steps_per_step if resume else None
        for sink in all_sinks:
            sink.open(compiled.metric_names, seeds, resume_env_steps)
        state, history, train_seconds = _run_chunks(
            compiled.chunk,
            state,
            plan,
            remaining_chunks,
            agent.env_steps_per_step,
            all_sinks,
            checkpointer,
            checkpoint_every_seconds,
            bar,
        )
    finally:
        bar.close()
        for sink in all_sinks:
            sink.close()
        if checkpointer is not None:
            checkpointer.close()

    eval_start = time.perf_counter()
    eval_returns = (
        evaluate(agent, state, key, eval_episodes) if eval_episodes else np.zeros((seeds, 0))
    )
    eval_seconds = time.perf_counter() - eval_start

    steps_run = (plan.iterations - start_iteration) * agent.env_steps_per_step * seeds
    summary = {
        "algorithm": run_config["algorithm"],
        "env_id": run_config["env_id"],
        "seeds": seeds,
        **eval_summary(eval_returns),
        "env_steps": plan.iterations * agent.env_steps_per_step,
        "total_env_steps": plan.iterations * agent.env_steps_per_step * seeds,
        "iterations": plan.iterations,
        "env_steps_per_second": steps_run / train_seconds if train_seconds > 0 else None,
        "compile_seconds": compiled.seconds,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "resumed_from_iteration": start_iteration if resume else None,
    }
    if writes:
        rundir.write_json(out_dir / rundir.SUMMARY, summary)
        plot_curves(
            out_dir / rundir.METRICS_CSV, out_dir / rundir.CURVE, title=_plot_title(run_config)
        )
    return TrainResult(
        state=state,
        metrics=_concatenate(history, compiled.metric_names),
        env_steps=np.concatenate([c.env_steps for c in history])
        if history
        else np.zeros((0,), np.int64),
        eval_returns=eval_returns,
        summary=summary,
        out_dir=out_dir,
    )


@dataclasses.dataclass(frozen=True)
class CompiledRun:
    chunk: Any
    init: Any  # None when the run resumes from a checkpoint
    metric_names: list[str]
    lower_seconds: float  # tracing and lowering to XLA, part of ``seconds``
    seconds: float


def compile_run(agent, plan, init_fn, init_args, abstract_state, need_init: bool = True) -> CompiledRun:
    """Compiles a run's programs ahead of time, so that compile time is
    measured apart from training: the chunk of ``plan.chunk_iterations``
    iterations and, with ``need_init``, ``init_fn`` for ``init_args``."""
    started = time.perf_counter()
    lowered = make_chunk_fn(agent, plan.chunk_iterations).lower(
        abstract_state, jax.ShapeDtypeStruct((), jnp.int32)
    )
    lowered_init = init_fn.lower(*init_args) if need_init else None
    lowered_at = time.perf_counter()
    chunk = lowered.compile()
    init = lowered_init.compile() if need_init else None
    return CompiledRun(
        chunk, init, list(lowered.out_info[1]), lowered_at - started, time.perf_counter() - started
    )


def _run_chunks(
    chunk_fn,
    state,
    plan,
    chunk_indices,
    steps_per_iteration,
    sinks,
    checkpointer,
    checkpoint_every_seconds,
    bar,
):
    """Runs the chunks; between them writes metrics, updates the bar, checkpoints.
    Returns the final state, the metrics of each chunk and the seconds spent running chunks."""
    history: list[MetricsChunk] = []
    train_seconds = 0.0
    last_checkpoint = time.monotonic()
    for chunk_index in chunk_indices:
        iteration = chunk_index * plan.chunk_iterations
        active = plan.active_iterations(chunk_index)
        started = time.perf_counter()
        state, metrics = chunk_fn(state, np.int32(active))
        jax.block_until_ready((state, metrics))
        seconds = time.perf_counter() - started
        train_seconds += seconds

        metrics = {
            name: _per_seed(values[:active]) for name, values in jax.device_get(metrics).items()
        }
        env_steps = (iteration + 1 + np.arange(active)) * steps_per_iteration
        chunk = MetricsChunk(env_steps=env_steps, metrics=metrics)
        history.append(chunk)
        # Rows first, checkpoint second: a kill in between leaves rows past the
        # checkpoint, which resume drops; never a gap.
        for sink in sinks:
            sink.write(chunk)
        bar.update(active * steps_per_iteration, seconds, metrics)
        is_last = chunk_index == plan.num_chunks - 1
        due = time.monotonic() - last_checkpoint >= checkpoint_every_seconds
        if checkpointer is not None and (is_last or due):
            checkpointer.save(iteration + active, state)
            last_checkpoint = time.monotonic()
    return state, history, train_seconds


def _per_seed(values: np.ndarray) -> np.ndarray:
    """``[n, seeds]`` host copy of a metric; per-env arrays are averaged."""
    values = np.asarray(values)
    return values.reshape(values.shape[:2] + (-1,)).mean(axis=2) if values.ndim > 2 else values


def _plot_title(run_config: dict[str, Any]) -> str:
    seeds = run_config["seeds"]
    return f"{run_config['algorithm']} on {run_config['env_id']} ({seeds} seed{'s' if seeds > 1 else ''})"


def describe_run(
    agent: Agent,
    key: jax.Array,
    total_steps: int,
    seeds: int,
    plan: ChunkPlan,
    eval_episodes: int,
    hparams: Any = None,
    env_id: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The config.json contents: everything needed to rebuild the agent and
    repeat or continue the run."""
    import jaxrl

    return {
        "algorithm": agent.name,
        "env_id": env_id
        if env_id is not None
        else getattr(agent.env, "name", type(agent.env).__name__),
        "env_kwargs": dict(env_kwargs or {}),
        "agent_config": config_to_dict(agent.config),
        "seeds": seeds,
        "total_steps": total_steps,
        "iterations": plan.iterations,
        "chunk_iterations": plan.chunk_iterations,
        "env_steps_per_step": agent.env_steps_per_step,
        "key": key_to_json(key),
        "hparams": _hparams_to_json(hparams),
        "eval_episodes": eval_episodes,
        "versions": {"jaxrl": jaxrl.__version__, "jax": jax.__version__},
    }


def _hparams_to_json(hparams: Any) -> dict[str, Any] | None:
    if hparams is None:
        return None
    flat, _ = jax.tree_util.tree_flatten_with_path(hparams)
    return {jax.tree_util.keystr(path): np.asarray(leaf).tolist() for path, leaf in flat}


def _concatenate(history: list[MetricsChunk], names: list[str]) -> dict[str, np.ndarray]:
    if not history:
        return {}
    return {name: np.concatenate([c.metrics[name] for c in history]) for name in names}


def _check_arguments(
    total_steps, seeds, eval_episodes, chunk_iterations, checkpoint_every_seconds, resume, force
):
    if not checkpoint_every_seconds >= 0:
        raise ValueError(f"checkpoint_every_seconds must be >= 0, got {checkpoint_every_seconds!r}")
    for name, value, least in (
        ("total_steps", total_steps, 1),
        ("seeds", seeds, 1),
        ("eval_episodes", eval_episodes, 0),
    ):
        if not isinstance(value, (int, np.integer)) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    if chunk_iterations is not None and (
        not isinstance(chunk_iterations, (int, np.integer)) or chunk_iterations < 1
    ):
        raise ValueError(f"chunk_iterations must be a positive integer, got {chunk_iterations!r}")
    if resume and force:
        raise ValueError(
            "resume and force contradict each other: resume continues a run, force replaces it"
        )
