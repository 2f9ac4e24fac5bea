"""What the processes of one job agree on, through the coordination service
that ``jax.distributed`` starts: their count, whether they were asked to run
the same thing, and values exchanged at agreed points (chunk boundaries).

These are the primitives the host loop needs in a multi-process run; joining
the job (:func:`jaxrl.distributed.multihost.initialize`) sits above, in
``distributed/``, and sets the timeouts used here. In a single-process run
nothing here talks to a service: :func:`is_multiprocess` is False.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from jaxrl.run.config_io import flatten_dict

DEFAULT_INITIALIZATION_TIMEOUT = 300
"""Seconds a process waits for the coordinator and the other processes to join."""
DEFAULT_HEARTBEAT_TIMEOUT = 100
"""Seconds without a heartbeat after which a process counts as dead."""

KV_PREFIX = "jaxrl"
"""Root of jaxrl's keys in the coordination service's key-value store."""

_SHOWN_VALUE_CHARS = 80  # longer values are named by a digest in error messages

_timeouts = {"peer": float(DEFAULT_HEARTBEAT_TIMEOUT), "startup": float(DEFAULT_INITIALIZATION_TIMEOUT)}


class DistributedError(RuntimeError):
    """The multi-process runtime could not start (the coordinator is unreachable, ...)."""


class RunMismatchError(DistributedError):
    """The processes of one job were asked to run different things."""


class PeerWaitError(DistributedError):
    """A wait on the other processes ran out of time, or a process it waited for exited."""


def set_timeouts(*, peer: float, startup: float) -> None:
    """The bounds of every wait on the other processes (the job's heartbeat and
    initialisation timeouts, set when the process joins)."""
    _timeouts.update(peer=float(peer), startup=float(startup))


def peer_timeout() -> float:
    """Seconds a process waits for the others at a chunk boundary."""
    return _timeouts["peer"]


def startup_timeout() -> float:
    """Seconds a process waits for the others to reach the start of a run."""
    return _timeouts["startup"]


def is_multiprocess() -> bool:
    import jax

    return jax.process_count() > 1


def is_primary() -> bool:
    """True in the process that writes logs, checkpoints and summaries (process 0)."""
    import jax

    return jax.process_index() == 0


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
    flat = [flatten_dict(identity) for identity in identities]
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
