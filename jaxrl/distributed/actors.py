"""The actor side of asynchronous IMPALA: threads that step environments with
the parameters they last pulled and push trajectories into a bounded queue.

::

    actor i:  params = store.get()  ->  traj = body.step(params)  ->  queue.put(Item(traj, version, i))

An actor body (:func:`gymnax_actor`, :func:`host_actor`) knows how to step
one kind of environment; :func:`actor_loop` is the same for both. Every
thread of a run belongs to one :class:`ThreadGroup`, whose stop event ends
them all: an exception in any thread sets it, and every blocking call here
waits at most :data:`POLL_SECONDS` before looking at it again.
"""

from __future__ import annotations

import collections
import dataclasses
import queue
import threading
from typing import Any, Callable

import jax
import numpy as np

from jaxrl import envs
from jaxrl.agents import actor_critic, impala

POLL_SECONDS = 0.05
"""How long a blocked queue put/get or wait lasts before the stop event is checked again."""
JOIN_SECONDS = 30.0
"""How long the caller waits for each thread to end once the run stops (a jit
compile in flight cannot be interrupted)."""


class ThreadGroup:
    """Daemon threads sharing one stop event. The first exception of any of
    them stops the group and is kept for the caller to re-raise."""

    def __init__(self):
        self.stop = threading.Event()
        self.errors: list[tuple[str, BaseException]] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def add(self, name: str, thread_name: str, fn: Callable[[], None]) -> None:
        """Adds a thread running ``fn``; ``name`` says which part failed."""

        def run():
            try:
                fn()
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                with self._lock:
                    self.errors.append((name, e))
                self.stop.set()

        self._threads.append(threading.Thread(target=run, name=thread_name, daemon=True))

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop_and_join(self, seconds: float = JOIN_SECONDS) -> None:
        """Stops every thread and waits up to ``seconds`` for each."""
        self.stop.set()
        for thread in self._threads:
            thread.join(seconds)

    def hanging(self) -> list[str]:
        """Names of the threads still alive."""
        return [t.name for t in self._threads if t.is_alive()]


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


