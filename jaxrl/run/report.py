"""``jaxrl report``: aggregate statistics over runs, algorithms and environments.

::

    jaxrl report runs/ppo-cp runs/a2c-cp runs/ppo-acrobot runs/a2c-acrobot --out reports/cmp

reads each run directory that ``jaxrl train`` wrote (config.json,
summary.json, metrics.csv), groups the runs by algorithm and environment
and writes into ``--out``:

::

    report.md                       the tables below, and the figures
    report.csv                      one row per statistic per algorithm (or pair)
    report.json                     what was reported, from what (marks the directory as a report)
    aggregates.png                  mean, median, IQM and optimality gap with 95% CIs
    performance_profile.png         fraction of runs scoring above τ, with CI bands
    probability_of_improvement.png  P(X > Y) for each pair of algorithms (two or more)
    sample_efficiency.png           IQM of the training return against env steps, with bands

A run's score per seed is its final evaluation return (summary.json
``eval_return``). Where every environment declares a random and a reference
return (:data:`REFERENCE_RETURNS`) scores are normalised, 0 for a random
policy and 1 for the reference; otherwise they stay raw returns, and the
report says so. Statistics follow Agarwal et al. (2021) through
:mod:`jaxrl.run.stats` (``pip install 'jaxrl[report]'``), imported only
when a report is made.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxrl.run import rundir
from jaxrl.run.plots import curves_by_seed
from jaxrl.run.sinks import PRIMARY_METRIC, read_csv

DEFAULT_REPS = 10_000
DEFAULT_SEED = 0
CURVE_POINTS = 25
PROFILE_POINTS = 101

REFERENCE_RETURNS: dict[str, tuple[float, float]] = {
    # env id: (random, reference) returns at gymnax's default settings.
    # random: mean undiscounted return of uniformly random actions over 1000
    #   episodes (200 for MinAtar), one full episode each, measured with
    #   gymnax 1.0 (standard error in the comment).
    # reference: the episode's maximum where there is one (CartPole: one
    #   reward per step, cut at 500 steps); otherwise the return of gymnax's
    #   published PPO/ES checkpoints (gymnax README, "ckpt return"; gymnax-blines).
    "CartPole-v1": (21.92, 500.0),  # random ± 0.35
    "Acrobot-v1": (-499.12, -80.0),  # random ± 0.29
    "MountainCar-v0": (-200.0, -118.0),  # random never reaches the flag in 200 steps
    "Pendulum-v1": (-1208.29, -130.0),  # random ± 8.9
    "MountainCarContinuous-v0": (-33.06, 92.0),  # random ± 0.16
    "Breakout-MinAtar": (0.40, 28.0),  # random ± 0.04
    "Asterix-MinAtar": (0.51, 15.0),  # random ± 0.06
    "Freeway-MinAtar": (0.44, 58.0),  # random ± 0.05
    "SpaceInvaders-MinAtar": (4.04, 131.0),  # random ± 0.22
}
"""Random-policy and reference returns per environment; a report normalises
scores as ``(score - random) / (reference - random)`` when every environment
in it is listed here (and was trained at its default settings)."""

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
REPORT_CSV = "report.csv"
AGGREGATES_PNG = "aggregates.png"
PROFILE_PNG = "performance_profile.png"
IMPROVEMENT_PNG = "probability_of_improvement.png"
CURVES_PNG = "sample_efficiency.png"
# What rewriting a report replaces: the files a report writes, nothing a user put beside them.
REPORT_FILES = (
    REPORT_JSON, REPORT_MD, REPORT_CSV, AGGREGATES_PNG, PROFILE_PNG, IMPROVEMENT_PNG, CURVES_PNG
)
REPORT_FORMAT = 1

AGGREGATE_LABELS = {
    "mean": "Mean", "median": "Median", "iqm": "IQM", "optimality_gap": "Optimality gap"
}

DESCRIPTION = (
    "Aggregate the final evaluation returns of runs written by `jaxrl train`, grouped by "
    "algorithm and environment: mean, median, interquartile mean (IQM) and optimality gap "
    "with 95% stratified-bootstrap confidence intervals, performance profiles, the "
    "probability of improvement between algorithms and sample-efficiency curves "
    "(Agarwal et al. 2021, via rliable). Writes report.md, report.csv and PNG figures."
)


class ReportError(rundir.RunDirError):
    """A report cannot be made from these runs or written where asked."""


# ---------------------------------------------------------------- reading runs


@dataclasses.dataclass(frozen=True)
class RunScores:
    """What a report takes from one run directory.

    Attributes:
      path: the run directory.
      algorithm: config.json ``algorithm``.
      task: the environment, as the report names it (``env_id``, with its
        ``env_kwargs`` when they are not the defaults).
      env_id: config.json ``env_id``.
      default_env: whether the environment ran at its default settings.
      final: ``[seeds]`` final evaluation return of each seed.
      steps: ``[n]`` env steps per seed at each metrics.csv row, or None
        without an ``episode_return`` column.
      returns: ``[seeds, n]`` smoothed training return (NaN before a seed's
        first completed episode), or None.
    """

    path: Path
    algorithm: str
    task: str
    env_id: str
    default_env: bool
    final: np.ndarray
    steps: np.ndarray | None
    returns: np.ndarray | None


def read_runs(run_dirs: Sequence[str | os.PathLike]) -> list[RunScores]:
    """:func:`read_run` of each directory; ReportError for none or one given twice."""
    if not run_dirs:
        raise ReportError("no run directories given")
    seen: dict[Path, str] = {}
    for given in run_dirs:
        resolved = Path(given).resolve()
        if resolved in seen:
            raise ReportError(
                f"{given} is given twice (also as {seen[resolved]}): its seeds would count twice"
            )
        seen[resolved] = str(given)
    return [read_run(path) for path in run_dirs]


def read_run(path: str | os.PathLike) -> RunScores:
    """A run directory's scores; RunDirError (one line, naming the file) when
    ``path`` is not a finished run of jaxrl's or a file of it is damaged."""
    path = Path(path)
    config = _read_config(path)
    summary = _read_summary(path, config["seeds"])
    metrics_path = path / rundir.METRICS_CSV
    if not metrics_path.is_file():
        raise ReportError(f"{path} has no {rundir.METRICS_CSV}: not a run that jaxrl finished")
    columns = read_csv(metrics_path)
    steps = returns = None
    if PRIMARY_METRIC in columns and len(columns["env_steps"]):
        steps, returns = _training_curves(metrics_path, columns, config["seeds"])
    kwargs = config["env_kwargs"]
    shown = ",".join(f"{k}={v}" for k, v in sorted(kwargs.items()))
    return RunScores(
        path=path,
        algorithm=config["algorithm"],
        task=f"{config['env_id']}({shown})" if kwargs else config["env_id"],
        env_id=config["env_id"],
        default_env=not kwargs,
        final=np.asarray(summary["eval_return"], dtype=np.float64),
        steps=steps,
        returns=returns,
    )


