"""The agent protocol shared by every algorithm.

An agent is a frozen bundle of pure functions over one pytree state, in the
spirit of optax's ``GradientTransformation``::

    agent = ppo.make(env, env_params, ppo.Config(num_envs=8))
    state = agent.init(key)                    # params, opt state, env state, rng, counters
    state, metrics = agent.step(state)         # collect experience, then update; jittable
    action = agent.act(params, obs, key)       # acting for evaluation and deployment
    returns = agent.evaluate(state, key, 10)   # returns of 10 complete episodes

``init`` takes an optional ``hparams`` pytree of numeric hyperparameters
(learning rate, gamma, ...). They live in the state as arrays, so a sweep over
them is one ``jax.vmap(agent.init)(keys, hparams)`` with no recompilation.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any, Callable

import jax

from jaxrl.config import require

PyTree = Any


@dataclasses.dataclass(frozen=True)
class Agent:
    """Pure functions of one algorithm bound to an environment and a config.

    Attributes:
      name: algorithm name as the CLI knows it (``"ppo"``).
      config: the frozen config the agent was made with.
      env, env_params: the (wrapped) training environment.
      init: ``init(key, hparams=None) -> state``.
      step: ``step(state) -> (state, metrics)``; one iteration, pure.
      act: ``act(params, obs, key, deterministic=False) -> action`` for one
        observation (vmap it for batches). ``params`` is ``policy_params(state)``.
      policy_params: ``policy_params(state) -> params`` the pytree ``act`` needs
        (network parameters and, where used, observation-normalisation stats).
      evaluate: ``evaluate(state, key, num_episodes) -> returns [num_episodes]``,
        the undiscounted true-reward return of complete episodes of the current
        policy (deterministic actions), jittable.
      default_hparams: ``default_hparams() -> hparams`` the numeric
        hyperparameters taken from ``config``.
      env_steps_per_step: environment steps that one ``step`` consumes.
      initial_carry: None for a feed-forward policy. A recurrent one's
        ``initial_carry(batch_shape=()) -> carry``, the state each episode
        starts from: its ``act(params, obs, key, deterministic=False,
        carry=carry)`` returns ``(action, carry)``, and the caller sets the
        carry back to ``initial_carry`` where an episode ends.
      mesh: None, or the device mesh whose devices the agent's own ``init``
        and ``step`` place its state on (:func:`jaxrl.distributed.data_parallel`);
        ``jaxrl.run.train`` then leaves the placement to them.
    """

    name: str
    config: Any
    env: Any
    env_params: Any
    init: Callable[..., PyTree]
    step: Callable[[PyTree], tuple[PyTree, dict[str, jax.Array]]]
    act: Callable[..., jax.Array]
    policy_params: Callable[[PyTree], PyTree]
    evaluate: Callable[[PyTree, jax.Array, int], jax.Array]
    default_hparams: Callable[[], PyTree]
    env_steps_per_step: int
    initial_carry: Callable[..., PyTree] | None = None
    mesh: Any = None


def bind(name: str, spec: Any, env: Any, env_params: Any, *, init: Callable, step: Callable,
         act: Callable, evaluate: Callable, policy_params: Callable,
         env_steps_per_step: int, initial_carry: Callable | None = None) -> Agent:
    """The :class:`Agent` of an agent module's functions ``init(spec, ...)``,
    ``step(spec, ...)``, ``act(spec, ...)`` and ``evaluate(spec, ...)``, each
    bound to the static ``spec`` (which holds the ``config``): all a module's
    ``make`` does once it has built its spec."""
    bound = lambda fn: functools.partial(fn, spec)
    return Agent(name=name, config=spec.config, env=env, env_params=env_params,
                 init=bound(init), step=bound(step), act=bound(act),
                 policy_params=policy_params, evaluate=bound(evaluate),
                 default_hparams=spec.config.hparams, env_steps_per_step=env_steps_per_step,
                 initial_carry=initial_carry)


@dataclasses.dataclass(frozen=True)
class HostNeeds:
    """What an algorithm asks of the host beyond ``jaxrl.run.train``, declared
    through the agent registry (:func:`jaxrl.agents.host_needs`) so that the
    command line serves it without knowing the algorithm.

    Attributes:
      async_actors: it can also train with actor threads and a learner thread
        (``jaxrl train ALGO --async``, :mod:`jaxrl.distributed.async_impala`).
      human_labels: its ``step`` waits for labels people give in the run
        directory (``jaxrl label``), so a run trains one seed.
      label_timeout: seconds to wait for a label before the run stops.
      with_labeller: ``with_labeller(agent, labeller) -> agent``, the agent
        made again so that its ``step`` asks ``labeller`` (a
        :class:`jaxrl.feedback.HumanLabeller` of the run directory).
      make_kwargs: what the module's ``make`` needs besides the config to make
        the agent without the host (to evaluate or export a run, or before
        ``with_labeller`` binds the run's labeller).
    """

    async_actors: bool = False
    human_labels: bool = False
    label_timeout: float | None = None
    with_labeller: Callable[[Agent, Any], Agent] | None = None
    make_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def algorithm_name(config_cls: type) -> str:
    """The CLI name of the algorithm whose module defines ``config_cls``
    (``rm-ppo`` for ``jaxrl.agents.reward_model``); the module's last part otherwise."""
    from jaxrl.agents import REGISTRY

    module = config_cls.__module__
    return next((name for name, path in REGISTRY.items() if path == module), module.rsplit(".", 1)[-1])


def check_schedule_span(config: Any, total_steps: int) -> None:
    """ValueError if a run of ``total_steps`` env steps outlasts the schedules of
    ``config`` (learning-rate annealing, exploration decay, ... span
    ``Config.total_steps``): past their end the run would go on at rate 0 or
    at the schedule's final value without a word."""
    span = getattr(config, "total_steps", None)
    if not isinstance(span, int):
        return
    if span is not None and total_steps > span:
        algo = algorithm_name(type(config))
        raise ValueError(
            f"total_steps={total_steps} exceeds {algo}.Config.total_steps={span}, the span of "
            f"its schedules (learning-rate annealing, exploration decay); set "
            f"{algo}.Config.total_steps >= {total_steps} (the CLI sets it from --total-steps)"
        )


def config_requirer(config) -> Callable[[bool, str, str], None]:
    """``require(ok, field, allowed)`` bound to ``config``: the value is read from
    the field, the agent's name from the config's module (``ddpg.Config`` ...)."""
    algo = algorithm_name(type(config))
    return lambda ok, field, allowed: require(ok, algo, field, getattr(config, field), allowed)


# Sizes and counts become int32 array shapes and loop bounds inside XLA.
MAX_INT = 2**31 - 1
# A run's length in env steps is counted past int32 (see ops.counters).
MAX_TOTAL_STEPS = 2**62


class AgentConfig:
    """Base of every agent's frozen ``Config`` dataclass: checks each field's
    type and range when the config is constructed, so a wrong type, a
    non-finite number or an absurd size is refused before anything compiles.

    The checks read the field annotations: ``int`` (not bool, below 2^31),
    ``float`` (finite), ``bool``, ``str``, ``tuple[int, ...]`` (a list is
    accepted and stored as a tuple), ``X | None`` and ``Literal[...]``.
    Learning rates (fields named ``*learning_rate``) must lie in (0, 1]:
    larger steps only make a network diverge. Each Config's ``validate``
    adds the constraints particular to its algorithm.
    """

    def __post_init__(self) -> None:
        import typing

        algo = algorithm_name(type(self))
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            annotation = hints.get(field.name, Any)
            limit = MAX_TOTAL_STEPS if field.name == "total_steps" else MAX_INT
            checked = check_field_value(value, annotation, limit)
            if checked is _INVALID:
                require(False, algo, field.name, value, describe_annotation(annotation, limit))
            if checked is not value:
                object.__setattr__(self, field.name, checked)
            if field.name.endswith("learning_rate") and isinstance(checked, float | int):
                require(0 < checked <= 1, algo, field.name, value, "a number in (0, 1]")

    def validate(self) -> None:
        """Raises ValueError naming the first field whose value fails its
        declared check (:func:`jaxrl.config.field`). A Config with constraints
        across fields overrides this, calling ``super().validate()`` first."""
        from jaxrl.config import check_fields

        check_fields(self, algorithm_name(type(self)))

    def hparams(self) -> Any:
        """The swept fields as float32 arrays (the vmappable part)."""
        from jaxrl.config import hparams_of

        return hparams_of(self)


_INVALID = object()


def check_field_value(value: Any, annotation: Any, limit: int = MAX_INT) -> Any:
    """``value`` (or its tuple form) if it is a valid ``annotation``, else ``_INVALID``."""
    import math
    import types
    import typing

    import numpy as np

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for option in args:
            checked = check_field_value(value, option, limit)
            if checked is not _INVALID:
                return checked
        return _INVALID
    if annotation is type(None):
        return value if value is None else _INVALID
    if origin is typing.Literal:
        return value if any(value == a and type(value) is type(a) for a in args) else _INVALID
    if origin is tuple:
        if not isinstance(value, tuple | list):
            return _INVALID
        item_types = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        if args and len(item_types) != len(value):
            return _INVALID
        items = tuple(check_field_value(v, t) for v, t in zip(value, item_types or [Any] * len(value)))
        return _INVALID if any(i is _INVALID for i in items) else items
    if annotation is bool:
        return value if isinstance(value, bool | np.bool_) else _INVALID
    if annotation is int:
        ok = isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)
        return value if ok and abs(int(value)) <= limit else _INVALID
    if annotation is float:
        ok = isinstance(value, float | int | np.floating | np.integer) and not isinstance(
            value, bool | np.bool_
        )
        return value if ok and math.isfinite(value) else _INVALID
    if annotation is str:
        return value if isinstance(value, str) else _INVALID
    return value


def describe_annotation(annotation: Any, limit: int = MAX_INT) -> str:
    """What a field of type ``annotation`` accepts, in words."""
    import types
    import typing

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe_annotation(a, limit) for a in args)
    if annotation is type(None):
        return "None"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is tuple:
        inner = {int: "integers", float: "numbers", str: "strings"}.get(args[0] if args else None)
        return f"a tuple of {inner or 'values'}"
    return {
        bool: "a bool",
        int: f"an integer of magnitude at most {limit}",
        float: "a finite number",
        str: "a string",
    }.get(annotation, getattr(annotation, "__name__", repr(annotation)))
