"""Queries waiting for people, and the labeller that waits for their answers.

A run with ``labels="human"`` keeps two things in its run directory::

    <run>/labels.jsonl               the label store (jaxrl.agents.label_store: schema there)
    <run>/queries/round-00000012.npz the queries of iteration 12, one file per round

A round file holds, for its K queries, the segments' ids and what a person
needs to watch them: ``left_ids``/``right_ids`` [K], ``left_obs``/``right_obs``
[K, L, obs_dim] (flattened observations), ``left_action``/``right_action``
[K, L, ...] and ``left_mask``/``right_mask`` [K, L] (1 up to the first episode
end). It is written to a temporary name, fsync'd and renamed, so a reader sees
a whole round or none. A query is pending while the store has no label for
its (left id, right id) pair; the first label given for a pair is the answer.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import zipfile
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

from jaxrl.agents import label_store

LABELS = "labels.jsonl"
QUERIES = "queries"
SIDES = ("left", "right")
_FIELDS = ("ids", "obs", "action", "mask")


class LabelTimeout(RuntimeError):
    """A round's queries were not all answered within the timeout."""


def labels_path(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / LABELS


def round_path(run_dir: str | os.PathLike, iteration: int) -> Path:
    return Path(run_dir) / QUERIES / f"round-{iteration:08d}.npz"


@dataclasses.dataclass(frozen=True)
class Segment:
    """One segment as a person sees it: ``obs [n, obs_dim]`` and ``action [n, ...]``
    of the ``n`` steps up to its first episode end."""

    id: int
    obs: np.ndarray
    action: np.ndarray


@dataclasses.dataclass(frozen=True)
class Query:
    iteration: int
    index: int
    left: Segment
    right: Segment

    @property
    def key(self) -> tuple[int, int]:
        return (self.left.id, self.right.id)


def write_round(run_dir: str | os.PathLike, iteration: int, left, right, which: np.ndarray) -> Path:
    """Writes the queries ``which`` (indices into the ``[K, ...]`` segments
    ``left``/``right``, objects with ids/obs/action/mask) of ``iteration``."""
    path = round_path(run_dir, iteration)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"{side}_{name}": np.asarray(getattr(seg, name))[which]
              for side, seg in zip(SIDES, (left, right)) for name in _FIELDS}
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, iteration=np.int64(iteration), **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


class DamagedRound(ValueError):
    """A query round file that cannot be read (truncated, or not a round)."""


def _check_round(fields: dict[str, np.ndarray]) -> None:
    """ValueError naming the first array that a round of K queries lacks or
    has in the wrong shape or type."""
    iteration = fields.get("iteration")
    if iteration is None or iteration.shape != () or not np.issubdtype(iteration.dtype, np.integer):
        raise ValueError("no integer scalar 'iteration'")
    for name in (f"{side}_{field}" for side in SIDES for field in _FIELDS):
        if name not in fields:
            raise ValueError(f"no array {name!r}")
    K = fields["left_ids"].shape[0] if fields["left_ids"].ndim == 1 else None
    for side in SIDES:
        ids, obs, action, mask = (fields[f"{side}_{name}"] for name in _FIELDS)
        if ids.shape != (K,) or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"{side}_ids has shape {ids.shape} and dtype {ids.dtype}: expected "
                             "integers [K], as many as left_ids")
        if mask.ndim != 2 or mask.shape[0] != K or not np.isin(mask, (0, 1)).all():
            raise ValueError(f"{side}_mask has shape {mask.shape} and dtype {mask.dtype}: expected "
                             f"0/1 values [K={K}, L]")
        for name, array in (("obs", obs), ("action", action)):
            if array.shape[:2] != mask.shape or not _numeric(array):
                raise ValueError(f"{side}_{name} has shape {array.shape} and dtype {array.dtype}: "
                                 f"expected numbers [{K}, {mask.shape[1]}, ...]")


def _numeric(array: np.ndarray) -> bool:
    return np.issubdtype(array.dtype, np.number) or array.dtype == bool


def _arrays_of(path: str | os.PathLike) -> dict[str, np.ndarray]:
    data = np.load(path, allow_pickle=False)
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"a single {type(data).__name__}, not an .npz archive of arrays")
    with data:
        return {name: data[name] for name in data.files}


