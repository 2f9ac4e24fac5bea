"""A durable, append-only store of preference labels (JSON Lines).

One label is one line, written with a single ``write`` and ``fsync``'d before
:meth:`LabelStore.append` returns, so a completed label survives a crash or a
kill. The store only ever appends: no reader or writer removes or rewrites a
byte already in the file, so a label once saved is never lost.

Reading is tolerant, so that one bad line costs one label and not the ones
after it:

- a bad line (not JSON, not UTF-8, a wrong field) is skipped and reported
  once per process as a :class:`DamagedFileWarning` naming the file and line;
  every valid line after it is still read;
- a last line with no trailing newline that does not parse is a torn write
  (a writer killed mid-line, or one still writing): it is skipped without a
  report. It is never truncated (it may be another process's label still
  being written); the next :meth:`LabelStore.append` starts a new line after
  it, so the torn bytes stay in the file as a (reported) bad line;
- blank lines are ignored.

A run labelled by people keeps its store at ``<run>/labels.jsonl``
(:mod:`jaxrl.feedback`); the labelling page or notebook appends, the run reads.

Schema (one JSON object per line, ``SCHEMA_VERSION`` = 1)::

    {"v": 1,                      schema version (optional when reading)
     "left": 1234, "right": 987,  segment ids (see reward_model.sample_segments)
     "choice": "left",            left | right | equal | skip | undo
     "labeller": "oracle",        who answered (a user name, "oracle", ...)
     "time": 1732500000.123}      Unix timestamp of the answer, seconds

``skip`` records that a query was shown and not answered; it carries no
preference (:func:`preference_of` returns None).

``undo`` takes an answer back without removing it: it retracts the answer
standing for its pair, and the pair is unanswered again until a later line
answers it. Every reader of answers goes through :func:`standing_answers`,
which replays the lines in order (the first answer of a pair stands until an
undo; an undo with no standing answer changes nothing).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Hashable, Iterator

SCHEMA_VERSION = 1
CHOICES = ("left", "right", "equal", "skip")
UNDO = "undo"
RECORDS = CHOICES + (UNDO,)  # what a line's "choice" may say
_PREFERENCE = {"left": 1.0, "right": 0.0, "equal": 0.5, "skip": None}
_BOM = b"\xef\xbb\xbf"


class DamagedFileWarning(UserWarning):
    """Part of a file jaxrl reads (a label line, a query round) is unreadable
    and was skipped; nothing was removed from the file."""


_reported: set[Hashable] = set()


def warn_once(key: Hashable, message: str) -> None:
    """Warns ``message`` the first time this process sees ``key``: readers
    poll the same files many times a second, and one report is enough."""
    if key not in _reported:
        _reported.add(key)
        warnings.warn(message, DamagedFileWarning, stacklevel=3)


@dataclasses.dataclass(frozen=True)
class Label:
    left: int
    right: int
    choice: str
    labeller: str
    time: float

    def __post_init__(self):
        if self.choice not in RECORDS:
            raise ValueError(f"Label.choice={self.choice!r} is invalid: expected one of {RECORDS}")

    @property
    def key(self) -> tuple[int, int]:
        return (self.left, self.right)

    def to_json(self) -> str:
        return json.dumps({"v": SCHEMA_VERSION, "left": int(self.left), "right": int(self.right),
                           "choice": self.choice, "labeller": self.labeller, "time": float(self.time)},
                          separators=(",", ":"))


def preference_of(label: Label) -> float | None:
    """μ for the Bradley–Terry loss: 1 left, 0 right, 0.5 equal, None for skip."""
    if label.choice == UNDO:
        raise ValueError(f"{label} is an undo, not an answer: read answers with standing_answers")
    return _PREFERENCE[label.choice]


def standing_answers(labels: list[Label]) -> dict[tuple[int, int], Label]:
    """The answer standing for each (left, right) pair after the records
    ``labels`` in file order: a pair's first answer stands until an undo
    retracts it; the next answer after that stands instead."""
    standing: dict[tuple[int, int], Label] = {}
    for label in labels:
        if label.choice == UNDO:
            standing.pop(label.key, None)
        else:
            standing.setdefault(label.key, label)
    return standing


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _field(record: dict, name: str, ok, expected: str):
    if name not in record:
        raise ValueError(f"missing field {name!r}")
    value = record[name]
    if not ok(value):
        raise ValueError(f"field {name!r}={value!r} is invalid: expected {expected}")
    return value


def parse_line(line: bytes) -> Label:
    """The label on one line; ValueError saying what is wrong with it."""
    try:
        record = json.loads(line)
    except UnicodeDecodeError:
        raise ValueError("not UTF-8") from None
    except ValueError as e:
        raise ValueError(f"not JSON ({e})") from None
    if not isinstance(record, dict):
        raise ValueError(f"not a JSON object but {type(record).__name__}")
    if record.get("v", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise ValueError(f"schema version v={record['v']!r} is not supported (expected {SCHEMA_VERSION})")
    number = lambda v: (_is_int(v) or isinstance(v, float)) and math.isfinite(v)
    return Label(left=_field(record, "left", _is_int, "an integer"),
                 right=_field(record, "right", _is_int, "an integer"),
                 choice=_field(record, "choice", lambda v: isinstance(v, str) and v in RECORDS,
                               f"one of {RECORDS}"),
                 labeller=_field(record, "labeller", lambda v: isinstance(v, str), "a string"),
                 time=float(_field(record, "time", number, "a finite number")))


@dataclasses.dataclass(frozen=True)
class Contents:
    """What a label file holds: its valid ``labels`` in file order, the
    ``damaged`` lines skipped as ``(line number, reason)`` (1-based), and
    whether it ends in a ``torn`` line (an unterminated, unreadable write)."""

    labels: list[Label]
    damaged: list[tuple[int, str]]
    torn: bool


def _lines(data: bytes) -> list[bytes]:
    return data.removeprefix(_BOM).split(b"\n")  # a BOM: the file went through an editor


def scan(data: bytes) -> Contents:
    """Parses the bytes of a label file; never raises on bad content."""
    labels, damaged, torn = [], [], False
    lines = _lines(data)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            labels.append(parse_line(line))
        except ValueError as e:
            if number == len(lines):  # no newline after it: a write cut short
                torn = True
            else:
                damaged.append((number, str(e)))
    return Contents(labels, damaged, torn)


def load(path: str | os.PathLike) -> Contents:
    """The contents of the label file ``path`` (empty if it does not exist);
    each damaged line is reported once as a :class:`DamagedFileWarning`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Contents([], [], False)
    contents = scan(data)
    lines = _lines(data) if contents.damaged else []
    for number, reason in contents.damaged:
        warn_once((str(path.resolve()), number, lines[number - 1]), skipped_line(path, number, reason))
    return contents


