"""Asynchronous IMPALA (the "Sebulba" shape): actor threads and a learner thread.

::

    actor 0 ──┐   Trajectory [T, B] + behaviour log-probs + parameter version
    actor 1 ──┼──► bounded queue ──► learner: pop k, concatenate along B,
    ...     ──┘                      V-trace update (data-parallel over a mesh),
         ▲                           publish (params, version + 1)
         └──────── ParamStore (lock) ◄──────┘

Each actor thread steps its own batch of environments — a gymnax env jitted
on its device, or a Gymnasium env on the host (:mod:`jaxrl.envs.gymnasium_env`,
env ids ``gymnasium:<id>``) — with the parameters it last pulled, and never
waits for the learner except when the queue is full. The learner reuses
IMPALA's network and update (:func:`jaxrl.agents.impala.make_learner`): the
V-trace correction uses the behaviour log-probs stored with each trajectory,
and the policy lag of a trajectory is the learner's version minus the
version that acted.

``AsyncConfig(synchronous=True)`` is the A2C-shaped baseline: every actor
waits for the parameters published after its last trajectory was consumed,
so every trajectory is on-policy (lag 0) and actors and learner take turns.

Robustness: all threads share one stop event. An exception in any thread
stops the run and is re-raised in the calling thread once every thread has
been joined; queue puts/gets and waits use short timeouts so that no thread
blocks past the stop. ``KeyboardInterrupt`` (Ctrl-C) in the calling thread
stops the threads, writes a final checkpoint and re-raises.
"""

from __future__ import annotations

import collections
import dataclasses
import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import numpy as np

from jaxrl import envs
from jaxrl.agents import impala
from jaxrl.agents.base import require
from jaxrl.distributed.mesh import (
    batch_sharded,
    check_divisible,
    make_mesh,
    replicate,
    replicated,
)
from jaxrl.envs import gymnasium_env
from jaxrl.run import preemption
from jaxrl.run.loop import TrainingDiverged, first_non_finite

POLL_SECONDS = 0.05
"""How long a blocked queue put/get or wait lasts before the stop event is checked again."""
JOIN_SECONDS = 30.0
"""How long the caller waits for each thread to end once the run stops (a jit
compile in flight cannot be interrupted)."""


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


class ParamStore:
    """The learner's latest parameters and their version, behind a lock.

    The learner publishes a new snapshot after every update; actors read the
    latest one whenever they start a trajectory. JAX arrays are immutable, so
    a snapshot handed out stays valid while the learner moves on.
    """

    def __init__(self, params: Any, opt_state: Any = None, version: int = 0):
        self._cond = threading.Condition()
        self._snapshot = (params, opt_state, version)

    def publish(self, params: Any, opt_state: Any, version: int) -> None:
        with self._cond:
            self._snapshot = (params, opt_state, version)
            self._cond.notify_all()

    def get(self) -> tuple[Any, int]:
        """``(params, version)`` last published."""
        with self._cond:
            params, _, version = self._snapshot
        return params, version

    def snapshot(self) -> tuple[Any, Any, int]:
        """``(params, opt_state, version)`` last published (for checkpoints)."""
        with self._cond:
            return self._snapshot

    def wait_newer(self, version: int, stop: threading.Event) -> tuple[Any, int] | None:
        """Blocks until a version newer than ``version`` is published; ``None`` on stop."""
        with self._cond:
            while self._snapshot[2] <= version:
                if stop.is_set():
                    return None
                self._cond.wait(POLL_SECONDS)
            params, _, current = self._snapshot
        return params, current


@dataclasses.dataclass
class Item:
    """One actor's trajectory in the queue (host NumPy arrays)."""

    trajectory: impala.Trajectory
    version: int
    actor: int


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


# ---------------------------------------------------------------- actors


def _put(q: queue.Queue, item: Any, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event) -> Any | None:
    while not stop.is_set():
        try:
            return q.get(timeout=POLL_SECONDS)
        except queue.Empty:
            continue
    return None