def _read_config(path: Path) -> dict[str, Any]:
    """config.json, checked by :func:`rundir.load_config`; asynchronous
    IMPALA's (``mode: async``) has no chunk plan, so of it only the fields a
    report reads are checked."""
    try:
        return rundir.load_config(path)
    except rundir.RunDirError:
        saved = _async_config(path)
        if saved is None:
            raise
        return saved


def _async_config(path: Path) -> dict[str, Any] | None:
    try:
        saved = rundir.read_json(path / rundir.CONFIG)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    valid = (
        isinstance(saved, dict)
        and saved.get("mode") == "async"
        and isinstance(saved.get("algorithm"), str)
        and isinstance(saved.get("env_id"), str)
        and isinstance(saved.get("env_kwargs"), dict)
        and isinstance(saved.get("seeds"), int)
        and saved["seeds"] >= 1
    )
    return saved if valid else None


def _read_summary(path: Path, seeds: int) -> dict[str, Any]:
    file = path / rundir.SUMMARY
    if not file.is_file():
        raise ReportError(f"{path} has no {rundir.SUMMARY}: the run has not finished")
    try:
        summary = rundir.read_json(file)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReportError(f"{file} is not valid JSON: {e}") from None
    if not isinstance(summary, dict):
        raise ReportError(
            f"{file} holds {type(summary).__name__}, not an object: not a summary.json jaxrl wrote"
        )
    if summary.get("status") == "diverged":
        error = summary.get("error", "no error recorded")
        raise ReportError(f"{path} diverged ({error}): it has no final evaluation")
    returns = summary.get("eval_return")
    if not isinstance(returns, list) or not all(_is_number(r) for r in returns):
        raise ReportError(f"{file}: eval_return={returns!r} is not a list of numbers")
    if not returns:
        raise ReportError(
            f"{path} was not evaluated (eval_episodes 0): it has no final return to report"
        )
    if len(returns) != seeds:
        raise ReportError(
            f"{file}: eval_return holds {len(returns)} values for the run's {seeds} seeds"
        )
    return summary


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _training_curves(path: Path, columns, seeds: int) -> tuple[np.ndarray, np.ndarray]:
    found = sorted(set(columns["seed"].tolist()))
    if found != list(range(seeds)):
        raise ReportError(f"{path} holds rows of seeds {found}, not of the run's {seeds} seeds")
    counts = {int(s): int(np.sum(columns["seed"] == s)) for s in found}
    if len(set(counts.values())) != 1:
        raise ReportError(f"{path} holds different numbers of rows per seed: {counts}")
    return curves_by_seed(columns)


