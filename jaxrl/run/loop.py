"""The chunked training loop.

A run of ``n`` iterations over ``seeds`` seeds is ``lax.scan`` of
``agent.step`` over every seed (:mod:`jaxrl.run.seeds`: mapped and split over
the CPU cores, or vmapped on an accelerator), cut into chunks of ``chunk_iterations``: one jitted function
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
from jax.sharding import PartitionSpec as P

from jaxrl.agents.base import MAX_INT, MAX_TOTAL_STEPS, Agent, check_schedule_span
from jaxrl.compilation import compiler_options, use_persistent_cache
from jaxrl.mesh import make_mesh, replicate
from jaxrl.run import preemption, rundir
from jaxrl.run.checkpoint import DEFAULT_CHECKPOINT_SECONDS
from jaxrl.run.config_io import config_to_dict, key_to_json
from jaxrl.run.evaluation import (
    best_evaluation,
    eval_summary,
    evaluate,
    evaluate_with_keys,
    evaluation_chunk,
    evaluation_due,
    periodic_evaluation_keys,
)
from jaxrl.run.seeds import ONE_DEVICE, SEEDS_AXIS, SeedPlacement, over_seeds, place_seeds, seeds_in_sequence
from jaxrl.run.sinks import MetricsChunk, Sink
from jaxrl.run.writer import RunWriter

# Bounds of the run's counts: far above any real run, low enough that a typo
# (1e20) is refused at once instead of failing deep inside XLA.
MAX_SEEDS = 65_536
MAX_EVAL_EPISODES = 1_000_000


class TrainingDiverged(RuntimeError):
    """A metric of a chunk was NaN or infinite: training stopped there.

    The checkpoint taken before that chunk stays the latest; ``failure`` is
    what summary.json records (metric, seed, env_steps, value)."""

    def __init__(self, failure: dict[str, Any], out_dir: Path | None, last_checkpoint: int | None):
        self.failure = failure
        where = (
            f"; the latest checkpoint ({last_checkpoint} iterations) is the last good state"
            if out_dir is not None and last_checkpoint
            else ""
        )
        super().__init__(
            f"training diverged: metric {failure['metric']!r} is {failure['value']} "
            f"for seed {failure['seed']} at env step {failure['env_steps']}{where}"
        )


def first_non_finite(chunk: MetricsChunk) -> dict[str, Any] | None:
    """The first (iteration, then seed, then metric name) non-finite metric
    value of ``chunk``, as ``{metric, seed, env_steps, value, row}``; None if all are finite."""
    first = None
    for name, values in chunk.metrics.items():
        bad = np.argwhere(~np.isfinite(np.asarray(values, dtype=np.float64)))
        if len(bad):
            row, seed = (int(i) for i in bad[0])
            if first is None or (row, seed, name) < (first["row"], first["seed"], first["metric"]):
                first = {
                    "metric": name,
                    "seed": seed,
                    "env_steps": int(chunk.env_steps[row]),
                    "value": str(float(values[row, seed])),
                    "row": row,
                }
    return first


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
      eval_env_steps: ``[n]`` env steps of every evaluation (with ``eval_every``;
        a resumed call includes those before its checkpoint), the last being the final one.
      eval_curve: ``[n, seeds]`` mean evaluation return at each of them.
    """

    state: Any
    metrics: dict[str, np.ndarray]
    env_steps: np.ndarray
    eval_returns: np.ndarray
    summary: dict[str, Any]
    out_dir: Path | None = None
    eval_env_steps: np.ndarray | None = None
    eval_curve: np.ndarray | None = None


def make_chunk_fn(agent: Agent, chunk_iterations: int, placement: SeedPlacement = ONE_DEVICE):
    """``chunk(states, active) -> (states, metrics [chunk_iterations, seeds])``, jitted,
    running the first ``active`` iterations (the rest return zero metrics), with
    the states where ``placement`` puts them (:mod:`jaxrl.run.seeds`).

    The same agent, chunk length and placement give the same jitted function,
    so a notebook that trains one agent again, or resumes it, does not recompile."""
    return _chunk_fn(agent.step, chunk_iterations, placement)