class _ParamsOn:
    """An actor's copy of the published parameters on its device, refreshed
    only when the version changes."""

    def __init__(self, device):
        self.device, self.version, self.params = device, None, None

    def update(self, params: Any, version: int) -> Any:
        if version != self.version:
            self.params = jax.device_put(params, self.device)
            self.version = version
        return self.params


def gymnax_actor(learner: impala.Learner, env, env_params, num_envs: int, rollout_len: int):
    """An actor body for a gymnax env: ``body(index, device, key) -> step_fn`` where
    ``step_fn(params) -> Trajectory`` runs one jitted rollout on ``device``."""
    batch_env = envs.BatchEnv(envs.EpisodeStats(learner.act_env), num_envs)
    run_rollout = jax.jit(
        lambda params, env_state, obs, key: impala.rollout(
            learner, batch_env, env_params, params, env_state, obs, key, rollout_len
        )
    )

    def body(index: int, device, key: jax.Array):
        key = jax.device_put(jax.random.fold_in(key, index), device)
        key, k_reset = jax.random.split(key)
        obs, env_state = jax.jit(batch_env.reset)(k_reset, env_params)
        state = {"env_state": env_state, "obs": obs, "key": key}

        def step(params):
            key, k_rollout = jax.random.split(state["key"])
            env_state, obs, traj = run_rollout(params, state["env_state"], state["obs"], k_rollout)
            state.update(env_state=env_state, obs=obs, key=key)
            return jax.device_get(traj)  # waits for the rollout; hands the learner host arrays

        return step, lambda: None

    return body


def host_actor(learner: impala.Learner, make_env: Callable[[int, int], Any], num_envs: int,
               rollout_len: int):
    """An actor body for host envs (``make_env(num_envs, seed)``, e.g. a
    :class:`GymnasiumBatchEnv`): the policy runs jitted on the actor's device,
    the env steps in Python."""

    @jax.jit
    def policy(params, obs, key, t):
        return learner.policy(params, obs, jax.random.fold_in(key, t))

    def body(index: int, device, key: jax.Array):
        seed = int(jax.random.randint(jax.random.fold_in(key, index), (), 0, 2**30))
        env = make_env(num_envs, seed)
        obs_now = env.reset()
        keys = {"key": jax.device_put(jax.random.fold_in(key, index), device)}

        def step(params):
            nonlocal obs_now
            key, k_rollout = jax.random.split(keys["key"])
            keys["key"] = key
            columns = collections.defaultdict(list)
            for t in range(rollout_len):
                action, log_prob = policy(params, jax.device_put(obs_now, device), k_rollout, t)
                action, log_prob = np.asarray(action), np.asarray(log_prob)
                obs, reward, terminated, truncated, final_obs, ep_ret, ep_done = env.step(action)
                for name, value in (("obs", obs_now), ("action", action),
                                    ("behaviour_log_prob", log_prob), ("reward", reward),
                                    ("terminated", terminated), ("truncated", truncated),
                                    ("final_obs", final_obs), ("episode_return", ep_ret),
                                    ("episode_done", ep_done)):
                    columns[name].append(value)
                obs_now = obs
            return impala.Trajectory(next_obs=obs_now, **{k: np.stack(v) for k, v in columns.items()})

        return step, env.close

    return body


# ---------------------------------------------------------------- learner


def concatenate(trajectories: Sequence[impala.Trajectory]) -> impala.Trajectory:
    """Trajectories of several actors as one batch: ``[T, B_1 + B_2 + ...]``
    (``next_obs``, which has no time axis, along its axis 0)."""
    first = trajectories[0]
    fields = {}
    for name in first.__dataclass_fields__:
        axis = 0 if name == "next_obs" else 1
        fields[name] = np.concatenate([np.asarray(getattr(t, name)) for t in trajectories], axis)
    return impala.Trajectory(**fields)


def trajectory_sharding(mesh) -> impala.Trajectory:
    """Shardings that split a :class:`Trajectory` along B over ``mesh``."""
    time_major = batch_sharded(mesh, batch_axis=1)
    names = impala.Trajectory.__dataclass_fields__
    return impala.Trajectory(**{n: batch_sharded(mesh, 0) if n == "next_obs" else time_major
                                for n in names})


