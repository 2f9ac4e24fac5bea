"""Queries waiting for people, and the labeller that waits for their answers.

A run with ``labels="human"`` keeps two things in its run directory::

    <run>/labels.jsonl               the label store (jaxrl.feedback.label_store: schema there)
    <run>/queries/round-00000012.npz the queries of iteration 12, one file per round
    <run>/labelling.json             what the run is doing (jaxrl.feedback.status)

A round file holds, for its K queries, the segments' ids and what a person
needs to watch them: ``left_ids``/``right_ids`` [K], ``left_obs``/``right_obs``
[K, L, obs_dim] (flattened observations), ``left_action``/``right_action``
[K, L, ...] and ``left_mask``/``right_mask`` [K, L] (1 up to the first episode
end). It is written to a temporary name, fsync'd and renamed, so a reader sees
a whole round or none. A query is pending while the store has no label for
its (left id, right id) pair; the first label given for a pair is the answer,
until an undo line takes it back (:func:`label_store.standing_answers`).
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

from jaxrl.feedback import label_store
from jaxrl.feedback import status as run_status

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
    of the ``n`` steps up to its first episode end, of the ``length`` steps
    the run cut (None: not known)."""

    id: int
    obs: np.ndarray
    action: np.ndarray
    length: int | None = None

    @property
    def episode_ended(self) -> bool:
        """Whether its episode ended before the segment's full length."""
        return self.length is not None and len(self.obs) < self.length


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
        mask = fields[f"{side}_mask"][k]
        steps = int(mask.sum())
        return Segment(id=int(fields[f"{side}_ids"][k]), obs=fields[f"{side}_obs"][k][:steps],
                       action=fields[f"{side}_action"][k][:steps], length=int(mask.shape[0]))

    return [Query(iteration, k, segment("left", k), segment("right", k))
            for k in range(len(fields["left_ids"]))]


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def file_version(path: Path) -> tuple[int, int, int] | None:
    """What changes when a file is written (None: there is no file)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


_round_cache: dict[str, tuple[tuple[int, int, int], list[Query] | DamagedRound]] = {}


def read_round_cached(path: Path) -> list[Query]:
    """:func:`read_round`, read again only when the file changes (a labelling
    page asks for the rounds many times a second)."""
    version = file_version(path)
    if version is None:
        raise DamagedRound(f"{path} is damaged: it is gone")
    cached = _round_cache.get(str(path))
    if cached is None or cached[0] != version:
        try:
            cached = (version, read_round(path))
        except DamagedRound as e:
            cached = (version, e)
        _round_cache[str(path)] = cached
    if isinstance(cached[1], DamagedRound):
        raise cached[1]
    return cached[1]


def round_paths(run_dir: str | os.PathLike) -> list[Path]:
    """The run's round files, oldest first."""
    return sorted((Path(run_dir) / QUERIES).glob("round-*.npz"))


def scan_rounds(run_dir: str | os.PathLike) -> tuple[list[Query], list[DamagedRound]]:
    """Every query of the intact rounds, oldest first (a duplicated pair
    once), and the error of each damaged round, which is skipped."""
    seen, queries, damaged = set(), [], []
    for path in round_paths(run_dir):
        try:
            round_queries = read_round_cached(path)
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
    """The standing answer of each (left id, right id) pair in the run's
    store: its first label, unless an undo took it back."""
    return label_store.standing_answers(label_store.read_labels(labels_path(run_dir)))


class AlreadyUsed(Exception):
    """An undo of an answer the run has already used for training."""


