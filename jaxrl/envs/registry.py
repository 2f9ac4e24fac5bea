"""One ``make(env_id)`` over every gymnax environment, our own, and the
families of :mod:`jaxrl.envs.families` (``"brax:ant"``, ``"jumanji:Snake-v1"``, ...).

``make`` returns ``(env, env_params)`` exactly like ``gymnax.make``. Keyword
arguments are routed by name: those the factory's signature accepts go to the
constructor (``make("Catch-bsuite", rows=5)``), and fields of the env's params
dataclass replace the defaults (``make("CartPole-v1", max_steps_in_episode=100)``).
Anything else is a ``ValueError`` that lists what is accepted.

The helpers below (``action_space_kind``, ``observation_shape``, ...) read the
env's spaces only, so checking an env against an algorithm compiles nothing.

``MNISTBandit-bsuite`` downloads MNIST into ``/tmp/mnist`` the first time it
is constructed.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Callable
from typing import Any

import gymnax
from gymnax.environments import spaces

from jaxrl.envs import families
from jaxrl.envs.spaces import MultiDiscrete

EnvFactory = Callable[..., Any]

# Our own environments (the probes register themselves here on import).
_OWN_ENVS: dict[str, EnvFactory] = {}

DISCRETE = "discrete"
CONTINUOUS = "continuous"
MULTI_DISCRETE = "multi_discrete"


def register(env_id: str, factory: EnvFactory, *, overwrite: bool = False) -> None:
    """Makes ``make(env_id, **kwargs)`` build ``factory(**kwargs)``.

    ``factory`` returns a gymnax-compatible env; its params are
    ``env.default_params``. Ids already known (ours or gymnax's) raise
    ``ValueError`` unless ``overwrite`` (ours only: gymnax ids stay gymnax's).
    """
    if not isinstance(env_id, str) or not env_id:
        raise ValueError(f"environment id must be a non-empty string, got {env_id!r}")
    if not callable(factory):
        raise TypeError(f"factory for {env_id!r} must be callable, got {factory!r}")
    if env_id in gymnax.registered_envs:
        raise ValueError(f"environment {env_id!r} is a gymnax environment and cannot be replaced")
    if env_id in _OWN_ENVS and not overwrite:
        raise ValueError(f"environment {env_id!r} is already registered")
    _OWN_ENVS[env_id] = factory


def list_envs() -> list[str]:
    """Every id ``make`` accepts: gymnax's (in gymnax's order), then ours."""
    return [*gymnax.registered_envs, *_OWN_ENVS]


def make(env_id: str, **kwargs: Any) -> tuple[Any, Any]:
    """``(env, env_params)`` for ``env_id``.

    ``"<family>:<id>"`` goes to that family (:func:`jaxrl.envs.families.make`);
    an id without a prefix is gymnax's or ours.

    Raises:
      ValueError: unknown id (naming the closest valid ids), or a keyword that
        is neither a constructor argument nor a params field.
    """
    if not isinstance(env_id, str) or not env_id:
        raise ValueError(f"environment id must be a non-empty string, got {env_id!r}")
    if families.is_family_id(env_id):
        return families.make(env_id, **kwargs)
    factory = _factory(env_id)
    constructor_kwargs, param_overrides = _split_kwargs(factory, kwargs)
    defaults = _constructor_defaults(factory)
    for name, value in constructor_kwargs.items():
        if name in defaults:
            _check_param(
                env_id, name, value, defaults[name],
                positive=not isinstance(defaults[name], bool) and defaults[name] > 0,
            )
    try:
        if env_id in _OWN_ENVS:
            env = factory(**constructor_kwargs)
            env_params = env.default_params
        else:
            env, env_params = gymnax.make(env_id, **constructor_kwargs)
    except (TypeError, ValueError, AssertionError) as e:
        shown = ", ".join(f"{k}={v!r}" for k, v in constructor_kwargs.items())
        reason = " ".join(str(e).split()) or type(e).__name__
        raise ValueError(f"environment {env_id!r} rejects {shown or 'its defaults'}: {reason}") from None
    unknown = set(param_overrides) - _param_fields(env_params)
    if unknown:
        raise ValueError(
            f"unknown keyword(s) {sorted(unknown)} for environment {env_id!r}; "
            f"constructor arguments: {sorted(_constructor_args(factory) or [])}, "
            f"params fields: {sorted(_param_fields(env_params))}"
        )
    for name, value in param_overrides.items():
        _check_param(env_id, name, value, getattr(env_params, name))
    if param_overrides:
        env_params = env_params.replace(**param_overrides)
    return env, env_params


# Params that count steps: zero or fewer would end every episode at once.
_POSITIVE_PARAMS = ("max_steps_in_episode",)


def _constructor_defaults(factory: EnvFactory) -> dict[str, Any]:
    """Numeric and bool defaults of the factory's keyword arguments."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return {}
    return {
        p.name: p.default
        for p in parameters
        if isinstance(p.default, (bool, int, float)) and p.default is not inspect.Parameter.empty
    }


def _check_param(env_id: str, name: str, value: Any, default: Any, positive: bool = False) -> None:
    """ValueError unless ``value`` has the kind of the params field's default
    (a bool, an integer or a finite number) and, for step counts, is positive."""
    import math

    import numpy as np

    if np.ndim(default) != 0:
        return  # arrays (maps, layouts) are the env's own business
    kind = np.asarray(default).dtype.kind
    is_bool = isinstance(value, (bool, np.bool_))
    if kind == "b":
        ok, expected = is_bool, "a bool"
    elif kind in "iu":
        ok = isinstance(value, (int, np.integer)) and not is_bool and abs(int(value)) < 2**31
        expected = "an integer of magnitude below 2^31"
    elif kind == "f":
        ok = isinstance(value, (int, float, np.integer, np.floating)) and not is_bool
        ok = ok and math.isfinite(value)
        expected = "a finite number"
    else:
        return
    if ok and (positive or name in _POSITIVE_PARAMS) and not value > 0:
        ok, expected = False, f"a positive {'integer' if kind in 'iu' else 'number'}"
    if not ok:
        raise ValueError(
            f"environment {env_id!r} parameter {name}={value!r} is invalid: expected {expected}"
        )


def _factory(env_id: str) -> EnvFactory:
    if env_id in _OWN_ENVS:
        return _OWN_ENVS[env_id]
    if env_id in gymnax.registered_envs:
        return gymnax.registration._registry[env_id]
    known = list_envs()
    close = difflib.get_close_matches(env_id, known, n=5, cutoff=0.5)
    hint = f"closest: {', '.join(close)}" if close else f"known: {', '.join(known)}"
    raise ValueError(f"unknown environment {env_id!r}; {hint}")


def _constructor_args(factory: EnvFactory) -> set[str] | None:
    """Keyword names the factory accepts; None when it takes ``**kwargs``."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {
        p.name
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }


def _split_kwargs(factory: EnvFactory, kwargs: dict[str, Any]):
    accepted = _constructor_args(factory)
    if accepted is None:
        # A factory that takes **kwargs cannot say which names are its own:
        # learn the params fields from a default instance instead.
        fields = _param_fields(factory().default_params) if kwargs else set()
        constructor = {k: v for k, v in kwargs.items() if k not in fields}
    else:
        constructor = {k: v for k, v in kwargs.items() if k in accepted}
    params = {k: v for k, v in kwargs.items() if k not in constructor}
    return constructor, params


def _param_fields(env_params: Any) -> set[str]:
    return {f.name for f in dataclasses.fields(env_params)} if dataclasses.is_dataclass(env_params) else set()


# --------------------------------------------------------------------------- #
# Space helpers (no compilation: they read spaces, never call reset/step)
# --------------------------------------------------------------------------- #


def action_space_kind(env: Any, env_params: Any) -> str:
    """``"discrete"`` for a ``Discrete`` action space, ``"continuous"`` for a
    ``Box``, ``"multi_discrete"`` for a :class:`~jaxrl.envs.spaces.MultiDiscrete`."""
    space = env.action_space(env_params)
    if isinstance(space, spaces.Discrete):
        return DISCRETE
    if isinstance(space, spaces.Box):
        return CONTINUOUS
    if isinstance(space, MultiDiscrete):
        return MULTI_DISCRETE
    raise ValueError(
        f"unsupported action space {type(space).__name__}: jaxrl handles Discrete, MultiDiscrete and Box"
    )


def num_actions(env: Any, env_params: Any) -> int:
    """Number of discrete actions (``ValueError`` for a continuous space)."""
    space = env.action_space(env_params)
    if not isinstance(space, spaces.Discrete):
        raise ValueError(f"num_actions needs a Discrete action space, got {type(space).__name__}")
    return int(space.n)


def action_dims(env: Any, env_params: Any) -> tuple[int, ...]:
    """Choices per action dimension: ``(n,)`` for ``Discrete(n)``, ``nvec`` for a
    ``MultiDiscrete`` (what a factorised categorical head needs); ``ValueError``
    for a continuous space."""
    space = env.action_space(env_params)
    if isinstance(space, spaces.Discrete):
        return (int(space.n),)
    if isinstance(space, MultiDiscrete):
        return space.nvec
    raise ValueError(f"action_dims needs a Discrete or MultiDiscrete action space, got {type(space).__name__}")


def action_shape(env: Any, env_params: Any) -> tuple[int, ...]:
    """Shape of one action: ``()`` for discrete spaces, ``(len(nvec),)`` for a
    MultiDiscrete, the Box shape otherwise."""
    return tuple(int(d) for d in env.action_space(env_params).shape)


def observation_shape(env: Any, env_params: Any) -> tuple[int, ...]:
    """Shape of one observation (``()`` for a Discrete observation space);
    ``ValueError`` for a Dict observation (see ``observation_shapes``)."""
    space = env.observation_space(env_params)
    if isinstance(space, spaces.Dict):
        raise ValueError(
            f"observation_shape needs an array observation, got Dict keys {list(space.spaces)}: "
            "see jaxrl.envs.observation_shapes, or wrap the env in jaxrl.envs.FlattenObservation"
        )
    return tuple(int(d) for d in space.shape)


def validate_env_for(
    kinds: tuple[str, ...], env_id: str, env: Any, env_params: Any, algo: str
) -> None:
    """``ValueError`` unless the env's action space is one of ``kinds``, e.g.

    ``algorithm 'dqn' supports discrete actions only, but 'Pendulum-v1' has a
    continuous (Box) action space``.
    """
    space = env.action_space(env_params)
    space_name = type(space).__name__
    supported = " or ".join(kinds) + (" actions only" if len(kinds) == 1 else " actions")
    try:
        kind = action_space_kind(env, env_params)
    except ValueError:
        raise ValueError(
            f"algorithm {algo!r} supports {supported}, but {env_id!r} has a "
            f"{space_name} action space"
        ) from None
    if kind not in kinds:
        raise ValueError(
            f"algorithm {algo!r} supports {supported}, but {env_id!r} has a "
            f"{kind} ({space_name}) action space"
        )

