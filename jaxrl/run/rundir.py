"""The run directory: its layout, and the rules that keep saved runs safe.

::

    <run>/config.json     everything needed to rebuild the agent and continue the run
    <run>/metrics.csv     a row per iteration per seed
    <run>/summary.json    final evaluation and timings
    <run>/curve.png       learning curve
    <run>/checkpoints/    orbax checkpoints, named by iterations done (last 2 kept)
    <run>/eval.json       written by ``jaxrl eval``

A directory that holds a ``config.json`` is a run. It is never written over
unless asked (``force``) or continued (``resume``), and every check happens
before the first byte is written.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

CONFIG = "config.json"
METRICS_CSV = "metrics.csv"
METRICS_JSONL = "metrics.jsonl"
SUMMARY = "summary.json"
CURVE = "curve.png"
CHECKPOINTS = "checkpoints"
EVAL = "eval.json"

# What ``force`` removes: the files a run writes, nothing a user put beside them.
_RUN_FILES = (CONFIG, METRICS_CSV, METRICS_JSONL, SUMMARY, CURVE, EVAL)

# Fields of config.json that define the computation. Resuming with any of them
# changed would silently splice two different runs together.
IDENTITY_FIELDS = (
    "algorithm",
    "env_id",
    "env_kwargs",
    "agent_config",
    "seeds",
    "total_steps",
    "iterations",
    "chunk_iterations",
    "env_steps_per_step",
    "key",
    "hparams",
)


class RunDirError(ValueError):
    """A run directory cannot be used as asked (exists, missing, or mismatched)."""


def is_run(path: str | os.PathLike) -> bool:
    return (Path(path) / CONFIG).is_file()


def check_new_run(path: str | os.PathLike, *, force: bool) -> None:
    """Raises RunDirError if starting a run at ``path`` would overwrite one."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"{path} exists and is not a directory")
    if is_run(path) and not force:
        raise RunDirError(
            f"{path} already holds a run; pass --force (force=True) to overwrite it "
            "or --resume (resume=True) to continue it"
        )


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """The run's config.json; RunDirError if ``path`` is not a run or the file is damaged."""
    path = Path(path)
    if not is_run(path):
        raise RunDirError(f"{path} is not a run directory (no {CONFIG})")
    try:
        config = read_json(path / CONFIG)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunDirError(f"{path / CONFIG} is not valid JSON: {e}") from e
    missing = [
        name
        for name in (*IDENTITY_FIELDS, "eval_episodes")
        if not isinstance(config, dict) or name not in config
    ]
    if missing:
        raise RunDirError(
            f"{path / CONFIG} lacks {', '.join(missing)}: not a config.json jaxrl wrote"
        )
    return config


def check_resumable(path: str | os.PathLike, config: dict[str, Any]) -> dict[str, Any]:
    """Returns the saved config if ``config`` describes the same run, else raises RunDirError."""
    saved = load_config(path)
    differing = [
        name
        for name in IDENTITY_FIELDS
        if _jsonable(saved.get(name)) != _jsonable(config.get(name))
    ]
    if differing:
        details = "; ".join(
            f"{name}: saved {saved.get(name)!r}, now {config.get(name)!r}" for name in differing
        )
        raise RunDirError(f"cannot resume {path}: the run differs from the saved one ({details})")
    return saved


def start_new_run(path: str | os.PathLike, config: dict[str, Any], *, force: bool) -> Path:
    """Creates the run directory and writes config.json (after :func:`check_new_run`)."""
    path = Path(path)
    check_new_run(path, force=force)
    path.mkdir(parents=True, exist_ok=True)
    if force:
        for name in _RUN_FILES:
            (path / name).unlink(missing_ok=True)
        shutil.rmtree(path / CHECKPOINTS, ignore_errors=True)
    write_json(path / CONFIG, config)
    return path


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Writes JSON atomically: a reader sees the old file or the new one, never half."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as f:
        return json.load(f)


def _jsonable(value: Any) -> Any:
    # Tuples in a fresh config become lists once saved; compare what JSON keeps.
    return json.loads(json.dumps(value))
