"""Agents: one module per algorithm, each exposing ``Config``, ``make`` and
``ACTION_SPACES`` (the action-space kinds it supports: ``"discrete"``,
``"continuous"``)."""

from __future__ import annotations

import difflib
import importlib
from types import ModuleType

from jaxrl.agents.base import Agent

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


__all__ = ["Agent", "REGISTRY", "get"]
