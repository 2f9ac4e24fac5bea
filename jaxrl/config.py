"""What a config's fields are, read from their one declaration.

Each agent's ``Config`` is a frozen dataclass whose fields carry a type, a
default and, on the line below, a docstring (CleanRL's convention)::

    learning_rate: float = 1e-3
    \"\"\"Adam step size (annealed linearly to 0 over total_steps if anneal_lr).\"\"\"

:func:`describe` reads all three from the class itself (the docstrings from
its source, through the base classes), so ``jaxrl config ALGO`` and
``jaxrl train ALGO --help`` print exactly what the code declares.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import json
import textwrap
import typing
from typing import Any


@dataclasses.dataclass(frozen=True)
class FieldInfo:
    """One config field as users see it."""

    name: str
    type: str
    default: Any
    doc: str


def describe(config_cls: type) -> list[FieldInfo]:
    """The fields of ``config_cls`` in declaration order, with their type,
    default and docstring."""
    hints = typing.get_type_hints(config_cls)
    docs = field_docs(config_cls)
    return [
        FieldInfo(
            name=f.name,
            type=type_name(hints.get(f.name, Any)),
            default=f.default,
            doc=docs.get(f.name, ""),
        )
        for f in dataclasses.fields(config_cls)
    ]


def type_name(annotation: Any) -> str:
    """``int``, ``tuple[int, ...]``, ``float | None``, ``'a' | 'b'`` (Literal)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if isinstance(annotation, type) and not args:
        return "None" if annotation is type(None) else annotation.__name__
    return str(annotation).replace("typing.", "")


def field_docs(config_cls: type) -> dict[str, str]:
    """Field name -> the docstring under its declaration; a subclass's
    declaration wins over its base's."""
    docs: dict[str, str] = {}
    for cls in reversed(config_cls.__mro__):
        if dataclasses.is_dataclass(cls):
            docs.update(_class_field_docs(cls))
    return docs


@functools.lru_cache(maxsize=None)
def _class_field_docs(cls: type) -> dict[str, str]:
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):  # defined where no source is kept
        return {}
    body = ast.parse(source).body[0].body
    docs = {}
    for declaration, following in zip(body, body[1:]):
        if (
            isinstance(declaration, ast.AnnAssign)
            and isinstance(declaration.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[declaration.target.id] = " ".join(following.value.value.split())
    return docs


def as_set_flag(name: str, value: Any) -> str:
    """``--set name=value`` in the form the CLI reads back (``64,64`` for tuples)."""
    if isinstance(value, (tuple, list)):
        text = ",".join(str(v) for v in value)
    elif isinstance(value, bool):
        text = str(value).lower()
    elif value is None:
        text = "none"
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value)
    return f"--set {name}={text}"


def format_defaults(config_cls: type, width: int = 100) -> str:
    """Every field as a ``--set`` line with its default, followed by a comment
    with its type and docstring: the text of ``jaxrl config ALGO``."""
    lines = []
    for info in describe(config_cls):
        lines.append(as_set_flag(info.name, info.default))
        comment = f"{info.type}. {info.doc}".strip()
        for line in textwrap.wrap(comment, width=width - 4):
            lines.append(f"    # {line}")
    return "\n".join(lines)


def format_help(config_cls: type, width: int = 100) -> str:
    """The settings section of ``jaxrl train ALGO --help``."""
    out = []
    for info in describe(config_cls):
        out.append(f"  {info.name} = {as_set_flag(info.name, info.default).split('=', 1)[1]}")
        text = f"{info.doc} ({info.type})" if info.doc else f"({info.type})"
        out.extend(textwrap.wrap(text, width=width, initial_indent="      ",
                                 subsequent_indent="      "))
    return "\n".join(out)
