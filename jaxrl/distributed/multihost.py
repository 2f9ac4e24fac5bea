"""Several processes (hosts) as one JAX runtime, through ``jax.distributed``.

Every process runs the same program (``jaxrl train ... --distributed``). Before
any computation, :func:`initialize` connects it to the coordinator (process 0
hosts it); afterwards ``jax.devices()`` lists the devices of all processes, a
mesh over them (``make_mesh()``) spans the hosts, and a jitted step on that
mesh is one SPMD program in which XLA all-reduces gradients across hosts.
On CPU the collectives run over gloo (TCP), so two local processes are a
faithful miniature of two hosts.

Where the settings come from, first found wins:

1. arguments (``--coordinator HOST:PORT --num-processes N --process-id I``);
2. ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``;
3. JAX's own cluster detection (SLURM, Open MPI, Kubernetes/GKE, Cloud TPU),
   which ``jax.distributed.initialize`` does when given nothing.

Failure is bounded: a process that cannot reach the coordinator within
``initialization_timeout`` seconds raises :class:`DistributedError`; once
running, a process that stops sending heartbeats for ``heartbeat_timeout``
seconds (it died, or its host did) is reported by the coordination service and
every surviving process terminates with JAX's fatal error ("... detected fatal
errors. This most likely indicates that another task died") and a non-zero
status instead of waiting forever inside a collective.

Processes that are alive but disagree wait on each other as surely as dead
ones, and heartbeats never end that. So the processes compare what they were
asked to do before they compute (:func:`check_same_run`: a different ``--out``,
seed or setting on one host is refused on every host), agree at every chunk
boundary through the coordination service's key-value store (:func:`exchange`),
and every such wait has a deadline. A process that exits tells the others
(:func:`announce_exit`), so their waits end at once instead of at the deadline.
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import json
import os
import socket
import sys
import time
from typing import Any

DEFAULT_INITIALIZATION_TIMEOUT = 300
"""Seconds a process waits for the coordinator and the other processes to join."""
DEFAULT_HEARTBEAT_TIMEOUT = 100
"""Seconds without a heartbeat after which a process counts as dead."""

ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"


KV_PREFIX = "jaxrl"
"""Root of jaxrl's keys in the coordination service's key-value store."""

_SHOWN_VALUE_CHARS = 80  # longer values are named by a digest in error messages


class DistributedError(RuntimeError):
    """The multi-process runtime could not start (the coordinator is unreachable, ...)."""


class RunMismatchError(DistributedError):
    """The processes of one job were asked to run different things."""


class PeerWaitError(DistributedError):
    """A wait on the other processes ran out of time, or a process it waited for exited."""


@dataclasses.dataclass(frozen=True)
class ProcessSpec:
    """Where this process sits in the job. ``None`` fields are left to JAX's
    cluster detection (SLURM, ...)."""

    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    initialization_timeout: int = DEFAULT_INITIALIZATION_TIMEOUT
    heartbeat_timeout: int = DEFAULT_HEARTBEAT_TIMEOUT

    def validate(self) -> None:
        """Raises ValueError naming the setting whose value is not allowed."""
        if self.coordinator is not None:
            _split_address(self.coordinator)
        if self.num_processes is not None and self.num_processes < 1:
            raise ValueError(
                f"num_processes={self.num_processes} is invalid: expected a positive integer"
            )
        if self.process_id is not None:
            if self.process_id < 0 or (
                self.num_processes is not None and self.process_id >= self.num_processes
            ):
                raise ValueError(
                    f"process_id={self.process_id} is invalid: expected 0..num_processes-1 "
                    f"(num_processes={self.num_processes})"
                )
        for name in ("initialization_timeout", "heartbeat_timeout"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} is invalid: expected >= 1 second")


def resolve(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    initialization_timeout: int = DEFAULT_INITIALIZATION_TIMEOUT,
    heartbeat_timeout: int = DEFAULT_HEARTBEAT_TIMEOUT,
    environ: dict[str, str] | None = None,
) -> ProcessSpec:
    """Arguments first, then the ``JAX_*`` environment variables; validated."""
    environ = os.environ if environ is None else environ

    def from_env(value, name, convert):
        if value is not None or name not in environ:
            return value
        try:
            return convert(environ[name])
        except ValueError:
            raise ValueError(f"{name}={environ[name]!r} is invalid: expected an integer") from None

    spec = ProcessSpec(
        coordinator=from_env(coordinator, ENV_COORDINATOR, str),
        num_processes=from_env(num_processes, ENV_NUM_PROCESSES, int),
        process_id=from_env(process_id, ENV_PROCESS_ID, int),
        initialization_timeout=initialization_timeout,
        heartbeat_timeout=heartbeat_timeout,
    )
    spec.validate()
    return spec


def initialize(spec: ProcessSpec | None = None) -> ProcessSpec:
    """Joins this process to the job. Call before any other JAX computation.

    Raises :class:`DistributedError` when the coordinator cannot be reached
    within ``spec.initialization_timeout`` seconds.
    """
    import jax

    spec = resolve() if spec is None else spec
    spec.validate()
    # XLA:CPU has no cross-process collectives unless told to use gloo; GPU
    # and TPU use their own (NCCL, ICI) and ignore this setting.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if spec.coordinator is not None and spec.process_id not in (None, 0):
        # Process 0 hosts the coordinator. The others check that it listens
        # first: JAX would abort the process with an opaque DEADLINE_EXCEEDED.
        wait_for_coordinator(spec.coordinator, spec.initialization_timeout)
    # JAX's preemption notifier takes over SIGTERM and only records it for a
    # sync point that jaxrl never polls, so the process would ignore SIGTERM;
    # jaxrl.run.preemption handles it instead.
    jax.config.update("jax_enable_preemption_service", False)
    try:
        jax.distributed.initialize(
            coordinator_address=spec.coordinator,
            num_processes=spec.num_processes,
            process_id=spec.process_id,
            initialization_timeout=spec.initialization_timeout,
            heartbeat_timeout_seconds=spec.heartbeat_timeout,
            # A process that exits waits this long for the others at shutdown.
            shutdown_timeout_seconds=spec.heartbeat_timeout,
        )
    except (RuntimeError, ValueError) as e:
        raise DistributedError(f"jax.distributed.initialize failed: {' '.join(str(e).split())}") from e
    global _spec
    _spec = spec
    # Registered after JAX's own exit handler, so it runs first, while the
    # coordination service still answers.
    atexit.register(announce_exit, "its program ended; see its output")
    print(
        f"jaxrl: process {jax.process_index()}/{jax.process_count()} joined "
        f"({jax.local_device_count()} local of {jax.device_count()} devices); if a process dies "
        f"the others stop within about {spec.heartbeat_timeout} s",
        file=sys.stderr,
        flush=True,
    )
    return spec


_spec = ProcessSpec()
"""The settings of :func:`initialize` (defaults if JAX was initialised otherwise)."""


def peer_timeout() -> float:
    """Seconds a process waits for the others at a chunk boundary."""
    return float(_spec.heartbeat_timeout)


def startup_timeout() -> float:
    """Seconds a process waits for the others to reach the start of a run."""
    return float(_spec.initialization_timeout)


def is_multiprocess() -> bool:
    import jax

    return jax.process_count() > 1


def exchange(key: str, value: str, *, timeout: float, what: str) -> list[str]:
    """Publishes this process's ``value`` under ``key`` and returns every
    process's value, in process order, once all have published.

    Each ``key`` may be exchanged once per job. Raises :class:`PeerWaitError`
    naming ``what`` was awaited, from whom, and ``timeout``, when some process
    has not published after ``timeout`` seconds or has exited without publishing.
    """
    import jax

    client = _client()
    me, count = jax.process_index(), jax.process_count()
    directory = f"{KV_PREFIX}/{key}/"
    client.key_value_set(directory + str(me), value)
    deadline = time.monotonic() + timeout
    pause = 0.0005
    while True:
        # Exits first: a process publishes before it exits, so one seen as
        # exited whose value is then still missing will never send it.
        exited = _exited(client)
        values = dict(client.key_value_dir_get(directory))
        missing = [i for i in range(count) if directory + str(i) not in values]
        if not missing:
            return [values[directory + str(i)] for i in range(count)]
        gone = [i for i in missing if i in exited]
        if gone:
            raise PeerWaitError(
                f"process {me} waited for {what}, but process {gone[0]} exited first "
                f"({exited[gone[0]]})"
            )
        if time.monotonic() >= deadline:
            raise PeerWaitError(
                f"process {me} waited {timeout:g} s for {what} from process(es) "
                f"{', '.join(map(str, missing))} in vain; they are stuck or run something else"
            )
        time.sleep(pause)
        pause = min(2 * pause, 0.05)


def forget(key: str) -> None:
    """Deletes ``key`` and everything under it from the key-value store."""
    _client().key_value_delete(f"{KV_PREFIX}/{key}")


def announce_exit(reason: str) -> None:
    """Tells the other processes that this one is exiting (their waits on it end).

    Never raises: it runs on the way out, when the service may be gone."""
    try:
        import jax

        _client().key_value_set(
            f"{KV_PREFIX}/exited/{jax.process_index()}", reason, allow_overwrite=True
        )
    except Exception:  # noqa: BLE001 - nothing to do about it while exiting
        pass


def check_same_run(identity: dict[str, Any], key: str, *, timeout: float | None = None) -> None:
    """Raises :class:`RunMismatchError` on every process unless every process
    passed an equal ``identity`` (JSON-able: run directory, algorithm, settings...).

    The message names each field that differs and its value on each process,
    so every process reports the same one line.
    """
    values = exchange(
        key,
        json.dumps(identity, sort_keys=True),
        timeout=startup_timeout() if timeout is None else timeout,
        what="the description of the run",
    )
    differences = describe_differences([json.loads(v) for v in values])
    if differences:
        raise RunMismatchError(
            "the processes of this job were started with different runs: "
            f"{'; '.join(differences)}; start every process with the same arguments"
        )


def describe_differences(identities: list[dict[str, Any]]) -> list[str]:
    """One ``field: process 0 X, process 1 Y`` entry per field on which some
    process differs from process 0; nested dicts are compared field by field."""
    flat = [_flatten(identity) for identity in identities]
    fields = sorted(set().union(*flat))
    differences = []
    for field in fields:
        shown = [_show(f.get(field, "<missing>")) for f in flat]
        if any(s != shown[0] for s in shown[1:]):
            values = ", ".join(
                f"process {i} {s}" for i, s in enumerate(shown) if i == 0 or s != shown[0]
            )
            differences.append(f"{field}: {values}")
    return differences


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for name, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{name}."))
        else:
            flat[prefix + name] = value
    return flat


def _show(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    if len(text) <= _SHOWN_VALUE_CHARS:
        return text
    return f"<{len(text)} chars, sha256 {hashlib.sha256(text.encode()).hexdigest()[:12]}>"


def _exited(client) -> dict[int, str]:
    prefix = f"{KV_PREFIX}/exited/"
    return {int(k[len(prefix):]): v for k, v in client.key_value_dir_get(prefix)}


def _client():
    from jax._src import distributed

    client = distributed.global_state.client
    if client is None:
        raise DistributedError("jax.distributed is not initialized in this process")
    return client


def wait_for_coordinator(address: str, timeout: float) -> None:
    """Returns once ``HOST:PORT`` accepts TCP connections; raises
    :class:`DistributedError` after ``timeout`` seconds."""
    host, port = _split_address(address)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=min(5.0, timeout)):
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise DistributedError(
                    f"cannot reach the coordinator at {address} within {timeout:g} s ({e}); "
                    "is process 0 running, and is the address reachable from this host?"
                ) from None
        time.sleep(0.2)


def is_primary() -> bool:
    """True in the process that writes logs, checkpoints and summaries (process 0)."""
    import jax

    return jax.process_index() == 0


def free_port() -> int:
    """A TCP port on localhost that is free now (for local multi-process runs and tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"coordinator={address!r} is invalid: expected HOST:PORT, e.g. 10.0.0.1:1234")
    return host, int(port)
