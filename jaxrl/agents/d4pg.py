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

The support must cover the returns: the paper's ±150 suits the control suite
(rewards in [0, 1]); Pendulum-v1's returns lie in about [−1650, 0], hence
``v_min=-1000, v_max=0`` in the benchmark (values below −1000 are clipped to
the first atom, which only the worst swing-ups reach).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxrl import ops
from jaxrl.agents import ddpg
from jaxrl.agents.base import Agent, config_requirer
from jaxrl.agents.ddpg import HParams, State  # noqa: F401  (public names of this agent too)

ACTION_SPACES = ddpg.ACTION_SPACES


@dataclasses.dataclass(frozen=True)
class Config(ddpg.Config):
    """D4PG settings: DDPG's fields (same meaning) with the paper's N-step,
    prioritised, many-actor defaults, and the categorical critic's support."""

    num_envs: int = 8
    """Parallel actors (vmapped environments) filling one replay buffer."""
    updates_per_step: int = 8
    """Gradient updates per step (8 updates for 8 actors: one per env step)."""
    n_step: int = 5
    """Rewards summed before bootstrapping (the paper's N = 5)."""
    prioritized: bool = True
    """Proportional prioritised replay."""
    num_atoms: int = 51
    """Atoms of the categorical critic."""
    v_min: float = -150.0
    """Smallest atom (the paper's control-suite support is [−150, 150])."""
    v_max: float = 150.0
    """Largest atom."""

    def validate(self) -> None:
        super().validate()
        require = config_requirer(self)
        require(isinstance(self.num_atoms, int) and self.num_atoms >= 2, "num_atoms", "an integer >= 2")
        require(self.v_min < self.v_max, "v_min", f"a number below v_max = {self.v_max}")


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
    """Binds D4PG to an environment with a continuous (Box) action space."""
    config.validate()
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