def _active_iterations(step, chunk_iterations: int):
    """``(state, active) -> (state, metrics [chunk_iterations, ...])`` of one
    state: ``chunk_iterations`` calls of ``step``, the first ``active`` real."""
    # Jitted so that its trace is cached: eval_shape below and the cond's
    # branch then trace the step once between them, not twice.
    step = jax.jit(step)

    def run(state, active):
        metric_shapes = jax.eval_shape(step, state)[1]

        def skip(s):
            return s, jax.tree.map(lambda m: jnp.zeros(m.shape, m.dtype), metric_shapes)

        def body(s, i):
            # The predicate is one scalar for all seeds, so this is a real
            # branch: switched-off iterations cost nothing.
            return jax.lax.cond(i < active, step, skip, s)

        return jax.lax.scan(body, state, jnp.arange(chunk_iterations))

    return run


@functools.lru_cache(maxsize=16)
def _chunk_fn(step, chunk_iterations: int, placement: SeedPlacement):
    if seeds_in_sequence():
        # Each seed runs its whole chunk in turn (jaxrl.run.seeds says why).
        per_seed = _active_iterations(step, chunk_iterations)

        def chunk(states, active):
            states, metrics = over_seeds(per_seed, (0, None))(states, active)
            return states, jax.tree.map(lambda m: jnp.swapaxes(m, 0, 1), metrics)

        chunk = placement.shard(
            chunk, in_specs=(P(SEEDS_AXIS), P()), out_specs=(P(SEEDS_AXIS), P(None, SEEDS_AXIS)))
    else:
        chunk = _active_iterations(jax.vmap(step), chunk_iterations)

    # Donating the states lets XLA update them in place.
    if placement.mesh is None:
        return jax.jit(chunk, donate_argnums=0, compiler_options=compiler_options("train"))
    return jax.jit(
        chunk, donate_argnums=0, compiler_options=compiler_options("train"),
        in_shardings=(placement.split(), placement.whole()),
        out_shardings=(placement.split(), placement.split(seeds_axis=1)),
    )


def make_init_fn(agent: Agent, seeds: int, hparams: Any = None,
                 placement: SeedPlacement = ONE_DEVICE):
    """``init(keys [seeds], hparams) -> stacked states``, jitted. ``hparams`` is None
    (the config's), one set for all seeds or, with a leading ``[seeds]`` axis on
    every leaf, one set per seed. The states come out where ``placement`` puts them."""
    leaves = jax.tree.leaves(hparams)
    per_seed = bool(leaves) and all(jnp.ndim(x) >= 1 and jnp.shape(x)[0] == seeds for x in leaves)
    return _init_fn(agent.init, per_seed, placement)


