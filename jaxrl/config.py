"""A config field is declared once: its type, default, doc, constraint and
whether it is swept (a numeric leaf carried in the agent's state) or static
(a shape), in the manner of rejax's ``struct.field(pytree_node=...)``::

    learning_rate: float = field(1e-3, check=positive, swept=True)
    \"\"\"Adam step size (annealed linearly to 0 over total_steps if anneal_lr).\"\"\"

From that one declaration, :class:`jaxrl.agents.base.AgentConfig` validates
(:func:`check_fields`), builds the vmappable hyperparameters
(:func:`hparams_class`), and :func:`describe` gives ``jaxrl config ALGO``
and ``jaxrl train ALGO --help`` the type, default and doc (the docstring is
read from the class's source, through its base classes).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import json
import textwrap
import typing
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass(frozen=True)
class Check:
    """A constraint on one field's value. ``allowed`` says in words what
    passes; for ``int`` fields the word "number" reads "integer"."""

    test: Callable[[Any], bool]
    allowed: str

    def describe(self, annotation: Any) -> str:
        if annotation is not int:
            return self.allowed
        return self.allowed.replace("a number", "an integer").replace("number", "integer")


positive = Check(lambda v: v > 0, "a positive number")
non_negative = Check(lambda v: v >= 0, "a number >= 0")
unit_interval = Check(lambda v: 0 <= v <= 1, "a number in [0, 1]")
sizes = Check(lambda v: len(v) > 0 and all(h > 0 for h in v),
              "a non-empty tuple of positive integers")


def one_of(*options: Any) -> Check:
    return Check(lambda v: v in options, f"one of {options}")


def at_least(low: float) -> Check:
    return Check(lambda v: v >= low, f"a number >= {low}")


def field(default: Any, *, check: Check | None = None, swept: bool = False,
          doc: str = "") -> Any:
    """A config field's declaration: its default, the :class:`Check` its value
    must pass, and whether it is ``swept``: a numeric hyperparameter carried
    in the state as a float32 leaf, so seeds and values of it vmap together
    without recompiling (sizes and switches stay static).

    ``doc`` serves declarations shared by several agents
    (:mod:`jaxrl.agents.fields`); a docstring under the field wins over it."""
    return dataclasses.field(default=default,
                             metadata={"check": check, "swept": swept, "doc": doc})


def require(ok: bool, algo: str, field: str, value: Any, allowed: str) -> None:
    """Raise the config error every agent's ``Config.validate`` gives.

    The message names the agent, the field, the value and what is allowed,
    e.g. ``ppo.Config.num_envs=0 is invalid: expected a positive integer``.
    """
    if not ok:
        raise ValueError(f"{algo}.Config.{field}={value!r} is invalid: expected {allowed}")


def check_fields(config: Any, algo: str) -> None:
    """ValueError naming the first field whose value fails its declared check."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        check = f.metadata.get("check")
        if check is not None:
            value = getattr(config, f.name)
            require(check.test(value), algo, f.name, value, check.describe(hints.get(f.name)))


def swept_fields(config_cls: type) -> tuple[str, ...]:
    """Names of the swept fields of ``config_cls``, in declaration order."""
    return tuple(f.name for f in dataclasses.fields(config_cls) if f.metadata.get("swept"))


@functools.lru_cache(maxsize=None)
def _hparams_class_of(names: tuple[str, ...]) -> type:
    from flax import struct

    cls = type("HParams", (), {
        "__annotations__": dict.fromkeys(names, "jax.Array"),
        "__doc__": "Numeric hyperparameters carried in the state (leaves may be batched). "
                   "Every step reads them from the state.",
        "field_names": staticmethod(lambda: names),
    })
    return struct.dataclass(cls)


def hparams_class(config_cls: type) -> type:
    """The pytree class of the swept fields of ``config_cls``: one class per
    set of names, so a subclass config that sweeps the same fields (a2c of
    impala, d4pg of ddpg) shares its base's."""
    return _hparams_class_of(swept_fields(config_cls))


def hparams_of(config: Any) -> Any:
    """The swept fields of ``config`` as float32 arrays."""
    import jax.numpy as jnp

    names = swept_fields(type(config))
    return hparams_class(type(config))(**{n: jnp.float32(getattr(config, n)) for n in names})


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
    """Field name -> the docstring under its declaration, else the ``doc`` its
    shared declaration carries; a subclass's declaration wins over its base's."""
    docs: dict[str, str] = {f.name: f.metadata.get("doc", "")
                            for f in dataclasses.fields(config_cls) if f.metadata.get("doc")}
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
