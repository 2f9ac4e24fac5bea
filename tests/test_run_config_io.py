"""Configs to and from JSON and key=value text (jaxrl.run.config_io)."""

from __future__ import annotations

import dataclasses
import json
from typing import Literal, Optional

import jax
import pytest

from jaxrl.run import config_io


@dataclasses.dataclass(frozen=True)
class Settings:
    count: int = 1
    rate: float = 0.1
    flag: bool = False
    name: str = "a"
    sizes: tuple[int, ...] = (64, 64)
    limit: Optional[int] = None  # noqa: UP045 (typing.Union is parsed too)
    cap: float | None = None
    mode: Literal["fast", "slow"] = "fast"


@pytest.mark.parametrize(
    "key, text, value",
    [
        ("count", "3", 3),
        ("count", "1e6", 1_000_000),
        ("rate", "3e-4", 3e-4),
        ("flag", "true", True),
        ("flag", "0", False),
        ("flag", "Yes", True),
        ("name", "b c", "b c"),
        ("sizes", "32,16", (32, 16)),
        ("sizes", "(8, 8, 8)", (8, 8, 8)),
        ("limit", "none", None),
        ("limit", "5", 5),
        ("cap", "null", None),
        ("cap", "2.5", 2.5),
        ("mode", "slow", "slow"),
    ],
)
def test_parse_overrides(key, text, value):
    assert config_io.parse_overrides(Settings, {key: text}) == {key: value}


@pytest.mark.parametrize(
    "key, text, message",
    [
        ("count", "many", "invalid value for count: 'many' is not an int"),
        ("count", "1.5", "is not an int"),
        ("rate", "fast", "is not a float"),
        ("flag", "maybe", "is not a bool"),
        ("sizes", "64,x", "is not a comma-separated list of ints"),
        ("mode", "medium", "is not one of 'fast', 'slow'"),
    ],
)
def test_parse_overrides_rejects_wrong_types(key, text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        config_io.parse_overrides(Settings, {key: text})


def test_unknown_key_lists_closest_first():
    with pytest.raises(ValueError) as error:
        config_io.parse_overrides(Settings, {"rat": "1"})
    message = str(error.value)
    assert "unknown" in message and "'rat'" in message
    assert message.index("rate") < message.index("count")


def test_config_round_trips_through_json():
    settings = Settings(sizes=(3, 4), limit=2, mode="slow")
    saved = json.loads(json.dumps(config_io.config_to_dict(settings)))
    assert config_io.config_from_dict(Settings, saved) == settings


@pytest.mark.parametrize("make_key", [jax.random.PRNGKey, jax.random.key])
def test_keys_round_trip_through_json(make_key):
    key = make_key(3)
    restored = config_io.key_from_json(json.loads(json.dumps(config_io.key_to_json(key))))
    assert jax.random.normal(restored) == jax.random.normal(key)


