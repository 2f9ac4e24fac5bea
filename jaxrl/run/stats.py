"""Aggregate statistics over runs and environments (Agarwal et al. 2021,
"Deep Reinforcement Learning at the Edge of the Statistical Precipice").

Scores are ``[runs, tasks]`` matrices, rliable's layout: one row per seed,
one column per environment. Every estimate comes with a percentile
confidence interval from the stratified bootstrap: runs are resampled with
replacement within each task, tasks stay fixed. The resampling is rliable's
(``pip install 'jaxrl[report]'``); the estimators are the paper's
definitions, written out here so each is visible in one line.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np

try:
    from rliable import library as _rliable
except ImportError as e:  # the [report] extra is optional
    raise ImportError(
        "jaxrl's aggregate statistics need rliable: pip install 'jaxrl[report]'"
    ) from e

AGGREGATES = ("mean", "median", "iqm", "optimality_gap")
"""The aggregate estimators, in the order :func:`aggregates` returns them."""

CONFIDENCE = 0.95


@dataclasses.dataclass(frozen=True)
class Interval:
    """A point estimate and its confidence interval."""

    estimate: float
    low: float
    high: float


def mean(scores: np.ndarray) -> float:
    """Mean over tasks of each task's mean score."""
    return float(np.mean(np.mean(scores, axis=0)))


def median(scores: np.ndarray) -> float:
    """Median over tasks of each task's mean score."""
    return float(np.median(np.mean(scores, axis=0)))


def iqm(scores: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """Interquartile mean: the mean of the middle 50% of all runs of all tasks
    (a 25% trimmed mean). With ``axis`` the other axes are pooled and one IQM
    per entry of ``axis`` comes back (a curve's points)."""
    if axis is None:
        return float(_trimmed_mean(np.ravel(scores)))
    pooled = np.moveaxis(scores, axis, -1).reshape(-1, scores.shape[axis])
    return _trimmed_mean(pooled)


def _trimmed_mean(pooled: np.ndarray) -> np.ndarray:
    # scipy.stats.trim_mean's rule (rliable's IQM): cut int(0.25 n) from each end.
    n = pooled.shape[0]
    cut = int(0.25 * n)
    middle = np.sort(pooled, axis=0)[cut : n - cut]
    return np.mean(middle, axis=0)


def optimality_gap(scores: np.ndarray, target: float = 1.0) -> float:
    """How far runs fall short of ``target`` on average: ``target - mean(min(score, target))``
    (a score above the target earns nothing extra)."""
    return float(target - np.mean(np.minimum(scores, target)))


def aggregates(scores: np.ndarray) -> np.ndarray:
    """``[mean, median, iqm, optimality_gap]`` of ``scores`` (see :data:`AGGREGATES`)."""
    return np.array([mean(scores), median(scores), iqm(scores), optimality_gap(scores)])


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y): the chance that a run of X beats a run of Y on a task, with a
    tie counting half (``P(X > Y) + P(X = Y) / 2``, the Mann-Whitney U
    statistic over ``n * m`` pairs), averaged over tasks. ``x``: ``[n, tasks]``,
    ``y``: ``[m, tasks]``."""
    pairs_x, pairs_y = x[:, None, :], y[None, :, :]
    wins = np.mean(pairs_x > pairs_y, axis=(0, 1))
    ties = np.mean(pairs_x == pairs_y, axis=(0, 1))
    return float(np.mean(wins + 0.5 * ties))


def score_distribution(scores: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """The performance profile: for each threshold τ the fraction of all runs
    of all tasks that score above τ."""
    return np.mean(np.ravel(scores)[:, None] > np.asarray(taus)[None, :], axis=0)


def aggregate_intervals(
    scores: Mapping[str, np.ndarray], *, reps: int, seed: int
) -> dict[str, dict[str, Interval]]:
    """Algorithm -> aggregate name (:data:`AGGREGATES`) -> estimate with its CI."""
    points, cis = _bootstrap(scores, aggregates, reps=reps, seed=seed)
    return {
        algorithm: {
            name: _interval(points[algorithm][i], cis[algorithm][:, i])
            for i, name in enumerate(AGGREGATES)
        }
        for algorithm in scores
    }


def performance_profiles(
    scores: Mapping[str, np.ndarray], taus: np.ndarray, *, reps: int, seed: int
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Algorithm -> ``(profile, low, high)``, each ``[len(taus)]``: the fraction
    of runs above each τ (:func:`score_distribution`) with its CI band."""
    points, cis = _bootstrap(scores, lambda s: score_distribution(s, taus), reps=reps, seed=seed)
    return {a: (np.asarray(points[a]), *np.asarray(cis[a])) for a in scores}


def improvement_intervals(
    scores: Mapping[str, np.ndarray], *, reps: int, seed: int
) -> dict[tuple[str, str], Interval]:
    """``(X, Y)`` -> P(X > Y) with its CI, for each pair of algorithms in
    ``scores``' order (X before Y). Runs of X and of Y are resampled
    independently, within each task."""
    names = list(scores)
    pairs = {
        (x, y): [scores[x], scores[y]] for i, x in enumerate(names) for y in names[i + 1 :]
    }
    if not pairs:
        return {}
    keyed = {_pair_key(pair): arrays for pair, arrays in pairs.items()}
    points, cis = _bootstrap(keyed, probability_of_improvement, reps=reps, seed=seed)
    return {pair: _interval(points[_pair_key(pair)], cis[_pair_key(pair)]) for pair in pairs}


def iqm_curves(
    curves: Mapping[str, np.ndarray], *, reps: int, seed: int
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Algorithm -> ``(iqm, low, high)``, each ``[points]``, from curves
    ``[runs, tasks, points]``: the IQM over runs and tasks at every point
    with a pointwise CI band."""
    points, cis = _bootstrap(curves, lambda c: iqm(c, axis=2), reps=reps, seed=seed)
    return {a: (np.asarray(points[a]), *np.asarray(cis[a])) for a in curves}


def normalise(scores: np.ndarray, random: float, reference: float) -> np.ndarray:
    """``(score - random) / (reference - random)``: 0 is a random policy, 1 the reference."""
    return (np.asarray(scores, dtype=np.float64) - random) / (reference - random)


def _bootstrap(
    data: Mapping[str, np.ndarray | Sequence[np.ndarray]],
    statistic: Callable[..., np.ndarray | float],
    *,
    reps: int,
    seed: int,
) -> tuple[dict, dict]:
    """rliable's stratified bootstrap: point estimates and percentile CIs (``[2, ...]``)."""
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    with _global_numpy_seed(seed):
        return _rliable.get_interval_estimates(
            dict(data),
            lambda *s: np.atleast_1d(statistic(*s)),
            reps=reps,
            confidence_interval_size=CONFIDENCE,
        )


@contextlib.contextmanager
def _global_numpy_seed(seed: int) -> Iterator[None]:
    # rliable draws its resamples from NumPy's global generator
    # (np.random.choice), whatever random_state says: seed it for a
    # reproducible report and give the caller's state back afterwards.
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(saved)


def _interval(point, ci) -> Interval:
    estimate, low, high = np.concatenate([np.ravel(point), np.ravel(ci)]).astype(float)
    return Interval(float(estimate), float(low), float(high))


def _pair_key(pair: tuple[str, str]) -> str:
    return "\0".join(pair)
