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
import importlib
import io
import json
import math
import os
import secrets
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from jaxrl.run import rundir
from jaxrl.run.config_io import flatten_dict
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

    A sink may also define any of these hooks, which the run writer calls
    when present (so a sink with only the three methods above keeps working):

    - ``log_config(config: dict)``: the run's config.json contents, after ``open``;
    - ``write_evaluation(chunk: MetricsChunk)``: one evaluation point (metrics
      ``eval_return``, ``eval_return_std``, ... of shape ``[1, seeds]``);
    - ``finish(summary: dict, files: list[Path])``: the summary.json contents
      and the files the run left (curve.png, eval.csv), before ``close``.
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

    def order_columns(self, metric_names: Sequence[str]) -> list[str]:
        return metric_columns(metric_names)

    def open(self, metric_names, num_seeds, resume_env_steps):
        self._columns = self.order_columns(metric_names)
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


# eval.csv's columns after env_steps and seed: statistics over one seed's episodes.
EVAL_COLUMNS = ("eval_return", "eval_return_std", "eval_return_min", "eval_return_max")


class EvalCSVSink(CSVSink):
    """``eval.csv``: columns ``env_steps, seed, eval_return, eval_return_std,
    eval_return_min, eval_return_max``, a row per evaluation per seed. Opened
    with :data:`EVAL_COLUMNS` as its metric names; truncated on resume like
    metrics.csv."""

    def order_columns(self, metric_names):
        return list(metric_names)


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
        require("tensorboardX", "tensorboard")
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

    def log_config(self, config):
        self._writers[0].add_text("config", "```\n" + json.dumps(config, indent=2) + "\n```")

    def write_evaluation(self, chunk):
        self.write(_prefixed("eval/", chunk))

    def finish(self, summary, files):
        writer = self._writers[0]
        writer.add_text("summary", "```\n" + json.dumps(summary, indent=2) + "\n```")
        for path in files:
            if path.suffix == ".png":
                writer.add_image(path.stem, _read_png(path), dataformats="HWC")
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


# ---------------------------------------------------------------- tracking services


def require(module: str, extra: str) -> None:
    """ImportError naming the pip command when the optional ``module`` (of the
    extra ``jaxrl[extra]``) is not installed."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"--log {extra} needs the {module} package: pip install 'jaxrl[{extra}]'"
        ) from None


def tracked_rows(prefix: str, chunk: MetricsChunk) -> Iterator[tuple[int, dict[str, float]]]:
    """``(env_steps, {name: value})`` per row of ``chunk`` for a tracking
    service: ``prefix + name`` is the mean over seeds and, with several
    seeds, ``prefix + "seed_<i>/" + name`` each seed's value (a name is never
    also a folder, which MLflow's file store cannot hold)."""
    for i, steps in enumerate(chunk.env_steps):
        values = {}
        for name, per_seed in chunk.metrics.items():
            row = np.asarray(per_seed[i], dtype=np.float64)
            values[prefix + name] = float(row.mean())
            if chunk.num_seeds > 1:
                values.update((f"{prefix}seed_{s}/{name}", float(v)) for s, v in enumerate(row))
        yield int(steps), values