# ---------------------------------------------------------------- grouping


@dataclasses.dataclass(frozen=True)
class ScoreTable:
    """The runs as rliable's matrices.

    Attributes:
      algorithms: in the order first given.
      tasks: the environments every algorithm ran, sorted.
      raw: algorithm -> ``[runs, tasks]`` final returns.
      scores: ``raw``, normalised where :attr:`normalised`.
      normalised: whether ``scores`` are normalised (:data:`REFERENCE_RETURNS`).
      notes: what the reader must know (dropped runs, why scores are raw).
    """

    algorithms: list[str]
    tasks: list[str]
    raw: dict[str, np.ndarray]
    scores: dict[str, np.ndarray]
    normalised: bool
    notes: list[str]


def group_runs(runs: Sequence[RunScores], *, raw: bool = False) -> ScoreTable:
    """Seeds of the same algorithm and environment pooled across run
    directories; environments that not every algorithm ran are left out, and
    an algorithm keeps as many seeds per environment as its fewest (rliable
    needs a full matrix), each noted. Normalised unless ``raw`` or an
    environment has no :data:`REFERENCE_RETURNS` entry."""
    groups = _finals_by_group(runs)
    algorithms = list(dict.fromkeys(r.algorithm for r in runs))
    tasks_of = {a: {t for (alg, t) in groups if alg == a} for a in algorithms}
    tasks = sorted(set.intersection(*tasks_of.values()))
    notes = []
    for a in algorithms:
        left_out = sorted(tasks_of[a] - set(tasks))
        if left_out:
            notes.append(
                f"{a}'s runs on {', '.join(left_out)} are left out: not every algorithm ran there."
            )
    if not tasks:
        raise ReportError(
            "no environment was run by every algorithm: "
            + "; ".join(f"{a} ran {', '.join(sorted(tasks_of[a]))}" for a in algorithms)
        )
    matrices = {}
    for a in algorithms:
        counts = {t: len(groups[a, t]) for t in tasks}
        runs_kept = min(counts.values())
        if len(set(counts.values())) > 1:
            notes.append(
                f"{a} has {', '.join(f'{n} seeds on {t}' for t, n in counts.items())}: "
                f"the first {runs_kept} of each are used."
            )
        matrices[a] = np.stack([groups[a, t][:runs_kept] for t in tasks], axis=1)
    normalised, why = _can_normalise(tasks, runs, raw)
    notes.append(why)
    scores = {a: normalise_tasks(m, tasks) for a, m in matrices.items()} if normalised else matrices
    return ScoreTable(algorithms, tasks, matrices, scores, normalised, notes)


def _finals_by_group(runs: Sequence[RunScores]) -> dict[tuple[str, str], np.ndarray]:
    groups: dict[tuple[str, str], list[np.ndarray]] = {}
    for run in runs:
        groups.setdefault((run.algorithm, run.task), []).append(run.final)
    return {key: np.concatenate(finals) for key, finals in groups.items()}


def _can_normalise(tasks: Sequence[str], runs: Sequence[RunScores], raw: bool) -> tuple[bool, str]:
    """Whether to normalise, and the sentence that tells the reader which scores they see."""
    if raw:
        return False, "Scores are raw returns (--raw)."
    undeclared = sorted({r.task for r in runs if r.task in tasks and not _declared(r)})
    if undeclared:
        return False, (
            f"Scores are raw returns: {', '.join(undeclared)} declare(s) no random and reference "
            "return at these settings, so aggregates over environments mix their scales and the "
            "optimality gap is not defined."
        )
    declared = "; ".join(
        f"{t} random {REFERENCE_RETURNS[t][0]:g}, reference {REFERENCE_RETURNS[t][1]:g}"
        for t in tasks
    )
    return True, (
        "Scores are normalised: (return - random) / (reference - random), 0 for a random "
        f"policy, 1 for the reference: {declared}."
    )


