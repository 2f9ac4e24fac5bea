"""Asynchronous IMPALA (the "Sebulba" shape): actor threads and a learner thread.

::

    actor 0 ──┐   Trajectory [T, B] + behaviour log-probs + parameter version
    actor 1 ──┼──► bounded queue ──► learner: pop k, concatenate along B,
    ...     ──┘                      V-trace update (data-parallel over a mesh),
         ▲                           publish (params, version + 1)
         └──────── ParamStore (lock) ◄──────┘

Each actor thread steps its own batch of environments — a gymnax env jitted
on its device, or a Gymnasium env on the host (:mod:`jaxrl.envs.gymnasium_env`,
env ids ``gymnasium:<id>`` or ``envpool:<task>``) — with the parameters it last pulled, and never
waits for the learner except when the queue is full. The learner reuses
IMPALA's network and update (:func:`jaxrl.agents.impala.make_learner`): the
V-trace correction uses the behaviour log-probs stored with each trajectory,
and the policy lag of a trajectory is the learner's version minus the
version that acted.

Recurrent cores (``core`` of ``lstm`` or ``gru``) follow on-device IMPALA
(see :mod:`jaxrl.agents.impala`): each actor keeps its envs' core state
between rollouts (a gymnax actor beside the env state on its device, a host
actor between its per-step policy calls), resets it where an episode ends,
and every trajectory carries the state it started from. That state, like the
actions, belongs to the behaviour parameters the actor ran with, so it is as
stale as the trajectory's policy lag; the learner replays the trajectory from
it with its own parameters. V-trace corrects for the actions, the start
state's staleness is left uncorrected, and the actors' states are never
recomputed with newer parameters. The learner's batch is split along
environments, start states with them.

Checkpoints hold the learner's parameters and optimiser state only: a run
started from one has actors on fresh environments, whose core states start
at zeros with them.

``AsyncConfig(synchronous=True)`` is the A2C-shaped baseline: every actor
waits for the parameters published after its last trajectory was consumed,
so every trajectory is on-policy (lag 0) and actors and learner take turns.

The actor threads live in :mod:`jaxrl.distributed.actors`, the learner's
loop in :mod:`jaxrl.distributed.learner`; this module starts them and writes
the run through :class:`jaxrl.run.writer.RunWriter`, as ``jaxrl.run.train``
does.

Robustness: all threads share one stop event. An exception in any thread
stops the run and is re-raised in the calling thread once every thread has
been joined; queue puts/gets and waits use short timeouts so that no thread
blocks past the stop. ``KeyboardInterrupt`` (Ctrl-C) in the calling thread
stops the threads, writes a final checkpoint and re-raises.
"""

from __future__ import annotations

import dataclasses
import functools
import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import numpy as np

from jaxrl import envs
from jaxrl.compilation import use_persistent_cache
from jaxrl.agents import actor_critic, impala
from jaxrl.agents.base import require
from jaxrl.distributed.actors import (  # noqa: F401 - Item and the bodies stay importable here
    JOIN_SECONDS,
    POLL_SECONDS,
    Item,
    ParamStore,
    ThreadGroup,
    actor_loop,
    gymnax_actor,
    host_actor,
)
from jaxrl.distributed.learner import (  # noqa: F401 - trajectory_sharding stays importable here
    LearnerLog,
    LearnerPlan,
    concatenate,
    learner_loop,
    make_update,
    stats_chunk,
    throughput,
    trajectory_sharding,
)
from jaxrl.envs import gymnasium_env
from jaxrl.mesh import check_divisible, make_mesh, replicate
from jaxrl.run import config_io, preemption
from jaxrl.run.evaluation import best_evaluation, evaluation_chunk, evaluation_due
from jaxrl.run.loop import TrainingDiverged
from jaxrl.run.writer import RunWriter


