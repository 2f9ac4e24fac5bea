"""Metric sinks: where the host writes what ``agent.step`` returned.

The training loop hands every sink one :class:`MetricsChunk` per chunk of
iterations: a row per iteration per seed, nothing averaged away. Sinks that
write files flush and fsync after each chunk, and on resume they drop every
row past the checkpoint they resume from (including a half-written last line
left by a killed process), so a resumed run's files end up byte-identical to
those of a run that was never interrupted.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from jaxrl.run.rundir import RunDirError

# Columns every row starts with; the agent's metrics follow.
INDEX_COLUMNS = ("env_steps", "seed")
# Written first among the metrics so the learning curve is the third column.
PRIMARY_METRIC = "episode_return"


def metric_columns(metric_names: Sequence[str]) -> list[str]:
    """The agent's metric names in file order: ``episode_return`` first, then sorted."""
    rest = sorted(name for name in metric_names if name != PRIMARY_METRIC)
    return ([PRIMARY_METRIC] if PRIMARY_METRIC in metric_names else []) + rest


@dataclasses.dataclass(frozen=True)
class MetricsChunk:
    """Metrics of consecutive iterations of every seed.

    Attributes:
      env_steps: ``[n]`` environment steps each seed has taken after each iteration.
      metrics: name -> ``[n, seeds]`` values.
    """

    env_steps: np.ndarray
    metrics: dict[str, np.ndarray]

    @property
    def num_seeds(self) -> int:
        return next(iter(self.metrics.values())).shape[1]

    def rows(self, columns: Sequence[str]) -> Iterator[tuple]:
        """``(env_steps, seed, *metrics in columns order)`` per iteration, then per seed."""
        values = [self.metrics[name] for name in columns]
        for i, steps in enumerate(self.env_steps):
            for seed in range(self.num_seeds):
                yield (int(steps), seed, *(v[i, seed] for v in values))


class Sink(Protocol):
    """Receives metrics between chunks.

    ``open`` is called once before the first chunk with the metric names, the
    number of seeds and, when resuming, the env-step count of the checkpoint
    the run continues from (rows after it must be dropped); ``None`` means a
    fresh run.
    """

    def open(
        self, metric_names: Sequence[str], num_seeds: int, resume_env_steps: int | None
    ) -> None: ...

    def write(self, chunk: MetricsChunk) -> None: ...

    def close(self) -> None: ...


def format_float(x) -> str:
    """Shortest text that reads back as the same float32 (``'22.5'``, ``'1e-05'``, ``'nan'``)."""
    return str(np.float32(x))