def skipped_line(path: str | os.PathLike, number: int, reason: str) -> str:
    return (f"{path}:{number}: label line skipped ({reason}); it stays in the file, "
            "and the labels around it are read")


def read_labels(path: str | os.PathLike) -> list[Label]:
    """All valid labels in ``path``, in file order (none if it does not exist)."""
    return load(path).labels


def _ends_mid_line(fd: int) -> bool:
    if os.fstat(fd).st_size == 0:
        return False
    os.lseek(fd, -1, os.SEEK_END)
    return os.read(fd, 1) != b"\n"


class LabelStore:
    """Append-only label file. ``LabelStore(path)`` reads what is there
    (``.labels``) without changing the file; :meth:`append` adds a line."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.labels = read_labels(self.path)

    def append(self, left: int, right: int, choice: str, labeller: str,
               timestamp: float | None = None) -> Label:
        """Writes one label and returns once it is on disk. A label the
        readers would reject (a NaN time, a labeller that is not a string)
        is refused with ValueError before anything is written."""
        if choice not in CHOICES:
            raise ValueError(f"choice={choice!r} is invalid: expected one of {CHOICES} "
                             "(take an answer back with retract)")
        return self._write(left, right, choice, labeller, timestamp)

    def retract(self, left: int, right: int, labeller: str, timestamp: float | None = None) -> Label:
        """Appends an undo of the answer standing for ``(left, right)``
        (nothing is removed; see :func:`standing_answers`)."""
        return self._write(left, right, UNDO, labeller, timestamp)

    def _write(self, left: int, right: int, choice: str, labeller: str, timestamp: float | None) -> Label:
        label = Label(left=int(left), right=int(right), choice=choice, labeller=labeller,
                      time=time.time() if timestamp is None else float(timestamp))
        try:
            line = label.to_json().encode()
            parse_line(line)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{label} cannot be stored: {e}") from None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            # After a torn write, start a new line rather than glue onto it
            # (which would spoil this label too); the torn bytes stay.
            start = b"\n" if _ends_mid_line(fd) else b""
            os.write(fd, start + line + b"\n")  # one write: O_APPEND keeps it whole at the end
            os.fsync(fd)
        finally:
            os.close(fd)
        self.labels.append(label)
        return label

    def __len__(self) -> int:
        return len(self.labels)

    def __iter__(self) -> Iterator[Label]:
        return iter(self.labels)