@dataclasses.dataclass(frozen=True)
class AsyncConfig:
    """Settings of the threaded runtime (the agent's own are ``impala.Config``;
    its ``num_envs`` is each actor's batch and ``policy_lag`` is unused: the
    lag here is whatever the threads produce)."""

    num_actors: int = 2
    """Actor threads, each stepping its own ``num_envs`` environments."""
    trajectories_per_update: int = 1
    """Trajectories the learner concatenates along B for one update (1: the
    learner's batch is one actor's, as in on-device IMPALA's default)."""
    queue_size: int = 4
    """Capacity of the trajectory queue (actors block when it is full)."""
    synchronous: bool = False
    """A2C-shaped baseline: actors wait for fresh parameters after each
    trajectory, so the policy lag is 0 (needs trajectories_per_update == num_actors)."""

    def validate(self) -> None:
        for name in ("num_actors", "trajectories_per_update", "queue_size"):
            value = getattr(self, name)
            require(isinstance(value, int) and value > 0, "async impala", name, value,
                    "a positive integer")
        if self.synchronous:
            require(self.trajectories_per_update == self.num_actors, "async impala",
                    "trajectories_per_update", self.trajectories_per_update,
                    f"equal to num_actors={self.num_actors} when synchronous=True")


@dataclasses.dataclass
class AsyncResult:
    """What :func:`train` returns.

    Attributes:
      params, opt_state: the learner's final state.
      version: learner updates done.
      env_steps: environment steps the learner consumed.
      metrics: name -> ``[updates]`` values, one per learner update.
      lag_histogram: policy lag -> number of trajectories consumed with it.
      throughput: ``actor_env_steps_per_s``, ``learner_updates_per_s``,
        ``learner_samples_per_s``, ``seconds``.
      summary: what ``summary.json`` holds.
      interrupted: True when stopped by KeyboardInterrupt (``train`` re-raises it).
    """

    params: Any
    opt_state: Any
    version: int
    env_steps: int
    metrics: dict[str, np.ndarray]
    lag_histogram: dict[int, int]
    throughput: dict[str, float]
    summary: dict[str, Any]
    interrupted: bool = False


def _build(env_id: str, env_kwargs: dict, config: impala.Config, async_config: AsyncConfig,
           host_env_factory):
    """``(learner, actor_body, spec_env, spec_params)`` for ``env_id``."""
    host_env_factory = host_env_factory or envs.host_env_factory(env_id, **env_kwargs)
    host = host_env_factory is not None
    # The learner's batch is several actors' trajectories: its annealing
    # schedule counts updates of that size.
    learner_config = dataclasses.replace(
        config, num_envs=config.num_envs * async_config.trajectories_per_update
    )
    if host:
        spec_env = host_env_factory(1, 0)
        try:
            learner = impala.make_learner(spec_env, None, learner_config)
        finally:
            spec_env.close()
        body = host_actor(learner, host_env_factory, config.num_envs, config.rollout_len)
        return learner, body, None, None
    env, env_params = envs.make(env_id, **env_kwargs)
    learner = impala.make_learner(env, env_params, learner_config)
    body = gymnax_actor(learner, env, env_params, config.num_envs, config.rollout_len)
    return learner, body, env, env_params


def validate(config: impala.Config, async_config: AsyncConfig, total_steps: int,
             learner_devices=None) -> None:
    """Every check that can fail before anything is compiled."""
    config.validate()
    async_config.validate()
    require(isinstance(total_steps, int) and total_steps > 0, "async impala", "total_steps",
            total_steps, "a positive integer")
    if learner_devices is not None:
        mesh = make_mesh(learner_devices)
        check_divisible("num_envs * trajectories_per_update",
                        config.num_envs * async_config.trajectories_per_update, mesh)