def read_round(path: str | os.PathLike) -> list[Query]:
    """The queries of one round file; :class:`DamagedRound` naming the file
    and the fault if it cannot be read."""
    try:
        fields = _arrays_of(path)
        _check_round(fields)
    except (OSError, EOFError, ValueError, TypeError, zipfile.BadZipFile, zlib.error) as e:
        raise DamagedRound(f"{path} is damaged: {_one_line(e)}") from None
    iteration = int(fields["iteration"])

    def segment(side, k):
        steps = int(fields[f"{side}_mask"][k].sum())
        return Segment(id=int(fields[f"{side}_ids"][k]), obs=fields[f"{side}_obs"][k][:steps],
                       action=fields[f"{side}_action"][k][:steps])

    return [Query(iteration, k, segment("left", k), segment("right", k))
            for k in range(len(fields["left_ids"]))]


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def scan_rounds(run_dir: str | os.PathLike) -> tuple[list[Query], list[DamagedRound]]:
    """Every query of the intact rounds, oldest first (a duplicated pair
    once), and the error of each damaged round, which is skipped."""
    seen, queries, damaged = set(), [], []
    for path in sorted((Path(run_dir) / QUERIES).glob("round-*.npz")):
        try:
            round_queries = read_round(path)
        except DamagedRound as e:
            damaged.append(e)
            continue
        for query in round_queries:
            if query.key not in seen:
                seen.add(query.key)
                queries.append(query)
    return queries, damaged


def all_queries(run_dir: str | os.PathLike) -> list[Query]:
    """Every query the run has asked, oldest first (a duplicated pair once).
    A damaged round is skipped and reported once (DamagedFileWarning): one
    bad file must not hide the queries of the others."""
    queries, damaged = scan_rounds(run_dir)
    for error in damaged:
        label_store.warn_once(("round", str(error)), _skipped_round(error))
    return queries


def _skipped_round(error: DamagedRound) -> str:
    return f"{error}; its queries are skipped, the other rounds are not"


def damage_report(run_dir: str | os.PathLike) -> list[str]:
    """One line for each damaged round and label line of the run that the
    readers skip (all of it stays on disk), for a labeller to show."""
    _, damaged = scan_rounds(run_dir)
    path = labels_path(run_dir)
    return [_skipped_round(e) for e in damaged] + [
        label_store.skipped_line(path, number, reason) for number, reason in label_store.load(path).damaged]


def answers(run_dir: str | os.PathLike) -> dict[tuple[int, int], label_store.Label]:
    """The first label of each (left id, right id) pair in the run's store."""
    found: dict[tuple[int, int], label_store.Label] = {}
    for label in label_store.read_labels(labels_path(run_dir)):
        found.setdefault((label.left, label.right), label)
    return found


def pending_queries(run_dir: str | os.PathLike) -> list[Query]:
    """Queries with no label yet, oldest first."""
    answered = answers(run_dir)
    return [q for q in all_queries(run_dir) if q.key not in answered]


def run_env_id(run_dir: str | os.PathLike) -> str | None:
    """The env id in the run's config.json (None if there is none)."""
    import json

    try:
        return json.loads((Path(run_dir) / "config.json").read_text())["env_id"]
    except (OSError, ValueError, KeyError):
        return None


class HumanLabeller:
    """The host side of ``labels="human"`` (install with
    ``reward_model.use_labeller``): writes an iteration's queries to
    ``run_dir``, then polls the label store until every one is answered
    (left / right / equal / skip) or ``timeout`` seconds pass, when it raises
    :class:`LabelTimeout` (kept in ``.timed_out``). Already answered queries
    (a resumed run asks them again) return at once."""

    def __init__(self, run_dir: str | os.PathLike, timeout: float = 3600.0, poll_seconds: float = 0.2,
                 say: Callable[[str], None] | None = None):
        self.run_dir = Path(run_dir)
        self.timeout = timeout
        self.poll_seconds = poll_seconds
        self.say = say or (lambda text: print(text, file=sys.stderr, flush=True))
        self.timed_out: LabelTimeout | None = None

    def __call__(self, iteration: int, left, right, valid: np.ndarray):
        K = valid.shape[0]
        preference, answered = np.zeros((K,), np.float32), np.zeros((K,), bool)
        which = np.flatnonzero(valid)
        if which.size == 0:
            return preference, answered
        keys = [(int(left.ids[k]), int(right.ids[k])) for k in which]
        found = answers(self.run_dir)
        if not all(key in found for key in keys):
            write_round(self.run_dir, iteration, left, right, which)
            self.say(f"waiting for {len(keys)} labels (iteration {iteration}): "
                     f"label them with `jaxrl label {self.run_dir}`")
            deadline = time.monotonic() + self.timeout
            while True:
                found = answers(self.run_dir)
                missing = sum(key not in found for key in keys)
                if not missing:
                    break
                if time.monotonic() > deadline:
                    self.timed_out = LabelTimeout(
                        f"no labels for {missing} of {len(keys)} queries of iteration {iteration} "
                        f"after {self.timeout:g} s; label them with `jaxrl label {self.run_dir}` "
                        f"and continue with `jaxrl train rm-ppo --out {self.run_dir} --resume`")
                    raise self.timed_out
                time.sleep(self.poll_seconds)
        for k, key in zip(which, keys):
            mu = label_store.preference_of(found[key])
            answered[k] = mu is not None
            preference[k] = 0.0 if mu is None else mu
        return preference, answered
