"""Distributed Distributional DDPG (Barth-Maron et al. 2018, arXiv:1804.08617).

DDPG (``jaxrl.agents.ddpg``) with the paper's four changes:

- a categorical critic: Z(s, a) is a softmax over ``num_atoms`` (51) atoms
  evenly spaced on ``[v_min, v_max]``, and Q(s, a) = E[Z(s, a)];
- the distributional target: the atoms of ``R + Γ·Z'(s', μ'(s'))`` are
  projected back onto the support (``jaxrl.ops.categorical_l2_project``,
  C51's projection) and the critic minimises the cross-entropy to them;
- N-step returns (``n_step`` = 5): R is the discounted sum of N rewards and
  Γ = γ^N (0 after a termination; a time limit keeps the bootstrap);
- prioritised replay (proportional, with importance weights); the priority
  of a transition is the KL divergence from its projected target to the
  predicted distribution (the distributional analogue of |TD error|);
- many actors: ``num_envs`` vmapped environments fill one buffer.

The actor ascends E[Z(s, μ(s))]. Target networks move softly (τ), as in
DDPG; the paper's Acme implementation copies them every 100 updates instead.

The support must cover the returns, and no one support suits every task: the
paper's ±150 suits the control suite (rewards in [0, 1]), while Pendulum-v1's
values lie in [−1627, 0]. So ``v_min``/``v_max`` default to None, meaning
"derive from the environment" (:func:`return_bounds`: the bounds of the
discounted return that its reward range and ``gamma`` allow, for the
environments whose rewards jaxrl knows); for any other environment
:func:`make` asks for them.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from jaxrl import ops
from jaxrl.agents import ddpg, fields
from jaxrl.agents.base import Agent, config_requirer, require
from jaxrl.agents.ddpg import HParams, State  # noqa: F401  (public names of this agent too)
from jaxrl.config import at_least, field, positive

ACTION_SPACES = ddpg.ACTION_SPACES


@dataclasses.dataclass(frozen=True)
class Config(ddpg.Config):
    """D4PG settings: DDPG's fields (same meaning) with the paper's N-step,
    prioritised, many-actor defaults, and the categorical critic's support."""

    # A redeclared field replaces its base's declaration whole, check included.
    num_envs: int = fields.num_envs(8)
    """Parallel actors (vmapped environments) filling one replay buffer."""
    updates_per_step: int = fields.updates_per_step(8)
    """Gradient updates per step (8 updates for 8 actors: one per env step)."""
    n_step: int = field(5, check=positive)
    """Rewards summed before bootstrapping (the paper's N = 5)."""
    prioritized: bool = True
    """Proportional prioritised replay."""
    num_atoms: int = field(51, check=at_least(2))
    """Atoms of the categorical critic."""
    v_min: float | None = None
    """Smallest atom; None derives it from the environment (:func:`return_bounds`).
    The paper's control-suite support is [−150, 150]."""
    v_max: float | None = None
    """Largest atom; None derives it from the environment."""

    def validate(self) -> None:
        super().validate()
        require = config_requirer(self)
        if self.v_min is not None and self.v_max is not None:
            require(self.v_min < self.v_max, "v_min", f"a number below v_max = {self.v_max}")


def _pendulum_bounds(params, gamma: float) -> tuple[float, float]:
    # Reward −(θ² + 0.1·θ̇² + 0.001·u²) with |θ| ≤ π, |θ̇| ≤ max_speed, |u| ≤ max_torque.
    worst = math.pi**2 + 0.1 * params.max_speed**2 + 0.001 * params.max_torque**2
    return -worst / (1.0 - gamma), 0.0


def _mountain_car_bounds(params, gamma: float) -> tuple[float, float]:
    # Reward −0.1·a² per step, plus 100 once, on the step that reaches the goal and ends the episode.
    worst = 0.1 * max(params.min_action**2, params.max_action**2)
    return -worst / (1.0 - gamma), 100.0


def _known_return_bounds():
    from gymnax.environments.classic_control import ContinuousMountainCar, Pendulum

    return {
        Pendulum: ("Pendulum-v1", _pendulum_bounds),
        ContinuousMountainCar: ("MountainCarContinuous-v0", _mountain_car_bounds),
    }