def undo_answer(run_dir: str | os.PathLike, store: label_store.LabelStore, left: int, right: int,
                labeller: str) -> label_store.Label:
    """Takes back the answer of query ``(left, right)`` by appending an undo
    to ``store``: KeyError when the pair has no answer, :class:`AlreadyUsed`
    when the run has used it (under the store lock, so the run cannot use
    it while this looks)."""
    key = (left, right)
    with run_status.store_lock(run_dir):
        if key not in answers(run_dir):
            raise KeyError(f"query ({left}, {right}) has no answer to undo")
        query = next((x for x in all_queries(run_dir) if x.key == key), None)
        if query is not None and query.iteration <= run_status.run_status(run_dir).consumed_iteration:
            raise AlreadyUsed(f"the run has already used the answer to query ({left}, {right}); "
                              "it can no longer be undone")
        return store.retract(left, right, labeller)


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
    """The host side of ``labels="human"`` (pass it to
    ``reward_model.make(..., labeller=...)``): writes an iteration's queries to
    ``run_dir``, then polls the label store until every one is answered
    (left / right / equal / skip) or ``timeout`` seconds pass, when it raises
    :class:`LabelTimeout` (kept in ``.timed_out``). Already answered queries
    (a resumed run asks them again) return at once.

    It keeps ``<run>/labelling.json`` (:mod:`jaxrl.feedback.status`) up to
    date for the labelling page: training or waiting, the iteration, and the
    last round whose answers it used (those can no longer be undone)."""

    def __init__(self, run_dir: str | os.PathLike, timeout: float = 3600.0, poll_seconds: float = 0.05,
                 say: Callable[[str], None] | None = None):
        self.run_dir = Path(run_dir)
        self.timeout = timeout
        self.poll_seconds = poll_seconds
        self.say = say or (lambda text: print(text, file=sys.stderr, flush=True))
        self.timed_out: LabelTimeout | None = None
        self.status = run_status.StatusWriter(self.run_dir)

    def __call__(self, iteration: int, left, right, valid: np.ndarray):
        K = valid.shape[0]
        preference, answered = np.zeros((K,), np.float32), np.zeros((K,), bool)
        which = np.flatnonzero(valid)
        if which.size == 0:
            self.status.note(state="training", iteration=iteration, waiting_for=0)
            return preference, answered
        keys = [(int(left.ids[k]), int(right.ids[k])) for k in which]
        found = answers(self.run_dir)
        if not all(key in found for key in keys):
            write_round(self.run_dir, iteration, left, right, which)
            self.say(f"waiting for {len(keys)} labels (iteration {iteration}): "
                     f"label them with `jaxrl label {self.run_dir}`")
        found = self._wait_for(iteration, keys)
        for k, key in zip(which, keys):
            mu = label_store.preference_of(found[key])
            answered[k] = mu is not None
            preference[k] = 0.0 if mu is None else mu
        return preference, answered

    def _wait_for(self, iteration: int, keys: list[tuple[int, int]]) -> dict:
        """The standing answers once every query in ``keys`` has one, read
        under the store lock so no undo slips in after the last look."""
        deadline = time.monotonic() + self.timeout
        missing_before, seen, found = None, False, {}  # False: the store was not read yet
        while True:
            # The store is read again only when it changed, so polling often costs a stat.
            version = file_version(labels_path(self.run_dir))
            if version == seen:
                if time.monotonic() > deadline:
                    missing = sum(key not in found for key in keys)
                    self._give_up(iteration, missing, len(keys))
                time.sleep(self.poll_seconds)
                continue
            seen, found = version, answers(self.run_dir)
            missing = sum(key not in found for key in keys)
            if not missing:
                with run_status.store_lock(self.run_dir):
                    found = answers(self.run_dir)
                    if all(key in found for key in keys):
                        self._used(iteration)
                        return found
                continue
            if missing != missing_before:
                self.status.update(state="waiting", iteration=iteration, waiting_for=missing)
                missing_before = missing
            if time.monotonic() > deadline:
                self._give_up(iteration, missing, len(keys))
            time.sleep(self.poll_seconds)

    def _give_up(self, iteration: int, missing: int, asked: int):
        self.status.update(state="gone", waiting_for=missing)
        self.status.close()
        self.timed_out = LabelTimeout(
            f"no labels for {missing} of {asked} queries of iteration {iteration} "
            f"after {self.timeout:g} s; label them with `jaxrl label {self.run_dir}` "
            f"and continue with `jaxrl train rm-ppo --out {self.run_dir} --resume`")
        raise self.timed_out

    def _used(self, iteration: int) -> None:
        consumed = max(iteration, self.status.fields["consumed_iteration"])
        if consumed != self.status.fields["consumed_iteration"] or self.status.fields.get("state") != "training":
            self.status.update(durable=True, state="training", iteration=iteration, waiting_for=0,
                               consumed_iteration=consumed)
