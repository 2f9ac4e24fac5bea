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
    convolution with 16 filters over the 10x10xC grid, then dense layers
    (``hidden_sizes``). uint8 input is divided by 255 (:func:`scale_pixels`)."""

    hidden_sizes: Sequence[int] = (128,)
    activation: str = "relu"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        x = act(nn.Conv(16, (3, 3), kernel_init=orthogonal(np.sqrt(2.0)))(scale_pixels(x)))
        x = x.reshape(x.shape[:-3] + (-1,))
        return MLP(self.hidden_sizes, self.activation)(x)


def scale_pixels(x: jax.Array) -> jax.Array:
    """uint8 images (0..255) as float32 in [0, 1]; anything else unchanged.

    The dtype says which: a uint8 observation is raw pixels, a float one has
    already been scaled (or normalised) by the env or a wrapper, so it is
    taken as given. Every conv torso applies this to its input."""
    if x.dtype == jnp.uint8:
        return x.astype(jnp.float32) / 255.0
    return x


def _conv(features: int, kernel: int, stride: int = 1, padding: str = "SAME") -> nn.Conv:
    return nn.Conv(features, (kernel, kernel), (stride, stride), padding=padding,
                   kernel_init=orthogonal(np.sqrt(2.0)))


def _flatten_image(x: jax.Array) -> jax.Array:
    return x.reshape(x.shape[:-3] + (-1,))


class NatureCNN(nn.Module):
    """The Nature DQN encoder (Mnih et al. 2015, "Human-level control through
    deep reinforcement learning", Methods, Model architecture): a conv of 32
    8x8 filters with stride 4, one of 64 4x4 filters with stride 2, one of
    64 3x3 filters with stride 1, each followed by a ReLU, then a dense layer
    of 512 ReLU units.

    Padding is VALID as in the paper (84x84 frames become 20x20, 9x9, 7x7),
    so an image needs at least 36x36 pixels (:data:`MIN_IMAGE_SIZE`). The
    dense part is ``MLP(hidden_sizes, activation)``: the paper's is
    ``hidden_sizes=(512,)`` with ReLU. uint8 input is divided by 255
    (:func:`scale_pixels`). Leading batch axes are kept."""

    hidden_sizes: Sequence[int] = (512,)
    activation: str = "relu"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = scale_pixels(x)
        for features, kernel, stride in ((32, 8, 4), (64, 4, 2), (64, 3, 1)):
            x = nn.relu(_conv(features, kernel, stride, "VALID")(x))
        return MLP(tuple(self.hidden_sizes), self.activation)(_flatten_image(x))


class ResidualBlock(nn.Module):
    """IMPALA's residual block: x + conv(relu(conv(relu(x)))), 3x3 convs that
    keep the channels."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        channels = x.shape[-1]
        y = _conv(channels, 3)(nn.relu(x))
        y = _conv(channels, 3)(nn.relu(y))
        return x + y


class ImpalaResNet(nn.Module):
    """IMPALA's "deep" encoder (Espeholt et al. 2018, "IMPALA: Scalable
    Distributed Deep-RL with Importance Weighted Actor-Learner
    Architectures", Figure 3, right): three sections of 16, 32 and 32
    channels, each a 3x3 conv (stride 1), a 3x3 max-pool with stride 2 and
    two :class:`ResidualBlock` s; then a ReLU, flatten, and a dense layer of
    256 ReLU units (the paper's LSTM comes after that, and is not part of
    the torso).

    Convs and pools use SAME padding (as the paper's reference code), so any
    image size works: each section halves the height and width, rounding up.
    The dense part is ``MLP(hidden_sizes, activation)``: the paper's is
    ``hidden_sizes=(256,)`` with ReLU. uint8 input is divided by 255
    (:func:`scale_pixels`). Leading batch axes are kept."""

    hidden_sizes: Sequence[int] = (256,)
    activation: str = "relu"
    channels: Sequence[int] = (16, 32, 32)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        batch_shape = x.shape[:-3]
        # max_pool takes one batch axis.
        x = scale_pixels(x).reshape((-1,) + x.shape[-3:])
        for channels in self.channels:
            x = _conv(channels, 3)(x)
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
            x = ResidualBlock()(x)
            x = ResidualBlock()(x)
        x = nn.relu(x).reshape(batch_shape + (-1,))
        return MLP(tuple(self.hidden_sizes), self.activation)(x)


IMAGE_TORSOS = ("minatar_cnn", "nature_cnn", "impala_resnet")
"""The torsos that take images ``(H, W, C)``; the others flatten the observation."""

MIN_IMAGE_SIZE = {"minatar_cnn": 1, "nature_cnn": 36, "impala_resnet": 1}
"""The smallest height and width each image torso takes."""


def resolve_torso(torso: str, obs_shape: tuple[int, ...]) -> str:
    """``"auto"`` picks the MinAtar CNN for image (H, W, C) observations, else an MLP."""
    if torso == "auto":
        return "minatar_cnn" if len(obs_shape) == 3 else "mlp"
    return torso


def torso_mismatch(kind: str, obs_shape: tuple[int, ...]) -> str | None:
    """Why torso ``kind`` cannot take observations of ``obs_shape`` (None if it can)."""
    if kind not in IMAGE_TORSOS:
        return None
    if len(obs_shape) != 3:
        return f"{kind} takes images (H, W, C)"
    size = MIN_IMAGE_SIZE[kind]
    if min(obs_shape[:2]) < size:
        return f"{kind} takes images of at least {size}x{size}"
    return None


def make_torso(kind: str, hidden_sizes: Sequence[int], activation: str) -> nn.Module:
    """The torso ``kind`` (``mlp`` | ``minatar_cnn`` | ``nature_cnn`` |
    ``impala_resnet``): for the image torsos, ``hidden_sizes`` are the dense
    layers after the convolutions."""
    if kind == "mlp":
        return MLP(tuple(hidden_sizes), activation)
    if kind == "minatar_cnn":
        return MinAtarTorso(tuple(hidden_sizes), activation)
    if kind == "nature_cnn":
        return NatureCNN(tuple(hidden_sizes), activation)
    if kind == "impala_resnet":
        return ImpalaResNet(tuple(hidden_sizes), activation)
    raise ValueError(f"unknown torso {kind!r} (known: mlp, {', '.join(IMAGE_TORSOS)})")


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


# ---------------------------------------------------------------- recurrent cores

CORES = ("none", "lstm", "gru")
"""Recurrent cores an actor-critic can have (``none``: feed-forward)."""


def initial_core_carry(core: str, core_size: int, batch_shape: tuple[int, ...] = ()):
    """The zero state of a ``core`` of ``core_size`` units for ``batch_shape``
    sequences: an array for a GRU, the pair ``(c, h)`` for an LSTM."""
    zeros = jnp.zeros(tuple(batch_shape) + (core_size,), jnp.float32)
    return (zeros, zeros) if core == "lstm" else zeros


def reset_core_carry(carry, done: jax.Array):
    """``carry`` with the sequences where ``done`` (``[B]`` bool) set back to
    zero, the state a new episode starts from."""
    return jax.tree.map(lambda c: jnp.where(done[..., None], jnp.zeros_like(c), c), carry)


def stacked_orthogonal(blocks: int) -> nn.initializers.Initializer:
    """``blocks`` square orthogonal matrices side by side: one per gate of a
    recurrent kernel ``[H, blocks * H]``, as flax's cells initialise theirs."""

    def init(key, shape, dtype=jnp.float32):
        size = shape[-1] // blocks
        keys = jax.random.split(key, blocks)
        return jnp.concatenate([orthogonal(1.0)(k, shape[:-1] + (size,), dtype) for k in keys],
                               axis=-1)

    return init


class GRUCore(nn.Module):
    """The recurrent half of a GRU (flax's ``GRUCell`` equations): ``inputs``
    are the input's projection onto the gates, ``W_i x + b_i`` ``[..., 3H]``
    in (r, z, n) order, computed outside the sequential loop (a whole rollout
    in one matrix product); only ``W_h h`` is computed step by step."""

    features: int

    @nn.compact
    def __call__(self, h: jax.Array, inputs: jax.Array):
        recurrent = nn.Dense(3 * self.features, use_bias=False,
                             kernel_init=stacked_orthogonal(3), name="recurrent")(h)
        bias_hn = self.param("bias_hn", nn.initializers.zeros_init(), (self.features,))
        xr, xz, xn = jnp.split(inputs, 3, axis=-1)
        hr, hz, hn = jnp.split(recurrent, 3, axis=-1)
        r = nn.sigmoid(xr + hr)
        z = nn.sigmoid(xz + hz)
        n = jnp.tanh(xn + r * (hn + bias_hn))
        h = (1.0 - z) * n + z * h
        return h, h


class LSTMCore(nn.Module):
    """The recurrent half of an LSTM (flax's ``LSTMCell`` equations), carry
    ``(c, h)``: ``inputs`` are ``W_i x`` ``[..., 4H]`` in (i, f, g, o) order,
    computed outside the sequential loop; ``W_h h + b`` step by step."""

    features: int

    @nn.compact
    def __call__(self, carry, inputs: jax.Array):
        c, h = carry
        gates = inputs + nn.Dense(4 * self.features, kernel_init=stacked_orthogonal(4),
                                  name="recurrent")(h)
        i, f, g, o = jnp.split(gates, 4, axis=-1)
        c = nn.sigmoid(f) * c + nn.sigmoid(i) * jnp.tanh(g)
        h = nn.sigmoid(o) * jnp.tanh(c)
        return (c, h), h


class RecurrentActorCritic(nn.Module):
    """An actor-critic with a recurrent core: a shared embedding (the torso of
    ``hidden_sizes``, as :class:`ActorCritic` builds it), the core (an LSTM
    or GRU of ``core_size`` units), then separate actor and critic heads of
    one ``hidden_sizes[-1]``-unit layer each before the policy and value
    outputs (initialised as :class:`ActorCritic`'s).

    The torso and core are shared because the core's state is the agent's
    memory: one memory read by both heads is what the learner replays.

    The parts are separate methods so that a learner can embed a whole
    rollout ``[T, B, ...]`` in one batched call, run only the core's
    recurrent half sequentially, then apply the heads batched again:

    - ``embed(obs) -> x``, any leading axes: the embedding already projected
      onto the core's gates (the half of the core's work that does not
      depend on its state, done outside the sequential loop);
    - ``core_step(carry, x) -> (carry, h)``, one step of ``[B]`` sequences;
    - ``heads(h) -> (policy_out, value)``, any leading axes;
    - ``__call__(carry, obs) -> (carry, (policy_out, value))``: the three in
      turn (one step; what ``init`` traces).
    """

    action_dim: int
    discrete: bool
    core: str = "gru"
    core_size: int = 128
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"
    torso: str = "mlp"
    obs_ndim: int = 1
    init_log_std: float = 0.0
    dict_shapes: tuple[tuple[int, ...], ...] | None = None

    def setup(self):
        if self.dict_shapes is not None:
            self.encoder = DictEncoder(self.dict_shapes, self.activation, self.torso != "mlp")
            self.embedding = MLP(tuple(self.hidden_sizes), self.activation)
        else:
            self.embedding = make_torso(self.torso, self.hidden_sizes, self.activation)
        gates = 4 if self.core == "lstm" else 3
        # An LSTM's gate bias sits on the recurrent side, a GRU's on the input side.
        self.input_projection = nn.Dense(gates * self.core_size, use_bias=self.core != "lstm",
                                         kernel_init=nn.initializers.lecun_normal())
        self.cell = (LSTMCore if self.core == "lstm" else GRUCore)(self.core_size)
        head_sizes = tuple(self.hidden_sizes[-1:]) or (self.core_size,)
        self.actor = MLP(head_sizes, self.activation)
        self.critic = MLP(head_sizes, self.activation)
        self.policy_out = nn.Dense(self.action_dim, kernel_init=orthogonal(0.01))
        self.value_out = nn.Dense(1, kernel_init=orthogonal(1.0))
        if not self.discrete:
            self.log_std = self.param(
                "log_std", nn.initializers.constant(self.init_log_std), (self.action_dim,))

    def embed(self, obs):
        if self.dict_shapes is not None:
            return self.input_projection(self.embedding(self.encoder(obs)))
        if self.torso == "mlp":
            obs = flatten_observation(obs, self.obs_ndim)
        return self.input_projection(self.embedding(obs))

    def core_step(self, carry, x: jax.Array):
        return self.cell(carry, x)

    def heads(self, h: jax.Array):
        value = self.value_out(self.critic(h))[..., 0]
        head = self.policy_out(self.actor(h))
        if self.discrete:
            return head, value
        return (head, jnp.broadcast_to(self.log_std, head.shape)), value

    def __call__(self, carry, obs):
        carry, h = self.core_step(carry, self.embed(obs))
        return carry, self.heads(h)