class _LineFileSink:
    """A text file of one line per row, appended and synced per chunk."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._file = None
        self._columns: list[str] = []

    def header(self) -> str | None:
        return None

    def format_rows(self, chunk: MetricsChunk) -> str:
        raise NotImplementedError

    @staticmethod
    def env_steps_of(line: str) -> int:
        raise NotImplementedError

    def open(self, metric_names, num_seeds, resume_env_steps):
        self._columns = metric_columns(metric_names)
        header = self.header()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_env_steps is None or not self.path.exists():
            _atomic_write_text(self.path, "" if header is None else header + "\n")
        else:
            _truncate_rows(self.path, resume_env_steps, self.env_steps_of, header)
        self._file = open(self.path, "a", newline="")  # noqa: SIM115 (open across chunks)

    def write(self, chunk):
        self._file.write(self.format_rows(chunk))
        _sync(self._file)

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None


class CSVSink(_LineFileSink):
    """``metrics.csv``: columns ``env_steps, seed, episode_return, <metrics...>``."""

    def header(self):
        return ",".join((*INDEX_COLUMNS, *self._columns))

    def format_rows(self, chunk):
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        for steps, seed, *values in chunk.rows(self._columns):
            writer.writerow([steps, seed, *map(format_float, values)])
        return buffer.getvalue()

    @staticmethod
    def env_steps_of(line):
        return int(line.split(",", 1)[0])


class JSONLSink(_LineFileSink):
    """One JSON object per iteration per seed: ``{"env_steps", "seed", <metrics...>}``."""

    def format_rows(self, chunk):
        lines = []
        for steps, seed, *values in chunk.rows(self._columns):
            record = {"env_steps": steps, "seed": seed}
            record.update(
                (name, _json_float(v)) for name, v in zip(self._columns, values, strict=True)
            )
            lines.append(json.dumps(record) + "\n")
        return "".join(lines)

    @staticmethod
    def env_steps_of(line):
        return int(json.loads(line)["env_steps"])  # ValueError/KeyError/TypeError if garbled


class TensorBoardSink:
    """TensorBoard event files, one directory per seed (``seed_0/``, ...), step = env steps.

    Needs ``tensorboardX`` (``pip install jaxrl[tensorboard]``). On resume, events
    after the checkpoint are purged through ``SummaryWriter(purge_step=...)``.
    """

    def __init__(self, logdir: str | os.PathLike):
        try:
            import tensorboardX  # noqa: F401
        except ImportError as e:
            raise ImportError("TensorBoardSink needs tensorboardX: pip install tensorboardX") from e
        self.logdir = Path(logdir)
        self._writers = []

    def open(self, metric_names, num_seeds, resume_env_steps):
        from tensorboardX import SummaryWriter

        purge = None if resume_env_steps is None else resume_env_steps + 1
        # Event files are named by the second they were opened; the suffix keeps
        # a quick resume from replacing the file of the run it continues.
        suffix = f".from{resume_env_steps or 0}"
        self._writers = [
            SummaryWriter(
                str(self.logdir / f"seed_{seed}"), purge_step=purge, filename_suffix=suffix
            )
            for seed in range(num_seeds)
        ]

    def write(self, chunk):
        for i, steps in enumerate(chunk.env_steps):
            for seed, writer in enumerate(self._writers):
                for name, values in chunk.metrics.items():
                    writer.add_scalar(name, float(values[i, seed]), int(steps))
        for writer in self._writers:
            writer.flush()

    def close(self):
        for writer in self._writers:
            writer.close()
        self._writers = []


def read_csv(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``metrics.csv`` as column name -> array (complete lines only).

    Raises MetricsFileError naming the file, line and column of a row that
    does not parse (a wrong field count, a value that is not a number)."""
    path = Path(path)
    with open(path, newline="") as f:
        try:
            lines = f.read().split("\n")[:-1]
        except UnicodeDecodeError as e:
            raise MetricsFileError(f"{path} is not UTF-8 text: {e}") from None
    if not lines:
        raise MetricsFileError(f"{path} is empty: it lacks its header line")
    reader = csv.reader(lines)
    header = next(reader)
    missing = [name for name in INDEX_COLUMNS if name not in header]
    if missing:
        raise MetricsFileError(f"{path}, line 1: the header lacks the column(s) {', '.join(missing)}")
    dtypes = [np.int64 if name in INDEX_COLUMNS else np.float32 for name in header]
    rows = []
    for number, row in enumerate(reader, start=2):
        if len(row) != len(header):
            raise MetricsFileError(
                f"{path}, line {number}: {len(row)} fields where the header has {len(header)}"
            )
        rows.append([_read_field(path, number, name, text, dtype)
                     for name, text, dtype in zip(header, row, dtypes, strict=True)])
    return {
        name: np.asarray([row[j] for row in rows], dtype=dtypes[j]) if rows else np.zeros((0,), dtypes[j])
        for j, name in enumerate(header)
    }


class MetricsFileError(RunDirError):
    """A metrics file holds a line that jaxrl cannot read back."""


def _read_field(path: Path, line: int, column: str, text: str, dtype) -> float | int:
    try:
        return int(text) if dtype is np.int64 else float(text)
    except ValueError:
        kind = "an integer" if dtype is np.int64 else "a number"
        raise MetricsFileError(
            f"{path}, line {line}: column {column}={text!r} is not {kind}"
        ) from None


def _truncate_rows(path: Path, max_env_steps: int, env_steps_of, header: str | None) -> None:
    """Keeps complete rows with env_steps <= ``max_env_steps``; rewrites atomically."""
    text = path.read_text()
    # A line without its newline was cut off mid-write: it never counted.
    lines = text.split("\n")[:-1]
    kept = []
    if header is not None:
        if not lines or lines[0] != header:
            raise MetricsFileError(
                f"{path} has different columns than this run's metrics; "
                f"refusing to resume into it (expected header {header!r})"
            )
        kept.append(lines[0])
        lines = lines[1:]
    first = 2 if header is not None else 1
    for number, line in enumerate(lines, start=first):
        try:
            steps = env_steps_of(line)
        except (ValueError, KeyError, TypeError, IndexError):
            raise MetricsFileError(
                f"{path}, line {number}: its env_steps field cannot be read ({line[:80]!r}); "
                "refusing to resume into it (fix or remove that line)"
            ) from None
        if steps > max_env_steps:
            break  # rows are in env-step order: everything after is newer too
        kept.append(line)
    _atomic_write_text(path, "".join(line + "\n" for line in kept))


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        f.write(text)
        _sync(f)
    os.replace(tmp, path)


def _sync(f) -> None:
    f.flush()
    os.fsync(f.fileno())


def _json_float(x) -> float | str:
    value = float(np.float32(x))
    return value if math.isfinite(value) else str(value)