def _declared(run: RunScores) -> bool:
    return run.default_env and run.env_id in REFERENCE_RETURNS


def normalise_tasks(values: np.ndarray, tasks: Sequence[str]) -> np.ndarray:
    """``values`` ``[runs, tasks, ...]`` normalised per task by :data:`REFERENCE_RETURNS`."""
    from jaxrl.run import stats

    columns = [stats.normalise(values[:, i], *REFERENCE_RETURNS[t]) for i, t in enumerate(tasks)]
    return np.stack(columns, axis=1)


def curve_table(runs: Sequence[RunScores], table: ScoreTable, points: int = CURVE_POINTS):
    """``(env_steps [points], algorithm -> [runs, tasks, points])``: each
    seed's smoothed training return interpolated onto one grid of env steps
    that every run covers (from the last first-episode to the shortest run),
    normalised like ``table.scores``; ``None`` with the reason when there is
    no such grid."""
    kept = [r for r in runs if r.task in table.tasks and r.algorithm in table.algorithms]
    missing = [r.path for r in kept if r.returns is None]
    if missing:
        return None, f"No sample-efficiency curves: {missing[0]} has no {PRIMARY_METRIC} rows."
    start = max(_first_finite_step(r) for r in kept)
    end = min(float(r.steps[-1]) for r in kept)
    if not start < end:
        return None, (
            "No sample-efficiency curves: the runs share no env-step range after their first "
            "episodes."
        )
    grid = np.linspace(start, end, points)
    groups: dict[tuple[str, str], list[np.ndarray]] = {}
    for run in kept:
        on_grid = np.stack([np.interp(grid, run.steps, seed_curve) for seed_curve in run.returns])
        groups.setdefault((run.algorithm, run.task), []).append(on_grid)
    curves = {}
    for a in table.algorithms:
        runs_kept = table.raw[a].shape[0]
        curves[a] = np.stack(
            [np.concatenate(groups[a, t])[:runs_kept] for t in table.tasks], axis=1
        )
        if table.normalised:
            curves[a] = normalise_tasks(curves[a], table.tasks)
    return grid, curves


def _first_finite_step(run: RunScores) -> float:
    finite = np.all(np.isfinite(run.returns), axis=0)
    return float(run.steps[np.argmax(finite)]) if finite.any() else math.inf


def profile_thresholds(table: ScoreTable, points: int = PROFILE_POINTS) -> np.ndarray:
    """Thresholds τ spanning every score (and 0 to 1 when normalised)."""
    every = np.concatenate([s.ravel() for s in table.scores.values()])
    low, high = float(every.min()), float(every.max())
    if table.normalised:
        low, high = min(low, 0.0), max(high, 1.0)
    if low == high:
        low, high = low - 1.0, high + 1.0
    return np.linspace(low, high, points)


# ---------------------------------------------------------------- the statistics


@dataclasses.dataclass(frozen=True)
class Report:
    """What a report computed (:func:`analyse`) and where it was written
    (:func:`write_report`).

    Attributes:
      runs: the runs read.
      table: the scores (:class:`ScoreTable`).
      aggregates: algorithm -> statistic (``mean``, ``median``, ``iqm``,
        ``optimality_gap``) -> :class:`jaxrl.run.stats.Interval`; the
        optimality gap only for normalised scores.
      improvement: ``(X, Y)`` -> P(X > Y) as an Interval, each pair once.
      taus: ``[k]`` thresholds of the performance profiles.
      profiles: algorithm -> ``(fraction above τ, low, high)``, each ``[k]``.
      curve_steps: ``[points]`` env steps of the sample-efficiency curves, or None.
      curves: algorithm -> ``(IQM, low, high)``, each ``[points]``, or None.
      notes: what the reader must know.
      reps, seed: of the bootstrap.
      out: the report directory (None until written).
      files: the files written in ``out``.
    """

    runs: list[RunScores]
    table: ScoreTable
    aggregates: dict[str, dict[str, Any]]
    improvement: dict[tuple[str, str], Any]
    taus: np.ndarray
    profiles: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    curve_steps: np.ndarray | None
    curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] | None
    notes: list[str]
    reps: int
    seed: int
    out: Path | None = None
    files: list[str] = dataclasses.field(default_factory=list)


