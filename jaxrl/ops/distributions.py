"""Small action-distribution helpers: categorical, diagonal Gaussian, tanh-Gaussian,
and for MultiDiscrete actions a factorised categorical (and its joint form
under a joint action mask); :func:`masked_logits` applies an action mask.

Functions take the distribution's parameters as plain arrays and work over
any leading batch shape; the event axis (actions of a categorical's logits,
dimensions of a Gaussian) is the last one and is reduced by log-probs,
entropies and KLs. ``Categorical`` and ``DiagGaussian`` wrap them as pytrees
with one method set, so an agent can pick the distribution once from the
action space and write the rest of its loss without branching.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp

Array = jax.Array

_HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)
_LOG_TWO = math.log(2.0)


# --------------------------------------------------------------------------
# Categorical over the last axis of ``logits``


def categorical_sample(key: Array, logits: Array) -> Array:
    """Integer actions drawn from softmax(logits), shape ``logits.shape[:-1]``."""
    return jax.random.categorical(key, logits, axis=-1)


def categorical_log_prob(logits: Array, actions: Array) -> Array:
    """log softmax(logits)[actions]; batch shapes broadcast against each other."""
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    actions = jnp.asarray(actions).astype(jnp.int32)
    # Broadcast so one set of logits can score a batch of actions and back.
    batch_shape = jnp.broadcast_shapes(log_probs.shape[:-1], actions.shape)
    log_probs = jnp.broadcast_to(log_probs, (*batch_shape, log_probs.shape[-1]))
    actions = jnp.broadcast_to(actions, batch_shape)
    return jnp.take_along_axis(log_probs, actions[..., None], axis=-1)[..., 0]


def _safe_log_softmax(logits: Array) -> tuple[Array, Array]:
    """(p, log p) with log p set to 0 where p = 0 (logits of −inf mask actions).

    Replacing −inf before it is multiplied by p keeps 0·log 0 = 0 in both the
    value and the gradient.
    """
    log_p = jax.nn.log_softmax(logits, axis=-1)
    p = jnp.exp(log_p)
    return p, jnp.where(p > 0, log_p, 0.0)


def categorical_entropy(logits: Array) -> Array:
    """H[p] = −Σ_a p(a)·log p(a), shape ``logits.shape[:-1]``."""
    p, log_p = _safe_log_softmax(logits)
    return -jnp.sum(p * log_p, axis=-1)


def categorical_kl(logits_p: Array, logits_q: Array) -> Array:
    """KL[p ‖ q] = Σ_a p(a)·(log p(a) − log q(a)), shape ``logits.shape[:-1]``."""
    p, log_p = _safe_log_softmax(logits_p)
    # Where p = 0 the term is 0 whatever q is; zeroing log q there too keeps
    # −inf − (−inf) out of the gradient when both mask the same action.
    log_q = jnp.where(p > 0, jax.nn.log_softmax(logits_q, axis=-1), 0.0)
    return jnp.sum(p * (log_p - log_q), axis=-1)


def categorical_mode(logits: Array) -> Array:
    """The most probable action, shape ``logits.shape[:-1]``."""
    return jnp.argmax(logits, axis=-1)


# --------------------------------------------------------------------------
# Diagonal Gaussian N(mean, diag(exp(log_std))²) over the last axis


def gaussian_sample(key: Array, mean: Array, log_std: Array) -> Array:
    """mean + exp(log_std)·ε, ε ~ N(0, I); shape of ``mean`` and ``log_std`` broadcast."""
    mean, log_std = jnp.broadcast_arrays(mean, log_std)
    noise = jax.random.normal(key, mean.shape, mean.dtype)
    return mean + jnp.exp(log_std) * noise


def gaussian_log_prob(mean: Array, log_std: Array, x: Array) -> Array:
    """Σ_i [−½((x_i − μ_i)/σ_i)² − log σ_i − ½ log 2π], summed over the last axis."""
    z = (x - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * jnp.square(z) - log_std - _HALF_LOG_TWO_PI, axis=-1)


def gaussian_entropy(mean: Array, log_std: Array) -> Array:
    """Σ_i [½ + ½ log 2π + log σ_i], summed over the last axis.

    ``mean`` only fixes the batch shape (a state-independent ``log_std`` of
    shape ``[A]`` broadcasts against a ``[B, A]`` mean).
    """
    mean, log_std = jnp.broadcast_arrays(mean, log_std)
    return jnp.sum(0.5 + _HALF_LOG_TWO_PI + log_std, axis=-1)


def gaussian_kl(mean_p: Array, log_std_p: Array, mean_q: Array, log_std_q: Array) -> Array:
    """KL[p ‖ q] for diagonal Gaussians, summed over the last axis.

        Σ_i [log σ_q − log σ_p + (σ_p² + (μ_p − μ_q)²) / (2σ_q²) − ½]
    """
    variance_ratio = jnp.exp(2.0 * (log_std_p - log_std_q))
    mean_term = jnp.square((mean_p - mean_q) * jnp.exp(-log_std_q))
    per_dim = 0.5 * (variance_ratio + mean_term - 1.0) - (log_std_p - log_std_q)
    return jnp.sum(per_dim, axis=-1)


def gaussian_mode(mean: Array, log_std: Array) -> Array:
    """The mean, broadcast to the distribution's shape."""
    return jnp.broadcast_arrays(mean, log_std)[0]