def return_bounds(env, env_params, gamma: float) -> tuple[float, float] | None:
    """``(lowest, highest)`` discounted return from any state of ``env`` at
    discount ``gamma``, from its per-step reward range (a time limit
    bootstraps, so the horizon is the discount's, not the episode's); None
    for an environment whose rewards jaxrl does not know (a wrapped one
    included: a wrapper may change the rewards) or for ``gamma`` = 1."""
    known = _known_return_bounds().get(type(env))
    if known is None or not gamma < 1.0:
        return None
    return known[1](env_params, float(gamma))


def with_support(config: Config, env, env_params) -> Config:
    """``config`` with ``v_min``/``v_max`` that are None derived from the
    environment (:func:`return_bounds`) at ``config.gamma``: the support is
    static, so a sweep over ``hparams.gamma`` should set them to cover its
    largest γ. ValueError naming the field to set where they cannot be derived."""
    if config.v_min is not None and config.v_max is not None:
        return config
    bounds = return_bounds(env, env_params, config.gamma)
    if bounds is None:
        field = "v_min" if config.v_min is None else "v_max"
        name = getattr(env, "name", type(env).__name__)
        known = ", ".join(env_id for env_id, _ in _known_return_bounds().values())
        require(
            False, "d4pg", field, None,
            f"a number: the critic's support is derived only for unwrapped {known} at gamma < 1, "
            f"not for {name!r} at gamma={config.gamma}; set v_min and v_max to bounds of its "
            f"discounted return (e.g. --set v_min=-100 --set v_max=100)",
        )
    derived = {"v_min": round(bounds[0], 6), "v_max": round(bounds[1], 6)}
    given = {f: getattr(config, f) for f in derived if getattr(config, f) is not None}
    config = dataclasses.replace(config, **{**derived, **given})
    if given and not config.v_min < config.v_max:
        (field, value), = given.items()
        other = "v_max" if field == "v_min" else "v_min"
        side = "below" if field == "v_min" else "above"
        require(False, "d4pg", field, value,
                f"a number {side} the {other} = {derived[other]} derived for {getattr(env, 'name', '')!r}")
    return config


def support(config: Config) -> jax.Array:
    """The critic's atoms ``[num_atoms]``."""
    return jnp.linspace(config.v_min, config.v_max, config.num_atoms, dtype=jnp.float32)


def categorical_critic(config: Config) -> ddpg.CriticSpec:
    """The :class:`ddpg.CriticSpec` of a categorical critic on ``config``'s support."""
    atoms = support(config)

    def q_value(logits: jax.Array) -> jax.Array:
        return jnp.sum(jax.nn.softmax(logits, axis=-1) * atoms, axis=-1)

    def td_loss(logits, target_logits, reward, discount):
        target_atoms = reward[:, None] + discount[:, None] * atoms[None, :]
        target_probs = ops.categorical_l2_project(
            target_atoms, jax.nn.softmax(target_logits, axis=-1), atoms
        )
        target_probs = jax.lax.stop_gradient(target_probs)
        cross_entropy = ops.categorical_cross_entropy(logits, target_probs)
        target_entropy = -jnp.sum(target_probs * jnp.log(jnp.maximum(target_probs, 1e-12)), axis=-1)
        return cross_entropy, jax.lax.stop_gradient(cross_entropy - target_entropy)

    return ddpg.CriticSpec(num_outputs=config.num_atoms, q_value=q_value, td_loss=td_loss)


def make(env, env_params, config: Config = Config()) -> Agent:
    """Binds D4PG to an environment with a continuous (Box) action space.
    The agent's config has the support filled in (see :func:`with_support`)."""
    config.validate()
    ddpg.check_continuous("d4pg", env, env_params)
    config = with_support(config, env, env_params)
    return ddpg.build("d4pg", env, env_params, config, categorical_critic(config))


def return_distribution(agent: Agent, state: State, obs: jax.Array, action: jax.Array | None = None):
    """``(atoms, probabilities)`` of Z(s, a) for one observation (a = μ(s) by
    default), for looking at what the critic has learned."""
    from jaxrl.agents.ddpg import Critic, DeterministicActor

    config = agent.config
    obs = jnp.asarray(obs, jnp.float32).reshape(-1)
    if action is None:
        action_dim = jax.tree.leaves(state.actor_params)[-1].shape[-1]
        actor = DeterministicActor(action_dim, tuple(config.hidden_sizes), config.activation)
        action = actor.apply(state.actor_params, obs)
    critic = Critic(config.num_atoms, tuple(config.hidden_sizes), config.activation)
    logits = critic.apply(state.critic_params, obs, jnp.asarray(action, jnp.float32).reshape(-1))
    return support(config), jax.nn.softmax(logits, axis=-1)
