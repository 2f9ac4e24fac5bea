"""The learner side of asynchronous IMPALA: pop trajectories, update, publish.

::

    queue ──► pop k items ──► concatenate along B ──► V-trace update on the mesh
                                                         │
          actors ◄── ParamStore.publish(params, version + 1) ◄──┘

The update is IMPALA's own (:func:`jaxrl.agents.impala.make_learner`),
data-parallel over a device mesh: the batch is split along B, parameters and
optimiser state are replicated, and XLA all-reduces the gradient. The V-trace
correction uses the behaviour log-probs stored with each trajectory; the
policy lag of a trajectory is the learner's version minus the version that
acted.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from typing import Any, Callable, Sequence

import jax
import numpy as np

from jaxrl.agents import impala
from jaxrl.distributed.actors import Item, ParamStore, get_until_stopped
from jaxrl.mesh import batch_sharded, replicated
from jaxrl.run.loop import TrainingDiverged, first_non_finite
from jaxrl.run.sinks import MetricsChunk


BATCH_FIRST = ("next_obs", "core_carry")
"""Trajectory fields without a time axis: their batch (environment) axis is 0."""


def concatenate(trajectories: Sequence[impala.Trajectory]) -> impala.Trajectory:
    """Trajectories of several actors as one batch: ``[T, B_1 + B_2 + ...]``
    (the fields of :data:`BATCH_FIRST`, which have no time axis, along their axis 0)."""
    first = trajectories[0]
    fields = {}
    for name in first.__dataclass_fields__:
        if getattr(first, name) is None:  # an optional field (no action mask, no core)
            fields[name] = None
            continue
        axis = 0 if name in BATCH_FIRST else 1
        fields[name] = jax.tree.map(lambda *parts: np.concatenate(parts, axis),
                                    *[getattr(t, name) for t in trajectories])
    return impala.Trajectory(**fields)


def trajectory_sharding(mesh, example: impala.Trajectory | None = None) -> impala.Trajectory:
    """Shardings that split a :class:`Trajectory` along B over ``mesh`` (None
    for the fields ``example`` leaves out, such as an absent action mask). A
    core's start state splits with its environments (every leaf along axis 0)."""
    time_major = batch_sharded(mesh, batch_axis=1)
    names = impala.Trajectory.__dataclass_fields__
    absent = set() if example is None else {n for n in names if getattr(example, n) is None}
    return impala.Trajectory(**{n: None if n in absent else
                                batch_sharded(mesh, 0) if n in BATCH_FIRST else time_major
                                for n in names})


def make_update(learner: impala.Learner, mesh):
    """The learner step, data-parallel over ``mesh``: the batch is split along
    B, parameters and optimiser state are replicated, and XLA all-reduces the
    gradient (the loss is a mean over the whole batch)."""
    update = jax.jit(learner.update, out_shardings=replicated(mesh))

    def step(params, opt_state, hparams, traj: impala.Trajectory, iteration: int):
        traj = jax.device_put(traj, trajectory_sharding(mesh, traj))
        return update(params, opt_state, hparams, traj, np.int32(iteration))

    return step


@dataclasses.dataclass(frozen=True)
class LearnerPlan:
    """How much the learner consumes: ``total_updates`` updates of
    ``trajectories_per_update`` trajectories, ``steps_per_update`` env steps each."""

    total_updates: int
    trajectories_per_update: int
    steps_per_update: int


@dataclasses.dataclass
class LearnerLog:
    """What the learner thread reports: one ``(env_steps, stats)`` per update
    for the host to write, and the policy lag of every trajectory consumed."""

    rows: queue.SimpleQueue = dataclasses.field(default_factory=queue.SimpleQueue)
    lag_histogram: dict[int, int] = dataclasses.field(default_factory=dict)

    def add_lags(self, lags: Sequence[int]) -> None:
        for lag in lags:
            self.lag_histogram[lag] = self.lag_histogram.get(lag, 0) + 1

    def take_rows(self) -> list[tuple[int, dict[str, float]]]:
        """The rows reported since the last call."""
        rows = []
        while True:
            try:
                rows.append(self.rows.get_nowait())
            except queue.Empty:
                return rows