# --------------------------------------------------------------------------
# tanh-squashed diagonal Gaussian: a = tanh(u), u ~ N(mean, σ²)


def _log_one_minus_tanh_squared(u: Array) -> Array:
    # log(1 − tanh²u) = 2·(log 2 − u − softplus(−2u)): exact, and finite for
    # large |u| where 1 − tanh²u underflows to 0.
    return 2.0 * (_LOG_TWO - u - jax.nn.softplus(-2.0 * u))


def tanh_gaussian_log_prob(mean: Array, log_std: Array, pre_tanh: Array) -> Array:
    """log density of a = tanh(u) at u = ``pre_tanh`` (change of variables).

        log π(a) = log N(u; μ, σ²) − Σ_i log(1 − tanh²u_i)

    Takes the pre-squash sample because inverting tanh near ±1 is ill-posed.
    """
    correction = jnp.sum(_log_one_minus_tanh_squared(pre_tanh), axis=-1)
    return gaussian_log_prob(mean, log_std, pre_tanh) - correction


def tanh_gaussian_sample(key: Array, mean: Array, log_std: Array) -> tuple[Array, Array]:
    """(action, log_prob) with action = tanh(u) in (−1, 1), u ~ N(mean, σ²).

    The sample is reparameterised: gradients flow to ``mean`` and ``log_std``.
    """
    pre_tanh = gaussian_sample(key, mean, log_std)
    return jnp.tanh(pre_tanh), tanh_gaussian_log_prob(mean, log_std, pre_tanh)


# --------------------------------------------------------------------------
# Pytree wrappers with one interface


@functools.partial(jax.tree_util.register_dataclass, data_fields=["logits"], meta_fields=[])
@dataclasses.dataclass(frozen=True)
class Categorical:
    """Categorical distribution over the last axis of ``logits``."""

    logits: Array

    def sample(self, key: Array) -> Array:
        return categorical_sample(key, self.logits)

    @staticmethod
    def noise(key: Array, shape: tuple[int, ...]) -> Array:
        """Standard Gumbel noise of ``shape`` (batch shape + ``[num_actions]``)
        for :meth:`sample_from_noise`. Drawing a whole rollout's noise in one
        call keeps PRNG work out of the per-step loop, where it costs far more
        than the policy on a CPU."""
        return jax.random.gumbel(key, shape)

    def sample_from_noise(self, noise: Array) -> Array:
        """argmax(logits + g) with Gumbel noise ``g``: a draw from softmax(logits)
        (the Gumbel-max trick, which ``jax.random.categorical`` also uses)."""
        return jnp.argmax(self.logits + noise, axis=-1)

    def log_prob(self, actions: Array) -> Array:
        return categorical_log_prob(self.logits, actions)

    def sample_and_log_prob(self, key: Array) -> tuple[Array, Array]:
        actions = self.sample(key)
        return actions, self.log_prob(actions)

    def entropy(self) -> Array:
        return categorical_entropy(self.logits)

    def kl(self, other: Categorical) -> Array:
        """KL[self ‖ other]."""
        return categorical_kl(self.logits, other.logits)

    def mode(self) -> Array:
        return categorical_mode(self.logits)