class WandbSink:
    """Weights & Biases: one W&B run per jaxrl run, at env steps as its step.

    Needs ``wandb`` (``pip install 'jaxrl[wandb]'``). The project comes from
    ``project``, else ``$WANDB_PROJECT``, else ``jaxrl``; ``WANDB_MODE=offline``
    logs without a network (``wandb sync`` uploads later). The W&B run id is
    stored in the run directory's tracking.json, and a resumed jaxrl run logs
    to the same W&B run.
    """

    def __init__(self, run_dir: str | os.PathLike | None, project: str | None = None):
        require("wandb", "wandb")
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.project = project
        self._run = None
        self._finished = False

    def open(self, metric_names, num_seeds, resume_env_steps):
        import wandb

        run_id = _tracked_id(self.run_dir, "wandb", resume_env_steps)
        if run_id is None:
            run_id = secrets.token_hex(6)  # W&B ids are letters and digits
            _record_tracked_id(self.run_dir, "wandb", run_id)
        self._run = wandb.init(
            project=self.project or os.environ.get("WANDB_PROJECT", "jaxrl"),
            id=run_id,
            name=None if self.run_dir is None else self.run_dir.name,
            resume="allow",
            # The progress bar and the CLI's output stay jaxrl's own.
            settings=wandb.Settings(console="off", silent=True),
        )

    def log_config(self, config):
        self._run.config.update(config, allow_val_change=True)

    def write(self, chunk):
        self._log(tracked_rows("train/", chunk))

    def write_evaluation(self, chunk):
        self._log(tracked_rows("eval/", chunk))

    def _log(self, rows):
        # A resumed run logs again the steps between its checkpoint and the
        # stop: W&B's server drops steps below the latest it holds, and an
        # offline log replays them with the same values (resume is bit-exact).
        for steps, values in rows:
            self._run.log(values, step=steps)

    def finish(self, summary, files):
        import wandb

        self._run.summary.update(summary)
        images = {p.stem: wandb.Image(str(p)) for p in files if p.suffix == ".png"}
        if images:
            self._run.log(images)
        self._finished = True

    def close(self):
        if self._run is not None:
            self._run.finish(exit_code=0 if self._finished else 1)
            self._run = None


class MlflowSink:
    """MLflow: one MLflow run per jaxrl run (experiment ``jaxrl`` unless told),
    at env steps as its step.

    Needs ``mlflow`` (``pip install 'jaxrl[mlflow]'``, the client-only
    ``mlflow-skinny``). The tracking URI comes from ``tracking_uri``, else
    MLflow's own resolution (``$MLFLOW_TRACKING_URI``). The run id and URI are
    stored in the run directory's tracking.json; a resumed jaxrl run logs to
    the same MLflow run, in the same store, and skips the steps it had
    already logged.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike | None,
        tracking_uri: str | None = None,
        experiment: str = "jaxrl",
    ):
        require("mlflow", "mlflow")
        import mlflow

        self.run_dir = None if run_dir is None else Path(run_dir)
        self.tracking_uri = tracking_uri or mlflow.get_tracking_uri()
        self.experiment = experiment
        # A resumed run logs to the store it started in (tracking.json).
        saved = {} if self.run_dir is None else rundir.read_tracking(self.run_dir).get("mlflow", {})
        _check_mlflow_store(saved.get("tracking_uri", self.tracking_uri))
        self._client = self._run_id = None
        self._logged_through = -1
        self._resumed = self._finished = False

    def open(self, metric_names, num_seeds, resume_env_steps):
        from mlflow.tracking import MlflowClient

        saved = _tracked_id(self.run_dir, "mlflow", resume_env_steps)
        self._resumed = saved is not None
        if saved is not None:
            self._client = MlflowClient(saved["tracking_uri"])
            self._run_id = saved["run_id"]
            self._client.update_run(self._run_id, status="RUNNING")
            first = "train/" + metric_columns(metric_names)[0]
            history = self._client.get_metric_history(self._run_id, first)
            self._logged_through = max((m.step for m in history), default=-1)
            return
        uri = self.tracking_uri
        self._client = MlflowClient(uri)
        found = self._client.get_experiment_by_name(self.experiment)
        experiment_id = (
            found.experiment_id if found else self._client.create_experiment(self.experiment)
        )
        run_name = None if self.run_dir is None else self.run_dir.name
        self._run_id = self._client.create_run(experiment_id, run_name=run_name).info.run_id
        _record_tracked_id(self.run_dir, "mlflow", {"run_id": self._run_id, "tracking_uri": uri})

    def log_config(self, config):
        from mlflow.entities import Param

        if self._resumed:
            return  # MLflow refuses to change a logged parameter; they are the run's anyway
        params = [Param(k, str(v)[:6000]) for k, v in flatten_dict(config).items()]
        for start in range(0, len(params), 100):  # MLflow's batch limit
            self._client.log_batch(self._run_id, params=params[start : start + 100])

    def write(self, chunk):
        self._log(tracked_rows("train/", chunk))

    def write_evaluation(self, chunk):
        self._log(tracked_rows("eval/", chunk))

    def _log(self, rows):
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [
            Metric(name, value, now, steps)
            for steps, values in rows
            if steps > self._logged_through
            for name, value in values.items()
        ]
        for start in range(0, len(metrics), 1000):  # MLflow's batch limit
            self._client.log_batch(self._run_id, metrics=metrics[start : start + 1000])

    def finish(self, summary, files):
        self._client.log_dict(self._run_id, summary, "summary.json")
        for path in files:
            self._client.log_artifact(self._run_id, str(path))
        self._finished = True

    def close(self):
        if self._client is not None:
            self._client.set_terminated(self._run_id, "FINISHED" if self._finished else "KILLED")
            self._client = None


def _check_mlflow_store(uri: str) -> None:
    """ValueError (before anything compiles) if MLflow cannot use the store at ``uri``:
    e.g. its default ``sqlite:///mlflow.db``, which the client-only mlflow-skinny lacks."""
    from mlflow.tracking import MlflowClient

    try:
        MlflowClient(uri).search_experiments(max_results=1)
    except Exception as e:  # MLflow raises many kinds for an unusable store
        reason = " ".join(str(e).split()).split(". ")[0]  # MLflow's messages run long
        raise ValueError(
            f"--log mlflow cannot use the tracking store {uri!r} ({type(e).__name__}: {reason}); "
            "set MLFLOW_TRACKING_URI to a tracking server (http://HOST:PORT) or a file store "
            "(file:DIR with MLFLOW_ALLOW_FILE_STORE=true)"
        ) from None