def train(
    env_id: str,
    config: impala.Config,
    async_config: AsyncConfig,
    key: jax.Array,
    total_steps: int,
    *,
    env_kwargs: dict | None = None,
    actor_devices: Sequence[jax.Device] | None = None,
    learner_devices: int | Sequence[jax.Device] | None = None,
    out_dir: str | Path | None = None,
    force: bool = False,
    checkpoint_every_seconds: float = 10.0,
    eval_episodes: int = 10,
    eval_every: int | None = None,
    sinks: Sequence[Any] = (),
    host_env_factory: Callable[[int, int], Any] | None = None,
    on_update: Callable[[int, dict], None] | None = None,
    stop_when: Callable[[int, Any], bool] | None = None,
    run_config: dict | None = None,
    progress: bool = False,
    compile_cache: bool = True,
) -> AsyncResult:
    """Trains IMPALA with ``async_config.num_actors`` actor threads and a learner
    thread until the learner has consumed ``total_steps`` env steps.

    Args:
      env_id: a gymnax/jaxrl id (actors jitted on their device) or
        ``gymnasium:<id>``/``envpool:<task>`` (actors step Gymnasium or EnvPool
        on the host).
      actor_devices: devices actors run on (actor ``i`` on ``actor_devices[i % n]``;
        default the first device).
      learner_devices: the learner's mesh (an int: the first n local devices;
        default the first device); the learner batch is split over it.
      out_dir: a run directory (config.json, metrics.csv, checkpoints/,
        summary.json, curve.png), as ``jaxrl.run.train`` writes; None: none.
      eval_episodes: greedy episodes of each evaluation (0: none).
      eval_every: also evaluate the published parameters every ``eval_every``
        env steps the learner has consumed (None: only at the end), from the
        main thread while the others train: the first version it sees past
        each such point (points the learner passes between two of its looks
        share one evaluation); rows go to eval.csv and
        ``sinks``, and summary.json gains ``best_eval_return`` and
        ``best_eval_step``.
      sinks: further metric sinks (:func:`jaxrl.run.sinks.make_sinks`: JSONL,
        TensorBoard, W&B, MLflow) fed the learner's rows and the evaluations.
      host_env_factory: ``factory(num_envs, seed)`` of a host batch env (the
        :class:`GymnasiumBatchEnv` interface) instead of ``env_id``'s.
      stop_when: ``stop_when(version, params) -> bool`` called in the learner
        thread after each update with the parameters just published; True
        ends the run there (e.g. once an evaluation reaches a target return:
        "solved within total_steps" rather than "solved at exactly
        total_steps", which a thread-timed run cannot promise).
      on_update: ``on_update(version, metrics)`` called in the learner thread
        after each update.
      compile_cache: keep compiled programs on disk for relaunches
        (:func:`jaxrl.compilation.use_persistent_cache`).

    Raises:
      The first exception of any thread, after all threads are joined;
      KeyboardInterrupt after a final checkpoint when interrupted.
    """
    env_kwargs = dict(env_kwargs or {})
    validate(config, async_config, total_steps, learner_devices)
    require(eval_every is None or (isinstance(eval_every, int) and eval_every > 0),
            "async impala", "eval_every", eval_every, "a positive integer or None")
    use_persistent_cache(compile_cache)
    key, k_params = jax.random.split(key)
    writer = RunWriter(out_dir, run_config or _run_config(
        env_id, env_kwargs, config, async_config, total_steps, key, eval_every),
        force=force, sinks=sinks)
    writer.check()
    learner, actor_body, spec_env, spec_params = _build(
        env_id, env_kwargs, config, async_config, host_env_factory)
    greedy_returns = greedy_evaluation(learner, env_id, env_kwargs, spec_env, spec_params,
                                       eval_episodes, host_env_factory)
    mesh = make_mesh(learner_devices if learner_devices is not None else [jax.devices()[0]])
    hparams = replicate(config.hparams(), mesh)
    params = replicate(learner.init_params(k_params), mesh)
    store = ParamStore(params, replicate(learner.init_opt_state(params, hparams), mesh), 0)
    steps_per_update = config.num_envs * config.rollout_len * async_config.trajectories_per_update
    plan = LearnerPlan(-(-total_steps // steps_per_update), async_config.trajectories_per_update,
                       steps_per_update)
    threads = _Threads(async_config, store, plan)
    threads.add_actors(actor_body, list(actor_devices) if actor_devices else [jax.devices()[0]],
                       key)
    threads.add_learner(make_update(learner, mesh), hparams, on_update, stop_when)
    writer.show_progress(total_steps, 0, 1, progress, extra=("policy_lag",))
    final_key = jax.random.fold_in(key, 10_007)
    periodic = (PeriodicEvaluation(greedy_returns, eval_every, plan, key, final_key, writer)
                if eval_every is not None and eval_episodes > 0 else None)
    interrupted, stopped_by, history = _run_threads(threads, writer, checkpoint_every_seconds,
                                                    periodic)

    final_params, final_opt, version = store.snapshot()
    _checkpoint(writer, store.snapshot())
    if stopped_by is not None:
        preemption.consume_stop()
        writer.close()
        raise preemption.Preempted(stopped_by, version, writer.path is not None)
    rates = throughput(version, steps_per_update, sum(threads.actor_steps), threads.started)
    lag_histogram = dict(sorted(threads.log.lag_histogram.items()))
    summary = _summary(env_id, async_config, version, steps_per_update, interrupted,
                       lag_histogram, rates)
    if not interrupted and eval_episodes > 0:
        returns = (periodic.final_returns if periodic is not None else None)
        if returns is None:
            returns = greedy_returns(final_params, final_key)
        summary.update(eval_return=[float(np.mean(returns))],
                       eval_return_mean=float(np.mean(returns)),
                       eval_return_std=float(np.std(returns)))
        if periodic is not None:
            summary.update(best_evaluation(*writer.evaluations()))
    writer.finish(summary, f"async impala on {env_id}")
    writer.close()
    result = AsyncResult(final_params, final_opt, version, version * steps_per_update,
                         _columns(history), lag_histogram, rates, summary, interrupted)
    if interrupted:
        raise KeyboardInterrupt
    return result


class _Threads:
    """The actor threads and the learner thread of one run, with what they share."""

    def __init__(self, async_config: AsyncConfig, store: ParamStore, plan: LearnerPlan):
        self.async_config, self.store, self.plan = async_config, store, plan
        self.group = ThreadGroup()
        self.trajectories: queue.Queue = queue.Queue(maxsize=async_config.queue_size)
        self.log = LearnerLog()
        self.actor_steps = [0] * async_config.num_actors
        self.finished = threading.Event()
        self.started = time.perf_counter()

    def add_actors(self, body, devices: list, key: jax.Array) -> None:
        for i in range(self.async_config.num_actors):
            self.group.add(f"actor {i}", f"impala-actor-{i}", functools.partial(
                actor_loop, i, body, devices[i % len(devices)], key, self.store,
                self.trajectories, self.group.stop, synchronous=self.async_config.synchronous,
                env_steps=self.actor_steps))

    def add_learner(self, update, hparams, on_update, stop_when) -> None:
        def rates(updates: int) -> dict[str, float]:
            return throughput(updates, self.plan.steps_per_update, sum(self.actor_steps),
                              self.started)

        def learn():
            if learner_loop(update, hparams, self.store, self.trajectories, self.group.stop,
                            self.plan, self.log, rates, on_update=on_update, stop_when=stop_when):
                self.finished.set()
                self.group.stop.set()

        self.group.add("learner", "impala-learner", learn)


def _run_threads(threads: _Threads, writer: RunWriter, checkpoint_every_seconds: float,
                 periodic: "PeriodicEvaluation | None" = None):
    """Runs the threads to their end, writing the learner's rows and periodic
    checkpoints from this (the main) thread. Returns ``(interrupted by Ctrl-C,
    the stop request (SIGTERM) that ended it or None, rows)``; re-raises the
    first exception of any thread once all are joined."""
    rows = _RowWriter(threads.log, writer)
    interrupted, stopped_by = False, None
    try:
        writer.start()
        if periodic is not None:
            writer.open_evaluations(seeds=1)
        threads.group.start()
        stopped_by = _supervise(threads, rows, writer, checkpoint_every_seconds, periodic)
        if periodic is not None and stopped_by is None and not threads.group.errors:
            periodic.finish(threads.store.snapshot())
    except KeyboardInterrupt:
        interrupted = True
    finally:
        threads.group.stop_and_join()
        rows.drain()
        writer.close()
    if threads.group.errors:
        error = threads.group.errors[0][1]
        if isinstance(error, TrainingDiverged):
            writer.write_summary(_failure_summary(writer.run_config["env_id"], error))
        raise error
    hanging = threads.group.hanging()
    if hanging:
        raise RuntimeError(f"threads still running {JOIN_SECONDS} s after the stop: {hanging}")
    return interrupted, stopped_by, rows.history


def _supervise(threads: _Threads, rows, writer: RunWriter, checkpoint_every_seconds: float,
               periodic: "PeriodicEvaluation | None" = None) -> str | None:
    """The main thread while the others run: writes their rows and checkpoints
    on time. Returns the reason of a stop request (SIGTERM), else None once
    the threads stop."""
    last_checkpoint = time.perf_counter()
    while not threads.group.stop.wait(POLL_SECONDS):
        rows.drain()
        if periodic is not None:
            periodic.after(threads.store.snapshot())
        reason = preemption.stop_reason()
        if reason is not None:  # SIGTERM: the caller checkpoints, then stops
            return reason
        if time.perf_counter() - last_checkpoint >= checkpoint_every_seconds:
            _checkpoint(writer, threads.store.snapshot())
            last_checkpoint = time.perf_counter()
    return None


class _RowWriter:
    """Hands the learner's rows to the writer (metrics.csv, the bar) and keeps them."""

    def __init__(self, log: LearnerLog, writer: RunWriter):
        self.log, self.writer = log, writer
        self.history: list[tuple[int, dict]] = []
        self._last = time.perf_counter()

    def drain(self) -> None:
        new = self.log.take_rows()
        if not new:
            return
        done = self.history[-1][0] if self.history else 0
        self.history.extend(new)
        chunk = stats_chunk(new)
        self.writer.write_metrics(chunk)
        now = time.perf_counter()
        self.writer.advance(new[-1][0] - done, now - self._last, chunk.metrics)
        self._last = now


def _checkpoint(writer: RunWriter, snapshot: tuple[Any, Any, int]) -> None:
    """Saves the published ``(params, opt_state, version)`` unless already saved."""
    params, opt_state, version = snapshot
    if writer.path is None or writer.last_saved == version:
        return
    state = {"params": params, "opt_state": opt_state, "version": np.asarray(version, np.int32)}
    writer.checkpoint(version, jax.device_get(state))


def _summary(env_id, async_config, version, steps_per_update, interrupted, lag_histogram,
             rates) -> dict[str, Any]:
    """summary.json of a run that stopped without an error (evaluation added after)."""
    return {
        "algorithm": "impala",
        "mode": "synchronous" if async_config.synchronous else "async",
        "env_id": env_id,
        "num_actors": async_config.num_actors,
        "updates": version,
        "env_steps": version * steps_per_update,
        "interrupted": interrupted,
        "lag_histogram": {str(k): v for k, v in lag_histogram.items()},
        **rates,
    }


def _failure_summary(env_id: str, error: TrainingDiverged) -> dict[str, Any]:
    """summary.json of a run stopped by a non-finite learner statistic."""
    return {
        "algorithm": "impala", "mode": "async", "env_id": env_id,
        "env_steps": error.failure["env_steps"], "status": "diverged",
        "failure": error.failure, "error": str(error),
    }


def evaluate(learner, params, env_id, env_kwargs, spec_env, spec_params, key, num_episodes,
             host_env_factory=None) -> np.ndarray:
    """Undiscounted returns of ``num_episodes`` greedy episodes (the first of each env)."""
    return greedy_evaluation(learner, env_id, env_kwargs, spec_env, spec_params, num_episodes,
                             host_env_factory)(params, key)


def greedy_evaluation(learner, env_id, env_kwargs, spec_env, spec_params, num_episodes,
                      host_env_factory=None) -> Callable[[Any, jax.Array], np.ndarray]:
    """``returns(params, key) -> [num_episodes]`` of the greedy policy (the first
    episode of each env). For a gymnax env it is one jitted program, compiled
    once and reused by every evaluation of a run."""
    ac = learner.spec.ac
    if spec_env is not None:
        def episode_returns(params, k):
            if ac.recurrent:
                policy = lambda obs, k, carry: actor_critic.recurrent_action(
                    ac, params, carry, obs, k, deterministic=True)
                start = actor_critic.initial_carry(ac, (num_episodes,))
            else:
                policy, start = lambda obs, k: learner.act(params, obs, k, deterministic=True), None
            return envs.episode_returns(learner.act_env, spec_params, policy, k, num_episodes,
                                        policy_state=start).returns

        run = jax.jit(episode_returns)
        return lambda params, key: np.asarray(run(params, key), np.float64)
    host_env_factory = host_env_factory or envs.host_env_factory(env_id, **env_kwargs)

    def host_returns(params, key):
        seed = int(jax.random.randint(key, (), 0, 2**30))
        return np.asarray(gymnasium_env.host_episode_returns(
            lambda n: host_env_factory(n, seed), _host_greedy(learner, params, key, num_episodes),
            num_episodes), np.float64)

    return host_returns


class PeriodicEvaluation:
    """Greedy evaluations of the published parameters each time the learner
    has consumed another ``eval_every`` env steps, run by the main thread
    while the others train, then the final one when the learner is done: rows
    of eval.csv and the sinks. Each draws its episodes from the run key and
    the parameters' version; the final one from ``final_key``, as the
    summary's evaluation does without periodic ones."""

    def __init__(self, greedy_returns, eval_every: int, plan: LearnerPlan, key: jax.Array,
                 final_key: jax.Array, writer: RunWriter):
        self.greedy_returns, self.eval_every, self.plan = greedy_returns, eval_every, plan
        self.key, self.final_key, self.writer = key, final_key, writer
        self.steps_done = 0
        self.final_returns: np.ndarray | None = None

    def after(self, snapshot: tuple[Any, Any, int]) -> None:
        """Evaluates ``snapshot``'s parameters if an evaluation point was
        crossed (the last update's is the final evaluation's)."""
        params, _, version = snapshot
        steps = version * self.plan.steps_per_update
        if version >= self.plan.total_updates or not evaluation_due(
                self.steps_done, steps, self.eval_every):
            return
        self.steps_done = steps
        self._write(steps, self.greedy_returns(params, jax.random.fold_in(self.key, version)))

    def finish(self, snapshot: tuple[Any, Any, int]) -> None:
        """The final evaluation, of the learner's last parameters."""
        params, _, version = snapshot
        self.final_returns = self.greedy_returns(params, self.final_key)
        self._write(version * self.plan.steps_per_update, self.final_returns)

    def _write(self, steps: int, returns: np.ndarray) -> None:
        self.writer.write_evaluation(evaluation_chunk(steps, returns[None]))


def _host_greedy(learner, params, key, num_envs: int) -> Callable[[np.ndarray], np.ndarray]:
    """``policy(obs) -> actions`` of the greedy policy for host envs. A core's
    state is kept between calls and never reset: only each env's first
    episode is scored, and that one starts from zeros."""
    ac = learner.spec.ac
    if not ac.recurrent:
        greedy = jax.jit(lambda obs: learner.act(params, obs, key, deterministic=True))
        return lambda obs: np.asarray(greedy(obs))
    recurrent = jax.jit(lambda obs, carry: actor_critic.recurrent_action(
        ac, params, carry, obs, key, deterministic=True))
    state = {"carry": actor_critic.initial_carry(ac, (num_envs,))}

    def policy(obs):
        action, state["carry"] = recurrent(obs, state["carry"])
        return np.asarray(action)

    return policy


def _columns(history: list[tuple[int, dict]]) -> dict[str, np.ndarray]:
    if not history:
        return {"env_steps": np.zeros((0,), np.int64)}
    names = history[0][1].keys()
    columns = {"env_steps": np.array([s for s, _ in history], np.int64)}
    columns.update({n: np.array([m[n] for _, m in history], np.float32) for n in names})
    return columns


def _run_config(env_id, env_kwargs, config, async_config, total_steps, key,
                eval_every=None) -> dict:
    return {
        "algorithm": "impala",
        "mode": "async",
        "env_id": env_id,
        "env_kwargs": env_kwargs,
        "agent_config": config_io.config_to_dict(config),
        "async_config": dataclasses.asdict(async_config),
        "seeds": 1,
        "total_steps": total_steps,
        "eval_every": eval_every,
        "key": config_io.key_to_json(key),
    }