@functools.partial(
    jax.tree_util.register_dataclass, data_fields=["mean", "log_std"], meta_fields=[]
)
@dataclasses.dataclass(frozen=True)
class DiagGaussian:
    """Diagonal Gaussian over the last axis; ``log_std`` broadcasts against ``mean``."""

    mean: Array
    log_std: Array

    def sample(self, key: Array) -> Array:
        return gaussian_sample(key, self.mean, self.log_std)

    @staticmethod
    def noise(key: Array, shape: tuple[int, ...]) -> Array:
        """Standard normal noise of ``shape`` (batch shape + ``[dims]``) for
        :meth:`sample_from_noise`."""
        return jax.random.normal(key, shape)

    def sample_from_noise(self, noise: Array) -> Array:
        """mean + exp(log_std)·ε with standard normal ``ε``."""
        return self.mean + jnp.exp(self.log_std) * noise

    def log_prob(self, x: Array) -> Array:
        return gaussian_log_prob(self.mean, self.log_std, x)

    def sample_and_log_prob(self, key: Array) -> tuple[Array, Array]:
        x = self.sample(key)
        return x, self.log_prob(x)

    def entropy(self) -> Array:
        return gaussian_entropy(self.mean, self.log_std)

    def kl(self, other: DiagGaussian) -> Array:
        """KL[self ‖ other]."""
        return gaussian_kl(self.mean, self.log_std, other.mean, other.log_std)

    def mode(self) -> Array:
        return gaussian_mode(self.mean, self.log_std)


# --------------------------------------------------------------------------
# Action masks and several discrete choices taken together (MultiDiscrete)


def masked_logits(logits: Array, mask: Array) -> Array:
    """``logits`` with the actions where ``mask`` is False set to the dtype's
    lowest finite value, so softmax gives them probability 0.

    A finite value, not −inf: an all-False row then stays a (uniform)
    distribution instead of NaN, and the safe log-softmax above keeps
    entropies and KLs finite. The gradient never reaches a masked logit.
    """
    return jnp.where(mask, logits, jnp.finfo(logits.dtype).min)


def split_logits(logits: Array, nvec: tuple[int, ...]) -> list[Array]:
    """``[..., sum(nvec)]`` logits as one ``[..., nvec[i]]`` block per dimension."""
    bounds = [sum(nvec[:i]) for i in range(1, len(nvec))]
    return jnp.split(logits, bounds, axis=-1)


def factorised_log_prob(logits: Array, nvec: tuple[int, ...], actions: Array) -> Array:
    """Σ_i log softmax(logits_i)[actions[..., i]]: independent dimensions."""
    actions = jnp.asarray(actions)
    return sum(categorical_log_prob(block, actions[..., i])
               for i, block in enumerate(split_logits(logits, nvec)))


def factorised_entropy(logits: Array, nvec: tuple[int, ...]) -> Array:
    """Σ_i H[p_i]: the entropy of independent dimensions adds up."""
    return sum(categorical_entropy(block) for block in split_logits(logits, nvec))


def factorised_kl(logits_p: Array, logits_q: Array, nvec: tuple[int, ...]) -> Array:
    """Σ_i KL[p_i ‖ q_i]: so does the KL of independent dimensions."""
    return sum(categorical_kl(p, q)
               for p, q in zip(split_logits(logits_p, nvec), split_logits(logits_q, nvec)))


def factorised_sample_from_noise(logits: Array, nvec: tuple[int, ...], noise: Array) -> Array:
    """Gumbel-max in every dimension: actions ``[..., len(nvec)]``."""
    return factorised_mode(logits + noise, nvec)


def factorised_mode(logits: Array, nvec: tuple[int, ...]) -> Array:
    """The most probable action of every dimension, ``[..., len(nvec)]``."""
    return jnp.stack([jnp.argmax(block, axis=-1) for block in split_logits(logits, nvec)], axis=-1)


def joint_logits(logits: Array, nvec: tuple[int, ...]) -> Array:
    """Logits ``[..., prod(nvec)]`` of every combination of choices (row-major,
    like ``jnp.ravel_multi_index``): the sum of its dimensions' logits, so
    the softmax over them is the factorised distribution."""
    blocks = split_logits(logits, nvec)
    batch_shape = logits.shape[:-1]
    total = jnp.zeros(batch_shape + tuple(nvec), logits.dtype)
    for i, block in enumerate(blocks):
        shape = batch_shape + tuple(n if j == i else 1 for j, n in enumerate(nvec))
        total = total + block.reshape(shape)
    return total.reshape(batch_shape + (-1,))


