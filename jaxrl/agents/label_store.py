"""A durable, append-only store of preference labels (JSON Lines).

One label is one line, written with a single ``write`` and ``fsync``'d before
:meth:`LabelStore.append` returns, so a completed label survives a crash or a
kill. A kill in the middle of a write can leave at most a torn last line
(no trailing newline, or not valid JSON): :func:`read_labels` skips it, and
opening the store for appending first truncates it away, so the file never
holds a corrupt line followed by good ones.

A run labelled by people keeps its store at ``<run>/labels.jsonl``
(:mod:`jaxrl.feedback`); the labelling page or notebook appends, the run reads.

Schema (one JSON object per line, ``SCHEMA_VERSION`` = 1)::

    {"v": 1,                      schema version
     "left": 1234, "right": 987,  segment ids (see reward_model.sample_segments)
     "choice": "left",            left | right | equal | skip
     "labeller": "oracle",        who answered (a user name, "oracle", ...)
     "time": 1732500000.123}      Unix timestamp of the answer, seconds

``skip`` records that a query was shown and not answered; it carries no
preference (:func:`preference_of` returns None).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Iterator

SCHEMA_VERSION = 1
CHOICES = ("left", "right", "equal", "skip")
_PREFERENCE = {"left": 1.0, "right": 0.0, "equal": 0.5, "skip": None}


@dataclasses.dataclass(frozen=True)
class Label:
    left: int
    right: int
    choice: str
    labeller: str
    time: float

    def __post_init__(self):
        if self.choice not in CHOICES:
            raise ValueError(f"Label.choice={self.choice!r} is invalid: expected one of {CHOICES}")

    def to_json(self) -> str:
        return json.dumps({"v": SCHEMA_VERSION, "left": int(self.left), "right": int(self.right),
                           "choice": self.choice, "labeller": self.labeller, "time": float(self.time)},
                          separators=(",", ":"))


def preference_of(label: Label) -> float | None:
    """μ for the Bradley–Terry loss: 1 left, 0 right, 0.5 equal, None for skip."""
    return _PREFERENCE[label.choice]


def _parse(line: bytes) -> Label | None:
    try:
        record = json.loads(line)
        return Label(left=int(record["left"]), right=int(record["right"]), choice=record["choice"],
                     labeller=str(record["labeller"]), time=float(record["time"]))
    except (ValueError, KeyError, TypeError):
        return None


def _complete_prefix(data: bytes) -> tuple[list[Label], int]:
    """The labels of the complete, valid lines and the byte length they span.
    Reading stops at the first torn line (only the last one can be torn)."""
    labels, end = [], 0
    for raw in data.splitlines(keepends=True):
        if not raw.endswith(b"\n"):
            break
        label = _parse(raw)
        if label is None:
            break
        labels.append(label)
        end += len(raw)
    return labels, end


def read_labels(path: str | os.PathLike) -> list[Label]:
    """All complete labels in ``path`` (none if it does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    return _complete_prefix(path.read_bytes())[0]


class LabelStore:
    """Append-only label file. ``LabelStore(path)`` reloads what is there
    (``.labels``), drops a torn last line, and appends after it."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = self.path.read_bytes() if self.path.exists() else b""
        self.labels, end = _complete_prefix(data)
        if end != len(data):
            with open(self.path, "r+b") as f:
                f.truncate(end)
                f.flush()
                os.fsync(f.fileno())

    def append(self, left: int, right: int, choice: str, labeller: str,
               timestamp: float | None = None) -> Label:
        """Writes one label and returns once it is on disk."""
        label = Label(left=int(left), right=int(right), choice=choice, labeller=labeller,
                      time=time.time() if timestamp is None else float(timestamp))
        line = (label.to_json() + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)  # one write of one line: O_APPEND keeps it whole at the end
            os.fsync(fd)
        finally:
            os.close(fd)
        self.labels.append(label)
        return label

    def __len__(self) -> int:
        return len(self.labels)

    def __iter__(self) -> Iterator[Label]:
        return iter(self.labels)
