"""Agents: one module per algorithm, each exposing ``Config``, ``make`` and
``ACTION_SPACES`` (the action-space kinds it supports: ``"discrete"``,
``"continuous"``, ``"multi_discrete"``). A module may also define ``host_needs(config) ->
HostNeeds``: what it asks of the host beyond ``jaxrl.run.train``."""

from __future__ import annotations

import difflib
import importlib
from types import ModuleType
from typing import Any, Callable

from jaxrl.agents.base import Agent, HostNeeds

# Name as the CLI knows it -> module. Imported lazily so that `jaxrl --help`
# and config validation stay fast.
REGISTRY: dict[str, str] = {
    "ppo": "jaxrl.agents.ppo",
    "ddpg": "jaxrl.agents.ddpg",
    "d4pg": "jaxrl.agents.d4pg",
    "impala": "jaxrl.agents.impala",
    "dqn": "jaxrl.agents.dqn",
    "hdqn": "jaxrl.agents.hdqn",
    "rm-ppo": "jaxrl.agents.reward_model",
    "a2c": "jaxrl.agents.a2c",
}


def get(name: str) -> ModuleType:
    """Return the module of algorithm ``name`` or raise a ValueError listing the known ones."""
    if name not in REGISTRY:
        close = difflib.get_close_matches(name, list(REGISTRY), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"unknown algorithm {name!r}{hint} (known: {', '.join(sorted(REGISTRY))})"
        )
    return importlib.import_module(REGISTRY[name])


def host_needs(name: str, config: Any = None) -> HostNeeds:
    """What algorithm ``name`` with ``config`` (None: its defaults' kind of
    run) needs from the host: the module's own ``host_needs(config)`` if it
    defines one, else its entry in :data:`HOST_NEEDS`, else nothing."""
    declare = getattr(get(name), "host_needs", None) or HOST_NEEDS.get(name)
    return HostNeeds() if declare is None else declare(config)


def _async_actors(config: Any) -> HostNeeds:
    return HostNeeds(async_actors=True)


# Declarations of modules that do not define ``host_needs`` themselves.
HOST_NEEDS: dict[str, Callable[[Any], HostNeeds]] = {
    "impala": _async_actors,
}


__all__ = ["Agent", "HOST_NEEDS", "HostNeeds", "REGISTRY", "get", "host_needs"]