@functools.partial(jax.tree_util.register_dataclass, data_fields=["logits"],
                   meta_fields=["nvec"])
@dataclasses.dataclass(frozen=True)
class FactorisedCategorical:
    """Independent categoricals over ``len(nvec)`` dimensions (a MultiDiscrete
    action space): ``logits [..., sum(nvec)]`` hold dimension ``i``'s block
    after those of dimensions ``< i``; actions are ``[..., len(nvec)]``.
    Log-probs, entropies and KLs sum over dimensions. Per-dimension action
    masks are masked logits (:func:`masked_logits` on the flat mask)."""

    logits: Array
    nvec: tuple[int, ...]

    @staticmethod
    def noise(key: Array, shape: tuple[int, ...]) -> Array:
        """Standard Gumbel noise of ``shape`` (batch shape + ``[sum(nvec)]``)."""
        return jax.random.gumbel(key, shape)

    def sample(self, key: Array) -> Array:
        return self.sample_from_noise(self.noise(key, self.logits.shape))

    def sample_from_noise(self, noise: Array) -> Array:
        return factorised_sample_from_noise(self.logits, self.nvec, noise)

    def log_prob(self, actions: Array) -> Array:
        return factorised_log_prob(self.logits, self.nvec, actions)

    def sample_and_log_prob(self, key: Array) -> tuple[Array, Array]:
        actions = self.sample(key)
        return actions, self.log_prob(actions)

    def entropy(self) -> Array:
        return factorised_entropy(self.logits, self.nvec)

    def kl(self, other: FactorisedCategorical) -> Array:
        """KL[self ‖ other]."""
        return factorised_kl(self.logits, other.logits, self.nvec)

    def mode(self) -> Array:
        return factorised_mode(self.logits, self.nvec)


@functools.partial(jax.tree_util.register_dataclass, data_fields=["logits"],
                   meta_fields=["nvec"])
@dataclasses.dataclass(frozen=True)
class JointCategorical:
    """A categorical over every combination of a MultiDiscrete's choices:
    ``logits [..., prod(nvec)]`` (row-major), actions ``[..., len(nvec)]``.

    The distribution of a factorised policy under a *joint* action mask
    (which legal combinations exist cannot be split per dimension):
    ``masked_logits(joint_logits(logits, nvec), mask)`` is the factorised
    distribution restricted to the legal combinations and renormalised, with
    exact log-probs, entropy and KL."""

    logits: Array
    nvec: tuple[int, ...]

    @staticmethod
    def noise(key: Array, shape: tuple[int, ...]) -> Array:
        """Standard Gumbel noise of ``shape`` (batch shape + ``[prod(nvec)]``)."""
        return jax.random.gumbel(key, shape)

    def _unravel(self, index: Array) -> Array:
        return jnp.stack(jnp.unravel_index(index, self.nvec), axis=-1).astype(jnp.int32)

    def _ravel(self, actions: Array) -> Array:
        actions = jnp.asarray(actions).astype(jnp.int32)
        return jnp.ravel_multi_index(tuple(actions[..., i] for i in range(len(self.nvec))),
                                     self.nvec, mode="clip")

    def sample(self, key: Array) -> Array:
        return self._unravel(categorical_sample(key, self.logits))

    def sample_from_noise(self, noise: Array) -> Array:
        return self._unravel(jnp.argmax(self.logits + noise, axis=-1))

    def log_prob(self, actions: Array) -> Array:
        return categorical_log_prob(self.logits, self._ravel(actions))

    def sample_and_log_prob(self, key: Array) -> tuple[Array, Array]:
        actions = self.sample(key)
        return actions, self.log_prob(actions)

    def entropy(self) -> Array:
        return categorical_entropy(self.logits)

    def kl(self, other: JointCategorical) -> Array:
        """KL[self ‖ other]."""
        return categorical_kl(self.logits, other.logits)

    def mode(self) -> Array:
        return self._unravel(categorical_mode(self.logits))