@functools.lru_cache(maxsize=16)
def _init_fn(init, per_seed_hparams: bool, placement: SeedPlacement):
    def init_all(keys, hparams):
        if hparams is None:
            return over_seeds(init)(keys)
        return over_seeds(init, (0, 0 if per_seed_hparams else None))(keys, hparams)

    if placement.mesh is None:
        return jax.jit(init_all, compiler_options=compiler_options("init"))
    init_all = placement.shard(
        init_all, in_specs=(P(SEEDS_AXIS), P(SEEDS_AXIS) if per_seed_hparams else P()),
        out_specs=P(SEEDS_AXIS))
    return jax.jit(init_all, compiler_options=compiler_options("init"),
                   out_shardings=placement.split())


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
    eval_every: int | None = None,
    progress: bool = True,
    checkpoint_every_seconds: float = DEFAULT_CHECKPOINT_SECONDS,
    resume: bool = False,
    force: bool = False,
    hparams: Any = None,
    env_id: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
    compile_cache: bool = True,
    seed_devices: int | None = None,
) -> TrainResult:
    """Trains ``seeds`` independent copies of ``agent`` for ``total_steps`` env steps each.

    Seed ``i`` starts from ``jax.random.split(key, seeds)[i]``. With ``out_dir``
    the run writes config.json, metrics.csv, checkpoints/, summary.json and
    curve.png there; ``resume=True`` continues it from its latest checkpoint
    (with the same agent, key and settings) and ends bit-identical to a run
    that was never interrupted. ``sinks`` receive the metrics as well.
    ``env_id``/``env_kwargs`` are recorded in config.json so the agent can be
    rebuilt (``jaxrl eval``); ``env_id`` defaults to the env's ``name``.
    ``eval_episodes`` deterministic episodes per seed evaluate the final policy;
    with ``eval_every`` also the policy at the first chunk boundary at or after
    every multiple of ``eval_every`` env steps (``chunk_iterations`` sets how
    close), written to eval.csv, the sinks and the plot, with the best of them
    in summary.json (``best_eval_return``/``best_eval_step`` per seed).
    Evaluation draws its own keys from ``key`` and leaves the states as they
    are, so training and its resume stay bit-exact.
    Checkpoints are taken at chunk boundaries at most every
    ``checkpoint_every_seconds`` (0: after every chunk) and after the last chunk.
    A stop request (SIGTERM under :func:`jaxrl.run.preemption.stop_on_signals`,
    or :func:`~jaxrl.run.preemption.request_stop`) checkpoints at the next chunk
    boundary and raises :class:`~jaxrl.run.preemption.Preempted`.
    With ``compile_cache`` (the default) compiled programs are kept on disk
    (:func:`jaxrl.compilation.use_persistent_cache`), so a relaunch of the same
    configuration loads them instead of compiling.
    On the CPU the seeds split over the process's host devices, one per core
    (:mod:`jaxrl.cpu`, :mod:`jaxrl.run.seeds`); ``seed_devices`` caps how many
    (1: every seed on one device). Each seed's result is the same bits
    whatever the split.
    """
    check_run_arguments(
        agent, total_steps, seeds, eval_episodes, chunk_iterations, checkpoint_every_seconds,
        resume, force, hparams, eval_every=eval_every,
    )
    placement = place_seeds(seeds, agent, seed_devices)
    use_persistent_cache(compile_cache)
    if resume and out_dir is None:
        raise ValueError("resume=True needs the out_dir of the run to continue")
    plan = plan_chunks(total_steps, agent.env_steps_per_step, chunk_iterations)
    run_config = describe_run(
        agent, key, total_steps, seeds, plan, eval_episodes, hparams, env_id, env_kwargs,
        eval_every=eval_every,
    )
    out_dir = None if out_dir is None else rundir.out_path(out_dir)
    # Processes of one job given different runs would wait on each other for
    # ever: every one of them refuses here, before anything runs.
    sync = preemption.RunSync.start(run_config, out_dir, resume=resume, force=force)
    # Several processes (jax.distributed): all run the same program, process 0
    # alone writes the run directory; the key is placed on every device so the
    # jitted init and step see one global array.
    if jax.process_count() > 1:
        key = replicate(key, make_mesh())
    writer = RunWriter(
        out_dir, run_config, resume=resume, force=force, primary=jax.process_index() == 0,
        sinks=sinks,
    )
    # Every check happens before anything is compiled or written.
    writer.check()
    keys = placement.place(jax.random.split(key, seeds))
    init_fn = make_init_fn(agent, seeds, hparams, placement)
    history: list[MetricsChunk] = []
    periodic = (
        PeriodicEvaluation(agent, key, eval_every, eval_episodes, writer) if eval_every else None
    )
    try:
        state, compiled, start_iteration, train_seconds = _train_in_chunks(
            agent, plan, init_fn, (keys, hparams), writer, sync, history,
            progress=progress, checkpoint_every_seconds=checkpoint_every_seconds,
            periodic=periodic, placement=placement,
        )
        eval_start = time.perf_counter()
        eval_returns = (
            evaluate(agent, state, key, eval_episodes) if eval_episodes else np.zeros((seeds, 0))
        )
        if periodic is not None:
            writer.write_evaluation(
                evaluation_chunk(plan.iterations * agent.env_steps_per_step, eval_returns)
            )
        eval_seconds = time.perf_counter() - eval_start
        summary = _completed_summary(
            run_config, plan, compiled, eval_returns, train_seconds,
            eval_seconds=eval_seconds + (periodic.seconds if periodic else 0.0),
            resumed_from=start_iteration if resume else None,
        )
        # Where the seeds ran is a fact of this launch, not of the run's config.
        summary["seed_devices"] = placement.devices
        eval_env_steps, eval_curve = writer.evaluations()
        if periodic is not None:
            summary.update(best_evaluation(eval_env_steps, eval_curve))
        writer.finish(summary, _plot_title(run_config))
    finally:
        writer.close()
    return TrainResult(
        state=state,
        metrics=_concatenate(history, compiled.metric_names),
        env_steps=np.concatenate([c.env_steps for c in history])
        if history
        else np.zeros((0,), np.int64),
        eval_returns=eval_returns,
        summary=summary,
        out_dir=out_dir,
        eval_env_steps=eval_env_steps if periodic is not None else None,
        eval_curve=eval_curve if periodic is not None else None,
    )


