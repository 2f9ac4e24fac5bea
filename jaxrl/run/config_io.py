"""Algorithm configs to and from JSON and ``key=value`` text.

A ``Config`` is a frozen dataclass whose field types say how to read a value:
``int``, ``float``, ``bool`` (true/false/1/0/yes/no/on/off), ``str``,
``tuple[int, ...]`` written ``64,64``, ``X | None`` (``none``), and
``Literal[...]``. Errors name the key, the value and what was expected.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
_NONE = ("none", "null")


def config_fields(config_cls: type) -> dict[str, Any]:
    """Field name -> resolved type annotation of a config dataclass."""
    hints = typing.get_type_hints(config_cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(config_cls)}


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config as JSON-ready values (tuples become lists)."""
    return {f.name: _to_json(getattr(config, f.name)) for f in dataclasses.fields(config)}


def config_from_dict(config_cls: type, values: Mapping[str, Any]) -> Any:
    """Rebuilds a config from :func:`config_to_dict` output (or any subset of fields)."""
    fields = config_fields(config_cls)
    _check_known(config_cls, fields, values)
    return config_cls(**{name: _from_json(fields[name], value) for name, value in values.items()})


def parse_assignments(assignments: Sequence[str]) -> dict[str, str]:
    """``["lr=3e-4", "hidden_sizes=64,64"]`` -> ``{"lr": "3e-4", ...}`` (later wins)."""
    parsed = {}
    for text in assignments:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects key=value, got {text!r}")
        parsed[key.strip()] = value.strip()
    return parsed


def parse_overrides(config_cls: type, texts: Mapping[str, str]) -> dict[str, Any]:
    """Field name -> typed value for ``key=value`` strings of ``config_cls``'s fields."""
    fields = config_fields(config_cls)
    _check_known(config_cls, fields, texts)
    return {name: parse_value(name, text, fields[name]) for name, text in texts.items()}


def parse_value(name: str, text: str, annotation: Any) -> Any:
    """Reads ``text`` as a value of type ``annotation``; ValueError naming ``name`` if it isn't one."""
    try:
        return _parse(text, annotation)
    except (ValueError, TypeError):
        raise ValueError(
            f"invalid value for {name}: {text!r} is not {_describe(annotation)}"
        ) from None


def closest_first(name: str, candidates: Sequence[str]) -> list[str]:
    """``candidates`` ordered by similarity to ``name``, most similar first."""
    ratio = lambda c: difflib.SequenceMatcher(None, name.lower(), c.lower()).ratio()
    return sorted(candidates, key=lambda c: (-ratio(c), c))


def _check_known(config_cls: type, fields: Mapping[str, Any], keys) -> None:
    unknown = [key for key in keys if key not in fields]
    if unknown:
        valid = closest_first(unknown[0], list(fields))
        owner = f"{config_cls.__module__.rsplit('.', 1)[-1]}.{config_cls.__name__}"
        raise ValueError(
            f"unknown {owner} key {unknown[0]!r}; valid keys (closest first): {', '.join(valid)}"
        )


def _parse(text: str, annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return text
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and text.lower() in _NONE:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _parse(text, option)
            except (ValueError, TypeError):
                continue
        raise ValueError(text)
    if origin is Literal:
        for option in args:
            try:
                value = _parse(text, type(option))
            except (ValueError, TypeError):
                continue
            if value == option:
                return value
        raise ValueError(text)
    if origin in (tuple, list):
        items = [item.strip() for item in text.strip("()[] ").split(",") if item.strip()]
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            values = [_parse(item, args[0]) for item in items]
        elif origin is tuple and args:
            if len(items) != len(args):
                raise ValueError(text)
            values = [_parse(item, a) for item, a in zip(items, args, strict=True)]
        else:
            values = [_parse(item, args[0] if args else Any) for item in items]
        return origin(values)
    if annotation is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError(text)
    if annotation is int:
        return _parse_int(text)
    if annotation is float:
        return float(text)
    if annotation is str:
        return text
    raise TypeError(f"cannot parse values of type {annotation!r}")


def _parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        # Accept 1e6 and 5.0 for ints: common in step counts, and exact.
        value = float(text)
        if not value.is_integer():
            raise
        return int(value)


def key_to_json(key: Any) -> dict[str, Any]:
    """A PRNG key (typed or raw ``uint32``) as JSON, exactly."""
    import jax
    import numpy as np

    typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    data = jax.random.key_data(key) if typed else key
    return {
        "data": np.asarray(data).tolist(),
        "impl": str(jax.random.key_impl(key)) if typed else None,
    }


def key_from_json(saved: Mapping[str, Any]) -> Any:
    """Inverse of :func:`key_to_json`."""
    import jax
    import numpy as np

    data = np.asarray(saved["data"], dtype=np.uint32)
    if saved.get("impl") is None:
        return jax.numpy.asarray(data)
    return jax.random.wrap_key_data(data, impl=saved["impl"])


def _describe(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("none" if a is type(None) else _describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (tuple, list):
        inner = _describe(args[0]) if args else "value"
        return f"a comma-separated list of {inner.removeprefix('an ').removeprefix('a ')}s (e.g. 64,64)"
    if annotation is bool:
        return "a bool (true/false/1/0)"
    if annotation is int:
        return "an int"
    if annotation is float:
        return "a float"
    if annotation is str:
        return "a string"
    return getattr(annotation, "__name__", repr(annotation))


def _to_json(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_to_json(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _to_json(v) for k, v in value.items()}
    return value


def _from_json(annotation: Any, value: Any) -> Any:
    # JSON has lists where the config has tuples; everything else reads back as is.
    if isinstance(value, list) and _is_tuple_type(annotation):
        return tuple(value)
    return value


def _is_tuple_type(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_tuple_type(a) for a in typing.get_args(annotation))
    return origin is tuple or annotation is tuple


def flatten_dict(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level of dotted names: ``{"a": {"b": 1}}`` -> ``{"a.b": 1}``
    (an empty dict stays a value)."""
    flat = {}
    for name, value in tree.items():
        if isinstance(value, Mapping) and value:
            flat.update(flatten_dict(value, f"{prefix}{name}."))
        else:
            flat[prefix + name] = value
    return flat
