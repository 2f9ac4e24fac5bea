"""The run-directory writer: everything a training loop leaves behind.

Both host loops, the chunked on-device one (:func:`jaxrl.run.train`) and
asynchronous IMPALA's actor/learner threads
(:mod:`jaxrl.distributed.async_impala`), write a run through one
:class:`RunWriter`::

    writer = RunWriter(out_dir, run_config, resume=False, force=False)
    writer.check()                       # every rule, before anything is written
    writer.start()                       # config.json (a new run), checkpoints/
    writer.show_progress(total, done, seeds, enabled=True)
    writer.write_metrics(chunk)          # metrics.csv and the other sinks
    writer.open_evaluations(seeds)       # with periodic evaluation: eval.csv
    writer.write_evaluation(point)       # eval.csv and the sinks' write_evaluation
    writer.advance(env_steps, seconds, metrics)   # the progress bar
    writer.checkpoint(iteration, state)
    writer.finish(summary, plot_title)   # summary.json, curve.png, the sinks' finish
    writer.close()

so the layout (:mod:`jaxrl.run.rundir`), the order of writes that keeps a
killed run resumable (rows first, checkpoint second) and the divergence
record are the same whichever loop runs. Without ``out_dir`` the writer
writes no file and still feeds the sinks and the bar.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxrl.run import rundir
from jaxrl.run.checkpoint import Checkpointer
from jaxrl.run.plots import plot_curves
from jaxrl.run.progress import Progress
from jaxrl.run.sinks import EVAL_COLUMNS, CSVSink, EvalCSVSink, MetricsChunk, Sink, read_csv


class RunWriter:
    """Writes one run: config.json, metric sinks, checkpoints, the progress
    bar, summary.json and the learning curve.

    Args:
      out_dir: the run directory, or None to write no file.
      run_config: the config.json contents (for a resumed run, what must
        match the saved one).
      resume: continue the run saved in ``out_dir``.
      force: replace a run saved in ``out_dir``.
      primary: this process writes files, sinks and the bar (process 0 of a
        multi-process job); every process saves checkpoints, which orbax
        coordinates.
      sinks: further sinks fed the same metrics (on the primary process).
    """

    def __init__(
        self,
        out_dir: str | os.PathLike | None,
        run_config: dict[str, Any],
        *,
        resume: bool = False,
        force: bool = False,
        primary: bool = True,
        sinks: Sequence[Sink] = (),
    ):
        self.path = None if out_dir is None else rundir.out_path(out_dir)
        self.run_config = run_config
        self.resume, self.force = resume, force
        self.writes = self.path is not None and primary
        self._sinks = ([CSVSink(self.path / rundir.METRICS_CSV)] if self.writes else []) + list(
            sinks if primary else ()
        )
        self._sinks_open = self._sinks_closed = False
        self._eval_csv = EvalCSVSink(self.path / rundir.EVAL_CSV) if self.writes else None
        self._eval_steps: list[int] = []
        self._eval_returns: list[np.ndarray] = []
        self._checkpointer: Checkpointer | None = None
        self._progress = Progress(0, 0, 1, False)
        self._primary = primary
        self.last_saved: int | None = None
        """Iterations (or updates) of the latest checkpoint this writer saved."""

    # ------------------------------------------------------------ before the run

    def check(self) -> None:
        """Raises RunDirError (a ValueError) if the run may not use its
        directory as asked (:func:`rundir.check_request`), or a resumed run's
        metrics.csv is garbled; writes nothing."""
        rundir.check_mode(resume=self.resume, force=self.force)
        # Processes other than the primary one only read a resumed run.
        if self.path is None or not (self.resume or self.writes):
            return
        rundir.check_request(self.path, self.run_config, resume=self.resume, force=self.force)
        for name in (rundir.METRICS_CSV, rundir.EVAL_CSV):
            if self.resume and (self.path / name).exists():
                read_csv(self.path / name)

    def restore_latest(self, abstract_state: Any) -> tuple[int, Any]:
        """``(iterations done, state)`` of the newest intact checkpoint
        (``(0, None)`` when there is none); damaged newer ones are reported and
        set aside so the resumed run can save their iterations again.
        Compiles nothing."""
        if self.path is None or not (self.path / rundir.CHECKPOINTS).is_dir():
            return 0, None  # a Checkpointer would create the directory
        restored = self._checkpoints().restore_latest_intact(abstract_state, set_aside_damaged=True)
        if restored is None:
            return 0, None
        self.last_saved = restored[0]
        return restored

    def start(self) -> None:
        """Creates a new run's directory and config.json (replacing the files
        of the run it overwrites with ``force``) and opens checkpoints/."""
        if self.path is None:
            return
        if self.writes and not self.resume:
            rundir.start_new_run(self.path, self.run_config, force=self.force)
        self._checkpoints()

    # ------------------------------------------------------------ during the run

    def open_metrics(
        self, metric_names: Sequence[str], seeds: int, resume_env_steps: int | None = None
    ) -> None:
        """Opens the sinks for ``metric_names`` of ``seeds`` seeds; a resumed
        run drops the rows written after ``resume_env_steps``."""
        for sink in self._sinks:
            sink.open(list(metric_names), seeds, resume_env_steps)
            _call_hook(sink, "log_config", self.run_config)
        self._sinks_open = True

    def open_evaluations(self, seeds: int, resume_env_steps: int | None = None) -> None:
        """Opens eval.csv; a resumed run drops the rows written after
        ``resume_env_steps`` and keeps the others for the best evaluation."""
        if self._eval_csv is None:
            return
        self._eval_csv.open(EVAL_COLUMNS, seeds, resume_env_steps)
        kept = read_csv(self._eval_csv.path)
        for steps in np.unique(kept["env_steps"]):
            self._eval_steps.append(int(steps))
            self._eval_returns.append(kept["eval_return"][kept["env_steps"] == steps])

    def write_evaluation(self, point: MetricsChunk) -> None:
        """Writes one evaluation (:func:`jaxrl.run.evaluation.evaluation_chunk`)
        to eval.csv and the sinks; one at or before the latest written (the
        final evaluation of a resumed run that had finished) is skipped."""
        steps = int(point.env_steps[0])
        if self._eval_steps and steps <= self._eval_steps[-1]:
            return
        if self._eval_csv is not None:
            self._eval_csv.write(point)
        for sink in self._sinks:
            _call_hook(sink, "write_evaluation", point)
        self._eval_steps.append(steps)
        self._eval_returns.append(point.metrics["eval_return"][0])

    def evaluations(self) -> tuple[np.ndarray, np.ndarray]:
        """``(env_steps [n], eval_return [n, seeds])`` of every evaluation of
        the run, those before a resume included."""
        if not self._eval_steps:
            return np.zeros((0,), np.int64), np.zeros((0, 0), np.float32)
        return np.asarray(self._eval_steps), np.stack(self._eval_returns)

    def write_metrics(self, chunk: MetricsChunk) -> None:
        """Hands ``chunk`` to every sink (opened for its metrics on first use)."""
        if self._sinks_closed:
            # Opening them again would start the files afresh.
            raise RuntimeError("metrics written after the run writer was closed")
        if not self._sinks_open:
            self.open_metrics(list(chunk.metrics), chunk.num_seeds)
        for sink in self._sinks:
            sink.write(chunk)

    def show_progress(
        self, total_env_steps: int, done_env_steps: int, seeds: int, enabled: bool,
        extra: Sequence[str] = (),
    ) -> None:
        """Shows a progress bar over one seed's env steps (primary process only);
        ``extra`` names metrics shown beside the return."""
        self._progress.close()
        self._progress = Progress(
            total_env_steps, done_env_steps, seeds, enabled and self._primary, extra
        )

    def advance(self, env_steps: int, seconds: float, metrics: dict[str, np.ndarray]) -> None:
        """Moves the bar on by ``env_steps`` per seed, taken in ``seconds``."""
        self._progress.update(env_steps, seconds, metrics)

    def checkpoint(self, iteration: int, state: Any) -> None:
        """Saves ``state`` as the checkpoint of ``iteration`` (no-op without a directory)."""
        if self.path is None:
            return
        self._checkpoints().save(iteration, state)
        self.last_saved = iteration

    def close(self) -> None:
        """Closes the bar, the sinks and the checkpoints; idempotent. A later
        :meth:`checkpoint` opens the checkpoints again (a final save after the
        threads that wrote metrics have stopped)."""
        self._progress.close()
        if self._eval_csv is not None:
            self._eval_csv.close()
        if self._sinks_open:
            for sink in self._sinks:
                sink.close()
            self._sinks_open, self._sinks_closed = False, True
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None

    # ------------------------------------------------------------ after the run

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Writes summary.json (a finished or a diverged run's)."""
        if self.writes:
            rundir.write_json(self.path / rundir.SUMMARY, summary)

    def finish(self, summary: dict[str, Any], plot_title: str) -> None:
        """Writes summary.json and, once metrics.csv has rows, curve.png (with
        eval.csv's evaluations where there are any); then hands the summary and
        those files to the sinks' ``finish`` hooks."""
        files = []
        if self.writes:
            self.write_summary(summary)
            metrics_csv = self.path / rundir.METRICS_CSV
            eval_csv = self.path / rundir.EVAL_CSV
            evaluations = eval_csv if eval_csv.exists() else None
            if metrics_csv.exists() and metrics_csv.stat().st_size > 0:
                files.append(
                    plot_curves(
                        metrics_csv, self.path / rundir.CURVE, title=plot_title,
                        evaluations=evaluations,
                    )
                )
            files += [evaluations] if evaluations is not None else []
        if self._sinks_open:
            for sink in self._sinks:
                _call_hook(sink, "finish", summary, files)

    @property
    def directory(self) -> Path | None:
        """Where checkpoints go (for messages), or None."""
        return None if self.path is None else self.path / rundir.CHECKPOINTS

    def _checkpoints(self) -> Checkpointer:
        if self._checkpointer is None:
            self._checkpointer = Checkpointer(self.path / rundir.CHECKPOINTS)
        return self._checkpointer


def _call_hook(sink: Sink, name: str, *args: Any) -> None:
    """Calls the optional hook ``name`` of ``sink`` (see :class:`~jaxrl.run.sinks.Sink`)."""
    hook = getattr(sink, name, None)
    if hook is not None:
        hook(*args)