class PeriodicEvaluation:
    """Evaluates every seed at the chunk boundaries that cross a multiple of
    ``eval_every`` env steps and writes each point through the run writer.

    The keys depend only on the run key and the iteration count, and the
    states are only read, so evaluating changes neither training nor a resume.
    """

    def __init__(self, agent: Agent, run_key, eval_every: int, eval_episodes: int, writer):
        self.agent = agent
        self.run_key, self.eval_every, self.episodes = run_key, eval_every, eval_episodes
        self.steps_per_iteration = agent.env_steps_per_step
        self.writer = writer
        self.seconds = 0.0

    def after_chunk(self, state, iterations_before: int, iterations_after: int, last: bool):
        """Evaluates ``state`` if this chunk crossed an evaluation point (the
        last chunk's is the final evaluation, which the caller makes)."""
        steps_after = iterations_after * self.steps_per_iteration
        if last or not evaluation_due(
            iterations_before * self.steps_per_iteration, steps_after, self.eval_every
        ):
            return
        started = time.perf_counter()
        seeds = jax.tree.leaves(state)[0].shape[0]
        keys = periodic_evaluation_keys(self.run_key, seeds, iterations_after)
        returns = evaluate_with_keys(self.agent, state, keys, self.episodes)
        self.writer.write_evaluation(evaluation_chunk(steps_after, returns))
        self.seconds += time.perf_counter() - started


def _train_in_chunks(
    agent, plan, init_fn, init_args, writer: RunWriter, sync, history, *, progress,
    checkpoint_every_seconds, periodic=None, placement: SeedPlacement = ONE_DEVICE,
):
    """Restores (on resume) or initialises the states, compiles, and runs the
    chunks still to run, writing through ``writer``; ``(state, compiled run,
    iterations done before, seconds in chunks)``. A divergence is recorded in
    summary.json before :class:`TrainingDiverged` propagates."""
    steps_per_iteration = agent.env_steps_per_step
    seeds = len(init_args[0])  # one key per seed
    abstract_state = jax.eval_shape(init_fn, *init_args)
    # Restoring compiles nothing, so a damaged run is reported before any compile.
    start_iteration, restored_state = (
        writer.restore_latest(placement.restore_target(abstract_state, agent)) if writer.resume else (0, None)
    )
    try:
        remaining_chunks = plan.chunks_after(start_iteration)
    except ValueError as e:
        raise rundir.RunDirError(f"cannot resume {writer.path}: {e}") from None
    compiled = compile_run(
        agent, plan, init_fn, init_args, abstract_state, need_init=start_iteration == 0,
        placement=placement,
    )
    writer.start()
    writer.show_progress(
        plan.iterations * steps_per_iteration,
        start_iteration * steps_per_iteration,
        seeds,
        progress,
    )
    try:
        state = placement.place(restored_state) if start_iteration else compiled.init(*init_args)
        resume_env_steps = start_iteration * steps_per_iteration if writer.resume else None
        writer.open_metrics(compiled.metric_names, seeds, resume_env_steps)
        if periodic is not None:
            writer.open_evaluations(seeds, resume_env_steps)
        state, train_seconds = _run_chunks(
            sync.watched(compiled.chunk), state, plan, remaining_chunks, steps_per_iteration,
            writer, checkpoint_every_seconds, history, sync=sync, periodic=periodic,
        )
    except TrainingDiverged as e:
        writer.write_summary(_failure_summary(writer.run_config, plan, compiled, history, e))
        raise
    return state, compiled, start_iteration, train_seconds


