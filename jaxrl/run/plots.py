"""Learning-curve plots from ``metrics.csv`` and ``eval.csv`` (matplotlib, no display needed)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


def smoothed_returns(returns: np.ndarray, episodes: np.ndarray | None, window: int) -> np.ndarray:
    """Trailing-window mean return per point, each iteration weighted by the
    episodes it completed (an iteration that finished none has return 0 and
    must not drag the curve down). ``returns``/``episodes``: ``[n]``."""
    weights = np.ones_like(returns) if episodes is None else episodes.astype(np.float64)
    weighted = np.cumsum(np.concatenate([[0.0], returns * weights]))
    total = np.cumsum(np.concatenate([[0.0], weights]))
    end = np.arange(1, len(returns) + 1)
    start = np.maximum(end - window, 0)
    numerator = weighted[end] - weighted[start]
    denominator = total[end] - total[start]
    with np.errstate(invalid="ignore", divide="ignore"):
        curve = numerator / denominator
    # Before the first completed episode there is nothing to show.
    return np.where(denominator > 0, curve, np.nan)


def curves_by_seed(
    columns: Mapping[str, Sequence], window: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(env_steps [n], smoothed returns [seeds, n])`` from metrics columns."""
    env_steps = np.asarray(columns["env_steps"])
    seed_ids = np.asarray(columns["seed"])
    returns = np.asarray(columns["episode_return"], dtype=np.float64)
    episodes = columns.get("episodes_completed")
    episodes = None if episodes is None else np.asarray(episodes, dtype=np.float64)
    seeds = np.unique(seed_ids)
    steps = env_steps[seed_ids == seeds[0]]
    window = window or max(1, len(steps) // 25)
    curves = []
    for seed in seeds:
        rows = seed_ids == seed
        curves.append(
            smoothed_returns(returns[rows], None if episodes is None else episodes[rows], window)
        )
    return steps, np.stack(curves)


def plot_curves(
    source: str | os.PathLike | Mapping[str, Sequence],
    out_png: str | os.PathLike,
    title: str | None = None,
    window: int | None = None,
    evaluations: str | os.PathLike | Mapping[str, Sequence] | None = None,
) -> Path:
    """Plots smoothed ``episode_return`` against ``env_steps``: the mean over
    seeds with a min-max band. ``source`` is a metrics.csv path or its columns
    (name -> values, as :func:`jaxrl.run.sinks.read_csv` returns);
    ``evaluations``, an eval.csv path or its columns, adds the evaluation
    returns (mean over seeds, with their min-max band)."""
    # A bare Figure renders with Agg and touches no pyplot state, so plotting
    # works headless and never switches the backend of a notebook.
    from matplotlib.figure import Figure

    from jaxrl.run.sinks import read_csv

    def columns_of(data):
        return read_csv(data) if isinstance(data, (str, os.PathLike)) else data

    columns = columns_of(source)
    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    ax = fig.subplots()
    if len(columns["env_steps"]):
        steps, curves = curves_by_seed(columns, window)
        with warnings.catch_warnings():
            # All-NaN columns (before any seed finished an episode) are expected.
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(curves, axis=0)
            low, high = np.nanmin(curves, axis=0), np.nanmax(curves, axis=0)
        if len(curves) > 1:
            ax.fill_between(steps, low, high, alpha=0.25, linewidth=0, label="min-max over seeds")
        ax.plot(steps, mean, linewidth=1.5, label=f"training: mean of {len(curves)} seed(s)")
    evaluations = None if evaluations is None else columns_of(evaluations)
    if evaluations is not None and len(evaluations["env_steps"]):
        _plot_evaluations(ax, evaluations)
    if ax.lines:
        ax.legend(loc="lower right", fontsize="small")
    ax.set_xlabel("environment steps (per seed)")
    ax.set_ylabel("episode return (training: smoothed)")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png, format="png")
    return out_png


def _plot_evaluations(ax, columns: Mapping[str, Sequence]) -> None:
    """Evaluation returns per point: the mean over seeds, with a min-max band."""
    env_steps = np.asarray(columns["env_steps"])
    returns = np.asarray(columns["eval_return"], dtype=np.float64)
    steps = np.unique(env_steps)
    per_point = [returns[env_steps == s] for s in steps]
    if max(len(r) for r in per_point) > 1:
        ax.fill_between(
            steps, [r.min() for r in per_point], [r.max() for r in per_point],
            alpha=0.2, linewidth=0, color="C1",
        )
    ax.plot(steps, [r.mean() for r in per_point], "o-", color="C1", markersize=3,
            linewidth=1.2, label="evaluation: mean of seeds")