def analyse(
    runs: Sequence[RunScores], *, reps: int = DEFAULT_REPS, seed: int = DEFAULT_SEED,
    raw: bool = False,
) -> Report:
    """Every statistic of the report, with ``reps`` bootstrap resamples drawn from ``seed``."""
    from jaxrl.run import stats

    if reps < 1:
        raise ReportError(f"--reps must be at least 1, got {reps}")
    table = group_runs(runs, raw=raw)
    aggregates = stats.aggregate_intervals(table.scores, reps=reps, seed=seed)
    if not table.normalised:
        # Against what target? Raw returns share none across environments.
        for intervals in aggregates.values():
            intervals.pop("optimality_gap")
    taus = profile_thresholds(table)
    grid, curves = curve_table(runs, table)
    return Report(
        runs=list(runs),
        table=table,
        aggregates=aggregates,
        improvement=stats.improvement_intervals(table.scores, reps=reps, seed=seed),
        taus=taus,
        profiles=stats.performance_profiles(table.scores, taus, reps=reps, seed=seed),
        curve_steps=grid,
        curves=None if grid is None else stats.iqm_curves(curves, reps=reps, seed=seed),
        notes=table.notes + ([curves] if grid is None else []),
        reps=reps,
        seed=seed,
    )


# ---------------------------------------------------------------- writing


