"""``make("<family>:<id>")`` for environment families beyond gymnax.

Each family lives in its own module with ``make(task, **kwargs) -> (env,
env_params)`` and ``ids() -> list[str]``; its package is an optional extra
(``pip install 'jaxrl[brax]'``), imported only when an id of that family is
made. Every env made here is a gymnax ``Environment``: ``reset(key, params)``
and ``step(key, state, action, params) -> (obs, state, reward, terminated,
truncated, info)`` with auto-reset and ``info["final_observation"]``, and a
time limit reported as ``truncated``, never as ``terminated``.

``gymnasium:`` and ``envpool:`` name host environments (Python, outside jit):
``host_env_factory`` builds those for the asynchronous actors.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
from typing import Any, Callable

SEPARATOR = ":"


@dataclasses.dataclass(frozen=True)
class Family:
    """One family of environments and what it needs installed."""

    module: str
    """jaxrl module with ``make(task, **kwargs)`` and ``ids()``."""
    package: str
    """The package it imports (checked before anything else is imported)."""
    extra: str
    """The optional extra that installs ``package``."""
    example: str
    host: bool = False
    """Python envs stepped on the host (``host_env_factory``), not in jit."""


FAMILIES: dict[str, Family] = {
    "brax": Family("jaxrl.envs.families.brax", "brax", "brax", "brax:inverted_pendulum"),
    "jumanji": Family("jaxrl.envs.families.jumanji", "jumanji", "jumanji", "jumanji:Snake-v1"),
    "craftax": Family("jaxrl.envs.families.craftax", "craftax", "craftax", "craftax:Craftax-Classic-Symbolic-v1"),
    "xminigrid": Family("jaxrl.envs.families.xminigrid", "xminigrid", "minigrid", "xminigrid:MiniGrid-DoorKey-5x5"),
    "gymnasium": Family("jaxrl.envs.gymnasium_env", "gymnasium", "gym", "gymnasium:CartPole-v1", host=True),
    "envpool": Family("jaxrl.envs.envpool_env", "envpool", "envpool", "envpool:CartPole-v1", host=True),
}


def is_family_id(env_id: str) -> bool:
    """Whether ``env_id`` has a family prefix (``"brax:ant"``); plain ids are gymnax's or ours."""
    return SEPARATOR in env_id


def split_id(env_id: str) -> tuple[str, Family, str]:
    """``(family name, Family, task)``; ``ValueError`` for an unknown family or
    one whose package is missing (naming the extra to install)."""
    name, task = env_id.split(SEPARATOR, 1)
    family = FAMILIES.get(name)
    if family is None:
        raise ValueError(
            f"unknown environment family {name!r} in {env_id!r}; families: {', '.join(FAMILIES)} "
            "(ids without a prefix are gymnax's)"
        )
    if importlib.util.find_spec(family.package) is None:
        raise ValueError(
            f"environment {env_id!r} needs the {family.package} package: pip install 'jaxrl[{family.extra}]'"
        )
    if not task:
        raise ValueError(f"environment {env_id!r} names no task; e.g. {family.example!r}")
    return name, family, task


def make(env_id: str, **kwargs: Any) -> tuple[Any, Any]:
    """``(env, env_params)`` for ``"<family>:<task>"``. Unknown families,
    missing packages and unknown tasks raise ``ValueError`` before anything
    is built or compiled."""
    name, family, task = split_id(env_id)
    if family.host:
        raise ValueError(
            f"{env_id!r} is a host environment (stepped in Python, not in jit): build it with "
            f"jaxrl.envs.host_env_factory({env_id!r}) for the asynchronous actors"
        )
    module = importlib.import_module(family.module)
    known = module.ids()
    if task not in known:
        raise ValueError(f"unknown {name} environment {task!r}; known: {', '.join(known)}")
    return module.make(task, **kwargs)


def list_family_ids(installed_only: bool = True) -> dict[str, list[str]]:
    """Every in-jit family's ids (``"brax:ant"``, ...), by family; families
    whose package is not installed are left out unless ``installed_only=False``
    (then their list is empty)."""
    out = {}
    for name, family in FAMILIES.items():
        if family.host:
            continue
        if importlib.util.find_spec(family.package) is None:
            if not installed_only:
                out[name] = []
            continue
        module = importlib.import_module(family.module)
        out[name] = [f"{name}{SEPARATOR}{task}" for task in module.ids()]
    return out


def host_env_factory(env_id: str, **env_kwargs: Any) -> Callable[[int, int], Any] | None:
    """``factory(num_envs, seed)`` building the host batch env that
    ``gymnasium:<id>`` or ``envpool:<task>`` names (both present the
    :class:`~jaxrl.envs.gymnasium_env.GymnasiumBatchEnv` interface); None for
    an id that runs in jit."""
    if not is_family_id(env_id):
        return None
    name, family, task = split_id(env_id)
    if not family.host:
        return None
    if name == "gymnasium":
        from jaxrl.envs.gymnasium_env import GymnasiumBatchEnv as batch_env
    else:
        from jaxrl.envs.envpool_env import EnvPoolBatchEnv as batch_env
    return lambda num_envs, seed: batch_env(task, num_envs, seed, **env_kwargs)


def split_params_kwargs(env_params: Any, kwargs: dict[str, Any]) -> tuple[dict, Any]:
    """``(constructor kwargs, env_params)``: keywords naming a field of the
    params dataclass replace it, the rest go to the family's constructor."""
    fields = {f.name for f in dataclasses.fields(env_params)} if dataclasses.is_dataclass(env_params) else set()
    overrides = {k: v for k, v in kwargs.items() if k in fields}
    constructor = {k: v for k, v in kwargs.items() if k not in fields}
    return constructor, (env_params.replace(**overrides) if overrides else env_params)