def _tracked_id(run_dir: Path | None, service: str, resume_env_steps: int | None):
    """The id a resumed run stored for ``service`` (None for a fresh run)."""
    if run_dir is None or resume_env_steps is None:
        return None
    return rundir.read_tracking(run_dir).get(service)


def _record_tracked_id(run_dir: Path | None, service: str, value) -> None:
    if run_dir is not None:
        rundir.record_tracking(run_dir, service, value)


def _prefixed(prefix: str, chunk: MetricsChunk) -> MetricsChunk:
    return MetricsChunk(chunk.env_steps, {prefix + k: v for k, v in chunk.metrics.items()})


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


# ---------------------------------------------------------------- by name

# Sinks beside metrics.csv that a run can be asked for by name (``--log``).
LOG_SINKS = ("jsonl", "tensorboard", "wandb", "mlflow")
TENSORBOARD_DIR = "tensorboard"


def make_sinks(run_dir: str | os.PathLike, names: Sequence[str]) -> list:
    """The sinks of ``names`` (from :data:`LOG_SINKS`) for the run in
    ``run_dir``, in that tuple's order; ImportError naming the pip command
    (and ValueError for an unusable MLflow store) before anything runs."""
    run_dir = Path(run_dir)
    makers = {
        "jsonl": lambda: JSONLSink(run_dir / rundir.METRICS_JSONL),
        "tensorboard": lambda: TensorBoardSink(run_dir / TENSORBOARD_DIR),
        "wandb": lambda: WandbSink(run_dir),
        "mlflow": lambda: MlflowSink(run_dir),
    }
    unknown = sorted(set(names) - set(makers))
    if unknown:
        raise ValueError(f"unknown sink {unknown[0]!r}; expected one of {', '.join(LOG_SINKS)}")
    return [makers[name]() for name in LOG_SINKS if name in names]


def sinks_of_run(run_dir: str | os.PathLike) -> set[str]:
    """The :data:`LOG_SINKS` the run in ``run_dir`` wrote to, which its resume continues."""
    run_dir = Path(run_dir)
    had = {
        "jsonl": (run_dir / rundir.METRICS_JSONL).exists(),
        "tensorboard": (run_dir / TENSORBOARD_DIR).is_dir(),
    }
    return {name for name, was in had.items() if was} | set(rundir.read_tracking(run_dir))