def _completed_summary(
    run_config, plan, compiled, eval_returns, train_seconds, *, eval_seconds, resumed_from
) -> dict[str, Any]:
    """summary.json of a run that ran to its end."""
    seeds = run_config["seeds"]
    env_steps = plan.iterations * run_config["env_steps_per_step"]
    iterations_run = plan.iterations - (resumed_from or 0)
    steps_run = iterations_run * run_config["env_steps_per_step"] * seeds
    return {
        "algorithm": run_config["algorithm"],
        "env_id": run_config["env_id"],
        "seeds": seeds,
        **eval_summary(eval_returns),
        "env_steps": env_steps,
        "total_env_steps": env_steps * seeds,
        "iterations": plan.iterations,
        "env_steps_per_second": steps_run / train_seconds if train_seconds > 0 else None,
        "compile_seconds": compiled.seconds,
        # Tracing and lowering, part of compile_seconds: the part a compilation
        # cache cannot skip.
        "lower_seconds": compiled.lower_seconds,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "resumed_from_iteration": resumed_from,
        "status": "completed",
    }


@dataclasses.dataclass(frozen=True)
class CompiledRun:
    chunk: Any
    init: Any  # None when the run resumes from a checkpoint
    metric_names: list[str]
    lower_seconds: float  # tracing and lowering to XLA, part of ``seconds``
    seconds: float


def compile_run(agent, plan, init_fn, init_args, abstract_state, need_init: bool = True,
                placement: SeedPlacement = ONE_DEVICE) -> CompiledRun:
    """Compiles a run's programs ahead of time, so that compile time is
    measured apart from training: the chunk of ``plan.chunk_iterations``
    iterations and, with ``need_init``, ``init_fn`` for ``init_args``."""
    started = time.perf_counter()
    lowered = make_chunk_fn(agent, plan.chunk_iterations, placement).lower(
        abstract_state, jax.ShapeDtypeStruct((), jnp.int32)
    )
    lowered_init = init_fn.lower(*init_args) if need_init else None
    lowered_at = time.perf_counter()
    chunk = lowered.compile()
    init = lowered_init.compile() if need_init else None
    return CompiledRun(
        chunk, init, list(lowered.out_info[1]), lowered_at - started, time.perf_counter() - started
    )


def _failure_summary(run_config, plan, compiled, history, error) -> dict[str, Any]:
    """summary.json of a run stopped by :class:`TrainingDiverged`."""
    done = [int(c.env_steps[-1]) for c in history]
    return {
        "algorithm": run_config["algorithm"],
        "env_id": run_config["env_id"],
        "seeds": run_config["seeds"],
        "env_steps": done[-1] if done else 0,
        "iterations": plan.iterations,
        "compile_seconds": compiled.seconds,
        "status": "diverged",
        "failure": {k: v for k, v in error.failure.items() if k != "row"},
        "error": str(error),
    }


def _run_chunks(
    chunk_fn,
    state,
    plan,
    chunk_indices,
    steps_per_iteration,
    writer: RunWriter,
    checkpoint_every_seconds,
    history: list[MetricsChunk],
    *,
    sync: preemption.RunSync,
    periodic: PeriodicEvaluation | None = None,
):
    """Runs the chunks; between them writes metrics, updates the bar, checkpoints.
    Appends the metrics of each chunk to ``history``; returns the final state and
    the seconds spent running chunks. Raises :class:`TrainingDiverged` at the first
    non-finite metric, after writing the rows up to it and before checkpointing."""
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

        chunk = _host_chunk(metrics, iteration, active, steps_per_iteration)
        failure = first_non_finite(chunk)
        if failure is not None:
            chunk = _first_rows(chunk, failure["row"] + 1)
        history.append(chunk)
        # Rows first, checkpoint second: a kill in between leaves rows past the
        # checkpoint, which resume drops; never a gap.
        writer.write_metrics(chunk)
        if failure is not None:
            raise TrainingDiverged(failure, writer.path, writer.last_saved)
        writer.advance(active * steps_per_iteration, seconds, chunk.metrics)
        is_last = chunk_index == plan.num_chunks - 1
        # Evaluated before the checkpoint, so a resume never repeats a point.
        if periodic is not None:
            periodic.after_chunk(state, iteration, iteration + active, is_last)
        due = time.monotonic() - last_checkpoint >= checkpoint_every_seconds
        boundary = sync.at_boundary(chunk_index, due)  # the same on every process
        if writer.path is not None and (is_last or boundary.checkpoint):
            writer.checkpoint(iteration + active, state)
            last_checkpoint = time.monotonic()
        if boundary.stop is not None:
            raise preemption.Preempted(boundary.stop, iteration + active, writer.path is not None)
    return state, train_seconds