def write_report(
    run_dirs: Sequence[str | os.PathLike],
    out: str | os.PathLike | None = None,
    *,
    reps: int = DEFAULT_REPS,
    seed: int = DEFAULT_SEED,
    raw: bool = False,
) -> Report:
    """Reads ``run_dirs``, computes the statistics (:func:`analyse`) and
    writes the report into ``out`` (default: a new ``reports/report-<time>``),
    which must be new, empty or an earlier report (whose files are replaced).
    Raises ReportError (a RunDirError, a ValueError) before anything is written."""
    # Resolved first: "new/.." names an existing directory once "new" is made.
    out = (default_out_dir() if out is None else rundir.out_path(out)).resolve()
    check_report_dir(out)
    report = analyse(read_runs(run_dirs), reps=reps, seed=seed, raw=raw)
    _start_report_dir(out)
    inputs = {
        "report_format": REPORT_FORMAT,
        "runs": [str(r.path) for r in report.runs],
        "reps": reps,
        "seed": seed,
        "normalised": report.table.normalised,
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    # report.json first: a report cut short is still known as one, and rewritable.
    rundir.write_json(out / REPORT_JSON, inputs)
    figures = _write_figures(out, report)
    (out / REPORT_CSV).write_text(format_csv(report))
    (out / REPORT_MD).write_text(format_markdown(report, figures))
    files = [REPORT_JSON, REPORT_MD, REPORT_CSV, *figures]
    rundir.write_json(out / REPORT_JSON, {**inputs, "files": files, "notes": report.notes})
    return dataclasses.replace(report, out=out, files=files)


def default_out_dir() -> Path:
    return Path("reports") / f"report-{time.strftime('%Y%m%d-%H%M%S')}"


def is_report(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a report.json that a jaxrl report wrote."""
    try:
        saved = rundir.read_json(Path(path) / REPORT_JSON)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(saved, dict) and "report_format" in saved


def check_report_dir(path: Path) -> None:
    """ReportError unless ``path`` is new, empty or an earlier report, and writable."""
    if path.exists() and not path.is_dir():
        raise ReportError(f"--out {path} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()) and not is_report(path):
        raise ReportError(
            f"--out {path} is not empty and is not a jaxrl report (no {REPORT_JSON}); "
            "choose a new or empty directory"
        )
    rundir.check_writable(path)


def _start_report_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    for name in REPORT_FILES:
        (path / name).unlink(missing_ok=True)


def format_csv(report: Report) -> str:
    """``statistic,algorithm,versus,estimate,ci_low,ci_high,scores``: a row per
    aggregate per algorithm, then one per pair for P(algorithm > versus)."""
    scores = "normalised" if report.table.normalised else "raw"
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["statistic", "algorithm", "versus", "estimate", "ci_low", "ci_high", "scores"])
    for algorithm, intervals in report.aggregates.items():
        for name, interval in intervals.items():
            writer.writerow([name, algorithm, "", *_numbers(interval), scores])
    for (x, y), interval in report.improvement.items():
        writer.writerow(["probability_of_improvement", x, y, *_numbers(interval), scores])
    return buffer.getvalue()


def _numbers(interval) -> list[str]:
    return [repr(float(v)) for v in (interval.estimate, interval.low, interval.high)]


def format_markdown(report: Report, figures: Sequence[str]) -> str:
    """report.md: aggregates, P(X > Y), the final return per environment, figures, notes, runs."""
    table = report.table
    kind = "normalised score" if table.normalised else "raw return"
    names = list(next(iter(report.aggregates.values())))
    lines = [
        "# jaxrl report",
        "",
        f"{len(report.runs)} run(s): {len(table.algorithms)} algorithm(s) on {len(table.tasks)} "
        f"environment(s) ({', '.join(table.tasks)}). A run's score is its final evaluation "
        f"return ({kind}). Brackets hold 95% stratified-bootstrap confidence intervals "
        f"({report.reps} resamples).",
        "",
        "## Aggregates over environments",
        "",
        _row(["algorithm", "runs", *(AGGREGATE_LABELS[n] for n in names)]),
        _row(["---"] * (2 + len(names))),
    ]
    for algorithm, intervals in report.aggregates.items():
        runs_used = f"{table.scores[algorithm].shape[0]} × {len(table.tasks)}"
        lines.append(_row([algorithm, runs_used, *(_interval_text(intervals[n]) for n in names)]))
    if report.improvement:
        lines += ["", "## Probability of improvement", ""]
        lines += [_row(["X", "Y", "P(X > Y)"]), _row(["---"] * 3)]
        lines += [_row([x, y, _interval_text(i)]) for (x, y), i in report.improvement.items()]
    lines += [
        "",
        "## Final return per environment (raw, mean ± std over seeds)",
        "",
        _row(["algorithm", *table.tasks]),
        _row(["---"] * (1 + len(table.tasks))),
    ]
    for algorithm in table.algorithms:
        columns = table.raw[algorithm].T
        lines.append(_row([algorithm, *(f"{c.mean():.4g} ± {c.std():.3g}" for c in columns)]))
    lines += ["", "## Figures", ""]
    lines += [f"![{name.removesuffix('.png')}]({name})" for name in figures]
    lines += ["", "## Notes", "", *(f"- {note}" for note in report.notes), "", "## Runs", ""]
    lines += [
        f"- `{r.path}`: {r.algorithm} on {r.task}, {len(r.final)} seed(s)" for r in report.runs
    ]
    return "\n".join(lines) + "\n"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _interval_text(interval) -> str:
    return f"{interval.estimate:.3g} [{interval.low:.3g}, {interval.high:.3g}]"


# ---------------------------------------------------------------- figures


def _write_figures(out: Path, report: Report) -> list[str]:
    """Writes the PNGs; returns their names."""
    colors = {a: f"C{i % 10}" for i, a in enumerate(report.table.algorithms)}
    score = "normalised score" if report.table.normalised else "return"
    written = [
        _save(plot_aggregates(report.aggregates, colors, score), out / AGGREGATES_PNG),
        _save(plot_profiles(report.profiles, report.taus, colors, score), out / PROFILE_PNG),
    ]
    if report.improvement:
        written.append(_save(plot_improvement(report.improvement), out / IMPROVEMENT_PNG))
    if report.curves is not None:
        figure = plot_curves(report.curve_steps, report.curves, colors, score)
        written.append(_save(figure, out / CURVES_PNG))
    return written


def _figure(width: float, height: float):
    # A bare Figure renders with Agg and touches no pyplot state (as plots.py).
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100)


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path.name


def plot_aggregates(aggregates: Mapping[str, Mapping[str, Any]], colors, score: str):
    """One panel per statistic: each algorithm's CI as a bar, its estimate as a tick."""
    algorithms = list(aggregates)
    names = list(aggregates[algorithms[0]])
    fig = _figure(3.2 * len(names), 0.9 + 0.45 * len(algorithms))
    axes = np.atleast_1d(fig.subplots(1, len(names), sharey=True))
    for ax, name in zip(axes, names, strict=True):
        for row, algorithm in enumerate(algorithms):
            _interval_bar(ax, row, aggregates[algorithm][name], colors[algorithm])
        ax.set_title(AGGREGATE_LABELS[name])
        ax.set_xlabel(score)
        ax.grid(alpha=0.3, axis="x")
    axes[0].set_yticks(range(len(algorithms)), algorithms)
    return fig


def plot_profiles(profiles, taus, colors, score: str):
    """Fraction of runs above τ per algorithm, with its CI band."""
    fig, ax = _bands_figure(taus, profiles, colors)
    ax.set_xlabel(f"{score} (τ)")
    ax.set_ylabel("fraction of runs with score > τ")
    ax.set_ylim(-0.02, 1.02)
    return fig


def plot_improvement(improvement):
    """P(X > Y) for each pair, CI as a bar, estimate as a tick, 0.5 marked."""
    pairs = list(improvement)
    fig = _figure(6.4, 0.9 + 0.45 * len(pairs))
    ax = fig.subplots()
    for row, pair in enumerate(pairs):
        _interval_bar(ax, row, improvement[pair], f"C{row % 10}")
    ax.axvline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(pairs)), [f"P({x} > {y})" for x, y in pairs])
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability of improvement")
    ax.grid(alpha=0.3, axis="x")
    return fig


