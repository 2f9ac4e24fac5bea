"""The run directory: its layout, and the rules that keep saved runs safe.

::

    <run>/config.json     everything needed to rebuild the agent and continue the run
    <run>/metrics.csv     a row per iteration per seed
    <run>/eval.csv        a row per evaluation per seed (with eval_every)
    <run>/summary.json    final evaluation and timings
    <run>/curve.png       learning curve
    <run>/checkpoints/    orbax checkpoints, named by iterations done (last 2 kept)
    <run>/eval.json       written by ``jaxrl eval``
    <run>/tracking.json   the W&B / MLflow run ids a resumed run logs to again

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
EVAL_CSV = "eval.csv"
TRACKING = "tracking.json"

# What ``force`` removes: the files a run writes, nothing a user put beside them.
_RUN_FILES = (CONFIG, METRICS_CSV, METRICS_JSONL, SUMMARY, CURVE, EVAL, EVAL_CSV, TRACKING)

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
    """``value`` as a run-directory path, with ``..`` collapsed; RunDirError for
    an empty one, which would otherwise mean the current directory. Collapsed
    before any check: ``parent/new/..`` names ``parent`` once ``new`` exists,
    so checking it as a new directory would let a run write into ``parent``."""
    if value is None or not str(value).strip():
        raise RunDirError(f"--out (out_dir) must name a directory, got {str(value)!r}")
    return Path(os.path.normpath(value))


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


def check_mode(*, resume: bool, force: bool, flags: bool = False) -> None:
    """ValueError when a run is asked both to continue and to be replaced
    (named as the command line's flags with ``flags``)."""
    if resume and force:
        dash = "--" if flags else ""
        raise ValueError(
            f"{dash}resume and {dash}force contradict each other: resume continues a run, "
            "force replaces it"
        )


def check_request(
    path: str | os.PathLike,
    requested: dict[str, Any],
    *,
    resume: bool,
    force: bool,
    partial: bool = False,
    names: dict[str, str] | None = None,
) -> None:
    """The rules for using ``path`` as a run directory, in one place: a new run
    never writes over a run without ``force`` (:func:`check_new_run`); a
    resumed run continues the saved one only if ``requested`` matches it
    (:func:`resume_conflicts`): a whole config.json, or with ``partial`` just
    the fields a user gave. Raises RunDirError (a ValueError) otherwise,
    before anything is written."""
    check_mode(resume=resume, force=force)
    if not resume:
        check_new_run(path, force=force)
        return
    conflicts = resume_conflicts(load_config(path), requested, partial=partial, names=names)
    if conflicts:
        raise RunDirError(f"cannot resume {path} with different settings: {'; '.join(conflicts)}")


def resume_conflicts(
    saved: dict[str, Any],
    requested: dict[str, Any],
    *,
    partial: bool = False,
    names: dict[str, str] | None = None,
) -> list[str]:
    """``name=value (saved X)`` for each identity field of ``requested`` that
    differs from ``saved``. ``agent_config`` is compared setting by setting,
    so a user who set only ``num_envs`` is told about ``num_envs``. With
    ``partial`` a field (or setting) that is None or absent was not given;
    otherwise ``requested`` is a whole config. ``names`` spells a field as the
    caller knows it (the CLI's ``seed=0`` for the run's ``key``)."""
    names = names or {}
    fields = [n for n in requested if n in IDENTITY_FIELDS] if partial else IDENTITY_FIELDS
    conflicts = []
    for name in fields:
        value, before = requested.get(name), saved.get(name)
        if (partial and value is None) or _jsonable(value) == _jsonable(before):
            continue
        if name == "key":
            conflicts.append(f"{names.get(name, name)} (the saved run used another key)")
        elif name == "agent_config" and isinstance(value, dict) and isinstance(before, dict):
            settings = value if partial else {**before, **value}
            conflicts += [
                f"{setting}={value.get(setting)!r} (saved {before.get(setting)!r})"
                for setting in settings
                if _jsonable(value.get(setting)) != _jsonable(before.get(setting))
            ]
        else:
            conflicts.append(f"{names.get(name, name)}={value!r} (saved {before!r})")
    return conflicts


def check_resumable(path: str | os.PathLike, config: dict[str, Any]) -> dict[str, Any]:
    """Returns the saved config if ``config`` describes the same run, else raises RunDirError."""
    check_request(path, config, resume=True, force=False)
    return load_config(path)


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


def read_tracking(path: str | os.PathLike) -> dict[str, Any]:
    """tracking.json of the run in ``path``: service -> the id of its tracked run ({} if none)."""
    file = Path(path) / TRACKING
    return read_json(file) if file.exists() else {}


def record_tracking(path: str | os.PathLike, service: str, value: Any) -> None:
    """Stores ``value`` (the tracked run's id) for ``service`` in tracking.json."""
    write_json(Path(path) / TRACKING, {**read_tracking(path), service: value})
