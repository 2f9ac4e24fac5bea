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


def out_path(value: str | os.PathLike) -> Path:
    """``value`` as a run-directory path; RunDirError for an empty one, which
    would otherwise mean the current directory."""
    if value is None or not str(value).strip():
        raise RunDirError(f"--out (out_dir) must name a directory, got {str(value)!r}")
    return Path(value)


def check_new_run(path: str | os.PathLike, *, force: bool) -> None:
    """Raises RunDirError if starting a run at ``path`` would overwrite one, or
    write into a directory that jaxrl did not make, or cannot be written."""
    path = out_path(path)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"--out {path} exists and is not a directory")
    if (path / CONFIG).exists():
        try:
            load_config(path)
        except RunDirError as e:
            raise RunDirError(
                f"--out {path} holds a {CONFIG} that jaxrl did not write ({e}); "
                "choose a new or empty directory"
            ) from None
        if not force:
            raise RunDirError(
                f"{path} already holds a run; pass --force (force=True) to overwrite it "
                "or --resume (resume=True) to continue it"
            )
    elif path.is_dir() and any(path.iterdir()):
        raise RunDirError(
            f"--out {path} is not empty and is not a jaxrl run (no {CONFIG}); "
            "choose a new or empty directory"
        )
    check_writable(path)


def check_writable(path: str | os.PathLike) -> None:
    """RunDirError unless ``path`` is, or can be made as, a writable directory."""
    path = Path(path).absolute()
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise RunDirError(f"--out {path} cannot be created: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RunDirError(f"--out {path} cannot be written: {existing} is not writable")


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """The run's config.json; RunDirError if ``path`` is not a run or the file is damaged."""
    path = Path(path)
    if not is_run(path):
        raise RunDirError(f"{path} is not a run directory (no {CONFIG})")
    try:
        config = read_json(path / CONFIG)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunDirError(f"{path / CONFIG} is not valid JSON: {e}") from e
    if not isinstance(config, dict):
        raise RunDirError(f"{path / CONFIG} holds {type(config).__name__}, not an object: not a config.json jaxrl wrote")
    missing = [name for name in (*IDENTITY_FIELDS, "eval_episodes") if name not in config]
    if missing:
        raise RunDirError(
            f"{path / CONFIG} lacks {', '.join(missing)}: not a config.json jaxrl wrote"
        )
    for name, check, expected in _CONFIG_FIELD_TYPES:
        if not check(config[name]):
            raise RunDirError(
                f"{path / CONFIG}: field {name}={config[name]!r} is invalid: expected {expected}"
            )
    iterations = -(-config["total_steps"] // config["env_steps_per_step"])
    if config["iterations"] != max(1, iterations):
        raise RunDirError(
            f"{path / CONFIG}: field iterations={config['iterations']!r} does not match "
            f"total_steps / env_steps_per_step = {max(1, iterations)}"
        )
    return config


def _is_count(least: int):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= least


# What each identity field of config.json must hold (mismatched types would
# otherwise surface as tracebacks deep inside agent construction).
_CONFIG_FIELD_TYPES = (
    ("algorithm", lambda v: isinstance(v, str), "a string"),
    ("env_id", lambda v: isinstance(v, str), "a string"),
    ("env_kwargs", lambda v: isinstance(v, dict), "an object"),
    ("agent_config", lambda v: isinstance(v, dict), "an object"),
    ("seeds", _is_count(1), "an integer >= 1"),
    ("total_steps", _is_count(1), "an integer >= 1"),
    ("iterations", _is_count(1), "an integer >= 1"),
    ("chunk_iterations", _is_count(1), "an integer >= 1"),
    ("env_steps_per_step", _is_count(1), "an integer >= 1"),
    ("eval_episodes", _is_count(0), "an integer >= 0"),
    (
        "key",
        lambda v: isinstance(v, dict)
        and isinstance(v.get("data"), list)
        and all(isinstance(x, int) and 0 <= x < 2**32 for x in v["data"])
        and (v.get("impl") is None or isinstance(v.get("impl"), str)),
        'an object {"data": [uint32, ...], "impl": string or null}',
    ),
    ("hparams", lambda v: v is None or isinstance(v, dict), "an object or null"),
)


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
    """Creates the run directory and writes config.json (after :func:`check_new_run`).
    With ``force`` the files of the run it replaces go first: those jaxrl
    writes, and nothing a user put beside them."""
    path = out_path(path)
    check_new_run(path, force=force)
    path.mkdir(parents=True, exist_ok=True)
    if force:
        for name in _RUN_FILES:
            (path / name).unlink(missing_ok=True)
        remove_checkpoints(path / CHECKPOINTS)
    write_json(path / CONFIG, config)
    return path


def remove_checkpoints(directory: Path) -> None:
    """Removes the checkpoints jaxrl saved in ``directory`` (orbax step
    directories ``<iteration>``, their unfinished ``.orbax-checkpoint-tmp``
    leftovers and the damaged ones set aside as ``<iteration>.damaged``);
    anything else stays, and so does the directory if something is left."""
    if not directory.is_dir():
        return
    for entry in directory.iterdir():
        if entry.is_dir() and is_checkpoint_name(entry.name):
            shutil.rmtree(entry)
    if not any(directory.iterdir()):
        directory.rmdir()


def is_checkpoint_name(name: str) -> bool:
    step, _, suffix = name.partition(".")
    return step.isdigit() and (suffix == "" or suffix.startswith(("damaged", "orbax-checkpoint-tmp")))


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