def put_until_stopped(q: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Puts ``item`` into ``q``, waiting while it is full; False if stopped first."""
    while not stop.is_set():
        try:
            q.put(item, timeout=POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False


def get_until_stopped(q: queue.Queue, stop: threading.Event) -> Any | None:
    """The next item of ``q``, waiting while it is empty; None if stopped first."""
    while not stop.is_set():
        try:
            return q.get(timeout=POLL_SECONDS)
        except queue.Empty:
            continue
    return None


class DeviceParams:
    """An actor's copy of the published parameters on its device, refreshed
    only when the version changes."""

    def __init__(self, device):
        self.device, self.version, self.params = device, None, None

    def update(self, params: Any, version: int) -> Any:
        if version != self.version:
            self.params = jax.device_put(params, self.device)
            self.version = version
        return self.params


def actor_loop(
    index: int,
    body,
    device,
    key: jax.Array,
    store: ParamStore,
    trajectories: queue.Queue,
    stop: threading.Event,
    *,
    synchronous: bool,
    env_steps: list[int],
) -> None:
    """Actor ``index``: pulls parameters, runs ``body``'s rollout on ``device``,
    pushes the trajectory, until ``stop``. ``synchronous`` waits for parameters
    newer than those of its last trajectory (policy lag 0). Counts the env
    steps it took in ``env_steps[index]``."""
    step, close = body(index, device, key)
    local = DeviceParams(device)
    last_version = -1
    try:
        while not stop.is_set():
            got = store.wait_newer(last_version, stop) if synchronous else store.get()
            if got is None:
                return
            params, version = got
            traj = step(local.update(params, version))
            last_version = version
            env_steps[index] += int(np.prod(np.shape(traj.reward)))
            if not put_until_stopped(trajectories, Item(traj, version, index), stop):
                return
    finally:
        close()


def gymnax_actor(learner: impala.Learner, env, env_params, num_envs: int, rollout_len: int):
    """An actor body for a gymnax env: ``body(index, device, key) -> step_fn`` where
    ``step_fn(params) -> Trajectory`` runs one jitted rollout on ``device``. A
    recurrent core's state per env stays on the device between rollouts,
    beside the env state, and each trajectory carries the one it started from."""
    batch_env = envs.BatchEnv(envs.EpisodeStats(learner.act_env), num_envs)
    spec = learner.spec

    def rollout(params, env_state, obs, core_carry, key):
        if core_carry is None:
            env_state, obs, traj = impala.rollout(learner, batch_env, env_params, params,
                                                  env_state, obs, key, rollout_len)
            return env_state, obs, None, traj
        return impala.rollout_recurrent(spec, batch_env, env_params, params, env_state, obs,
                                        core_carry, key, rollout_len)

    run_rollout = jax.jit(rollout)

    def body(index: int, device, key: jax.Array):
        key = jax.device_put(jax.random.fold_in(key, index), device)
        key, k_reset = jax.random.split(key)
        obs, env_state = jax.jit(batch_env.reset)(k_reset, env_params)
        state = {"env_state": env_state, "obs": obs, "key": key,
                 "core_carry": initial_carry(learner, num_envs, device)}

        def step(params):
            key, k_rollout = jax.random.split(state["key"])
            env_state, obs, core_carry, traj = run_rollout(
                params, state["env_state"], state["obs"], state["core_carry"], k_rollout)
            state.update(env_state=env_state, obs=obs, core_carry=core_carry, key=key)
            return jax.device_get(traj)  # waits for the rollout; hands the learner host arrays

        return step, lambda: None

    return body


def initial_carry(learner: impala.Learner, num_envs: int, device) -> Any:
    """A fresh core state for ``num_envs`` envs on ``device`` (None without a core):
    every actor starts, and restarts after a resume, from zeros with fresh envs."""
    if not learner.spec.ac.recurrent:
        return None
    return jax.device_put(actor_critic.initial_carry(learner.spec.ac, (num_envs,)), device)


_HOST_COLUMNS = ("obs", "action", "behaviour_log_prob", "reward", "terminated", "truncated",
                 "final_obs", "episode_return", "episode_done")


def host_actor(learner: impala.Learner, make_env: Callable[[int, int], Any], num_envs: int,
               rollout_len: int):
    """An actor body for host envs (``make_env(num_envs, seed)``, e.g. a
    :class:`GymnasiumBatchEnv`): the policy runs jitted on the actor's device,
    the env steps in Python. A recurrent core's state per env stays on the
    device between policy calls, is set back to zeros where the env reported
    an episode end (terminated or truncated) before the next observation goes
    in, and each trajectory carries the state it started from."""

    @jax.jit
    def policy(params, obs, key, t):
        return learner.policy(params, obs, jax.random.fold_in(key, t))

    @jax.jit
    def recurrent_policy(params, obs, carry, ended, key, t):
        # The host env has auto-reset where ``ended``: ``obs`` there is a new
        # episode's first, which must meet a fresh state.
        carry = actor_critic.reset_carry(carry, ended)
        action, log_prob, after = impala.recurrent_policy(learner.spec, params, carry, obs,
                                                          jax.random.fold_in(key, t))
        return action, log_prob, carry, after

    def body(index: int, device, key: jax.Array):
        seed = int(jax.random.randint(jax.random.fold_in(key, index), (), 0, 2**30))
        env = make_env(num_envs, seed)
        state = {"obs": env.reset(), "key": jax.device_put(jax.random.fold_in(key, index), device),
                 "core_carry": initial_carry(learner, num_envs, device),
                 "ended": np.zeros(num_envs, bool)}

        def act(params, key, t):
            """``(action, log μ, the core state the step started from or None)``."""
            obs = jax.device_put(state["obs"], device)
            if state["core_carry"] is None:
                action, log_prob = policy(params, obs, key, t)
                carry = None
            else:
                action, log_prob, carry, state["core_carry"] = recurrent_policy(
                    params, obs, state["core_carry"], state["ended"], key, t)
            return np.asarray(action), np.asarray(log_prob), carry

        def step(params):
            key, k_rollout = jax.random.split(state["key"])
            state["key"] = key
            columns = collections.defaultdict(list)
            start_carry = None
            for t in range(rollout_len):
                action, log_prob, carry = act(params, k_rollout, t)
                if t == 0:
                    start_carry = carry
                obs, reward, terminated, truncated, final_obs, ep_ret, ep_done = env.step(action)
                values = (state["obs"], action, log_prob, reward, terminated, truncated,
                          final_obs, ep_ret, ep_done)
                for name, value in zip(_HOST_COLUMNS, values):
                    columns[name].append(value)
                state.update(obs=obs, ended=np.logical_or(terminated, truncated))
            return impala.Trajectory(next_obs=state["obs"], core_carry=jax.device_get(start_carry),
                                     **{k: np.stack(v) for k, v in columns.items()})

        return step, env.close

    return body
