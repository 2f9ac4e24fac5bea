"""What a human-labelled run is doing, for the people labelling it.

The run's side of the labelling (:class:`jaxrl.feedback.HumanLabeller`) keeps
``<run>/labelling.json`` up to date: whether it is training or waiting for
labels, its iteration, the latest round whose labels it has used, and a
heartbeat (rewritten every :data:`HEARTBEAT_SECONDS` by a thread while the
run's labeller lives). Each write goes to a temporary name and is renamed
over the file, so a reader sees a whole status or the previous one.

:func:`run_status` reads it together with ``config.json`` and
``summary.json`` and says what the labelling page shows: ``starting`` (no
word from the run yet), ``training``, ``waiting`` (for labels), ``finished``
(summary.json says it completed, or :func:`mark_finished` was called) or
``gone`` (no heartbeat for :data:`GONE_AFTER_SECONDS`: the run crashed, was
stopped, or timed out waiting).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import threading
import time
import weakref
from pathlib import Path

STATUS = "labelling.json"
HEARTBEAT_SECONDS = 1.0
GONE_AFTER_SECONDS = 15.0
STATES = ("starting", "training", "waiting", "finished", "gone")


def status_path(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / STATUS


def _write_atomically(path: Path, record: dict, durable: bool) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w") as f:
        json.dump(record, f, separators=(",", ":"))
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def read_status(run_dir: str | os.PathLike) -> dict | None:
    """The run's last written status (None if there is none or it is unreadable)."""
    try:
        record = json.loads(status_path(run_dir).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


class StatusWriter:
    """Writes ``<run>/labelling.json`` for one run process. :meth:`update`
    writes now; :meth:`note` only remembers (it is called every iteration,
    so it must cost nothing) and the heartbeat thread writes it within
    :data:`HEARTBEAT_SECONDS`. The thread stops when the writer is dropped
    or :meth:`close` is called."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = status_path(run_dir)
        previous = read_status(run_dir) or {}
        consumed = previous.get("consumed_iteration")
        self.fields: dict = {"state": "training",
                             "consumed_iteration": consumed if isinstance(consumed, int) else -1}
        self.started = time.time()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def note(self, **fields) -> None:
        self.fields.update(fields)
        self._start_heartbeat()

    def update(self, durable: bool = False, **fields) -> None:
        self.fields.update(fields)
        self._write(durable)
        self._start_heartbeat()

    def _write(self, durable: bool = False) -> None:
        with self._lock:
            if not self.path.parent.is_dir():  # the run directory is not there (yet): write nothing
                return
            record = {"v": 1, **self.fields, "pid": os.getpid(), "started": self.started,
                      "heartbeat": time.time()}
            with contextlib.suppress(OSError):  # a status is advice: never fail the run over it
                _write_atomically(self.path, record, durable)

    def _start_heartbeat(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=_beat, args=(weakref.ref(self), self._closed),
                                            name="jaxrl-labelling-heartbeat", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._closed.set()


def _beat(writer_ref: weakref.ref, closed: threading.Event) -> None:
    # Holds the writer only while writing, so dropping the labeller stops the beat.
    while not closed.wait(HEARTBEAT_SECONDS):
        writer = writer_ref()
        if writer is None:
            return
        writer._write()
        del writer


def mark_finished(run_dir: str | os.PathLike) -> None:
    """Records that the run has finished training, so the labelling page
    says so and stops waiting for it. The page also sees a completed
    ``summary.json``; call this where a run ends without one."""
    record = {**(read_status(run_dir) or {}), "v": 1, "state": "finished", "heartbeat": time.time()}
    _write_atomically(status_path(run_dir), record, durable=True)


@dataclasses.dataclass(frozen=True)
class RunStatus:
    """The run as the labelling page describes it (None: not known)."""

    state: str
    iteration: int | None = None
    iterations: int | None = None
    env_steps: int | None = None
    total_steps: int | None = None
    label_budget: int | None = None
    waiting_for: int | None = None
    consumed_iteration: int = -1
    heartbeat_age: float | None = None

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def _read_json(path: Path) -> dict:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _finished(run_dir: Path, status: dict | None) -> bool:
    if status is not None and status.get("state") == "finished":
        return True
    summary = run_dir / "summary.json"
    if _read_json(summary).get("status") != "completed":
        return False
    # A summary older than the live run's start belongs to an earlier part of it.
    started = (status or {}).get("started", 0.0)
    return status is None or summary.stat().st_mtime >= float(started) - 1.0


def _int_or_none(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def run_status(run_dir: str | os.PathLike, now: float | None = None) -> RunStatus:
    """What the run in ``run_dir`` is doing, from its status, config and summary."""
    run_dir = Path(run_dir)
    now = time.time() if now is None else now
    status = read_status(run_dir)
    config = _read_json(run_dir / "config.json")
    agent_config = config.get("agent_config") if isinstance(config.get("agent_config"), dict) else {}
    per_iteration = _int_or_none(config.get("env_steps_per_step"))
    iteration = _int_or_none((status or {}).get("iteration"))
    heartbeat = (status or {}).get("heartbeat")
    age = now - heartbeat if isinstance(heartbeat, (int, float)) else None
    if _finished(run_dir, status):
        state = "finished"
    elif status is None:
        state = "starting"
    elif age is None or age > GONE_AFTER_SECONDS or status.get("state") == "gone":
        state = "gone"
    else:
        state = status.get("state") if status.get("state") in ("training", "waiting") else "training"
    consumed = _int_or_none((status or {}).get("consumed_iteration"))
    return RunStatus(
        state=state,
        iteration=iteration,
        iterations=_int_or_none(config.get("iterations")),
        env_steps=None if iteration is None or per_iteration is None else (iteration + 1) * per_iteration,
        total_steps=_int_or_none(config.get("total_steps")),
        label_budget=_int_or_none(agent_config.get("label_budget")),
        waiting_for=_int_or_none((status or {}).get("waiting_for")) if state == "waiting" else None,
        consumed_iteration=-1 if consumed is None else consumed,
        heartbeat_age=age,
    )


def _count(n: int | None) -> str:
    return "?" if n is None else f"{n:,}"


def run_text(run: RunStatus, rounds: int, run_dir: str | os.PathLike, pending: int | None = None) -> str:
    """One sentence on what the run is doing, for a person labelling it
    (``pending``: the queries without an answer, fresher than the run's own
    count, which it updates as it polls)."""
    at = ""
    if run.iteration is not None:
        at = f"iteration {_count(run.iteration + 1)} of {_count(run.iterations)}"
        if run.env_steps is not None:
            at += f", {_count(run.env_steps)} of {_count(run.total_steps)} env steps"
    if run.state == "starting":
        return "The run has not reported yet (it may still be compiling); queries appear here when it asks."
    if run.state == "training":
        return f"Training: {at}; {rounds} round{'s' if rounds != 1 else ''} asked so far."
    if run.state == "waiting":
        left = run.waiting_for if pending is None else pending
        if left == 0:
            return f"Labels received: the run is taking them ({at})."
        return f"Waiting for labels: {_count(left)} to answer in round {rounds} ({at})."
    if run.state == "finished":
        return f"Finished: the run has completed training ({rounds} rounds of labels)."
    age = "" if run.heartbeat_age is None else f" for {run.heartbeat_age:.0f} s"
    return (f"Gone: no word from the run{age} (it stopped, crashed, or timed out waiting; {at or 'no iteration'})."
            f" Continue it with `jaxrl train rm-ppo --out {run_dir} --resume`; this page follows it again.")


def label_progress(labelled: int, skipped: int, pending: int, budget: int | None) -> dict:
    """The labels given against the budget: ``labelled`` answers stand, of
    which ``skipped`` skips; ``text`` says it in words."""
    given = labelled - skipped  # a skip teaches nothing, so the run asks again
    if budget is None:
        text = f"{given} labels given ({skipped} skipped)"
        fraction = 0.0
    else:
        text = f"{given} of {budget} labels given, {max(0, budget - given)} to go ({skipped} skipped)"
        fraction = min(1.0, given / budget) if budget else 1.0
    return {"labelled": labelled, "given": given, "skipped": skipped, "pending": pending,
            "budget": budget, "remaining": None if budget is None else max(0, budget - given),
            "fraction": fraction, "text": text}


def waiting_text(run: RunStatus) -> str:
    """What to say when no query is waiting."""
    if run.state == "gone":
        return "No query is waiting, and the run is not running: new queries appear here when it is resumed."
    if run.state == "finished":
        return "The run has finished."
    return "No query is waiting. New queries appear here by themselves as soon as the run asks."


@contextlib.contextmanager
def store_lock(run_dir: str | os.PathLike):
    """Excludes the run's last look at a round's answers and an undo on the
    page from each other, so no answer is taken back after the run has
    used it (an advisory lock on ``labels.jsonl``; a no-op where there is
    no such file or no ``fcntl``)."""
    try:
        import fcntl
        fd = os.open(Path(run_dir) / "labels.jsonl", os.O_RDONLY)
    except (ImportError, OSError):
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock
