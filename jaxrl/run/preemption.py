"""Stopping a run when the cluster asks, and never waiting for ever on a peer.

SLURM and Kubernetes send SIGTERM some seconds (30 by default) before they
kill a job. Under :func:`stop_on_signals` (``jaxrl train`` enters it) SIGTERM
asks the run to stop at its next chunk boundary: :func:`jaxrl.run.train`
saves a checkpoint there and raises :class:`Preempted`, and the CLI exits with
status 143 and the command that continues the run (``--resume``), which ends
bit-identical to a run never interrupted, since checkpoints sit at chunk
boundaries.

The main thread may sit inside a chunk (a collective, in a multi-process run)
when the signal comes, and a Python signal handler runs only once it returns.
So a watchdog thread learns of the signal through ``signal.set_wakeup_fd``
(written by the C handler at once), says so, and exits the process itself
(:data:`EXIT_PREEMPTED`) if no chunk boundary comes within the grace period.
The same thread bounds the collectives of multi-process runs
(:meth:`RunSync.watched`): a chunk that takes far longer than any before it
means a peer is stuck, and the process exits with :data:`EXIT_STUCK` and a
message naming the wait and its bound.

In a multi-process run every process must take the same decision at the same
boundary, or one would wait in the next chunk for peers that have left.
:meth:`RunSync.at_boundary` has the processes exchange their stop requests
(and process 0's checkpoint clock) through the coordination service; one
SIGTERM to any process stops them all at the same boundary.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import select
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

EXIT_PREEMPTED = 128 + signal.SIGTERM
"""Exit status of a run stopped by SIGTERM (what a shell reports for a process SIGTERM ended)."""
EXIT_STUCK = 75
"""Exit status when a wait on another process ran out of time (EX_TEMPFAIL: resuming may work)."""
DEFAULT_GRACE_SECONDS = 25.0
"""Seconds from SIGTERM to a forced exit: inside SLURM's and Kubernetes' default 30 s."""
STUCK_FACTOR = 10
"""A chunk of a multi-process run counts as stuck once it takes this many times
the slowest chunk before it (and at least the peer timeout)."""

_POLL_SECONDS = 0.1


class Preempted(Exception):
    """The run stopped at a chunk boundary because a stop was requested (SIGTERM).

    Attributes:
      reason: who asked (``"SIGTERM"``, ``"SIGTERM on process 1"``).
      iteration: iterations done, and saved when ``checkpointed``.
      checkpointed: False when the run had no run directory to save into.
    """

    def __init__(self, reason: str, iteration: int, checkpointed: bool):
        self.reason, self.iteration, self.checkpointed = reason, iteration, checkpointed
        saved = "checkpoint saved" if checkpointed else "no run directory, so nothing was saved"
        super().__init__(f"stopped by {reason} after iteration {iteration}, {saved}")


@dataclasses.dataclass(frozen=True)
class Boundary:
    """What every process does at a chunk boundary."""

    stop: str | None
    """Why the run stops here, or None when it goes on."""
    checkpoint: bool
    """Save a checkpoint here (always when stopping)."""


# ---------------------------------------------------------------- stop requests

_stop_lock = threading.Lock()
_stop_reason: str | None = None


def request_stop(reason: str) -> None:
    """Asks the running (or next) :func:`jaxrl.run.train` to checkpoint and stop
    at its next chunk boundary. The first reason is kept."""
    global _stop_reason
    with _stop_lock:
        if _stop_reason is None:
            _stop_reason = reason


def stop_reason() -> str | None:
    """The pending stop request, or None."""
    return _stop_reason


def consume_stop() -> None:
    # The boundary that honours a request uses it up: a later run in the same
    # process (a notebook) starts afresh.
    global _stop_reason
    with _stop_lock:
        _stop_reason = None


# ---------------------------------------------------------------- the watchdog


class _Watchdog:
    """One daemon thread: reads the signal wake-up socket, and ends the
    process when a registered deadline passes."""

    def __init__(self):
        self._lock = threading.Lock()
        self._deadlines: dict[int, tuple[float, str, int]] = {}
        self._tokens = itertools.count()
        self._wakeup: socket.socket | None = None
        self._signals: dict[int, str] = {}
        self._grace = DEFAULT_GRACE_SECONDS
        self._hint = ""
        self._signalled = False
        threading.Thread(target=self._run, name="jaxrl-watchdog", daemon=True).start()

    def listen(self, wakeup: socket.socket, signals, grace: float, hint: str) -> None:
        with self._lock:
            self._wakeup = wakeup
            self._signals = {int(s): signal.Signals(s).name for s in signals}
            self._grace, self._hint = grace, hint

    def unlisten(self) -> None:
        with self._lock:
            self._wakeup = None

    def signalled(self, signum: int) -> None:
        """A stop signal arrived: ask for a stop and start the grace period (once)."""
        name = self._signals.get(signum, f"signal {signum}")
        request_stop(name)
        with self._lock:
            if self._signalled:
                return
            self._signalled = True
            grace = self._grace
        _say(
            f"jaxrl: {name} received: stopping at the next chunk boundary with a checkpoint, "
            f"or in {grace:g} s at the latest"
        )
        self.expect(
            grace,
            f"jaxrl: stopped: {name} came {grace:g} s ago and no chunk boundary since; the latest "
            "checkpoint stays the latest",
            EXIT_PREEMPTED,
        )

    def expect(self, seconds: float, message: str, status: int) -> int:
        """Ends the process with ``message`` and ``status`` in ``seconds`` unless
        :meth:`cancel` is called with the returned token first."""
        token = next(self._tokens)
        with self._lock:
            self._deadlines[token] = (time.monotonic() + seconds, message, status)
        return token

    def cancel(self, token: int) -> None:
        with self._lock:
            self._deadlines.pop(token, None)

    def _run(self) -> None:
        while True:
            wakeup = self._wakeup
            if wakeup is None:
                time.sleep(_POLL_SECONDS)
            else:
                try:
                    if select.select([wakeup], [], [], _POLL_SECONDS)[0]:
                        for signum in wakeup.recv(64):
                            if signum in self._signals:
                                self.signalled(signum)
                except (OSError, ValueError):  # closed by stop_on_signals' exit meanwhile
                    time.sleep(_POLL_SECONDS)
            now = time.monotonic()
            with self._lock:
                due = [d for d in self._deadlines.values() if d[0] <= now]
            if due:
                _, message, status = min(due)
                _exit_now(f"{message}; {self._hint}" if self._hint else message, status)


_watchdog_instance: _Watchdog | None = None
_watchdog_lock = threading.Lock()


def _watchdog() -> _Watchdog:
    global _watchdog_instance
    with _watchdog_lock:
        if _watchdog_instance is None:
            _watchdog_instance = _Watchdog()
        return _watchdog_instance


@contextlib.contextmanager
def deadline(seconds: float | None, message: str, status: int = EXIT_STUCK):
    """Within the block, the process ends with ``message`` and ``status`` once
    ``seconds`` pass (None: no bound). For waits no timeout of their own bounds."""
    if seconds is None:
        yield
        return
    watchdog = _watchdog()
    token = watchdog.expect(seconds, message, status)
    try:
        yield
    finally:
        watchdog.cancel(token)


@contextlib.contextmanager
def stop_on_signals(
    signals=(signal.SIGTERM,),
    *,
    grace_seconds: float = DEFAULT_GRACE_SECONDS,
    resume_hint: str = "",
):
    """Within the block, ``signals`` ask :func:`jaxrl.run.train` to checkpoint
    and stop at the next chunk boundary (it raises :class:`Preempted`); if the
    process has not ended ``grace_seconds`` after the signal, the watchdog ends
    it with :data:`EXIT_PREEMPTED`. Any exit the watchdog forces prints
    ``resume_hint`` (how to continue the run).

    Enter it in the main thread (Python runs signal handlers there). Leaving
    the block restores the previous handlers; a grace period already running
    goes on, since the process is expected to end.
    """
    if threading.current_thread() is not threading.main_thread():
        raise ValueError("stop_on_signals must be entered in the main thread")
    if not (isinstance(grace_seconds, (int, float)) and 0 < grace_seconds < float("inf")):
        raise ValueError(f"grace_seconds={grace_seconds!r} is invalid: expected a positive number")
    watchdog = _watchdog()
    receive, send = socket.socketpair()
    receive.setblocking(False)
    send.setblocking(False)

    def handler(signum, frame):
        # Nothing here: the watchdog thread hears of the signal through the
        # wake-up socket, even while this thread is blocked in a chunk, and a
        # handler that took locks or printed could deadlock with this thread.
        pass

    previous_fd = signal.set_wakeup_fd(send.fileno(), warn_on_full_buffer=False)
    previous = {s: signal.signal(s, handler) for s in signals}
    watchdog.listen(receive, signals, grace_seconds, resume_hint)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        signal.set_wakeup_fd(previous_fd)
        watchdog.unlisten()
        receive.close()
        send.close()


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _exit_now(message: str, status: int) -> None:
    """Ends the process from any thread, whatever the main thread is blocked in."""
    _say(message)
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    if "jax" in sys.modules:
        from jaxrl.run import coordination

        coordination.announce_exit(message)
    os._exit(status)


# ---------------------------------------------------------------- a run's agreements


class RunSync:
    """What the processes of one run agree on: its identity at the start, then
    the stop and checkpoint decisions at every chunk boundary. In a
    single-process run it only reads this process's stop request."""

    _runs = itertools.count()  # train() calls of this process; a job's processes count alike

    def __init__(self, identity: dict[str, Any]):
        import jax

        from jaxrl.run import coordination

        self._coordination = coordination
        self.multiprocess = coordination.is_multiprocess()
        self.process = jax.process_index()
        self._key = f"run{next(RunSync._runs)}"
        self._slowest_chunk = 0.0
        self._previous_boundary: int | None = None
        if self.multiprocess:
            coordination.check_same_run(identity, f"{self._key}/identity")

    @classmethod
    def start(
        cls,
        run_config: dict[str, Any],
        out_dir: str | os.PathLike | None,
        *,
        resume: bool,
        force: bool,
    ) -> RunSync:
        """For :func:`jaxrl.run.train`: every process of a job must run the same
        config on the same run directory, the same way."""
        where = None if out_dir is None else str(Path(out_dir).absolute())
        return cls({**run_config, "out_dir": where, "resume": resume, "force": force})

    def watched(self, chunk_fn):
        """``chunk_fn``, waited for under the watchdog in multi-process runs: its
        collectives would wait for ever on a stuck peer. The first chunk is
        unbounded (nothing tells how long it should take); later ones may take
        :data:`STUCK_FACTOR` times the slowest before, and at least the peer timeout."""
        if not self.multiprocess:
            return chunk_fn
        import jax

        def run(*args):
            bound = None
            if self._slowest_chunk:
                bound = max(self._coordination.peer_timeout(), STUCK_FACTOR * self._slowest_chunk)
            started = time.monotonic()
            message = (
                f"jaxrl: error: process {self.process} waited more than {bound:g} s in a chunk "
                "(its collectives wait for every process); another process is stuck or gone"
                if bound
                else ""
            )
            with deadline(bound, message):
                out = jax.block_until_ready(chunk_fn(*args))
            self._slowest_chunk = max(self._slowest_chunk, time.monotonic() - started)
            return out

        return run

    def at_boundary(self, chunk_index: int, checkpoint_due: bool) -> Boundary:
        """The decision of every process at the end of chunk ``chunk_index``:
        stop if any process was asked to; checkpoint when process 0's clock
        says so. Raises :class:`~jaxrl.run.coordination.PeerWaitError`
        when the others do not arrive within the peer timeout."""
        mine = stop_reason()
        if not self.multiprocess:
            decision = Boundary(mine, checkpoint_due or mine is not None)
        else:
            decision = self._agree(chunk_index, mine, checkpoint_due)
        if decision.stop is not None:
            consume_stop()
        return decision

    def _agree(self, chunk_index: int, mine: str | None, checkpoint_due: bool) -> Boundary:
        coordination = self._coordination
        values = coordination.exchange(
            f"{self._key}/boundary/{chunk_index}",
            json.dumps({"stop": mine, "checkpoint": bool(checkpoint_due)}),
            timeout=coordination.peer_timeout(),
            what=f"the other processes at the end of chunk {chunk_index}",
        )
        if self.process == 0 and self._previous_boundary is not None:
            # Everyone has read it: each published this boundary after reading that one.
            coordination.forget(f"{self._key}/boundary/{self._previous_boundary}")
        self._previous_boundary = chunk_index
        decoded = [json.loads(v) for v in values]
        stops = [f"{d['stop']} on process {i}" for i, d in enumerate(decoded) if d["stop"]]
        stop = ", ".join(stops) or None
        return Boundary(stop, decoded[0]["checkpoint"] or stop is not None)
