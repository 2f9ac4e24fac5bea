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
Those agreements live in :mod:`jaxrl.run.coordination`, beside the host loop
that uses them; this module joins the job and sets their timeouts.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import socket
import sys
import time

from jaxrl.cpu import one_device_per_process
from jaxrl.run import coordination

# The agreement primitives live with the host loop that uses them (it must
# not import this layer); their old names here stay valid.
from jaxrl.run.coordination import (  # noqa: F401
    DEFAULT_HEARTBEAT_TIMEOUT,
    DEFAULT_INITIALIZATION_TIMEOUT,
    KV_PREFIX,
    DistributedError,
    PeerWaitError,
    RunMismatchError,
    announce_exit,
    check_same_run,
    describe_differences,
    exchange,
    forget,
    is_multiprocess,
    is_primary,
    peer_timeout,
    startup_timeout,
)

ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"


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
    one_device_per_process()
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
    coordination.set_timeouts(peer=spec.heartbeat_timeout, startup=spec.initialization_timeout)
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