def plot_curves(steps, bands, colors, score: str):
    """IQM of the training return against env steps per algorithm, with its CI band."""
    fig, ax = _bands_figure(steps, bands, colors)
    ax.set_xlabel("environment steps (per seed)")
    ax.set_ylabel(f"IQM training {score} (smoothed)")
    return fig


def _interval_bar(ax, row: int, interval, color) -> None:
    """A confidence interval as a horizontal bar on ``row``, its estimate as a black tick."""
    width = interval.high - interval.low
    ax.barh(row, width, left=interval.low, height=0.6, color=color, alpha=0.75)
    ax.vlines(interval.estimate, row - 0.3, row + 0.3, color="k")


def _bands_figure(x, bands, colors):
    """Lines over ``x`` with CI bands; ``bands``: algorithm -> (line, low, high)."""
    fig = _figure(6.4, 4.0)
    ax = fig.subplots()
    for algorithm, (line, low, high) in bands.items():
        ax.plot(x, line, color=colors[algorithm], linewidth=1.8, label=algorithm)
        ax.fill_between(x, low, high, color=colors[algorithm], alpha=0.2, linewidth=0)
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return fig, ax


# ---------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``jaxrl report`` arguments (read by :func:`main`) and its description."""
    parser.description = parser.description or DESCRIPTION
    parser.add_argument(
        "runs", nargs="+", metavar="RUN_DIR", help="run directories written by jaxrl train"
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="where to write the report (default: reports/report-<time>); a new or empty "
        "directory, or an earlier report's, whose files are replaced",
    )
    parser.add_argument(
        "--reps",
        type=_positive_int,
        default=DEFAULT_REPS,
        metavar="N",
        help=f"bootstrap resamples per confidence interval (default {DEFAULT_REPS}; "
        "rliable's is 50000)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help=f"seed of the bootstrap resampling (default {DEFAULT_SEED})",
    )
    parser.add_argument(
        "--raw",
        action="store_true",
        help="report raw returns even where environments declare random and reference returns",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def main(
    run_dirs: Sequence[str | os.PathLike],
    out: str | os.PathLike | None = None,
    *,
    reps: int = DEFAULT_REPS,
    seed: int = DEFAULT_SEED,
    raw: bool = False,
) -> int:
    """``jaxrl report``: writes the report (:func:`write_report`), prints its
    aggregates and returns 0. Raises ReportError (a RunDirError) for bad input."""
    report = write_report(run_dirs, out, reps=reps, seed=seed, raw=raw)
    kind = "normalised scores" if report.table.normalised else "raw returns"
    tasks = ", ".join(report.table.tasks)
    print(f"{len(report.table.algorithms)} algorithm(s) on {tasks} ({kind}, 95% CIs)")
    for algorithm, intervals in report.aggregates.items():
        shown = ", ".join(
            f"{AGGREGATE_LABELS[n]} {_interval_text(i)}" for n, i in intervals.items()
        )
        print(f"  {algorithm}: {shown}")
    for (x, y), interval in report.improvement.items():
        print(f"  P({x} > {y}) = {_interval_text(interval)}")
    figures = len(report.files) - 3
    print(f"wrote {report.out / REPORT_MD}, {REPORT_CSV} and {figures} figure(s)")
    return 0