def learner_loop(
    update,
    hparams: Any,
    store: ParamStore,
    trajectories: queue.Queue,
    stop: threading.Event,
    plan: LearnerPlan,
    log: LearnerLog,
    rates: Callable[[int], dict[str, float]],
    *,
    on_update: Callable[[int, dict], None] | None = None,
    stop_when: Callable[[int, Any], bool] | None = None,
) -> bool:
    """Updates until ``plan.total_updates`` are done or ``stop_when`` says so
    (True), or ``stop`` is set (False). Each update's statistics, with the
    throughput ``rates(updates done)``, go to ``log`` before anything else: an
    update with a non-finite statistic raises :class:`TrainingDiverged` and is
    never published, so never acted on or checkpointed."""
    params, opt_state, _ = store.snapshot()
    for version in range(plan.total_updates):
        items = _take(trajectories, plan.trajectories_per_update, stop)
        if items is None:
            return False
        depth = trajectories.qsize()
        lags = [version - item.version for item in items]
        batch = concatenate([item.trajectory for item in items])
        new_params, new_opt, stats = update(params, opt_state, hparams, batch, version)
        stats = {k: float(v) for k, v in jax.device_get(stats).items()}
        stats.update(lag_stats(lags, depth), **rates(version + 1))
        env_steps = (version + 1) * plan.steps_per_update
        log.rows.put((env_steps, stats))
        failure = first_non_finite_stat(stats, env_steps)
        if failure is not None:
            raise TrainingDiverged(failure, None, None)
        params, opt_state = new_params, new_opt
        store.publish(params, opt_state, version + 1)
        log.add_lags(lags)
        if on_update is not None:
            on_update(version + 1, stats)
        if stop_when is not None and stop_when(version + 1, params):
            break
    return True


def _take(trajectories: queue.Queue, n: int, stop: threading.Event) -> list[Item] | None:
    items = []
    while len(items) < n:
        item = get_until_stopped(trajectories, stop)
        if item is None:
            return None
        items.append(item)
    return items


def lag_stats(lags: Sequence[int], queue_depth: int) -> dict[str, float]:
    """The policy lag of one update's trajectories and the queue depth after popping them."""
    return {
        "policy_lag": float(np.mean(lags)),
        "policy_lag_max": float(np.max(lags)),
        "queue_depth": float(queue_depth),
    }


def throughput(updates: int, steps_per_update: int, actor_env_steps: int, started: float
               ) -> dict[str, float]:
    """Rates since ``started`` (a ``time.perf_counter()``): seconds, learner
    updates and samples per second, actor env steps per second."""
    elapsed = time.perf_counter() - started
    return {
        "seconds": elapsed,
        "learner_updates_per_s": updates / elapsed,
        "learner_samples_per_s": updates * steps_per_update / elapsed,
        "actor_env_steps_per_s": actor_env_steps / elapsed,
    }


def first_non_finite_stat(stats: dict[str, float], env_steps: int) -> dict[str, Any] | None:
    """The first non-finite statistic of one update, as :class:`TrainingDiverged`
    reports it (the on-device loop's rule, on a one-row chunk); None if all are finite."""
    # float64, as the statistics are: a large finite value stays finite.
    failure = first_non_finite(stats_chunk([(env_steps, stats)], np.float64))
    return None if failure is None else {k: v for k, v in failure.items() if k != "row"}


def stats_chunk(rows: Sequence[tuple[int, dict[str, float]]], dtype=np.float32) -> MetricsChunk:
    """Learner rows ``(env_steps, stats)`` as a one-seed :class:`MetricsChunk`."""
    names = rows[0][1]
    return MetricsChunk(
        env_steps=np.array([s for s, _ in rows], np.int64),
        metrics={n: np.array([[m[n]] for _, m in rows], dtype) for n in names},
    )