def make_update(learner: impala.Learner, mesh):
    """The learner step, data-parallel over ``mesh``: the batch is split along
    B, parameters and optimiser state are replicated, and XLA all-reduces the
    gradient (the loss is a mean over the whole batch)."""
    traj_sharding = trajectory_sharding(mesh)
    update = jax.jit(learner.update, out_shardings=replicated(mesh))

    def step(params, opt_state, hparams, traj: impala.Trajectory, iteration: int):
        traj = jax.device_put(traj, traj_sharding)
        return update(params, opt_state, hparams, traj, np.int32(iteration))

    return step


# ---------------------------------------------------------------- the run


def _build(env_id: str, env_kwargs: dict, config: impala.Config, async_config: AsyncConfig,
           host_env_factory):
    """``(learner, actor_body, spec_env, spec_params)`` for ``env_id``."""
    host = host_env_factory is not None or gymnasium_env.is_gymnasium_id(env_id)
    # The learner's batch is several actors' trajectories: its annealing
    # schedule counts updates of that size.
    learner_config = dataclasses.replace(
        config, num_envs=config.num_envs * async_config.trajectories_per_update
    )
    if host:
        if host_env_factory is None:
            name = gymnasium_env.gymnasium_name(env_id)
            host_env_factory = lambda n, seed: gymnasium_env.GymnasiumBatchEnv(
                name, n, seed, **env_kwargs)
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
    host_env_factory: Callable[[int, int], Any] | None = None,
    on_update: Callable[[int, dict], None] | None = None,
    stop_when: Callable[[int, Any], bool] | None = None,
    run_config: dict | None = None,
    progress: bool = False,
) -> AsyncResult:
    """Trains IMPALA with ``async_config.num_actors`` actor threads and a learner
    thread until the learner has consumed ``total_steps`` env steps.

    Args:
      env_id: a gymnax/jaxrl id (actors jitted on their device) or
        ``gymnasium:<id>`` (actors step Gymnasium on the host).
      actor_devices: devices actors run on (actor ``i`` on ``actor_devices[i % n]``;
        default the first device).
      learner_devices: the learner's mesh (an int: the first n local devices;
        default the first device); the learner batch is split over it.
      out_dir: a run directory (config.json, metrics.csv, checkpoints/,
        summary.json, curve.png), as ``jaxrl.run.train`` writes; None: none.
      host_env_factory: ``factory(num_envs, seed)`` of a host batch env (the
        :class:`GymnasiumBatchEnv` interface) instead of ``env_id``'s.
      stop_when: ``stop_when(version, params) -> bool`` called in the learner
        thread after each update with the parameters just published; True
        ends the run there (e.g. once an evaluation reaches a target return:
        "solved within total_steps" rather than "solved at exactly
        total_steps", which a thread-timed run cannot promise).
      on_update: ``on_update(version, metrics)`` called in the learner thread
        after each update.

    Raises:
      The first exception of any thread, after all threads are joined;
      KeyboardInterrupt after a final checkpoint when interrupted.
    """
    env_kwargs = dict(env_kwargs or {})
    validate(config, async_config, total_steps, learner_devices)
    learner, actor_body, spec_env, spec_params = _build(
        env_id, env_kwargs, config, async_config, host_env_factory)
    mesh = make_mesh(learner_devices if learner_devices is not None else [jax.devices()[0]])
    actor_devices = list(actor_devices) if actor_devices else [jax.devices()[0]]
    update = make_update(learner, mesh)

    key, k_params = jax.random.split(key)
    hparams = replicate(config.hparams(), mesh)
    params = replicate(learner.init_params(k_params), mesh)
    opt_state = replicate(learner.init_opt_state(params, hparams), mesh)
    store = ParamStore(params, opt_state, 0)
    steps_per_update = config.num_envs * config.rollout_len * async_config.trajectories_per_update
    total_updates = -(-total_steps // steps_per_update)

    rundir_ctx = _RunDir(out_dir, force, run_config or _run_config(
        env_id, env_kwargs, config, async_config, total_steps, key)) if out_dir else None

    stop = threading.Event()
    finished = threading.Event()
    errors: list[tuple[str, BaseException]] = []
    errors_lock = threading.Lock()
    trajectories: queue.Queue = queue.Queue(maxsize=async_config.queue_size)
    metrics_out: queue.SimpleQueue = queue.SimpleQueue()
    lag_histogram: collections.Counter = collections.Counter()
    actor_steps = [0] * async_config.num_actors
    start = time.perf_counter()

    def guarded(name: str, fn: Callable[[], None]) -> Callable[[], None]:
        def run():
            try:
                fn()
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                with errors_lock:
                    errors.append((name, e))
                stop.set()
        return run

    def actor_loop(index: int):
        device = actor_devices[index % len(actor_devices)]
        step, close = actor_body(index, device, key)
        local = _ParamsOn(device)
        last_version = -1
        try:
            while not stop.is_set():
                if async_config.synchronous:
                    got = store.wait_newer(last_version, stop)
                    if got is None:
                        return
                    params, version = got
                else:
                    params, version = store.get()
                traj = step(local.update(params, version))
                last_version = version
                actor_steps[index] += int(np.prod(np.shape(traj.reward)))
                if not _put(trajectories, Item(traj, version, index), stop):
                    return
        finally:
            close()

    def learner_loop():
        nonlocal_params, nonlocal_opt = params, opt_state
        for version in range(total_updates):
            items = []
            while len(items) < async_config.trajectories_per_update:
                item = _get(trajectories, stop)
                if item is None:
                    return
                items.append(item)
            depth = trajectories.qsize()
            lags = [version - item.version for item in items]
            batch = concatenate([item.trajectory for item in items])
            new_params, new_opt, stats = update(
                nonlocal_params, nonlocal_opt, hparams, batch, version)
            stats = {k: float(v) for k, v in jax.device_get(stats).items()}
            elapsed = time.perf_counter() - start
            stats.update(
                seconds=elapsed,
                policy_lag=float(np.mean(lags)),
                policy_lag_max=float(np.max(lags)),
                queue_depth=float(depth),
                learner_updates_per_s=(version + 1) / elapsed,
                learner_samples_per_s=(version + 1) * steps_per_update / elapsed,
                actor_env_steps_per_s=sum(actor_steps) / elapsed,
            )
            metrics_out.put(((version + 1) * steps_per_update, stats))
            failure = _first_non_finite(stats, (version + 1) * steps_per_update)
            if failure is not None:
                # Never published, so never acted on or checkpointed.
                raise TrainingDiverged(failure, out_dir, None)
            nonlocal_params, nonlocal_opt = new_params, new_opt
            store.publish(nonlocal_params, nonlocal_opt, version + 1)
            lag_histogram.update(lags)
            if on_update is not None:
                on_update(version + 1, stats)
            if stop_when is not None and stop_when(version + 1, nonlocal_params):
                break
        finished.set()
        stop.set()

    threads = [threading.Thread(target=guarded(f"actor {i}", lambda i=i: actor_loop(i)),
                                name=f"impala-actor-{i}", daemon=True)
               for i in range(async_config.num_actors)]
    threads.append(threading.Thread(target=guarded("learner", learner_loop),
                                    name="impala-learner", daemon=True))
    history: list[tuple[int, dict]] = []
    interrupted = False
    preempted_by = None
    bar = _progress(total_steps) if progress else None
    try:
        if rundir_ctx:
            rundir_ctx.open()
        for thread in threads:
            thread.start()
        last_checkpoint = time.perf_counter()
        while not stop.wait(POLL_SECONDS):
            _drain(metrics_out, history, rundir_ctx, bar)
            preempted_by = preemption.stop_reason()
            if preempted_by is not None:  # SIGTERM: checkpoint below, then stop
                break
            if rundir_ctx and time.perf_counter() - last_checkpoint >= checkpoint_every_seconds:
                rundir_ctx.checkpoint(store.snapshot())
                last_checkpoint = time.perf_counter()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        stop.set()
        for thread in threads:
            thread.join(JOIN_SECONDS)
        _drain(metrics_out, history, rundir_ctx, bar)
        if bar is not None:
            bar.close()
        if rundir_ctx and (errors or not (interrupted or preempted_by or finished.is_set())):
            rundir_ctx.close()
    if errors:
        if isinstance(errors[0][1], TrainingDiverged) and rundir_ctx:
            rundir_ctx.record_failure(errors[0][1])
        raise errors[0][1]
    hanging = [t.name for t in threads if t.is_alive()]
    if hanging:
        raise RuntimeError(f"threads still running {JOIN_SECONDS} s after the stop: {hanging}")

    final_params, final_opt, version = store.snapshot()
    if rundir_ctx:
        rundir_ctx.checkpoint((final_params, final_opt, version))
    if preempted_by is not None:
        preemption.consume_stop()
        if rundir_ctx:
            rundir_ctx.close()
        raise preemption.Preempted(preempted_by, version, rundir_ctx is not None)
    elapsed = time.perf_counter() - start
    env_steps = version * steps_per_update
    throughput = {
        "seconds": elapsed,
        "actor_env_steps_per_s": sum(actor_steps) / elapsed,
        "learner_updates_per_s": version / elapsed,
        "learner_samples_per_s": env_steps / elapsed,
    }
    metrics = _columns(history)
    summary = {
        "algorithm": "impala",
        "mode": "synchronous" if async_config.synchronous else "async",
        "env_id": env_id,
        "num_actors": async_config.num_actors,
        "updates": version,
        "env_steps": env_steps,
        "interrupted": interrupted,
        "lag_histogram": {str(k): v for k, v in sorted(lag_histogram.items())},
        **throughput,
    }
    if not interrupted and eval_episodes > 0:
        returns = evaluate(learner, final_params, env_id, env_kwargs, spec_env, spec_params,
                           jax.random.fold_in(key, 10_007), eval_episodes, host_env_factory)
        summary.update(eval_return=[float(np.mean(returns))],
                       eval_return_mean=float(np.mean(returns)),
                       eval_return_std=float(np.std(returns)))
    if rundir_ctx:
        rundir_ctx.finish(summary)
    result = AsyncResult(final_params, final_opt, version, env_steps, metrics,
                         dict(sorted(lag_histogram.items())), throughput, summary, interrupted)
    if interrupted:
        raise KeyboardInterrupt
    return result


def evaluate(learner, params, env_id, env_kwargs, spec_env, spec_params, key, num_episodes,
             host_env_factory=None) -> np.ndarray:
    """Undiscounted returns of ``num_episodes`` greedy episodes."""
    if spec_env is not None:
        policy = lambda obs, k: learner.act(params, obs, k, deterministic=True)
        run = jax.jit(lambda k: envs.episode_returns(learner.act_env, spec_params, policy, k,
                                                     num_episodes).returns)
        return np.asarray(run(key))
    if host_env_factory is None:
        name = gymnasium_env.gymnasium_name(env_id)
        host_env_factory = lambda n, seed: gymnasium_env.GymnasiumBatchEnv(name, n, seed,
                                                                           **env_kwargs)
    greedy = jax.jit(lambda obs: learner.act(params, obs, key, deterministic=True))
    seed = int(jax.random.randint(key, (), 0, 2**30))
    return gymnasium_env.host_episode_returns(
        lambda n: host_env_factory(n, seed), lambda obs: np.asarray(greedy(obs)), num_episodes)


# ---------------------------------------------------------------- host side


def _columns(history: list[tuple[int, dict]]) -> dict[str, np.ndarray]:
    if not history:
        return {"env_steps": np.zeros((0,), np.int64)}
    names = history[0][1].keys()
    columns = {"env_steps": np.array([s for s, _ in history], np.int64)}
    columns.update({n: np.array([m[n] for _, m in history], np.float32) for n in names})
    return columns


def _first_non_finite(stats: dict[str, float], env_steps: int) -> dict[str, Any] | None:
    """The first non-finite statistic of one update, as :class:`TrainingDiverged`
    reports it (the on-device loop's rule, on a one-row chunk); None if all are finite."""
    from jaxrl.run.sinks import MetricsChunk

    chunk = MetricsChunk(np.array([env_steps]), {k: np.array([[v]]) for k, v in stats.items()})
    failure = first_non_finite(chunk)
    return None if failure is None else {k: v for k, v in failure.items() if k != "row"}


def _drain(metrics_out: queue.SimpleQueue, history: list, rundir_ctx, bar) -> None:
    new = []
    while True:
        try:
            new.append(metrics_out.get_nowait())
        except queue.Empty:
            break
    history.extend(new)
    if new and rundir_ctx:
        rundir_ctx.write(new)
    if new and bar is not None:
        bar.update(new[-1][0] - bar.n)
        bar.set_postfix(ret=f"{new[-1][1]['episode_return']:.1f}",
                        lag=f"{new[-1][1]['policy_lag']:.1f}")


def _progress(total: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="step", unit_scale=True, dynamic_ncols=True)


def _run_config(env_id, env_kwargs, config, async_config, total_steps, key) -> dict:
    from jaxrl.run import config_io

    return {
        "algorithm": "impala",
        "mode": "async",
        "env_id": env_id,
        "env_kwargs": env_kwargs,
        "agent_config": config_io.config_to_dict(config),
        "async_config": dataclasses.asdict(async_config),
        "seeds": 1,
        "total_steps": total_steps,
        "key": config_io.key_to_json(key),
    }


class _RunDir:
    """The run directory of an async run: the layout ``jaxrl.run.train`` writes
    (config.json, metrics.csv with one row per learner update, checkpoints/,
    summary.json, curve.png)."""

    def __init__(self, out_dir, force: bool, run_config: dict):
        from jaxrl.run import rundir

        self.path = Path(out_dir)
        rundir.check_new_run(self.path, force=force)
        self.force = force
        self.run_config = run_config
        self.sink = None
        self.checkpointer = None

    def open(self) -> None:
        from jaxrl.run import checkpoint, rundir, sinks

        rundir.start_new_run(self.path, self.run_config, force=self.force)
        self.sink = sinks.CSVSink(self.path / rundir.METRICS_CSV)
        self.checkpointer = checkpoint.Checkpointer(self.path / rundir.CHECKPOINTS)
        self._opened = False

    def write(self, rows: list[tuple[int, dict]]) -> None:
        from jaxrl.run import sinks

        if not self._opened:
            self.sink.open(list(rows[0][1]), 1, None)
            self._opened = True
        chunk = sinks.MetricsChunk(
            env_steps=np.array([s for s, _ in rows], np.int64),
            metrics={n: np.array([[m[n]] for _, m in rows], np.float32) for n in rows[0][1]},
        )
        self.sink.write(chunk)

    def checkpoint(self, snapshot: tuple[Any, Any, int]) -> None:
        params, opt_state, version = snapshot
        if self.checkpointer.latest_iteration() == version:
            return
        state = {"params": params, "opt_state": opt_state,
                 "version": np.asarray(version, np.int32)}
        self.checkpointer.save(version, jax.device_get(state))

    def record_failure(self, error: TrainingDiverged) -> None:
        """summary.json of a run stopped by a non-finite learner statistic."""
        from jaxrl.run import rundir

        self.close()
        rundir.write_json(self.path / rundir.SUMMARY, {
            "algorithm": "impala", "mode": "async", "env_id": self.run_config["env_id"],
            "env_steps": error.failure["env_steps"], "status": "diverged",
            "failure": error.failure, "error": str(error),
        })

    def finish(self, summary: dict) -> None:
        from jaxrl.run import plots, rundir

        self.close()
        rundir.write_json(self.path / rundir.SUMMARY, summary)
        if (self.path / rundir.METRICS_CSV).stat().st_size > 0:
            try:
                plots.plot_curves(self.path / rundir.METRICS_CSV, self.path / rundir.CURVE,
                                  title=f"async impala on {self.run_config['env_id']}")
            except (KeyError, ValueError):
                pass  # no rows yet: nothing to plot

    def close(self) -> None:
        if self.sink is not None:
            self.sink.close()
            self.sink = None
        if self.checkpointer is not None:
            self.checkpointer.close()
            self.checkpointer = None