def _host_chunk(metrics, iteration: int, active: int, steps_per_iteration: int) -> MetricsChunk:
    """The first ``active`` iterations' metrics of a chunk that started at
    ``iteration``, as ``[active, seeds]`` host arrays with their env steps."""
    metrics = {
        name: _per_seed(values[:active]) for name, values in jax.device_get(metrics).items()
    }
    env_steps = (iteration + 1 + np.arange(active)) * steps_per_iteration
    return MetricsChunk(env_steps=env_steps, metrics=metrics)


def _first_rows(chunk: MetricsChunk, n: int) -> MetricsChunk:
    return MetricsChunk(chunk.env_steps[:n], {k: v[:n] for k, v in chunk.metrics.items()})


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
    *,
    eval_every: int | None = None,
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
        "eval_every": eval_every,
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


def check_run_arguments(
    agent,
    total_steps,
    seeds=1,
    eval_episodes=0,
    chunk_iterations=None,
    checkpoint_every_seconds=0.0,
    resume=False,
    force=False,
    hparams=None,
    *,
    eval_every=None,
) -> None:
    """ValueError naming the first argument of :func:`train` that is not allowed."""
    if not (isinstance(checkpoint_every_seconds, (int, float)) and 0 <= checkpoint_every_seconds < float("inf")):
        raise ValueError(
            f"checkpoint_every_seconds must be a finite number >= 0, got {checkpoint_every_seconds!r}"
        )
    for name, value, least, most in (
        ("total_steps", total_steps, 1, MAX_TOTAL_STEPS),
        ("seeds", seeds, 1, MAX_SEEDS),
        ("eval_episodes", eval_episodes, 0, MAX_EVAL_EPISODES),
        ("chunk_iterations", chunk_iterations, 1, MAX_INT),
        ("eval_every", eval_every, 1, MAX_TOTAL_STEPS),
    ):
        if name in ("chunk_iterations", "eval_every") and value is None:
            continue
        if (
            not isinstance(value, (int, np.integer))
            or isinstance(value, bool)
            or not least <= value <= most
        ):
            raise ValueError(f"{name} must be an integer in [{least}, {most}], got {value!r}")
    if eval_every is not None and eval_episodes == 0:
        raise ValueError(
            f"eval_every={eval_every} needs eval_episodes >= 1, got eval_episodes=0 "
            "(eval_every=None switches periodic evaluation off)"
        )
    # Imported here: importing jaxrl.envs starts a JAX backend, and
    # jax.distributed must be initialised first (multihost imports this module).
    from jaxrl.envs.evaluate import step_limit

    if eval_episodes and getattr(agent, "env", None) is not None and step_limit(agent.env, agent.env_params) is None:
        raise ValueError(
            f"eval_episodes={eval_episodes} needs an environment whose episodes end within a known "
            f"number of steps, and {getattr(agent.env, 'name', type(agent.env).__name__)} declares none: "
            "give it a time limit, or pass eval_episodes=0"
        )
    iterations = plan_chunks(total_steps, agent.env_steps_per_step).iterations
    if iterations > MAX_INT:
        raise ValueError(
            f"total_steps={total_steps} is {iterations} iterations of "
            f"{agent.env_steps_per_step} env steps; at most {MAX_INT} iterations are allowed"
        )
    check_schedule_span(agent.config, total_steps)
    for path, leaf in jax.tree_util.tree_flatten_with_path(hparams)[0]:
        if not np.all(np.isfinite(np.asarray(leaf, dtype=np.float64))):
            raise ValueError(
                f"hparams{jax.tree_util.keystr(path)}={np.asarray(leaf).tolist()!r} is invalid: "
                "expected finite numbers"
            )
    rundir.check_mode(resume=resume, force=force)
