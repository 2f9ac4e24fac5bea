"""Deterministic-policy-gradient pieces that DDPG and D4PG share: the actor
μ(s), the critic over (s, a), what distinguishes a scalar critic from a
categorical one (:class:`CriticSpec`), and the action-space check."""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrl import envs, ops
from jaxrl.networks import ACTIVATIONS


def _final_init(key, shape, dtype=jnp.float32):
    # The paper's U[−3e-3, 3e-3] for the last layers: initial outputs near 0.
    return jax.random.uniform(key, shape, dtype, -3e-3, 3e-3)


class DeterministicActor(nn.Module):
    """μ(s) ∈ [−1, 1]^A: an MLP with a tanh output."""

    action_dim: int
    hidden_sizes: Sequence[int] = (256, 256)
    activation: str = "relu"

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        x = obs
        for size in self.hidden_sizes:
            x = act(nn.Dense(size)(x))
        return jnp.tanh(nn.Dense(self.action_dim, kernel_init=_final_init, bias_init=_final_init)(x))


class Critic(nn.Module):
    """Q(s, a): an MLP over ``[s, a]`` with ``num_outputs`` outputs (1 for a
    scalar Q, the atoms' logits for a categorical critic)."""

    num_outputs: int = 1
    hidden_sizes: Sequence[int] = (256, 256)
    activation: str = "relu"

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        x = jnp.concatenate([obs, action], axis=-1)
        for size in self.hidden_sizes:
            x = act(nn.Dense(size)(x))
        return nn.Dense(self.num_outputs, kernel_init=_final_init, bias_init=_final_init)(x)


class CriticSpec(NamedTuple):
    """What distinguishes a critic: DDPG's scalar Q or D4PG's categorical Z.

    Attributes:
      num_outputs: outputs of the critic network per (s, a).
      q_value: ``q_value(critic_out) -> Q [...]``, the value the actor ascends.
      td_loss: ``td_loss(critic_out, target_out, reward, discount) ->
        (loss [N], priority [N])``: the per-sample critic loss against the
        target ``R + Γ·Z'(s', μ'(s'))`` (target_out is the target critic's
        output at s') and the raw priority for prioritised replay.
    """

    num_outputs: int
    q_value: Callable[[jax.Array], jax.Array]
    td_loss: Callable[..., tuple[jax.Array, jax.Array]]


def scalar_q_value(critic_out: jax.Array) -> jax.Array:
    return critic_out[..., 0]


def scalar_td_loss(critic_out, target_out, reward, discount):
    """½(Q(s, a) − y)² with y = R + Γ·Q'(s', μ'(s')); priority |y − Q|."""
    q = critic_out[..., 0]
    target = jax.lax.stop_gradient(reward + discount * target_out[..., 0])
    return ops.squared_loss_per_element(q, target), jnp.abs(target - q)


SCALAR_CRITIC = CriticSpec(num_outputs=1, q_value=scalar_q_value, td_loss=scalar_td_loss)


def check_continuous(algo: str, env, env_params) -> None:
    """ValueError for discrete-action environments, which a deterministic
    policy gradient cannot handle (∇_a Q needs a continuous a)."""
    kind = envs.action_space_kind(env, env_params)
    if kind != "continuous":
        name = getattr(env, "name", type(env).__name__)
        raise ValueError(
            f"algorithm {algo!r} supports continuous (Box) action spaces only, but {name!r} has a "
            f"{type(env.action_space(env_params)).__name__} action space; use a discrete-action "
            f"algorithm (e.g. ppo) instead"
        )



def kernels(params) -> list[jax.Array]:
    """The weight matrices of ``params`` (the paper's L2 penalty spares biases)."""
    leaves = jax.tree_util.tree_leaves_with_path(params)
    return [x for path, x in leaves if getattr(path[-1], "key", None) == "kernel"]
