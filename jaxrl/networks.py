"""Flax (linen) modules shared by the agents.

Parameters are plain pytrees, so a network's ``init``/``apply`` compose with
``jax.vmap`` over seeds and hyperparameters without any framework in the way.
"""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": nn.tanh,
    "relu": nn.relu,
    "elu": nn.elu,
    "gelu": nn.gelu,
    "silu": nn.silu,
    "leaky_relu": nn.leaky_relu,
}


def orthogonal(scale: float) -> nn.initializers.Initializer:
    return nn.initializers.orthogonal(scale)


class MLP(nn.Module):
    """A stack of dense layers with orthogonal initialisation.

    The sqrt(2) gain keeps activations' scale through ReLU/tanh layers, the
    common choice for on-policy agents (Engstrom et al. 2020).
    """

    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for size in self.hidden_sizes:
            x = act(nn.Dense(size, kernel_init=orthogonal(np.sqrt(2.0)))(x))
        return x


class MinAtarTorso(nn.Module):
    """The MinAtar network's convolutional torso (Young & Tian 2019): one 3x3
    convolution with 16 filters over the 10x10xC grid, then dense layers."""

    hidden_sizes: Sequence[int] = (128,)
    activation: str = "relu"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        x = act(nn.Conv(16, (3, 3), kernel_init=orthogonal(np.sqrt(2.0)))(x))
        x = x.reshape(x.shape[:-3] + (-1,))
        return MLP(self.hidden_sizes, self.activation)(x)


def make_torso(kind: str, hidden_sizes: Sequence[int], activation: str) -> nn.Module:
    if kind == "mlp":
        return MLP(tuple(hidden_sizes), activation)
    if kind == "minatar_cnn":
        return MinAtarTorso(tuple(hidden_sizes), activation)
    raise ValueError(f"unknown torso {kind!r} (known: mlp, minatar_cnn)")


def flatten_observation(obs: jax.Array, obs_ndim: int) -> jax.Array:
    """Flattens the trailing ``obs_ndim`` observation axes, keeping batch axes."""
    if obs_ndim <= 1:
        return obs if obs_ndim == 1 else obs[..., None]
    return obs.reshape(obs.shape[: obs.ndim - obs_ndim] + (-1,))


class DictEncoder(nn.Module):
    """Features of a Dict observation: each array (nested dicts too, in
    JAX's sorted-key order) encoded by its shape, then concatenated.

    An image key (rank 3, H x W x C) goes through the MinAtar convolution
    (16 3x3 filters) unless ``conv_images`` is False; every other key is
    flattened. ``leaf_shapes`` are one observation's shapes in leaf order.
    Leading batch axes are kept; integer and bool arrays become float32.
    """

    leaf_shapes: tuple[tuple[int, ...], ...]
    activation: str = "relu"
    conv_images: bool = True

    @nn.compact
    def __call__(self, obs) -> jax.Array:
        leaves = jax.tree.leaves(obs)
        if len(leaves) != len(self.leaf_shapes):
            raise ValueError(f"observation has {len(leaves)} arrays, expected {len(self.leaf_shapes)}")
        features = []
        for x, shape in zip(leaves, self.leaf_shapes):
            x = jnp.asarray(x, jnp.float32)
            if self.conv_images and len(shape) == 3:
                conv = nn.Conv(16, (3, 3), kernel_init=orthogonal(np.sqrt(2.0)))
                x = ACTIVATIONS[self.activation](conv(x))
                shape = x.shape[-3:]
            features.append(flatten_observation(x, len(shape)))
        return jnp.concatenate(features, axis=-1)


def leaf_shapes(shapes) -> tuple[tuple[int, ...], ...]:
    """The shapes of a (nested) dict of shape tuples, in JAX's leaf order."""
    return tuple(jax.tree.leaves(shapes, is_leaf=lambda x: isinstance(x, tuple)))


class ActorCritic(nn.Module):
    """Separate actor and critic torsos with a policy head and a value head.

    Separate torsos avoid the policy and value losses fighting over shared
    features, which matters on small control tasks. The policy head is
    initialised with a tiny gain so the initial policy is near uniform (or a
    unit Gaussian around zero), which keeps early PPO ratios tame.

    Returns ``(policy_params, value)``: logits ``[..., A]`` for discrete
    actions, or ``(mean, log_std)`` with a state-independent ``log_std`` for
    continuous ones.

    ``dict_shapes`` (the leaf shapes of a Dict observation, see
    :func:`leaf_shapes`): each torso first encodes the observation with a
    :class:`DictEncoder` (convolving image keys unless ``torso`` is
    ``"mlp"``), then applies its dense layers.
    """

    action_dim: int
    discrete: bool
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"
    torso: str = "mlp"
    obs_ndim: int = 1
    init_log_std: float = 0.0
    dict_shapes: tuple[tuple[int, ...], ...] | None = None

    @nn.compact
    def __call__(self, obs: jax.Array):
        if self.dict_shapes is not None:
            encoder = lambda: DictEncoder(self.dict_shapes, self.activation, self.torso != "mlp")
            mlp = lambda: MLP(tuple(self.hidden_sizes), self.activation)
            actor, critic = mlp()(encoder()(obs)), mlp()(encoder()(obs))
        else:
            if self.torso == "mlp":
                obs = flatten_observation(obs, self.obs_ndim)
            actor = make_torso(self.torso, self.hidden_sizes, self.activation)(obs)
            critic = make_torso(self.torso, self.hidden_sizes, self.activation)(obs)
        value = nn.Dense(1, kernel_init=orthogonal(1.0))(critic)[..., 0]
        head = nn.Dense(self.action_dim, kernel_init=orthogonal(0.01))(actor)
        if self.discrete:
            return head, value
        log_std = self.param(
            "log_std", nn.initializers.constant(self.init_log_std), (self.action_dim,)
        )
        return (head, jnp.broadcast_to(log_std, head.shape)), value

    def value(self, obs: jax.Array) -> jax.Array:
        return self(obs)[1]
